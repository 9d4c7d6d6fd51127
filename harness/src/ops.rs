//! The guest side of a scenario's timeline (`timeline:`): which operation
//! is due when, doing it to the tasks and cgroups of the run, and what
//! happened (planned and actual time, effect, error). The agent calls it
//! from its real-time thread between scans, so an operation keeps its
//! schedule whatever the workload and the scheduler under test do; what it
//! changed that outlives the run (CPUs offline, cgroups it made) is undone
//! when it is dropped. Knows scenarios and the kernel's interfaces (sched
//! syscalls, cgroup v2 files, CPU hotplug); not the probe or schedulers.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::probe::now_ns;
use crate::scenario::timeline::{Action, CpuChoice, CpuWord};
use crate::scenario::Scenario;
use crate::sched;
use crate::workload::Rng;

/// What happened at one operation of the timeline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpEvent {
    /// Its index in `timeline:`, and which time of its repeats (0: the first).
    pub op: u32,
    pub occurrence: u32,
    /// Its key (`affinity`, `move`, ...).
    pub kind: String,
    /// When the scenario planned it and when it was done, ns from t0.
    pub planned_ns: u64,
    pub at_ns: u64,
    /// How long doing it took, µs.
    pub took_us: u64,
    /// What it did, for people: "nice 5 on 4 tasks of batch".
    pub what: String,
    /// Set when it could not be done (fully).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl OpEvent {
    /// How late it was done.
    pub fn late(&self) -> Duration {
        Duration::from_nanos(self.at_ns.saturating_sub(self.planned_ns))
    }
}

/// How late an operation may be before the result says so: well above the
/// agent's own cost, well below any bound a scenario sets on what follows.
pub const SLIP: Duration = Duration::from_millis(20);

/// What the timeline acts on: a group's tasks, its processes, the
/// scenario's cgroup directories, and how scenario CPUs map to the
/// machine's (identity in a VM; the host target's own CPUs on a host).
pub trait Targets {
    /// The tasks doing group `g`'s work now (thread ids).
    fn tasks(&self, g: usize) -> Vec<u32>;
    /// The processes of group `g` to move between cgroups.
    fn processes(&self, g: usize) -> Vec<u32>;
    /// The directory of a scenario cgroup path, or the scenario's top for
    /// None; None if the run has no cgroups.
    fn cgroup_dir(&self, path: Option<&str>) -> Option<PathBuf>;
    /// The machine's CPU for scenario CPU `c`.
    fn cpu(&self, c: u32) -> u32;
    /// False where CPUs must not be taken offline (the host target).
    fn may_hotplug(&self) -> bool;
}

struct Planned {
    at_ns: u64,
    op: usize,
    occurrence: u32,
}

/// Runs `scenario`'s timeline for a pass that started at `t0`
/// (CLOCK_MONOTONIC ns) until `end` or until `stop` is set, on the calling
/// thread, which it puts at SCHED_FIFO 99 (the agent's watch's priority,
/// above every scenario task and loader); returns what happened. What it
/// changed that outlives the run is undone before it returns.
pub fn run_timeline(
    scenario: &Scenario,
    t0: u64,
    end: u64,
    targets: &dyn Targets,
    stop: &std::sync::atomic::AtomicBool,
) -> Vec<OpEvent> {
    // Reset on fork: what it starts (churn processes) runs in the normal
    // class, not at 99.
    if let Err(e) = sched::set_raw(0, libc::SCHED_FIFO | libc::SCHED_RESET_ON_FORK, 99) {
        tracing::warn!("the timeline runs without real-time priority: {e}");
    }
    let mut tl = Timeline::new(scenario);
    loop {
        let now = now_ns();
        if stop.load(std::sync::atomic::Ordering::SeqCst) || now >= end {
            break;
        }
        tl.run_due(t0, now, targets, stop);
        // Wake for what is due next, and at least every 50 ms to see a stop.
        let next = tl
            .next_due(t0)
            .unwrap_or(end)
            .min(end)
            .min(now_ns() + 50_000_000);
        crate::workload::sleep_until(next);
    }
    std::mem::take(&mut tl.events)
}

/// The timeline of a pass on a thread of its own ([`run_timeline`]),
/// stopped and joined when dropped (an early return from the pass leaves
/// nothing running).
pub struct TimelineThread {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    handle: Option<std::thread::JoinHandle<Vec<OpEvent>>>,
}

impl TimelineThread {
    /// Starts `scenario`'s timeline for a run that started at `t0`, until
    /// `end` (CLOCK_MONOTONIC ns).
    pub fn start(
        scenario: Scenario,
        t0: u64,
        end: u64,
        targets: impl Targets + Send + 'static,
    ) -> anyhow::Result<TimelineThread> {
        use anyhow::Context;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let handle = std::thread::Builder::new()
            .name("timeline".into())
            .spawn(move || run_timeline(&scenario, t0, end, &targets, &flag))
            .context("starting the timeline's thread")?;
        Ok(TimelineThread {
            stop,
            handle: Some(handle),
        })
    }

    /// Asks it to stop: nothing more is done after the operation under way.
    pub fn stop(&self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// Stops it and waits for it (and its clean-up); what happened.
    pub fn join(mut self) -> anyhow::Result<Vec<OpEvent>> {
        self.stop();
        match self.handle.take().map(|h| h.join()) {
            Some(Ok(events)) => Ok(events),
            Some(Err(_)) => anyhow::bail!("the timeline's thread panicked"),
            None => Ok(Vec::new()),
        }
    }
}

impl Drop for TimelineThread {
    fn drop(&mut self) {
        self.stop();
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// A cgroup made by `churn`, with its processes, until `remove_at`.
struct Churned {
    dir: PathBuf,
    children: Vec<Child>,
    remove_at: u64,
}

/// The timeline of one pass.
pub struct Timeline<'a> {
    scenario: &'a Scenario,
    plan: Vec<Planned>,
    next: usize,
    rng: Rng,
    churned: Vec<Churned>,
    churn_seq: u32,
    offline: Vec<u32>,
    pub events: Vec<OpEvent>,
}

impl<'a> Timeline<'a> {
    /// Every time of every operation, in order (ties in `timeline:` order).
    pub fn new(scenario: &'a Scenario) -> Timeline<'a> {
        let mut plan: Vec<Planned> = Vec::new();
        for (i, op) in scenario.timeline.iter().enumerate() {
            for (k, t) in op.times(scenario.duration).into_iter().enumerate() {
                plan.push(Planned {
                    at_ns: t.as_nanos() as u64,
                    op: i,
                    occurrence: k as u32,
                });
            }
        }
        plan.sort_by_key(|p| (p.at_ns, p.op));
        Timeline {
            scenario,
            plan,
            next: 0,
            // A stream of its own: the groups' threads use (group, thread).
            rng: Rng::for_thread(scenario.seed, u32::MAX, u32::MAX),
            churned: Vec::new(),
            churn_seq: 0,
            offline: Vec::new(),
            events: Vec::new(),
        }
    }

    /// When something is next due (CLOCK_MONOTONIC ns), for a run that
    /// started at `t0`.
    pub fn next_due(&self, t0: u64) -> Option<u64> {
        let op = self.plan.get(self.next).map(|p| t0 + p.at_ns);
        let churn = self.churned.iter().map(|c| c.remove_at).min();
        match (op, churn) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Does everything due at `now`, unless `stop` is set meanwhile.
    pub fn run_due(
        &mut self,
        t0: u64,
        now: u64,
        targets: &dyn Targets,
        stop: &std::sync::atomic::AtomicBool,
    ) {
        self.remove_churned(now);
        while let Some(p) = self.plan.get(self.next) {
            if t0 + p.at_ns > now_ns() || stop.load(std::sync::atomic::Ordering::SeqCst) {
                break;
            }
            let (op, occurrence, planned) = (p.op, p.occurrence, p.at_ns);
            self.next += 1;
            let started = now_ns();
            let (what, error) = self.apply(op, occurrence, targets, t0);
            let done = now_ns();
            self.events.push(OpEvent {
                op: op as u32,
                occurrence,
                kind: self.scenario.timeline[op].action().kind().to_string(),
                planned_ns: planned,
                at_ns: started.saturating_sub(t0),
                took_us: (done - started) / 1000,
                what,
                error,
            });
        }
    }

    fn apply(
        &mut self,
        op: usize,
        occurrence: u32,
        targets: &dyn Targets,
        t0: u64,
    ) -> (String, Option<String>) {
        let s = self.scenario;
        let group_index = |name: &str| {
            s.groups
                .iter()
                .position(|g| g.name == name)
                .expect("validated: the group exists")
        };
        let mut errors: Vec<String> = Vec::new();
        let what = match s.timeline[op].action() {
            Action::Affinity(a) => {
                let mut tasks = targets.tasks(group_index(&a.group));
                if let Some(n) = a.tasks {
                    tasks = pick(&mut self.rng, tasks, n as usize);
                }
                let n = s.vm.cpus;
                for t in &tasks {
                    let cpus: Vec<u32> = match &a.cpus {
                        CpuChoice::List(l) => l.clone(),
                        CpuChoice::Word(CpuWord::All) => (0..n).collect(),
                        CpuChoice::Word(CpuWord::Random) => random_cpus(&mut self.rng, n),
                    };
                    let cpus: Vec<u32> = cpus.iter().map(|c| targets.cpu(*c)).collect();
                    if let Err(e) = sched::set_affinity(*t, &cpus) {
                        note(&mut errors, e);
                    }
                }
                let cpus = match &a.cpus {
                    CpuChoice::List(l) => format!("CPUs {l:?}"),
                    CpuChoice::Word(CpuWord::All) => "every CPU".into(),
                    CpuChoice::Word(CpuWord::Random) => "random CPUs".into(),
                };
                format!("{} task(s) of {} to {cpus}", tasks.len(), a.group)
            }
            Action::Nice(a) => {
                let tasks = targets.tasks(group_index(&a.group));
                for t in &tasks {
                    if let Err(e) = sched::set_nice(*t, a.nice) {
                        note(&mut errors, e);
                    }
                }
                format!("nice {} on {} task(s) of {}", a.nice, tasks.len(), a.group)
            }
            Action::Policy(a) => {
                let tasks = targets.tasks(group_index(&a.group));
                for t in &tasks {
                    if let Err(e) = sched::set_policy(*t, a.policy, a.priority.unwrap_or(0)) {
                        note(&mut errors, e);
                    }
                }
                format!(
                    "policy {}{} on {} task(s) of {}",
                    a.policy.name(),
                    a.priority.map(|p| format!(" {p}")).unwrap_or_default(),
                    tasks.len(),
                    a.group
                )
            }
            Action::Move(m) => {
                let to = &m.to[occurrence as usize % m.to.len()];
                let procs = targets.processes(group_index(&m.group));
                match targets.cgroup_dir(Some(to)) {
                    Some(dir) => {
                        for p in &procs {
                            if let Err(e) = std::fs::write(dir.join("cgroup.procs"), p.to_string())
                            {
                                // A process that exited meanwhile is not an error.
                                if e.raw_os_error() != Some(libc::ESRCH) {
                                    errors.push(format!("moving {p} to {}: {e}", dir.display()));
                                }
                            }
                        }
                    }
                    None => errors.push(format!("no cgroup {to} in this run")),
                }
                format!("{} process(es) of {} to {to}", procs.len(), m.group)
            }
            Action::Weight(w) => {
                write_cgroup(
                    targets,
                    &w.cgroup,
                    "cpu.weight",
                    &w.weight.to_string(),
                    &mut errors,
                );
                format!("cpu.weight {} on {}", w.weight, w.cgroup)
            }
            Action::CpuMax(m) => {
                let text = m.max().map_or("max".to_string(), |x| x.text());
                write_cgroup(targets, &m.cgroup, "cpu.max", &text, &mut errors);
                format!("cpu.max \"{text}\" on {}", m.cgroup)
            }
            Action::Churn(c) => {
                self.churn_seq += 1;
                match targets.cgroup_dir(c.parent.as_deref()) {
                    Some(parent) => {
                        let dir = parent.join(format!("churn.{}", self.churn_seq));
                        match churn(&dir, c.tasks) {
                            Ok(children) => {
                                self.churned.push(Churned {
                                    dir: dir.clone(),
                                    children,
                                    remove_at: t0
                                        + s.timeline[op]
                                            .times(s.duration)
                                            .get(occurrence as usize)
                                            .map_or(0, |t| t.as_nanos() as u64)
                                        + c.life.as_nanos() as u64,
                                });
                            }
                            Err(e) => errors.push(format!("{e:#}")),
                        }
                        format!(
                            "made {} with {} spinning process(es) for {}",
                            dir.display(),
                            c.tasks,
                            crate::units::format_duration(c.life)
                        )
                    }
                    None => {
                        errors.push("the run has no cgroup to make one under".into());
                        String::from("churn")
                    }
                }
            }
            Action::Hotplug(h) => {
                let cpu = targets.cpu(h.cpu);
                if !targets.may_hotplug() {
                    errors.push("CPU hotplug is done in a VM only, not on a host target".into());
                } else {
                    match set_online(cpu, h.online) {
                        Ok(()) if !h.online => self.offline.push(cpu),
                        Ok(()) => self.offline.retain(|c| *c != cpu),
                        Err(e) => errors.push(e),
                    }
                }
                format!("CPU {cpu} {}", if h.online { "online" } else { "offline" })
            }
        };
        let error = (!errors.is_empty()).then(|| {
            let n = errors.len();
            let mut first = errors.swap_remove(0);
            if n > 1 {
                first.push_str(&format!(" (and {} more)", n - 1));
            }
            first
        });
        (what, error)
    }

    fn remove_churned(&mut self, now: u64) {
        let (due, keep): (Vec<Churned>, Vec<Churned>) = std::mem::take(&mut self.churned)
            .into_iter()
            .partition(|c| c.remove_at <= now);
        self.churned = keep;
        for c in due {
            remove_churn(c);
        }
    }
}

impl Drop for Timeline<'_> {
    /// Undoes what outlives the run: its churn cgroups go, its offline
    /// CPUs come back.
    fn drop(&mut self) {
        for c in std::mem::take(&mut self.churned) {
            remove_churn(c);
        }
        for cpu in std::mem::take(&mut self.offline) {
            if let Err(e) = set_online(cpu, true) {
                tracing::warn!("{e}");
            }
        }
    }
}

fn note(errors: &mut Vec<String>, e: anyhow::Error) {
    // A task that exited since it was listed is not an error.
    let gone = e
        .root_cause()
        .downcast_ref::<std::io::Error>()
        .is_some_and(|io| io.raw_os_error() == Some(libc::ESRCH));
    if !gone {
        errors.push(format!("{e:#}"));
    }
}

fn write_cgroup(
    targets: &dyn Targets,
    cgroup: &str,
    file: &str,
    value: &str,
    errors: &mut Vec<String>,
) {
    match targets.cgroup_dir(Some(cgroup)) {
        Some(dir) => {
            if let Err(e) = write_cgroup_file(&dir, file, value) {
                errors.push(e);
            }
        }
        None => errors.push(format!("no cgroup {cgroup} in this run")),
    }
}

/// Writes `value` to a cgroup's interface file; a file the kernel does not
/// have is named with the option that gives it.
pub fn write_cgroup_file(dir: &Path, file: &str, value: &str) -> Result<(), String> {
    let path = dir.join(file);
    if !path.exists() {
        let needs = match file {
            "cpu.max" => " (a kernel with CONFIG_CFS_BANDWIDTH has it)",
            "cpu.weight" => {
                " (a kernel with CONFIG_FAIR_GROUP_SCHED and the cpu controller on in the parent has it)"
            }
            _ => "",
        };
        return Err(format!("this kernel has no {}{needs}", path.display()));
    }
    std::fs::write(&path, value)
        .map_err(|e| format!("writing {value:?} to {}: {e}", path.display()))
}

/// `n` of `items`, drawn from `rng` (a partial Fisher-Yates shuffle).
fn pick(rng: &mut Rng, mut items: Vec<u32>, n: usize) -> Vec<u32> {
    let n = n.min(items.len());
    for i in 0..n {
        let j = i + (rng.next_u64() % (items.len() - i) as u64) as usize;
        items.swap(i, j);
    }
    items.truncate(n);
    items
}

/// A non-empty subset of CPUs 0..n, uniform over the 2^n - 1 of them.
fn random_cpus(rng: &mut Rng, n: u32) -> Vec<u32> {
    let n = n.min(63);
    let mask = 1 + rng.next_u64() % ((1u64 << n) - 1);
    (0..n).filter(|c| mask & (1 << c) != 0).collect()
}

/// Makes `dir` and starts `tasks` spinning processes in it (a shell loop:
/// the scenario's own tasks are the measured ones; these only populate
/// the cgroup), each dying with the agent.
fn churn(dir: &Path, tasks: u32) -> anyhow::Result<Vec<Child>> {
    use anyhow::Context;
    std::fs::create_dir(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut children = Vec::new();
    for _ in 0..tasks {
        let mut cmd = Command::new("sh");
        crate::process::die_with_parent(&mut cmd);
        let child = cmd
            .args(["-c", "while :; do :; done"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting a churn process (sh)")?;
        let id = child.id();
        children.push(child);
        std::fs::write(dir.join("cgroup.procs"), id.to_string())
            .with_context(|| format!("moving {id} into {}", dir.display()))?;
    }
    Ok(children)
}

fn remove_churn(mut c: Churned) {
    for ch in &mut c.children {
        let _ = ch.kill();
        let _ = ch.wait();
    }
    // The kernel removes a cgroup once its last task has gone.
    let deadline = now_ns() + 200_000_000;
    while std::fs::remove_dir(&c.dir).is_err() && now_ns() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Takes CPU `cpu` offline or brings it online.
fn set_online(cpu: u32, online: bool) -> Result<(), String> {
    let path = format!("/sys/devices/system/cpu/cpu{cpu}/online");
    std::fs::write(&path, if online { "1" } else { "0" }).map_err(|e| {
        format!(
            "writing {} to {path}: {e} (a kernel with CONFIG_HOTPLUG_CPU lets CPUs but 0 go offline)",
            u8::from(online)
        )
    })
}

/// The scenario's kernel settings while a cell runs: each knob's value is
/// read, the scenario's written; dropping the guard writes back what was
/// read.
pub struct KnobGuard {
    restore: Vec<(PathBuf, String)>,
}

impl KnobGuard {
    /// Sets every knob. Errors: a knob the kernel lacks (no file under
    /// /proc/sys), or a value it refuses; what was set before the error is
    /// restored.
    pub fn set(knobs: &crate::scenario::Knobs) -> anyhow::Result<KnobGuard> {
        use anyhow::Context;
        let mut g = KnobGuard {
            restore: Vec::new(),
        };
        for (name, value) in knobs {
            let path = crate::scenario::timeline::knob_path(name);
            let old = std::fs::read_to_string(&path).with_context(|| {
                format!(
                    "knobs: this kernel has no {name} ({} cannot be read)",
                    path.display()
                )
            })?;
            std::fs::write(&path, value.text()).with_context(|| {
                format!(
                    "knobs: setting {name} to {:?} ({})",
                    value.text(),
                    path.display()
                )
            })?;
            g.restore.push((path, old.trim().to_string()));
        }
        Ok(g)
    }
}

impl Drop for KnobGuard {
    fn drop(&mut self) {
        for (path, old) in self.restore.iter().rev() {
            if let Err(e) = std::fs::write(path, old) {
                tracing::warn!("restoring {} to {old:?}: {e}", path.display());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_cpu_sets_are_never_empty_and_cover_every_subset() {
        let mut rng = Rng::for_thread(3, 0, 0);
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..2000 {
            let s = random_cpus(&mut rng, 3);
            assert!(!s.is_empty() && s.iter().all(|c| *c < 3));
            seen.insert(s);
        }
        assert_eq!(seen.len(), 7, "{seen:?}");
    }

    #[test]
    fn picks_are_distinct_and_follow_the_seed() {
        let draw = |seed| pick(&mut Rng::for_thread(seed, 0, 0), (0..10).collect(), 4);
        let a = draw(1);
        assert_eq!(a.len(), 4);
        let mut d = a.clone();
        d.sort_unstable();
        d.dedup();
        assert_eq!(d.len(), 4);
        assert_eq!(a, draw(1));
    }
}
