/* main -> run -> level1 -> level2 -> leaf_hot, spinning for argv[1] seconds (default 2).
 * run() keeps a known 32-word pattern in a stack array; its address is printed so a test can
 * find it in the captured stack bytes at (marker - sp). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#define NOINL __attribute__((noinline, noipa))
#define MARKER_WORDS 32
#define MARKER(i) (0x5350524f46000000ull | (uint64_t)(i) * 0x0101ull)
volatile uint64_t sink;

static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec * 1e-9; }

NOINL uint64_t leaf_hot(uint64_t x) { for (int i = 0; i < 100000; i++) { x = x * 6364136223846793005ull + 1442695040888963407ull; x ^= x >> 29; } return x; }
NOINL uint64_t level2(uint64_t x) { uint64_t r = leaf_hot(x); sink = r; return r + 1; }
NOINL uint64_t level1(uint64_t x) { uint64_t r = level2(x); sink = r; return r ^ 3; }
NOINL uint64_t run(double seconds) {
    volatile uint64_t marker[MARKER_WORDS];
    for (int i = 0; i < MARKER_WORDS; i++) marker[i] = MARKER(i);
    printf("pid=%d\nmarker=%p\nleaf_hot=%p\nrun=%p\n", getpid(), (void *)marker, (void *)leaf_hot, (void *)run);
    fflush(stdout);
    double end = now() + seconds;
    uint64_t a = 1;
    while (now() < end) a += level1(a);
    return a + marker[0] + marker[MARKER_WORDS - 1];
}

int main(int argc, char **argv) {
    double seconds = argc > 1 ? atof(argv[1]) : 2.0;
    sink = run(seconds);
    return 0;
}
