/*
 * CSprof: the C that Swift cannot call directly. Everything here is a thin,
 * prefixed wrapper (sprof_*): syscall(2) entries glibc does not export,
 * variadic callbacks, offsetof(), and the embedded BPF objects.
 */
#ifndef SPROF_SHIM_H
#define SPROF_SHIM_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define SPROF_ABI_NO_SAMPLE_STRUCT 1
#include "../../../bpf/include/sprof_abi.h"

/* perf_event_open(2) of PERF_COUNT_SW_CPU_CLOCK on one CPU (pid -1) or for one
 * task (cpu -1), sampling every `period_ns` of CPU time, disabled until the
 * BPF program is attached. Returns the fd or -errno. */
int sprof_open_cpu_clock(int pid, int cpu, uint64_t period_ns);
/* glibc malloc tuning for a long-running daemon (sprof agent). */
void sprof_malloc_limit_arenas(int arenas);
void sprof_malloc_trim(void);
/* Changes a sampling event's period in place; 0 or -errno. */
int sprof_perf_set_period(int fd, uint64_t period_ns);

/* Route libbpf's printf-style log to `sink` as formatted lines
 * (level: 0 warn, 1 info, 2 debug). NULL silences libbpf. */
typedef void (*sprof_log_sink)(int level, const char *line);
void sprof_set_libbpf_log(sprof_log_sink sink);

/* The BPF objects built by bpf/build.sh, embedded in the binary. */
const unsigned char *sprof_sprof_bpf_object(size_t *len);
/* The same program built without bpf_find_vma, for kernels before 5.17. */
const unsigned char *sprof_sprof_legacy_bpf_object(size_t *len);
const unsigned char *sprof_probe_bpf_object(size_t *len);

/* offsetof(struct sprof_sample, field) for ABITests. */
enum sprof_sample_field {
	SPROF_FIELD_KIND, SPROF_FIELD_ABI_VERSION, SPROF_FIELD_FLAGS, SPROF_FIELD_TGID,
	SPROF_FIELD_TID, SPROF_FIELD_TIME_NS, SPROF_FIELD_CPU, SPROF_FIELD_KSTACK_LEN,
	SPROF_FIELD_IP, SPROF_FIELD_SP, SPROF_FIELD_BP, SPROF_FIELD_WEIGHT,
	SPROF_FIELD_STACK_END, SPROF_FIELD_USTACK_LEN, SPROF_FIELD_USTACK_REQ,
	SPROF_FIELD_COMM, SPROF_FIELD_KSTACK, SPROF_FIELD_USTACK, SPROF_FIELD_SIZE,
};
size_t sprof_sample_offset(enum sprof_sample_field field);

/* Kernel BPF run-time stats of one program (kernel.bpf_stats_enabled). */
int sprof_prog_stats(int prog_fd, uint64_t *run_time_ns, uint64_t *run_cnt, uint32_t *verified_insns);

/* fork + execvp(argv) where the child first blocks reading a pipe: the
 * profiler learns the pid, adds it to the targets, then writes one byte to
 * *gate_fd (or closes it to abort: the child exits 127). Returns pid or -errno. */
pid_t sprof_spawn_gated(char *const argv[], int *gate_fd);

/* pidfd_open(2) (5.3+): readable once the process exits. -errno on failure. */
int sprof_pidfd_open(pid_t pid);


/* A waitpid status as a shell exit code (128 + signal when killed). */
int sprof_wait_status_code(int status);

#endif
