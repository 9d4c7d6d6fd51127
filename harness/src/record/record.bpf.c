/* SPDX-License-Identifier: GPL-2.0 */
/*
 * scx-harness's recorder: what the threads of a running machine do, from
 * the scheduler core's tracepoints, for `scx-harness record`.
 *
 * Unlike the in-guest probe (src/probe/probe.bpf.c, tp_btf), it attaches
 * `raw_tp` programs, which need neither BPF trampolines nor tracefs: the
 * recorder must run on machines whose kernels have no sched_ext and may
 * refuse tp_btf and fentry (this project's own host, 6.18, does) and on
 * hosts where tracefs is not mounted (a classic `tracepoint` program is
 * attached by an id read from it). Arguments are the tracepoints'
 * TP_PROTO, the task fields read through CO-RE (BPF_CORE_READ), so the
 * offsets are the running kernel's. sched_switch has had its prev_state
 * argument since Linux 5.18: an older kernel refuses to attach this.
 *
 *  sched_switch        prev leaves the CPU: its CPU time since switch-in
 *                      is added to its burst; if it blocked (not
 *                      preempted, prev_state not TASK_RUNNING) the burst
 *                      ends: a BURST event, and its sleep starts. next
 *                      enters: if it was woken, a DELAY event (wakeup to
 *                      run)
 *  sched_waking        in the waker's context: who woke a sleeping
 *                      thread (the current thread: 0 for the idle task;
 *                      REC_WAKER_INTERRUPT for a wakeup made in an
 *                      interrupt, whatever it interrupted)
 *  sched_wakeup        the thread is runnable: a SLEEP event with its
 *                      waker; its wait to run starts
 *  sched_migrate_task  counted into the thread's next BURST event
 *  sched_process_fork  with --pid, a child process of a recorded one is
 *                      recorded too (threads share the tgid already): a
 *                      FORK event; a reused tid's old state is dropped;
 *                      a recorded child's state is made
 *  sched_process_exit  its last burst (a BURST event, unless partial)
 *                      and an EXIT event; the thread's state is dropped
 *  irq_handler_*,      whether the CPU is in an interrupt, for
 *  softirq_*,          sched_waking (see interrupt_context below)
 *  hrtimer_expire_*
 *
 * A thread's state is made the first time it leaves a CPU, its first
 * burst partial and dropped; or, for a thread born while recorded, at
 * sched_process_fork, its bursts whole from the first.
 *
 * Events go through one ring buffer (BPF_MAP_TYPE_RINGBUF: one buffer
 * for all CPUs, in order of reservation, read by user space through
 * mmap without a system call per event). A full buffer drops the event
 * and counts it in `lost`, which user space reports. One buffer rather
 * than in-kernel histograms because the groups are chosen after the fact
 * (by comm, process or cgroup) and burst and sleep are paired per thread.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>

char LICENSE[] SEC("license") = "GPL";

enum rec_kind {
	REC_BURST = 1, /* ns: CPU time; a: preemptions; b: migrations */
	REC_SLEEP = 2, /* ns: blocked to woken; a: the waker's tid (0 the idle
			* task, REC_WAKER_INTERRUPT an interrupt) */
	REC_DELAY = 3, /* ns: woken to running */
	REC_EXIT = 4,
	REC_FORK = 5, /* tid: a new process recorded; tgid: its parent's
		       * process; a: the thread that forked it */
};

struct rec_event {
	u32 kind;
	u32 tid;
	u32 tgid;
	u32 a;
	u32 b;
	u32 cpu;
	u64 ns;
	u64 at;
};

struct thread_state {
	u64 on_since;
	u64 cpu_ns;
	u64 slept_at;
	u64 woke_at;
	u32 tgid;
	u32 preempts;
	u32 migrations;
	u32 partial;
	u32 waker;
	u32 pad;
};

/* TASK_DEAD in include/linux/sched.h: the last switch of an exiting
 * thread, after sched_process_exit dropped its state. */
#define TASK_DEAD_STATE 0x80
/* PF_EXITING in include/linux/sched.h: set by do_exit before
 * sched_process_exit. */
#define PF_EXITING_FLAG 0x4

/* A sleep's waker when the wakeup was made in an interrupt (no tid is
 * this: pid_max is at most 2^22). */
#define REC_WAKER_INTERRUPT 0xffffffffU

/* Set by user space before load: record every thread, or only those of
 * the tgids in `targets`. */
const volatile u8 all_threads = 0;

/* Events the ring buffer had no room for, and threads or processes the
 * full `threads` or `targets` map could not take. */
u64 lost = 0;
u64 untracked = 0;

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, u32);
	__type(value, u8);
} targets SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 131072);
	__type(key, u32);
	__type(value, struct thread_state);
} threads SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 16 << 20);
} events SEC(".maps");

static __always_inline bool wanted(u32 tgid)
{
	return all_threads || bpf_map_lookup_elem(&targets, &tgid);
}

static __always_inline void emit(u32 kind, u32 tid, u32 tgid, u64 ns, u32 a,
				 u32 b, u64 now)
{
	struct rec_event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);

	if (!e) {
		__sync_fetch_and_add(&lost, 1);
		return;
	}
	e->kind = kind;
	e->tid = tid;
	e->tgid = tgid;
	e->a = a;
	e->b = b;
	e->cpu = bpf_get_smp_processor_id();
	e->ns = ns;
	e->at = now;
	bpf_ringbuf_submit(e, 0);
}

/* Whether this CPU is serving an interrupt, kept from the interrupt
 * tracepoints rather than read from the CPU's preempt count: that is a
 * per-CPU variable (__preempt_count, or pcpu_hot's from 6.2 to 6.14)
 * which BPF reaches as a typed ksym, and the verifier looks its address
 * up in kallsyms, which holds data symbols only with
 * CONFIG_KALLSYMS_ALL (this project's host, 6.18 without it, refuses
 * the load with -ENOENT). One bit per kind of context, set at its entry
 * and cleared at its exit, and all cleared at every context switch (no
 * task switches inside one, outside PREEMPT_RT), so a bit set by an
 * entry whose exit the recorder missed (attached between the two
 * programs) does not outlive the moment: hard interrupt handlers
 * (irq_handler_entry/exit: device interrupts), hrtimer callbacks
 * (hrtimer_expire_entry/exit: nanosleep, futex, poll and epoll timeouts,
 * from the timer interrupt or its softirq) and softirqs
 * (softirq_entry/exit: the timer wheel, block I/O completions, RCU, in
 * an interrupt's tail or in ksoftirqd) but not networking's (NET_TX and
 * NET_RX): a packet sent over loopback is received in the NET_RX
 * softirq its sender runs when it enables bottom halves again, so the
 * wakeup of a TCP peer on this machine is its sender's doing. (A packet
 * from a network device is received the same way in an interrupt's tail:
 * its wakeup is credited to whatever thread was interrupted.) Hard
 * interrupts do not nest, nor do softirqs, so the bits are written by one
 * context at a time; one interrupting another leaves the other's bit as
 * it found it. */
#define IN_HARDIRQ (1U << 0)
#define IN_SOFTIRQ (1U << 1)
#define IN_HRTIMER (1U << 2)

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, u32);
	__type(value, u32);
} interrupt_context SEC(".maps");

static __always_inline void context_mark(u32 bit, bool in)
{
	u32 zero = 0;
	u32 *bits = bpf_map_lookup_elem(&interrupt_context, &zero);

	if (!bits)
		return;
	if (in)
		*bits |= bit;
	else
		*bits &= ~bit;
}

static __always_inline bool in_interrupt_context(void)
{
	u32 zero = 0;
	u32 *bits = bpf_map_lookup_elem(&interrupt_context, &zero);

	return bits && *bits;
}

SEC("raw_tp/sched_switch")
int BPF_PROG(rec_switch, bool preempt, struct task_struct *prev_task,
	     struct task_struct *next_task, unsigned int prev_state)
{
	u64 now = bpf_ktime_get_ns();
	u32 prev = BPF_CORE_READ(prev_task, pid);
	u32 next = BPF_CORE_READ(next_task, pid);
	u32 zero = 0;
	u32 *bits = bpf_map_lookup_elem(&interrupt_context, &zero);
	struct thread_state *st;

	if (bits)
		*bits = 0;

	if (prev) {
		st = bpf_map_lookup_elem(&threads, &prev);
		if (!st) {
			u32 tgid = BPF_CORE_READ(prev_task, tgid);
			struct thread_state fresh = { .tgid = tgid, .partial = 1 };

			/* Not for an exiting thread (its last switch, or one
			 * in do_exit after sched_process_exit, which may
			 * block or be preempted): its state was dropped at
			 * sched_process_exit for good. */
			if (!(prev_state & TASK_DEAD_STATE) &&
			    !(BPF_CORE_READ(prev_task, flags) & PF_EXITING_FLAG) &&
			    wanted(tgid)) {
				if (bpf_map_update_elem(&threads, &prev, &fresh, BPF_NOEXIST))
					__sync_fetch_and_add(&untracked, 1);
				st = bpf_map_lookup_elem(&threads, &prev);
			}
		}
		if (st) {
			if (st->on_since)
				st->cpu_ns += now - st->on_since;
			st->on_since = 0;
			if (preempt || prev_state == 0) {
				st->preempts++;
			} else {
				if (!st->partial)
					emit(REC_BURST, prev, st->tgid, st->cpu_ns,
					     st->preempts, st->migrations, now);
				st->partial = 0;
				st->cpu_ns = 0;
				st->preempts = 0;
				st->migrations = 0;
				st->slept_at = now;
			}
		}
	}
	if (next) {
		st = bpf_map_lookup_elem(&threads, &next);
		if (st) {
			st->on_since = now;
			if (st->woke_at) {
				emit(REC_DELAY, next, st->tgid, now - st->woke_at, 0,
				     0, now);
				st->woke_at = 0;
			}
		}
	}
	return 0;
}

SEC("raw_tp/irq_handler_entry")
int BPF_PROG(rec_irq_entry)
{
	context_mark(IN_HARDIRQ, true);
	return 0;
}

SEC("raw_tp/irq_handler_exit")
int BPF_PROG(rec_irq_exit)
{
	context_mark(IN_HARDIRQ, false);
	return 0;
}

/* NET_TX_SOFTIRQ and NET_RX_SOFTIRQ, include/linux/interrupt.h. */
#define REC_NET_TX_SOFTIRQ 2
#define REC_NET_RX_SOFTIRQ 3

SEC("raw_tp/softirq_entry")
int BPF_PROG(rec_softirq_entry, unsigned int vec_nr)
{
	if (vec_nr != REC_NET_TX_SOFTIRQ && vec_nr != REC_NET_RX_SOFTIRQ)
		context_mark(IN_SOFTIRQ, true);
	return 0;
}

SEC("raw_tp/softirq_exit")
int BPF_PROG(rec_softirq_exit)
{
	context_mark(IN_SOFTIRQ, false);
	return 0;
}

SEC("raw_tp/hrtimer_expire_entry")
int BPF_PROG(rec_hrtimer_entry)
{
	context_mark(IN_HRTIMER, true);
	return 0;
}

SEC("raw_tp/hrtimer_expire_exit")
int BPF_PROG(rec_hrtimer_exit)
{
	context_mark(IN_HRTIMER, false);
	return 0;
}

/* In the waker's context (sched_wakeup may run on the wakee's CPU, from
 * its wakelist, in whatever ran there): who woke the thread. A wakeup
 * made in an interrupt (a timer expiring, a device) is nobody's: the
 * thread it interrupted is not its waker (REC_WAKER_INTERRUPT). */
SEC("raw_tp/sched_waking")
int BPF_PROG(rec_waking, struct task_struct *p)
{
	u32 tid = BPF_CORE_READ(p, pid);
	struct thread_state *st = bpf_map_lookup_elem(&threads, &tid);

	if (!st || !st->slept_at)
		return 0;
	if (in_interrupt_context())
		st->waker = REC_WAKER_INTERRUPT;
	else
		st->waker = (u32)bpf_get_current_pid_tgid();
	return 0;
}

SEC("raw_tp/sched_wakeup")
int BPF_PROG(rec_wakeup, struct task_struct *p)
{
	u64 now = bpf_ktime_get_ns();
	u32 tid = BPF_CORE_READ(p, pid);
	struct thread_state *st = bpf_map_lookup_elem(&threads, &tid);

	/* Only a thread that blocked: a wakeup that finds it still running
	 * (it set a sleeping state and was woken before it switched out)
	 * ends no sleep and starts no wait. */
	if (!st || !st->slept_at)
		return 0;
	emit(REC_SLEEP, tid, st->tgid, now - st->slept_at, st->waker, 0, now);
	st->slept_at = 0;
	st->waker = 0;
	st->woke_at = now;
	return 0;
}

SEC("raw_tp/sched_migrate_task")
int BPF_PROG(rec_migrate, struct task_struct *p)
{
	u32 tid = BPF_CORE_READ(p, pid);
	struct thread_state *st = bpf_map_lookup_elem(&threads, &tid);

	if (st)
		st->migrations++;
	return 0;
}

SEC("raw_tp/sched_process_fork")
int BPF_PROG(rec_fork, struct task_struct *parent, struct task_struct *child)
{
	u32 tgid = BPF_CORE_READ(parent, tgid);
	u32 pid = BPF_CORE_READ(child, pid);
	u32 child_tgid = BPF_CORE_READ(child, tgid);
	u8 one = 1;

	struct thread_state born = { .tgid = child_tgid };

	/* A tid reused: nothing of the thread that had it carries over. */
	bpf_map_delete_elem(&threads, &pid);
	/* A new process (not a thread: those share their tgid already),
	 * and a FORK event saying whose it is. */
	if (!all_threads && pid == child_tgid &&
	    bpf_map_lookup_elem(&targets, &tgid)) {
		if (bpf_map_update_elem(&targets, &pid, &one, BPF_ANY))
			__sync_fetch_and_add(&untracked, 1);
		else
			emit(REC_FORK, pid, tgid, BPF_CORE_READ(parent, pid), 0,
			     0, bpf_ktime_get_ns());
	}
	/* A thread born while recorded has whole bursts from its first: its
	 * state is made now, not partial, so a thread that runs and exits
	 * without ever blocking (a shell's /bin/true) is not lost. */
	if (wanted(child_tgid) &&
	    bpf_map_update_elem(&threads, &pid, &born, BPF_NOEXIST))
		__sync_fetch_and_add(&untracked, 1);
	return 0;
}

SEC("raw_tp/sched_process_exit")
int BPF_PROG(rec_exit, struct task_struct *p)
{
	u32 tid = BPF_CORE_READ(p, pid);
	u32 tgid = BPF_CORE_READ(p, tgid);

	struct thread_state *st = bpf_map_lookup_elem(&threads, &tid);
	u64 now = bpf_ktime_get_ns();

	if (st) {
		/* Its last burst, which no block ends: it runs here (the
		 * exiting thread is current). */
		if (!st->partial) {
			u64 cpu = st->cpu_ns;

			if (st->on_since)
				cpu += now - st->on_since;
			emit(REC_BURST, tid, tgid, cpu, st->preempts,
			     st->migrations, now);
		}
		emit(REC_EXIT, tid, tgid, 0, 0, 0, now);
		bpf_map_delete_elem(&threads, &tid);
	}
	/* The process's last thread (do_exit counts signal->live down before
	 * this tracepoint): its tgid leaves the targets, which a group forking
	 * thousands of children a second would otherwise fill, and a reused
	 * pid is not recorded for the process that had it. */
	if (!all_threads && BPF_CORE_READ(p, signal, live.counter) == 0)
		bpf_map_delete_elem(&targets, &tgid);
	return 0;
}
