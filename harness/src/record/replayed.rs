//! A pass recorded the way `record` records a machine: the scenario's
//! group tasks, during the measurement window, with the same BPF
//! recorder; their bursts and sleeps pooled per group and kept as the same
//! 21 quantiles a `replay` group's `run:` and `sleep:` are (`replay-check`
//! scores a replay's against its file's: `fidelity`), and when asked the
//! groups summarised as `record` would (`record --scenario`: a bundled
//! scenario captured in the guest, the ground truth for replays).
//!
//! Knows the recorder (`capture`) and the quantiles of the model; not the
//! agent's processes (it is handed the tasks) or the scenario format.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Result;
use serde::{Deserialize, Serialize};

use super::capture::{self, Scope};
use super::{Left, Log, Summary, ThreadInfo, QUANTILES};
use crate::probe::now_ns;

/// The tasks to record and the group each belongs to (an index of the
/// scenario's groups).
#[derive(Debug, Clone, Default)]
pub struct Tasks {
    /// The processes to record (the recorder follows what they fork, but
    /// only the tasks named below are kept).
    pub tgids: Vec<u32>,
    /// A group's threads, by thread id.
    pub by_tid: HashMap<u32, usize>,
    /// A group's task processes (`tasks: processes`), every thread of
    /// each, by process id.
    pub by_tgid: HashMap<u32, usize>,
    /// Each group's process, by process id: the processes below it (a
    /// `command` group's program and what that starts, a `jobs` group's
    /// children) are the group's tasks too, as they are the probe's.
    pub group_processes: HashMap<u32, usize>,
}

impl Tasks {
    /// Every task thread now, as (tid, tgid), the processes below the
    /// group processes found in `below` (their group by pid).
    fn threads(&self, below: &mut HashMap<u32, usize>) -> Vec<(u32, u32)> {
        self.find_below(below);
        let mut out: Vec<(u32, u32)> = Vec::new();
        for &tgid in self.tgids.iter().chain(below.keys()) {
            for tid in crate::probe::tids_of(tgid) {
                if self.group_of(tid, tgid, below).is_some() {
                    out.push((tid, tgid));
                }
            }
        }
        out
    }

    /// Adds the processes below the group processes now to `below`
    /// (their group by pid).
    fn find_below(&self, below: &mut HashMap<u32, usize>) {
        for (&pid, &group) in &self.group_processes {
            for d in crate::process::descendants(pid as i32) {
                below.entry(d as u32).or_insert(group);
            }
        }
    }

    /// The group of task `tid` of process `tgid`, `below` the processes
    /// below the group processes (their group by pid).
    fn group_of(&self, tid: u32, tgid: u32, below: &HashMap<u32, usize>) -> Option<usize> {
        self.by_tid
            .get(&tid)
            .or_else(|| self.by_tgid.get(&tgid))
            .or_else(|| below.get(&tgid))
            .copied()
    }

    /// The group a process forked by thread `tid` of process `tgid`
    /// belongs to: the forking task's, or its process's when that is a
    /// group process or below one.
    fn group_of_parent(&self, tid: u32, tgid: u32, below: &HashMap<u32, usize>) -> Option<usize> {
        self.group_of(tid, tgid, below)
            .or_else(|| self.group_processes.get(&tgid).copied())
    }
}

/// One group's bursts and sleeps as the replay made them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ReplayedGroup {
    pub group: String,
    /// Bursts' CPU times (a wakeup to the next block, preemptions inside
    /// included), ns, as [`QUANTILES`] quantiles least first; empty when
    /// the group made fewer than two.
    pub run_ns: Vec<u64>,
    /// Sleeps (a block to the wakeup), ns, the same way.
    pub sleep_ns: Vec<u64>,
    /// How many of each ended in the window.
    pub bursts: u64,
    pub sleeps: u64,
}

/// The whole pass's recording.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Replayed {
    pub groups: Vec<ReplayedGroup>,
    /// Events the recorder's ring buffer had no room for, from its attach
    /// on (the warm-up's too): the quantiles may miss some when this is
    /// not 0.
    pub lost: u64,
    /// Threads or processes the recorder's full maps could not take.
    #[serde(default)]
    pub untracked: u64,
    /// Why nothing was recorded (the recorder did not load or attach).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// How long it counted, s (0: it never did; the pass stopped before
    /// the window, or the recorder attached after it).
    #[serde(default)]
    pub seconds: f64,
    /// The groups summarised, when the pass was asked to capture them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub captured: Option<Captured>,
}

impl Replayed {
    pub fn group(&self, name: &str) -> Option<&ReplayedGroup> {
        self.groups.iter().find(|g| g.group == name)
    }
}

/// What a recording in a pass also makes when asked (`record
/// --scenario`): the scenario's groups summarised as `record` summarises a
/// machine's, each under its own name.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Captured {
    pub groups: Vec<Summary>,
    pub left: Left,
}

/// With `capture`, the recording ends this long before the window does,
/// so that every task is still there when its CPU time is read (a hog
/// makes no event: its CPU time is all there is of it).
pub const CAPTURE_MARGIN: Duration = Duration::from_millis(250);

/// Records `tasks` until `until` (CLOCK_MONOTONIC ns, which the caller
/// may lower while it records: the pass stopped; with `capture`,
/// [`CAPTURE_MARGIN`] sooner), keeping what the tasks did from the first
/// moment past `from_ns` the recorder looks (it looks about every
/// 100 ms, from the moment its programs are attached): their bursts and
/// sleeps pooled by group (`names`: the scenario's group names, by
/// index), and with `capture` the groups summarised ([`Captured`]).
///
/// Errors: the recorder does not load or attach (capture's words).
pub fn record(
    tasks: &Tasks,
    names: &[String],
    from_ns: u64,
    until: &AtomicU64,
    capture: bool,
) -> Result<Replayed> {
    let margin = if capture {
        CAPTURE_MARGIN.as_nanos() as u64
    } else {
        0
    };
    let end = || until.load(Ordering::Relaxed).saturating_sub(margin);
    // An upper bound: the tick ends it at `end()` (loading the programs
    // comes first and is not counted in it).
    let length = Duration::from_nanos(end().saturating_sub(now_ns())) + Duration::from_secs(60);
    let log = std::cell::RefCell::new(Log::default());
    // Processes below the group processes, by pid: those there when the
    // recording starts, and those forked while it runs (FORK events come
    // before any of the child's own: one ring buffer, in order).
    let below = std::cell::RefCell::new(HashMap::<u32, usize>::new());
    // When the recording counts from: the tasks' CPU times are read then.
    let started = std::cell::Cell::new(None::<u64>);
    let begin = || {
        let now = now_ns();
        if started.get().is_some() || now < from_ns || now >= end() {
            return;
        }
        let mut log = log.borrow_mut();
        for (tid, tgid) in tasks.threads(&mut below.borrow_mut()) {
            if let Some(info) = ThreadInfo::read(tid) {
                log.known(tid, tgid, info);
            }
        }
        started.set(Some(now));
    };
    let recorded = capture::record(
        Scope::Tgids(&tasks.tgids),
        length,
        // The processes below the group processes now: recorded from here
        // on (the ones forked after this by recorded processes are
        // followed by the recorder itself: FORK events).
        || {
            let mut below = below.borrow_mut();
            tasks.find_below(&mut below);
            let found = below.keys().copied().collect();
            drop(below);
            begin();
            found
        },
        |e| {
            if e.kind == super::EventKind::Fork {
                let mut below = below.borrow_mut();
                if let Some(g) = tasks.group_of_parent(e.a, e.tgid, &below) {
                    below.insert(e.tid, g);
                }
                return;
            }
            // A capture counts what comes until the close, where the CPU
            // times are read (the loop ends at its first tick past the
            // end: up to 100 ms later, more in a loaded guest).
            let counts = started.get().is_some_and(|s| e.at >= s) && (capture || e.at < end());
            if counts && tasks.group_of(e.tid, e.tgid, &below.borrow()).is_some() {
                log.borrow_mut().add(e, ThreadInfo::read);
            }
        },
        |_| {
            begin();
            if started.get().is_some() {
                log.borrow_mut().sample_cpu(super::read_cpu_ns);
            }
            now_ns() < end()
        },
    )?;
    let mut log = log.into_inner();
    // Read now, while the tasks are there.
    let closed = now_ns();
    log.close(super::read_cpu_ns, ThreadInfo::read);
    let last = if capture { closed } else { closed.min(end()) };
    log.span = started.get().map(|s| (s, last));
    log.online = super::online_cpus();
    let seconds = started
        .get()
        .map_or(0.0, |s| last.saturating_sub(s) as f64 / 1e9);
    let below = below.into_inner();
    let group_of = |t: &super::Thread| tasks.group_of(t.tid, t.tgid, &below);
    let groups = names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let of = || log.threads.values().filter(move |t| group_of(t) == Some(i));
            let mut runs: Vec<u64> = of().flat_map(|t| t.bursts.iter().copied()).collect();
            let mut sleeps: Vec<u64> = of().flat_map(|t| t.sleeps.iter().copied()).collect();
            ReplayedGroup {
                group: name.clone(),
                bursts: runs.len() as u64,
                sleeps: sleeps.len() as u64,
                run_ns: as_ns(&mut runs),
                sleep_ns: as_ns(&mut sleeps),
            }
        })
        .collect();
    let captured = capture.then(|| {
        let (groups, left) = super::summarise_by(
            &log,
            |t| group_of(t).map(|g| names[g].clone()),
            false,
            seconds,
        );
        Captured { groups, left }
    });
    Ok(Replayed {
        groups,
        lost: recorded.lost,
        untracked: recorded.untracked,
        error: None,
        seconds,
        captured,
    })
}

/// `v`'s [`QUANTILES`] quantiles in ns; empty for fewer than two.
fn as_ns(v: &mut [u64]) -> Vec<u64> {
    if v.len() < 2 {
        return Vec::new();
    }
    super::quantiles(v, QUANTILES)
        .into_iter()
        .map(|d| d.as_nanos() as u64)
        .collect()
}

/// The Kolmogorov-Smirnov distance (0 to 1) between two distributions
/// each given as quantiles at evenly spaced ranks, least first (the
/// recorded file's `run:` and a replay's): each is read as the CDF that
/// goes linearly between its quantiles, and the largest gap between the
/// two CDFs is at one of the quantiles (both are linear between them).
/// 1 when either is empty and the other is not; 0 when both are.
pub fn ks_distance(a: &[f64], b: &[f64]) -> f64 {
    ks_distance_within(a, b, 1.0)
}

/// [`ks_distance`] with a multiplicative slack: how much of either
/// distribution lies more than `slack` times (>= 1) beyond the other.
/// It is the largest of F_b(x) - F_a(slack x) (b shorter than a by more
/// than the slack at some rank) and F_a(x) - F_b(slack x) (longer), so
/// a replay whose every quantile is within `slack` times the recorded one
/// scores 0, and a tight distribution (its spread within the slack)
/// replayed 1.5 times longer 1, as strictly; a wide one moved as much is
/// nearer (uniform 1 to 6 against 1.5 to 9: 0.13). `slack` 1 is the
/// strict distance. (A strict distance fails a tight distribution moved
/// by a few percent: a 5 ms burst replayed 6% longer in a TCG guest was
/// 0.93 apart.)
pub fn ks_distance_within(a: &[f64], b: &[f64], slack: f64) -> f64 {
    match (a.is_empty(), b.is_empty()) {
        (true, true) => return 0.0,
        (true, false) | (false, true) => return 1.0,
        _ => {}
    }
    let scaled = |q: &[f64]| q.iter().map(|v| v / slack).collect::<Vec<_>>();
    above(b, &scaled(a)).max(above(a, &scaled(b)))
}

/// The largest amount by which the CDF through quantiles `p` exceeds the
/// one through `q` (0 if never): both are linear between their quantiles,
/// so it is at one of them, either side of a jump (equal quantiles make a
/// step).
fn above(p: &[f64], q: &[f64]) -> f64 {
    p.iter()
        .chain(q)
        .map(|&x| {
            let below = cdf(p, x, false) - cdf(q, x, false);
            let at = cdf(p, x, true) - cdf(q, x, true);
            below.max(at)
        })
        .fold(0.0, f64::max)
}

/// The piecewise-linear CDF through quantiles `q` at `x`: with `at`, the
/// value at `x` (a step counted), else just below it.
fn cdf(q: &[f64], x: f64, at: bool) -> f64 {
    let n = q.len();
    if n == 1 {
        return f64::from(u8::from(if at { x >= q[0] } else { x > q[0] }));
    }
    let last = (n - 1) as f64;
    let past = |v: f64| if at { v <= x } else { v < x };
    // The last quantile at or below x (just below: strictly below).
    let Some(i) = q.iter().rposition(|&v| past(v)) else {
        return 0.0;
    };
    if i == n - 1 {
        return 1.0;
    }
    let (lo, hi) = (q[i], q[i + 1]);
    let within = if hi > lo { (x - lo) / (hi - lo) } else { 0.0 };
    ((i as f64 + within.clamp(0.0, 1.0)) / last).clamp(0.0, 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn even(from: f64, to: f64) -> Vec<f64> {
        (0..QUANTILES)
            .map(|i| from + (to - from) * i as f64 / (QUANTILES - 1) as f64)
            .collect()
    }

    #[test]
    fn ks_distance_is_zero_for_the_same_distribution_and_grows_with_a_shift() {
        let a = even(1000.0, 2000.0);
        assert_eq!(ks_distance(&a, &a), 0.0);
        // Uniform on [1000, 2000] against [1500, 2500]: the CDFs differ by
        // 0.5 at 1500 and 2000.
        let b = even(1500.0, 2500.0);
        assert!((ks_distance(&a, &b) - 0.5).abs() < 1e-9);
        assert!((ks_distance(&b, &a) - 0.5).abs() < 1e-9);
        // Disjoint: 1.
        assert!((ks_distance(&a, &even(3000.0, 4000.0)) - 1.0).abs() < 1e-9);
        // A 10% wider spread around the same median stays small.
        let wide = even(950.0, 2050.0);
        let d = ks_distance(&a, &wide);
        assert!(d > 0.0 && d < 0.06, "{d}");
        assert_eq!(ks_distance(&[], &[]), 0.0);
        assert_eq!(ks_distance(&a, &[]), 1.0);
    }

    #[test]
    fn a_slack_forgives_a_small_shift_but_not_a_large_one() {
        let a = even(5000.0, 5200.0);
        // 6% longer: strictly far apart (tight distributions), within a
        // 25% slack.
        let b: Vec<f64> = a.iter().map(|v| v * 1.06).collect();
        assert!(ks_distance(&a, &b) > 0.9);
        assert_eq!(ks_distance_within(&a, &b, 1.25), 0.0);
        assert_eq!(ks_distance_within(&b, &a, 1.25), 0.0);
        // 1.5 times longer or shorter: as far as strictly.
        let c: Vec<f64> = a.iter().map(|v| v * 1.5).collect();
        assert!((ks_distance_within(&a, &c, 1.25) - 1.0).abs() < 1e-9);
        assert!((ks_distance_within(&c, &a, 1.25) - 1.0).abs() < 1e-9);
        // A tenth of the mass 1.5 times longer (a tail): 0.1 or so.
        let mut tail = a.clone();
        for v in tail.iter_mut().skip(19) {
            *v *= 1.5;
        }
        let d = ks_distance_within(&a, &tail, 1.25);
        assert!(d > 0.04 && d < 0.11, "{d}");
        // A wide distribution 1.5 times longer: nearer than a tight one.
        let wide = even(1000.0, 6000.0);
        let longer: Vec<f64> = wide.iter().map(|v| v * 1.5).collect();
        let d = ks_distance_within(&wide, &longer, 1.0 / 0.75);
        assert!((d - 0.133).abs() < 0.005, "{d}");
        assert_eq!(ks_distance_within(&[], &[], 1.25), 0.0);
        assert_eq!(ks_distance_within(&a, &[], 1.25), 1.0);
    }

    #[test]
    fn ks_distance_sees_a_step_made_of_equal_quantiles() {
        // All at 5 against uniform on [0, 10]: the gap is 0.5 at 5.
        let step = vec![5.0; QUANTILES];
        let d = ks_distance(&step, &even(0.0, 10.0));
        assert!((d - 0.5).abs() < 1e-9, "{d}");
        // The same point mass: 0.
        assert_eq!(ks_distance(&step, &step), 0.0);
    }

    #[test]
    fn a_task_is_its_threads_group_or_its_processs() {
        let t = Tasks {
            tgids: vec![10, 20],
            by_tid: HashMap::from([(11, 0), (12, 0)]),
            by_tgid: HashMap::from([(20, 1)]),
            group_processes: HashMap::from([(10, 0), (19, 1)]),
        };
        let below = HashMap::from([(40, 0)]);
        assert_eq!(t.group_of(11, 10, &below), Some(0));
        // The group process's own thread is none of the group's tasks.
        assert_eq!(t.group_of(10, 10, &below), None);
        assert_eq!(t.group_of(21, 20, &below), Some(1));
        assert_eq!(t.group_of(31, 30, &below), None);
        // A process below a group process: its group's.
        assert_eq!(t.group_of(41, 40, &below), Some(0));
        // A process forked by a group process's own thread is the group's.
        assert_eq!(t.group_of_parent(10, 10, &below), Some(0));
        assert_eq!(t.group_of_parent(41, 40, &below), Some(0));
        assert_eq!(t.group_of_parent(31, 30, &below), None);
    }
}
