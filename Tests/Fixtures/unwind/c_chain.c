/* main -> run -> level1 -> level2 -> leaf_hot, spinning for argv[1] seconds.
 * Built three ways (see README.md): with -g, without -g (.eh_frame only), and with
 * -g -fno-asynchronous-unwind-tables (this code's CFI only in .debug_frame). */
#include "common.h"

volatile uint64_t sink;
uint64_t sprof_work;

NOINL uint64_t leaf_hot(uint64_t x) { for (int i = 0; i < 100000; i++) MIX(x); return x; }
/* Work after each call: no tail calls, so every caller keeps its frame. */
NOINL uint64_t level2(uint64_t x) { uint64_t r = leaf_hot(x); sink = r; return r + 1; }
NOINL uint64_t level1(uint64_t x) { uint64_t r = level2(x); sink = r; return r ^ 3; }
NOINL uint64_t run(double seconds) {
    double end = now() + seconds;
    uint64_t a = 1;
    while (now() < end) { a += level1(a); COUNT_WORK(); }
    return a;
}

int main(int argc, char **argv) {
    double seconds = seconds_arg(argc, argv);
    print_pid();
    sink = run(seconds);
    return 0;
}
