/* Targets that abuse a profiler's resources, one mode each (argv[1]); each burns CPU in a known
 * call chain for argv[2] seconds and prints pid= (and what it made) before its hot loop.
 *
 *   abuse maps SECONDS [COUNT]    COUNT (default 60000, vm.max_map_count is 65530) mappings: its own
 *                                 executable mapped PROT_READ|PROT_EXEC one page at a time, each
 *                                 followed by a one-page anonymous read-write mapping (so no two
 *                                 merge), then main -> maps_run -> maps_level -> maps_leaf. Every
 *                                 100 ms it also maps a fresh anonymous executable page, copies a
 *                                 spin loop into it and runs it for 5 ms (JIT-like code the
 *                                 profiler has not seen: each one is a miss that asks for a re-read
 *                                 of the 60,000-line maps file). Prints mappings=N (lines of its
 *                                 /proc/self/maps).
 *   abuse threads SECONDS [LIVE]  starts short-lived threads without end, LIVE (default 4) at a
 *                                 time, each named t-N (prctl PR_SET_NAME, N counting up: every
 *                                 thread a new name), each spinning ~200 µs in
 *                                 thread_main -> thread_work -> thread_spin and exiting.
 *                                 Prints threads=N at the end.
 *   abuse ehframe-gen DIR MB      writes DIR/big.s and DIR/rows.bin: a function big_code of
 *                                 MB/3 MiB of nops, then a spin loop and ret, and one FDE for
 *                                 it whose instructions are MB MiB of valid, redundant rows
 *                                 (DW_CFA_advance_loc 1; DW_CFA_def_cfa_offset 8: CFA = rsp + 8
 *                                 at every byte, which is true of code that never moves rsp).
 *                                 Build the target with
 *                                   gcc -O2 -fomit-frame-pointer -g -o DIR/ehframe Tests/Fixtures/abuse.c DIR/big.s -DBIG_CODE
 *                                 (big.s names DIR/rows.bin by its full path: DIR must be absolute).
 *   ehframe SECONDS               (the binary built above) main -> eh_run -> big_code, repeatedly.
 *
 * Recipe: gcc -O2 -fomit-frame-pointer -g -pthread -o $TMP/abuse Tests/Fixtures/abuse.c */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>

#define NOINL __attribute__((noinline, noipa))
volatile uint64_t sink;

static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec * 1e-9; }

static uint64_t mix(uint64_t x, int n) {
    for (int i = 0; i < n; i++) { x = x * 6364136223846793005ull + 1442695040888963407ull; x ^= x >> 29; }
    return x;
}

/* ---- maps ---- */

NOINL uint64_t maps_leaf(uint64_t x) { return mix(x, 100000); }
NOINL uint64_t maps_level(uint64_t x) { uint64_t r = maps_leaf(x); sink = r; return r + 1; }

/* mov ecx, imm32; dec ecx; jnz -4; ret  (B9 imm32 / FF C9 / 75 FC / C3) */
static void run_fresh_code(void) {
    unsigned char code[] = {0xB9, 0, 0, 0, 0, 0xFF, 0xC9, 0x75, 0xFC, 0xC3};
    uint32_t n = 2000000;
    memcpy(code + 1, &n, 4);
    void *p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return;
    memcpy(p, code, sizeof code);
    if (mprotect(p, 4096, PROT_READ | PROT_EXEC) == 0) {
        double end = now() + 0.005;
        while (now() < end) ((void (*)(void))p)();
    }
    munmap(p, 4096);
}

NOINL uint64_t maps_run(double seconds) {
    double end = now() + seconds, fresh = now();
    uint64_t a = 1;
    while (now() < end) {
        a += maps_level(a);
        if (now() >= fresh) { run_fresh_code(); fresh = now() + 0.1; }
    }
    return a;
}

static int count_lines(const char *path) {
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    int n = 0, c;
    while ((c = getc(f)) != EOF) n += c == '\n';
    fclose(f);
    return n;
}

static int maps_mode(double seconds, int count) {
    int fd = open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
    if (fd < 0) { perror("open /proc/self/exe"); return 1; }
    long page = sysconf(_SC_PAGESIZE);
    /* One reserved area, then fixed mappings in it: file page (r-x), anonymous page (rw-), ... */
    size_t pairs = (size_t)count / 2;
    char *base = mmap(NULL, pairs * 2 * page, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (base == MAP_FAILED) { perror("mmap reserve"); return 1; }
    size_t made = 0;
    for (size_t i = 0; i < pairs; i++) {
        char *at = base + i * 2 * page;
        if (mmap(at, page, PROT_READ | PROT_EXEC, MAP_PRIVATE | MAP_FIXED, fd, 0) == MAP_FAILED) break;
        if (mmap(at + page, page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0) == MAP_FAILED) break;
        at[page] = 1;
        made++;
    }
    /* Whatever is left of the reservation (if the kernel's limit stopped us) goes back. */
    if (made < pairs) munmap(base + made * 2 * page, (pairs - made) * 2 * page);
    printf("pid=%d\nmappings=%d\n", getpid(), count_lines("/proc/self/maps"));
    fflush(stdout);
    sink = maps_run(seconds);
    return 0;
}

/* ---- threads ---- */

static double thread_seconds = 0.0002;
NOINL uint64_t thread_spin(uint64_t x) { return mix(x, 2000); }
NOINL uint64_t thread_work(uint64_t x) {
    double end = now() + thread_seconds;
    while (now() < end) x = thread_spin(x);
    return x;
}
static void *thread_main(void *arg) {
    char name[16];
    snprintf(name, sizeof name, "t-%lu", (unsigned long)(uintptr_t)arg);
    prctl(PR_SET_NAME, name, 0, 0, 0);
    sink = thread_work((uintptr_t)arg);
    return NULL;
}

static int threads_mode(double seconds, int live) {
    printf("pid=%d\n", getpid());
    fflush(stdout);
    double end = now() + seconds;
    unsigned long n = 0;
    pthread_t *t = calloc(live, sizeof *t);
    while (now() < end) {
        for (int i = 0; i < live; i++) {
            if (pthread_create(&t[i], NULL, thread_main, (void *)(uintptr_t)++n) != 0) { t[i] = 0; n--; }
        }
        for (int i = 0; i < live; i++) if (t[i]) pthread_join(t[i], NULL);
    }
    printf("threads=%lu\n", n);
    fflush(stdout);
    return 0;
}

/* ---- ehframe ---- */

static int ehframe_gen(const char *dir, double mb) {
    char path[4096];
    size_t rows = (size_t)(mb * 1048576 / 3);
    snprintf(path, sizeof path, "%s/rows.bin", dir);
    FILE *f = fopen(path, "w");
    if (!f) { perror(path); return 1; }
    /* DW_CFA_advance_loc(1) = 0x41; DW_CFA_def_cfa_offset(8) = 0x0e 0x08 (DWARF 5, 6.4.2). */
    static unsigned char chunk[3 * 65536];
    for (size_t i = 0; i < sizeof chunk; i += 3) { chunk[i] = 0x41; chunk[i + 1] = 0x0e; chunk[i + 2] = 0x08; }
    for (size_t done = 0; done < rows;) {
        size_t n = rows - done < 65536 ? rows - done : 65536;
        fwrite(chunk, 3, n, f);
        done += n;
    }
    fclose(f);
    snprintf(path, sizeof path, "%s/big.s", dir);
    f = fopen(path, "w");
    if (!f) { perror(path); return 1; }
    /* big_code: `rows` nops (one row each), then a short spin and ret; rsp never moves. Its FDE
     * is written by hand in .eh_frame (the linker sorts it into .eh_frame_hdr like any other);
     * the CIE says: code alignment 1, data alignment -8, return address r16, augmentation zR
     * with pc-relative sdata4 pointers, CFA = rsp + 8, r16 at CFA - 8 (the state at a call). */
    fprintf(f,
            "\t.text\n\t.globl big_code\n\t.type big_code,@function\nbig_code:\n"
            "\t.fill %zu,1,0x90\n"
            "\tmov $20000,%%ecx\n1:\tdec %%ecx\n\tjnz 1b\n\tret\n"
            "big_code_end:\n\t.size big_code,.-big_code\n"
            "\t.section .eh_frame,\"a\",@progbits\n"
            "big_cie:\n\t.long big_cie_end - big_cie_id\nbig_cie_id:\n\t.long 0\n\t.byte 1\n\t.string \"zR\"\n"
            "\t.uleb128 1\n\t.sleb128 -8\n\t.uleb128 16\n\t.uleb128 1\n\t.byte 0x1b\n"
            "\t.byte 0x0c,7,8\n\t.byte 0x90,1\n\t.balign 4\nbig_cie_end:\n"
            "big_fde:\n\t.long big_fde_end - big_fde_cie\nbig_fde_cie:\n\t.long big_fde_cie - big_cie\n"
            "\t.long big_code - .\n\t.long big_code_end - big_code\n\t.uleb128 0\n"
            "\t.incbin \"%s/rows.bin\"\n\t.balign 4\nbig_fde_end:\n"
            "\t.section .note.GNU-stack,\"\",@progbits\n",
            rows, dir);
    fclose(f);
    printf("rows=%zu\n", rows);
    return 0;
}

#ifdef BIG_CODE
void big_code(void);
NOINL uint64_t eh_run(double seconds) {
    double end = now() + seconds;
    uint64_t n = 0;
    while (now() < end) { big_code(); n++; }
    return n;
}
#endif

int main(int argc, char **argv) {
#ifdef BIG_CODE
    double seconds = argc > 1 ? atof(argv[1]) : 2.0;
    printf("pid=%d\n", getpid());
    fflush(stdout);
    sink = eh_run(seconds);
    return 0;
#else
    if (argc < 3) { fprintf(stderr, "usage: abuse maps|threads SECONDS [N] | abuse ehframe-gen DIR MB\n"); return 2; }
    if (strcmp(argv[1], "maps") == 0) return maps_mode(atof(argv[2]), argc > 3 ? atoi(argv[3]) : 60000);
    if (strcmp(argv[1], "threads") == 0) return threads_mode(atof(argv[2]), argc > 3 ? atoi(argv[3]) : 4);
    if (strcmp(argv[1], "ehframe-gen") == 0) return ehframe_gen(argv[2], argc > 3 ? atof(argv[3]) : 100);
    fprintf(stderr, "unknown mode %s\n", argv[1]);
    return 2;
#endif
}
