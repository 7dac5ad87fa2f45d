// A short-lived process for bench/agent.py's storm: spins MS milliseconds of CPU time in a
// function with a distinctive name, then exits. The agent must still name its samples after it
// is gone (comm "short", frames main -> short_lived_work).
//
//   gcc -O2 -fomit-frame-pointer -g -o short bench/short.c
//   ./short [MS]          (default 2; CPU time, not wall time, so a busy machine stretches it)
#include <stdint.h>
#include <stdlib.h>
#include <time.h>

#define NOINL __attribute__((noinline, noipa))
volatile uint64_t sink;

static double cpu_now(void) {
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

// The leaf the agent should name: a few hundred µs of arithmetic per clock read.
NOINL uint64_t short_lived_work(double seconds) {
    double end = cpu_now() + seconds;
    uint64_t x = 1;
    do {
        for (int i = 0; i < 20000; i++) { x = x * 6364136223846793005ull + 1442695040888963407ull; x ^= x >> 29; }
    } while (cpu_now() < end);
    return x;
}

int main(int argc, char **argv) {
    double ms = argc > 1 ? atof(argv[1]) : 2.0;
    sink = short_lived_work(ms / 1000.0);
    return 0;
}
