/* Spends most of its time in the kernel for argv[1] seconds: getppid() and read() of /dev/zero. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#define NOINL __attribute__((noinline, noipa))
static char buf[1 << 16];
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec * 1e-9; }

NOINL long in_kernel(int fd) {
    long n = 0;
    for (int i = 0; i < 64; i++) { n += getppid(); n += read(fd, buf, sizeof buf); }
    return n;
}

int main(int argc, char **argv) {
    double seconds = argc > 1 ? atof(argv[1]) : 2.0;
    int fd = open("/dev/zero", O_RDONLY);
    printf("pid=%d\n", getpid());
    fflush(stdout);
    double end = now() + seconds;
    long n = 0;
    while (now() < end) n += in_kernel(fd);
    return n == 42;
}
