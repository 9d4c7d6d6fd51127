/* SPDX-License-Identifier: GPL-2.0 */
/*
 * scx_fifo: one global first-in first-out queue, nothing else.
 *
 * Every runnable task goes to the tail of one shared dispatch queue and
 * every CPU that needs work takes the head. The kernel's default CPU
 * selection still puts a waking task straight on an idle CPU. It is the
 * smallest scheduler that is correct (no task waits forever while a CPU it
 * may use is idle) and the baseline the other schedulers are compared to.
 */
#include <scx/common.bpf.h>

char _license[] SEC("license") = "GPL";

/* 6.12 consumes SCX_DSQ_GLOBAL itself before ops.dispatch: a DSQ of our own
 * keeps the queue under this scheduler's control. */
#define FIFO_DSQ 0

UEI_DEFINE(uei);

void BPF_STRUCT_OPS(fifo_enqueue, struct task_struct *p, u64 enq_flags)
{
	scx_bpf_dsq_insert(p, FIFO_DSQ, SCX_SLICE_DFL, enq_flags);
}

void BPF_STRUCT_OPS(fifo_dispatch, s32 cpu, struct task_struct *prev)
{
	scx_bpf_dsq_move_to_local(FIFO_DSQ, 0);
}

s32 BPF_STRUCT_OPS_SLEEPABLE(fifo_init)
{
	return scx_bpf_create_dsq(FIFO_DSQ, -1);
}

void BPF_STRUCT_OPS(fifo_exit, struct scx_exit_info *ei)
{
	UEI_RECORD(uei, ei);
}

SCX_OPS_DEFINE(fifo_ops,
	       .enqueue		= (void *)fifo_enqueue,
	       .dispatch	= (void *)fifo_dispatch,
	       .init		= (void *)fifo_init,
	       .exit		= (void *)fifo_exit,
	       .name		= "fifo");
