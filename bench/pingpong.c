// Two threads bouncing one byte over two pipes: a context-switch workload for bench/offcpu.py.
//
//   gcc -O2 -pthread -o pingpong bench/pingpong.c
//   ./pingpong SECONDS same|split [ROUND_TRIPS_PER_SECOND]
//
// same:  both threads pinned to CPU 0, so every round trip is two direct switches
//        (ping -> pong -> ping) with nothing else in between on an idle CPU.
// split: ping pinned to CPU 0, pong to CPU 1, so each thread sleeps in read() and is woken
//        from the other CPU: every wait goes through the idle task (two switches per wait on
//        each CPU: thread -> idle, idle -> thread).
// ROUND_TRIPS_PER_SECOND (optional, 0 = as fast as possible): the ping thread paces itself
//        against the clock in batches of ~1 ms, sleeping (clock_nanosleep) when ahead, so the
//        rate can be held near, say, 25,000 round trips/s (~50,000 switches/s of the two threads).
//
// Prints `pid=N trips_addr=0x...` (flushed) when both threads are ready, then, at the end (after
// SECONDS, or at SIGTERM / SIGINT), one line of key=value pairs: round trips, wall time, the
// process's own CPU time (getrusage RUSAGE_SELF, utime+stime) and its voluntary / involuntary
// context switches (ru_nvcsw / ru_nivcsw). trips_addr is the address of a 64-bit count of round
// trips, updated after every round trip, so a benchmark can read it through /proc/PID/mem at any
// moment and measure the rate inside its own window.
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

static int ab[2], ba[2];  // ping writes ab, pong reads ab; pong writes ba, ping reads ba
static volatile sig_atomic_t stop_flag;
volatile uint64_t trips_now;  // round trips so far, read from outside through /proc/PID/mem

static void on_signal(int sig) {
    (void)sig;
    stop_flag = 1;
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void pin(int cpu) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    int e = pthread_setaffinity_np(pthread_self(), sizeof set, &set);
    if (e) {
        fprintf(stderr, "pingpong: pin to CPU %d: %s\n", cpu, strerror(e));
        exit(2);
    }
}

static void rd(int fd, char *c) {
    for (;;) {
        ssize_t n = read(fd, c, 1);
        if (n == 1) return;
        if (n < 0 && errno == EINTR) continue;
        perror("pingpong: read");
        exit(2);
    }
}

static void wr(int fd, char c) {
    for (;;) {
        ssize_t n = write(fd, &c, 1);
        if (n == 1) return;
        if (n < 0 && errno == EINTR) continue;
        perror("pingpong: write");
        exit(2);
    }
}

static int pong_cpu;

static void *pong(void *arg) {
    (void)arg;
    pin(pong_cpu);
    char c;
    for (;;) {
        rd(ab[0], &c);
        if (c == 'q') break;
        wr(ba[1], c);
    }
    return NULL;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s SECONDS same|split [ROUND_TRIPS_PER_SECOND]\n", argv[0]);
        return 2;
    }
    double seconds = atof(argv[1]);
    int split = strcmp(argv[2], "split") == 0;
    if (!split && strcmp(argv[2], "same") != 0) {
        fprintf(stderr, "pingpong: mode must be same or split\n");
        return 2;
    }
    double rate = argc > 3 ? atof(argv[3]) : 0;
    pong_cpu = split ? 1 : 0;
    if (pipe(ab) || pipe(ba)) {
        perror("pingpong: pipe");
        return 2;
    }
    pin(0);
    pthread_t th;
    if (pthread_create(&th, NULL, pong, NULL)) {
        fprintf(stderr, "pingpong: pthread_create failed\n");
        return 2;
    }
    char c = 'x';
    wr(ab[1], c);  // one warm-up round trip: both threads exist and are pinned
    rd(ba[0], &c);

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;  // no SA_RESTART: read/write return EINTR and are retried
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);

    printf("pid=%d trips_addr=%p\n", (int)getpid(), (void *)&trips_now);
    fflush(stdout);

    struct rusage r0, r1;
    getrusage(RUSAGE_SELF, &r0);
    double t0 = now(), end = t0 + seconds, t = t0;
    uint64_t trips = 0;
    long batch = rate > 0 ? (long)(rate / 1000 < 1 ? 1 : rate / 1000) : 1000;  // ~1 ms of work
    while (t < end && !stop_flag) {
        for (long i = 0; i < batch; i++) {
            wr(ab[1], 'x');
            rd(ba[0], &c);
            trips_now = trips + i + 1;
        }
        trips += batch;
        t = now();
        if (rate > 0) {
            double due = t0 + trips / rate;  // when this many trips should be done
            if (due > t && !stop_flag) {
                struct timespec ts;
                double d = due - t;
                ts.tv_sec = (time_t)d;
                ts.tv_nsec = (long)((d - ts.tv_sec) * 1e9);
                clock_nanosleep(CLOCK_MONOTONIC, 0, &ts, NULL);
                t = now();
            }
        }
    }
    double wall = t - t0;
    getrusage(RUSAGE_SELF, &r1);
    wr(ab[1], 'q');
    pthread_join(th, NULL);

    double cpu = (r1.ru_utime.tv_sec - r0.ru_utime.tv_sec) + (r1.ru_utime.tv_usec - r0.ru_utime.tv_usec) / 1e6 +
                 (r1.ru_stime.tv_sec - r0.ru_stime.tv_sec) + (r1.ru_stime.tv_usec - r0.ru_stime.tv_usec) / 1e6;
    printf("mode=%s target_rate=%.0f round_trips=%llu wall_s=%.6f cpu_s=%.6f nvcsw=%ld nivcsw=%ld "
           "round_trips_per_s=%.0f\n",
           split ? "split" : "same", rate, (unsigned long long)trips, wall, cpu,
           r1.ru_nvcsw - r0.ru_nvcsw, r1.ru_nivcsw - r0.ru_nivcsw, trips / wall);
    fflush(stdout);
    return 0;
}
