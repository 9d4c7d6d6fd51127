//! `scx-harness dev`: the scheduler author's edit loop. One VM is booted
//! and kept (a serving `runner::Live` session); the scheduler's sources
//! are watched (`watch`, inotify); every save is rebuilt (`source`), and a
//! build that succeeds is swapped into the VM and run on the scenarios,
//! `--runs` times, interleaved with the previous good build, with a
//! verdict per run and each key metric's change against the previous build
//! and against the baseline build (the session's first, or the one marked)
//! by `compare`'s statistics. A build that fails shows the compiler's
//! lines and keeps the VM and the last good build; a VM that ends (a
//! kernel crash, a cell past its deadline) is booted again, one whose
//! boot failed is not.
//!
//! Each build is `RUN/builds/N/` (the build's log and snapshot, a
//! directory per cell run); `RUN/session.log` is what was printed and
//! `RUN/session.jsonl` a line per build (build time, verdicts, timings,
//! deltas).
//!
//! Knows the runner's serving session, cells, `compare` and the sources;
//! not the command line.

pub mod source;
pub mod watch;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde::Serialize;

use crate::cell::Planned;
use crate::error::{fail, Failure};
use crate::kernel::{Cache, Kernel};
use crate::progress::Progress;
use crate::report::{CellResult, CellVerdict};
use crate::runner::{CellTiming, Live, Session};
use crate::scenario::Loaded;
use crate::scheduler::build::Built;
use crate::stats::Verdict;
use source::DevSource;

/// A command typed at the terminal (or piped in), one per line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Another round of the current build (interleaved with the previous).
    Rerun,
    /// Run this scenario (a bundled name or a file) from now on.
    Scenario(String),
    /// The current build is the baseline from now on.
    Baseline,
    Quit,
    Help,
}

/// The commands, for `help` and the start.
pub const COMMANDS: &str = "commands: r (rerun), s SCENARIO (switch scenario), b (mark the current build as the baseline), q (quit), h (help)";

/// One line of input as a command.
pub fn parse_command(line: &str) -> std::result::Result<Command, String> {
    let mut words = line.split_whitespace();
    let cmd = match words.next() {
        Some("r" | "rerun") => Command::Rerun,
        Some("b" | "baseline") => Command::Baseline,
        Some("q" | "quit" | "exit") => Command::Quit,
        Some("h" | "help" | "?") => Command::Help,
        Some("s" | "scenario") => match words.next() {
            Some(s) => Command::Scenario(s.to_string()),
            None => return Err("`s` needs a scenario: s NAME|FILE".into()),
        },
        Some(other) => return Err(format!("unknown command `{other}`; {COMMANDS}")),
        None => return Err(COMMANDS.into()),
    };
    match words.next() {
        Some(extra) => Err(format!("unexpected `{extra}`; {COMMANDS}")),
        None => Ok(cmd),
    }
}

/// What the loop waits for.
pub enum Input {
    /// A source file changed.
    Changed(PathBuf),
    Command(Command),
    /// A line that is not a command (the message says why).
    Bad(String),
    /// Standard input ended: no more commands (the loop goes on).
    Closed,
}

/// What the loop is asked to do.
pub struct Options {
    /// Scenario runs per build (each interleaved with one of the previous
    /// good build when there is one and `runs` > 1).
    pub runs: usize,
    pub alpha: f64,
    pub noise: f64,
    /// End after this many builds (failed ones included).
    pub max_builds: Option<usize>,
}

/// One build of the session.
struct Build {
    n: usize,
    built: Option<Built>,
    /// Runs per scenario name, in order.
    samples: BTreeMap<String, Vec<CellResult>>,
}

/// A line of `session.jsonl`.
#[derive(Serialize)]
struct BuildLine<'a> {
    build: usize,
    at: u64,
    changed: &'a [String],
    build_s: f64,
    built: bool,
    version: Option<&'a str>,
    errors: &'a [String],
    cells: Vec<CellLine>,
    deltas: Vec<DeltaLine>,
}

#[derive(Serialize)]
struct CellLine {
    build: usize,
    scenario: String,
    verdict: CellVerdict,
    summary: String,
    dir: PathBuf,
    wall_s: f64,
    attach_ms: Option<u64>,
    timing: Option<CellTiming>,
    /// Wall time beyond the scenario's own duration (and a fair-class
    /// pass's), seconds.
    beyond_s: f64,
}

#[derive(Serialize)]
struct DeltaLine {
    scenario: String,
    against: usize,
    what: &'static str,
    metric: String,
    baseline: f64,
    candidate: f64,
    ratio: f64,
    p_value: f64,
    verdict: Verdict,
}

/// The loop's state.
pub struct Dev<'a> {
    pub source: DevSource,
    pub kernel: &'a Kernel,
    pub cache: &'a Cache,
    pub session: Session<'a>,
    pub scenarios: Vec<Loaded>,
    pub dir: PathBuf,
    pub opts: Options,
    builds: Vec<Build>,
    /// Index into `builds` of the baseline (the first good build, or the
    /// one marked).
    baseline: Option<usize>,
    live: Option<Live<'a>>,
    /// VMs booted so far (the session's `vm-N` directories).
    vms: usize,
    /// Scenario hashes already run in this VM.
    seen_in_vm: std::collections::HashSet<String>,
    log: std::fs::File,
    jsonl: std::fs::File,
}

impl<'a> Dev<'a> {
    pub fn new(
        source: DevSource,
        kernel: &'a Kernel,
        cache: &'a Cache,
        session: Session<'a>,
        scenarios: Vec<Loaded>,
        dir: PathBuf,
        opts: Options,
    ) -> Result<Dev<'a>> {
        let open = |name: &str| {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(dir.join(name))
                .with_context(|| format!("creating {}", dir.join(name).display()))
        };
        Ok(Dev {
            log: open("session.log")?,
            jsonl: open("session.jsonl")?,
            source,
            kernel,
            cache,
            session,
            scenarios,
            dir,
            opts,
            builds: Vec::new(),
            baseline: None,
            live: None,
            vms: 0,
            seen_in_vm: Default::default(),
        })
    }

    /// Prints a line for the person at the terminal and keeps it in the
    /// session log.
    fn say(&mut self, line: impl AsRef<str>) {
        let line = line.as_ref();
        println!("{line}");
        let _ = std::io::stdout().flush();
        let _ = writeln!(self.log, "{line}");
    }

    /// Every cell run so far, for the run directory's results.
    pub fn results(&self) -> Vec<CellResult> {
        self.builds
            .iter()
            .flat_map(|b| b.samples.values().flatten().cloned())
            .collect()
    }

    /// Runs the loop until `quit`, `max_builds`, an interrupt, or a VM
    /// that ended before it started a cell. Returns the exit code: 0, or 1 when
    /// the last build failed to build or failed a check.
    pub fn run(&mut self, inputs: &Receiver<Input>) -> Result<i32> {
        self.say(format!(
            "dev: {} ({}), watching {}",
            self.source.def.name,
            match &self.source.recipe {
                source::Recipe::Cargo { package, .. } => format!("cargo package {package}"),
                source::Recipe::BpfC { file } => format!("BPF object from {}", file.display()),
                source::Recipe::KernelExample { name, .. } => format!("kernel example {name}"),
            },
            self.source
                .watch
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ));
        self.say(format!(
            "dev: scenarios {}; {} run(s) per build; session in {}",
            self.scenario_names().join(", "),
            self.opts.runs,
            self.dir.display()
        ));
        self.say(format!("dev: {COMMANDS}"));
        self.ensure_vm()?;
        self.build_and_run(Vec::new())?;
        // Commands typed while a save settled, handled after its build.
        let mut pending: std::collections::VecDeque<Input> = Default::default();
        loop {
            if self.done() {
                break;
            }
            let input = match pending.pop_front() {
                Some(i) => i,
                None => match inputs.recv_timeout(Duration::from_millis(200)) {
                    Ok(i) => i,
                    Err(RecvTimeoutError::Timeout) => continue,
                    Err(RecvTimeoutError::Disconnected) => break,
                },
            };
            match input {
                Input::Changed(p) => {
                    let changed = self.settle(inputs, vec![p], &mut pending);
                    self.build_and_run(changed)?;
                }
                Input::Command(Command::Quit) => break,
                Input::Command(Command::Help) => self.say(COMMANDS),
                Input::Command(Command::Rerun) => self.rerun()?,
                Input::Command(Command::Baseline) => self.mark_baseline(),
                Input::Command(Command::Scenario(s)) => self.switch(&s),
                Input::Bad(why) => self.say(format!("dev: {why}")),
                Input::Closed => tracing::debug!("standard input ended; watching on"),
            }
        }
        self.stop()
    }

    fn done(&self) -> bool {
        crate::process::interrupted()
            || self.opts.max_builds.is_some_and(|m| self.builds.len() >= m)
    }

    /// Waits until the sources have been quiet for 100 ms (one save is a
    /// burst of events), collecting the changed paths; anything else that
    /// comes meanwhile goes to `pending`, for after the build.
    fn settle(
        &mut self,
        inputs: &Receiver<Input>,
        mut changed: Vec<PathBuf>,
        pending: &mut std::collections::VecDeque<Input>,
    ) -> Vec<String> {
        while let Ok(i) = inputs.recv_timeout(Duration::from_millis(100)) {
            match i {
                Input::Changed(p) => changed.push(p),
                other => pending.push_back(other),
            }
        }
        let mut names: Vec<String> = changed.iter().map(|p| p.display().to_string()).collect();
        names.sort();
        names.dedup();
        names
    }

    fn scenario_names(&self) -> Vec<String> {
        self.scenarios
            .iter()
            .map(|s| s.scenario.name.clone())
            .collect()
    }

    /// Builds the sources as they are now, and runs the build if it
    /// built.
    fn build_and_run(&mut self, changed: Vec<String>) -> Result<()> {
        let n = self.builds.len() + 1;
        let out = self.dir.join("builds").join(n.to_string());
        let mut progress = Progress::new("dev build");
        let started = Instant::now();
        let entry = self.kernel.entry.as_ref();
        let result = self.source.build(&out, entry, self.cache, &mut progress);
        drop(progress);
        let build_s = started.elapsed().as_secs_f64();
        let what = if changed.is_empty() {
            "sources as they are".to_string()
        } else {
            changed.join(", ")
        };
        match result {
            Err(f) => {
                if f.interrupted {
                    return Ok(());
                }
                self.say(format!(
                    "build {n}: FAILED in {build_s:.1} s ({what}); the VM and build {} stay",
                    self.last_good()
                        .map_or("none".to_string(), |i| self.builds[i].n.to_string())
                ));
                for l in &f.lines {
                    self.say(format!("  {l}"));
                }
                self.say(format!("  full log: {}", f.log.display()));
                self.builds.push(Build {
                    n,
                    built: None,
                    samples: BTreeMap::new(),
                });
                self.write_line(n, &changed, build_s, &f.lines, Vec::new(), Vec::new());
                Ok(())
            }
            Ok(built) => {
                self.say(format!(
                    "build {n}: built in {build_s:.1} s ({what}), version {}",
                    built.version
                ));
                let prev = self.last_good();
                self.builds.push(Build {
                    n,
                    built: Some(built),
                    samples: BTreeMap::new(),
                });
                let idx = self.builds.len() - 1;
                if self.baseline.is_none() {
                    self.baseline = Some(idx);
                }
                let cells = self.round(idx, prev, self.opts.runs)?;
                let deltas = self.report_deltas(idx, prev);
                self.say_verdict(n, &cells);
                self.write_line(n, &changed, build_s, &[], cells, deltas);
                Ok(())
            }
        }
    }

    /// The build's verdict: `pass` when each of its runs passed, else the
    /// first verdict that is not, with how many runs had it.
    fn say_verdict(&mut self, n: usize, cells: &[CellLine]) {
        let own: Vec<&CellLine> = cells.iter().filter(|c| c.build == n).collect();
        let bad: Vec<&&CellLine> = own
            .iter()
            .filter(|c| c.verdict != CellVerdict::Pass)
            .collect();
        let line = match bad.first() {
            None => format!("build {n}: pass ({} run(s))", own.len()),
            Some(c) => format!(
                "build {n}: {} ({} of {} run(s)): {}",
                c.verdict.label(),
                bad.len(),
                own.len(),
                c.summary
            ),
        };
        self.say(line);
    }

    /// The index of the last build that built.
    fn last_good(&self) -> Option<usize> {
        self.builds.iter().rposition(|b| b.built.is_some())
    }

    /// `runs` runs of build `idx` on every scenario, each interleaved with
    /// one of `prev` (ABBA) when there is a previous build and more than
    /// one run is asked for.
    fn round(&mut self, idx: usize, prev: Option<usize>, runs: usize) -> Result<Vec<CellLine>> {
        let mut lines = Vec::new();
        for run in 0..runs {
            for sc in 0..self.scenarios.len() {
                let order: Vec<usize> = match prev {
                    Some(p) if runs > 1 && run % 2 == 0 => vec![idx, p],
                    Some(p) if runs > 1 => vec![p, idx],
                    _ => vec![idx],
                };
                for b in order {
                    if crate::process::interrupted() {
                        return Ok(lines);
                    }
                    lines.push(self.run_cell(b, sc)?);
                }
            }
        }
        // Ready for the next save at once.
        self.ensure_vm()?;
        Ok(lines)
    }

    /// Boots the VM: the first time, or again when the session ended (a
    /// kernel crash, a cell past its deadline). A VM that ended before any
    /// cell started in it (its boot failed) is not booted again: that is an
    /// error, of the class of how it ended (`runner::keep_serving`).
    fn ensure_vm(&mut self) -> Result<()> {
        if crate::process::interrupted() {
            return Ok(());
        }
        let before = self.vms;
        let ended = crate::runner::keep_serving(
            &mut self.live,
            &mut self.vms,
            &self.scenarios,
            &self.session,
        )?;
        if self.vms != before {
            self.seen_in_vm.clear();
        }
        if let Some(what) = ended {
            self.say(format!("dev: the VM ended ({what}); booting it again"));
        }
        Ok(())
    }

    /// Runs build `b` on scenario `sc` once, in the session's VM (booted
    /// again if the last one ended).
    fn run_cell(&mut self, b: usize, sc: usize) -> Result<CellLine> {
        self.ensure_vm()?;
        let build = &self.builds[b];
        let built = build.built.as_ref().expect("a good build");
        let scenario = &self.scenarios[sc];
        let name = scenario.scenario.name.clone();
        let k = build
            .samples
            .get(&scenario.scenario.name)
            .map_or(0, Vec::len);
        let dir = self
            .dir
            .join("builds")
            .join(build.n.to_string())
            .join(&scenario.scenario.name)
            .join(format!("{:03}", k + 1));
        let planned = Planned {
            scenario,
            scheduler: built,
            args: Vec::new(),
            swap_to: Vec::new(),
            recording: crate::agent::PassRecording::Off,
            dir,
        };
        let started = Instant::now();
        let live = self.live.as_mut().expect("a session");
        let r = live.run(&planned)?;
        let wall = started.elapsed().as_secs_f64();
        let timing = live.timing();
        let ended = live.ended().is_some();
        // The scenario's own time: its pass under the scheduler, and the
        // first time in this VM a pass under the fair class (the agent
        // keeps it for the VM's later cells) and an application's warm-up.
        let first_here = self.seen_in_vm.insert(scenario.hash.clone());
        let passes = 1
            + usize::from(first_here && scenario.scenario.needs_fair_baseline())
            + usize::from(first_here && scenario.scenario.runs_applications());
        let own = scenario.scenario.duration.as_secs_f64() * passes as f64;
        let attach_ms = r
            .agent
            .as_ref()
            .and_then(|a| a.scheduler.as_ref())
            .and_then(|s| s.attach_ms);
        let line = CellLine {
            build: build.n,
            scenario: name.clone(),
            verdict: r.verdict,
            summary: r.summary.clone(),
            dir: r.dir.clone(),
            wall_s: wall,
            attach_ms,
            timing,
            beyond_s: (wall - own).max(0.0),
        };
        let n = build.n;
        let text = format!(
            "build {n} run {} {}: {}  ({wall:.1} s: scenario {own:.1} s, load {}, judging {}, other {:.2} s){}",
            k + 1,
            line.scenario,
            r.verdict.label(),
            attach_ms.map_or("-".into(), |m| format!("{:.2} s", m as f64 / 1000.0)),
            timing.map_or("-".into(), |t| format!("{:.2} s", t.judging_s)),
            (wall - own - attach_ms.unwrap_or(0) as f64 / 1000.0
                - timing.map_or(0.0, |t| t.judging_s))
            .max(0.0),
            if r.verdict == CellVerdict::Pass {
                String::new()
            } else {
                format!("\n  {}\n  evidence: {}", r.summary, r.dir.display())
            }
        );
        self.say(text);
        if ended {
            self.say(format!(
                "dev: the VM ended during build {n}'s run: {}",
                r.summary
            ));
        }
        self.builds[b].samples.entry(name).or_default().push(r);
        Ok(line)
    }

    /// Prints each key metric's change of build `idx` against `prev` and
    /// against the baseline, with `compare`'s statistics.
    fn report_deltas(&mut self, idx: usize, prev: Option<usize>) -> Vec<DeltaLine> {
        let mut out = Vec::new();
        let mut against = Vec::new();
        if let Some(p) = prev {
            against.push((p, "previous"));
        }
        if let Some(base) = self.baseline.filter(|b| *b != idx && Some(*b) != prev) {
            against.push((base, "baseline"));
        }
        for (other, what) in against {
            for name in self.scenario_names() {
                let a: Vec<&CellResult> = self.builds[other]
                    .samples
                    .get(&name)
                    .map(|v| v.iter().collect())
                    .unwrap_or_default();
                let b: Vec<&CellResult> = self.builds[idx]
                    .samples
                    .get(&name)
                    .map(|v| v.iter().collect())
                    .unwrap_or_default();
                if a.is_empty() || b.is_empty() {
                    continue;
                }
                let c = crate::compare::compare_scenario(&a, &b, self.opts.alpha, self.opts.noise);
                let (na, nb) = (self.builds[other].n, self.builds[idx].n);
                let mut lines = vec![format!(
                    "build {nb} vs build {na} ({what}), {name}, {} vs {} run(s):",
                    b.len(),
                    a.len()
                )];
                for o in &c.outright {
                    let whose = if o.side == "candidate" { nb } else { na };
                    lines.push(format!(
                        "  build {whose} failed outright: {}\n    evidence: {}",
                        o.reason,
                        o.dir.display()
                    ));
                }
                let mut any_significant = false;
                for m in c.metrics.iter().filter(|m| m.key) {
                    let st = &m.stats;
                    let show = |v| crate::metric::show(&m.name, &m.unit, v);
                    any_significant |= matches!(
                        st.verdict,
                        Verdict::Better | Verdict::Worse | Verdict::Changed
                    );
                    lines.push(format!(
                        "  {:<28} {:>10} -> {:<10} x{:.3} {:>17} p={:.4}  {}",
                        m.name,
                        show(st.median_a),
                        show(st.median_b),
                        st.ratio,
                        crate::compare::interval(st),
                        st.p_value,
                        st.verdict.label()
                    ));
                    out.push(DeltaLine {
                        scenario: name.clone(),
                        against: na,
                        what,
                        metric: m.name.clone(),
                        baseline: st.median_a,
                        candidate: st.median_b,
                        ratio: st.ratio,
                        p_value: st.p_value,
                        verdict: st.verdict,
                    });
                }
                if c.outright.is_empty() && !any_significant {
                    let why = match c.blind(self.opts.alpha) {
                        // Too few to call anything, however far apart.
                        Some(_) => "none can be with",
                        None => "no change is significant yet with",
                    };
                    lines.push(format!(
                        "  {why} {} vs {} run(s) (the key metrics tested together at alpha {}); `r` adds a round, --runs N more per build",
                        b.len(),
                        a.len(),
                        self.opts.alpha
                    ));
                }
                for l in lines {
                    self.say(l);
                }
            }
        }
        out
    }

    fn rerun(&mut self) -> Result<()> {
        let Some(idx) = self.last_good() else {
            self.say("dev: no build to rerun yet");
            return Ok(());
        };
        let prev = self.builds[..idx].iter().rposition(|b| b.built.is_some());
        let runs = self.opts.runs.max(if prev.is_some() { 2 } else { 1 });
        let cells = self.round(idx, prev, runs)?;
        let deltas = self.report_deltas(idx, prev);
        let n = self.builds[idx].n;
        self.say_verdict(n, &cells);
        self.write_line(n, &["(rerun)".into()], 0.0, &[], cells, deltas);
        Ok(())
    }

    fn mark_baseline(&mut self) {
        match self.last_good() {
            Some(i) => {
                self.baseline = Some(i);
                let n = self.builds[i].n;
                self.say(format!("dev: build {n} is the baseline from now on"));
            }
            None => self.say("dev: no build to mark yet"),
        }
    }

    fn switch(&mut self, name: &str) {
        let loaded = match crate::scenario::resolve(name) {
            Ok(l) => l,
            Err(e) => {
                self.say(format!("dev: {e:#}"));
                return;
            }
        };
        let misfit = self.live.as_ref().and_then(|l| l.misfit(&loaded.scenario));
        if let Some(why) = misfit {
            self.say(format!(
                "dev: {why}\n  fix: quit and start `dev` with it among its scenarios"
            ));
            return;
        }
        self.say(format!(
            "dev: scenario {} from now on; `r` runs it on the current build",
            loaded.scenario.name
        ));
        self.scenarios = vec![loaded];
    }

    fn write_line(
        &mut self,
        n: usize,
        changed: &[String],
        build_s: f64,
        errors: &[String],
        cells: Vec<CellLine>,
        deltas: Vec<DeltaLine>,
    ) {
        let b = self.builds.iter().find(|b| b.n == n);
        let line = BuildLine {
            build: n,
            at: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            changed,
            build_s,
            built: b.is_some_and(|b| b.built.is_some()),
            version: b.and_then(|b| b.built.as_ref()).map(|b| b.version.as_str()),
            errors,
            cells,
            deltas,
        };
        if let Ok(j) = serde_json::to_string(&line) {
            let _ = writeln!(self.jsonl, "{j}");
        }
    }

    /// Ends the session: the VM asked to quit and waited for. Exit code 1
    /// when the last build failed to build or its last run failed.
    fn stop(&mut self) -> Result<i32> {
        if let Some(live) = self.live.take() {
            let end = live.finish()?;
            tracing::debug!("session ended: {:?}", end.outcome);
        }
        let last = self.builds.last();
        let failed = match last {
            None => false,
            Some(b) if b.built.is_none() => true,
            Some(b) => b
                .samples
                .values()
                .filter_map(|v| v.last())
                .any(|r| r.verdict != CellVerdict::Pass),
        };
        self.say(format!(
            "dev: {} build(s), {} run(s); session in {}",
            self.builds.len(),
            self.builds
                .iter()
                .flat_map(|b| b.samples.values())
                .map(Vec::len)
                .sum::<usize>(),
            self.dir.display()
        ));
        Ok(if crate::process::interrupted() {
            130
        } else if failed {
            1
        } else {
            0
        })
    }
}

/// Reads commands from standard input, a line each, until it ends.
pub fn read_commands(tx: std::sync::mpsc::Sender<Input>) {
    std::thread::spawn(move || {
        let stdin = std::io::stdin();
        let mut line = String::new();
        loop {
            line.clear();
            match stdin.read_line(&mut line) {
                Ok(0) | Err(_) => {
                    let _ = tx.send(Input::Closed);
                    return;
                }
                Ok(_) => {
                    if line.trim().is_empty() {
                        continue;
                    }
                    let input = match parse_command(&line) {
                        Ok(c) => Input::Command(c),
                        Err(why) => Input::Bad(why),
                    };
                    if tx.send(input).is_err() {
                        return;
                    }
                }
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_are_parsed_and_bad_ones_explained() {
        assert_eq!(parse_command("r\n"), Ok(Command::Rerun));
        assert_eq!(parse_command("q"), Ok(Command::Quit));
        assert_eq!(parse_command("b"), Ok(Command::Baseline));
        assert_eq!(
            parse_command("s wake-pingpong"),
            Ok(Command::Scenario("wake-pingpong".into()))
        );
        assert!(parse_command("s").unwrap_err().contains("needs a scenario"));
        assert!(parse_command("x")
            .unwrap_err()
            .contains("unknown command `x`"));
        assert!(parse_command("r now")
            .unwrap_err()
            .contains("unexpected `now`"));
    }
}

/// The build a result of a `dev` session belongs to: its directory is
/// `SESSION/builds/N/SCENARIO/RUN`.
fn build_of(session: &Path, r: &CellResult) -> Option<usize> {
    let rel = r.dir.strip_prefix(session).ok()?;
    let mut parts = rel.components();
    (parts.next()?.as_os_str() == "builds")
        .then(|| parts.next()?.as_os_str().to_str()?.parse().ok())
        .flatten()
}

/// A finished `dev` session replayed as a `compare`: every run of build
/// `candidate` against every run of build `baseline` (default: the first
/// and the last build that ran), per scenario, with `compare`'s
/// statistics; nothing boots. Errors (bad input) name the session and the
/// builds it has.
pub fn replay(
    session: &Path,
    baseline: Option<usize>,
    candidate: Option<usize>,
    alpha: f64,
    noise: f64,
) -> Result<crate::compare::CompareReport> {
    let session = std::fs::canonicalize(session).map_err(|e| {
        fail(
            Failure::BadInput,
            format!(
                "{}: {e}\n  fix: name the directory a `dev` session wrote",
                session.display()
            ),
        )
    })?;
    let results = crate::report::load_run(&session)?;
    let mut by_build: BTreeMap<usize, Vec<&CellResult>> = BTreeMap::new();
    for r in &results {
        if let Some(n) = build_of(&session, r) {
            by_build.entry(n).or_default().push(r);
        }
    }
    let have: Vec<String> = by_build.keys().map(|n| n.to_string()).collect();
    let pick = |n: Option<usize>, default: Option<&usize>, flag: &str| -> Result<usize> {
        let n = n.or(default.copied()).ok_or_else(|| {
            fail(
                Failure::BadInput,
                format!(
                    "{}: no build of this session ran a scenario\n  fix: name a `dev` session's directory",
                    session.display()
                ),
            )
        })?;
        if !by_build.contains_key(&n) {
            return Err(fail(
                Failure::BadInput,
                format!(
                    "{}: build {n} ran no scenario (builds that did: {})\n  fix: {flag} one of them",
                    session.display(),
                    have.join(", ")
                ),
            ));
        }
        Ok(n)
    };
    let a = pick(baseline, by_build.keys().next(), "--baseline-build")?;
    let b = pick(candidate, by_build.keys().next_back(), "--candidate-build")?;
    let mut scenarios: Vec<&str> = by_build[&a]
        .iter()
        .map(|r| r.scenario.as_str())
        .filter(|s| by_build[&b].iter().any(|r| r.scenario == *s))
        .collect();
    scenarios.sort();
    scenarios.dedup();
    let variant = |n: usize| {
        let first = by_build[&n][0];
        crate::compare::Variant {
            label: format!("build {n} ({})", first.scheduler_version),
            scheduler: first.scheduler.clone(),
            args: first.scheduler_args.clone(),
            kernel: first.kernel_id.clone(),
        }
    };
    let runs = |n: usize, sc: &str| -> Vec<&CellResult> {
        by_build[&n]
            .iter()
            .copied()
            .filter(|r| r.scenario == sc)
            .collect()
    };
    Ok(crate::compare::CompareReport {
        schema: crate::compare::SCHEMA.into(),
        baseline: variant(a),
        candidate: variant(b),
        alpha,
        noise,
        runs: "as the session ran them".into(),
        stopped: format!("replayed from {}", session.display()),
        scenarios: scenarios
            .iter()
            .map(|sc| crate::compare::compare_scenario(&runs(a, sc), &runs(b, sc), alpha, noise))
            .collect(),
    })
}

#[cfg(test)]
mod replay_tests {
    use super::*;

    /// A session directory with `delays[n]` ms runs for build n + 1.
    fn session(dir: &Path, delays: &[&[u64]]) {
        let mut all = Vec::new();
        for (b, ds) in delays.iter().enumerate() {
            for (k, d) in ds.iter().enumerate() {
                let mut r = crate::compare::sample_result(*d, CellVerdict::Pass);
                r.dir = dir
                    .join("builds")
                    .join((b + 1).to_string())
                    .join(&r.scenario)
                    .join(format!("{:03}", k + 1));
                all.push(r);
            }
        }
        crate::kernel::cache::write_atomic(
            &dir.join("results.json"),
            &serde_json::to_vec(&all).unwrap(),
        )
        .unwrap();
    }

    #[test]
    fn a_session_is_replayed_as_a_comparison_of_two_builds() {
        let t = tempfile::tempdir().unwrap();
        let dir = std::fs::canonicalize(t.path()).unwrap();
        session(&dir, &[&[1, 1, 1, 1], &[1, 1, 1, 1], &[5, 5, 5, 5]]);
        let c = replay(&dir, None, None, 0.05, 0.05).unwrap();
        assert!(
            c.baseline.label.starts_with("build 1 "),
            "{}",
            c.baseline.label
        );
        assert!(
            c.candidate.label.starts_with("build 3 "),
            "{}",
            c.candidate.label
        );
        assert_eq!(c.scenarios.len(), 1);
        assert_eq!(c.scenarios[0].runs_candidate, 4);
        assert!(c.regressed(), "{}", crate::compare::table(&c));
        let same = replay(&dir, Some(1), Some(2), 0.05, 0.05).unwrap();
        assert!(!same.regressed(), "{}", crate::compare::table(&same));
        let e = replay(&dir, Some(7), None, 0.05, 0.05).unwrap_err();
        assert_eq!(crate::classify(&e), Some(Failure::BadInput));
        assert!(
            format!("{e:#}").contains("builds that did: 1, 2, 3"),
            "{e:#}"
        );
    }
}
