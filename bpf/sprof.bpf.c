// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * sprof's kernel side: tiny and boring on purpose.
 *
 * On each cpu-clock sample of a profiled task, copy registers, the kernel
 * stack and a bounded slice of the user stack into a per-CPU scratch slot and
 * hand it to user space. No unwinding, no CFI, no global subprograms taking
 * pointers, no module BTF, no unbounded loops; every read has a constant or
 * masked size. Variants are chosen by the loader through `cfg` (.rodata, frozen
 * before verification, so the verifier never even looks at the branches not
 * taken, and helpers missing on old kernels are never seen):
 *   - ring buffer (5.8+)               else perf buffer
 *   - bpf_find_vma (5.17+)             else page-by-page copy
 *   - bpf_task_pt_regs (5.15+)         else the task's saved pt_regs
 *   - bpf_get_current_task_btf (5.11+) else bpf_get_current_task
 */
#include <linux/types.h>
#include <asm/ptrace.h>
#include <linux/bpf.h>
#include <linux/bpf_perf_event.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include "sprof_kernel.h"
#include "sprof_abi.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

const volatile struct sprof_config cfg = {
	.ustack_size = SPROF_USTACK_DEFAULT,
	.use_ringbuf = 1,
	.thread_size = SPROF_THREAD_SIZE_DEFAULT,
};

/* The loader turns this into a BPF_MAP_TYPE_PERF_EVENT_ARRAY (key and value
 * 4 bytes) when the kernel has no ring buffer; the unused helper call below
 * is then in a branch the verifier prunes. */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 16 << 20);
} events SEC(".maps");

/* The scratch value is larger than a sample so that a masked offset plus one
 * page can never leave the value: the verifier sees `off & (MAX-1)` + 4096
 * bytes, which must fit. Per-CPU array values are capped at 32 KiB
 * (PCPU_MIN_UNIT_SIZE, mm/percpu.c), so this is a plain array indexed by CPU;
 * the loader sets max_entries to the number of possible CPUs. One scratch map
 * per program type, so a perf-event sample that lands while another sprof
 * program runs on the same CPU cannot clobber its slot. */
struct sprof_scratch {
	struct sprof_sample s;
	__u8 slack[SPROF_PAGE_SIZE];
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct sprof_scratch);
} scratch_cpu SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, SPROF_CNT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} counters SEC(".maps");

/* tgids to profile when cfg.all_tasks is 0 */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, __u32);
	__type(value, __u8);
} targets SEC(".maps");

static __always_inline void count(__u32 idx)
{
	__u64 *v = bpf_map_lookup_elem(&counters, &idx);
	if (v)
		*v += 1;
}

struct vma_end_ctx {
	__u64 end;
};

/* bpf_find_vma callback (kernel/bpf/task_iter.c): remember where the stack
 * mapping ends. Static, so it is a callback, not a global subprogram. */
static long vma_end_cb(struct task_struct *task, struct vm_area_struct *vma, void *data)
{
	struct vma_end_ctx *c = data;
	c->end = vma->vm_end;
	return 0;
}

/* Copy the user stack from sp page by page: a read that spans an unmapped
 * page fails whole (copy_from_user_nofault), so the first chunk runs to the
 * next page boundary and each later chunk is one page; the copy stops at the
 * first page that cannot be read and keeps everything before it. */
static __always_inline __u32 copy_ustack_chunked(struct sprof_scratch *sc, __u64 sp, __u32 want)
{
	__u32 off = 0;
	__u32 n = SPROF_PAGE_SIZE - (sp & (SPROF_PAGE_SIZE - 1));

	if (n > want)
		n = want;
	/* 1 partial page + at most SPROF_USTACK_MAX / PAGE full ones */
	for (int i = 0; i <= SPROF_USTACK_MAX / SPROF_PAGE_SIZE; i++) {
		if (n == 0)
			break;
		n &= (2 * SPROF_PAGE_SIZE - 1);
		if (n > SPROF_PAGE_SIZE)
			n = SPROF_PAGE_SIZE;
		if (bpf_probe_read_user(&sc->s.ustack[off & (SPROF_USTACK_MAX - 1)], n,
					(const void *)(sp + off))) {
			sc->s.flags |= SPROF_F_USTACK_FAULT;
			count(SPROF_CNT_USTACK_FAULT);
			break;
		}
		off += n;
		if (off >= want)
			break;
		n = want - off;
		if (n > SPROF_PAGE_SIZE)
			n = SPROF_PAGE_SIZE;
	}
	return off;
}

/* Copy the user stack from sp to min(sp + want, end of its mapping) in one
 * read. Returns 0 (caller falls back to chunks) when the mapping cannot be
 * found (mmap lock contended: -EBUSY) or the read faults. */
static __always_inline __u32 copy_ustack_vma(struct sprof_scratch *sc, __u64 sp, __u32 want)
{
	struct vma_end_ctx vc = {};
	struct task_struct *task = bpf_get_current_task_btf();
	__u64 len;

	/* Any failure is counted and the caller copies page by page instead:
	 * -EBUSY when the per-CPU irq_work that defers mmap_read_unlock is
	 * still pending or the lock is contended (kernel/bpf/mmap_unlock_work.h,
	 * kernel/bpf/task_iter.c), no VMA at sp, or a read that faults on a
	 * page that is not present (in about one process in four the stack
	 * mapping has a never-touched page between sp and its end: the gap
	 * left by exec's stack randomization, arch_align_stack()). */
	if (bpf_find_vma(task, sp, vma_end_cb, &vc, 0) || vc.end <= sp)
		goto failed;
	len = vc.end - sp;
	if (len <= want) {
		sc->s.flags |= SPROF_F_USTACK_TO_END;
	} else {
		len = want;
	}
	len &= (2 * SPROF_USTACK_MAX - 1);
	if (len > SPROF_USTACK_MAX)
		len = SPROF_USTACK_MAX;
	if (len == 0 || bpf_probe_read_user(sc->s.ustack, len, (const void *)sp))
		goto failed;
	sc->s.flags |= SPROF_F_VIA_FIND_VMA;
	sc->s.stack_end = vc.end;
	return len;
failed:
	count(SPROF_CNT_FIND_VMA_FAILED);
	return 0;
}

/* The task's user registers when the sample interrupted kernel code. */
static __always_inline int read_user_regs(struct pt_regs *out)
{
	void *saved;

	if (cfg.use_task_pt_regs) {
		struct pt_regs *r = (struct pt_regs *)bpf_task_pt_regs(bpf_get_current_task_btf());
		if (bpf_probe_read_kernel(out, sizeof(*out), r))
			return -1;
		return SPROF_F_TASK_PT_REGS;
	}
	/* task_pt_regs() on x86_64 (arch/x86/include/asm/processor.h): the
	 * registers saved on entry sit at the top of the task's kernel stack,
	 * TOP_OF_KERNEL_STACK_PADDING being 0 on x86_64. */
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	saved = BPF_CORE_READ(task, stack);
	if (!saved)
		return -1;
	if (bpf_probe_read_kernel(out, sizeof(*out),
				  (char *)saved + cfg.thread_size - sizeof(struct pt_regs)))
		return -1;
	return SPROF_F_VIA_SAVED_REGS;
}

SEC("perf_event")
int sprof_cpu_sample(struct bpf_perf_event_data *ctx)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	__u32 tgid = pid_tgid >> 32;
	__u32 cpu, ulen = 0;
	struct sprof_scratch *sc;
	struct pt_regs uregs;
	__u64 size;
	long ret;

	count(SPROF_CNT_RUNS);
	if (tgid == 0 || (!cfg.all_tasks && !bpf_map_lookup_elem(&targets, &tgid))) {
		count(SPROF_CNT_FILTERED);
		return 0;
	}
	cpu = bpf_get_smp_processor_id();
	sc = bpf_map_lookup_elem(&scratch_cpu, &cpu);
	if (!sc) {
		count(SPROF_CNT_NO_SCRATCH);
		return 0;
	}

	sc->s.kind = SPROF_KIND_CPU;
	sc->s.abi_version = SPROF_ABI_VERSION;
	sc->s.flags = 0;
	sc->s.tgid = tgid;
	sc->s.tid = (__u32)pid_tgid;
	sc->s.time_ns = bpf_ktime_get_ns();
	sc->s.cpu = cpu;
	sc->s.kstack_len = 0;
	sc->s.ip = sc->s.sp = sc->s.bp = 0;
	sc->s.weight = 0;
	sc->s.stack_end = 0;
	sc->s.ustack_req = cfg.ustack_size;
	bpf_get_current_comm(sc->s.comm, sizeof(sc->s.comm));

	/* user_mode(regs): the CPL in the low bits of cs (arch/x86/include/asm/ptrace.h) */
	if ((ctx->regs.cs & 3) == 3) {
		uregs = ctx->regs;
	} else {
		int how;

		sc->s.flags |= SPROF_F_KERNEL_MODE;
		ret = bpf_get_stack(ctx, sc->s.kstack, sizeof(sc->s.kstack), 0);
		if (ret < 0) {
			sc->s.flags |= SPROF_F_KSTACK_ERR;
			count(SPROF_CNT_KSTACK_ERR);
		} else {
			sc->s.kstack_len = ret;
		}
		how = read_user_regs(&uregs);
		/* kernel threads have no user registers: cs of the saved
		 * frame is not a user segment */
		if (how < 0 || (uregs.cs & 3) != 3) {
			count(SPROF_CNT_NO_USER_REGS);
			goto emit;
		}
		sc->s.flags |= how;
	}
	sc->s.flags |= SPROF_F_USER_REGS;
	sc->s.ip = uregs.rip;
	sc->s.sp = uregs.rsp;
	sc->s.bp = uregs.rbp;

	if (cfg.ustack_size > 0) {
		if (cfg.use_find_vma)
			ulen = copy_ustack_vma(sc, uregs.rsp, cfg.ustack_size);
		if (ulen == 0) {
			sc->s.flags &= ~(SPROF_F_USTACK_TO_END | SPROF_F_VIA_FIND_VMA);
			ulen = copy_ustack_chunked(sc, uregs.rsp, cfg.ustack_size);
		}
	}

emit:
	sc->s.ustack_len = ulen;
	size = SPROF_SAMPLE_HDR_SIZE + (__u64)ulen;
	if (size > sizeof(struct sprof_sample))
		size = sizeof(struct sprof_sample);
	if (cfg.use_ringbuf) {
		/* Waking the reader for every record would put it on a CPU right
		 * when the other CPUs' timers fire, and its samples would displace
		 * the target's. It polls on a timer instead and is woken only when
		 * the ring fills up (kernel/bpf/ringbuf.c: BPF_RB_NO_WAKEUP). */
		__u64 wake = BPF_RB_NO_WAKEUP;
		if (!cfg.wakeup_bytes || bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA) >= cfg.wakeup_bytes)
			wake = BPF_RB_FORCE_WAKEUP;
		ret = bpf_ringbuf_output(&events, &sc->s, size, wake);
	}
	else
		ret = bpf_perf_event_output(ctx, &events, BPF_F_CURRENT_CPU, &sc->s, size);
	count(ret ? SPROF_CNT_LOST : SPROF_CNT_EMITTED);
	return 0;
}
