// A storm of short-lived processes for bench/agent.py: posix_spawn()s PROGRAM (with its one
// argument) RATE times a second for SECONDS, from THREADS threads, reaping the children as they
// exit.
//
//   gcc -O2 -fomit-frame-pointer -g -pthread -o storm bench/storm.c
//   ./storm SECONDS RATE THREADS PROGRAM [ARG]       e.g.  ./storm 300 300 8 ./short 2
//
// Why threads: glibc's posix_spawn is clone(CLONE_VM|CLONE_VFORK), so the caller waits until the
// child has exec'd; on a loaded 2-CPU machine (20 busy processes) that wait is a scheduling
// latency, ~20 ms, and one spawning thread managed ~50 spawns/s. THREADS threads each keep
// RATE / THREADS a second, staggered.
//
// Each thread is paced against CLOCK_MONOTONIC: its spawn i is due at start + i * THREADS / RATE;
// when it falls more than 0.1 s behind, its schedule restarts from now rather than bursting to
// catch up. At most MAX_LIVE children run at once (a thread waits while there are that many), so
// the storm cannot grow without bound. One more thread reaps. Ends early on SIGTERM / SIGINT,
// waits for the last children, then prints one line:
// `started=N failed=N reaped=N seconds=S rate=R max_live=N`.
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_LIVE 128  // ~0.4 s of spawns at 300/s: only reached when the children cannot run
#define MAX_THREADS 64
extern char **environ;
static volatile sig_atomic_t stop;
static atomic_long started, failed, reaped, live, max_live;
static atomic_int spawning_done;
static double start_time, end_time, rate_per_thread;
static char *child_argv[3];

static void on_signal(int sig) { (void)sig; stop = 1; }

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static void sleep_until(double when) {
    struct timespec t = {(time_t)when, (long)((when - (time_t)when) * 1e9)};
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &t, NULL) == EINTR && !stop) {}
}

static void *spawner(void *arg) {
    double epoch = start_time + (double)(long)arg / (rate_per_thread * MAX_THREADS);  // staggered
    long due = 0;
    while (!stop && now() < end_time) {
        if (atomic_load(&live) >= MAX_LIVE) {
            usleep(1000);
            continue;
        }
        double when = epoch + due / rate_per_thread;
        double t = now();
        if (t - when > 0.1) { epoch = t; due = 0; when = t; }  // behind: restart the schedule
        if (when > t) sleep_until(when);
        if (stop) break;
        pid_t pid;
        if (posix_spawn(&pid, child_argv[0], NULL, NULL, child_argv, environ) == 0) {
            atomic_fetch_add(&started, 1);
            long l = atomic_fetch_add(&live, 1) + 1;
            long m = atomic_load(&max_live);
            while (l > m && !atomic_compare_exchange_weak(&max_live, &m, l)) {}
        } else {
            atomic_fetch_add(&failed, 1);
        }
        due++;
    }
    return NULL;
}

static void *reaper(void *arg) {
    (void)arg;
    for (;;) {
        if (waitpid(-1, NULL, 0) > 0) {
            atomic_fetch_add(&reaped, 1);
            atomic_fetch_sub(&live, 1);
        } else if (errno == ECHILD) {
            if (atomic_load(&spawning_done)) return NULL;
            usleep(1000);
        }
    }
}

int main(int argc, char **argv) {
    if (argc < 5) {
        fprintf(stderr, "usage: storm SECONDS RATE THREADS PROGRAM [ARG]\n");
        return 2;
    }
    double seconds = atof(argv[1]), rate = atof(argv[2]);
    int threads = atoi(argv[3]);
    if (threads < 1) threads = 1;
    if (threads > MAX_THREADS) threads = MAX_THREADS;
    child_argv[0] = argv[4];
    child_argv[1] = argc > 5 ? argv[5] : NULL;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);

    rate_per_thread = rate / threads;
    start_time = now();
    end_time = start_time + seconds;
    pthread_t th[MAX_THREADS], r;
    pthread_create(&r, NULL, reaper, NULL);
    for (long i = 0; i < threads; i++) pthread_create(&th[i], NULL, spawner, (void *)(i * MAX_THREADS / threads));
    for (int i = 0; i < threads; i++) pthread_join(th[i], NULL);
    double spent = now() - start_time;
    atomic_store(&spawning_done, 1);
    pthread_join(r, NULL);
    printf("started=%ld failed=%ld reaped=%ld seconds=%.3f rate=%.1f max_live=%ld\n", atomic_load(&started),
           atomic_load(&failed), atomic_load(&reaped), spent, atomic_load(&started) / spent, atomic_load(&max_live));
    return 0;
}
