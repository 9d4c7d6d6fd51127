//! `scx-harness record`'s model: what a machine's threads did, from the
//! recorder's events (`capture`), grouped and summarised as a scenario of
//! `replay` (and `spin`) groups that anyone can run in the VM matrix.
//!
//! A thread's life is bursts and sleeps: a burst is the CPU time from a
//! wakeup to the next time it blocks (preemptions inside it do not end
//! it: they are the scheduler's doing, not the workload's), a sleep the
//! time from blocking to the wakeup. A group's distributions are its
//! threads' bursts and sleeps pooled, kept as 21 quantiles (every 5%).
//!
//! Knows the scenario format (it writes one) and procfs and sysfs (a
//! thread's comm, nice, policy, cgroup, affinity and CPU time; the
//! online CPUs); knows nothing of BPF
//! (`capture` does) or of the command line.

pub mod capture;
pub mod fidelity;
pub mod replayed;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::Duration;

use crate::scenario::{Group, Recorded, Scenario, WokenBy, Work};

/// A sleep's waker (`Event::a`) when the wakeup was made in an interrupt
/// (a timer expiring, a device), whatever thread it interrupted
/// (record.bpf.c's REC_WAKER_INTERRUPT): nobody's doing.
pub const WAKER_INTERRUPT: u32 = u32::MAX;

/// One event of the recorder (record.bpf.c's `struct rec_event`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Event {
    pub kind: EventKind,
    pub tid: u32,
    pub tgid: u32,
    /// Burst: preemptions inside it; sleep: the waker's tid (0: the idle
    /// task; [`WAKER_INTERRUPT`]: an interrupt).
    pub a: u32,
    /// Burst: migrations inside it.
    pub b: u32,
    /// Burst: CPU time; sleep: blocked time; delay: woken to running. ns.
    pub ns: u64,
    /// CLOCK_MONOTONIC ns of the event.
    pub at: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    Burst,
    Sleep,
    Delay,
    Exit,
    /// A process recorded because a recorded one forked it: `tid` its
    /// pid, `tgid` the parent's process, `a` the thread that forked it.
    Fork,
}

/// What procfs says of a thread (read when it is first seen).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ThreadInfo {
    pub comm: String,
    /// Nice, -20 to 19.
    pub nice: i32,
    /// sched(7) policy number (0 other, 1 fifo, 2 rr, 3 batch, 5 idle).
    pub policy: u32,
    /// Real-time priority (fifo, rr), 0 otherwise.
    pub rt_priority: u32,
    /// The cgroup v2 path (`0::PATH` of /proc/TID/cgroup).
    pub cgroup: String,
    /// CPU time so far (/proc/TID/schedstat's first field), ns.
    pub cpu_ns: u64,
    /// The CPUs it may run on (/proc/TID/status's Cpus_allowed_list);
    /// empty when unknown.
    pub cpus_allowed: Vec<u32>,
}

impl ThreadInfo {
    /// Thread `tid`'s info, or None if it has gone.
    pub fn read(tid: u32) -> Option<ThreadInfo> {
        let dir = Path::new("/proc").join(tid.to_string());
        let comm = std::fs::read_to_string(dir.join("comm")).ok()?;
        let stat = std::fs::read_to_string(dir.join("stat")).ok()?;
        let mut info = ThreadInfo {
            comm: comm.trim_end().to_string(),
            ..Default::default()
        };
        // nice is field 19, rt_priority 40, policy 41 (proc(5)).
        let rest: Vec<&str> = crate::process::fields_after_comm(&stat)
            .map(Iterator::collect)
            .unwrap_or_default();
        let field = |n: usize| rest.get(n - 3).and_then(|t| t.parse::<i64>().ok());
        info.nice = field(19).unwrap_or(0) as i32;
        info.rt_priority = field(40).unwrap_or(0) as u32;
        info.policy = field(41).unwrap_or(0) as u32;
        info.cgroup = std::fs::read_to_string(dir.join("cgroup"))
            .ok()
            .and_then(|t| {
                t.lines()
                    .find_map(|l| l.strip_prefix("0::").map(str::to_string))
            })
            .unwrap_or_default();
        info.cpu_ns = read_cpu_ns(tid).unwrap_or(0);
        info.cpus_allowed = std::fs::read_to_string(dir.join("status"))
            .ok()
            .and_then(|t| {
                t.lines()
                    .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
                    .and_then(crate::units::parse_cpu_list)
            })
            .unwrap_or_default();
        Some(info)
    }
}

/// Thread `tid`'s CPU time so far in ns (/proc/TID/schedstat), if it is
/// there.
pub fn read_cpu_ns(tid: u32) -> Option<u64> {
    crate::process::schedstat(format!("/proc/{tid}/schedstat")).map(|(cpu, _)| cpu)
}

/// One thread's record.
#[derive(Debug, Clone, Default)]
pub struct Thread {
    pub tid: u32,
    pub tgid: u32,
    pub info: ThreadInfo,
    /// Burst CPU times, ns.
    pub bursts: Vec<u64>,
    /// Sleep lengths, ns.
    pub sleeps: Vec<u64>,
    /// Wakeup-to-run delays, ns.
    pub delays: Vec<u64>,
    /// Wakeups by waker tid.
    pub wakers: HashMap<u32, u64>,
    pub preemptions: u64,
    pub migrations: u64,
    /// CPU time in the recording, ns (schedstat at the end less at the
    /// start; the bursts' sum for a thread gone before the end).
    pub cpu_ns: u64,
    pub exited: bool,
    /// Schedstat's CPU time at the last [`Log::sample_cpu`], ns.
    pub last_cpu_ns: Option<u64>,
    /// CLOCK_MONOTONIC ns of its first event (0: known from the start).
    pub first_ns: u64,
    /// CLOCK_MONOTONIC ns of its exit, if it exited while recorded.
    pub exit_ns: Option<u64>,
}

/// Every recorded thread, by tid.
#[derive(Debug, Default)]
pub struct Log {
    pub threads: BTreeMap<u32, Thread>,
    /// The recording's start and end, CLOCK_MONOTONIC ns, when the
    /// caller says (a group whose threads come and go is replayed with as
    /// many as were alive on average: [`summarise_by`]).
    pub span: Option<(u64, u64)>,
    /// The machine's online CPUs, when the caller says ([`online_cpus`]):
    /// a group pinned alike to some of them keeps its CPUs.
    pub online: Vec<u32>,
}

/// This machine's online CPUs (/sys/devices/system/cpu/online); empty
/// when it cannot be read.
pub fn online_cpus() -> Vec<u32> {
    std::fs::read_to_string("/sys/devices/system/cpu/online")
        .ok()
        .and_then(|t| crate::units::parse_cpu_list(&t))
        .unwrap_or_default()
}

impl Log {
    /// A thread known before the recording starts (so a thread that never
    /// blocks, a CPU hog, is recorded: it makes no events).
    pub fn known(&mut self, tid: u32, tgid: u32, info: ThreadInfo) {
        self.threads.entry(tid).or_insert(Thread {
            tid,
            tgid,
            info,
            ..Default::default()
        });
    }

    /// Adds an event; `info` is asked for a thread not seen before.
    pub fn add(&mut self, e: Event, info: impl FnOnce(u32) -> Option<ThreadInfo>) {
        if e.kind == EventKind::Fork {
            // Whose a process is: the caller's business (`replayed`); the
            // new thread is logged by its own events.
            return;
        }
        let t = self.threads.entry(e.tid).or_insert_with(|| {
            let info = info(e.tid).unwrap_or_default();
            Thread {
                tid: e.tid,
                tgid: e.tgid,
                // A thread first seen now started its CPU count now: what
                // schedstat says is before the recording.
                info,
                // Seen first at a burst's end: there since its start.
                first_ns: if e.kind == EventKind::Burst {
                    e.at.saturating_sub(e.ns)
                } else {
                    e.at
                },
                ..Default::default()
            }
        });
        match e.kind {
            EventKind::Burst => {
                t.bursts.push(e.ns);
                t.preemptions += u64::from(e.a);
                t.migrations += u64::from(e.b);
            }
            EventKind::Sleep => {
                t.sleeps.push(e.ns);
                *t.wakers.entry(e.a).or_default() += 1;
            }
            EventKind::Delay => t.delays.push(e.ns),
            EventKind::Exit => {
                t.exited = true;
                t.exit_ns = Some(e.at);
            }
            EventKind::Fork => {}
        }
    }

    /// Reads the CPU time (`now(tid)`, schedstat) of each thread still
    /// there (a CPU hog makes no event: its CPU time is all there is of
    /// it), so that one gone by [`Log::close`] keeps what it ran until the
    /// last sample.
    pub fn sample_cpu(&mut self, now: impl Fn(u32) -> Option<u64>) {
        for t in self.threads.values_mut() {
            if !t.exited {
                if let Some(v) = now(t.tid) {
                    t.last_cpu_ns = Some(v);
                }
            }
        }
    }

    /// Closes the recording: each thread's CPU time in it, from schedstat
    /// now (`now(tid)`; or at the last [`Log::sample_cpu`] when it cannot
    /// be read) less schedstat when first seen, or its bursts' sum if it
    /// has gone; the comm, nice, policy and cgroup of a thread
    /// still there as `info(tid)` says now (an exec or prctl renames a
    /// thread: its last name is what it did most of its work under).
    pub fn close(
        &mut self,
        now: impl Fn(u32) -> Option<u64>,
        info: impl Fn(u32) -> Option<ThreadInfo>,
    ) {
        for t in self.threads.values_mut() {
            if !t.exited {
                if let Some(i) = info(t.tid) {
                    t.info = ThreadInfo {
                        cpu_ns: t.info.cpu_ns,
                        ..i
                    };
                }
            }
            let bursts: u64 = t.bursts.iter().sum();
            let end = now(t.tid).filter(|_| !t.exited).or(t.last_cpu_ns);
            t.cpu_ns = match end {
                Some(end) if t.info.cpu_ns > 0 => end.saturating_sub(t.info.cpu_ns),
                _ => bursts,
            }
            .max(bursts);
        }
    }
}

/// For a group some of whose `threads` exited while recorded (processes
/// that come and go: a build's compilers), how many were alive on
/// average over the recording `span` (start and end, ns), rounded, at
/// least 1 and at most all of them: a replay group runs its threads for
/// the whole run, so replaying each of a build's hundred short-lived
/// compilers as a thread of its own would run a hundred at once (a
/// `make -j2` recorded at 0.90 CPUs, 97 threads, replayed at 1.96 CPUs
/// with wakeups 48 ms late). None when none exited, or no span is known.
fn live_threads(threads: &[&&Thread], span: Option<(u64, u64)>) -> Option<usize> {
    let (start, end) = span.filter(|(s, e)| e > s)?;
    if threads.iter().all(|t| t.exit_ns.is_none()) {
        return None;
    }
    let alive: u64 = threads
        .iter()
        .map(|t| {
            let from = t.first_ns.max(start);
            let to = t.exit_ns.unwrap_or(end).min(end);
            to.saturating_sub(from)
        })
        .sum();
    let live = (alive as f64 / (end - start) as f64).round() as usize;
    Some(live.clamp(1, threads.len()))
}

/// How many threads do a group's work, when some of its `threads` do
/// little of it: the effective number of threads by share of the bursts
/// and by share of the CPU time (the inverse of the sum of the squared
/// shares: n threads sharing evenly give n), the larger of the two,
/// rounded, at least 1. Each replayed thread does an even share, so a
/// shell that waited on a benchmark for 10 s at a time beside the
/// server and benchmark threads doing the work counts as nothing (2,
/// not 3: replayed as 3, each thread of a pool with one wakeup in flight
/// slept twice the recorded time), and a thread of ten long bursts
/// beside one of a thousand short ones still counts (by CPU time).
fn working_threads(threads: &[&&Thread]) -> usize {
    fn effective(shares: impl Iterator<Item = f64> + Clone) -> f64 {
        let total: f64 = shares.clone().sum();
        let squares: f64 = shares.map(|x| x * x).sum();
        if squares > 0.0 {
            total * total / squares
        } else {
            0.0
        }
    }
    let bursts = effective(threads.iter().map(|t| t.bursts.len() as f64));
    let cpu = effective(threads.iter().map(|t| t.cpu_ns as f64));
    (bursts.max(cpu).round() as usize).max(1)
}

/// For a group of threads that came and went without blocking (at least
/// 2 bursts, each a thread's whole life or most of it, and sleeps for
/// under a tenth of them, a stray block's: a shell's `/bin/true`s, a
/// build's short tools), the sleep
/// that makes `n` replayed threads run its `bursts` bursts over the
/// recording's `seconds` (each thread's share of the time less the mean
/// burst, at least 0): the group's idle time between them, which no
/// sleep recorded. None for a group with sleeps, or whose threads did not
/// exit.
fn unblocked_idle(threads: &[&Thread], bursts: usize, n: usize, seconds: f64) -> Option<Duration> {
    let sleeps: usize = threads.iter().map(|t| t.sleeps.len()).sum();
    if bursts < 2 || sleeps * 10 >= bursts || threads.iter().all(|t| !t.exited) {
        return None;
    }
    let burst_ns: u64 = threads.iter().flat_map(|t| t.bursts.iter()).sum();
    let cycle = n as f64 * seconds * 1e9 / bursts as f64;
    let idle = cycle - burst_ns as f64 / bursts as f64;
    Some(Duration::from_nanos(idle.max(0.0) as u64))
}

/// How threads are put into groups.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum GroupBy {
    /// Threads whose comm is the same once digits are set aside
    /// (`worker-3` and `worker-12` together).
    Comm,
    /// Threads of one process (tgid) together.
    Process,
    /// Threads of one cgroup together.
    Cgroup,
}

/// A group made from the recording.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Summary {
    pub group: Group,
    /// What was measured of it (kept in the scenario: `recorded`).
    pub figures: Recorded,
}

/// A group's threads count as CPU hogs (replayed as `spin`) when they
/// were busy at least this share of the recording each (a CPU-bound
/// thread sharing a contended CPU gets less than all of it) and blocked
/// fewer than `HOG_MAX_BURSTS_PER_S` times a second each.
const HOG_BUSY: f64 = 0.25;
const HOG_MAX_BURSTS_PER_S: f64 = 1.0;
/// A thread that never completed a burst counts as active (is replayed)
/// when it was busy at least this share of the recording.
const ACTIVE_BUSY: f64 = 0.01;
/// Quantiles kept per distribution: every 5%.
pub const QUANTILES: usize = 21;

/// The `q`-quantile (0 to 1) of `sorted` by nearest rank; 0 when empty.
fn nearest_rank(sorted: &[u64], q: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[(q * (sorted.len() - 1) as f64).round() as usize]
}

/// `v`'s mean (ns values), to the microsecond as a scenario writes it
/// (0 for none).
pub fn mean_of(v: &[u64]) -> Duration {
    let sum: u128 = v.iter().map(|x| u128::from(*x)).sum();
    let ns = sum / (v.len().max(1) as u128);
    Duration::from_micros((ns / 1000) as u64)
}

/// `v`'s quantiles at `n` evenly spaced ranks (nearest rank), least first.
pub fn quantiles(v: &mut [u64], n: usize) -> Vec<Duration> {
    v.sort_unstable();
    if v.is_empty() {
        return Vec::new();
    }
    (0..n)
        .map(|i| {
            let q = nearest_rank(v, i as f64 / (n - 1) as f64);
            // Whole microseconds: what a scenario's durations carry.
            Duration::from_micros(q / 1000)
        })
        .collect()
}

/// The key threads are grouped under, and a name for it.
fn key_of(t: &Thread, by: GroupBy, comms: &HashMap<u32, String>) -> String {
    match by {
        GroupBy::Comm => {
            // Each run of digits becomes one `N`.
            let mut k = String::new();
            let mut in_digits = false;
            for c in t.info.comm.chars() {
                if c.is_ascii_digit() {
                    if !in_digits {
                        k.push('N');
                    }
                    in_digits = true;
                } else {
                    k.push(c);
                    in_digits = false;
                }
            }
            k
        }
        GroupBy::Process => {
            comms
                .get(&t.tgid)
                .cloned()
                .unwrap_or_else(|| t.info.comm.clone())
                + &format!("-{}", t.tgid)
        }
        GroupBy::Cgroup => t.info.cgroup.clone(),
    }
}

/// A scenario group name from `key`: letters, digits, '-' and '_'.
fn name_of(key: &str, taken: &mut Vec<String>) -> String {
    let mut n: String = key
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    n = n.trim_matches('-').to_string();
    if n.is_empty() {
        n = if key == "/" { "root" } else { "group" }.into();
    }
    // A scenario name is at most 64 characters: the end of a long cgroup
    // path is what tells it apart, with room for a `-N` suffix.
    if n.len() > 56 {
        n = n[n.len() - 56..].trim_start_matches('-').to_string();
    }
    let base = n.clone();
    let mut i = 2;
    while taken.contains(&n) {
        n = format!("{base}-{i}");
        i += 1;
    }
    taken.push(n.clone());
    n
}

/// What a recording left out of the scenario, for the file's header.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Left {
    /// Groups with too little to replay (no burst and sleep pair, and not
    /// a hog): their names and thread counts.
    pub quiet: Vec<(String, usize)>,
    /// Groups of threads that came and went without blocking (a shell's
    /// `/bin/true`s), replayed with their idle time as the sleeps: their
    /// names, the threads seen, and that sleep.
    #[serde(default)]
    pub unblocked: Vec<(String, usize, Duration)>,
    /// Groups past the scenario's limit, merged into the last one kept.
    pub merged: usize,
    /// Threads past the scenario's limit (all groups together), not
    /// replayed.
    pub capped: usize,
}

/// Groups the recorded threads `keep` selects and summarises each.
/// `seconds` is the recording's length.
pub fn summarise(
    log: &Log,
    keep: impl Fn(&Thread) -> bool,
    by: GroupBy,
    anonymize: bool,
    seconds: f64,
) -> (Vec<Summary>, Left) {
    let comms: HashMap<u32, String> = log
        .threads
        .values()
        .filter(|t| t.tid == t.tgid)
        .map(|t| (t.tid, t.info.comm.clone()))
        .collect();
    summarise_by(
        log,
        |t| keep(t).then(|| key_of(t, by, &comms)),
        anonymize,
        seconds,
    )
}

/// Summarises the recorded threads grouped by `key` (None: left out); a
/// key that is already a scenario group name (letters, digits, '-', '_')
/// is the group's name.
pub fn summarise_by(
    log: &Log,
    key: impl Fn(&Thread) -> Option<String>,
    anonymize: bool,
    seconds: f64,
) -> (Vec<Summary>, Left) {
    let mut by_key: BTreeMap<String, Vec<&Thread>> = BTreeMap::new();
    let mut group_of: HashMap<u32, String> = HashMap::new();
    for t in log.threads.values() {
        let Some(k) = key(t) else { continue };
        group_of.insert(t.tid, k.clone());
        by_key.entry(k).or_default().push(t);
    }
    // Largest CPU users first: what the limit cuts is the least of it.
    let mut keys: Vec<(String, Vec<&Thread>)> = by_key.into_iter().collect();
    keys.sort_by_key(|(k, ts)| {
        (
            std::cmp::Reverse(ts.iter().map(|t| t.cpu_ns).sum::<u64>()),
            k.clone(),
        )
    });
    let mut left = Left::default();
    let limit = crate::scenario::MAX_GROUPS;
    // A key no comm, process or cgroup has (a NUL).
    const REST: &str = "\0rest";
    if keys.len() > limit {
        let drained: Vec<(String, Vec<&Thread>)> = keys.drain(limit - 1..).collect();
        left.merged = drained.len();
        let rest: Vec<&Thread> = drained.into_iter().flat_map(|(_, ts)| ts).collect();
        for t in &rest {
            group_of.insert(t.tid, REST.into());
        }
        keys.push((REST.into(), rest));
    }
    let mut taken = Vec::new();
    let mut names: HashMap<String, String> = HashMap::new();
    for (i, (k, _)) in keys.iter().enumerate() {
        let n = if anonymize {
            format!("g{}", i + 1)
        } else if k == REST {
            name_of("rest", &mut taken)
        } else if crate::scenario::validate::plain_name(k) && !taken.contains(k) {
            // A scenario's own group (record --scenario) keeps its name.
            taken.push(k.clone());
            k.clone()
        } else {
            name_of(k, &mut taken)
        };
        names.insert(k.clone(), n);
    }
    let mut out = Vec::new();
    let mut room = crate::scenario::MAX_THREADS as usize;
    for (k, ts) in &keys {
        let name = names[k].clone();
        let mut bursts: Vec<u64> = ts.iter().flat_map(|t| t.bursts.iter().copied()).collect();
        let mut sleeps: Vec<u64> = ts.iter().flat_map(|t| t.sleeps.iter().copied()).collect();
        let mut delays: Vec<u64> = ts.iter().flat_map(|t| t.delays.iter().copied()).collect();
        let cpu: u64 = ts.iter().map(|t| t.cpu_ns).sum();
        let per_s = |n: u64| n as f64 / seconds.max(1e-9);
        let busy = cpu as f64 / 1e9 / seconds.max(1e-9);
        // The threads that did something: a pool's idle threads replayed
        // with the busy ones' cycle would multiply the load.
        let active: Vec<&&Thread> = ts
            .iter()
            .filter(|t| !t.bursts.is_empty() || t.cpu_ns as f64 / 1e9 >= ACTIVE_BUSY * seconds)
            .collect();
        // As many as do the work, alive on average, but never fewer than
        // its CPU use needs
        // (a thread replays at most one CPU; rounded, not up: 1.1 CPUs
        // are better replayed by one thread than by two at twice the
        // rate).
        let needs = busy.round() as usize;
        let n = live_threads(&active, log.span)
            .unwrap_or(active.len())
            .min(working_threads(&active))
            .max(needs)
            .min(active.len())
            .max(1);
        let hog = busy / n as f64 >= HOG_BUSY
            && per_s(bursts.len() as u64) / (n as f64) < HOG_MAX_BURSTS_PER_S;
        let work = if hog {
            Work::Spin
        } else if let Some((sleep, sleep_mean)) = match unblocked_idle(ts, bursts.len(), n, seconds)
        {
            Some(idle) => {
                left.unblocked.push((name.clone(), ts.len(), idle));
                Some((vec![idle, idle], None))
            }
            None => (bursts.len() >= 2 && sleeps.len() >= 2)
                .then(|| (quantiles(&mut sleeps, QUANTILES), Some(mean_of(&sleeps)))),
        } {
            Work::Replay {
                run: quantiles(&mut bursts, QUANTILES),
                sleep,
                run_mean: Some(mean_of(&bursts)),
                sleep_mean,
                woken_by: Vec::new(),
            }
        } else {
            left.quiet.push((name, ts.len()));
            continue;
        };
        // The scenario's limit is on all groups' threads together.
        let threads = n.min(room);
        if threads == 0 {
            left.capped += n;
            continue;
        }
        left.capped += n - threads;
        room -= threads;
        let mut wakers: HashMap<String, u64> = HashMap::new();
        for t in ts {
            for (w, n) in &t.wakers {
                let from = match (w, group_of.get(w)) {
                    (0, _) => "idle".to_string(),
                    (&WAKER_INTERRUPT, _) => "interrupt".to_string(),
                    (_, Some(g)) => names.get(g).cloned().unwrap_or_else(|| "outside".into()),
                    (_, None) => "outside".to_string(),
                };
                *wakers.entry(from).or_default() += n;
            }
        }
        let total: u64 = wakers.values().sum();
        let mut woken_by: Vec<WokenBy> = wakers
            .into_iter()
            .map(|(by, n)| WokenBy {
                by,
                share: n as f64 / total.max(1) as f64,
            })
            .collect();
        woken_by.sort_by(|a, b| b.share.total_cmp(&a.share).then(a.by.cmp(&b.by)));
        delays.sort_unstable();
        let pick = |q: f64| Duration::from_nanos(nearest_rank(&delays, q));
        // Kept as 4 decimals of a CPU and tenths of an event a second:
        // finer is noise.
        let round = |x: f64, places: i32| (x * 10f64.powi(places)).round() / 10f64.powi(places);
        for w in &mut woken_by {
            w.share = round(w.share, 3);
        }
        let figures = Recorded {
            group: name.clone(),
            threads: active.len().max(1) as u32,
            cpus_busy: round(busy, 4),
            bursts_per_s: round(per_s(bursts.len() as u64), 1),
            preemptions_per_s: round(per_s(ts.iter().map(|t| t.preemptions).sum()), 1),
            migrations_per_s: round(per_s(ts.iter().map(|t| t.migrations).sum()), 1),
            delay_p50: pick(0.5),
            delay_p90: pick(0.9),
            woken_by,
        };
        let (nice, policy, priority) = common_policy(ts);
        let mut group = Group::new(&name, threads as u32, work);
        group.nice = nice;
        group.policy = policy;
        group.priority = priority;
        // What the scenario format takes: 1 to 15 bytes, no '/'
        // (kworker/0:1 becomes kworker-0:1).
        let comm: String = active
            .first()
            .map(|t| t.info.comm.replace('/', "-").chars().take(15).collect())
            .unwrap_or_default();
        group.comm = (!anonymize && !comm.is_empty() && comm.len() <= 15).then_some(comm);
        group.cpus = common_affinity(&active, &log.online);
        out.push(Summary { group, figures });
    }
    let unblocked: Vec<&str> = left.unblocked.iter().map(|(g, ..)| g.as_str()).collect();
    couple(&mut out, &unblocked);
    (out, left)
}

/// A coupling smaller than this share of a group's wakeups is left to
/// its timed sleeps: 1 in 20 is within a recording's noise.
pub const MIN_COUPLING: f64 = 0.05;

/// Each replayed group's wakeups by replayed groups (its own included)
/// become its `woken_by`, so the replay wakes it from those groups' tasks;
/// wakeups by a hog, the idle CPU or threads left out stay timed sleeps.
/// A group of `unblocked` (replayed with its idle time as the sleeps)
/// is woken by nobody: its few sleeps' wakers are not its behaviour.
fn couple(out: &mut [Summary], unblocked: &[&str]) {
    let replayed: Vec<String> = out
        .iter()
        .filter(|s| matches!(s.group.work, Work::Replay { .. }))
        .map(|s| s.group.name.clone())
        .collect();
    for s in out.iter_mut() {
        let couplings: Vec<crate::scenario::Coupling> = s
            .figures
            .woken_by
            .iter()
            // A thread woken by itself is no coupling (one thread cannot
            // wake itself): a group of one keeps those sleeps timed.
            .filter(|w| w.share >= MIN_COUPLING && replayed.contains(&w.by))
            .filter(|w| w.by != s.group.name || s.group.threads > 1)
            .map(|w| crate::scenario::Coupling {
                group: w.by.clone(),
                share: w.share,
            })
            .collect();
        if let Work::Replay { woken_by, .. } = &mut s.group.work {
            if !unblocked.contains(&s.group.name.as_str()) {
                *woken_by = couplings;
            }
        }
    }
}

/// The online CPUs (`online`, the machine's) every one of `ts` was
/// allowed to run on, when they were all allowed the same ones and
/// those leave out an online CPU: the group's `cpus`. None otherwise: a
/// group's threads of several affinities (the replay pins a group's
/// tasks alike), one unknown, or the online CPUs unknown.
fn common_affinity(ts: &[&&Thread], online: &[u32]) -> Option<Vec<u32>> {
    let first = &ts.first()?.info.cpus_allowed;
    if ts.iter().any(|t| t.info.cpus_allowed != *first) {
        return None;
    }
    let allowed: Vec<u32> = online
        .iter()
        .copied()
        .filter(|c| first.contains(c))
        .collect();
    (!allowed.is_empty() && allowed.len() < online.len()).then_some(allowed)
}

/// The most common nice and policy of `ts` (a real-time priority capped
/// at 97: 98 and 99 are the harness's own).
fn common_policy(ts: &[&Thread]) -> (i32, crate::scenario::Policy, Option<u32>) {
    use crate::scenario::Policy;
    let mut count: HashMap<(i32, u32, u32), usize> = HashMap::new();
    for t in ts {
        *count
            .entry((t.info.nice, t.info.policy, t.info.rt_priority))
            .or_default() += 1;
    }
    let ((nice, policy, prio), _) = count
        .into_iter()
        .max_by_key(|(k, n)| (*n, std::cmp::Reverse(*k)))
        .unwrap_or(((0, 0, 0), 0));
    match policy {
        1 => (0, Policy::Fifo, Some(prio.clamp(1, 97))),
        2 => (0, Policy::Rr, Some(prio.clamp(1, 97))),
        3 => (nice, Policy::Batch, None),
        5 => (nice, Policy::Idle, None),
        _ => (nice, Policy::Other, None),
    }
}

/// What a recording was, beside its groups.
pub struct Recording<'a> {
    /// What was recorded, where ("process(es) 12 on 6.18.4 (2 CPUs)").
    pub what: &'a str,
    /// The scenario's duration: the recording's length.
    pub length: Duration,
    /// The replay's vCPUs.
    pub cpus: u32,
    /// Events the ring buffer had no room for.
    pub lost: u64,
    /// What was left out of the groups.
    pub left: &'a Left,
    /// Anything else the file must say (a process that exited).
    pub warnings: &'a [String],
}

/// The scenario for `groups`, with the recorded figures and what was left
/// out as a comment header.
pub fn scenario_text(name: &str, groups: &[Summary], rec: &Recording) -> anyhow::Result<String> {
    let Recording {
        what,
        length,
        cpus,
        lost,
        left,
        warnings,
    } = *rec;
    let scenario = Scenario {
        name: name.to_string(),
        description: format!(
            "recorded by scx-harness record: {what}, {} s, {} group(s); each group's bursts and sleeps replayed from the recorded distributions",
            length.as_secs(),
            groups.len()
        ),
        vm: crate::scenario::VmShape {
            cpus,
            ..Default::default()
        },
        duration: length,
        warmup: Duration::from_secs(1).min(length / 4),
        seed: 0,
        groups: groups.iter().map(|s| s.group.clone()).collect(),
        swaps: Vec::new(),
        timeline: Vec::new(),
        knobs: Default::default(),
        cgroups: Vec::new(),
        checks: Vec::new(),
        recorded: groups.iter().map(|s| s.figures.clone()).collect(),
    };
    let body = serde_yaml::to_string(&scenario)?;
    let mut head = String::from(
        "# Recorded by `scx-harness record`; `recorded` below is what each group\n# did there, the reference `scx-harness replay-check` scores a replay\n# against.\n",
    );
    let mut notes: Vec<String> = warnings.to_vec();
    if lost > 0 {
        notes.push(format!(
            "{lost} event(s) lost (the ring buffer was full): the distributions miss them"
        ));
    }
    for (g, n) in &left.quiet {
        notes.push(format!(
            "{g} ({n} thread(s)) left out: it neither blocked twice nor kept a CPU busy"
        ));
    }
    for (g, n, idle) in &left.unblocked {
        notes.push(format!(
            "{g} ({n} thread(s)) came and went without blocking: its sleeps ({}) are its idle time between them, not recorded sleeps",
            crate::units::format_duration(*idle)
        ));
    }
    if left.merged > 0 {
        notes.push(format!(
            "{} group(s) past the limit of {} merged into `rest`",
            left.merged,
            crate::scenario::MAX_GROUPS
        ));
    }
    if left.capped > 0 {
        notes.push(format!(
            "{} thread(s) past a group's limit of {} not replayed",
            left.capped,
            crate::scenario::MAX_THREADS
        ));
    }
    for n in notes {
        head.push_str(&format!("# NOTE: {n}\n"));
    }
    Ok(format!("{head}{body}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn thread(tid: u32, tgid: u32, comm: &str) -> ThreadInfo {
        let _ = (tid, tgid);
        ThreadInfo {
            comm: comm.into(),
            ..Default::default()
        }
    }

    fn ev(kind: EventKind, tid: u32, ns: u64, a: u32) -> Event {
        Event {
            kind,
            tid,
            tgid: 100,
            a,
            b: 0,
            ns,
            at: 0,
        }
    }

    /// Threads that come and go count as many as were alive on average;
    /// a group none of whose threads exited counts them all.
    #[test]
    fn a_group_of_short_lived_threads_is_replayed_with_those_alive_on_average() {
        let t = |first_ns, exit_ns| Thread {
            first_ns,
            exit_ns,
            ..Default::default()
        };
        // Over 0 to 1000: one there throughout, ten of 100 each in turn.
        let mut ts = vec![t(0, None)];
        ts.extend((0..10).map(|i| t(i * 100, Some(i * 100 + 100))));
        let refs: Vec<&Thread> = ts.iter().collect();
        let all: Vec<&&Thread> = refs.iter().collect();
        assert_eq!(live_threads(&all, Some((0, 1000))), Some(2));
        // Known before the start, gone a quarter in: 0.25, at least 1.
        let early = [t(0, Some(250))];
        let refs: Vec<&Thread> = early.iter().collect();
        let one: Vec<&&Thread> = refs.iter().collect();
        assert_eq!(live_threads(&one, Some((0, 1000))), Some(1));
        // Mixed: two there throughout, and two that came and went in a
        // tenth each: 2.2, so 2.
        let mixed = [t(0, None), t(0, None), t(100, Some(200)), t(500, Some(600))];
        let refs: Vec<&Thread> = mixed.iter().collect();
        let m: Vec<&&Thread> = refs.iter().collect();
        assert_eq!(live_threads(&m, Some((0, 1000))), Some(2));
        // None exited, or no span: the caller's count.
        assert_eq!(live_threads(&all[..1], Some((0, 1000))), None);
        assert_eq!(live_threads(&all, None), None);
    }

    /// Threads that do little of a group's work count for little: a
    /// shell beside two threads doing even shares counts as nothing;
    /// even threads count each; a thread of few long bursts beside one
    /// of many short ones counts by its CPU time.
    #[test]
    fn a_group_replays_as_many_threads_as_do_its_work() {
        let t = |bursts: usize, cpu_ns| Thread {
            bursts: vec![1; bursts],
            cpu_ns,
            ..Default::default()
        };
        let n = |ts: &[Thread]| {
            let refs: Vec<&Thread> = ts.iter().collect();
            working_threads(&refs.iter().collect::<Vec<_>>())
        };
        assert_eq!(n(&[t(6000, 7_000), t(6000, 6_000), t(2, 1)]), 2);
        assert_eq!(n(&[t(10, 5), t(10, 5), t(10, 5), t(10, 5)]), 4);
        assert_eq!(n(&[t(10, 900), t(1000, 500)]), 2);
        assert_eq!(n(&[t(0, 0)]), 1, "nothing done: at least 1");
    }

    /// Ten threads of one 1 ms burst each, gone, over a second, replayed
    /// as one thread: a burst every 100 ms, so 99 ms of idle time after
    /// each; a group with sleeps, or whose threads are all still there,
    /// has its own.
    #[test]
    fn threads_that_came_and_went_without_blocking_sleep_their_idle_time() {
        let t = |exited, sleeps: usize| Thread {
            bursts: vec![1_000_000],
            sleeps: vec![5; sleeps],
            exited,
            ..Default::default()
        };
        let gone: Vec<Thread> = (0..10).map(|_| t(true, 0)).collect();
        let refs: Vec<&Thread> = gone.iter().collect();
        assert_eq!(
            unblocked_idle(&refs, 10, 1, 1.0),
            Some(Duration::from_millis(99))
        );
        assert_eq!(unblocked_idle(&refs, 1, 1, 1.0), None, "one burst");
        let slept: Vec<Thread> = (0..10).map(|_| t(true, 1)).collect();
        let refs: Vec<&Thread> = slept.iter().collect();
        assert_eq!(unblocked_idle(&refs, 10, 1, 1.0), None);
        let there: Vec<Thread> = (0..10).map(|_| t(false, 0)).collect();
        let refs: Vec<&Thread> = there.iter().collect();
        assert_eq!(unblocked_idle(&refs, 10, 1, 1.0), None);
    }

    /// A group pinned alike keeps its CPUs (those online); threads of
    /// several affinities, all CPUs, or none known keep none.
    #[test]
    fn a_group_pinned_alike_keeps_its_cpus() {
        let t = |cpus: Vec<u32>| Thread {
            info: ThreadInfo {
                cpus_allowed: cpus,
                ..Default::default()
            },
            ..Default::default()
        };
        let aff = |ts: &[Thread], online: &[u32]| {
            let refs: Vec<&Thread> = ts.iter().collect();
            common_affinity(&refs.iter().collect::<Vec<_>>(), online)
        };
        let online = [0, 1, 2, 3];
        assert_eq!(aff(&[t(vec![1]), t(vec![1])], &online), Some(vec![1]));
        assert_eq!(aff(&[t(vec![1, 2, 9])], &online), Some(vec![1, 2]));
        assert_eq!(aff(&[t(vec![1]), t(vec![2])], &online), None);
        assert_eq!(aff(&[t(vec![0, 1, 2, 3, 4, 5])], &online), None, "all");
        assert_eq!(aff(&[t(vec![])], &online), None, "unknown");
        assert_eq!(aff(&[t(vec![1])], &[]), None, "online unknown");
    }

    /// A hog's CPU time is schedstat's: at the close, or at the last
    /// sample when it has gone by then (or exited); a thread with no
    /// reading at all falls back on its bursts.
    #[test]
    fn a_hog_gone_before_the_close_keeps_its_sampled_cpu_time() {
        let mut log = Log::default();
        for tid in [1, 2, 3] {
            log.known(
                tid,
                100,
                ThreadInfo {
                    cpu_ns: 1_000,
                    ..thread(tid, 100, "hog")
                },
            );
        }
        log.sample_cpu(|tid| (tid != 3).then_some(5_000));
        // A burst ended after the sample does not stop the sampling.
        log.add(ev(EventKind::Burst, 2, 100, 0), |_| None);
        log.sample_cpu(|tid| (tid == 2).then_some(6_000));
        log.add(ev(EventKind::Exit, 2, 0, 0), |_| None);
        // 1 is there at the close, 2 exited, 3 never sampled and gone.
        log.close(|tid| (tid == 1).then_some(9_000), |_| None);
        let cpu = |tid| log.threads[&tid].cpu_ns;
        assert_eq!((cpu(1), cpu(2), cpu(3)), (8_000, 5_000, 0));
    }

    /// Two workers (comm worker-1, worker-2) that run 1 to 3 ms and sleep
    /// 18 ms, woken by a waker thread, for the whole 2 s (100 cycles of
    /// about 20 ms each), and a hog that never blocks: one
    /// replay group of two threads with the workers' quantiles, the
    /// waker's group named as theirs, the hog a spin group, the waker
    /// (one burst) left out as quiet.
    #[test]
    fn threads_become_groups_with_their_distributions() {
        let mut log = Log::default();
        log.known(100, 100, thread(100, 100, "hog"));
        log.threads.get_mut(&100).unwrap().info.cpu_ns = 1;
        for (tid, comm) in [(101, "worker-1"), (102, "worker-2"), (103, "waker")] {
            log.known(tid, 100, thread(tid, 100, comm));
        }
        for i in 0..100u64 {
            for tid in [101, 102] {
                log.add(ev(EventKind::Burst, tid, 1_000_000 + i * 20_000, 0), |_| {
                    None
                });
                log.add(ev(EventKind::Sleep, tid, 18_000_000, 103), |_| None);
                log.add(ev(EventKind::Delay, tid, 50_000 + i * 1000, 0), |_| None);
            }
        }
        log.add(ev(EventKind::Burst, 103, 1_000, 0), |_| None);
        // The hog ran the whole 2 s; the workers about 0.2 s each.
        log.close(
            |tid| Some(if tid == 100 { 2_000_000_001 } else { 0 }),
            |_| None,
        );
        let (groups, left) = summarise(&log, |_| true, GroupBy::Comm, false, 2.0);
        let names: Vec<&str> = groups.iter().map(|g| g.group.name.as_str()).collect();
        assert_eq!(names, ["hog", "worker-N"], "{groups:#?}");
        assert_eq!(groups[0].group.work, Work::Spin);
        let w = &groups[1];
        assert_eq!(w.group.threads, 2);
        let Work::Replay { run, sleep, .. } = &w.group.work else {
            panic!("{:?}", w.group.work)
        };
        assert_eq!(run.len(), QUANTILES);
        assert_eq!(run[0], Duration::from_micros(1000));
        assert_eq!(run[20], Duration::from_micros(2980));
        assert_eq!(run[10], Duration::from_micros(2000));
        assert!(sleep.iter().all(|s| *s == Duration::from_millis(18)));
        // Their waker is not replayed (quiet): their sleeps stay timed.
        let Work::Replay { woken_by, .. } = &w.group.work else {
            unreachable!()
        };
        assert!(woken_by.is_empty(), "{woken_by:?}");
        assert_eq!(
            w.figures.woken_by,
            vec![WokenBy {
                by: "waker".into(),
                share: 1.0
            }]
        );
        assert_eq!(w.figures.bursts_per_s, 100.0);
        assert_eq!(w.figures.delay_p50, Duration::from_micros(100));
        assert_eq!(left.quiet, vec![("waker".to_string(), 1)]);
        // Anonymized: g1, g2 and no comm.
        let (anon, _) = summarise(&log, |_| true, GroupBy::Comm, true, 2.0);
        assert_eq!(anon[1].group.name, "g2");
        assert_eq!(anon[1].group.comm, None);
        assert_eq!(anon[1].figures.woken_by[0].by, "g3");
        let rec = Recording {
            what: "a test",
            length: Duration::from_secs(2),
            cpus: 2,
            lost: 3,
            left: &left,
            warnings: &[],
        };
        let text = scenario_text("t", &groups, &rec).unwrap();
        assert!(text.contains("# NOTE: 3 event(s) lost"), "{text}");
        assert!(text.contains("waker (1 thread(s)) left out"), "{text}");
        crate::scenario::parse(Path::new("t.yaml"), &text).unwrap();
    }

    /// A server woken by a client for 70% of its sleeps, the idle CPU for
    /// the rest, and 3% by a hog: the replay couples it to the client
    /// alone (the idle CPU is a timer; the hog does not burst; 3% is
    /// noise); the client, woken by the idle CPU, is not coupled.
    #[test]
    fn wakeups_by_replayed_groups_become_couplings() {
        let mut log = Log::default();
        for (tid, comm) in [(100, "hog"), (101, "server"), (102, "client")] {
            log.known(tid, 100, thread(tid, 100, comm));
        }
        // The hog's CPU time from its start (1 ns) to the end: 2 s.
        log.threads.get_mut(&100).unwrap().info.cpu_ns = 1;
        for i in 0..100u32 {
            log.add(ev(EventKind::Burst, 101, 1_000_000, 0), |_| None);
            let by = match i % 100 {
                0..70 => 102,
                70..73 => 100,
                _ => 0,
            };
            log.add(ev(EventKind::Sleep, 101, 5_000_000, by), |_| None);
            log.add(ev(EventKind::Burst, 102, 500_000, 0), |_| None);
            log.add(ev(EventKind::Sleep, 102, 5_000_000, 0), |_| None);
        }
        log.close(
            |tid| Some(if tid == 100 { 2_000_000_001 } else { 0 }),
            |_| None,
        );
        let (groups, _) = summarise(&log, |_| true, GroupBy::Comm, false, 2.0);
        let work = |name: &str| {
            &groups
                .iter()
                .find(|g| g.group.name == name)
                .unwrap()
                .group
                .work
        };
        assert_eq!(work("hog"), &Work::Spin);
        let Work::Replay { woken_by, .. } = work("server") else {
            panic!("{groups:#?}")
        };
        assert_eq!(
            woken_by,
            &[crate::scenario::Coupling {
                group: "client".into(),
                share: 0.7
            }]
        );
        let Work::Replay { woken_by, .. } = work("client") else {
            panic!("{groups:#?}")
        };
        assert!(woken_by.is_empty());
        // The file says so and reads back.
        let rec = Recording {
            what: "a test",
            length: Duration::from_secs(2),
            cpus: 2,
            lost: 0,
            left: &Left::default(),
            warnings: &[],
        };
        let text = scenario_text("t", &groups, &rec).unwrap();
        assert!(text.contains("woken_by"), "{text}");
        crate::scenario::parse(Path::new("t.yaml"), &text).unwrap();
    }

    /// What the scenario format refuses never reaches it: a comm with
    /// '/', digits set aside run by run (ZN1 and ZN apart), more groups
    /// than the limit merged into `rest` (counted as groups), a thread
    /// that did nothing not replayed.
    #[test]
    fn groups_fit_the_scenario_format() {
        let mut log = Log::default();
        let mut tid = 1000;
        let mut add = |log: &mut Log, comm: &str, active: bool| {
            tid += 1;
            log.known(tid, tid, thread(tid, tid, comm));
            if active {
                for _ in 0..3 {
                    log.add(ev(EventKind::Burst, tid, 1_000_000, 0), |_| None);
                    log.add(ev(EventKind::Sleep, tid, 1_000_000, 0), |_| None);
                }
            }
        };
        add(&mut log, "kworker/1:2", true);
        add(&mut log, "ZN1", true);
        add(&mut log, "ZN", true);
        add(&mut log, "pool-1", true);
        add(&mut log, "pool-2", false);
        for i in 0..40u8 {
            let comm = format!("x{}{}", (b'a' + i / 26) as char, (b'a' + i % 26) as char);
            add(&mut log, &comm, true);
        }
        log.close(|_| None, |_| None);
        let (groups, left) = summarise(&log, |_| true, GroupBy::Comm, false, 1.0);
        assert_eq!(groups.len(), crate::scenario::MAX_GROUPS);
        assert_eq!(left.merged, 44 - 31);
        let g = |n: &str| groups.iter().find(|g| g.group.name == n);
        let kw = g("kworker-N-N").expect("kworker's group");
        assert_eq!(kw.group.comm.as_deref(), Some("kworker-1:2"));
        let pool = g("pool-N").expect("the pool");
        assert_eq!((pool.group.threads, pool.figures.threads), (1, 1));
        assert!(
            g("ZN").is_some() && g("ZNN").is_some(),
            "{:?}",
            groups.iter().map(|g| &g.group.name).collect::<Vec<_>>()
        );
        let rest = g("rest").unwrap();
        assert_eq!((rest.figures.threads, rest.group.threads), (13, 13));
        let rec = Recording {
            what: "a test",
            length: Duration::from_secs(2),
            cpus: 2,
            lost: 0,
            left: &left,
            warnings: &[],
        };
        let text = scenario_text("t", &groups, &rec).unwrap();
        assert!(
            text.contains("13 group(s) past the limit of 32 merged into `rest`"),
            "{text}"
        );
        crate::scenario::parse(Path::new("t.yaml"), &text).unwrap();
    }
}
