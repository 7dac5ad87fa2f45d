/* Deep recursion: main -> run_deep -> recurse x200 -> rec_leaf. Each recurse frame is about
 * 96 bytes (10 volatile words, the return address, alignment padding), so the leaf
 * runs with its sp about 19 KiB (200 x 96 B) below run_deep's. */
#include "common.h"

#define DEPTH 200
volatile uint64_t sink;
uint64_t sprof_work;

NOINL uint64_t rec_leaf(uint64_t x) { for (int i = 0; i < 100000; i++) MIX(x); return x; }
NOINL uint64_t recurse(int depth, uint64_t x) {
    volatile uint64_t pad[10];
    pad[0] = x; pad[9] = (uint64_t)depth;
    uint64_t r = depth == 1 ? rec_leaf(x) : recurse(depth - 1, x + 1);
    return r + pad[0] + pad[9];   /* work after the call: no tail recursion */
}
NOINL uint64_t run_deep(double seconds) {
    double end = now() + seconds;
    uint64_t a = 1;
    while (now() < end) { a += recurse(DEPTH, a); COUNT_WORK(); }
    return a;
}

int main(int argc, char **argv) {
    double seconds = seconds_arg(argc, argv);
    print_pid();
    sink = run_deep(seconds);
    return 0;
}
