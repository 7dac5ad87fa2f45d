/* A 20 KiB stack frame: main -> run_big -> bigframe (20 KiB of volatile locals) -> big_leaf.
 * A sampler that copies less than ~20 KiB of stack from the leaf's sp cannot reach
 * run_big's return address. */
#include "common.h"

#define BIG 20480
volatile uint64_t sink;
uint64_t sprof_work;

NOINL uint64_t big_leaf(volatile char *buf, uint64_t x) {
    for (int i = 0; i < 100000; i++) MIX(x);
    buf[x % BIG] = (char)x;
    return x;
}
NOINL uint64_t bigframe(uint64_t x) {
    volatile char buf[BIG];
    buf[0] = (char)x; buf[BIG - 1] = (char)(x >> 8);
    uint64_t r = big_leaf(buf, x);
    return r + buf[0] + buf[BIG - 1];
}
NOINL uint64_t run_big(double seconds) {
    double end = now() + seconds;
    uint64_t a = 1;
    while (now() < end) { a += bigframe(a); COUNT_WORK(); }
    return a;
}

int main(int argc, char **argv) {
    double seconds = seconds_arg(argc, argv);
    print_pid();
    sink = run_big(seconds);
    return 0;
}
