/* Two threads with distinct chains, main asleep in pthread_join:
 *   start_thread -> worker_a -> a_mid -> a_leaf
 *   start_thread -> worker_b -> b_leaf
 * Prints pid=, tid_a=, tid_b= (flushed before either spins). */
#define _GNU_SOURCE
#include "common.h"
#include <pthread.h>
#include <sys/syscall.h>

volatile uint64_t sink;
uint64_t sprof_work;
static double seconds;
static pthread_barrier_t ready;

static void announce(const char *key) {
    printf("%s=%ld\n", key, (long)syscall(SYS_gettid));
    fflush(stdout);
}

NOINL uint64_t a_leaf(uint64_t x) { for (int i = 0; i < 100000; i++) MIX(x); return x; }
NOINL uint64_t a_mid(uint64_t x) { uint64_t r = a_leaf(x); sink = r; return r + 1; }
NOINL void *worker_a(void *arg) {
    announce("tid_a");
    pthread_barrier_wait(&ready);
    double end = now() + seconds;
    uint64_t a = (uintptr_t)arg;
    while (now() < end) { a += a_mid(a); COUNT_WORK(); }
    sink = a;
    return NULL;
}

NOINL uint64_t b_leaf(uint64_t x) { for (int i = 0; i < 100000; i++) MIX(x); return x; }
NOINL void *worker_b(void *arg) {
    announce("tid_b");
    pthread_barrier_wait(&ready);
    double end = now() + seconds;
    uint64_t b = (uintptr_t)arg;
    while (now() < end) { b += b_leaf(b); COUNT_WORK(); }
    sink = b;
    return NULL;
}

int main(int argc, char **argv) {
    seconds = seconds_arg(argc, argv);
    print_pid();
    pthread_barrier_init(&ready, NULL, 3);
    pthread_t ta, tb;
    pthread_create(&ta, NULL, worker_a, (void *)1);
    pthread_create(&tb, NULL, worker_b, (void *)2);
    pthread_setname_np(ta, "worker_a");
    pthread_setname_np(tb, "worker_b");
    pthread_barrier_wait(&ready);
    pthread_join(ta, NULL);
    pthread_join(tb, NULL);
    return 0;
}
