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
use crate::scenario::{Check, Scenario};
use crate::scheduler::lifecycle::{GuestSpec, Report, Session};
use crate::workload::{GroupOutcome, GroupSpec};

/// How often the probe is scanned for stalls.
const SCAN: Duration = Duration::from_millis(20);
/// From the agent's "go" to the common start time of the groups.
const START_DELAY: Duration = Duration::from_millis(200);
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
}

impl AgentSpec {
    /// The tightest stall bound of the scenario's checks, if any.
    pub fn stall_bound(&self) -> Option<Duration> {
        self.scenario
            .checks
            .iter()
            .filter_map(|c| match c {
                Check::Stall(s) => Some(s.max_runnable),
                _ => None,
            })
            .min()
    }
}

/// A task found runnable for longer than the stall bound.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StallEvent {
    pub tid: u32,
    pub pid: u32,
    pub comm: String,
    pub group: String,
    pub waited_ns: u64,
    /// When it was found, from the start of the pass (t0).
    pub found_at_ns: u64,
}

/// A task still waiting to run at the end of a pass.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StillWaiting {
    pub tid: u32,
    pub group: String,
    pub comm: String,
    pub waited_ns: u64,
}

/// What one group did in one pass.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupResult {
    pub name: String,
    pub probe: GroupData,
    /// The group process's own report (iterations, CPU time per thread);
    /// `None` if it never wrote one (it crashed or was killed).
    pub outcome: Option<GroupOutcome>,
    /// Its exit status, if it exited.
    pub exit_status: Option<i32>,
}

impl GroupResult {
    pub fn iterations_window(&self) -> u64 {
        self.outcome
            .as_ref()
            .map_or(0, |o| o.threads.iter().map(|t| t.iterations_window).sum())
    }
}

/// One pass of the scenario.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pass {
    /// "fair" or "scheduler".
    pub label: String,
    /// The start, and the measurement window, CLOCK_MONOTONIC ns.
    pub t0_ns: u64,
    pub window_start_ns: u64,
    pub window_end_ns: u64,
    /// When the pass ended, from t0 (early when a stall ended it).
    pub ended_at_ns: u64,
    pub groups: Vec<GroupResult>,
    /// The stall that ended the pass early, if one did.
    pub stall: Option<StallEvent>,
    /// Tasks still waiting when the pass ended.
    pub still_waiting: Vec<StillWaiting>,
    pub probe_events: u64,
    /// Task entries the probe could not create: the measurement is
    /// incomplete when this is not 0.
    pub probe_dropped: u64,
    /// Problems that make the pass's numbers untrustworthy.
    pub errors: Vec<String>,
}

impl Pass {
    pub fn group(&self, name: &str) -> Option<&GroupResult> {
        self.groups.iter().find(|g| g.name == name)
    }

    pub fn window(&self) -> Duration {
        Duration::from_nanos(self.window_end_ns.saturating_sub(self.window_start_ns))
    }
}

/// What the agent writes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentOutput {
    pub passes: Vec<Pass>,
    /// The scheduler's lifecycle report (for the fair class: a trivial one).
    pub scheduler: Option<Report>,
    /// Set when the agent could not do its job; no pass then counts.
    pub error: Option<String>,
}

impl AgentOutput {
    pub fn pass(&self, label: &str) -> Option<&Pass> {
        self.passes.iter().find(|p| p.label == label)
    }
}

/// Runs the spec and writes the output to `out`, even when the run fails
/// half-way (the error is then in it).
pub fn run(spec: &AgentSpec, out: &Path) -> Result<AgentOutput> {
    let dir = out.parent().unwrap_or(Path::new("/tmp")).to_path_buf();
    let mut output = AgentOutput {
        passes: Vec::new(),
        scheduler: None,
        error: None,
    };
    if let Err(e) = run_into(spec, &dir, &mut output) {
        output.error = Some(format!("{e:#}"));
    }
    write_atomic(out, &serde_json::to_vec(&output)?)?;
    Ok(output)
}

fn run_into(spec: &AgentSpec, dir: &Path, output: &mut AgentOutput) -> Result<()> {
    let cgroups = Cgroups::create(&spec.scenario)?;
    let mut probe = Probe::load()?;
    if spec.baseline {
        let pass = run_pass(spec, "fair", Some(&mut probe), &cgroups, None, dir)?;
        output.passes.push(pass);
        probe.reset();
    }
    let mut session = Session::start(&spec.scheduler, dir)?;
    if session.attached() {
        let pass = run_pass(
            spec,
            "scheduler",
            Some(&mut probe),
            &cgroups,
            Some(&mut session),
            dir,
        )?;
        output.passes.push(pass);
    }
    output.scheduler = Some(session.finish(None));
    Ok(())
}

/// The scenario's cgroups, created under `/sys/fs/cgroup/scx-harness`
/// with the cpu controller enabled, and removed when dropped.
struct Cgroups {
    base: Option<PathBuf>,
    /// group index -> its cgroup directory
    dirs: Vec<Option<PathBuf>>,
}

impl Cgroups {
    fn create(s: &Scenario) -> Result<Cgroups> {
        if s.groups.iter().all(|g| g.cgroup.is_none()) {
            return Ok(Cgroups {
                base: None,
                dirs: vec![None; s.groups.len()],
            });
        }
        let root = Path::new(CGROUP_ROOT);
        let base = root.join("scx-harness");
        let enable = |dir: &Path| -> Result<()> {
            std::fs::write(dir.join("cgroup.subtree_control"), "+cpu").with_context(|| {
                format!(
                    "enabling the cpu controller in {} (cgroup v2 with CONFIG_CGROUP_SCHED)",
                    dir.display()
                )
            })
        };
        enable(root)?;
        std::fs::create_dir_all(&base).with_context(|| format!("creating {}", base.display()))?;
        enable(&base)?;
        let mut dirs = Vec::new();
        for g in &s.groups {
            dirs.push(match &g.cgroup {
                None => None,
                Some(cg) => {
                    let d = base.join(&cg.name);
                    std::fs::create_dir_all(&d)
                        .with_context(|| format!("creating {}", d.display()))?;
                    std::fs::write(d.join("cpu.weight"), cg.weight.to_string()).with_context(
                        || format!("setting cpu.weight {} on {}", cg.weight, d.display()),
                    )?;
                    Some(d)
                }
            });
        }
        Ok(Cgroups {
            base: Some(base),
            dirs,
        })
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
        for d in self.dirs.iter().flatten() {
            let _ = std::fs::remove_dir(d);
        }
        if let Some(b) = &self.base {
            let _ = std::fs::remove_dir(b);
        }
    }
}

/// A running group process.
struct Running {
    child: Child,
    out: PathBuf,
    status: Option<i32>,
}

/// The thread ids of these processes, from /proc (the probe is asked
/// about these only, not about every slot it has).
fn threads_of(pids: impl Iterator<Item = u32>) -> Vec<u32> {
    let mut tids = Vec::new();
    for pid in pids {
        if let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) {
            tids.extend(
                dir.flatten()
                    .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok()),
            );
        }
    }
    tids
}

fn comm_of(tid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{tid}/comm"))
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

fn run_pass(
    spec: &AgentSpec,
    label: &str,
    mut probe: Option<&mut Probe>,
    cgroups: &Cgroups,
    mut session: Option<&mut Session>,
    dir: &Path,
) -> Result<Pass> {
    let s = &spec.scenario;
    let exe = std::env::current_exe().context("finding the harness binary in the guest")?;
    let duration = s.duration.as_nanos() as u64;
    let warmup = s.warmup.as_nanos() as u64;
    let mut running = Vec::new();
    for (i, g) in s.groups.iter().enumerate() {
        let gspec = GroupSpec {
            index: i as u32,
            name: g.name.clone(),
            threads: g.threads,
            work: g.work.clone(),
            nice: g.nice,
            cpus: g.cpus.clone(),
            comm: g.comm(),
            seed: s.seed,
            start_ns: g.start().as_nanos() as u64,
            stop_ns: g.stop(s.duration).as_nanos() as u64,
            window_start_ns: warmup,
            window_end_ns: duration,
            out: dir.join(format!("{label}-{}.json", g.name)),
            output_dir: dir.to_path_buf(),
        };
        let stderr = std::fs::File::create(dir.join(format!("{label}-{}.stderr", g.name)))?;
        let child = Command::new(&exe)
            .args(["guest", "workload-group", "--spec-json"])
            .arg(serde_json::to_string(&gspec)?)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .with_context(|| format!("starting group {}", g.name))?;
        if let Some(p) = probe.as_deref() {
            p.track(child.id(), i as u32)?;
        }
        cgroups.join(i, child.id())?;
        running.push(Running {
            child,
            out: gspec.out,
            status: None,
        });
    }
    let t0 = now_ns() + START_DELAY.as_nanos() as u64;
    let (window_start, window_end) = (t0 + warmup, t0 + duration);
    if let Some(p) = probe.as_deref_mut() {
        p.set_window(window_start, window_end);
    }
    for r in &mut running {
        let stdin = r.child.stdin.as_mut().expect("piped stdin");
        writeln!(stdin, "t0 {t0}").context("telling a group its start time")?;
    }
    let group_name = |g: u32| {
        s.groups
            .get(g as usize)
            .map_or("?".into(), |g| g.name.clone())
    };
    let bound = spec
        .stall_bound()
        .map(|b| b.as_nanos() as u64)
        .filter(|_| probe.is_some());
    let mut stall = None;
    let mut errors = Vec::new();
    let mut now = now_ns();
    while now < window_end {
        if let Some(b) = bound {
            let tids = threads_of(running.iter().map(|r| r.child.id()));
            let worst = probe
                .as_deref()
                .map(|p| p.waiting(now, &tids))
                .unwrap_or_default()
                .into_iter()
                .max_by_key(|w| w.waited_ns);
            if let Some(w) = worst.filter(|w| w.waited_ns > b) {
                stall = Some(StallEvent {
                    tid: w.tid,
                    pid: w.tgid,
                    comm: comm_of(w.tid),
                    group: group_name(w.group),
                    waited_ns: w.waited_ns,
                    found_at_ns: now.saturating_sub(t0),
                });
                break;
            }
        }
        if let Some(sess) = session.as_deref_mut() {
            sess.watch();
        }
        for r in &mut running {
            if r.status.is_none() {
                if let Some(st) = r.child.try_wait()? {
                    r.status = st.code();
                    if !st.success() {
                        errors.push(format!(
                            "a group process exited early ({st}); see {}",
                            r.out.with_extension("stderr").display()
                        ));
                    }
                }
            }
        }
        std::thread::sleep(SCAN.min(Duration::from_nanos(window_end.saturating_sub(now))));
        now = now_ns();
    }
    let ended = now_ns();
    let (waiting, snapshot): (Vec<Waiting>, Snapshot) = match probe.as_deref() {
        Some(p) => (p.all_waiting(ended), p.snapshot(s.groups.len())),
        None => Default::default(),
    };
    if stall.is_some() {
        // The scenario is over: its tasks go now. A stalled task cannot act
        // on SIGKILL until it runs, so the scheduler that holds it goes
        // first.
        for r in &mut running {
            let _ = r.child.kill();
        }
        if let Some(sess) = session {
            sess.stop();
        }
    }
    let deadline = ended + EXIT_GRACE.as_nanos() as u64;
    for r in &mut running {
        while r.status.is_none() {
            if let Some(st) = r.child.try_wait()? {
                r.status = Some(st.code().unwrap_or(-1));
                break;
            }
            if now_ns() >= deadline {
                let _ = r.child.kill();
                let _ = r.child.wait();
                errors.push(format!(
                    "a group process did not exit within {} s of its stop time and was killed",
                    EXIT_GRACE.as_secs()
                ));
                r.status = Some(-1);
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    let mut groups = Vec::new();
    for (i, r) in running.iter().enumerate() {
        let outcome: Option<GroupOutcome> = std::fs::read(&r.out)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok());
        if let Some(o) = &outcome {
            errors.extend(o.errors.iter().map(|e| format!("group {}: {e}", o.name)));
        } else if stall.is_none() {
            errors.push(format!("group {} wrote no outcome", s.groups[i].name));
        }
        groups.push(GroupResult {
            name: s.groups[i].name.clone(),
            probe: snapshot.groups.get(i).cloned().unwrap_or_default(),
            outcome,
            exit_status: r.status,
        });
    }
    if snapshot.nr_dropped > 0 {
        errors.push(format!(
            "the probe could not track {} task(s) (its task map was full)",
            snapshot.nr_dropped
        ));
    }
    Ok(Pass {
        label: label.to_string(),
        t0_ns: t0,
        window_start_ns: window_start,
        window_end_ns: window_end,
        ended_at_ns: ended.saturating_sub(t0),
        groups,
        stall,
        still_waiting: waiting
            .into_iter()
            .map(|w| StillWaiting {
                tid: w.tid,
                group: group_name(w.group),
                comm: comm_of(w.tid),
                waited_ns: w.waited_ns,
            })
            .collect(),
        probe_events: snapshot.nr_events,
        probe_dropped: snapshot.nr_dropped,
        errors,
    })
}

/// One round of the probe-overhead benchmark.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BenchRound {
    pub probe: bool,
    /// Iterations per second of the scenario's first group, in its window.
    pub per_sec: f64,
}

/// Runs the scenario `rounds` times with the probe loaded and tracking it
/// and `rounds` times with no probe at all, interleaved (with, without,
/// with, ...) so drift hits both alike (`scx-harness bench probe`).
pub fn bench_probe(spec: &AgentSpec, rounds: usize, dir: &Path) -> Result<Vec<BenchRound>> {
    let cgroups = Cgroups::create(&spec.scenario)?;
    let mut out = Vec::new();
    for i in 0..rounds * 2 {
        let with = i % 2 == 0;
        let mut probe = if with { Some(Probe::load()?) } else { None };
        let pass = run_pass(spec, "bench", probe.as_mut(), &cgroups, None, dir)?;
        drop(probe);
        if !pass.errors.is_empty() {
            anyhow::bail!("round {i}: {}", pass.errors.join("; "));
        }
        let g = pass.groups.first().context("the scenario has no group")?;
        out.push(BenchRound {
            probe: with,
            per_sec: g.iterations_window() as f64 / pass.window().as_secs_f64(),
        });
    }
    Ok(out)
}
