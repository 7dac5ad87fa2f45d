/* libc frames between ours: main -> sort_run -> qsort (libc) -> ... -> compare_slow.
 * The comparator spins, so almost every sample lands in it with libc's sorting frames
 * (glibc 2.36: qsort is a tail jump to qsort_r, then msort_with_tmp recursion) between it
 * and sort_run. */
#include "common.h"

#define COUNT 1024
volatile uint64_t sink;
static uint64_t values[COUNT];

NOINL int compare_slow(const void *pa, const void *pb) {
    uint64_t a = *(const uint64_t *)pa, b = *(const uint64_t *)pb, x = a ^ b;
    for (int i = 0; i < 1000; i++) MIX(x);
    sink = x;
    return a < b ? -1 : a > b;
}

NOINL uint64_t sort_run(double seconds) {
    double end = now() + seconds;
    uint64_t seed = 1, rounds = 0;
    while (now() < end) {
        for (int i = 0; i < COUNT; i++) { MIX(seed); values[i] = seed; }
        qsort(values, COUNT, sizeof values[0], compare_slow);
        rounds++;
    }
    return rounds + values[0];
}

int main(int argc, char **argv) {
    double seconds = seconds_arg(argc, argv);
    print_pid();
    sink = sort_run(seconds);
    return 0;
}
