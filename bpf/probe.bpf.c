// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Tiny programs `sprof doctor` loads and attaches one at a time to learn what
 * this kernel really allows (a feature list can lie: kprobes may be compiled
 * out, fentry refused by lockdown or a missing trampoline). Each returns 0 and
 * touches nothing. The off-CPU attach points follow the order sprof prefers.
 */
#include <linux/types.h>
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "Dual BSD/GPL";

SEC("kprobe/finish_task_switch")
int probe_kprobe(void *ctx) { return 0; }

SEC("fentry/finish_task_switch")
int probe_fentry(void *ctx) { return 0; }

SEC("tp_btf/sched_switch")
int probe_tp_btf(void *ctx) { return 0; }

SEC("raw_tp/sched_switch")
int probe_raw_tp(void *ctx) { return 0; }

SEC("tracepoint/sched/sched_switch")
int probe_tracepoint(void *ctx) { return 0; }
