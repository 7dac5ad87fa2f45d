/* Symbolization fixture (C): a chain with three levels of inlining inside
 * one real function, a static function, and a libc call through the PLT.
 * Recipe: build.sh. */
#include <stdio.h>
#include <stdlib.h>

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

int main(int argc, char **argv)
{
	long v[64];
	for (int i = 0; i < 64; i++)
		v[i] = (long)hot_function((unsigned long)(i + argc));
	qsort(v, 64, sizeof v[0], compare_longs);
	printf("%ld\n", v[0]);
	return 0;
}
