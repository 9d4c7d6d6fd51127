//! The guest agent: runs one scenario under one scheduler inside the VM
//! (`scx-harness guest run-scenario`), and writes what it measured as JSON
//! into the shared directory. It judges nothing; the host's `checks` do.
//!
//! A run is one or two passes of the scenario: under the kernel's fair
//! class first when a check compares with it, then under the scheduler.
//! Each pass starts one process per group (`workload`), tracks them in the
//! probe, puts them in their cgroups, gives them a common start time, and
//! watches the probe while they run: a task runnable for longer than the
//! scenario's stall bound ends the pass at once, with the task named.
//! Knows the scenario, the probe, the workload and the lifecycle; nothing
//! about VMs or verdicts.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::kernel::cache::write_atomic;
use crate::probe::{now_ns, GroupData, Probe, Snapshot, Waiting};
use crate::protocol::{self, Mark};
use crate::scenario::{Check, Scenario};
use crate::scheduler::lifecycle::{self, GuestSpec, Report, Session};
use crate::units::format_duration;
use crate::workload::{GroupOutcome, GroupSpec};

/// How often the probe is scanned for stalls. The watch runs at SCHED_FIFO
/// 99, so a task that wakes while it scans waits for the scan: every
/// 20 ms, that was about 1% of idle-baseline's wakeups, whose p99 doubled
/// (BENCHMARKS.md, "The stall watch's own cost"). A stall is found within
/// its bound plus this.
const SCAN: Duration = Duration::from_millis(100);
/// How often the groups' CPU time is sampled for the timeline.
const TIMELINE_STEP: Duration = Duration::from_millis(250);
/// From every group's "ready" to their common start time (t0): time for
/// each group process to read it.
const START_DELAY: Duration = Duration::from_millis(200);
/// How long a group process may take to start its threads and say
/// "ready" (a 96 MB binary over 9p, under TCG, in a busy guest).
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long group processes get, past their stop time, to write their
/// outcome and exit.
const EXIT_GRACE: Duration = Duration::from_secs(10);
/// Where the agent's cgroups live.
const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// What the agent is asked to do.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AgentSpec {
    pub scenario: Scenario,
    pub scheduler: GuestSpec,
    /// Run the scenario under the fair class first, in the same VM.
    pub baseline: bool,
    /// The scenario's scheduler swaps, resolved to what to start.
    #[serde(default)]
    pub swaps: Vec<SwapPlan>,
    /// On a stall, detach the scheduler through the kernel at once
    /// (sysrq-S: `scx_disable` runs from the kernel's own RT worker, so it
    /// works even when the scheduler's loader is one of the starved tasks)
    /// instead of asking the loader to leave. Set by the host target, where
    /// the starved tasks are the machine's own.
    #[serde(default)]
    pub sysrq_on_stall: bool,
    /// What `cargo ci setup` prepared for the bundled application
    /// scenarios (sources to build), given to `command` groups as
    /// `$SCX_HARNESS_APPS` ([`crate::paths::apps_dir`]).
    #[serde(default)]
    pub apps_dir: Option<PathBuf>,
    /// What is recorded of the scheduler pass's groups beside the probe.
    #[serde(default)]
    pub recording: PassRecording,
}

/// What the agent records of the scheduler pass's group tasks the way
/// `record` records a machine (`record::replayed`), into `Pass.replayed`.
/// Only the scheduler pass: the recorder's programs and its thread are
/// load the fair pass would not have, so a run with relative checks does
/// not ask for it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PassRecording {
    #[default]
    Off,
    /// The bursts' and sleeps' distributions per group (`replay-check`).
    Distributions,
    /// Those, and the groups summarised as a capture (`record
    /// --scenario`).
    Capture,
}

/// One scheduler swap of the scheduler pass.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SwapPlan {
    /// From t0.
    pub at_ns: u64,
    pub to: GuestSpec,
}

/// What happened at a swap.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SwapEvent {
    /// When it began, from t0.
    pub at_ns: u64,
    /// When the scenario planned it, from t0 (`at_ns` minus this: how late
    /// it began).
    #[serde(default)]
    pub planned_ns: u64,
    pub to: String,
    /// How long detaching the scheduler that ran took (its loader stopped,
    /// the kernel's state "disabled"), ms.
    #[serde(default)]
    pub detach_ms: u64,
    /// From the new scheduler's start to it attached (None: it did not
    /// attach; the tasks ran on the fair class).
    pub attach_ms: Option<u64>,
    /// The longest wait of any task that ended from the swap's start until
    /// one second after the attach.
    pub max_delay_ns: u64,
    /// How long after the attach those waits were watched, ms: a second
    /// (`SPIKE_AFTER`), less when the next swap, the run's end or a stall
    /// that stopped the pass came first (0: the scheduler attached after
    /// the run's end, and `max_delay_ns` saw none of its wakeups: the
    /// watch closes at the run's end). None in results written before it
    /// was recorded, and when the swap did not attach.
    #[serde(default)]
    pub watched_ms: Option<u64>,
    /// Why it did not attach, when it did not.
    pub why: String,
}

/// How long after an attach the spike of a swap is still watched.
pub const SPIKE_AFTER: Duration = Duration::from_secs(1);

impl AgentSpec {
    /// The tightest stall bounds, in ns, of the checks that bound a task of
    /// group `group` (`None`: a task outside the scenario): on its whole
    /// wait, and on the scheduler's own part of it (`excluding:
    /// higher_class_and_waking`).
    pub fn stall_bounds_for(&self, group: Option<&str>) -> StallBounds {
        let mut b = StallBounds::default();
        for c in &self.scenario.checks {
            let Check::Stall(s) = c else { continue };
            if !s.applies_to(group) {
                continue;
            }
            let ns = s.max_runnable.as_nanos() as u64;
            let slot = if s.excluding.is_some() {
                &mut b.own
            } else {
                &mut b.whole
            };
            *slot = Some(slot.map_or(ns, |v| v.min(ns)));
        }
        b
    }

    /// Whether a stall check watches every task of the guest.
    pub fn watches_guest(&self) -> bool {
        !self.stall_bounds_for(None).is_none()
    }
}

/// A task's stall bounds, ns (see `AgentSpec::stall_bounds_for`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StallBounds {
    pub whole: Option<u64>,
    pub own: Option<u64>,
}

impl StallBounds {
    pub fn is_none(&self) -> bool {
        self.whole.is_none() && self.own.is_none()
    }

    /// Whether a wait of `waited` ns, `own` of them the scheduler's, is
    /// past one of the bounds.
    pub fn exceeded(&self, waited: u64, own: u64) -> bool {
        self.whole.is_some_and(|b| waited > b) || self.own.is_some_and(|b| own > b)
    }

    /// The larger bound (how long the exit may take past the window).
    pub fn max(&self) -> u64 {
        self.whole.unwrap_or(0).max(self.own.unwrap_or(0))
    }
}

/// A task found runnable for longer than its stall bound; the pass stopped
/// there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StallEvent {
    pub tid: u32,
    pub pid: u32,
    pub comm: String,
    /// Its group; `None`: a task outside the scenario (`tasks: guest`).
    pub group: Option<String>,
    /// The CPU whose runqueue it waited on.
    #[serde(default)]
    pub cpu: u32,
    /// How long it had been runnable without running, from its wakeup (or
    /// t0) to the stop: the same number every report shows for it.
    pub waited_ns: u64,
    /// Of that, the scheduler's own part (less the time its CPU ran a
    /// higher class and was waking: see `probe::GroupData`).
    #[serde(default)]
    pub own_ns: u64,
    /// When it was found, from the start of the pass (t0); 0: before t0,
    /// while the groups were starting (the pass stopped there).
    pub found_at_ns: u64,
    /// From when it was found until the kernel said sched_ext was
    /// `disabled` (the scheduler detached, every task back on the fair
    /// class); `None`: not seen within 5 s, or no scheduler was attached.
    #[serde(default)]
    pub detached_after_ns: Option<u64>,
}

/// A task, as a stall names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskRef {
    pub tid: u32,
    pub comm: String,
    /// The CPU whose runqueue it waited on.
    pub cpu: u32,
}

/// See `Pass::longest_runnable`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LongestRunnable {
    /// Runnable without running, ns.
    pub ns: u64,
    /// The task's group; `None`: outside the scenario.
    pub group: Option<String>,
    /// The task, when known (it stalled, was still waiting at the stop, or
    /// is outside the scenario); a group's ended wait names only the group.
    pub task: Option<TaskRef>,
    /// It was still waiting at the stop.
    pub at_stop: bool,
}

impl LongestRunnable {
    /// "wl:g03 (tid 522, group g03, CPU 1)", "kworker/0:1 (tid 12, outside
    /// the scenario, CPU 0)", "a task of group g".
    pub fn who(&self) -> String {
        match &self.task {
            Some(t) => task_who(&t.comm, t.tid, self.group.as_deref(), t.cpu),
            None => format!("a task of group {}", self.group.as_deref().unwrap_or("?")),
        }
    }
}

impl StallEvent {
    /// The stall of task `w` (of group `group`), found `found_at_ns` after
    /// t0 (0: before it, while the groups started). Its comm is read now.
    fn found(w: &crate::probe::Waiting, group: Option<String>, found_at_ns: u64) -> StallEvent {
        StallEvent {
            tid: w.tid,
            pid: w.tgid,
            comm: comm_of(w.tid),
            group,
            cpu: w.cpu,
            waited_ns: w.waited_ns,
            own_ns: w.own_ns,
            found_at_ns,
            detached_after_ns: None,
        }
    }

    /// As `LongestRunnable::who`, for the stalled task.
    pub fn who(&self) -> String {
        task_who(&self.comm, self.tid, self.group.as_deref(), self.cpu)
    }
}

/// "comm (tid N, group g, CPU c)", or "outside the scenario" for a task of
/// no group.
fn task_who(comm: &str, tid: u32, group: Option<&str>, cpu: u32) -> String {
    let group = match group {
        Some(g) => format!("group {g}"),
        None => "outside the scenario".to_string(),
    };
    format!("{comm} (tid {tid}, {group}, CPU {cpu})")
}

/// A task still waiting to run at the stop of a pass.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StillWaiting {
    pub tid: u32,
    /// Its group; `None`: a task outside the scenario (`tasks: guest`).
    pub group: Option<String>,
    pub comm: String,
    /// The CPU whose runqueue it waited on.
    #[serde(default)]
    pub cpu: u32,
    /// From its wakeup (or t0) to the stop.
    pub waited_ns: u64,
    /// Of that, the scheduler's own part.
    #[serde(default)]
    pub own_ns: u64,
}

/// What one group did in one pass.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GroupResult {
    pub name: String,
    pub probe: GroupData,
    /// The group process's own report (iterations, CPU time per thread);
    /// `None` if it never wrote one (it crashed or was killed).
    pub outcome: Option<GroupOutcome>,
    /// Its exit status, if it exited.
    pub exit_status: Option<i32>,
    /// How many of its tasks were on sched_ext at the measurement window's
    /// start; None where the kernel does not say.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_sched_ext: Option<OnSchedExt>,
}

/// How many of a group's tasks (the ones its ready line named) the
/// sched_ext class held, from each one's `/proc/TID/sched` line
/// `ext.enabled` (kernel/sched/debug.c, 6.12 and later: `task_on_scx`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OnSchedExt {
    /// Tasks read.
    pub tasks: u32,
    /// Of those, on sched_ext.
    pub on_ext: u32,
}

impl OnSchedExt {
    /// Reads `tids`; None if no task's file has the line (a kernel without
    /// sched_ext or its debug output) or every task has gone.
    pub fn read(tids: &[u32]) -> Option<OnSchedExt> {
        let mut seen = OnSchedExt::default();
        for tid in tids {
            let Ok(text) = std::fs::read_to_string(format!("/proc/{tid}/sched")) else {
                continue;
            };
            if let Some(on) = ext_enabled(&text) {
                seen.tasks += 1;
                seen.on_ext += u32::from(on);
            }
        }
        (seen.tasks > 0).then_some(seen)
    }
}

/// The `ext.enabled` value of a `/proc/TID/sched` text.
fn ext_enabled(sched: &str) -> Option<bool> {
    sched.lines().find_map(|l| {
        let (key, value) = l.split_once(':')?;
        (key.trim() == "ext.enabled").then(|| value.trim() == "1")
    })
}

impl GroupResult {
    /// Its applications' outcomes, when it wrote a report
    /// ([`GroupOutcome::apps`]).
    pub fn apps(&self) -> impl Iterator<Item = &crate::workload::app::AppOutcome> {
        self.outcome.iter().flat_map(GroupOutcome::apps)
    }

    pub fn iterations_window(&self) -> u64 {
        self.outcome
            .as_ref()
            .map_or(0, |o| o.threads.iter().map(|t| t.iterations_window).sum())
    }
}

/// Which pass of a cell it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PassKind {
    /// The scenario under the kernel's fair class: the baseline of the
    /// checks relative to it.
    Fair,
    /// The scenario under the cell's scheduler: what the checks judge.
    Scheduler,
    /// A round of `bench probe`.
    Bench,
    /// An application scenario's first run in a VM, under the fair class,
    /// measured by nothing: it reads the programs, libraries and data over
    /// the VM's 9p root into the page cache, so that no measured pass is
    /// the one that paid for it. Kept in the cell's directory
    /// (`protocol::WARM_UP_PASS`), never in the result.
    WarmUp,
}

impl PassKind {
    /// "fair", "scheduler", "bench": as in the result JSON and the names of
    /// the groups' files in the cell's directory.
    pub fn name(self) -> &'static str {
        match self {
            PassKind::Fair => "fair",
            PassKind::Scheduler => "scheduler",
            PassKind::Bench => "bench",
            PassKind::WarmUp => "warm-up",
        }
    }
}

/// One pass of the scenario.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pass {
    /// Which pass (JSON: `label`, as result documents have always had it).
    #[serde(rename = "label")]
    pub kind: PassKind,
    /// The start, and the measurement window, CLOCK_MONOTONIC ns.
    pub t0_ns: u64,
    pub window_start_ns: u64,
    pub window_end_ns: u64,
    /// The stop, from t0: when every group process had exited (before
    /// the run's end too, when every group was an application that ended
    /// by itself), or when a stall stopped the pass; a stop before the
    /// run's end ends the measurement window there too (`window_end_ns`
    /// is the earlier of the two). Runnable times
    /// count from t0 to the stop; run delays are the waits that ended in
    /// the window.
    pub ended_at_ns: u64,
    pub groups: Vec<GroupResult>,
    /// The stall that ended the pass early, if one did.
    pub stall: Option<StallEvent>,
    /// Tasks still waiting at the stop (of the scenario; with a
    /// `tasks: guest` stall check, any).
    pub still_waiting: Vec<StillWaiting>,
    /// With a `tasks: guest` stall check: the longest wait of a task
    /// outside the scenario that ended before the stop.
    #[serde(default)]
    pub other_worst: Option<crate::probe::OtherWait>,
    pub probe_events: u64,
    /// Task entries the probe could not create: the measurement is
    /// incomplete when this is not 0.
    pub probe_dropped: u64,
    /// The scheduler swaps of this pass, in order.
    #[serde(default)]
    pub swaps: Vec<SwapEvent>,
    /// The operations of the scenario's timeline done in this pass, in
    /// order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub operations: Vec<crate::ops::OpEvent>,
    /// CPU time per group over the pass: (ns since t0, cumulative CPU ns
    /// of each group), every TIMELINE_STEP.
    #[serde(default)]
    pub timeline: Vec<(u64, Vec<u64>)>,
    /// Problems that make the pass's numbers untrustworthy.
    pub errors: Vec<String>,
    /// A scenario `record` wrote, under the scheduler: its groups' tasks
    /// recorded in the window the way `record` records (bursts and
    /// sleeps), for `replay-check` to score against the file's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replayed: Option<crate::record::replayed::Replayed>,
}

impl Pass {
    pub fn group(&self, name: &str) -> Option<&GroupResult> {
        self.groups.iter().find(|g| g.name == name)
    }

    /// Group `g`'s CPU time (ns) from `from` to `to` (from t0), read from
    /// the timeline's samples (every TIMELINE_STEP), each end interpolated
    /// linearly between the samples around it (clamped to the first and
    /// last); 0 without samples.
    pub fn cpu_between(&self, g: usize, from: Duration, to: Duration) -> f64 {
        let at = |t: Duration| -> f64 {
            let t = t.as_nanos() as f64;
            let v = |i: usize| {
                let (ts, vals) = &self.timeline[i];
                (*ts as f64, vals.get(g).copied().unwrap_or(0) as f64)
            };
            match self.timeline.iter().position(|(ts, _)| *ts as f64 >= t) {
                None if self.timeline.is_empty() => 0.0,
                None => v(self.timeline.len() - 1).1,
                Some(0) => v(0).1,
                Some(i) => {
                    let ((ta, va), (tb, vb)) = (v(i - 1), v(i));
                    if tb <= ta {
                        vb
                    } else {
                        va + (vb - va) * (t - ta) / (tb - ta)
                    }
                }
            }
        };
        (at(to) - at(from)).max(0.0)
    }

    pub fn window(&self) -> Duration {
        Duration::from_nanos(self.window_end_ns.saturating_sub(self.window_start_ns))
    }

    /// The longest time a task stayed runnable without running, from t0
    /// to the stop (a wait still open at the stop counted up to it), over
    /// the tasks for which `which` holds (it is given the task's group,
    /// `None` for a task outside the scenario). This is the one number
    /// for a stall: the stall check, the reports' stall columns and
    /// `compare` all show it. `None`: no such task waited.
    pub fn longest_runnable(
        &self,
        which: impl Fn(Option<&str>) -> bool,
    ) -> Option<LongestRunnable> {
        self.longest(which, false)
    }

    /// The same for the scheduler's own part of each wait (less the time
    /// the task's CPU ran a higher class and was waking); a task outside the scenario has
    /// no such split, and counts whole.
    pub fn longest_runnable_own(
        &self,
        which: impl Fn(Option<&str>) -> bool,
    ) -> Option<LongestRunnable> {
        self.longest(which, true)
    }

    fn longest(&self, which: impl Fn(Option<&str>) -> bool, own: bool) -> Option<LongestRunnable> {
        let mut best: Option<LongestRunnable> = None;
        let mut offer = |c: LongestRunnable| {
            // A named task wins a tie: it is the same wait, better told.
            if c.ns > 0
                && best.as_ref().is_none_or(|b| {
                    c.ns > b.ns || (c.ns == b.ns && b.task.is_none() && c.task.is_some())
                })
            {
                best = Some(c);
            }
        };
        if let Some(st) = self.stall.as_ref().filter(|st| which(st.group.as_deref())) {
            offer(LongestRunnable {
                ns: if own { st.own_ns } else { st.waited_ns },
                group: st.group.clone(),
                task: Some(TaskRef {
                    tid: st.tid,
                    comm: st.comm.clone(),
                    cpu: st.cpu,
                }),
                at_stop: true,
            });
        }
        for g in self.groups.iter().filter(|g| which(Some(&g.name))) {
            offer(LongestRunnable {
                ns: if own {
                    g.probe.max_runnable_own_ns
                } else {
                    g.probe.max_runnable_ns
                },
                group: Some(g.name.clone()),
                task: None,
                at_stop: false,
            });
        }
        for w in self
            .still_waiting
            .iter()
            .filter(|w| which(w.group.as_deref()))
        {
            offer(LongestRunnable {
                ns: if own { w.own_ns } else { w.waited_ns },
                group: w.group.clone(),
                task: Some(TaskRef {
                    tid: w.tid,
                    comm: w.comm.clone(),
                    cpu: w.cpu,
                }),
                at_stop: true,
            });
        }
        if let Some(o) = self.other_worst.as_ref().filter(|_| which(None)) {
            offer(LongestRunnable {
                ns: o.runnable_ns,
                group: None,
                task: Some(TaskRef {
                    tid: o.tid,
                    comm: o.comm.clone(),
                    cpu: o.cpu,
                }),
                at_stop: false,
            });
        }
        best
    }

    /// A group's longest run delay: the longest of its waits that ended in
    /// the window, or of its waits still open at the stop that began
    /// before the window's end (counted up to the stop), in ns; 0 if it
    /// had neither. What the run_delay check's `max`
    /// and the reports' max column show.
    pub fn max_run_delay(&self, g: &GroupResult) -> u64 {
        self.max_delay(g, false)
    }

    /// The same for the scheduler's own part of each wait.
    pub fn max_run_delay_own(&self, g: &GroupResult) -> u64 {
        self.max_delay(g, true)
    }

    fn max_delay(&self, g: &GroupResult, own: bool) -> u64 {
        // A wait open at the stop began at stop - waited (or before t0);
        // one that began after the window is no run delay of it.
        let window_end = self.window_end_ns.saturating_sub(self.t0_ns);
        let ended = if own {
            g.probe.max_own_ns
        } else {
            g.probe.max_wait_ns
        };
        self.still_waiting
            .iter()
            .filter(|w| w.group.as_deref() == Some(g.name.as_str()))
            .filter(|w| self.ended_at_ns.saturating_sub(w.waited_ns) < window_end)
            .map(|w| if own { w.own_ns } else { w.waited_ns })
            .fold(ended, u64::max)
    }

    /// A group's CPU time in the window as a fraction of the VM's CPU time
    /// in the window (`cpus` vCPUs): 1.0 is every CPU all the time.
    pub fn cpu_share(&self, g: &GroupResult, cpus: u32) -> f64 {
        let total = self.window().as_nanos() as f64 * f64::from(cpus.max(1));
        g.probe.run_ns_window as f64 / total.max(1.0)
    }
}

/// What the agent writes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentOutput {
    pub passes: Vec<Pass>,
    /// The scheduler's lifecycle report (for the fair class: a trivial one);
    /// with swaps, the last scheduler's.
    pub scheduler: Option<Report>,
    /// Reports of the schedulers detached by swaps, in order.
    #[serde(default)]
    pub swapped_out: Vec<Report>,
    /// Set when the agent could not do its job; no pass then counts.
    pub error: Option<String>,
}

impl AgentOutput {
    pub fn pass(&self, kind: PassKind) -> Option<&Pass> {
        self.passes.iter().find(|p| p.kind == kind)
    }
}

/// Runs the spec and writes the output to `out`, even when the run fails
/// half-way (the error is then in it).
pub fn run(spec: &AgentSpec, out: &Path) -> Result<AgentOutput> {
    pin_mapped_files();
    let dir = out.parent().unwrap_or(Path::new("/tmp")).to_path_buf();
    let mut probe = None;
    let output = run_cell(spec, &dir, None, &mut probe, &mut FairPasses::default());
    write_atomic(out, &serde_json::to_vec(&output)?)?;
    Ok(output)
}

/// Fair-class passes already run in this VM, by scenario hash: every cell
/// of a scenario compares with the same one (hot-swap runs several
/// schedulers on one scenario); and the application scenarios already
/// warmed up in this VM (`PassKind::WarmUp`), by hash.
#[derive(Default)]
pub struct FairPasses {
    passes: std::collections::HashMap<String, Pass>,
    warmed: std::collections::HashSet<String>,
}

/// Runs one cell with the VM's probe (loaded on first use) and writes
/// nothing; an error is in the output.
fn run_cell(
    spec: &AgentSpec,
    dir: &Path,
    host: Option<&HostPlacement>,
    probe: &mut Option<Probe>,
    fair: &mut FairPasses,
) -> AgentOutput {
    let mut output = AgentOutput {
        passes: Vec::new(),
        scheduler: None,
        swapped_out: Vec::new(),
        error: None,
    };
    if let Err(e) = run_into(spec, dir, host, probe, fair, &mut output) {
        output.error = Some(format!("{e:#}"));
    }
    output
}

fn run_into(
    spec: &AgentSpec,
    dir: &Path,
    host: Option<&HostPlacement>,
    probe: &mut Option<Probe>,
    fair: &mut FairPasses,
    output: &mut AgentOutput,
) -> Result<()> {
    // Each pass makes the scenario's cgroups afresh: a timeline that
    // changed their settings or moved tasks leaves nothing to the next.
    let cgroups = || Cgroups::create(&spec.scenario, host.map(|h| h.cgroup.as_path()));
    let host_cpus = host.map(|h| h.cpus.as_slice());
    let _knobs = crate::ops::KnobGuard::set(&spec.scenario.knobs)?;
    if probe.is_none() {
        *probe = Some(Probe::load()?);
    }
    let probe = probe.as_mut().expect("loaded above");
    probe.reset();
    let key = spec.scenario.hash();
    // The warm-up and the fair pass: the scenario under the fair class,
    // the probe reset after it.
    let mut fair_class_pass = |kind| -> Result<Pass> {
        let p = run_pass(
            spec,
            kind,
            Some(&mut *probe),
            &cgroups()?,
            host_cpus,
            None,
            dir,
        )?;
        probe.reset();
        Ok(p)
    };
    // An application's first run in a VM reads its program, libraries and
    // data over the 9p root (measured: app-build 36 s under the fair class
    // first, 18 to 21 s under every scheduler after it): that run is not
    // one of the measured passes, whichever comes first.
    if spec.scenario.runs_applications() && fair.warmed.insert(key.clone()) {
        let warm_up = fair_class_pass(PassKind::WarmUp)?;
        write_atomic(
            &dir.join(protocol::WARM_UP_PASS),
            &serde_json::to_vec(&warm_up)?,
        )?;
    }
    if spec.baseline {
        let pass = match fair.passes.get(&key) {
            Some(p) => p.clone(),
            None => {
                let p = fair_class_pass(PassKind::Fair)?;
                fair.passes.insert(key, p.clone());
                p
            }
        };
        output.passes.push(pass);
    }
    // Made before the scheduler starts: a failure here leaves nothing
    // attached.
    let pass_cgroups = cgroups()?;
    let session = Session::start(&spec.scheduler, dir)?;
    let mut swapping = Swapping {
        current: Some(session),
        out: Vec::new(),
        next: 0,
    };
    let mut result = Ok(());
    if swapping.current.as_ref().is_some_and(Session::attached) {
        match run_pass(
            spec,
            PassKind::Scheduler,
            Some(&mut *probe),
            &pass_cgroups,
            host_cpus,
            Some(&mut swapping),
            dir,
        ) {
            Ok(pass) => output.passes.push(pass),
            Err(e) => result = Err(e),
        }
    }
    // Whatever the pass did, the scheduler is detached and reported
    // before the next cell.
    output.swapped_out = swapping.out;
    output.scheduler = swapping.current.map(|s| s.finish(None));
    result
}

/// The scheduler pass's sessions: the one attached now, and the reports of
/// those swapped out.
struct Swapping {
    current: Option<Session>,
    out: Vec<Report>,
    /// The next swap of the spec to do.
    next: usize,
}

/// A swap under way: watching the spike until `until`.
struct OpenSwap {
    event: SwapEvent,
    /// When the new scheduler attached (CLOCK_MONOTONIC ns), if it did.
    attached_at: Option<u64>,
    until: u64,
}

impl OpenSwap {
    /// Closes the spike at `now` (the run's window ending at `window_end`,
    /// both CLOCK_MONOTONIC ns): the longest wait seen since the swap
    /// began, and how long after the attach it watched.
    fn close(mut self, probe: &mut Probe, now: u64, window_end: u64) -> SwapEvent {
        self.event.max_delay_ns = probe.spike_end();
        self.event.watched_ms = self
            .attached_at
            .map(|a| now.min(window_end).saturating_sub(a) / 1_000_000);
        self.event
    }
}

impl Swapping {
    /// When the next swap is due (CLOCK_MONOTONIC ns), if one is left.
    fn next_due(&self, spec: &AgentSpec, t0: u64) -> Option<u64> {
        spec.swaps.get(self.next).map(|p| t0 + p.at_ns)
    }

    /// Does the swap that is due at `now`, if one is: detaches the current
    /// scheduler (the tasks run on the fair class meanwhile) and attaches
    /// the next, watching the waits around it.
    fn swap_if_due(
        &mut self,
        spec: &AgentSpec,
        t0: u64,
        now: u64,
        probe: &mut Probe,
        dir: &Path,
    ) -> Option<OpenSwap> {
        let plan = spec.swaps.get(self.next)?;
        if now < t0 + plan.at_ns {
            return None;
        }
        self.next += 1;
        probe.spike_begin(now);
        if let Some(old) = self.current.take() {
            self.out.push(old.finish(None));
        }
        let started = now_ns();
        let detach_ms = (started - now) / 1_000_000;
        let (attach_ms, why) = match Session::start(&plan.to, dir) {
            Ok(s) if s.attached() => {
                self.current = Some(s);
                (Some((now_ns() - started) / 1_000_000), String::new())
            }
            Ok(s) => {
                let r = s.finish(None);
                let why = r.verdict.why().to_string();
                self.out.push(r);
                (None, why)
            }
            Err(e) => (None, format!("{e:#}")),
        };
        // One reading: the attach (when there was one) and the watch's end.
        let done = now_ns();
        Some(OpenSwap {
            attached_at: attach_ms.map(|_| done),
            event: SwapEvent {
                at_ns: now.saturating_sub(t0),
                planned_ns: plan.at_ns,
                detach_ms,
                to: plan.to.name.clone(),
                attach_ms,
                max_delay_ns: 0,
                watched_ms: None,
                why,
            },
            until: done + SPIKE_AFTER.as_nanos() as u64,
        })
    }
}

/// Several cells run one after the other in one VM, attaching and
/// detaching their schedulers without a reboot (hot-swap).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BatchSpec {
    pub cells: Vec<BatchCell>,
    /// Set when the agent runs on the machine itself (`--target host`).
    #[serde(default)]
    pub host: Option<HostPlacement>,
    /// After `cells`, run what the host queues in this directory (the
    /// shared directory's `queue/`) until it says quit (`run_batch`):
    /// `dev`'s one VM across builds.
    #[serde(default)]
    pub serve: Option<PathBuf>,
}

/// Where the agent puts what it starts on a host: every group process in a
/// cgroup under `cgroup` (the harness's own subtree, which it removes and
/// kills afterwards), and everything on `cpus` (as many as the scenario's
/// `vm.cpus`, numbered 0.. so a group's `cpus:` means the same as in a VM).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HostPlacement {
    pub cgroup: PathBuf,
    pub cpus: Vec<u32>,
}

impl HostPlacement {
    /// Pins the calling process (and what it starts later) to `cpus`.
    pub fn pin(&self) -> Result<()> {
        // SAFETY: a zeroed cpu_set_t is the empty set; CPU_SET and
        // sched_setaffinity on our own pid with its size.
        unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            for c in &self.cpus {
                libc::CPU_SET(*c as usize, &mut set);
            }
            if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
                return Err(std::io::Error::last_os_error())
                    .with_context(|| format!("pinning the agent to CPUs {:?}", self.cpus));
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BatchCell {
    /// `scheduler/scenario`, for markers and people.
    pub id: String,
    pub spec: AgentSpec,
}

/// Turns the kernel's trace buffers off (the global one and each
/// instance's): the trace events `vm::BOOT_ARGS` enables are there to pin their tracepoints' static calls, not to
/// record, and with the buffer off each costs one check. Mounts tracefs if
/// nothing has. A failure is logged, not fatal (the events then record
/// into a ring buffer, a small cost).
pub fn quiet_tracing() {
    let dir = Path::new("/sys/kernel/tracing");
    if !dir.join("tracing_on").exists() {
        let _ = std::process::Command::new("mount")
            .args(["-t", "tracefs", "nodev"])
            .arg(dir)
            .status();
    }
    // The global buffer, and each instance's (vm::BOOT_ARGS makes one).
    let instances = std::fs::read_dir(dir.join("instances"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("tracing_on"));
    for on in std::iter::once(dir.join("tracing_on")).chain(instances) {
        if let Err(e) = std::fs::write(&on, "0") {
            tracing::warn!("cannot turn the trace buffer off ({}): {e}", on.display());
        }
    }
}

/// Runs the batch: each cell's output goes to `cells/I/agent.json` as soon
/// as the cell ends, so a kernel crash later keeps the finished ones. A
/// serving batch (`serve`) then runs the cells the host queues there
/// (`protocol::queued_cell`), in order, until it finds
/// `protocol::quit_file`.
pub fn run_batch(batch: &BatchSpec, shared: &Path) -> Result<()> {
    pin_mapped_files();
    if let Some(h) = &batch.host {
        h.pin()?;
    }
    let mut probe = None;
    let mut fair = FairPasses::default();
    let mut run = |i: usize, cell: &BatchCell| -> Result<()> {
        let dir = protocol::cell_dir(shared, i);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        write_atomic(&dir.join(protocol::STARTED), b"")?;
        crate::kmsg::write(&protocol::marker(i, &cell.id, Mark::Begins));
        let output = run_cell(&cell.spec, &dir, batch.host.as_ref(), &mut probe, &mut fair);
        crate::kmsg::write(&protocol::marker(i, &cell.id, Mark::Ends));
        write_atomic(
            &dir.join(protocol::AGENT_OUTPUT),
            &serde_json::to_vec(&output)?,
        )
    };
    for (i, cell) in batch.cells.iter().enumerate() {
        run(i, cell)?;
    }
    if let Some(queue) = &batch.serve {
        let mut i = batch.cells.len();
        // The next cell is most likely the last one's scenario again.
        let mut groups = batch
            .cells
            .last()
            .map_or(0, |c| c.spec.scenario.groups.len());
        loop {
            start_ahead(&protocol::cell_dir(shared, i), groups);
            let next = next_queued(queue, i);
            let Ok(Some(cell)) = next else {
                end_started_ahead();
                return next.map(|_| ());
            };
            let r = run(i, &cell);
            end_started_ahead();
            r?;
            groups = cell.spec.scenario.groups.len();
            i += 1;
        }
    }
    Ok(())
}

/// Group processes started ahead of a serving session's next cell, in
/// that cell's directory: the harness binary exec'd over the VM's 9p root
/// costs about 0.5 s under TCG, paid while the host builds instead of in
/// the cell. Each waits for its spec on stdin (`workload::spec_from_stdin`).
static STARTED_AHEAD: std::sync::Mutex<Vec<(Child, PathBuf)>> = std::sync::Mutex::new(Vec::new());

/// Starts `n` group processes for the cell whose directory is `dir`.
fn start_ahead(dir: &Path, n: usize) {
    let Ok(exe) = std::env::current_exe() else {
        return;
    };
    let _ = std::fs::create_dir_all(dir);
    let mut pool = STARTED_AHEAD.lock().unwrap_or_else(|e| e.into_inner());
    for k in 0..n {
        let path = dir.join(format!("group-started-ahead-{k}.stderr"));
        let Ok(stderr) = std::fs::File::create(&path) else {
            return;
        };
        match group_process(&exe, stderr, None) {
            Ok(c) => pool.push((c, path)),
            Err(e) => tracing::warn!("starting a group process ahead: {e}"),
        }
    }
}

/// Starts a group process (`guest workload-group`) of the harness binary
/// `exe`, stdin and stdout piped to the agent, stderr to `stderr`, dying
/// with the agent; `spec`: its `workload::GroupSpec` as JSON, or `None`
/// for one started ahead, which reads it on stdin.
fn group_process(
    exe: &Path,
    stderr: std::fs::File,
    spec: Option<String>,
) -> std::io::Result<Child> {
    let mut cmd = Command::new(exe);
    crate::process::die_with_parent(&mut cmd);
    cmd.args(["guest", "workload-group"]);
    if let Some(json) = spec {
        cmd.arg("--spec-json").arg(json);
    }
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
}

/// A group process started ahead for this cell (`dir`), given `spec`, its
/// stderr file renamed to `stderr`; `None` when there is none (it is then
/// started as usual).
fn take_started(dir: &Path, stderr: &Path, spec: &crate::workload::GroupSpec) -> Option<Child> {
    let mut pool = STARTED_AHEAD.lock().unwrap_or_else(|e| e.into_inner());
    let i = pool.iter().position(|(_, p)| p.parent() == Some(dir))?;
    let (mut child, path) = pool.swap_remove(i);
    let given = serde_json::to_string(spec).ok().and_then(|j| {
        writeln!(child.stdin.as_mut()?, "{j}").ok()?;
        std::fs::rename(&path, stderr).ok()
    });
    if given.is_none() {
        let _ = child.kill();
        let _ = child.wait();
        return None;
    }
    Some(child)
}

/// Ends the group processes started ahead that no cell took.
fn end_started_ahead() {
    let mut pool = STARTED_AHEAD.lock().unwrap_or_else(|e| e.into_inner());
    for (mut c, path) in pool.drain(..) {
        let _ = c.kill();
        let _ = c.wait();
        let _ = std::fs::remove_file(path);
    }
}

/// A serving batch's cell `i`, once the host has queued it; `None` once
/// it asks the session to end. Polls every 20 ms: the host writes through
/// the VM's 9p share, whose changes the guest's inotify does not see (the
/// share is uncached; the root is not a place for it: a name looked up
/// there before the host wrote it stayed missing).
fn next_queued(queue: &Path, i: usize) -> Result<Option<BatchCell>> {
    let (file, quit) = (protocol::queued_cell(queue, i), protocol::quit_file(queue));
    loop {
        match std::fs::read(&file) {
            Ok(b) => {
                return serde_json::from_slice(&b)
                    .map(Some)
                    .with_context(|| format!("reading the queued cell {}", file.display()))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("reading {}", file.display())),
        }
        if quit.exists() {
            return Ok(None);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The scenario's cgroups, created under `/sys/fs/cgroup/scx-harness` (in
/// a VM) or the host target's own subtree, with the cpu controller enabled
/// where a group has a weight, and removed when dropped. On a host every
/// group gets a cgroup: a group without `cgroup:` goes to `harness.ungrouped`, so the
/// harness can kill whatever the scenario left. (In a VM such a group stays
/// in the root cgroup: with weighted groups beside it, a host's split
/// between the two kinds can differ from a VM's.)
struct Cgroups {
    /// The directories made, deepest last (removed in reverse).
    made: Vec<PathBuf>,
    /// group index -> its cgroup directory
    dirs: Vec<Option<PathBuf>>,
    /// The scenario's top: scenario cgroup paths are under it.
    base: Option<PathBuf>,
    /// True if the cpu controller was off at the root before: it is turned
    /// off again afterwards, so the next cell runs as the first did (with
    /// it left on, wakeup latency on an idle VM tripled under sched_ext).
    root_cpu_was_off: bool,
}

impl Cgroups {
    fn create(s: &Scenario, host: Option<&Path>) -> Result<Cgroups> {
        let paths = crate::scenario::validate::cgroup_paths(s);
        let weighted = !paths.is_empty();
        let mut cg = Cgroups {
            made: Vec::new(),
            dirs: vec![None; s.groups.len()],
            base: None,
            root_cpu_was_off: false,
        };
        let churns = s.timeline.iter().any(|o| o.churn.is_some());
        if !weighted && !churns && host.is_none() {
            return Ok(cg);
        }
        let root = Path::new(CGROUP_ROOT);
        let base = match host {
            Some(h) => h.join("cells"),
            None => root.join("scx-harness"),
        };
        // Every directory from the root down to the base, and the base: the
        // cpu controller must be on in each parent of a weighted cgroup.
        let mut chain: Vec<PathBuf> = base
            .ancestors()
            .take_while(|a| a.starts_with(root))
            .map(Path::to_path_buf)
            .collect();
        chain.reverse();
        if weighted {
            cg.root_cpu_was_off = !std::fs::read_to_string(root.join("cgroup.subtree_control"))
                .unwrap_or_default()
                .split_whitespace()
                .any(|c| c == "cpu");
        }
        let enable_cpu = |dir: &Path| -> Result<()> {
            std::fs::write(dir.join("cgroup.subtree_control"), "+cpu").with_context(|| {
                format!(
                    "enabling the cpu controller in {} (cgroup v2 with CONFIG_CGROUP_SCHED)",
                    dir.display()
                )
            })
        };
        for dir in &chain {
            if !dir.exists() {
                std::fs::create_dir(dir).with_context(|| format!("creating {}", dir.display()))?;
                cg.made.push(dir.clone());
            }
            if weighted {
                enable_cpu(dir)?;
            }
        }
        // The scenario's cgroups, parents first (cgroup_paths lists them
        // so); in each parent the cpu controller is on, as systemd does
        // for a slice whose scopes have weights.
        for p in &paths {
            let d = base.join(p);
            if !d.exists() {
                std::fs::create_dir(&d).with_context(|| format!("creating {}", d.display()))?;
                cg.made.push(d.clone());
            }
            if paths.iter().any(|q| q.starts_with(&format!("{p}/"))) {
                enable_cpu(&d)?;
            }
        }
        let set = |path: &str, file: &str, value: String| -> Result<()> {
            crate::ops::write_cgroup_file(&base.join(path), file, &value)
                .map_err(anyhow::Error::msg)
        };
        for l in &s.cgroups {
            if let Some(w) = l.weight {
                set(&l.path, "cpu.weight", w.to_string())?;
            }
            if let Some(m) = &l.max {
                set(&l.path, "cpu.max", m.text())?;
            }
        }
        for (i, g) in s.groups.iter().enumerate() {
            let name = match (&g.cgroup, host) {
                (Some(c), _) => {
                    set(&c.name, "cpu.weight", c.weight.to_string())?;
                    if let Some(m) = &c.max {
                        set(&c.name, "cpu.max", m.text())?;
                    }
                    c.name.as_str()
                }
                // A name the scenario validator never gives a group's
                // cgroup (it starts with "harness.").
                (None, Some(_)) => "harness.ungrouped",
                (None, None) => continue,
            };
            let d = base.join(name);
            if !d.exists() {
                std::fs::create_dir(&d).with_context(|| format!("creating {}", d.display()))?;
                cg.made.push(d.clone());
            }
            cg.dirs[i] = Some(d);
        }
        cg.base = Some(base);
        Ok(cg)
    }

    fn join(&self, group: usize, pid: u32) -> Result<()> {
        if let Some(d) = &self.dirs[group] {
            std::fs::write(d.join("cgroup.procs"), pid.to_string())
                .with_context(|| format!("moving process {pid} into {}", d.display()))?;
        }
        Ok(())
    }
}

impl Drop for Cgroups {
    fn drop(&mut self) {
        for d in self.made.iter().rev() {
            let _ = std::fs::remove_dir(d);
        }
        if self.root_cpu_was_off {
            let _ = std::fs::write(
                Path::new(CGROUP_ROOT).join("cgroup.subtree_control"),
                "-cpu",
            );
        }
    }
}

/// What the timeline acts on in one pass, as known once every group is
/// ready (owned: the timeline runs on a thread of its own).
struct PassTargets {
    /// Per group: its tasks, and the processes a move writes.
    tasks: Vec<Vec<u32>>,
    processes: Vec<Vec<u32>>,
    base: Option<PathBuf>,
    host_cpus: Option<Vec<u32>>,
}

impl crate::ops::Targets for PassTargets {
    fn tasks(&self, g: usize) -> Vec<u32> {
        self.tasks.get(g).cloned().unwrap_or_default()
    }

    fn processes(&self, g: usize) -> Vec<u32> {
        self.processes.get(g).cloned().unwrap_or_default()
    }

    fn cgroup_dir(&self, path: Option<&str>) -> Option<PathBuf> {
        let base = self.base.as_ref()?;
        Some(match path {
            Some(p) => base.join(p),
            None => base.clone(),
        })
    }

    fn cpu(&self, c: u32) -> u32 {
        self.host_cpus
            .as_ref()
            .and_then(|h| h.get(c as usize).copied())
            .unwrap_or(c)
    }

    fn may_hotplug(&self) -> bool {
        self.host_cpus.is_none()
    }
}

/// A running group process.
struct Running {
    child: Child,
    out: PathBuf,
    status: Option<i32>,
    /// The tasks doing its work, from its ready line: its threads' tids,
    /// or its task processes' pids (`tasks: processes`).
    workers: Vec<u32>,
    processes: bool,
}

impl Running {
    /// The group's tasks now: the group process's threads and its task
    /// processes' (not the children these fork: the probe follows those).
    fn tids(&self) -> Vec<u32> {
        let mut t = crate::probe::tids_of(self.child.id());
        if self.processes {
            for p in &self.workers {
                t.extend(crate::probe::tids_of(*p));
            }
        }
        t
    }

    /// The processes to move between cgroups: the group process (its
    /// threads go with it), or each task process.
    fn processes(&self) -> Vec<u32> {
        match self.processes {
            true => self.workers.clone(),
            false => vec![self.child.id()],
        }
    }
}

/// The VM's scratch disk: the block device whose serial is
/// [`crate::protocol::SCRATCH_SERIAL`], loading virtio_blk first where it is a module
/// (Debian's kernels). None without one.
fn scratch_disk() -> Option<std::path::PathBuf> {
    let find = || -> Option<std::path::PathBuf> {
        std::fs::read_dir("/sys/block")
            .ok()?
            .flatten()
            .find_map(|e| {
                let serial = std::fs::read_to_string(e.path().join("serial")).ok()?;
                (serial.trim() == crate::protocol::SCRATCH_SERIAL)
                    .then(|| Path::new("/dev").join(e.file_name()))
            })
    };
    if let Some(d) = find() {
        return Some(d);
    }
    if !Path::new("/sys/module/virtio_blk").exists() {
        // Quietly: what it could not load is missing either way.
        let _ = std::process::Command::new("modprobe")
            .args(["-q", "virtio_blk"])
            .stderr(std::process::Stdio::null())
            .status();
    }
    find()
}

fn comm_of(tid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{tid}/comm"))
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

fn run_pass(
    spec: &AgentSpec,
    kind: PassKind,
    mut probe: Option<&mut Probe>,
    cgroups: &Cgroups,
    host_cpus: Option<&[u32]>,
    mut swapping: Option<&mut Swapping>,
    dir: &Path,
) -> Result<Pass> {
    let s = &spec.scenario;
    let exe = std::env::current_exe().context("finding the harness binary in the guest")?;
    let duration = s.duration.as_nanos() as u64;
    let warmup = s.warmup.as_nanos() as u64;
    // block_io's device: in a VM, the scratch disk the runner attached.
    let disk = match (s.needs_scratch_disk(), host_cpus) {
        (true, None) => Some(scratch_disk().ok_or_else(|| {
            anyhow::anyhow!(
                "block_io: the VM has no scratch disk (no block device with serial {:?} in /sys/block/*/serial): the kernel needs CONFIG_VIRTIO_BLK, and the runner attaches the disk only to a VM whose batch has a block_io scenario",
                crate::protocol::SCRATCH_SERIAL
            )
        })?),
        _ => None,
    };
    // Replay groups that wake each other's tasks share a mailbox, held
    // open until the pass's groups are done.
    let mailbox = crate::workload::coupled(s)
        .then(|| crate::workload::Mailbox::create(crate::workload::mailbox_words(s)))
        .transpose()?;
    let mut running = Vec::new();
    for (i, g) in s.groups.iter().enumerate() {
        let gspec = GroupSpec {
            index: i as u32,
            name: g.name.clone(),
            threads: g.threads,
            work: g.work.clone(),
            nice: g.nice,
            policy: g.policy,
            priority: g.priority(),
            tasks: g.tasks,
            cpus: g.cpus.clone(),
            comm: g.comm(),
            seed: s.seed,
            start_ns: g.start().as_nanos() as u64,
            stop_ns: g.stop(s.duration).as_nanos() as u64,
            window_start_ns: warmup,
            window_end_ns: duration,
            out: dir.join(format!("{}-{}.json", kind.name(), g.name)),
            output_dir: dir.to_path_buf(),
            output_pass: kind.name().to_string(),
            apps_dir: spec.apps_dir.clone(),
            scratch_disk: disk.clone(),
            couplings: mailbox
                .as_ref()
                .and_then(|m| crate::workload::Couplings::of(s, i, &m.path())),
        };
        let stderr_path = dir.join(format!("{}-{}.stderr", kind.name(), g.name));
        let mut child = match take_started(dir, &stderr_path, &gspec) {
            Some(c) => c,
            None => {
                let stderr = std::fs::File::create(&stderr_path)?;
                group_process(&exe, stderr, Some(serde_json::to_string(&gspec)?))
                    .with_context(|| format!("starting group {}", g.name))?
            }
        };
        let mut admit = || -> Result<()> {
            if let Some(p) = probe.as_deref_mut() {
                p.track(child.id(), i as u32)?;
            }
            cgroups.join(i, child.id())?;
            // Only now may it make its tasks: tracked and in its cgroup,
            // every task process it forks is too.
            writeln!(
                child.stdin.as_mut().expect("piped stdin"),
                "{}",
                crate::workload::GO
            )
            .context("telling it to set up")
        };
        if let Err(e) = admit() {
            let why = format!(
                "group {} could not be started (see {})",
                g.name,
                gspec.out.with_extension("stderr").display()
            );
            for r in running
                .iter_mut()
                .map(|r: &mut Running| &mut r.child)
                .chain([&mut child])
            {
                let _ = r.kill();
                let _ = r.wait();
            }
            return Err(e.context(why));
        }
        running.push(Running {
            child,
            out: gspec.out,
            status: None,
            workers: Vec::new(),
            processes: g.tasks == crate::scenario::Tasks::Processes,
        });
    }
    // The watch must not be starved by what it watches (three nice -20
    // hogs on one vCPU left a nice 0 agent scanning once in seconds).
    outrank_the_workload()?;
    // t0 once every group has its threads set up: a group still starting
    // when others already run would start late (a nice 0 process starting
    // beside nice -20 spinners may take seconds).
    // A group kept from getting ready by the scheduler is a stall too:
    // while waiting, the watch (from now) scans the groups' threads, and a
    // task past its bound ends the wait and the pass, as the stall it is
    // (found before t0). It used to be left for the watch from t0 to find
    // again, which it did not when the task had run meanwhile: a CI run
    // had scx_fault hold a napper past idle-baseline's bound while its
    // group started, and the stall check passed on 2.4 ms.
    let ready_by = now_ns() + READY_TIMEOUT.as_nanos() as u64;
    let setup_stall: std::cell::RefCell<Option<crate::probe::Waiting>> = Default::default();
    if let Some(p) = probe.as_deref_mut() {
        p.set_watch(now_ns(), u64::MAX);
    }
    let pids: Vec<u32> = running.iter().map(|r| r.child.id()).collect();
    let stalled = || {
        let Some(p) = probe.as_deref() else {
            return false;
        };
        // Task processes forked during set-up are the group process's
        // children.
        let tids: Vec<u32> = pids
            .iter()
            .flat_map(|pid| {
                let mut t = crate::probe::tids_of(*pid);
                for c in crate::process::descendants(*pid as i32) {
                    t.extend(crate::probe::tids_of(c as u32));
                }
                t
            })
            .collect();
        let over = p.waiting(now_ns(), &tids).into_iter().find(|w| {
            let group = w
                .group
                .and_then(|g| s.groups.get(g as usize))
                .map(|g| g.name.as_str());
            spec.stall_bounds_for(group).exceeded(w.waited_ns, w.own_ns)
        });
        let found = over.is_some();
        if found {
            *setup_stall.borrow_mut() = over;
        }
        found
    };
    for i in 0..running.len() {
        let stdout = running[i].child.stdout.take().expect("piped stdout");
        match wait_ready(stdout, ready_by, &stalled) {
            Ok(Some(workers)) => running[i].workers = workers,
            Ok(None) => break,
            Err(e) => {
                let why = format!(
                    "group {} did not get ready (see {})",
                    s.groups[i].name,
                    running[i].out.with_extension("stderr").display()
                );
                for r in &mut running {
                    let _ = r.child.kill();
                    let _ = r.child.wait();
                }
                return Err(e.context(why));
            }
        }
    }
    let t0 = now_ns() + START_DELAY.as_nanos() as u64;
    let group_name = |g: Option<u32>| {
        g.and_then(|g| s.groups.get(g as usize))
            .map(|g| g.name.clone())
    };
    // Before t0: while its group was starting.
    let setup_stall = setup_stall
        .into_inner()
        .map(|w| StallEvent::found(&w, group_name(w.group), 0));
    let (window_start, window_end) = (t0 + warmup, t0 + duration);
    let watch_guest = spec.watches_guest();
    if let Some(p) = probe.as_deref_mut() {
        p.set_window(window_start, window_end);
        p.set_watch(t0, u64::MAX);
        p.watch_all(watch_guest);
    }
    for r in &mut running {
        let stdin = r.child.stdin.as_mut().expect("piped stdin");
        writeln!(stdin, "t0 {t0}").context("telling a group its start time")?;
    }
    let recorder =
        (kind == PassKind::Scheduler && spec.recording != PassRecording::Off).then(|| {
            PassRecorder::start(
                s,
                &running,
                window_start,
                window_end,
                spec.recording == PassRecording::Capture,
            )
        });
    // The bound of each group's tasks, and of a task outside the scenario
    // (tasks: guest), in ns.
    let bounds: Vec<StallBounds> = s
        .groups
        .iter()
        .map(|g| spec.stall_bounds_for(Some(&g.name)))
        .collect();
    let other_bound = spec.stall_bounds_for(None);
    let bound_of = |g: Option<u32>| match g {
        Some(g) => bounds.get(g as usize).copied().unwrap_or_default(),
        None => other_bound,
    };
    let watching = probe.is_some() && (bounds.iter().any(|b| !b.is_none()) || watch_guest);
    // Group processes get their grace to exit after the window, and a
    // stall bound's worth more: a task kept waiting then is found too.
    let exit_deadline = window_end
        + EXIT_GRACE.as_nanos() as u64
        + bounds
            .iter()
            .chain([&other_bound])
            .map(StallBounds::max)
            .max()
            .unwrap_or(0);
    let mut stall = setup_stall;
    let mut errors = Vec::new();
    let mut timeline = Vec::new();
    let mut swaps: Vec<SwapEvent> = Vec::new();
    let mut open_swap: Option<OpenSwap> = None;
    // The timeline runs on a real-time thread of its own: a swap (seconds
    // of detach and attach under load) or a scan never delays it.
    let mut timeline_thread = if s.timeline.is_empty() {
        None
    } else {
        let targets = PassTargets {
            tasks: running.iter().map(|r| r.workers.clone()).collect(),
            processes: running.iter().map(Running::processes).collect(),
            base: cgroups.base.clone(),
            host_cpus: host_cpus.map(<[u32]>::to_vec),
        };
        Some(crate::ops::TimelineThread::start(
            s.clone(),
            t0,
            window_end,
            targets,
        )?)
    };
    let mut next_sample = t0;
    let mut placement: Option<Vec<Option<OnSchedExt>>> = None;
    let mut guest_pids: Vec<u32> = Vec::new();
    let mut next_tid_list = t0;
    let mut now = now_ns();
    // Until every group process has exited: the run, then its exit, when a
    // starved main thread that has to write the group's outcome is still
    // a stall.
    let stop = loop {
        if stall.is_some() {
            // Found while the groups started: the pass stops before t0.
            break now;
        }
        let in_run = now < window_end;
        if !in_run {
            if let (Some(o), Some(p)) = (open_swap.take(), probe.as_deref_mut()) {
                // The run is over: the waits of its exit are no swap's.
                swaps.push(o.close(p, now, window_end));
            }
        }
        if let (true, Some(sw), Some(p)) = (in_run, swapping.as_deref_mut(), probe.as_deref_mut()) {
            // A swap's spike window closes early when the next swap is
            // due: swaps keep their schedule.
            if open_swap
                .as_ref()
                .is_some_and(|o| now >= o.until || sw.next_due(spec, t0).is_some_and(|d| now >= d))
            {
                let o = open_swap.take().expect("checked");
                swaps.push(o.close(p, now, window_end));
            }
            if open_swap.is_none() {
                open_swap = sw.swap_if_due(spec, t0, now, p, dir);
            }
        }
        // The tasks scanned: the group processes' threads, and with a
        // guest-wide check every other process of the guest (kernel threads
        // are processes of one thread each), listed every TIMELINE_STEP.
        // A task not in the list is still caught by the probe when its
        // wait ends. Cheap on purpose: the watch outranks the workload, and
        // listing every thread of the guest (a directory per process)
        // every 250 ms took bursts of milliseconds from it (idle-baseline's
        // p99 tripled).
        if watch_guest && now >= next_tid_list {
            guest_pids = crate::probe::pids_of_guest();
            next_tid_list = now + TIMELINE_STEP.as_nanos() as u64;
        }
        let mut guest_tids: Vec<u32> = running.iter().flat_map(Running::tids).collect();
        guest_tids.extend(&guest_pids);
        if let (true, Some(p), true) = (in_run, probe.as_deref(), now >= next_sample) {
            // The clock read again: a swap above may have taken seconds,
            // and the sample's time must be when its values were read.
            let at = now_ns();
            timeline.push((
                at.saturating_sub(t0),
                p.run_ns_by_group(s.groups.len(), &guest_tids, at),
            ));
            next_sample = at + TIMELINE_STEP.as_nanos() as u64;
        }
        // Where the tasks run, read once as the window opens (a check
        // compares it with what the scheduler switches).
        if in_run && placement.is_none() && now >= window_start {
            placement = Some(
                running
                    .iter()
                    .map(|r| OnSchedExt::read(&r.workers))
                    .collect::<Vec<_>>(),
            );
        }
        if let (true, Some(p)) = (watching, probe.as_deref_mut()) {
            // Read the clock again: a swap or the listing above may have
            // taken a while, and the stop must be the moment of the scan.
            now = now_ns();
            let over = p
                .waiting(now, &guest_tids)
                .into_iter()
                .filter(|w| bound_of(w.group).exceeded(w.waited_ns, w.own_ns))
                .max_by_key(|w| w.waited_ns);
            if let Some(w) = over {
                // The stop: nothing after it counts, in any number.
                p.set_watch(t0, now);
                if now < window_end {
                    p.set_window(window_start, now);
                }
                stall = Some(StallEvent::found(
                    &w,
                    group_name(w.group),
                    now.saturating_sub(t0),
                ));
                break now;
            }
        }
        if in_run {
            if let Some(sess) = swapping.as_deref_mut().and_then(|s| s.current.as_mut()) {
                sess.watch();
            }
        }
        for r in &mut running {
            if r.status.is_none() {
                if let Some(st) = r.child.try_wait()? {
                    r.status = Some(st.code().unwrap_or(-1));
                    if !st.success() {
                        errors.push(format!(
                            "a group process exited early ({st}); see {}",
                            r.out.with_extension("stderr").display()
                        ));
                    }
                }
            }
        }
        // Every group process has exited (applications that ended by
        // themselves): the pass stops here, and so does its window.
        if running.iter().all(|r| r.status.is_some()) {
            if let (true, Some(p)) = (in_run, probe.as_deref_mut()) {
                p.set_window(window_start, now.max(window_start));
            }
            break now;
        }
        if now >= exit_deadline {
            errors.push(format!(
                "a group process did not exit within {} of its stop time and was killed",
                format_duration(Duration::from_nanos(exit_deadline - window_end))
            ));
            break now;
        }
        let next = if in_run {
            let swap_due = swapping
                .as_deref()
                .and_then(|sw| sw.next_due(spec, t0))
                .unwrap_or(u64::MAX);
            window_end
                .min(now + SCAN.as_nanos() as u64)
                .min(swap_due)
                .min(next_sample.max(now))
        } else {
            now + SCAN.as_nanos() as u64
        };
        std::thread::sleep(Duration::from_nanos(
            next.saturating_sub(now).max(1_000_000),
        ));
        now = now_ns();
    };
    if let Some(p) = probe.as_deref_mut() {
        p.set_watch(t0, stop);
    }
    if let Some(r) = &recorder {
        r.stop_at(stop);
    }
    // The run is over: the timeline stops (it is joined below, after a
    // stalled scheduler is detached: its clean-up may wait on tasks only
    // a working scheduler runs).
    if let Some(t) = &timeline_thread {
        t.stop();
    }
    if let (Some(o), Some(p)) = (open_swap.take(), probe.as_deref_mut()) {
        swaps.push(o.close(p, now_ns(), window_end));
    }
    let (waiting, snapshot, other_worst): (Vec<Waiting>, Snapshot, _) = match probe.as_deref() {
        Some(p) => (
            p.all_waiting(stop),
            p.snapshot(s.groups.len()),
            p.other_worst(),
        ),
        None => Default::default(),
    };
    // Named now: a task's comm is gone once it is killed.
    let still_waiting: Vec<StillWaiting> = waiting
        .into_iter()
        .filter(|w| w.group.is_some() || !other_bound.is_none())
        .map(|w| StillWaiting {
            tid: w.tid,
            group: group_name(w.group),
            comm: comm_of(w.tid),
            cpu: w.cpu,
            waited_ns: w.waited_ns,
            own_ns: w.own_ns,
        })
        .collect();
    let killed = running.iter().any(|r| r.status.is_none());
    if stall.is_some() || killed {
        // The scenario is over: its tasks go now. A stalled task cannot act
        // on SIGKILL until it runs, so the scheduler that holds it goes
        // first.
        if let Some(st) = stall.as_mut() {
            if let Some(sess) = swapping.and_then(|s| s.current.as_mut()) {
                if spec.sysrq_on_stall && sess.attached() {
                    if let Err(e) = lifecycle::detach_through_sysrq() {
                        tracing::warn!(
                            "sysrq-S failed ({e}); asking the scheduler to leave instead"
                        );
                    }
                }
                sess.stop();
                let asked = now_ns();
                st.detached_after_ns = lifecycle::wait_detached(Duration::from_secs(5))
                    .map(|d| (asked + d.as_nanos() as u64).saturating_sub(stop));
            }
        }
        for r in running.iter_mut().filter(|r| r.status.is_none()) {
            // Its whole tree: task processes, commands in process groups
            // of their own and what those started.
            for d in crate::process::descendants(r.child.id() as i32) {
                // SAFETY: a plain signal to a process of the scenario.
                unsafe { libc::kill(d, libc::SIGKILL) };
            }
            let _ = r.child.kill();
        }
        let deadline = now_ns() + EXIT_GRACE.as_nanos() as u64;
        for r in running.iter_mut().filter(|r| r.status.is_none()) {
            r.status = Some(-1);
            let mut gone = false;
            while now_ns() < deadline {
                if let Ok(Some(st)) = r.child.try_wait() {
                    r.status = Some(st.code().unwrap_or(-1));
                    gone = true;
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            if !gone {
                errors.push(format!(
                    "group process {} did not die within {} s of SIGKILL (a task that never runs cannot act on it)",
                    r.child.id(),
                    EXIT_GRACE.as_secs()
                ));
            }
        }
    }
    // What the timeline changed that outlives the run (offline CPUs,
    // churn cgroups) is undone as its thread ends.
    let operations = match timeline_thread.take().map(crate::ops::TimelineThread::join) {
        None => Vec::new(),
        Some(Ok(events)) => events,
        Some(Err(e)) => {
            errors.push(format!("{e:#}"));
            Vec::new()
        }
    };
    for e in &operations {
        if let Some(err) = &e.error {
            errors.push(format!(
                "timeline: {} at {} ({}): {err}",
                e.kind,
                format_duration(Duration::from_nanos(e.planned_ns)),
                e.what
            ));
        }
    }
    let replayed = recorder.map(PassRecorder::finish);
    let mut groups = Vec::new();
    for (i, r) in running.iter().enumerate() {
        let outcome: Option<GroupOutcome> = std::fs::read(&r.out)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok());
        if let Some(o) = &outcome {
            errors.extend(o.errors.iter().map(|e| format!("group {}: {e}", o.name)));
            // Under the scheduler, an application's failure is the `app`
            // outcome's (checks); under the fair class the scenario or the
            // machine is at fault, and what is relative to it is unknown.
            if kind != PassKind::Scheduler {
                errors.extend(
                    o.apps()
                        .filter_map(|a| a.failure.as_ref())
                        .map(|f| format!("group {} under the {} pass: {f}", o.name, kind.name())),
                );
            }
        } else if stall.is_none() {
            errors.push(format!("group {} wrote no outcome", s.groups[i].name));
        }
        groups.push(GroupResult {
            name: s.groups[i].name.clone(),
            probe: snapshot.groups.get(i).cloned().unwrap_or_default(),
            outcome,
            exit_status: r.status,
            on_sched_ext: placement.as_ref().and_then(|p| p.get(i).copied().flatten()),
        });
    }
    if snapshot.nr_dropped > 0 {
        errors.push(format!(
            "the probe could not track {} task(s) (its task map was full)",
            snapshot.nr_dropped
        ));
    }
    Ok(Pass {
        kind,
        t0_ns: t0,
        window_start_ns: window_start,
        window_end_ns: window_end.min(stop.max(window_start)),
        ended_at_ns: stop.saturating_sub(t0),
        groups,
        stall,
        still_waiting,
        other_worst: other_worst.filter(|_| !other_bound.is_none()),
        probe_events: snapshot.nr_events,
        probe_dropped: snapshot.nr_dropped,
        swaps,
        operations,
        timeline,
        errors,
        replayed,
    })
}

/// The recorder of a pass (`PassRecording`), on a thread of its own from
/// t0 to the window's end, or the pass's stop if sooner.
struct PassRecorder {
    /// Where the recording ends (CLOCK_MONOTONIC ns); lowered at the stop.
    until: std::sync::Arc<std::sync::atomic::AtomicU64>,
    thread: Option<std::thread::JoinHandle<Result<crate::record::replayed::Replayed>>>,
}

impl PassRecorder {
    /// Records the group tasks of `running` (the scenario's groups, in
    /// order), keeping what ends in the window; with `capture`, the
    /// groups summarised too.
    fn start(
        s: &Scenario,
        running: &[Running],
        window_start: u64,
        window_end: u64,
        capture: bool,
    ) -> Self {
        use crate::record::replayed::Tasks;
        let mut tasks = Tasks::default();
        for (i, r) in running.iter().enumerate() {
            tasks.tgids.push(r.child.id());
            tasks.group_processes.insert(r.child.id(), i);
            for &w in &r.workers {
                if r.processes {
                    tasks.tgids.push(w);
                    tasks.by_tgid.insert(w, i);
                } else {
                    tasks.by_tid.insert(w, i);
                }
            }
        }
        let names: Vec<String> = s.groups.iter().map(|g| g.name.clone()).collect();
        let until = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(window_end));
        let end = until.clone();
        let thread = std::thread::spawn(move || {
            crate::record::replayed::record(&tasks, &names, window_start, &end, capture)
        });
        PassRecorder {
            until,
            thread: Some(thread),
        }
    }

    /// Ends the recording at `at` (CLOCK_MONOTONIC ns) if it would end
    /// later.
    fn stop_at(&self, at: u64) {
        self.until
            .fetch_min(at, std::sync::atomic::Ordering::Relaxed);
    }

    /// Stops the recording and returns it; a recorder that failed says
    /// why in the result's `error` (the scheduler's measurement stands).
    fn finish(mut self) -> crate::record::replayed::Replayed {
        self.stop_at(now_ns());
        let failed = |why: String| crate::record::replayed::Replayed {
            error: Some(why),
            ..Default::default()
        };
        match self.thread.take().map(std::thread::JoinHandle::join) {
            Some(Ok(Ok(r))) => r,
            Some(Ok(Err(e))) => failed(format!("{e:#}")),
            Some(Err(panic)) => failed(format!(
                "the recorder's thread panicked: {}",
                panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_default()
            )),
            None => failed("the recorder was not running".into()),
        }
    }
}

/// A pass that ends early (an error) stops its recorder too, and waits
/// for it (a tick, about 100 ms): no BPF program stays attached into the
/// next cell.
impl Drop for PassRecorder {
    fn drop(&mut self) {
        self.stop_at(0);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Waits for a group process's "ready" line on its stdout, until `by`
/// (CLOCK_MONOTONIC ns): its task processes' pids once it came, None as
/// soon as `stalled` (asked every SCAN) says a task is past its stall
/// bound.
fn wait_ready(
    stdout: std::process::ChildStdout,
    by: u64,
    stalled: &dyn Fn() -> bool,
) -> Result<Option<Vec<u32>>> {
    use std::io::Read;
    use std::os::fd::AsRawFd;
    let mut line = Vec::new();
    let mut stdout = stdout;
    loop {
        if line.ends_with(b"\n") {
            let text = String::from_utf8_lossy(&line);
            return match crate::workload::parse_ready(&text) {
                Some(pids) => Ok(Some(pids)),
                None => anyhow::bail!("it said {text:?} instead of \"ready\""),
            };
        }
        let left_ms = by.saturating_sub(now_ns()) / 1_000_000;
        anyhow::ensure!(
            left_ms > 0,
            "no \"ready\" within {} s",
            READY_TIMEOUT.as_secs()
        );
        let mut pfd = libc::pollfd {
            fd: stdout.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        let wait_ms = left_ms.min(SCAN.as_millis() as u64);
        let n = unsafe { libc::poll(&mut pfd, 1, wait_ms as i32) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e).context("waiting for the group's \"ready\"");
        }
        if n == 0 {
            if stalled() {
                return Ok(None);
            }
            continue;
        }
        let mut b = [0u8; 1];
        match stdout.read(&mut b)? {
            0 => anyhow::bail!("it exited before it was ready"),
            _ => line.push(b[0]),
        }
    }
}

/// Puts the calling thread (the agent's watch) in SCHED_FIFO at the top
/// priority, above any scenario task and every scheduler class but
/// deadline and stop, with SCHED_RESET_ON_FORK: what it starts (group
/// processes, schedulers, their threads) begins in SCHED_NORMAL, nice 0.
/// It sleeps between scans (SCAN), so it takes little from the workload,
/// and the same under the fair class and under the scheduler.
fn outrank_the_workload() -> Result<()> {
    let param = libc::sched_param { sched_priority: 99 };
    // SAFETY: a valid sched_param for the calling thread.
    if unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO | libc::SCHED_RESET_ON_FORK, &param) }
        != 0
    {
        return Err(std::io::Error::last_os_error())
            .context("putting the agent's watch in SCHED_FIFO 99 (the guest runs as root)");
    }
    Ok(())
}

/// Locks every file-backed mapping of the agent (its own binary, the
/// libraries) in memory, once, as the agent starts: before any group
/// process exists and before any scheduler is attached.
///
/// Why: the group processes run the same binary and libraries. A task a
/// scheduler stalls in the middle of a page fault on one of those files
/// holds that page's folio lock while it waits (seen: `filemap_fault` ->
/// `netfs_read_folio` -> `p9_client_read` on the VM's 9p root, in
/// scx_fault's stall dump); a watch that then faults on the same page
/// waits for the stalled task, so the stall it is there to catch stops it
/// until the kernel's own watchdog (30 s) ejects the scheduler. Resident
/// and locked, those pages are never faulted again by the agent, and the
/// group processes find them in the page cache (a minor fault, no 9p read
/// to be stalled in).
///
/// Why at the start and nowhere later: `mlock` itself populates every
/// page (`__mm_populate`, mm/mlock.c), so it waits on a stalled task's
/// folio like any fault. Called per pass, after the groups had started,
/// it hung the watch there (CI of 2026-12-01: a stall found by the
/// kernel's watchdog at 30 s instead of by the watch at 1 s). About
/// 25 MB for a debug build's text; a failure (no CAP_IPC_LOCK) is logged,
/// not fatal.
fn pin_mapped_files() {
    let Ok(maps) = std::fs::read_to_string("/proc/self/maps") else {
        return;
    };
    for line in maps.lines() {
        // "start-end perms offset dev inode path"
        let mut f = line.split_whitespace();
        let (Some(range), Some(_perms), Some(_off), Some(_dev), Some(inode), Some(path)) =
            (f.next(), f.next(), f.next(), f.next(), f.next(), f.next())
        else {
            continue;
        };
        if inode == "0" || !path.starts_with('/') {
            continue;
        }
        let Some((a, b)) = range.split_once('-') else {
            continue;
        };
        let (Ok(a), Ok(b)) = (usize::from_str_radix(a, 16), usize::from_str_radix(b, 16)) else {
            continue;
        };
        // SAFETY: mlock on a range of our own address space that is mapped
        // (from /proc/self/maps); it changes no contents.
        if unsafe { libc::mlock(a as *const libc::c_void, b - a) } != 0 {
            tracing::debug!(
                "mlock of {path} ({range}): {}",
                std::io::Error::last_os_error()
            );
        }
    }
}

/// One round of the probe-overhead benchmark.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BenchRound {
    pub probe: bool,
    /// Iterations per second of the scenario's first group, in its window.
    pub per_sec: f64,
}

/// One round of the probe benchmark's cost part: the probe attached with
/// the kernel's BPF run-time statistics on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CostRound {
    /// The whole pass, warm-up and teardown included: the time the
    /// programs' runs below fell in.
    pub wall_ns: u64,
    /// Iterations per second of the first group in its window (slowed by
    /// the statistics themselves: not comparable with `BenchRound`).
    pub per_sec: f64,
    /// Each program's runs and run time during the pass.
    pub progs: Vec<crate::probe::ProgRuns>,
}

/// What `scx-harness guest bench-probe` hands back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BenchOutput {
    pub rounds: Vec<BenchRound>,
    /// The cost rounds that ended before `cost_error`, if any.
    pub costs: Vec<CostRound>,
    pub cost_error: Option<String>,
}

/// Runs the scenario `rounds` times with the probe attached and tracking it
/// and `rounds` times with its programs detached (none of its code runs),
/// interleaved (with, without, with, ...) so drift hits both alike; then
/// `cost_rounds` more with it attached and the kernel timing each run of
/// its programs, which says where its cost goes (`scx-harness bench
/// probe`).
pub fn bench_probe(
    spec: &AgentSpec,
    rounds: usize,
    cost_rounds: usize,
    dir: &Path,
) -> Result<BenchOutput> {
    // The probe is loaded once (verifying it takes a second under TCG, and
    // freeing its maps can run on into the next round); rounds with it
    // attach its programs, rounds without detach them, so that none of its
    // code runs. Short rounds, many of them.
    let cgroups = Cgroups::create(&spec.scenario, None)?;
    let mut probe = Probe::load()?;
    probe.detach();
    let mut out = Vec::new();
    for i in 0..rounds * 2 {
        let with = i % 2 == 0;
        if with {
            probe.reattach()?;
        } else {
            probe.detach();
        }
        let pass = run_pass(
            spec,
            PassKind::Bench,
            with.then_some(&mut probe),
            &cgroups,
            None,
            None,
            dir,
        )?;
        probe.reset();
        out.push(BenchRound {
            probe: with,
            per_sec: bench_rate(&pass, &format!("round {i}"))?,
        });
    }
    // Last, so that the statistics' own clock reads slow none of the
    // rounds above; a failure here costs the rounds above nothing.
    let mut costs = Vec::new();
    let cost_error = if cost_rounds > 0 {
        cost_rounds_into(spec, cost_rounds, &mut probe, &cgroups, dir, &mut costs)
            .err()
            .map(|e| format!("{e:#}"))
    } else {
        None
    };
    Ok(BenchOutput {
        rounds: out,
        costs,
        cost_error,
    })
}

/// A bench round's result: its first group's iterations per second in the
/// window, or the pass's errors as the round's (`what`) failure.
fn bench_rate(pass: &Pass, what: &str) -> Result<f64> {
    if !pass.errors.is_empty() {
        anyhow::bail!("{what}: {}", pass.errors.join("; "));
    }
    let g = pass.groups.first().context("the scenario has no group")?;
    Ok(g.iterations_window() as f64 / pass.window().as_secs_f64())
}

/// The cost part of `bench_probe`: `n` rounds with the probe attached and
/// the kernel's BPF run-time statistics on, each appended to `costs` as it
/// ends.
fn cost_rounds_into(
    spec: &AgentSpec,
    n: usize,
    probe: &mut Probe,
    cgroups: &Cgroups,
    dir: &Path,
    costs: &mut Vec<CostRound>,
) -> Result<()> {
    let _stats = crate::probe::RunTimeStats::enable()?;
    probe.reattach()?;
    for i in 0..n {
        let before = probe.prog_runs()?;
        let start = now_ns();
        let pass = run_pass(
            spec,
            PassKind::Bench,
            Some(&mut *probe),
            cgroups,
            None,
            None,
            dir,
        )?;
        let wall_ns = now_ns() - start;
        let after = probe.prog_runs()?;
        probe.reset();
        costs.push(CostRound {
            wall_ns,
            per_sec: bench_rate(&pass, &format!("cost round {}", i + 1))?,
            progs: after
                .into_iter()
                .zip(before)
                .map(|(a, b)| crate::probe::ProgRuns {
                    name: a.name,
                    runs: a.runs - b.runs,
                    run_ns: a.run_ns - b.run_ns,
                })
                .collect(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ext_enabled_is_read_from_a_tasks_sched_file() {
        // As 6.12's kernel/sched/debug.c prints it (__PS: the name padded
        // to 45 columns, the value right-aligned in 21).
        let text = "spin (123, #threads: 3)\n-------------------------------------------------------------------\nse.exec_start                                :         12345.678901\next.enabled                                  :                    1\n";
        assert_eq!(ext_enabled(text), Some(true));
        assert_eq!(
            ext_enabled(&text.replace("                    1", "                    0")),
            Some(false)
        );
        assert_eq!(ext_enabled("se.exec_start : 1\n"), None);
        // A task that is gone is not counted; none readable says nothing.
        assert_eq!(OnSchedExt::read(&[u32::MAX]), None);
    }
}
