/* Spins argv[2] seconds, then execs argv[1] (with the remaining args). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#define NOINL __attribute__((noinline, noipa))
volatile uint64_t sink;
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec * 1e-9; }
NOINL uint64_t before_exec(uint64_t x) { for (int i = 0; i < 100000; i++) { x = x * 6364136223846793005ull + 7; x ^= x >> 27; } return x; }

int main(int argc, char **argv) {
    if (argc < 3) return 2;
    printf("pid=%d\n", getpid());
    fflush(stdout);
    double end = now() + atof(argv[2]);
    uint64_t x = 1;
    while (now() < end) x = before_exec(x);
    sink = x;
    execv(argv[1], argv + 2);
    return 3;
}
