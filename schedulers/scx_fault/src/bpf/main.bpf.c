/* SPDX-License-Identifier: GPL-2.0 */
/*
 * scx_fault: TEST FIXTURE, NOT A SCHEDULER TO RUN. A global FIFO (as
 * scx_fifo) with faults that user space switches on, one per check of the
 * harness, so that every check can be proven to fire:
 *
 *  stall_comm:     tasks with this comm are queued where nothing ever takes
 *                  them (a stall the kernel watchdog finds only after
 *                  timeout_ms, 30 s by default); a trailing '*' matches
 *                  every comm that begins with the rest ("kworker/0:*").
 *  stall_after_ns: ... but only from that long after load on, so that a
 *                  task can set itself up (and go to sleep) first.
 *  error_after_ns: scx_bpf_error() that long after load (ERROR_BPF).
 *  delay_comm +    every enqueue of a task with this comm is held for
 *  delay_ns:       exactly delay_ns before it may run: a known scheduling
 *                  delay, the ground truth for latency measurement.
 *  reject:         a program the verifier refuses, so the load fails.
 *
 * Held tasks wait in a vtime DSQ ordered by release time; a BPF timer armed
 * for the earliest release kicks a CPU (an idle one, else preempts one) and
 * that CPU's ops.dispatch moves every due task to a local DSQ.
 */
#include <scx/common.bpf.h>

char _license[] SEC("license") = "GPL";

const volatile char stall_comm[16];
const volatile char delay_comm[16];
const volatile u64 delay_ns;
const volatile u64 error_after_ns;
const volatile u64 stall_after_ns;
const volatile bool reject;

#define SHARED_DSQ 0
#define JAIL_DSQ 1 /* never consumed */
#define HELD_DSQ 2 /* vtime = release time */
#define MAX_CPUS 512

enum timers { RELEASE_TIMER, ERROR_TIMER, NR_TIMERS };

struct timer_slot {
	struct bpf_timer timer;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, NR_TIMERS);
	__type(key, u32);
	__type(value, struct timer_slot);
} timers SEC(".maps");

static u32 nr_cpus = 1;
static u64 loaded_at;
/* Absolute time the release timer is armed for, 0 when it is not. */
static u64 release_armed_at;
/* Counters user space prints when it exits. */
u64 nr_held, nr_released, nr_jailed;

UEI_DEFINE(uei);

static bool comm_is(const struct task_struct *p, const volatile char *name)
{
	int i;

	if (!name[0])
		return false;
	/* Unrolled: constant offsets into task_struct (the verifier refuses a
	 * variable offset into it). */
#pragma unroll
	for (i = 0; i < 16; i++) {
		char c = p->comm[i];

		if (name[i] == '*' && (i == 15 || !name[i + 1]))
			return true;
		if (c != name[i])
			return false;
		if (!c)
			return true;
	}
	return true;
}

static struct bpf_timer *timer(u32 which)
{
	struct timer_slot *slot = bpf_map_lookup_elem(&timers, &which);

	return slot ? &slot->timer : NULL;
}

static void arm_release(u64 at)
{
	struct bpf_timer *t = timer(RELEASE_TIMER);
	u64 armed = release_armed_at;

	if (!t || (armed && armed <= at))
		return;
	release_armed_at = at;
	bpf_timer_start(t, at, BPF_F_TIMER_ABS);
}

static int release_timerfn(void *map, int *key, struct bpf_timer *t)
{
	const struct cpumask *idle;
	bool any_idle;
	u32 cpu;

	release_armed_at = 0;
	idle = scx_bpf_get_idle_cpumask();
	any_idle = !bpf_cpumask_empty(idle);
	scx_bpf_put_idle_cpumask(idle);
	if (!any_idle) {
		/* Every CPU is busy: cut the slice of one so it dispatches. */
		scx_bpf_kick_cpu(bpf_get_prandom_u32() % nr_cpus, SCX_KICK_PREEMPT);
		return 0;
	}
	bpf_for(cpu, 0, nr_cpus) {
		if (cpu >= MAX_CPUS)
			break;
		scx_bpf_kick_cpu(cpu, SCX_KICK_IDLE);
	}
	return 0;
}

static int error_timerfn(void *map, int *key, struct bpf_timer *t)
{
	scx_bpf_error("injected by scx_fault --error-after %llu ms",
		      error_after_ns / 1000000);
	return 0;
}

s32 BPF_STRUCT_OPS(fault_select_cpu, struct task_struct *p, s32 prev_cpu, u64 wake_flags)
{
	bool is_idle = false;
	s32 cpu;

	/* Faulted tasks must reach ops.enqueue: no direct dispatch for them. */
	if (comm_is(p, stall_comm) || (delay_ns && comm_is(p, delay_comm)))
		return prev_cpu;
	cpu = scx_bpf_select_cpu_dfl(p, prev_cpu, wake_flags, &is_idle);
	if (is_idle)
		scx_bpf_dsq_insert(p, SCX_DSQ_LOCAL, SCX_SLICE_DFL, 0);
	return cpu;
}

void BPF_STRUCT_OPS(fault_enqueue, struct task_struct *p, u64 enq_flags)
{
	if (comm_is(p, stall_comm) &&
	    bpf_ktime_get_ns() >= loaded_at + stall_after_ns) {
		__sync_fetch_and_add(&nr_jailed, 1);
		scx_bpf_dsq_insert(p, JAIL_DSQ, SCX_SLICE_DFL, enq_flags);
		return;
	}
	if (delay_ns && comm_is(p, delay_comm)) {
		u64 release = bpf_ktime_get_ns() + delay_ns;

		__sync_fetch_and_add(&nr_held, 1);
		scx_bpf_dsq_insert_vtime(p, HELD_DSQ, SCX_SLICE_DFL, release, enq_flags);
		arm_release(release);
		return;
	}
	scx_bpf_dsq_insert(p, SHARED_DSQ, SCX_SLICE_DFL, enq_flags);
}

void BPF_STRUCT_OPS(fault_dispatch, s32 cpu, struct task_struct *prev)
{
	struct task_struct *p;
	u64 now = bpf_ktime_get_ns();
	bool moved = false;

	bpf_for_each(scx_dsq, p, HELD_DSQ, 0) {
		if (p->scx.dsq_vtime > now) {
			arm_release(p->scx.dsq_vtime);
			break;
		}
		if (moved) {
			/* More are due: another CPU takes the next one. */
			arm_release(now);
			break;
		}
		if (scx_bpf_dsq_move(BPF_FOR_EACH_ITER, p, SCX_DSQ_LOCAL, 0)) {
			__sync_fetch_and_add(&nr_released, 1);
			moved = true;
		}
	}
	if (!moved)
		scx_bpf_dsq_move_to_local(SHARED_DSQ, 0);
}

void BPF_STRUCT_OPS(fault_tick, struct task_struct *p)
{
	if (reject) {
		/* Dereferences a scalar: the verifier refuses the program. */
		u64 addr = bpf_ktime_get_ns();

		p->scx.slice = *(volatile u64 *)addr;
	}
}

s32 BPF_STRUCT_OPS_SLEEPABLE(fault_init)
{
	struct bpf_timer *t;
	s32 ret;

	nr_cpus = scx_bpf_nr_cpu_ids();
	loaded_at = bpf_ktime_get_ns();
	if ((ret = scx_bpf_create_dsq(SHARED_DSQ, -1)) ||
	    (ret = scx_bpf_create_dsq(JAIL_DSQ, -1)) ||
	    (ret = scx_bpf_create_dsq(HELD_DSQ, -1)))
		return ret;

	t = timer(RELEASE_TIMER);
	if (!t)
		return -ENOENT;
	bpf_timer_init(t, &timers, CLOCK_MONOTONIC);
	bpf_timer_set_callback(t, release_timerfn);

	t = timer(ERROR_TIMER);
	if (!t)
		return -ENOENT;
	bpf_timer_init(t, &timers, CLOCK_MONOTONIC);
	bpf_timer_set_callback(t, error_timerfn);
	if (error_after_ns)
		return bpf_timer_start(t, error_after_ns, 0);
	return 0;
}

void BPF_STRUCT_OPS(fault_exit, struct scx_exit_info *ei)
{
	UEI_RECORD(uei, ei);
}

SCX_OPS_DEFINE(fault_ops,
	       .select_cpu	= (void *)fault_select_cpu,
	       .enqueue		= (void *)fault_enqueue,
	       .dispatch	= (void *)fault_dispatch,
	       .tick		= (void *)fault_tick,
	       .init		= (void *)fault_init,
	       .exit		= (void *)fault_exit,
	       .name		= "fault");
