/*
 * Off-CPU fixture: threads that wait in known call chains, for times they
 * measure themselves (CLOCK_MONOTONIC around each wait).
 *
 *   offcpu sleep SECONDS CHUNK_MS   thread "sleeper": sleeper_main -> wait_outer
 *                                   -> wait_middle -> do_sleep -> nanosleep(CHUNK_MS)
 *                                   until SECONDS have passed
 *   offcpu pipe  COUNT DELAY_MS     thread "reader": reader_main -> read_outer ->
 *                                   blocked_read -> read(pipe), woken by thread
 *                                   "writer" which sleeps DELAY_MS before each byte
 *   offcpu spin2 SECONDS            threads "spin_a" and "spin_b" pinned to CPU 0,
 *                                   each spin_main -> spin_work for SECONDS of wall time
 *
 * Prints key=value lines (flushed): pid, tid_* for each thread, then for the
 * waiting thread waited_ns=TOTAL (wall time inside the waiting calls),
 * waited_cpu_ns (its own CPU time inside them: system-call entry and exit, and
 * a profiler's work at its switches, which a slow machine makes large) and
 * waits=N at the end. Its time off the CPU is waited_ns - waited_cpu_ns.
 * Built by the tests: gcc -O2 -fomit-frame-pointer -g -pthread (no frame pointers).
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define NOINLINE __attribute__((noinline))
/* Keeps a call from becoming a tail jump, so each function has a frame. */
#define NO_TAIL() __asm__ volatile("" ::: "memory")

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + ts.tv_nsec;
}

static uint64_t thread_cpu_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + ts.tv_nsec;
}

static uint64_t wait_cpu_ns;

static void say_tid(const char *name)
{
	printf("tid_%s=%ld\n", name, (long)syscall(SYS_gettid));
	fflush(stdout);
}

/* ---- sleep ---- */
static double sleep_seconds;
static long chunk_ms;
static uint64_t slept_ns;
static long sleeps;

NOINLINE static void do_sleep(void)
{
	struct timespec ts = { chunk_ms / 1000, (chunk_ms % 1000) * 1000000L };
	uint64_t c0 = thread_cpu_ns(), t0 = now_ns();
	nanosleep(&ts, NULL);
	slept_ns += now_ns() - t0;
	wait_cpu_ns += thread_cpu_ns() - c0;
	sleeps++;
	NO_TAIL();
}

NOINLINE static void wait_middle(void) { do_sleep(); NO_TAIL(); }
NOINLINE static void wait_outer(void) { wait_middle(); NO_TAIL(); }

NOINLINE static void *sleeper_main(void *arg)
{
	(void)arg;
	pthread_setname_np(pthread_self(), "sleeper");
	say_tid("sleeper");
	uint64_t end = now_ns() + (uint64_t)(sleep_seconds * 1e9);
	while (now_ns() < end)
		wait_outer();
	NO_TAIL();
	return NULL;
}

/* ---- pipe ---- */
static int fds[2];
static long rounds, delay_ms;
static uint64_t read_wait_ns;
static long reads;

NOINLINE static void blocked_read(void)
{
	char c;
	uint64_t c0 = thread_cpu_ns(), t0 = now_ns();
	if (read(fds[0], &c, 1) != 1)
		exit(3);
	read_wait_ns += now_ns() - t0;
	wait_cpu_ns += thread_cpu_ns() - c0;
	reads++;
	NO_TAIL();
}

NOINLINE static void read_outer(void) { blocked_read(); NO_TAIL(); }

NOINLINE static void *reader_main(void *arg)
{
	(void)arg;
	pthread_setname_np(pthread_self(), "reader");
	say_tid("reader");
	for (long i = 0; i < rounds; i++)
		read_outer();
	NO_TAIL();
	return NULL;
}

static void *writer_main(void *arg)
{
	(void)arg;
	pthread_setname_np(pthread_self(), "writer");
	say_tid("writer");
	for (long i = 0; i < rounds; i++) {
		struct timespec ts = { delay_ms / 1000, (delay_ms % 1000) * 1000000L };
		nanosleep(&ts, NULL);
		if (write(fds[1], "x", 1) != 1)
			exit(4);
	}
	return NULL;
}

/* ---- spin2 ---- */
static double spin_seconds;
static volatile uint64_t sink;

NOINLINE static void spin_work(uint64_t end)
{
	uint64_t x = 1;
	while (now_ns() < end)
		for (int i = 0; i < 1000; i++)
			x = x * 6364136223846793005ULL + 1442695040888963407ULL;
	sink = x;
	NO_TAIL();
}

NOINLINE static void *spin_main(void *arg)
{
	const char *name = arg;
	cpu_set_t set;
	CPU_ZERO(&set);
	CPU_SET(0, &set);
	if (pthread_setaffinity_np(pthread_self(), sizeof(set), &set) != 0)
		exit(5);
	pthread_setname_np(pthread_self(), name);
	say_tid(name);
	spin_work(now_ns() + (uint64_t)(spin_seconds * 1e9));
	NO_TAIL();
	return NULL;
}

int main(int argc, char **argv)
{
	pthread_t a, b;

	if (argc < 3) {
		fprintf(stderr, "usage: offcpu sleep SECONDS CHUNK_MS | pipe COUNT DELAY_MS | spin2 SECONDS\n");
		return 2;
	}
	printf("pid=%d\n", getpid());
	fflush(stdout);
	/* Give the profiler a moment to attach before the first wait. */
	usleep(300000);
	if (strcmp(argv[1], "sleep") == 0 && argc >= 4) {
		sleep_seconds = atof(argv[2]);
		chunk_ms = atol(argv[3]);
		pthread_create(&a, NULL, sleeper_main, NULL);
		pthread_join(a, NULL);
		printf("waited_ns=%llu\nwaited_cpu_ns=%llu\nwaits=%ld\n", (unsigned long long)slept_ns,
		       (unsigned long long)wait_cpu_ns, sleeps);
	} else if (strcmp(argv[1], "pipe") == 0 && argc >= 4) {
		rounds = atol(argv[2]);
		delay_ms = atol(argv[3]);
		if (pipe(fds) != 0)
			return 3;
		pthread_create(&a, NULL, reader_main, NULL);
		pthread_create(&b, NULL, writer_main, NULL);
		pthread_join(a, NULL);
		pthread_join(b, NULL);
		printf("waited_ns=%llu\nwaited_cpu_ns=%llu\nwaits=%ld\n", (unsigned long long)read_wait_ns,
		       (unsigned long long)wait_cpu_ns, reads);
	} else if (strcmp(argv[1], "spin2") == 0) {
		spin_seconds = atof(argv[2]);
		pthread_create(&a, NULL, spin_main, "spin_a");
		pthread_create(&b, NULL, spin_main, "spin_b");
		pthread_join(a, NULL);
		pthread_join(b, NULL);
	} else {
		fprintf(stderr, "offcpu: unknown mode %s\n", argv[1]);
		return 2;
	}
	printf("done\n");
	fflush(stdout);
	return 0;
}
