/* bench/deep.c: a busy target with a deep user stack, for the capture benchmark.
 *
 *   gcc -O2 -fomit-frame-pointer -g -o deep bench/deep.c
 *   ./deep SECONDS [KIB]      (defaults: 10 s, 72 KiB)
 *
 * main -> descend(KIB) -> descend(KIB-1) -> ... -> descend(0) -> spin, with about 1 KiB of
 * stack per descend() frame, so the spinning leaf sits about KIB KiB below the top of the
 * main thread's stack. At the default 72 KiB both a 32 KiB and a 64 KiB copy are full
 * (the copy is never cut short by the end of the stack), so the 32k/64k cost difference
 * shows; Tests/Fixtures/chain.c is the opposite case (2-8 KiB from sp to the stack end).
 *
 * Prints pid=, depth_kib=, iterations= (the address of a counter of leaf_hot() calls, which root
 * can read through /proc/PID/mem to measure work done), stack_bytes= (distance from the leaf's
 * frame to the address of argc in main, a lower bound on sp..stack end) and started, flushed
 * before the hot loop.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#define NOINL __attribute__((noinline, noipa))
volatile uint64_t sink;
/* leaf_hot() calls so far: a reader with /proc/PID/mem access can measure work done (address printed) */
volatile uint64_t iterations;
static double seconds = 10.0;
static char *top;

static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec * 1e-9; }

NOINL uint64_t leaf_hot(uint64_t x) {
    for (int i = 0; i < 100000; i++) { x = x * 6364136223846793005ull + 1442695040888963407ull; x ^= x >> 29; }
    return x;
}

NOINL uint64_t spin(void) {
    volatile char here = 0;
    printf("stack_bytes=%ld\nstarted\n", (long)(top - (char *)&here));
    fflush(stdout);
    double end = now() + seconds;
    uint64_t a = 1;
    while (now() < end) { a += leaf_hot(a); iterations++; }
    return a + here;
}

/* ~1 KiB frame; the array is written before and read after the call, so the frame
 * is real and the call is not a tail call. */
NOINL uint64_t descend(int kib) {
    volatile uint8_t pad[1000];
    for (int i = 0; i < (int)sizeof pad; i += 64) pad[i] = (uint8_t)(kib + i);
    uint64_t r = kib > 0 ? descend(kib - 1) : spin();
    return r + pad[0] + pad[sizeof pad - 1];
}

int main(int argc, char **argv) {
    top = (char *)&argc;
    if (argc > 1) seconds = atof(argv[1]);
    int kib = argc > 2 ? atoi(argv[2]) : 72;
    printf("pid=%d\ndepth_kib=%d\niterations=%p\n", getpid(), kib, (void *)&iterations);
    fflush(stdout);
    sink = descend(kib);
    return 0;
}
