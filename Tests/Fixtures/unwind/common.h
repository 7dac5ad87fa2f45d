/* Shared by the C unwinding fixtures: a monotonic clock, the hot mixing step, and the
 * attribute that keeps a function a real frame. */
#ifndef UNWIND_COMMON_H
#define UNWIND_COMMON_H
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

/* noinline: the call stays a call. noipa: no interprocedural analysis either, so gcc makes
 * no .isra/.constprop/.part clones and every frame keeps the name in the expected chain. */
#define NOINL __attribute__((noinline, noipa))

/* One step of a 64-bit LCG plus an xorshift: a few ns of pure register work the
 * compiler cannot fold away. */
#define MIX(x) do { (x) = (x) * 6364136223846793005ull + 1442695040888963407ull; (x) ^= (x) >> 29; } while (0)

static inline double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

/* Iterations of the outer loop, for benchmarks (bench/compare.py reads it through
 * /proc/PID/mem at the symbol's address): work per CPU second shows what a profiler's
 * sampling interrupt costs the target. Relaxed atomic adds, so threads can share it; the
 * increment sits in the loop of the function that calls the chain, not in the chain. */
#define COUNT_WORK() __atomic_fetch_add(&sprof_work, 1, __ATOMIC_RELAXED)

/* argv[1]: seconds to run the hot loop (default 2). */
static inline double seconds_arg(int argc, char **argv) { return argc > 1 ? atof(argv[1]) : 2.0; }

/* The first line every fixture prints, flushed before the hot loop starts. */
static inline void print_pid(void) {
    printf("pid=%d\n", getpid());
    fflush(stdout);
}
#endif
