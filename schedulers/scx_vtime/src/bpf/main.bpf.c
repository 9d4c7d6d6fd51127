/* SPDX-License-Identifier: GPL-2.0 */
/*
 * scx_vtime: weighted virtual-time fairness with per-CPU queues and idle-CPU
 * selection.
 *
 * Every task carries a virtual time that advances by the CPU time it used,
 * divided by its effective weight; the runnable task with the lowest virtual
 * time runs next. The effective weight honours both levels a user sets:
 *
 *  - nice: p->scx.weight (100 at nice 0, about 1.25x per nice step);
 *  - cgroups (cgroup v2 cpu.weight): the tasks of one cgroup share that
 *    cgroup's weight in proportion to their own weights, so a cgroup of
 *    eight busy tasks and a cgroup of one, with equal cpu.weight, get equal
 *    CPU time. Tasks in the root cgroup compete as their own entities, as
 *    with the fair class. Only the task's own (leaf) cgroup counts: nested
 *    hierarchies are flattened.
 *
 * Queues: one vtime-ordered dispatch queue per CPU (DSQ id = CPU number). A
 * waking task goes straight to an idle CPU when the kernel's default
 * selection finds one; otherwise it is queued on the CPU it was placed on
 * and an idle CPU, if any, is kicked. A CPU that needs work takes the head
 * with the lowest vtime among all queues, its own queue first on ties, so
 * fairness holds across CPUs and no CPU idles while a task it may run waits;
 * the task whose slice just ended is weighed against those heads and keeps
 * the CPU while its vtime is the lowest (the kernel asks for the next task
 * before it queues the previous one again). A CPU a higher class takes
 * hands the tasks waiting on it back to those queues (ops.cpu_release), so
 * an RT hog holds up only the tasks pinned to its CPU.
 */
#include <scx/common.bpf.h>

char _license[] SEC("license") = "GPL";

/* Time slice; user space may change it before load (--slice-us). */
const volatile u64 slice_ns = 5ULL * 1000 * 1000;

#define MAX_CPUS 512
#define WEIGHT_ONE 100 /* weight of a nice-0 task and of a default cgroup */

static u32 nr_cpus = 1;

/* The vtime of the task that most recently started running; a task that
 * slept may not bank more than one slice of credit below it. */
static u64 vtime_now;

UEI_DEFINE(uei);

struct task_ctx {
	u64 started_at;     /* when it last started running */
	u64 charged_weight; /* weight it adds to its cgroup's load, 0 if none */
	u64 cgid;           /* the cgroup that load was added to */
};

struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct task_ctx);
} task_ctxs SEC(".maps");

struct cgrp_ctx {
	u64 weight; /* cpu.weight */
	u64 load;   /* sum of the weights of its runnable tasks */
};

struct {
	__uint(type, BPF_MAP_TYPE_CGRP_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct cgrp_ctx);
} cgrp_ctxs SEC(".maps");

static inline bool vtime_before(u64 a, u64 b)
{
	return (s64)(a - b) < 0;
}

static struct task_ctx *task_ctx(struct task_struct *p)
{
	return bpf_task_storage_get(&task_ctxs, p, 0, 0);
}

/* The context of the cgroup with id @cgid; NULL for the root cgroup (its
 * tasks are weighed on their own) or a cgroup that is gone. */
static struct cgrp_ctx *cgrp_ctx_of(u64 cgid)
{
	struct cgroup *cgrp;
	struct cgrp_ctx *cgc = NULL;

	cgrp = bpf_cgroup_from_id(cgid);
	if (!cgrp)
		return NULL;
	if (cgrp->level > 0)
		cgc = bpf_cgrp_storage_get(&cgrp_ctxs, cgrp, 0, 0);
	bpf_cgroup_release(cgrp);
	return cgc;
}

s32 BPF_STRUCT_OPS(vtime_select_cpu, struct task_struct *p, s32 prev_cpu, u64 wake_flags)
{
	bool is_idle = false;
	s32 cpu;

	cpu = scx_bpf_select_cpu_dfl(p, prev_cpu, wake_flags, &is_idle);
	if (is_idle)
		scx_bpf_dsq_insert(p, SCX_DSQ_LOCAL, slice_ns, 0);
	return cpu;
}

void BPF_STRUCT_OPS(vtime_enqueue, struct task_struct *p, u64 enq_flags)
{
	u64 vtime = p->scx.dsq_vtime;
	s32 cpu = scx_bpf_task_cpu(p), idle;

	if (vtime_before(vtime, vtime_now - slice_ns))
		vtime = vtime_now - slice_ns;
	scx_bpf_dsq_insert_vtime(p, cpu, slice_ns, vtime, enq_flags);

	/* Work conservation: an idle CPU that may run @p comes to take it. */
	idle = scx_bpf_pick_idle_cpu(p->cpus_ptr, 0);
	if (idle >= 0)
		scx_bpf_kick_cpu(idle, SCX_KICK_IDLE);
}

/*
 * Charges @p for the CPU time it used since it last started running, or
 * since it was last charged, in virtual time: used / effective weight.
 */
static void charge(struct task_struct *p, struct task_ctx *tctx, u64 now)
{
	struct cgrp_ctx *cgc = NULL;
	u64 used, weight = p->scx.weight ?: 1, num = WEIGHT_ONE, den = weight;

	if (!tctx->started_at)
		return;
	used = now - tctx->started_at;
	tctx->started_at = now;
	if (tctx->charged_weight)
		cgc = cgrp_ctx_of(tctx->cgid);
	if (cgc && cgc->weight && cgc->load) {
		/* effective weight = cgroup weight * task weight / cgroup load */
		num = WEIGHT_ONE * cgc->load;
		den = weight * cgc->weight;
	}
	p->scx.dsq_vtime += used * num / den;
}

void BPF_STRUCT_OPS(vtime_dispatch, s32 cpu, struct task_struct *prev)
{
	struct task_struct *p;
	struct task_ctx *tctx;
	u64 best_vtime = 0;
	s32 best = -1;
	u32 i;

	bpf_for(i, 0, nr_cpus) {
		u64 dsq = (cpu + i) % nr_cpus;

		if (i >= MAX_CPUS)
			break;
		/* The first task of the queue that may run here: the one
		 * scx_bpf_dsq_move_to_local() would take. */
		bpf_for_each(scx_dsq, p, dsq, 0) {
			if (!bpf_cpumask_test_cpu(cpu, p->cpus_ptr))
				continue;
			if (best < 0 || vtime_before(p->scx.dsq_vtime, best_vtime)) {
				best = dsq;
				best_vtime = p->scx.dsq_vtime;
			}
			break;
		}
	}
	/*
	 * @prev, whose slice ended, is in no DSQ while this runs (the kernel
	 * asks for the next task before it puts @prev back), so the heads
	 * alone would hand the CPU to the next task whatever its vtime: two
	 * busy tasks on one CPU would alternate slices (50/50) whatever their
	 * weights. Charge @prev for the slice it used and keep it running
	 * while it is still the most entitled.
	 */
	bool keep = prev && (prev->scx.flags & SCX_TASK_QUEUED) &&
		    bpf_cpumask_test_cpu(cpu, prev->cpus_ptr) && (tctx = task_ctx(prev));

	if (keep) {
		charge(prev, tctx, bpf_ktime_get_ns());
		if (best < 0 || !vtime_before(best_vtime, prev->scx.dsq_vtime))
			goto keep_prev;
	}
	if (best >= 0 && scx_bpf_dsq_move_to_local(best, 0))
		return;
	/* The head was taken meanwhile by another CPU: @prev, if it may go on,
	 * is the most entitled of what is left here. */
	if (keep)
		goto keep_prev;
	/* The head could not run here (affinity) or was taken meanwhile: take
	 * anything this CPU may run, own queue first. */
	bpf_for(i, 0, nr_cpus) {
		if (i >= MAX_CPUS)
			break;
		if (scx_bpf_dsq_move_to_local((cpu + i) % nr_cpus, 0))
			return;
	}
	return;
keep_prev:
	prev->scx.slice = slice_ns;
	if (vtime_before(vtime_now, prev->scx.dsq_vtime))
		vtime_now = prev->scx.dsq_vtime;
}

void BPF_STRUCT_OPS(vtime_runnable, struct task_struct *p, u64 enq_flags)
{
	struct task_ctx *tctx = task_ctx(p);
	struct cgroup *cgrp;
	struct cgrp_ctx *cgc = NULL;

	if (!tctx)
		return;
	cgrp = scx_bpf_task_cgroup(p);
	if (!cgrp)
		return;
	if (cgrp->level > 0)
		cgc = bpf_cgrp_storage_get(&cgrp_ctxs, cgrp, 0, 0);
	if (cgc) {
		tctx->charged_weight = p->scx.weight;
		tctx->cgid = cgrp->kn->id;
		__sync_fetch_and_add(&cgc->load, tctx->charged_weight);
	}
	bpf_cgroup_release(cgrp);
}

void BPF_STRUCT_OPS(vtime_quiescent, struct task_struct *p, u64 deq_flags)
{
	struct task_ctx *tctx = task_ctx(p);
	struct cgrp_ctx *cgc;

	if (!tctx || !tctx->charged_weight)
		return;
	cgc = cgrp_ctx_of(tctx->cgid);
	if (cgc)
		__sync_fetch_and_sub(&cgc->load, tctx->charged_weight);
	tctx->charged_weight = 0;
}

void BPF_STRUCT_OPS(vtime_set_weight, struct task_struct *p, u32 weight)
{
	struct task_ctx *tctx = task_ctx(p);
	struct cgrp_ctx *cgc;

	if (!tctx || !tctx->charged_weight)
		return;
	cgc = cgrp_ctx_of(tctx->cgid);
	if (cgc) {
		__sync_fetch_and_add(&cgc->load, weight);
		__sync_fetch_and_sub(&cgc->load, tctx->charged_weight);
	}
	tctx->charged_weight = weight;
}

void BPF_STRUCT_OPS(vtime_running, struct task_struct *p)
{
	struct task_ctx *tctx = task_ctx(p);

	if (tctx)
		tctx->started_at = bpf_ktime_get_ns();
	/* Racy across CPUs; an error is bounded and temporary. */
	if (vtime_before(vtime_now, p->scx.dsq_vtime))
		vtime_now = p->scx.dsq_vtime;
}

void BPF_STRUCT_OPS(vtime_stopping, struct task_struct *p, bool runnable)
{
	struct task_ctx *tctx = task_ctx(p);

	if (tctx)
		charge(p, tctx, bpf_ktime_get_ns());
}

/*
 * A higher class (an RT or deadline task, a stopper) took @cpu. The task it
 * preempted was put back at the head of @cpu's local DSQ with its slice left
 * (kernel/sched/ext.c, put_prev_task_scx()), and tasks already moved there
 * wait too: none of them runs until @cpu comes back, however long the
 * higher class holds it, though another CPU may be free to run them. Hand
 * them back to enqueue (SCX_ENQ_REENQ), which queues them where any CPU
 * they may run on takes them. Tasks pinned to @cpu still wait: for them
 * the kernel decides (the fair class's deadline server, RT throttling).
 */
void BPF_STRUCT_OPS(vtime_cpu_release, s32 cpu, struct scx_cpu_release_args *args)
{
	scx_bpf_reenqueue_local();
}

void BPF_STRUCT_OPS(vtime_enable, struct task_struct *p)
{
	p->scx.dsq_vtime = vtime_now;
}

s32 BPF_STRUCT_OPS(vtime_init_task, struct task_struct *p, struct scx_init_task_args *args)
{
	if (!bpf_task_storage_get(&task_ctxs, p, 0, BPF_LOCAL_STORAGE_GET_F_CREATE))
		return -ENOMEM;
	return 0;
}

s32 BPF_STRUCT_OPS(vtime_cgroup_init, struct cgroup *cgrp, struct scx_cgroup_init_args *args)
{
	struct cgrp_ctx *cgc;

	cgc = bpf_cgrp_storage_get(&cgrp_ctxs, cgrp, 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (!cgc)
		return -ENOMEM;
	cgc->weight = args->weight;
	return 0;
}

void BPF_STRUCT_OPS(vtime_cgroup_set_weight, struct cgroup *cgrp, u32 weight)
{
	struct cgrp_ctx *cgc = bpf_cgrp_storage_get(&cgrp_ctxs, cgrp, 0, 0);

	if (cgc)
		cgc->weight = weight;
}

void BPF_STRUCT_OPS(vtime_cgroup_move, struct task_struct *p, struct cgroup *from, struct cgroup *to)
{
	struct task_ctx *tctx = task_ctx(p);
	struct cgrp_ctx *cgc;

	if (!tctx || !tctx->charged_weight)
		return;
	cgc = cgrp_ctx_of(tctx->cgid);
	if (cgc)
		__sync_fetch_and_sub(&cgc->load, tctx->charged_weight);
	tctx->charged_weight = 0;
	if (to->level == 0)
		return;
	cgc = bpf_cgrp_storage_get(&cgrp_ctxs, to, 0, 0);
	if (cgc) {
		tctx->charged_weight = p->scx.weight;
		tctx->cgid = to->kn->id;
		__sync_fetch_and_add(&cgc->load, tctx->charged_weight);
	}
}

s32 BPF_STRUCT_OPS_SLEEPABLE(vtime_init)
{
	u32 i;
	s32 ret;

	nr_cpus = scx_bpf_nr_cpu_ids();
	bpf_for(i, 0, nr_cpus) {
		if (i >= MAX_CPUS)
			break;
		ret = scx_bpf_create_dsq(i, -1);
		if (ret)
			return ret;
	}
	return 0;
}

void BPF_STRUCT_OPS(vtime_exit, struct scx_exit_info *ei)
{
	UEI_RECORD(uei, ei);
}

SCX_OPS_DEFINE(vtime_ops,
	       .select_cpu		= (void *)vtime_select_cpu,
	       .enqueue			= (void *)vtime_enqueue,
	       .dispatch		= (void *)vtime_dispatch,
	       .runnable		= (void *)vtime_runnable,
	       .running			= (void *)vtime_running,
	       .stopping		= (void *)vtime_stopping,
	       .cpu_release		= (void *)vtime_cpu_release,
	       .quiescent		= (void *)vtime_quiescent,
	       .set_weight		= (void *)vtime_set_weight,
	       .enable			= (void *)vtime_enable,
	       .init_task		= (void *)vtime_init_task,
	       .cgroup_init		= (void *)vtime_cgroup_init,
	       .cgroup_set_weight	= (void *)vtime_cgroup_set_weight,
	       .cgroup_move		= (void *)vtime_cgroup_move,
	       .init			= (void *)vtime_init,
	       .exit			= (void *)vtime_exit,
	       .name			= "vtime");
