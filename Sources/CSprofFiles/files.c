#define _GNU_SOURCE
#include "sprof_files.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef SYS_openat2
#define SYS_openat2 437 /* arch/x86/entry/syscalls/syscall_64.tbl */
#endif

/* include/uapi/linux/openat2.h */
struct sprof_open_how {
    uint64_t flags;
    uint64_t mode;
    uint64_t resolve;
};

int sprof_openat2(int dirfd, const char *path, uint64_t flags, uint64_t resolve) {
    struct sprof_open_how how = { .flags = flags, .mode = 0, .resolve = resolve };
    for (;;) {
        long fd = syscall(SYS_openat2, dirfd, path, &how, sizeof how);
        if (fd >= 0) return (int)fd;
        if (errno != EINTR) return -errno;
    }
}

int sprof_o_path(void) { return O_PATH; }

/* The guarded ranges: a fixed table, so the handler reads it without locks
   or allocation. A slot is claimed by a CAS on `base`; `length` is written
   after it and cleared before it, so the handler sees either a whole range
   or none (length 0 matches nothing). */
#define GUARD_SLOTS 8192
static struct {
    _Atomic uintptr_t base;
    _Atomic size_t length;
} guard_slots[GUARD_SLOTS];
static _Atomic uint64_t guard_hits;
static struct sigaction previous_action;
static pthread_once_t guard_once = PTHREAD_ONCE_INIT;
static int guard_install_error;

static void guard_handler(int sig, siginfo_t *info, void *context) {
    uintptr_t address = (uintptr_t)info->si_addr;
    for (int i = 0; i < GUARD_SLOTS; i++) {
        uintptr_t base = atomic_load_explicit(&guard_slots[i].base, memory_order_acquire);
        if (base == 0 || address < base) continue;
        size_t length = atomic_load_explicit(&guard_slots[i].length, memory_order_acquire);
        if (address - base >= length) continue;
        long page = sysconf(_SC_PAGESIZE); /* async-signal-safe (signal-safety(7)) */
        uintptr_t start = address & ~((uintptr_t)page - 1);
        /* mmap is a plain system call; MAP_FIXED replaces the file's page. */
        void *p = mmap((void *)start, (size_t)page, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
        if (p != MAP_FAILED) {
            atomic_fetch_add_explicit(&guard_hits, 1, memory_order_relaxed);
            return; /* the faulting load runs again and reads zeros */
        }
        break;
    }
    /* Not ours: what was installed before us, else the default (die). */
    if (previous_action.sa_flags & SA_SIGINFO) {
        if (previous_action.sa_sigaction) { previous_action.sa_sigaction(sig, info, context); return; }
    } else if (previous_action.sa_handler != SIG_DFL && previous_action.sa_handler != SIG_IGN) {
        previous_action.sa_handler(sig);
        return;
    }
    signal(SIGBUS, SIG_DFL); /* returning re-raises the fault, now fatal */
}

static void guard_install_once(void) {
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_sigaction = guard_handler;
    action.sa_flags = SA_SIGINFO | SA_NODEFER;
    sigemptyset(&action.sa_mask);
    if (sigaction(SIGBUS, &action, &previous_action) != 0) guard_install_error = -errno;
}

int sprof_guard_install(void) {
    pthread_once(&guard_once, guard_install_once);
    return guard_install_error;
}

int sprof_guard_add(const void *base, size_t length) {
    if (base == NULL || length == 0) return -1;
    for (int i = 0; i < GUARD_SLOTS; i++) {
        uintptr_t expected = 0;
        if (atomic_compare_exchange_strong(&guard_slots[i].base, &expected, (uintptr_t)base)) {
            atomic_store_explicit(&guard_slots[i].length, length, memory_order_release);
            return 0;
        }
    }
    return -1;
}

void sprof_guard_remove(const void *base) {
    for (int i = 0; i < GUARD_SLOTS; i++) {
        if (atomic_load_explicit(&guard_slots[i].base, memory_order_acquire) == (uintptr_t)base) {
            atomic_store_explicit(&guard_slots[i].length, 0, memory_order_release);
            atomic_store_explicit(&guard_slots[i].base, 0, memory_order_release);
            return;
        }
    }
}

uint64_t sprof_guard_hits(void) {
    return atomic_load_explicit(&guard_hits, memory_order_relaxed);
}
