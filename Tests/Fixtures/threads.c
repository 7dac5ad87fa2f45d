/* Two worker threads spin for argv[1] seconds; the main thread sleeps in join. Prints their tids. */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>
#include <sys/syscall.h>

#define NOINL __attribute__((noinline, noipa))
static double seconds = 2.0;
volatile uint64_t sink;
static pthread_barrier_t ready;

static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec * 1e-9; }
NOINL uint64_t spin(uint64_t x) { for (int i = 0; i < 100000; i++) { x = x * 6364136223846793005ull + 1; x ^= x >> 31; } return x; }

static void *worker(void *arg) {
    printf("tid=%ld\n", (long)syscall(SYS_gettid));
    fflush(stdout);
    pthread_barrier_wait(&ready);
    double end = now() + seconds;
    uint64_t x = (uintptr_t)arg;
    while (now() < end) x = spin(x);
    sink = x;
    return NULL;
}

int main(int argc, char **argv) {
    if (argc > 1) seconds = atof(argv[1]);
    pthread_t t[2];
    pthread_barrier_init(&ready, NULL, 3);
    printf("pid=%d\nmain_tid=%ld\n", getpid(), (long)syscall(SYS_gettid));
    for (long i = 0; i < 2; i++) pthread_create(&t[i], NULL, worker, (void *)(i + 1));
    pthread_barrier_wait(&ready);
    printf("started\n");
    fflush(stdout);
    for (int i = 0; i < 2; i++) pthread_join(t[i], NULL);
    return 0;
}
