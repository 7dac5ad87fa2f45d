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
};

/* include/linux/mm_types.h */
struct vm_area_struct {
	unsigned long vm_start;
	unsigned long vm_end;
};

#pragma clang attribute pop

#endif
