/*
 * Capabilities without libcap: capget(2)/capset(2) with
 * _LINUX_CAPABILITY_VERSION_3 and the prctl(2) calls that bound what an
 * execve(2) could give back (capabilities(7)).
 *
 * Linux keeps credentials per thread (struct cred hangs off task_struct), and
 * capset(2) and these prctl(2) calls change the calling thread only; glibc
 * broadcasts setuid(2) to every thread but not these. So the drop is applied
 * on every thread of the process, each thread changing its own credentials in
 * a SIGSYS handler (the signal libcap's psx uses for the same reason:
 * libdispatch's worker threads block every signal but the synchronous ones,
 * SIGSYS among those left open -- _dispatch_pthread_sigmask).
 */
#ifndef SPROF_CAPS_H
#define SPROF_CAPS_H

#include <stdint.h>
#include <sys/types.h>

/* The calling thread's capability sets (capget(2), version 3: two 32-bit
 * words each, bit N = capability N). 0 or -errno. */
int sprof_caps_get(uint64_t *effective, uint64_t *permitted, uint64_t *inheritable);

/* Which step of a drop failed. */
enum sprof_caps_step {
	SPROF_CAPS_OK = 0,
	SPROF_CAPS_BOUNDING = 1,   /* prctl(PR_CAPBSET_DROP) */
	SPROF_CAPS_SECUREBITS = 2, /* prctl(PR_SET_SECUREBITS) */
	SPROF_CAPS_AMBIENT = 3,    /* prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL) */
	SPROF_CAPS_NO_NEW_PRIVS = 4, /* prctl(PR_SET_NO_NEW_PRIVS) */
	SPROF_CAPS_CAPSET = 5,     /* capset(2) */
	SPROF_CAPS_SIGNAL = 6,     /* sigaction(SIGSYS) or tgkill(2) */
	SPROF_CAPS_THREADS = 7,    /* listing /proc/self/task */
	SPROF_CAPS_NO_ANSWER = 8,  /* a thread did not run the handler (SIGSYS blocked?) */
};

struct sprof_caps_result {
	enum sprof_caps_step step; /* SPROF_CAPS_OK on success */
	int error;                 /* errno of the failed step */
	pid_t tid;                 /* the thread it failed on */
	int threads;               /* threads changed (the caller included) */
};

/* On every thread of the process: drops from the bounding set every
 * capability up to `last_cap` not in `keep` and locks the securebits
 * (SECBIT_NOROOT, SECBIT_NO_SETUID_FIXUP, SECBIT_NO_CAP_AMBIENT_RAISE, each
 * locked, and SECBIT_KEEP_CAPS_LOCKED) when `bounding` is nonzero (both need
 * CAP_SETPCAP); clears the ambient set; sets no_new_privs; and sets the
 * permitted and effective sets to `keep`, the inheritable set to nothing.
 * Threads created meanwhile are found by listing /proc/self/task again until
 * a pass finds none new. Returns 0, or -1 with `out` saying where. */
int sprof_caps_restrict_all_threads(uint64_t keep, int last_cap, int bounding, struct sprof_caps_result *out);

#endif
