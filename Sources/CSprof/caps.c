#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <linux/capability.h>
#include <linux/securebits.h>

#include "sprof_caps.h"

/* The capabilities man page (capabilities(7)) and include/uapi/linux/capability.h:
 * version 3 takes two struct __user_cap_data_struct, low and high 32 bits. */
int sprof_caps_get(uint64_t *effective, uint64_t *permitted, uint64_t *inheritable)
{
	struct __user_cap_header_struct head = { .version = _LINUX_CAPABILITY_VERSION_3, .pid = 0 };
	struct __user_cap_data_struct data[2];

	memset(data, 0, sizeof(data));
	if (syscall(SYS_capget, &head, data) != 0)
		return -errno;
	*effective = (uint64_t)data[1].effective << 32 | data[0].effective;
	*permitted = (uint64_t)data[1].permitted << 32 | data[0].permitted;
	*inheritable = (uint64_t)data[1].inheritable << 32 | data[0].inheritable;
	return 0;
}

/* What every thread applies; written before the first signal is sent. */
static uint64_t plan_keep;
static int plan_last_cap;
static int plan_bounding;

/* The answer of the one thread signalled at a time. */
static atomic_int answer_tid;
static int answer_step;
static int answer_error;
static atomic_int broadcasting;
static struct sigaction previous_sigsys;

/* Applies the plan to the calling thread; only raw system calls, so that it
 * can run in a signal handler. Returns the failed step (errno in *error). */
static enum sprof_caps_step apply_to_self(int *error)
{
	if (plan_bounding) {
		/* kernel/sys.c prctl_set -> cap_task_prctl (security/commoncap.c):
		 * PR_CAPBSET_DROP needs CAP_SETPCAP; EINVAL for a number the kernel
		 * does not know. */
		for (int cap = 0; cap <= plan_last_cap && cap < 64; cap++) {
			/* Already out (a thread made by one that dropped): dropping
			 * again would need the CAP_SETPCAP it no longer has. */
			if ((plan_keep & (1ULL << cap)) || syscall(SYS_prctl, PR_CAPBSET_READ, cap, 0, 0, 0) != 1)
				continue;
			if (syscall(SYS_prctl, PR_CAPBSET_DROP, cap, 0, 0, 0) != 0 && errno != EINVAL) {
				*error = errno;
				return SPROF_CAPS_BOUNDING;
			}
		}
		/* Root gains nothing by execve (NOROOT), a uid change does not
		 * touch the sets (NO_SETUID_FIXUP), no ambient raise; each locked,
		 * and KEEP_CAPS locked as it is (off). Bits already set stay. */
		long old = syscall(SYS_prctl, PR_GET_SECUREBITS, 0, 0, 0, 0);
		if (old < 0) {
			*error = errno;
			return SPROF_CAPS_SECUREBITS;
		}
		unsigned long bits = (unsigned long)old | SECBIT_NOROOT | SECBIT_NOROOT_LOCKED | SECBIT_NO_SETUID_FIXUP
			| SECBIT_NO_SETUID_FIXUP_LOCKED | SECBIT_KEEP_CAPS_LOCKED | SECBIT_NO_CAP_AMBIENT_RAISE
			| SECBIT_NO_CAP_AMBIENT_RAISE_LOCKED;
		if (bits != (unsigned long)old && syscall(SYS_prctl, PR_SET_SECUREBITS, bits, 0, 0, 0) != 0) {
			*error = errno;
			return SPROF_CAPS_SECUREBITS;
		}
	}
	/* Ambient capabilities are 4.3+; EINVAL before. */
	if (syscall(SYS_prctl, PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0 && errno != EINVAL) {
		*error = errno;
		return SPROF_CAPS_AMBIENT;
	}
	if (syscall(SYS_prctl, PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) {
		*error = errno;
		return SPROF_CAPS_NO_NEW_PRIVS;
	}
	struct __user_cap_header_struct head = { .version = _LINUX_CAPABILITY_VERSION_3, .pid = 0 };
	struct __user_cap_data_struct data[2];
	memset(data, 0, sizeof(data));
	data[0].effective = data[0].permitted = (uint32_t)plan_keep;
	data[1].effective = data[1].permitted = (uint32_t)(plan_keep >> 32);
	if (syscall(SYS_capset, &head, data) != 0) {
		*error = errno;
		return SPROF_CAPS_CAPSET;
	}
	return SPROF_CAPS_OK;
}

static void on_sigsys(int sig, siginfo_t *info, void *context)
{
	int saved = errno;
	/* Ours: sent by this process with tgkill(2) while broadcasting. A real
	 * SIGSYS (seccomp) goes to whatever was installed before. */
	if (!atomic_load(&broadcasting) || info->si_code != SI_TKILL || info->si_pid != getpid()) {
		if (previous_sigsys.sa_flags & SA_SIGINFO) {
			previous_sigsys.sa_sigaction(sig, info, context);
		} else if (previous_sigsys.sa_handler != SIG_IGN && previous_sigsys.sa_handler != SIG_DFL) {
			previous_sigsys.sa_handler(sig);
		} else if (previous_sigsys.sa_handler == SIG_DFL) {
			sigaction(SIGSYS, &previous_sigsys, NULL);
			syscall(SYS_tgkill, getpid(), syscall(SYS_gettid), SIGSYS);
		}
		errno = saved;
		return;
	}
	int error = 0;
	answer_step = apply_to_self(&error);
	answer_error = error;
	atomic_store(&answer_tid, (int)syscall(SYS_gettid));
	errno = saved;
}

static int task_exists(pid_t tid)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/self/task/%d", (int)tid);
	return access(path, F_OK) == 0;
}

static int fail(struct sprof_caps_result *out, enum sprof_caps_step step, int error, pid_t tid)
{
	out->step = step;
	out->error = error;
	out->tid = tid;
	return -1;
}

int sprof_caps_restrict_all_threads(uint64_t keep, int last_cap, int bounding, struct sprof_caps_result *out)
{
	memset(out, 0, sizeof(*out));
	plan_keep = keep;
	plan_last_cap = last_cap;
	plan_bounding = bounding;
	pid_t self = (pid_t)syscall(SYS_gettid);

	struct sigaction action;
	memset(&action, 0, sizeof(action));
	action.sa_sigaction = on_sigsys;
	action.sa_flags = SA_SIGINFO | SA_RESTART;
	sigemptyset(&action.sa_mask);
	if (sigaction(SIGSYS, &action, &previous_sigsys) != 0)
		return fail(out, SPROF_CAPS_SIGNAL, errno, self);
	atomic_store(&broadcasting, 1);

	int error = 0;
	enum sprof_caps_step step = apply_to_self(&error);
	int result = 0;
	if (step != SPROF_CAPS_OK) {
		result = fail(out, step, error, self);
		goto done;
	}
	out->threads = 1;

	/* The threads done (or gone), the caller first. */
	size_t count = 1, capacity = 64;
	pid_t *done_tids = malloc(capacity * sizeof(pid_t));
	if (!done_tids) {
		result = fail(out, SPROF_CAPS_THREADS, ENOMEM, self);
		goto done;
	}
	done_tids[0] = self;
	for (;;) {
		DIR *dir = opendir("/proc/self/task");
		if (!dir) {
			result = fail(out, SPROF_CAPS_THREADS, errno, self);
			break;
		}
		int found = 0;
		struct dirent *entry;
		while ((entry = readdir(dir)) != NULL) {
			pid_t tid = (pid_t)atoi(entry->d_name);
			if (tid <= 0)
				continue;
			int seen = 0;
			for (size_t i = 0; i < count && !seen; i++)
				seen = done_tids[i] == tid;
			if (seen)
				continue;
			if (count == capacity) {
				pid_t *grown = realloc(done_tids, capacity * 2 * sizeof(pid_t));
				if (!grown) {
					result = fail(out, SPROF_CAPS_THREADS, ENOMEM, tid);
					break;
				}
				done_tids = grown;
				capacity *= 2;
			}
			done_tids[count++] = tid;
			found++;
			atomic_store(&answer_tid, 0);
			if (syscall(SYS_tgkill, getpid(), tid, SIGSYS) != 0) {
				if (errno == ESRCH)
					continue; /* it exited */
				result = fail(out, SPROF_CAPS_SIGNAL, errno, tid);
				break;
			}
			/* A thread runs the handler when it next returns to user space:
			 * at once unless it has SIGSYS blocked. 2 s, then it is a
			 * thread that will never answer -- unless it exited meanwhile. */
			int answered = 0;
			for (int wait = 0; wait < 20000; wait++) {
				if (atomic_load(&answer_tid) == tid) {
					answered = 1;
					break;
				}
				struct timespec pause = { 0, 100000 };
				nanosleep(&pause, NULL);
			}
			if (!answered) {
				if (!task_exists(tid))
					continue;
				result = fail(out, SPROF_CAPS_NO_ANSWER, 0, tid);
				break;
			}
			if (answer_step != SPROF_CAPS_OK) {
				result = fail(out, answer_step, answer_error, tid);
				break;
			}
			out->threads++;
		}
		closedir(dir);
		if (result != 0 || found == 0)
			break;
	}
	free(done_tids);
done:
	atomic_store(&broadcasting, 0);
	sigaction(SIGSYS, &previous_sigsys, NULL);
	return result;
}
