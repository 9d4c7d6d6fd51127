/* SPDX-License-Identifier: GPL-2.0 */
/*
 * scx_local: a sched_ext scheduler that is only a BPF object. There is no
 * user-space side: scx-harness opens, loads and attaches the struct_ops map
 * itself and reads the exit info from the `uei` variable.
 *
 * Every task runs on the CPU it was placed on, first come first served: on
 * wakeup the kernel's default selection picks a CPU (an idle one when there
 * is one) and the task joins that CPU's local queue. There is no global
 * queue and no migration between wakeups, the opposite policy to scx_fifo.
 *
 * Built by the harness with clang-19 against the running kernel's
 * tools/sched_ext headers and BTF.
 */
#include <scx/common.bpf.h>

char _license[] SEC("license") = "GPL";

UEI_DEFINE(uei);

s32 BPF_STRUCT_OPS(local_select_cpu, struct task_struct *p, s32 prev_cpu, u64 wake_flags)
{
	bool is_idle = false;

	return scx_bpf_select_cpu_dfl(p, prev_cpu, wake_flags, &is_idle);
}

void BPF_STRUCT_OPS(local_enqueue, struct task_struct *p, u64 enq_flags)
{
	scx_bpf_dispatch(p, SCX_DSQ_LOCAL, SCX_SLICE_DFL, enq_flags);
}

void BPF_STRUCT_OPS(local_exit, struct scx_exit_info *ei)
{
	UEI_RECORD(uei, ei);
}

SCX_OPS_DEFINE(local_ops,
	       .select_cpu	= (void *)local_select_cpu,
	       .enqueue		= (void *)local_enqueue,
	       .exit		= (void *)local_exit,
	       .name		= "local");
