/* A signal frame: an ITIMER_REAL timer sends SIGALRM every 5 ms; the handler spins for
 * about half of that, so many samples land in it:
 *   main -> interrupted_work -> __restore_rt (glibc's sa_restorer, the signal frame) -> handler_hot
 * interrupted_work calls nothing (it counts timer ticks instead of reading the clock), so
 * the interrupted frame is always interrupted_work itself. Note for an unwinder: the
 * return address into __restore_rt is the first byte of that function, and the pc saved in
 * the signal frame is not a return address (no "- 1" before looking either up). */
#include "common.h"
#include <signal.h>
#include <sys/time.h>

#define INTERVAL_US 5000
volatile uint64_t sink;
static volatile sig_atomic_t ticks;

NOINL void handler_hot(int sig) {
    uint64_t x = (uint64_t)ticks + (uint64_t)sig;
    for (int i = 0; i < 1000000; i++) MIX(x);
    sink = x;
    ticks = ticks + 1;
}

NOINL uint64_t interrupted_work(long target_ticks) {
    uint64_t x = 1;
    while (ticks < target_ticks) MIX(x);
    return x;
}

int main(int argc, char **argv) {
    double seconds = seconds_arg(argc, argv);
    struct sigaction sa = { 0 };
    sa.sa_handler = handler_hot;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGALRM, &sa, NULL) != 0) { perror("sigaction"); return 1; }
    print_pid();
    struct itimerval it = { { 0, INTERVAL_US }, { 0, INTERVAL_US } };
    if (setitimer(ITIMER_REAL, &it, NULL) != 0) { perror("setitimer"); return 1; }
    sink = interrupted_work((long)(seconds * 1e6 / INTERVAL_US));
    struct itimerval off = { { 0, 0 }, { 0, 0 } };
    setitimer(ITIMER_REAL, &off, NULL);
    return 0;
}
