/* SPDX-License-Identifier: GPL-2.0 */
/*
 * TEST FIXTURE: a sched_ext scheduler the BPF verifier refuses. Its enqueue
 * dereferences a number as if it were a pointer ("invalid mem access
 * 'scalar'"), so loading the object fails and the harness must report
 * "failed to attach" with the verifier's own lines. It calls only kfuncs
 * that kept their names from 6.12 to 7.3, so it compiles on every kernel
 * of the axis and the verifier, not the compiler, refuses it.
 */
#include <scx/common.bpf.h>

char _license[] SEC("license") = "GPL";

UEI_DEFINE(uei);

void BPF_STRUCT_OPS(fault_verifier_enqueue, struct task_struct *p, u64 enq_flags)
{
	u64 addr = bpf_ktime_get_ns();

	scx_bpf_kick_cpu(scx_bpf_task_cpu(p), *(volatile u64 *)addr);
}

void BPF_STRUCT_OPS(fault_verifier_exit, struct scx_exit_info *ei)
{
	UEI_RECORD(uei, ei);
}

SCX_OPS_DEFINE(fault_verifier_ops,
	       .enqueue		= (void *)fault_verifier_enqueue,
	       .exit		= (void *)fault_verifier_exit,
	       .name		= "fault_verifier");
