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
 *
 * Off-CPU (`--off-cpu`), one of five attach points, the first the kernel
 * accepts (the loader decides; see "Off-CPU" below):
 *   kprobe or fentry on finish_task_switch, else the sched_switch tracepoint
 *   as tp_btf (5.5+), raw_tp (4.17+) or classic tracepoint.
 */
#include <linux/types.h>
#include <asm/ptrace.h>
#include <linux/bpf.h>
#include <linux/bpf_perf_event.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>
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

/* A plain add, not an atomic one: clang 21 emits every __sync_fetch_and_add
 * as BPF_ATOMIC|BPF_FETCH (5.12+), which older verifiers reject outright
 * ("BPF_STX uses reserved fields", 5.10) even in code never reached. The
 * slots are per CPU; the only race left is a perf-event program interrupting
 * a tracepoint program on the same CPU between its load and store of a
 * counter both touch (emitted, lost), which can lose one count. */
static __always_inline void count_add(__u32 idx, __u64 n)
{
	__u64 *v = bpf_map_lookup_elem(&counters, &idx);
	if (v)
		*v += n;
}

static __always_inline void count(__u32 idx)
{
	count_add(idx, 1);
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

#ifndef SPROF_NO_FIND_VMA
/* Built without this (bpf/build.sh: sprof_legacy.bpf.o) for kernels before
 * 5.17: the callback is a subprogram that only a BPF_PSEUDO_FUNC load
 * refers to, which kernels before 5.13 do not know, so their verifier
 * rejects the whole object ("number of funcs in func_info doesn't match
 * number of subprogs", seen on 5.10) even where the code is never reached. */
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

#endif /* SPROF_NO_FIND_VMA */

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

/* Another task's user registers (a task that is not running: its entry
 * registers are unchanged since it entered the kernel). `btf`: `t` is a
 * BTF task pointer (tp_btf), which bpf_task_pt_regs takes; else a raw
 * pointer, read through the saved frame. */
static __always_inline int read_task_user_regs(struct task_struct *t, int btf, struct pt_regs *out)
{
	void *saved;

	if (btf && cfg.use_task_pt_regs) {
		if (bpf_probe_read_kernel(out, sizeof(*out), (void *)bpf_task_pt_regs(t)))
			return -1;
		return SPROF_F_TASK_PT_REGS;
	}
	saved = BPF_CORE_READ(t, stack);
	if (!saved)
		return -1;
	if (bpf_probe_read_kernel(out, sizeof(*out),
				  (char *)saved + cfg.thread_size - sizeof(struct pt_regs)))
		return -1;
	return SPROF_F_VIA_SAVED_REGS;
}

/* Hands the first SPROF_SAMPLE_HDR_SIZE + ulen bytes of the scratch sample to
 * user space. Returns 0 when the buffer took it. */
static __always_inline long emit(void *ctx, struct sprof_scratch *sc, __u32 ulen)
{
	__u64 size;
	long ret;

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
	return ret;
}

/* Copies the user stack from sp: bounded by the stack mapping when the
 * kernel has bpf_find_vma and the caller may take the mmap lock, else page
 * by page. */
static __always_inline __u32 copy_ustack(struct sprof_scratch *sc, __u64 sp, int may_find_vma)
{
	__u32 ulen = 0;

	if (cfg.ustack_size == 0)
		return 0;
#ifndef SPROF_NO_FIND_VMA
	if (cfg.use_find_vma && may_find_vma)
		ulen = copy_ustack_vma(sc, sp, cfg.ustack_size);
#endif
	if (ulen == 0) {
		sc->s.flags &= ~(SPROF_F_USTACK_TO_END | SPROF_F_VIA_FIND_VMA);
		ulen = copy_ustack_chunked(sc, sp, cfg.ustack_size);
	}
	return ulen;
}

SEC("perf_event")
int sprof_cpu_sample(struct bpf_perf_event_data *ctx)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	__u32 tgid = pid_tgid >> 32;
	__u32 cpu, ulen = 0;
	struct sprof_scratch *sc;
	struct pt_regs uregs;
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

	ulen = copy_ustack(sc, uregs.rsp, 1);

emit:
	emit(ctx, sc, ulen);
	return 0;
}

/*
 * Off-CPU
 * =======
 * A wait is the time a thread spends off the CPU: from its switch-out to its
 * next switch-in, keyed by thread id, attributed to the stacks at which it
 * left. Waits shorter than cfg.offcpu_min_ns are only counted (number and
 * total time), so the common cost per context switch is a few map operations.
 *
 * kprobe/fentry on finish_task_switch(prev) (kernel/sched/core.c) run in the
 * context of the task that just got the CPU back, still inside schedule():
 * its kernel stack is where it blocked and its user stack is its own memory,
 * so a long wait is captured on the spot.
 *
 * The sched_switch tracepoint runs in the task that is *leaving*, before the
 * switch; the one arriving is not current, so its user memory cannot be read
 * (bpf_probe_read_user reads current's address space). So:
 *  - switch-out (own context): remember the time and the wait's kind, in
 *    place in the thread's entry;
 *  - switch-in (the previous task's context): the wait is over; if it was
 *    long enough, keep it as pending with the arriving task's user
 *    registers (its saved entry frame) and kernel stack (bpf_get_task_stack
 *    on the tp_btf task pointer, 5.9+; else the stack copied at its
 *    switch-out). The classic tracepoint has no task pointer: it reads the
 *    registers at the switch-out instead;
 *  - the first time the task runs in its own context again, before it runs
 *    any user code — the raw_syscalls:sys_exit tracepoint for a wait in a
 *    system call, rseq:rseq_update on the way back to user mode after any
 *    switch (every glibc >= 2.35 thread registers rseq) — its user stack is
 *    exactly as it was when it left, so it is copied then, if the user
 *    registers still match those saved at the switch-out. Otherwise (no
 *    such hook ran first) the record keeps the registers without the stack
 *    (SPROF_F_USTACK_MISSED), emitted at the thread's next switch-out.
 */

/* What a thread was doing when it left the CPU. */
struct offcpu_start {
	__u64 ts;		/* bpf_ktime_get_ns() at the switch-out */
	__u64 ip, sp, bp;	/* user registers then (with SPROF_F_USER_REGS) */
	__u32 tgid;
	__u32 flags;		/* SPROF_F_OFFCPU_*, SPROF_F_USER_REGS */
};

/* A finished wait waiting for its thread to run again (tracepoint path). */
struct offcpu_pending {
	struct offcpu_start start;
	__u64 weight;		/* nanoseconds off the CPU */
	__u32 kstack_len;	/* bytes */
	__u32 kstack_err;
	__u64 kstack[SPROF_KSTACK_MAX];
};

/* A kernel stack copied at a switch-out (tracepoint fallbacks without a task pointer). */
struct offcpu_kstack {
	__u32 len;
	__u32 err;
	__u64 ip[SPROF_KSTACK_MAX];
};

/* LRU: a thread that dies while an entry is live must not leak it. The
 * loader sizes them. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u32);
	__type(value, struct offcpu_start);
} offcpu_start SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, struct offcpu_pending);
} offcpu_pending SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u32);
	__type(value, struct offcpu_kstack);
} offcpu_kstart SEC(".maps");

/* Too large for the BPF stack: a per-CPU slot to build values in. */
struct offcpu_build {
	struct offcpu_pending pending;
	struct offcpu_kstack kstack;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct offcpu_build);
} offcpu_build SEC(".maps");

/* The off-CPU programs' own scratch samples (see scratch_cpu). The
 * tracepoints run with preemption off and never nest in each other. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct sprof_scratch);
} scratch_offcpu SEC(".maps");

static __always_inline struct sprof_scratch *offcpu_scratch(void)
{
	__u32 cpu = bpf_get_smp_processor_id();
	struct sprof_scratch *sc = bpf_map_lookup_elem(&scratch_offcpu, &cpu);

	if (!sc) {
		count(SPROF_CNT_NO_SCRATCH);
		return 0;
	}
	sc->s.kind = SPROF_KIND_OFFCPU;
	sc->s.abi_version = SPROF_ABI_VERSION;
	sc->s.cpu = cpu;
	sc->s.kstack_len = 0;
	sc->s.stack_end = 0;
	sc->s.ustack_req = cfg.ustack_size;
	bpf_get_current_comm(sc->s.comm, sizeof(sc->s.comm));
	return sc;
}

/* The task's state as the switch saw it. A preempted task stays runnable
 * whatever its state says (__schedule(SM_PREEMPT) ignores it); TASK_IDLE
 * (D | NOLOAD) is a kernel thread idling, not waiting on I/O. */
static __always_inline __u32 wait_flags(int preempt, long state)
{
	if (preempt || state == SPROF_TASK_RUNNING)
		return SPROF_F_OFFCPU_RUNNABLE;
	if ((state & SPROF_TASK_UNINTERRUPTIBLE) && !(state & SPROF_TASK_NOLOAD))
		return SPROF_F_OFFCPU_UNINTERRUPTIBLE;
	return 0;
}

/* task->__state (5.14+) or task->state, through CO-RE. */
static __always_inline long task_state(struct task_struct *t)
{
	if (bpf_core_field_exists(t->__state))
		return BPF_CORE_READ(t, __state);
	return BPF_CORE_READ((struct task_struct___old *)t, state);
}

/* Whether waits of this thread are recorded: a profiled process, not the
 * idle task, not a kernel thread unless asked for. */
static __always_inline int offcpu_wanted(__u32 tgid, __u32 task_flags)
{
	if (tgid == 0)
		return 0;
	if (!cfg.all_tasks)
		return bpf_map_lookup_elem(&targets, &tgid) != 0;
	return cfg.offcpu_all_threads || !(task_flags & SPROF_PF_KTHREAD);
}

/* Starts a wait of `tid`. A thread's entry stays in the map between its
 * waits (ts 0 = on a CPU) and is rewritten in place: an insert and a delete
 * per switch would cost more than everything else here. Returns the entry. */
static __always_inline struct offcpu_start *offcpu_note_start(__u32 tid, __u64 now, __u32 tgid, __u32 flags)
{
	struct offcpu_start *st = bpf_map_lookup_elem(&offcpu_start, &tid);

	count(SPROF_CNT_OFFCPU_SWITCHES);
	if (!st) {
		struct offcpu_start s = { .ts = now, .tgid = tgid, .flags = flags };
		if (bpf_map_update_elem(&offcpu_start, &tid, &s, BPF_ANY))
			count(SPROF_CNT_OFFCPU_MAP_FULL);
		return bpf_map_lookup_elem(&offcpu_start, &tid);
	}
	st->ts = now;
	st->tgid = tgid;
	st->flags = flags;
	st->ip = st->sp = st->bp = 0;
	return st;
}

/* The wait of `tid` that ends now, or 0: its entry, still holding its start. */
static __always_inline struct offcpu_start *offcpu_wait_of(__u32 tid)
{
	struct offcpu_start *st = bpf_map_lookup_elem(&offcpu_start, &tid);

	return st && st->ts ? st : 0;
}

/* Emits the pending wait of `tid`, the current task, if any: its kernel
 * stack from the switch, its user stack now if its user registers are still
 * those it left with (then no user code ran since: the stack is as it was). */
static __always_inline void offcpu_emit_pending(void *ctx, __u32 tid, int may_find_vma)
{
	struct offcpu_pending *p = bpf_map_lookup_elem(&offcpu_pending, &tid);
	struct sprof_scratch *sc;
	struct pt_regs now;
	__u32 ulen = 0, klen;

	if (!p)
		return;
	sc = offcpu_scratch();
	if (!sc)
		goto done;
	sc->s.flags = p->start.flags | SPROF_F_KERNEL_MODE;
	sc->s.tgid = p->start.tgid;
	sc->s.tid = tid;
	sc->s.time_ns = p->start.ts;
	sc->s.weight = p->weight;
	sc->s.ip = p->start.ip;
	sc->s.sp = p->start.sp;
	sc->s.bp = p->start.bp;
	klen = p->kstack_len;
	if (klen > sizeof(sc->s.kstack))
		klen = sizeof(sc->s.kstack);
	if (bpf_probe_read_kernel(sc->s.kstack, sizeof(sc->s.kstack), p->kstack) == 0)
		sc->s.kstack_len = klen;
	if (p->kstack_err) {
		sc->s.flags |= SPROF_F_KSTACK_ERR;
		count(SPROF_CNT_KSTACK_ERR);
	}
	if (p->start.flags & SPROF_F_USER_REGS) {
		if (read_user_regs(&now) >= 0 && now.rip == p->start.ip && now.rsp == p->start.sp) {
			sc->s.flags |= SPROF_F_USTACK_DEFERRED;
			ulen = copy_ustack(sc, p->start.sp, may_find_vma);
		} else {
			sc->s.flags |= SPROF_F_USTACK_MISSED;
			count(SPROF_CNT_OFFCPU_NO_USTACK);
		}
	}
	if (emit(ctx, sc, ulen) == 0)
		count(SPROF_CNT_OFFCPU_EMITTED);
done:
	bpf_map_delete_elem(&offcpu_pending, &tid);
}

/* sched_switch, in the context of `prev` (current). `next_task` is the
 * arriving task (a BTF pointer when `next_btf`, tp_btf; a raw one for
 * raw_tp; 0 for the classic tracepoint, which has none), `next_tid` its
 * thread id, `prev_task_flags` prev's PF_* flags, `flags` the wait's kind. */
static __always_inline void offcpu_switch(void *ctx, struct task_struct *next_task, int next_btf, __u32 next_tid,
					  __u32 prev_task_flags, __u32 flags, int dead)
{
	__u64 now = bpf_ktime_get_ns();
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	__u32 prev_tid = (__u32)pid_tgid, prev_tgid = pid_tgid >> 32;
	struct offcpu_start *st;
	struct offcpu_build *b;
	struct pt_regs r;
	__u32 zero = 0;
	__u64 delta;
	int how;

	/* The thread leaving. */
	if (!dead && offcpu_wanted(prev_tgid, prev_task_flags)) {
		/* A wait whose end no hook saw yet: out with it now. The mmap
		 * lock is not for the scheduler: page-by-page copy. */
		offcpu_emit_pending(ctx, prev_tid, 0);
		st = offcpu_note_start(prev_tid, now, prev_tgid, flags);
		/* No task pointer at switch-in (classic tracepoint): the user
		 * registers now, while prev is current. */
		if (st && !next_task) {
			how = read_user_regs(&r);
			if (how >= 0 && (r.cs & 3) == 3) {
				st->ip = r.rip;
				st->sp = r.rsp;
				st->bp = r.rbp;
				st->flags |= SPROF_F_USER_REGS | how;
			}
		}
		if (!cfg.offcpu_task_stack) {
			b = bpf_map_lookup_elem(&offcpu_build, &zero);
			if (b) {
				long n = bpf_get_stack(ctx, b->kstack.ip, sizeof(b->kstack.ip), 0);
				b->kstack.len = n > 0 ? n : 0;
				b->kstack.err = n < 0;
				bpf_map_update_elem(&offcpu_kstart, &prev_tid, &b->kstack, BPF_ANY);
			}
		}
	}

	/* The thread arriving: its wait is over. */
	if (next_tid == 0)
		return;
	st = offcpu_wait_of(next_tid);
	if (!st)
		return;
	delta = now - st->ts;
	if (delta < cfg.offcpu_min_ns) {
		st->ts = 0;
		count(SPROF_CNT_OFFCPU_SHORT);
		count_add(SPROF_CNT_OFFCPU_SHORT_NS, delta);
		return;
	}
	b = bpf_map_lookup_elem(&offcpu_build, &zero);
	if (!b)
		return;
	b->pending.start = *st;
	b->pending.weight = delta;
	st->ts = 0;
	/* Its user registers, unchanged since it entered the kernel. */
	if (next_task) {
		how = read_task_user_regs(next_task, next_btf, &r);
		if (how >= 0 && (r.cs & 3) == 3) {
			b->pending.start.ip = r.rip;
			b->pending.start.sp = r.rsp;
			b->pending.start.bp = r.rbp;
			b->pending.start.flags |= SPROF_F_USER_REGS | how;
		}
	}
	b->pending.kstack_len = 0;
	b->pending.kstack_err = 0;
	if (cfg.offcpu_task_stack && next_btf) {
		long n = bpf_get_task_stack(next_task, b->pending.kstack, sizeof(b->pending.kstack), 0);
		if (n > 0)
			b->pending.kstack_len = n;
		else
			b->pending.kstack_err = 1;
	} else {
		struct offcpu_kstack *k = bpf_map_lookup_elem(&offcpu_kstart, &next_tid);
		if (k) {
			b->pending.kstack_len = k->len;
			b->pending.kstack_err = k->err;
			bpf_probe_read_kernel(b->pending.kstack, sizeof(b->pending.kstack), k->ip);
		} else {
			b->pending.kstack_err = 1;
		}
	}
	if (bpf_map_update_elem(&offcpu_pending, &next_tid, &b->pending, BPF_ANY))
		count(SPROF_CNT_OFFCPU_MAP_FULL);
}

SEC("tp_btf/sched_switch")
int sprof_offcpu_tp_btf(__u64 *ctx)
{
	/* TP_PROTO(bool preempt, struct task_struct *prev, struct task_struct *next, ...):
	 * BTF pointers, read with plain loads (no helper calls). */
	int preempt = (int)(ctx[0] & 1);
	struct task_struct *prev = (struct task_struct *)ctx[1];
	struct task_struct *next = (struct task_struct *)ctx[2];
	long state;

	if (bpf_core_field_exists(prev->__state))
		state = prev->__state;
	else
		state = ((struct task_struct___old *)prev)->state;
	offcpu_switch(ctx, next, 1, next->pid, prev->flags, wait_flags(preempt, state),
		      (state & SPROF_TASK_DEAD) != 0);
	return 0;
}

SEC("raw_tp/sched_switch")
int sprof_offcpu_raw_tp(struct bpf_raw_tracepoint_args *ctx)
{
	int preempt = (int)(ctx->args[0] & 1);
	struct task_struct *prev = (struct task_struct *)ctx->args[1];
	struct task_struct *next = (struct task_struct *)ctx->args[2];
	long state = task_state(prev);

	offcpu_switch(ctx, next, 0, BPF_CORE_READ(next, pid), BPF_CORE_READ(prev, flags),
		      wait_flags(preempt, state), (state & SPROF_TASK_DEAD) != 0);
	return 0;
}

SEC("tracepoint/sched/sched_switch")
int sprof_offcpu_tracepoint(struct sprof_sched_switch_tp *ctx)
{
	/* prev_state as the tracepoint reports it: a preempted task ORs in
	 * TASK_REPORT_MAX (0x100 today, larger on old kernels), so "runnable"
	 * is no state bit in the low byte; X (0x10) and Z (0x20) are exits. */
	long state = ctx->prev_state;
	__u32 flags = (state & 0xff) == 0 ? SPROF_F_OFFCPU_RUNNABLE
		    : (state & SPROF_TASK_UNINTERRUPTIBLE) ? SPROF_F_OFFCPU_UNINTERRUPTIBLE : 0;
	struct task_struct *cur = (struct task_struct *)bpf_get_current_task();

	offcpu_switch(ctx, 0, 0, ctx->next_pid, BPF_CORE_READ(cur, flags), flags,
		      (state & 0xff) == 0x10 || (state & 0xff) == 0x20);
	return 0;
}

/* The hooks where a thread whose wait ended runs again in its own context. */
static __always_inline void offcpu_resume(void *ctx)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();

	offcpu_emit_pending(ctx, tid, 1);
}

SEC("tp_btf/sys_exit")
int sprof_resume_sys_exit_btf(void *ctx) { offcpu_resume(ctx); return 0; }

SEC("tp_btf/rseq_update")
int sprof_resume_rseq_btf(void *ctx) { offcpu_resume(ctx); return 0; }

SEC("raw_tp/sys_exit")
int sprof_resume_sys_exit_raw(void *ctx) { offcpu_resume(ctx); return 0; }

SEC("raw_tp/rseq_update")
int sprof_resume_rseq_raw(void *ctx) { offcpu_resume(ctx); return 0; }

SEC("tracepoint/raw_syscalls/sys_exit")
int sprof_resume_sys_exit_tp(void *ctx) { offcpu_resume(ctx); return 0; }

SEC("tracepoint/rseq/rseq_update")
int sprof_resume_rseq_tp(void *ctx) { offcpu_resume(ctx); return 0; }

/* finish_task_switch(prev), in the context of the task that got the CPU. */
static __always_inline void offcpu_finish_switch(void *ctx, struct task_struct *prev)
{
	__u64 now = bpf_ktime_get_ns();
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	__u32 tid = (__u32)pid_tgid;
	__u32 prev_tgid = BPF_CORE_READ(prev, tgid);
	__u32 prev_tid = BPF_CORE_READ(prev, pid);
	long state = task_state(prev);
	struct offcpu_start *st;
	struct sprof_scratch *sc;
	struct pt_regs uregs;
	__u32 ulen = 0;
	__u64 delta;
	long n;
	int how;

	/* prev left the CPU just now; finish_task_switch has not yet let it
	 * run elsewhere (prev->on_cpu is cleared later in it). There is no
	 * preempt flag here: a preempted task is TASK_RUNNING. */
	if (!(state & SPROF_TASK_DEAD) && offcpu_wanted(prev_tgid, BPF_CORE_READ(prev, flags)))
		offcpu_note_start(prev_tid, now, prev_tgid, wait_flags(0, state));

	st = offcpu_wait_of(tid);
	if (!st)
		return;
	delta = now - st->ts;
	if (delta < cfg.offcpu_min_ns) {
		st->ts = 0;
		count(SPROF_CNT_OFFCPU_SHORT);
		count_add(SPROF_CNT_OFFCPU_SHORT_NS, delta);
		return;
	}
	sc = offcpu_scratch();
	if (!sc) {
		st->ts = 0;
		return;
	}
	sc->s.flags = st->flags | SPROF_F_KERNEL_MODE;
	sc->s.tgid = pid_tgid >> 32;
	sc->s.tid = tid;
	sc->s.time_ns = st->ts;
	sc->s.weight = delta;
	sc->s.ip = sc->s.sp = sc->s.bp = 0;
	st->ts = 0;

	n = bpf_get_stack(ctx, sc->s.kstack, sizeof(sc->s.kstack), 0);
	if (n > 0) {
		sc->s.kstack_len = n;
	} else {
		sc->s.flags |= SPROF_F_KSTACK_ERR;
		count(SPROF_CNT_KSTACK_ERR);
	}
	how = read_user_regs(&uregs);
	if (how >= 0 && (uregs.cs & 3) == 3) {
		sc->s.flags |= SPROF_F_USER_REGS | how;
		sc->s.ip = uregs.rip;
		sc->s.sp = uregs.rsp;
		sc->s.bp = uregs.rbp;
		/* Interrupts are still off and the runqueue locked here: no mmap lock. */
		ulen = copy_ustack(sc, uregs.rsp, 0);
	} else {
		count(SPROF_CNT_NO_USER_REGS);
	}
	if (emit(ctx, sc, ulen) == 0)
		count(SPROF_CNT_OFFCPU_EMITTED);
}

/* Attached by the loader to finish_task_switch or its local clone
 * (finish_task_switch.isra.0), whichever /proc/kallsyms has. */
SEC("kprobe/finish_task_switch")
int BPF_KPROBE(sprof_offcpu_kprobe, struct task_struct *prev)
{
	offcpu_finish_switch(ctx, prev);
	return 0;
}

SEC("fentry/finish_task_switch")
int BPF_PROG(sprof_offcpu_fentry, struct task_struct *prev)
{
	offcpu_finish_switch(ctx, prev);
	return 0;
}
