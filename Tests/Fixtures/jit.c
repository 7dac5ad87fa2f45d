/* A tiny JIT: code in anonymous memory, named only by a perf map file.
 *
 *     gcc -O2 -fomit-frame-pointer -g -o $TMP/jit Tests/Fixtures/jit.c
 *     $TMP/jit [SECONDS]
 *
 * Copies a position-independent countdown loop into an anonymous mapping,
 * makes it PROT_READ|PROT_EXEC, writes /tmp/perf-<pid>.map (perf's
 * tools/perf/Documentation/jit-interface.txt: "START SIZE symbolname", hex
 * without 0x) naming it `jit_hot_loop`, plus a decoy entry with spaces in
 * its name 0x100 bytes further on (never called), prints
 *
 *     pid=<pid>
 *     jit=<hex start of jit_hot_loop>
 *
 * and flushes, then calls the code for SECONDS (default 2), removes its map
 * file and exits 0. Killed by SIGTERM or SIGINT first, it removes the map file
 * too (and exits 128 + the signal, as a shell reports it).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <signal.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

/* uint64_t jit_hot_loop(uint64_t n): counts n down to 0, returns 0.
 * Encodings checked with `clang -c` + `llvm-objdump -d`. */
#if defined(__x86_64__)
static const unsigned char code[] = {
    0x48, 0x89, 0xf8,       /* 0: mov  %rdi,%rax */
    0x48, 0x85, 0xc0,       /* 3: test %rax,%rax */
    0x74, 0x05,             /* 6: je   0xd       */
    0x48, 0xff, 0xc8,       /* 8: dec  %rax      */
    0x75, 0xfb,             /* b: jne  0x8       */
    0xc3,                   /* d: ret            */
};
#elif defined(__aarch64__)
static const uint32_t code[] = {
    0xb4000060,             /* 0: cbz  x0, 0xc        */
    0xf1000400,             /* 4: subs x0, x0, #1     */
    0x54ffffe1,             /* 8: b.ne 0x4            */
    0xd65f03c0,             /* c: ret                 */
};
#else
#error "jit.c has machine code for x86-64 and aarch64 only"
#endif

#define DECOY_OFFSET 0x100
#define DECOY_SIZE 0x20

static char path[64];
static void stop(int sig) { unlink(path); _exit(128 + sig); }  /* both async-signal-safe */

static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec * 1e-9; }

int main(int argc, char **argv) {
    double seconds = argc > 1 ? atof(argv[1]) : 2.0;
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    unsigned char *mem = mmap(NULL, page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED) { perror("mmap"); return 1; }
    memcpy(mem, code, sizeof code);
    if (mprotect(mem, page, PROT_READ | PROT_EXEC) != 0) { perror("mprotect"); return 1; }
    __builtin___clear_cache((char *)mem, (char *)mem + sizeof code);

    snprintf(path, sizeof path, "/tmp/perf-%d.map", (int)getpid());
    signal(SIGTERM, stop);
    signal(SIGINT, stop);
    FILE *map = fopen(path, "w");
    if (!map) { perror(path); return 1; }
    fprintf(map, "%lx %zx jit_hot_loop\n", (unsigned long)(uintptr_t)mem, sizeof code);
    fprintf(map, "%lx %x jit decoy (never called)\n", (unsigned long)(uintptr_t)(mem + DECOY_OFFSET), DECOY_SIZE);
    if (fclose(map) != 0) { perror(path); return 1; }

    printf("pid=%d\njit=%lx\n", (int)getpid(), (unsigned long)(uintptr_t)mem);
    fflush(stdout);

    uint64_t (*hot)(uint64_t) = (uint64_t (*)(uint64_t))(void *)mem;
    volatile uint64_t sink = 0;
    double end = now() + seconds;
    while (now() < end) sink += hot(1000000);
    (void)sink;

    unlink(path);
    return 0;
}
