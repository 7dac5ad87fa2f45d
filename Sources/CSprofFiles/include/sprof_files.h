// The C that SprofELF needs and Swift cannot call directly: openat2(2),
// which glibc 2.36 does not wrap (syscall(2) is variadic, so Swift does not
// import it), and a SIGBUS guard for read-only file mappings (a signal
// handler must read siginfo_t's si_addr, a union member Swift cannot name).
// Knows nothing of BPF: the symbolization library links it on its own.
#ifndef SPROF_FILES_H
#define SPROF_FILES_H

#include <stddef.h>
#include <stdint.h>

/// openat2(2) (Linux 5.6): `how.flags = flags`, `how.resolve = resolve`,
/// mode 0. Returns the fd, or -errno (-ENOSYS on a kernel without it).
int sprof_openat2(int dirfd, const char *path, uint64_t flags, uint64_t resolve);

/// O_PATH (a _GNU_SOURCE flag the Swift Glibc module does not export).
int sprof_o_path(void);

/// Installs the SIGBUS handler once (idempotent). Returns 0 or -errno.
int sprof_guard_install(void);

/// Guards [base, base + length): a SIGBUS from reading it (the file was
/// truncated under the mapping by its owner; mmap(2), "SIGBUS") is answered
/// by mapping a zero page over the faulting page, so the reader sees zeros
/// instead of the process dying. Returns 0, or -1 when the table is full
/// (the range is then unguarded).
int sprof_guard_add(const void *base, size_t length);

/// Stops guarding the range that starts at `base` (before munmap).
void sprof_guard_remove(const void *base);

/// How many faulting pages were replaced by zero pages since start.
uint64_t sprof_guard_hits(void);

#endif
