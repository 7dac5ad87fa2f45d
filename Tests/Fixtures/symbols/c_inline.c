/* Symbolization fixture (C): a chain with three levels of inlining inside
 * one real function, a static function, and a libc call through the PLT.
 * With an argument, prints pid=<pid>, flushes, then calls hot_function for
 * that many seconds (for recording). Recipe: build.sh. */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static inline __attribute__((always_inline)) unsigned long mix(unsigned long x)
{
	return x * 6364136223846793005UL + 1442695040888963407UL;
}

static inline __attribute__((always_inline)) unsigned long inner_inline(unsigned long x)
{
	for (int i = 0; i < 64; i++)
		x = mix(x) ^ (x >> 13);
	return x;
}

static inline __attribute__((always_inline)) unsigned long outer_inline(unsigned long x)
{
	x = inner_inline(x) ^ (x >> 7);
	return x + 3;
}

__attribute__((noinline)) unsigned long hot_function(unsigned long x)
{
	return outer_inline(x) + 1;
}

static __attribute__((noinline)) int compare_longs(const void *a, const void *b)
{
	long x = *(const long *)a, y = *(const long *)b;
	return (x > y) - (x < y);
}

static double now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec + t.tv_nsec * 1e-9;
}

int main(int argc, char **argv)
{
	if (argc > 1) {
		printf("pid=%d\n", getpid());
		fflush(stdout);
		double end = now() + atof(argv[1]);
		unsigned long x = 1;
		while (now() < end)
			for (int i = 0; i < 1000; i++)
				x = hot_function(x);
		return x == 42;
	}
	long v[64];
	for (int i = 0; i < 64; i++)
		v[i] = (long)hot_function((unsigned long)(i + argc));
	qsort(v, 64, sizeof v[0], compare_longs);
	printf("%ld\n", v[0]);
	return 0;
}
