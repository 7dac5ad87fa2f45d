/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The few kernel types sprof.bpf.c touches, declared by hand instead of a
 * generated vmlinux.h: only the fields we read, all CO-RE relocated
 * (preserve_access_index), so the object loads on any kernel with BTF and the
 * repository carries no 3 MB header tied to one kernel build.
 */
#ifndef SPROF_KERNEL_H
#define SPROF_KERNEL_H

#pragma clang attribute push(__attribute__((preserve_access_index)), apply_to = record)

/* include/linux/sched.h */
struct task_struct {
	void *stack;
	unsigned int __state;	/* 5.14+; `long state` before (task_struct___old) */
	unsigned int flags;	/* PF_* */
	int pid;		/* the thread id */
	int tgid;		/* the process id */
};

/* include/linux/sched.h before 5.14 (commit 2f064a59a11f "sched: Change task_struct::state") */
struct task_struct___old {
	long state;
};


/* include/linux/mm_types.h */
struct vm_area_struct {
	unsigned long vm_start;
	unsigned long vm_end;
};

#pragma clang attribute pop

/* include/linux/sched.h */
#define SPROF_TASK_RUNNING 0x0000
#define SPROF_TASK_UNINTERRUPTIBLE 0x0002
#define SPROF_TASK_DEAD 0x0080
#define SPROF_TASK_NOLOAD 0x0400
#define SPROF_PF_KTHREAD 0x00200000

/* The classic sched:sched_switch record (its format file in tracefs,
 * include/trace/events/sched.h); stable since 4.x. */
struct sprof_sched_switch_tp {
	__u64 common;		/* common_type, flags, preempt_count, pid */
	char prev_comm[16];
	int prev_pid;
	int prev_prio;
	long prev_state;	/* __trace_sched_switch_state(): 0 runnable, preempted ORs TASK_REPORT_MAX */
	char next_comm[16];
	int next_pid;
	int next_prio;
};

#endif
