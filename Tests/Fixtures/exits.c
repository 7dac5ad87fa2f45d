/* Spins argv[1] seconds (default 1), then exits with status argv[2] (default 0). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#define NOINL __attribute__((noinline, noipa))
volatile uint64_t sink;
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec * 1e-9; }
NOINL uint64_t work(uint64_t x) { for (int i = 0; i < 100000; i++) { x = x * 6364136223846793005ull + 3; x ^= x >> 23; } return x; }

int main(int argc, char **argv) {
    double seconds = argc > 1 ? atof(argv[1]) : 1.0;
    int status = argc > 2 ? atoi(argv[2]) : 0;
    printf("pid=%d\n", getpid());
    fflush(stdout);
    double end = now() + seconds;
    uint64_t x = 1;
    while (now() < end) x = work(x);
    sink = x;
    return status;
}
