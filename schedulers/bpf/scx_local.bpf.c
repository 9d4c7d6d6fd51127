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
 * Built by the harness with clang-19 against each kernel's own
 * tools/sched_ext headers and BTF, so it must compile with 6.12's headers
 * and 7.3's alike: it declares the insert kfunc itself rather than use a
 * header's name for it (below).
 */
#include <scx/common.bpf.h>

char _license[] SEC("license") = "GPL";

/*
 * Inserting a task into a DSQ has had three signatures: 6.12's
 * scx_bpf_dispatch(), renamed scx_bpf_dsq_insert() in 6.13, which returns
 * bool since 6.19. 6.12's headers only know the first; 7.3's only the last
 * (as a compat wrapper). Each is declared here weak, under a local suffix
 * (libbpf resolves a kfunc by the name before "___"), and the one the
 * running kernel has is called: a kfunc the kernel lacks resolves to NULL.
 */
bool scx_bpf_dsq_insert___local_v2(struct task_struct *p, u64 dsq_id, u64 slice,
				   u64 enq_flags) __ksym __weak;
void scx_bpf_dsq_insert___local_v1(struct task_struct *p, u64 dsq_id, u64 slice,
				   u64 enq_flags) __ksym __weak;
void scx_bpf_dispatch___local(struct task_struct *p, u64 dsq_id, u64 slice,
			      u64 enq_flags) __ksym __weak;

static void local_insert(struct task_struct *p, u64 dsq_id, u64 slice, u64 enq_flags)
{
	if (bpf_ksym_exists(scx_bpf_dsq_insert___local_v2))
		scx_bpf_dsq_insert___local_v2(p, dsq_id, slice, enq_flags);
	else if (bpf_ksym_exists(scx_bpf_dsq_insert___local_v1))
		scx_bpf_dsq_insert___local_v1(p, dsq_id, slice, enq_flags);
	else
		scx_bpf_dispatch___local(p, dsq_id, slice, enq_flags);
}

UEI_DEFINE(uei);

s32 BPF_STRUCT_OPS(local_select_cpu, struct task_struct *p, s32 prev_cpu, u64 wake_flags)
{
	bool is_idle = false;

	return scx_bpf_select_cpu_dfl(p, prev_cpu, wake_flags, &is_idle);
}

void BPF_STRUCT_OPS(local_enqueue, struct task_struct *p, u64 enq_flags)
{
	local_insert(p, SCX_DSQ_LOCAL, SCX_SLICE_DFL, enq_flags);
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
