/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * sprof kernel/user ABI: the ONLY definition of what the BPF program hands to
 * user space. Included by bpf/sprof.bpf.c (clang -target bpf) and, through the
 * CSprof shim module, by Swift. The static asserts below pin every offset on
 * both compilers; Tests/SprofTests/ABITests.swift checks the Swift decoder
 * against offsetof() from the host compiler.
 *
 * Change anything here => bump SPROF_ABI_VERSION and run bpf/build.sh.
 */
#ifndef SPROF_ABI_H
#define SPROF_ABI_H

#include <linux/types.h>

#define SPROF_ABI_VERSION 3

/* TASK_COMM_LEN in include/linux/sched.h */
#define SPROF_COMM_LEN 16
/* PERF_MAX_STACK_DEPTH (kernel.perf_event_max_stack default) in include/uapi/linux/perf_event.h */
#define SPROF_KSTACK_MAX 127
/* Largest user-stack copy: 64 KiB, a power of two so offsets can be masked. */
#define SPROF_USTACK_MAX 65536
#define SPROF_USTACK_DEFAULT 32768
#define SPROF_PAGE_SIZE 4096
/* A PERF_RECORD_SAMPLE's size is a __u16 (struct perf_event_header in
 * include/uapi/linux/perf_event.h), so the perf-buffer fallback (< 5.8)
 * cannot carry more than ~64 KiB in one record; 60 KiB of stack leaves room
 * for our header, the kernel stack and perf's own framing. */
#define SPROF_PERFBUF_USTACK_MAX 61440
/* x86_64 THREAD_SIZE (PAGE_SIZE << 2) without KASAN, arch/x86/include/asm/page_64_types.h;
 * used only by the saved-registers fallback, overridable from user space. */
#define SPROF_THREAD_SIZE_DEFAULT 16384

enum sprof_kind {
	SPROF_KIND_CPU = 1,	/* perf_event sample: the task was on CPU */
	SPROF_KIND_OFFCPU = 2,	/* scheduler switch: the task waited `weight` ns */
};

enum sprof_sample_flags {
	SPROF_F_KERNEL_MODE = 1u << 0,	 /* the sample interrupted kernel code */
	SPROF_F_USER_REGS = 1u << 1,	 /* ip/sp/bp hold the task's user registers */
	SPROF_F_USTACK_FAULT = 1u << 2,	 /* the copy stopped early at a page that could not be read */
	SPROF_F_USTACK_TO_END = 1u << 3, /* the copy reached the end of the stack mapping */
	SPROF_F_KSTACK_ERR = 1u << 4,	 /* bpf_get_stack failed */
	SPROF_F_VIA_FIND_VMA = 1u << 5,	 /* copy bounded with bpf_find_vma */
	SPROF_F_VIA_SAVED_REGS = 1u << 6,/* user regs read from the task's saved pt_regs, not bpf_task_pt_regs */
	SPROF_F_TASK_PT_REGS = 1u << 7,	 /* user regs read with bpf_task_pt_regs */
	/* Off-CPU records only: */
	SPROF_F_OFFCPU_RUNNABLE = 1u << 8, /* involuntary: preempted, still runnable while it waited */
	SPROF_F_OFFCPU_UNINTERRUPTIBLE = 1u << 9, /* blocked in TASK_UNINTERRUPTIBLE (D: I/O, some locks) */
	SPROF_F_USTACK_DEFERRED = 1u << 10, /* user stack copied when the task next ran, before any user code (its user registers unchanged) */
	SPROF_F_USTACK_MISSED = 1u << 11, /* user registers from the switch, but the task ran user code before its stack could be copied */
	SPROF_F_OFFCPU_ONGOING = 1u << 12, /* user space only: a wait still going on when the recording stopped, cut there; no kernel stack */
};

/* Swift imports C arrays as tuples; a 65536-element tuple is a burden on the
 * compiler, so the Swift-facing shim hides the sample struct and decodes the
 * bytes with offsets that ABITests checks against offsetof() here. */
#ifndef SPROF_ABI_NO_SAMPLE_STRUCT
/*
 * One sample. The BPF program fills it in a per-CPU scratch slot and emits the
 * first SPROF_SAMPLE_HDR_SIZE + ustack_len bytes.
 */
struct sprof_sample {
	__u16 kind;		/* enum sprof_kind */
	__u16 abi_version;	/* SPROF_ABI_VERSION */
	__u32 flags;		/* enum sprof_sample_flags */
	__u32 tgid;
	__u32 tid;
	__u64 time_ns;		/* bpf_ktime_get_ns(): CLOCK_MONOTONIC */
	__u32 cpu;
	__u32 kstack_len;	/* bytes used in kstack (8 per frame) */
	__u64 ip;		/* user registers (valid with SPROF_F_USER_REGS) */
	__u64 sp;
	__u64 bp;
	__u64 weight;		/* off-CPU: ns blocked; on-CPU: 0 */
	__u64 stack_end;	/* end of the stack mapping when known (bpf_find_vma), else 0 */
	__u32 ustack_len;	/* bytes copied from sp into ustack */
	__u32 ustack_req;	/* bytes the settings asked for */
	char comm[SPROF_COMM_LEN];
	__u64 kstack[SPROF_KSTACK_MAX]; /* kernel return addresses, innermost first */
	__u8 ustack[SPROF_USTACK_MAX];	/* user stack bytes from sp upwards */
};

#endif /* SPROF_ABI_NO_SAMPLE_STRUCT */

#define SPROF_SAMPLE_HDR_SIZE 1112 /* offsetof(struct sprof_sample, ustack) */

/* Settings: `const volatile` in .rodata, written by the loader before load
 * so the verifier prunes the variants not taken. */
struct sprof_config {
	__u32 all_tasks;	/* 1: every task but the idle task; 0: tgids in the `targets` map */
	__u32 ustack_size;	/* bytes of user stack to copy, multiple of SPROF_PAGE_SIZE, <= SPROF_USTACK_MAX */
	__u32 use_ringbuf;	/* 1: BPF ring buffer (5.8+); 0: perf buffer */
	__u32 use_find_vma;	/* 1: bound the copy with bpf_find_vma (5.17+); 0: page chunks */
	__u32 use_task_pt_regs;	/* 1: bpf_task_pt_regs (5.15+); 0: the task's saved pt_regs */
	__u32 thread_size;	/* kernel THREAD_SIZE for the saved-regs fallback */
	__u32 use_task_btf;	/* 1: bpf_get_current_task_btf (5.11+) */
	__u32 wakeup_bytes;	/* ring buffer: wake the reader only past this much pending data; 0: every record */
	__u32 offcpu_task_stack; /* off-CPU, tp_btf: the kernel stack of the task switching in via bpf_get_task_stack (5.9+); 0: copied at every switch-out */
	__u32 offcpu_all_threads; /* off-CPU with all_tasks: 1 includes kernel threads */
	__u64 offcpu_min_ns;	/* off-CPU: waits shorter than this are counted, not recorded */
};

/* Counters: a per-CPU array indexed by these; user space sums the CPUs. */
enum sprof_counter {
	SPROF_CNT_RUNS = 0,	 /* program invocations */
	SPROF_CNT_EMITTED,	 /* records handed to the buffer */
	SPROF_CNT_LOST,		 /* records the buffer had no room for */
	SPROF_CNT_FILTERED,	 /* samples of tasks not profiled */
	SPROF_CNT_USTACK_FAULT,	 /* user-stack copies that stopped at an unreadable page */
	SPROF_CNT_KSTACK_ERR,	 /* bpf_get_stack failures */
	SPROF_CNT_NO_SCRATCH,	 /* scratch slot lookup failed (more CPUs than slots) */
	SPROF_CNT_NO_USER_REGS,	 /* no user registers (kernel threads) */
	SPROF_CNT_FIND_VMA_FAILED, /* bpf_find_vma copies that failed (-EBUSY, no VMA, a faulting read); page copies used */
	SPROF_CNT_OFFCPU_SWITCHES, /* switch-outs of profiled threads (off-CPU) */
	SPROF_CNT_OFFCPU_EMITTED,  /* off-CPU records handed to the buffer (also in EMITTED) */
	SPROF_CNT_OFFCPU_SHORT,	   /* waits shorter than offcpu_min_ns: counted, not recorded */
	SPROF_CNT_OFFCPU_SHORT_NS, /* their total nanoseconds */
	SPROF_CNT_OFFCPU_NO_USTACK, /* off-CPU records whose user stack could not be copied (SPROF_F_USTACK_MISSED) */
	SPROF_CNT_OFFCPU_MAP_FULL, /* waits lost because a per-thread map was full */
	SPROF_CNT_MAX,
};

#ifndef SPROF_ABI_NO_SAMPLE_STRUCT
#define SPROF_STATIC_ASSERT(c, m) _Static_assert(c, m)
SPROF_STATIC_ASSERT(__builtin_offsetof(struct sprof_sample, time_ns) == 16, "time_ns");
SPROF_STATIC_ASSERT(__builtin_offsetof(struct sprof_sample, cpu) == 24, "cpu");
SPROF_STATIC_ASSERT(__builtin_offsetof(struct sprof_sample, ip) == 32, "ip");
SPROF_STATIC_ASSERT(__builtin_offsetof(struct sprof_sample, weight) == 56, "weight");
SPROF_STATIC_ASSERT(__builtin_offsetof(struct sprof_sample, ustack_len) == 72, "ustack_len");
SPROF_STATIC_ASSERT(__builtin_offsetof(struct sprof_sample, comm) == 80, "comm");
SPROF_STATIC_ASSERT(__builtin_offsetof(struct sprof_sample, kstack) == 96, "kstack");
SPROF_STATIC_ASSERT(__builtin_offsetof(struct sprof_sample, ustack) == SPROF_SAMPLE_HDR_SIZE, "ustack");
SPROF_STATIC_ASSERT(sizeof(struct sprof_sample) == SPROF_SAMPLE_HDR_SIZE + SPROF_USTACK_MAX, "sample size");
SPROF_STATIC_ASSERT(sizeof(struct sprof_config) == 48, "config size");
#endif

#endif /* SPROF_ABI_H */
