/* SPDX-License-Identifier: GPL-2.0 */
/*
 * scx-harness's scheduling probe: for every task of a scenario, the exact
 * wakeup-to-run delay of each wait and how long it has been runnable
 * without running, from the scheduler core's own tracepoints, whatever
 * scheduler class the task is in.
 *
 *  sched_wakeup, sched_wakeup_new   the task became runnable
 *  sched_switch                     prev stops running (still runnable if
 *                                   it was preempted or is TASK_RUNNING:
 *                                   it waits again from now); next starts
 *                                   running (its wait ends)
 *  sched_process_fork               a tracked process's child is tracked
 *                                   too (fork storms, commands)
 *  sched_process_exit               an exiting task's entry is removed
 *                                   (its CPU time is kept in its group)
 *
 * Tasks are tracked by thread-group id, registered by user space in
 * `tracked` (tgid -> group). Per task, `tasks` holds the state user space
 * scans for stalls while the run goes on; per group, `groups` sums it up. Waits that end inside the
 * measurement window go into a log-linear histogram per group: 128
 * sub-buckets per power of two, so a bucket's midpoint is within 0.4% of
 * any value in it. No helper here prints or attaches to kernel text.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

char LICENSE[] SEC("license") = "GPL";

#define MAX_GROUPS	32
#define SUB_BITS	7
#define SUB		(1 << SUB_BITS)
#define NR_OCTAVES	37	/* values up to 2^(7+37) ns: about 4.9 hours */
#define NR_BUCKETS	(SUB + NR_OCTAVES * SUB)
#define MAX_TASKS	65536

/* The measurement window, CLOCK_MONOTONIC ns; set by user space. Waits
 * that end inside it go into the histograms. 0/0 = nothing measured. */
u64 window_start;
u64 window_end;
/* Events seen for tracked tasks, and map updates that failed (a full
 * map): user space reports them rather than trusting a partial result. */
u64 nr_events;
u64 nr_dropped;

struct task_stat {
	u32 group;
	u32 tgid;
	u64 runnable_since;	/* 0 unless waiting to run */
	u64 running_since;	/* 0 unless running */
	u64 run_ns;		/* CPU time while tracked */
	u64 run_ns_window;	/* the part of it inside the window */
	u64 nr_waits;		/* waits that ended in the window */
	u64 wait_ns;		/* their total */
	u64 max_wait;		/* longest wait that ended, whole run */
};

struct group_stat {
	u64 nr_waits;		/* in the window */
	u64 wait_ns;		/* in the window */
	u64 max_wait;		/* in the window */
	u64 max_wait_all;	/* whole run */
	u64 run_ns;		/* whole run, tasks that exited included */
	u64 run_ns_window;	/* the part of it inside the window */
	u64 nr_tasks;		/* tasks ever tracked */
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, u32);	/* tgid */
	__type(value, u32);	/* group */
} tracked SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_TASKS);
	__type(key, u32);	/* tid */
	__type(value, struct task_stat);
} tasks SEC(".maps");

/* Globals live in .bss, which user space reads through its mmap: no
 * system call per bucket. */
struct group_stat groups[MAX_GROUPS];
u64 hist[MAX_GROUPS * NR_BUCKETS];

/* Indexing after a barrier: clang must not compute the address before
 * the bounds check, or the verifier sees an unbounded access. */
static __always_inline struct group_stat *group_of(u32 g)
{
	if (g >= MAX_GROUPS)
		return NULL;
	barrier_var(g);
	return &groups[g];
}

/* Index of the most significant set bit of v (v > 0). */
static __always_inline u32 msb(u64 v)
{
	u32 r = 0;

	if (v >> 32) { v >>= 32; r += 32; }
	if (v >> 16) { v >>= 16; r += 16; }
	if (v >> 8)  { v >>= 8;  r += 8; }
	if (v >> 4)  { v >>= 4;  r += 4; }
	if (v >> 2)  { v >>= 2;  r += 2; }
	if (v >> 1)  { r += 1; }
	return r;
}

/* Keep in step with probe::hist::bucket_of(). */
static __always_inline u32 bucket_of(u64 ns)
{
	u32 e, idx;

	if (ns < SUB)
		return ns;
	e = msb(ns);				/* >= SUB_BITS */
	idx = SUB + (e - SUB_BITS) * SUB + ((ns >> (e - SUB_BITS)) & (SUB - 1));
	return idx < NR_BUCKETS ? idx : NR_BUCKETS - 1;
}

/* How much of [from, to) lies inside the window. */
static __always_inline u64 in_window(u64 from, u64 to)
{
	u64 lo = from > window_start ? from : window_start;
	u64 hi = to < window_end ? to : window_end;

	return hi > lo ? hi - lo : 0;
}

/* Charges the CPU time of a run that ends now. */
static __always_inline void charge_run(struct task_stat *ts, u64 now)
{
	struct group_stat *gs;
	u64 ran, win;

	if (!ts->running_since || ts->running_since > now)
		return;
	ran = now - ts->running_since;
	win = in_window(ts->running_since, now);
	ts->run_ns += ran;
	ts->run_ns_window += win;
	gs = group_of(ts->group);
	if (gs) {
		__sync_fetch_and_add(&gs->run_ns, ran);
		__sync_fetch_and_add(&gs->run_ns_window, win);
	}
	ts->running_since = 0;
}

/* *p = max(*p, v), racing with other CPUs: a few compare-and-swap tries
 * (a bounded loop for the verifier; losing every try needs as many other
 * CPUs raising the same maximum at once). */
static __always_inline void atomic_max(u64 *p, u64 v)
{
	u64 old = *p;
	int i;

#pragma unroll
	for (i = 0; i < 4 && v > old; i++) {
		u64 seen = __sync_val_compare_and_swap(p, old, v);

		if (seen == old)
			break;
		old = seen;
	}
}

/* The entry of a tracked task, created on first sight. */
static struct task_stat *lookup(struct task_struct *p)
{
	u32 tid = p->pid, tgid = p->tgid;
	struct task_stat *ts, fresh = {};
	struct group_stat *gs;
	u32 *group;

	ts = bpf_map_lookup_elem(&tasks, &tid);
	if (ts)
		return ts;
	group = bpf_map_lookup_elem(&tracked, &tgid);
	if (!group)
		return NULL;
	fresh.group = *group;
	fresh.tgid = tgid;
	if (bpf_map_update_elem(&tasks, &tid, &fresh, BPF_NOEXIST) &&
	    !bpf_map_lookup_elem(&tasks, &tid)) {
		__sync_fetch_and_add(&nr_dropped, 1);
		return NULL;
	}
	gs = group_of(fresh.group);
	if (gs)
		__sync_fetch_and_add(&gs->nr_tasks, 1);
	return bpf_map_lookup_elem(&tasks, &tid);
}

static void became_runnable(struct task_struct *p, u64 now)
{
	struct task_stat *ts = lookup(p);

	if (!ts)
		return;
	__sync_fetch_and_add(&nr_events, 1);
	/* A wakeup of a task that has not switched out yet (it was woken
	 * before it got to sleep) does not start a wait: it is running. */
	if (!ts->runnable_since && !ts->running_since)
		ts->runnable_since = now;
}

SEC("tp_btf/sched_wakeup")
int BPF_PROG(on_wakeup, struct task_struct *p)
{
	became_runnable(p, bpf_ktime_get_ns());
	return 0;
}

SEC("tp_btf/sched_wakeup_new")
int BPF_PROG(on_wakeup_new, struct task_struct *p)
{
	became_runnable(p, bpf_ktime_get_ns());
	return 0;
}

SEC("tp_btf/sched_switch")
int BPF_PROG(on_switch, bool preempt, struct task_struct *prev,
	     struct task_struct *next, unsigned int prev_state)
{
	u64 now = bpf_ktime_get_ns();
	struct task_stat *ts;
	struct group_stat *gs;

	/* prev ran, so it was seen when it was switched in: no new entry. */
	{
		u32 tid = prev->pid;

		ts = bpf_map_lookup_elem(&tasks, &tid);
	}
	if (ts) {
		__sync_fetch_and_add(&nr_events, 1);
		charge_run(ts, now);
		/* Preempted, or yielding: still on the runqueue, waiting from
		 * now. Otherwise it sleeps, and no wait is open. */
		ts->runnable_since = (preempt || prev_state == 0) ? now : 0;
	}

	ts = lookup(next);
	if (ts) {
		u64 since = ts->runnable_since;

		__sync_fetch_and_add(&nr_events, 1);
		ts->running_since = now;
		ts->runnable_since = 0;
		if (since && since <= now) {
			u64 wait = now - since;
			u32 g = ts->group;

			if (wait > ts->max_wait)
				ts->max_wait = wait;
			gs = group_of(g);
			if (gs)
				atomic_max(&gs->max_wait_all, wait);
			if (now >= window_start && now < window_end && g < MAX_GROUPS) {
				u32 idx = g * NR_BUCKETS + bucket_of(wait);

				if (idx < MAX_GROUPS * NR_BUCKETS) {
					barrier_var(idx);
					__sync_fetch_and_add(&hist[idx], 1);
				}
				ts->nr_waits++;
				ts->wait_ns += wait;
				if (gs) {
					__sync_fetch_and_add(&gs->nr_waits, 1);
					__sync_fetch_and_add(&gs->wait_ns, wait);
					atomic_max(&gs->max_wait, wait);
				}
			}
		}
	}
	return 0;
}

SEC("tp_btf/sched_process_fork")
int BPF_PROG(on_fork, struct task_struct *parent, struct task_struct *child)
{
	u32 ptgid = parent->tgid, ctgid = child->tgid;
	u32 *group;

	if (ptgid == ctgid)
		return 0;	/* a thread: same tgid, tracked already */
	group = bpf_map_lookup_elem(&tracked, &ptgid);
	if (group && bpf_map_update_elem(&tracked, &ctgid, group, BPF_ANY))
		__sync_fetch_and_add(&nr_dropped, 1);
	return 0;
}

SEC("tp_btf/sched_process_exit")
int BPF_PROG(on_exit, struct task_struct *p)
{
	u32 tid = p->pid, tgid = p->tgid;
	struct task_stat *ts = bpf_map_lookup_elem(&tasks, &tid);

	if (!ts)
		return 0;
	charge_run(ts, bpf_ktime_get_ns());
	bpf_map_delete_elem(&tasks, &tid);
	/* A process is gone: forget its tgid, so a fork storm does not fill
	 * `tracked` (its last switch-out finds no entry and creates none). */
	if (tid == tgid)
		bpf_map_delete_elem(&tracked, &tgid);
	return 0;
}
