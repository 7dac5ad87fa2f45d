#define _GNU_SOURCE
#include <sys/ioctl.h>
#include <malloc.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <signal.h>
#include <sys/wait.h>
#include <sys/auxv.h>
#include <string.h>
#include <unistd.h>
#include <sys/syscall.h>
#include <linux/perf_event.h>
#include <bpf/libbpf.h>
#include <bpf/bpf.h>

/* The full ABI, sample struct included, for offsetof(). */
#undef SPROF_ABI_NO_SAMPLE_STRUCT
#include "../../bpf/include/sprof_abi.h"
#define SPROF_ABI_NO_SAMPLE_STRUCT 1
#include "sprof_shim.h"

int sprof_open_cpu_clock(int pid, int cpu, uint64_t period_ns)
{
	struct perf_event_attr attr;

	memset(&attr, 0, sizeof(attr));
	attr.size = sizeof(attr);
	attr.type = PERF_TYPE_SOFTWARE;
	attr.config = PERF_COUNT_SW_CPU_CLOCK;
	attr.sample_period = period_ns; /* cpu-clock counts nanoseconds */
	attr.disabled = 1;
	/* glibc has no wrapper for perf_event_open(2) */
	long fd = syscall(SYS_perf_event_open, &attr, pid, cpu, -1, PERF_FLAG_FD_CLOEXEC);
	return fd < 0 ? -errno : (int)fd;
}

int sprof_perf_set_period(int fd, uint64_t period_ns)
{
	/* PERF_EVENT_IOC_PERIOD (perf_event_open(2)): the new period takes effect
	 * at the next overflow, without closing the event or detaching BPF. */
	return ioctl(fd, PERF_EVENT_IOC_PERIOD, &period_ns) < 0 ? -errno : 0;
}

void sprof_malloc_limit_arenas(int arenas)
{
	/* glibc's mallopt(3): M_ARENA_MAX bounds the per-thread arenas. */
	mallopt(M_ARENA_MAX, arenas);
}

void sprof_malloc_trim(void)
{
	malloc_trim(0);
}

static sprof_log_sink log_sink;

static int libbpf_print(enum libbpf_print_level level, const char *fmt, va_list args)
{
	char *buf = NULL;
	if (!log_sink)
		return 0;
	/* the verifier log arrives as one large message: no fixed buffer */
	int n = vasprintf(&buf, fmt, args);
	if (n < 0)
		return 0;
	/* libbpf lines end with '\n'; the sink gets them without */
	size_t len = strlen(buf);
	while (len > 0 && buf[len - 1] == '\n')
		buf[--len] = 0;
	log_sink(level == LIBBPF_WARN ? 0 : level == LIBBPF_INFO ? 1 : 2, buf);
	free(buf);
	return n;
}

void sprof_set_libbpf_log(sprof_log_sink sink)
{
	log_sink = sink;
	libbpf_set_print(libbpf_print);
}

size_t sprof_sample_offset(enum sprof_sample_field field)
{
	switch (field) {
	case SPROF_FIELD_KIND: return offsetof(struct sprof_sample, kind);
	case SPROF_FIELD_ABI_VERSION: return offsetof(struct sprof_sample, abi_version);
	case SPROF_FIELD_FLAGS: return offsetof(struct sprof_sample, flags);
	case SPROF_FIELD_TGID: return offsetof(struct sprof_sample, tgid);
	case SPROF_FIELD_TID: return offsetof(struct sprof_sample, tid);
	case SPROF_FIELD_TIME_NS: return offsetof(struct sprof_sample, time_ns);
	case SPROF_FIELD_CPU: return offsetof(struct sprof_sample, cpu);
	case SPROF_FIELD_KSTACK_LEN: return offsetof(struct sprof_sample, kstack_len);
	case SPROF_FIELD_IP: return offsetof(struct sprof_sample, ip);
	case SPROF_FIELD_SP: return offsetof(struct sprof_sample, sp);
	case SPROF_FIELD_BP: return offsetof(struct sprof_sample, bp);
	case SPROF_FIELD_WEIGHT: return offsetof(struct sprof_sample, weight);
	case SPROF_FIELD_STACK_END: return offsetof(struct sprof_sample, stack_end);
	case SPROF_FIELD_USTACK_LEN: return offsetof(struct sprof_sample, ustack_len);
	case SPROF_FIELD_USTACK_REQ: return offsetof(struct sprof_sample, ustack_req);
	case SPROF_FIELD_COMM: return offsetof(struct sprof_sample, comm);
	case SPROF_FIELD_KSTACK: return offsetof(struct sprof_sample, kstack);
	case SPROF_FIELD_USTACK: return offsetof(struct sprof_sample, ustack);
	case SPROF_FIELD_SIZE: return sizeof(struct sprof_sample);
	}
	return (size_t)-1;
}

int sprof_prog_stats(int prog_fd, uint64_t *run_time_ns, uint64_t *run_cnt, uint32_t *verified_insns)
{
	struct bpf_prog_info info;
	__u32 len = sizeof(info);

	memset(&info, 0, sizeof(info));
	int err = bpf_obj_get_info_by_fd(prog_fd, &info, &len);
	if (err)
		return err;
	*run_time_ns = info.run_time_ns;
	*run_cnt = info.run_cnt;
	*verified_insns = info.verified_insns;
	return 0;
}

pid_t sprof_spawn_gated(char *const argv[], int *gate_fd)
{
	int p[2];
	if (pipe2(p, O_CLOEXEC))
		return -errno;
	pid_t pid = fork();
	if (pid < 0) {
		int e = errno;
		close(p[0]);
		close(p[1]);
		return -e;
	}
	if (pid == 0) {
		/* child: only async-signal-safe calls between fork and exec */
		char c;
		close(p[1]);
		signal(SIGINT, SIG_DFL);
		signal(SIGTERM, SIG_DFL);
		if (read(p[0], &c, 1) != 1)
			_exit(127); /* the profiler gave up before starting us */
		execvp(argv[0], argv);
		_exit(errno == ENOENT ? 127 : 126);
	}
	close(p[0]);
	*gate_fd = p[1];
	return pid;
}

int sprof_pidfd_open(pid_t pid)
{
#ifdef SYS_pidfd_open
	long fd = syscall(SYS_pidfd_open, pid, 0);
	return fd < 0 ? -errno : (int)fd;
#else
	return -ENOSYS;
#endif
}

int sprof_wait_status_code(int status)
{
	if (WIFEXITED(status))
		return WEXITSTATUS(status);
	if (WIFSIGNALED(status))
		return 128 + WTERMSIG(status);
	return -1;
}
