/* A shared library loaded late: sleeps argv[2] seconds (default 0.5), so a recorder that
 * started with the process sees the library appear mid-recording; then dlopen()s
 * libunwind_plugin.so from the executable's own directory and spins for argv[1] seconds in
 *   main -> call_plugin -> plugin_entry (library) -> plugin_leaf (library).
 * Prints pid=, then loaded=<address of plugin_entry> once the library is mapped. */
#define _GNU_SOURCE
#include "common.h"
#include <dlfcn.h>
#include <limits.h>
#include <string.h>

volatile uint64_t sink;
typedef uint64_t (*plugin_fn)(uint64_t);

NOINL uint64_t call_plugin(plugin_fn entry, double seconds) {
    double end = now() + seconds;
    uint64_t a = 1;
    while (now() < end) a += entry(a);
    return a;
}

int main(int argc, char **argv) {
    double seconds = seconds_arg(argc, argv);
    double delay = argc > 2 ? atof(argv[2]) : 0.5;
    print_pid();
    struct timespec d = { (time_t)delay, (long)((delay - (time_t)delay) * 1e9) };
    nanosleep(&d, NULL);

    char path[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", path, sizeof path - 32);
    if (n <= 0) { perror("readlink /proc/self/exe"); return 1; }
    path[n] = 0;
    strcpy(strrchr(path, '/') + 1, "libunwind_plugin.so");
    void *lib = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!lib) { fprintf(stderr, "dlopen: %s\n", dlerror()); return 1; }
    plugin_fn entry = (plugin_fn)dlsym(lib, "plugin_entry");
    if (!entry) { fprintf(stderr, "dlsym: %s\n", dlerror()); return 1; }
    printf("loaded=%p\n", (void *)entry);
    fflush(stdout);
    sink = call_plugin(entry, seconds);
    return 0;
}
