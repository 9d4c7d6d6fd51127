/* SPDX-License-Identifier: GPL-2.0 */
/*
 * scx-harness's scheduling probe: for every task of a scenario, the exact
 * wakeup-to-run delay of each wait and how long it has been runnable
 * without running, from the scheduler core's own tracepoints, whatever
 * scheduler class the task is in.
 *
 *  sched_wakeup                     the task became runnable
 *  sched_wakeup_new                 a new task became runnable; a new
 *                                   process of a tracked one is tracked
 *                                   too (fork storms, commands)
 *  sched_switch                     prev stops running (still runnable if
 *                                   it was preempted or is TASK_RUNNING:
 *                                   it waits again from now; exited if it
 *                                   is TASK_DEAD: its sums stay); next
 *                                   starts running (its wait ends)
 *  sched_migrate_task               a waiting task moved to another CPU's
 *                                   runqueue: its wait goes on there
 *  ipi_send_cpu (no callback),      an idle CPU was told to run what is
 *  sched_wake_idle_without_ipi      queued on it (a reschedule IPI; a
 *                                   polling idle CPU's flag): it is
 *                                   waking from here
 *  cpu_idle                         an idle CPU enters an idle state (a
 *                                   kick may come: armed) or leaves it
 *                                   (a kick's waking ends there)
 *
 * Only these seven: the guest's kernel command line enables their trace
 * events at boot (vm::boot_args), so each has two functions registered
 * before the second CPU starts and attaching or detaching the probe never
 * re-patches their call sites in running kernel text (under QEMU's TCG
 * that patching can crash the guest with "Oops: int3").
 *
 * The hot path must cost little: ping-pong pairs switch hundreds of
 * thousands of times a second, and under TCG every instruction counts.
 * Each task has a slot in `slots`, indexed by its pid (a direct-mapped
 * array in .bss: no hash lookup, no system call for user space, which
 * reads it through the mmap; pid and start time tell which task holds
 * it). A slot remembers whether its task is
 * tracked, so an untracked task costs one array access after its first
 * event; the first event of a task looks its thread-group id up in
 * `tracked` (tgid -> group), which user space fills. A switch writes only
 * its own tasks' slots and one histogram bucket: no shared counter. A
 * task's sums stay in its slot after it exits, so user space can add up
 * every slot at any moment without counting a task twice; only a later
 * task taking the slot over folds them into its group first.
 *
 * Waits that end inside the measurement window go into a log-linear
 * histogram per group: 128 sub-buckets per power of two, so a bucket's
 * midpoint is within 0.4% of any value in it. No helper here prints or
 * attaches to kernel text.
 *
 * Two windows, one meaning each (user space sets both):
 *  [window_start, window_end)  the measurement window: a wait that ENDS
 *                              inside it is a run delay (histogram, sums,
 *                              max_wait_window); the stop of a pass cut
 *                              short moves window_end to the stop.
 *  [pass_start, pass_end)      the watch: how long a task stayed runnable
 *                              without running, counting only the part of
 *                              each wait inside it (max_runnable), so a
 *                              wait open at the stop counts up to the stop
 *                              whenever it is read, and a wait that ends
 *                              later adds nothing beyond it.
 *
 * Why a task waited: every CPU keeps, in cpu_ran[cpu] (written by its own
 * sched_switch and cpu_idle; other CPUs only set its kicked_at), how long
 * it has run the idle task, a task of a
 * higher class (RT, deadline, stop: prio < 100) and any other task (fair
 * or sched_ext: the scheduler's own domain). A wait remembers those sums
 * of the CPU it waits on when it starts; when it ends, the higher-class
 * part of it is what that CPU ran above the fair and sched_ext classes
 * meanwhile (the kernel allows that), and the idle part what it idled
 * (the scheduler left the task queued beside an idle CPU). An idle CPU
 * asleep in an idle state (between cpu_idle's enter and exit) that the
 * kernel has told to run (a reschedule IPI sent to it, a polling idle
 * CPU's flag set, or a wakeup onto it in an interrupt it took there) is
 * "waking" from that moment until it leaves the idle state: the
 * platform's part (a C-state exit on metal; in a VM, a halted vCPU that
 * the host has not run yet: under TCG on a busy host, milliseconds). What
 * the CPU does after it (the rest of the idle loop, the scheduler's pick
 * until the switch) is idle time, the scheduler's, and so is a kicked CPU
 * that the scheduler gives nothing and that sleeps again. The rest of a
 * wait less its higher-class and waking parts, the scheduler's own part,
 * goes into a second histogram ("own").
 *
 * With watch_all set, every other task of the guest (kernel threads
 * included) has a slot too, in group WATCHED: its runnable time is kept
 * (never a histogram), and the longest wait of such a task that ended on
 * each CPU goes into other_worst[cpu], written only by that CPU.
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
/* pid_max is 32768 up to 32 CPUs and 1024 per CPU beyond: 64 vCPUs. */
#define NR_SLOTS	65536
#define UNTRACKED	0xffffffff
#define WATCHED		0xfffffffe	/* not the scenario's: watch_all */
#define MAX_CPUS	512
#define TASK_DEAD	0x80	/* include/linux/sched.h; not in BTF */

/* The measurement window, CLOCK_MONOTONIC ns; set by user space. Waits
 * that end inside it go into the histograms. 0/0 = nothing measured. */
u64 window_start;
u64 window_end;
/* The watch, CLOCK_MONOTONIC ns (see above). */
u64 pass_start;
u64 pass_end;
/* Give every task of the guest a slot (group WATCHED). */
u32 watch_all;
/* Tasks whose pid did not fit a slot: user space reports them rather
 * than trusting a partial result. */
u64 nr_dropped;
/* While user space swaps schedulers: the longest wait per group that ended
 * in [spike_start, spike_end). */
u64 spike_start;
u64 spike_end;
u64 spike_max[MAX_GROUPS];

/* What a CPU ran: cpu_ran[].ns indices. */
#define RAN_IDLE	0
#define RAN_HIGHER	1	/* RT, deadline, stop */
#define RAN_OTHER	2	/* fair or sched_ext */
#define RAN_WAKING	3	/* in an idle state, told to run (kicked_at) */
#define NR_RAN		4
#define KICK_ARMED	0ULL
#define KICK_OFF	(~0ULL)

struct cpu_ran {
	u64 since;		/* its last switch or idle-state exit after a
				 * kick; 0: none seen yet */
	u32 what;		/* what it has run since (never RAN_WAKING) */
	u32 pad;
	u64 ns[NR_RAN];		/* time per RAN_* */
	/* KICK_ARMED (0) while its idle task sleeps in an idle state (from
	 * cpu_idle's entry) and no one has told it to run; then when it was
	 * told (any CPU, by compare-and-swap from KICK_ARMED only); KICK_OFF
	 * from its idle-state exit or a switch on (its own CPU, by exchange:
	 * a kick landing after the exit fails). The stretch is idle up to a
	 * kick and waking from it: ran_ns counts a kick only within
	 * [since, now], which neither KICK_ARMED nor KICK_OFF ever is. */
	u64 kicked_at;
	u64 pad_line[1];	/* one cache line per CPU */
};
struct cpu_ran cpu_ran[MAX_CPUS];

struct task_stat {
	u32 tid;		/* 0: never used */
	u32 group;		/* UNTRACKED, or the group */
	u32 tgid;
	u32 exited;		/* its sums stay here after it exits */
	u32 cpu;		/* the CPU whose runqueue it waits on */
	u32 pad;
	u64 start_time;		/* with tid, which task holds the slot */
	u64 runnable_since;	/* 0 unless waiting to run */
	u64 running_since;	/* 0 unless running */
	u64 run_ns;		/* CPU time while tracked */
	u64 run_ns_window;	/* the part of it inside the window */
	u64 nr_waits;		/* waits that ended in the window */
	u64 wait_ns;		/* their total */
	u64 max_wait_window;	/* the longest of them */
	u64 max_runnable;	/* longest runnable time inside the watch */
	u64 nr_events;		/* tracepoint hits for this task */
	u64 higher_mark;	/* cpu_ran[cpu].ns[RAN_HIGHER] at the wait's start,
				 * less what earlier CPUs of the wait ran so
				 * (on_migrate) */
	u64 idle_mark;		/* the same of cpu_ran[cpu].ns[RAN_IDLE] */
	u64 waking_mark;	/* the same of cpu_ran[cpu].ns[RAN_WAKING] */
	u64 wait_higher_ns;	/* of wait_ns: behind a higher class */
	u64 wait_idle_ns;	/* of wait_ns: while its CPU idled */
	u64 wait_waking_ns;	/* of wait_ns: while its CPU was waking */
	u64 max_own;		/* longest wait in the window minus its higher
				 * and waking parts */
	u64 max_runnable_own;	/* max_runnable minus the same */
};

/* The sums of a group's tasks whose slots were taken over by later tasks
 * with the same pid (and the count of every task it ever had). */
struct group_stat {
	u64 nr_waits;		/* in the window */
	u64 wait_ns;		/* in the window */
	u64 max_wait;		/* in the window */
	u64 max_runnable;	/* inside the watch */
	u64 run_ns;		/* whole run */
	u64 run_ns_window;	/* the part of it inside the window */
	u64 nr_events;
	u64 nr_tasks;		/* tasks ever tracked */
	u64 exited_run_ns;	/* CPU time of its exited tasks (timelines) */
	u64 wait_higher_ns;
	u64 wait_idle_ns;
	u64 wait_waking_ns;
	u64 max_own;
	u64 max_runnable_own;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, u32);	/* tgid */
	__type(value, u32);	/* group */
} tracked SEC(".maps");

/* Globals live in .bss, which user space reads through its mmap. */
struct task_stat slots[NR_SLOTS];

/* The longest wait inside the watch of a WATCHED task, per CPU where it
 * ended (each entry written by its own CPU's sched_switch only). */
struct other_wait {
	u32 tid;
	u32 cpu;		/* the CPU it waited on */
	u64 runnable_ns;
	char comm[16];
	u64 pad_line[4];	/* one cache line per CPU */
};
struct other_wait other_worst[MAX_CPUS];
struct group_stat groups[MAX_GROUPS];
u64 hist[MAX_GROUPS * NR_BUCKETS];
/* The same waits less their higher-class and waking parts: the
 * scheduler's own. */
u64 hist_own[MAX_GROUPS * NR_BUCKETS];

/* Indexing after a barrier: clang must not compute the address before
 * the bounds check, or the verifier sees an unbounded access. */
static __always_inline struct group_stat *group_of(u32 g)
{
	if (g >= MAX_GROUPS)
		return NULL;
	barrier_var(g);
	return &groups[g];
}

static __always_inline struct task_stat *slot_of(u32 tid)
{
	if (tid >= NR_SLOTS)
		return NULL;
	barrier_var(tid);
	return &slots[tid];
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

/* How much of a wait from `since` to `to` lies inside the watch. */
static __always_inline u64 in_watch(u64 since, u64 to)
{
	u64 lo = since > pass_start ? since : pass_start;
	u64 hi = to < pass_end ? to : pass_end;

	return hi > lo ? hi - lo : 0;
}

/* Charges the CPU time of a run that ends now. */
static __always_inline void charge_run(struct task_stat *ts, u64 now)
{
	if (!ts->running_since || ts->running_since > now)
		return;
	ts->run_ns += now - ts->running_since;
	ts->run_ns_window += in_window(ts->running_since, now);
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

/* The slot of a tracked task, set up on its first event; NULL for an
 * untracked one (remembered in its slot) and the idle task. */
static __always_inline struct task_stat *lookup(struct task_struct *p)
{
	u32 tid = p->pid, tgid;
	struct task_stat *ts;
	struct group_stat *gs;
	u32 *group;

	if (!tid)
		return NULL;
	ts = slot_of(tid);
	if (!ts) {
		__sync_fetch_and_add(&nr_dropped, 1);
		return NULL;
	}
	if (ts->tid == tid && ts->start_time == p->start_time) {
		if (ts->exited)
			return NULL;
		if (ts->group == UNTRACKED && watch_all) {
			/* Watched from now on; nothing of it is known yet. */
			ts->group = WATCHED;
			ts->runnable_since = 0;
			ts->running_since = 0;
			ts->max_runnable = 0;
			return ts;
		}
		if (ts->group == WATCHED && !watch_all) {
			/* Unwatched now: turning the watch on again goes through
			 * the branch above, which forgets its stale state. */
			ts->group = UNTRACKED;
			return NULL;
		}
		if (ts->group == UNTRACKED)
			return NULL;
		return ts;
	}
	/* A new task in this slot (a pid is reused only by a later task): the
	 * old one's sums go to its group first. */
	if (ts->tid && ts->group < MAX_GROUPS) {
		gs = group_of(ts->group);
		if (gs) {
			__sync_fetch_and_add(&gs->nr_waits, ts->nr_waits);
			__sync_fetch_and_add(&gs->wait_ns, ts->wait_ns);
			__sync_fetch_and_add(&gs->run_ns, ts->run_ns);
			__sync_fetch_and_add(&gs->run_ns_window, ts->run_ns_window);
			__sync_fetch_and_add(&gs->nr_events, ts->nr_events);
			atomic_max(&gs->max_wait, ts->max_wait_window);
			atomic_max(&gs->max_runnable, ts->max_runnable);
			__sync_fetch_and_add(&gs->wait_higher_ns, ts->wait_higher_ns);
			__sync_fetch_and_add(&gs->wait_idle_ns, ts->wait_idle_ns);
			__sync_fetch_and_add(&gs->wait_waking_ns, ts->wait_waking_ns);
			atomic_max(&gs->max_own, ts->max_own);
			atomic_max(&gs->max_runnable_own, ts->max_runnable_own);
		}
	}
	tgid = p->tgid;
	group = bpf_map_lookup_elem(&tracked, &tgid);
	__builtin_memset(ts, 0, sizeof(*ts));
	ts->tid = tid;
	ts->tgid = tgid;
	ts->start_time = p->start_time;
	if (!group) {
		ts->group = watch_all ? WATCHED : UNTRACKED;
		return watch_all ? ts : NULL;
	}
	ts->group = *group;
	gs = group_of(ts->group);
	if (gs)
		__sync_fetch_and_add(&gs->nr_tasks, 1);
	return ts;
}

static __always_inline struct cpu_ran *ran_of(u32 cpu)
{
	if (cpu >= MAX_CPUS)
		return NULL;
	barrier_var(cpu);
	return &cpu_ran[cpu];
}

/* CPU `cpu`'s time of kind `what` up to `now`, the current stretch
 * included (an idle one split at its kick). Keep in step with
 * Probe::ran_ns. */
static __always_inline u64 ran_ns(u32 cpu, u32 what, u64 now)
{
	struct cpu_ran *r = ran_of(cpu);
	u64 v, since, kick;
	u32 cur;

	if (!r || what >= NR_RAN)
		return 0;
	barrier_var(what);
	v = r->ns[what];
	since = r->since;
	cur = r->what;
	if (!since || since > now)
		return v;
	if (cur == RAN_IDLE && (what == RAN_IDLE || what == RAN_WAKING)) {
		kick = r->kicked_at;
		if (kick < since || kick > now)
			kick = 0;
		if (what == RAN_IDLE)
			v += (kick ? kick : now) - since;
		else if (kick)
			v += now - kick;
	} else if (cur == what) {
		v += now - since;
	}
	return v;
}

/* A wait starts now on `cpu`: remember what that CPU has run so far. */
static __always_inline void mark_wait(struct task_stat *ts, u32 cpu, u64 now)
{
	ts->cpu = cpu;
	ts->higher_mark = ran_ns(cpu, RAN_HIGHER, now);
	ts->idle_mark = ran_ns(cpu, RAN_IDLE, now);
	ts->waking_mark = ran_ns(cpu, RAN_WAKING, now);
}

/* What CPU `cpu` ran of kind `what` since `mark`: the sums only grow, but
 * the mark may be another CPU's stale read or, after a migration, lie
 * above the sum (see on_migrate): compared as signed, never negative. */
static __always_inline u64 ran_since(u32 cpu, u32 what, u64 mark, u64 now)
{
	s64 d = ran_ns(cpu, what, now) - mark;

	return d > 0 ? d : 0;
}

/* Closes `r`'s idle stretch at `now`: idle up to `kick`, waking from it
 * (all idle when `kick` is no time within the stretch: armed, off, or of
 * an earlier one). Only its own CPU. */
static __always_inline void close_idle(struct cpu_ran *r, u64 kick, u64 now)
{
	if (kick < r->since || kick > now)
		kick = now;
	r->ns[RAN_IDLE] += kick - r->since;
	r->ns[RAN_WAKING] += now - kick;
}

/* What CPU `cpu` runs from now on: `next`. Only that CPU calls this. */
static __always_inline void cpu_switch(u32 cpu, struct task_struct *next, u64 now)
{
	struct cpu_ran *r = ran_of(cpu);
	u32 what;

	if (!r)
		return;
	if (r->since && r->since <= now && r->what <= RAN_OTHER) {
		what = r->what;
		barrier_var(what);
		if (what == RAN_IDLE)
			close_idle(r, r->kicked_at, now);
		else if (what <= RAN_OTHER)
			r->ns[what] += now - r->since;
	}
	/* Awake: no kick counts until the next idle-state entry arms it. */
	r->kicked_at = KICK_OFF;
	r->since = now;
	r->what = !next->pid ? RAN_IDLE : next->prio < 100 ? RAN_HIGHER : RAN_OTHER;
}

/* CPU `cpu` is told to run: the start of its waking, if it sleeps in an
 * idle state and was not told already (armed). (The clock is read here,
 * after the test, so a kicker delayed between the two does not date a
 * kick before a wait that began meanwhile; the swap fails once the CPU's
 * exit or switch disarmed it.) */
static __always_inline void kicked(u32 cpu)
{
	struct cpu_ran *r = ran_of(cpu);

	if (!r || r->what != RAN_IDLE || !r->since || r->kicked_at != KICK_ARMED)
		return;
	__sync_val_compare_and_swap(&r->kicked_at, KICK_ARMED, bpf_ktime_get_ns());
}

/* Disarms `r`'s kick and returns what it held: an exchange by two
 * compare-and-swaps (only one other change can come between: a kicker's
 * from KICK_ARMED to its time). */
static __always_inline u64 disarm(struct cpu_ran *r)
{
	u64 old = r->kicked_at, seen;

	seen = __sync_val_compare_and_swap(&r->kicked_at, old, KICK_OFF);
	if (seen != old) {
		old = seen;
		__sync_val_compare_and_swap(&r->kicked_at, old, KICK_OFF);
	}
	return old;
}

/* A reschedule IPI (no callback: smp_send_reschedule; a function call
 * IPI has one and tells the CPU to run no task). */
SEC("tp_btf/ipi_send_cpu")
int BPF_PROG(on_ipi_send_cpu, unsigned int cpu, unsigned long callsite, void *callback)
{
	if (!callback)
		kicked(cpu);
	return 0;
}

/* A polling idle CPU's need_resched set instead of an IPI. */
SEC("tp_btf/sched_wake_idle_without_ipi")
int BPF_PROG(on_wake_idle_without_ipi, int cpu)
{
	if (cpu >= 0)
		kicked(cpu);
	return 0;
}

/* PWR_EVENT_EXIT: include/trace/events/power.h (a #define, not in BTF). */
#define PWR_EVENT_EXIT	((u32)-1)

/* The idle task of this CPU enters an idle state (asleep from now) or
 * leaves it. Leaving it after a kick ends the waking: from here the CPU
 * runs again, and what it does until its switch (the rest of the idle
 * loop, the scheduler's pick) is idle time, the scheduler's. A kick seen
 * at the entry is stale (of an earlier sleep). Only its own CPU. */
SEC("tp_btf/cpu_idle")
int BPF_PROG(on_cpu_idle, unsigned int state, unsigned int cpu_id)
{
	struct cpu_ran *r = ran_of(bpf_get_smp_processor_id());
	u64 now, kick;

	if (!r || r->what != RAN_IDLE || !r->since)
		return 0;
	if (state != PWR_EVENT_EXIT) {
		r->kicked_at = KICK_ARMED;
		return 0;
	}
	kick = disarm(r);
	/* After the exchange: a kick it returned was dated before it. */
	now = bpf_ktime_get_ns();
	if (kick >= r->since && kick <= now) {
		/* The stretch so far is closed; what follows is idle. (A CPU
		 * elsewhere reading the record meanwhile may see part of this
		 * update: its mark is then off by this kick's waking at most.) */
		close_idle(r, kick, now);
		r->since = now;
	}
	return 0;
}

static __always_inline void became_runnable(struct task_struct *p)
{
	struct task_stat *ts = lookup(p);

	if (!ts)
		return;
	ts->nr_events++;
	/* A wakeup of a task that has not switched out yet (it was woken
	 * before it got to sleep) does not start a wait: it is running. */
	if (!ts->runnable_since && !ts->running_since) {
		u64 now = bpf_ktime_get_ns();
		u32 cpu = p->thread_info.cpu;
		struct task_struct *cur = bpf_get_current_task_btf();

		ts->runnable_since = now;
		/* Woken on its own CPU in an interrupt taken in an idle state:
		 * the local resched sends no IPI, but it is a kick all the
		 * same (wakeup_preempt() reschedules an idle CPU for any task
		 * enqueued on it, before this tracepoint). */
		if (cpu == bpf_get_smp_processor_id() && !cur->pid)
			kicked(cpu);
		/* Enqueued by now: the runqueue it waits on. */
		mark_wait(ts, cpu, now);
	}
}

/*
 * A task moves to `dest_cpu`'s runqueue. If it is waiting (a scheduler
 * moved it while queued: a sched_ext scheduler taking it into another CPU's
 * local DSQ, the fair class's load balancer), its wait goes on there: what
 * its old CPU ran of a higher class, idled and woke meanwhile stays
 * counted, and
 * from now on what the new CPU runs counts, so the reason split and the CPU
 * a stall names are where it waited last. (A sleeping task moved by its
 * wakeup has no open wait: sched_wakeup marks the CPU it wakes on.)
 */
SEC("tp_btf/sched_migrate_task")
int BPF_PROG(on_migrate, struct task_struct *p, int dest_cpu)
{
	struct task_stat *ts = lookup(p);
	u64 now, higher, idle, waking;

	if (!ts || !ts->runnable_since || ts->running_since || dest_cpu < 0)
		return 0;
	ts->nr_events++;
	now = bpf_ktime_get_ns();
	higher = ran_since(ts->cpu, RAN_HIGHER, ts->higher_mark, now);
	idle = ran_since(ts->cpu, RAN_IDLE, ts->idle_mark, now);
	waking = ran_since(ts->cpu, RAN_WAKING, ts->waking_mark, now);
	/* Marks that many ns below the new CPU's sums (modulo 2^64: above
	 * them when it ran less than that so far). */
	ts->cpu = dest_cpu;
	ts->higher_mark = ran_ns(dest_cpu, RAN_HIGHER, now) - higher;
	ts->idle_mark = ran_ns(dest_cpu, RAN_IDLE, now) - idle;
	ts->waking_mark = ran_ns(dest_cpu, RAN_WAKING, now) - waking;
	return 0;
}

SEC("tp_btf/sched_wakeup")
int BPF_PROG(on_wakeup, struct task_struct *p)
{
	became_runnable(p);
	return 0;
}

/* A new process joins its parent's group (a new thread has its process's
 * tgid already). Here rather than on sched_process_fork: the probe uses
 * only the seven tracepoints the guest's kernel command line enables at
 * boot, so attaching it never re-patches their call sites (see
 * vm::boot_args). */
SEC("tp_btf/sched_wakeup_new")
int BPF_PROG(on_wakeup_new, struct task_struct *p)
{
	if (p->pid == p->tgid) {
		u32 ptgid = p->real_parent->tgid, ctgid = p->tgid;
		u32 *group = bpf_map_lookup_elem(&tracked, &ptgid);

		if (group && ptgid != ctgid &&
		    bpf_map_update_elem(&tracked, &ctgid, group, BPF_ANY))
			__sync_fetch_and_add(&nr_dropped, 1);
	}
	became_runnable(p);
	return 0;
}

/* A task's last switch-out (prev_state TASK_DEAD): its run is charged
 * already; its sums stay in the slot (folded into its group when the slot
 * is taken over) and count as exited for the timeline. A process that is
 * gone is forgotten in `tracked`, so a fork storm does not fill it. */
static __always_inline void exited(struct task_struct *p, struct task_stat *ts)
{
	u32 tgid = ts->tgid;
	struct group_stat *gs = group_of(ts->group);

	ts->runnable_since = 0;
	if (gs)
		__sync_fetch_and_add(&gs->exited_run_ns, ts->run_ns);
	ts->exited = 1;
	if (gs && ts->tid == tgid)
		bpf_map_delete_elem(&tracked, &tgid);
}

/* A WATCHED task's wait of `inside` ns ended on this CPU. */
static __always_inline void other_worst_at(struct task_struct *p,
					   struct task_stat *ts, u64 inside)
{
	u32 cpu = bpf_get_smp_processor_id();
	struct other_wait *w;

	if (cpu >= MAX_CPUS)
		return;
	barrier_var(cpu);
	w = &other_worst[cpu];
	if (inside <= w->runnable_ns)
		return;
	w->runnable_ns = inside;
	w->tid = ts->tid;
	w->cpu = ts->cpu;
	__builtin_memcpy(w->comm, p->comm, sizeof(w->comm));
}

SEC("tp_btf/sched_switch")
int BPF_PROG(on_switch, bool preempt, struct task_struct *prev,
	     struct task_struct *next, unsigned int prev_state)
{
	struct task_stat *ps = lookup(prev), *ns = lookup(next);
	u32 cpu = bpf_get_smp_processor_id();
	/* Every switch: what this CPU runs is kept for every wait's why. */
	u64 now = bpf_ktime_get_ns();

	cpu_switch(cpu, next, now);
	/* (No test combines the two pointers: the verifier refuses
	 * arithmetic on them.) */
	if (ps) {
		ps->nr_events++;
		charge_run(ps, now);
		/* Preempted, or yielding: still on the runqueue, waiting from
		 * now. Otherwise it sleeps, and no wait is open. */
		if (preempt || prev_state == 0) {
			ps->runnable_since = now;
			mark_wait(ps, cpu, now);
		} else {
			ps->runnable_since = 0;
		}
		if (prev_state & TASK_DEAD)
			exited(prev, ps);
	}
	if (ns) {
		u64 since = ns->runnable_since;

		ns->nr_events++;
		ns->running_since = now;
		ns->runnable_since = 0;
		if (since && since <= now) {
			u64 wait = now - since, inside = in_watch(since, now);
			u32 g = ns->group;
			u64 higher = ran_since(ns->cpu, RAN_HIGHER, ns->higher_mark, now);
			u64 idle = ran_since(ns->cpu, RAN_IDLE, ns->idle_mark, now);
			u64 waking = ran_since(ns->cpu, RAN_WAKING, ns->waking_mark, now);
			u64 own, not_own;

			/* Marks read from another CPU's record (a stale read)
			 * must not make more than the wait itself. */
			if (higher > wait)
				higher = wait;
			if (waking > wait - higher)
				waking = wait - higher;
			if (idle > wait - higher - waking)
				idle = wait - higher - waking;
			not_own = higher + waking;
			own = wait - not_own;
			if (inside > ns->max_runnable) {
				ns->max_runnable = inside;
				if (g == WATCHED)
					other_worst_at(next, ns, inside);
			}
			/* The higher and waking parts are of the whole wait,
			 * some of which may lie outside the watch: the own part
			 * here is a lower bound of the truth. */
			u64 inside_own = inside - (not_own < inside ? not_own : inside);

			if (inside_own > ns->max_runnable_own)
				ns->max_runnable_own = inside_own;
			if (now >= spike_start && now < spike_end && g < MAX_GROUPS) {
				barrier_var(g);
				atomic_max(&spike_max[g], wait);
			}
			if (now >= window_start && now < window_end && g < MAX_GROUPS) {
				u32 idx = g * NR_BUCKETS + bucket_of(wait);

				if (idx < MAX_GROUPS * NR_BUCKETS) {
					barrier_var(idx);
					__sync_fetch_and_add(&hist[idx], 1);
				}
				idx = g * NR_BUCKETS + bucket_of(own);
				if (idx < MAX_GROUPS * NR_BUCKETS) {
					barrier_var(idx);
					__sync_fetch_and_add(&hist_own[idx], 1);
				}
				ns->nr_waits++;
				ns->wait_ns += wait;
				ns->wait_higher_ns += higher;
				ns->wait_idle_ns += idle;
				ns->wait_waking_ns += waking;
				if (wait > ns->max_wait_window)
					ns->max_wait_window = wait;
				if (own > ns->max_own)
					ns->max_own = own;
			}
		}
	}
	return 0;
}
