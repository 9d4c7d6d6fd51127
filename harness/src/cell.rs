//! Cells (a scenario under a scheduler), host side: what the agent is
//! asked for a cell, and the judging of what it measured with `checks`
//! into the cell's result document, written with its evidence (its share
//! of the console, the scheduler's output, the scenario as run).
//!
//! Knows the scheduler lifecycle's guest spec, the scenario and the
//! protocol's file names; `runner` runs sessions and calls it.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};

use crate::agent::{self, AgentOutput, AgentSpec};
use crate::checks::{self, Evidence};
use crate::kernel::cache::write_atomic;
use crate::protocol::{self, Mark};
use crate::report::{CellResult, CellVerdict, SCHEMA};
use crate::scenario::Loaded;
use crate::scheduler::build::Built;
use crate::scheduler::lifecycle::{expected_failure, GuestSpec};
use crate::vm::console::{self, CrashLine};
use crate::vm::SessionEnd;

/// One cell to run.
#[derive(Clone)]
pub struct Planned<'a> {
    pub scenario: &'a Loaded,
    pub scheduler: &'a Built,
    /// Extra scheduler arguments (after the registry's).
    pub args: Vec<String>,
    /// What each of the scenario's swaps attaches, in order.
    pub swap_to: Vec<&'a Built>,
    /// Where the cell's result, console and files go.
    pub dir: PathBuf,
    /// What is recorded of the scheduler pass's groups
    /// (`AgentSpec::recording`).
    pub recording: agent::PassRecording,
}

impl Planned<'_> {
    pub fn id(&self) -> String {
        format!(
            "{}/{}",
            self.scheduler.def.name, self.scenario.scenario.name
        )
    }

    /// What the agent runs for this cell; `host_cpus`: on the machine
    /// itself, on these CPUs, where the machine's tasks are watched and a
    /// stall is detached through the kernel at once.
    pub(crate) fn agent_spec(&self, host_cpus: Option<&[u32]>) -> AgentSpec {
        let s = &self.scenario.scenario;
        AgentSpec {
            recording: self.recording,
            sysrq_on_stall: host_cpus.is_some(),
            apps_dir: Some(crate::paths::apps_dir()),
            scenario: match host_cpus {
                Some(cpus) => crate::host::guarded(s, cpus),
                None => s.clone(),
            },
            scheduler: GuestSpec::for_built(self.scheduler, &self.args, None),
            baseline: s.needs_fair_baseline(),
            swaps: s
                .swaps
                .iter()
                .zip(&self.swap_to)
                .map(|(sw, b)| agent::SwapPlan {
                    at_ns: sw.at.as_nanos() as u64,
                    to: GuestSpec::for_built(b, &[], None),
                })
                .collect(),
        }
    }
}

/// The part of the console log between cell `i`'s markers (to the end when
/// it never ended); empty when the cell never began.
pub(crate) fn cell_console(console_log: &Path, i: usize, id: &str) -> String {
    let text = console::read(console_log);
    let (begin, end) = (
        protocol::marker(i, id, Mark::Begins),
        protocol::marker(i, id, Mark::Ends),
    );
    match protocol::marked_lines(&text, &begin, &end) {
        Some(part) => {
            let lines: Vec<&str> = text.lines().skip(part.start).take(part.len()).collect();
            lines.join("\n") + "\n"
        }
        None => String::new(),
    }
}

/// What every cell of a session shares.
pub(crate) struct JudgeCtx {
    pub shared: PathBuf,
    pub kernel: String,
    pub kernel_id: String,
    pub kernel_name: String,
    pub accel: String,
    pub target: crate::report::Target,
    /// On a host: the CPUs its cells run on.
    pub host_cpus: Option<Vec<u32>>,
}

fn mtime_secs(p: &Path) -> Option<f64> {
    let t = std::fs::metadata(p).ok()?.modified().ok()?;
    Some(t.duration_since(UNIX_EPOCH).ok()?.as_secs_f64())
}

/// The first failure of an application under the fair class, if one
/// failed there.
fn fair_app_failure(a: &AgentOutput) -> Option<String> {
    let fair = a.pass(crate::agent::PassKind::Fair)?;
    fair.groups.iter().find_map(|g| {
        let f = g.apps().find_map(|a| a.failure.as_deref())?;
        Some(format!("group {}: {f}", g.name))
    })
}

/// The verdict on what the agent measured (none: an error), its summary
/// line(s) and every check's outcome, for the scenario `s` as it ran.
fn verdict(
    s: &crate::scenario::Scenario,
    agent: Option<&AgentOutput>,
    crashes: &[CrashLine],
    claims: Option<&[crate::scenario::Property]>,
    partial: bool,
) -> (CellVerdict, String, Vec<checks::Outcome>) {
    match agent {
        None => (
            CellVerdict::Error,
            "the guest agent wrote no result for this cell".to_string(),
            Vec::new(),
        ),
        Some(a) => {
            let outcomes = checks::evaluate(&Evidence {
                scenario: s,
                agent: a,
                crashes,
                claims,
                partial,
            });
            let failed: Vec<&checks::Outcome> = outcomes.iter().filter(|o| o.fails()).collect();
            let pass_errors: Vec<String> = a.passes.iter().flat_map(|p| p.errors.clone()).collect();
            if let Some(e) = &a.error {
                (
                    CellVerdict::Error,
                    format!("the guest agent failed: {e}"),
                    outcomes,
                )
            } else if failed.is_empty()
                && !a
                    .passes
                    .iter()
                    .any(|p| p.kind == crate::agent::PassKind::Scheduler)
            {
                // No check failed because nothing ran under the scheduler:
                // the cell measured nothing.
                let why = match &a.scheduler {
                    Some(r)
                        if !matches!(r.verdict, crate::scheduler::lifecycle::Verdict::Clean) =>
                    {
                        format!("{}: {}", r.verdict.label(), r.verdict.why())
                    }
                    _ => "no pass ran under the scheduler".to_string(),
                };
                (
                    CellVerdict::Error,
                    format!("the scenario did not run under the scheduler: {why}"),
                    outcomes,
                )
            } else if let Some(why) = fair_app_failure(a) {
                // The baseline is broken: the scenario or the machine is at
                // fault, and every bound relative to the fair class is
                // unknown. Not the scheduler's failure.
                (
                    CellVerdict::Error,
                    format!("the application failed under the fair class: {why}"),
                    outcomes,
                )
            } else if !pass_errors.is_empty() && failed.is_empty() {
                (
                    CellVerdict::Error,
                    format!("the measurement is incomplete: {}", pass_errors.join("; ")),
                    outcomes,
                )
            } else if failed.is_empty() {
                // What the scheduler does not claim is said, with its
                // numbers, even though it does not fail the cell.
                let unclaimed: Vec<&checks::Outcome> =
                    outcomes.iter().filter(|o| o.unclaimed.is_some()).collect();
                let held = outcomes.len() - unclaimed.len();
                let summary = match unclaimed.is_empty() {
                    true => format!("{held} check(s) passed"),
                    false => {
                        let mut props: Vec<String> = unclaimed.iter().map(|o| o.status()).collect();
                        props.dedup();
                        format!(
                            "{held} check(s) passed; {}\n{}",
                            props.join(", "),
                            unclaimed
                                .iter()
                                .map(|o| o.line())
                                .collect::<Vec<_>>()
                                .join("\n")
                        )
                    }
                };
                (CellVerdict::Pass, summary, outcomes)
            } else {
                (
                    CellVerdict::Fail,
                    failed
                        .iter()
                        .map(|o| o.line())
                        .collect::<Vec<_>>()
                        .join("\n"),
                    outcomes,
                )
            }
        }
    }
}

/// Saves the cell's evidence in its directory: its part of the console,
/// the kernel lines in it, the scenario as run, and the agent's files
/// (`cdir`: the scheduler's and groups' output, agent.json). Returns what
/// could not be saved, for the summary (a full disk does not stop a run).
fn save_evidence(
    c: &Planned,
    console_part: &str,
    s: &crate::scenario::Scenario,
    cdir: &Path,
) -> Vec<String> {
    let mut unsaved: Vec<String> = Vec::new();
    let mut save = |name: &str, bytes: &[u8]| {
        if let Err(e) = std::fs::create_dir_all(&c.dir)
            .map_err(anyhow::Error::from)
            .and_then(|()| write_atomic(&c.dir.join(name), bytes))
        {
            unsaved.push(format!("{name} ({})", e.root_cause()));
        }
    };
    save("console.log", console_part.as_bytes());
    let dmesg: Vec<&str> = console_part
        .lines()
        .filter(|l| l.trim_start().starts_with('['))
        .collect();
    save("dmesg.txt", (dmesg.join("\n") + "\n").as_bytes());
    save(
        "scenario.yaml",
        serde_yaml::to_string(s).unwrap_or_default().as_bytes(),
    );
    for f in std::fs::read_dir(cdir).into_iter().flatten().flatten() {
        let name = f.file_name();
        let name = name.to_string_lossy();
        if name.ends_with(".stdout")
            || name.ends_with(".stderr")
            || name.ends_with(".out")
            || name == protocol::AGENT_OUTPUT
            || name == protocol::WARM_UP_PASS
        {
            if let Err(e) = std::fs::copy(f.path(), c.dir.join(&*name)) {
                unsaved.push(format!("{name} ({e}; still in {})", cdir.display()));
            }
        }
    }
    unsaved
}

/// Judges one cell and writes its directory: result.json, the console part
/// (console.log), the kernel's lines in it (dmesg.txt), the scheduler's
/// output, the scenario as run and what the guest measured.
pub(crate) fn judge(
    c: &Planned,
    agent: Option<AgentOutput>,
    console_part: &str,
    i: usize,
    ctx: &JudgeCtx,
    end: Option<&SessionEnd>,
) -> CellResult {
    // Judged as it ran (on a host, with the machine-wide stall check).
    let ran = c.agent_spec(ctx.host_cpus.as_deref()).scenario;
    let s = &ran;
    let crashes: Vec<CrashLine> = console::scan(console_part);
    let (verdict, summary, checks) = verdict(
        s,
        agent.as_ref(),
        &crashes,
        c.scheduler.def.claims.as_deref(),
        c.scheduler.def.partial,
    );
    let cdir = protocol::cell_dir(&ctx.shared, i);
    let unsaved = save_evidence(c, console_part, s, &cdir);
    let began = mtime_secs(&cdir.join(protocol::STARTED));
    let ended = mtime_secs(&cdir.join(protocol::AGENT_OUTPUT));
    let mut r = CellResult {
        schema: SCHEMA.into(),
        scenario: s.name.clone(),
        scenario_hash: c.scenario.hash.clone(),
        scenario_path: c.scenario.path.clone(),
        scheduler: c.scheduler.def.name.clone(),
        scheduler_version: c.scheduler.version.clone(),
        scheduler_args: c.args.clone(),
        kernel: ctx.kernel.clone(),
        kernel_id: ctx.kernel_id.clone(),
        kernel_name: ctx.kernel_name.clone(),
        accel: ctx.accel.clone(),
        cpus: s.vm.cpus,
        memory: s.vm.memory.clone(),
        host: hostname(),
        started_at: began.map_or_else(now_secs, |b| b as u64),
        elapsed_s: match (began, ended) {
            (Some(b), Some(e)) => (e - b).max(0.0),
            _ => 0.0,
        },
        session_end: end.map(|v| v.outcome.clone()),
        target: ctx.target.clone(),
        verdict,
        summary,
        checks,
        agent,
        console_log: c.dir.join("console.log"),
        dir: c.dir.clone(),
    };
    // A failure the registry expects of this scheduler (its own bug, written
    // down) is still a failure; the summary says it is the known one. The
    // registry is asked about the cell's scheduler's own lifecycle verdict.
    let def = &c.scheduler.def;
    let expected = r
        .agent
        .as_ref()
        .and_then(|a| a.scheduler.as_ref())
        .filter(|rep| r.verdict == CellVerdict::Fail && rep.name == def.name)
        .and_then(|rep| expected_failure(def, &rep.verdict, &rep.loader_log));
    if let Some(reason) = expected {
        r.summary = format!(
            "{}\nknown issue of {} (schedulers/registry.yaml): {}",
            r.summary,
            def.name,
            reason.split_whitespace().collect::<Vec<_>>().join(" ")
        );
    }
    if !unsaved.is_empty() {
        r.summary = format!(
            "{}\nnot saved in {}: {}",
            r.summary,
            c.dir.display(),
            unsaved.join(", ")
        );
    }
    if let Err(e) = write_result(&r) {
        tracing::warn!(
            "{}: result.json not saved ({e:#}); it is still in the run's results.json",
            c.dir.display()
        );
    }
    r
}

/// Writes `r` as its directory's `result.json` (atomic), creating the
/// directory if needed.
pub fn write_result(r: &CellResult) -> Result<()> {
    std::fs::create_dir_all(&r.dir).with_context(|| format!("creating {}", r.dir.display()))?;
    write_atomic(&r.dir.join("result.json"), &serde_json::to_vec_pretty(r)?)
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::PassKind;
    use crate::workload::app::AppOutcome;
    use crate::workload::{GroupOutcome, ThreadOutcome};

    /// A command group "app" whose application failed (or not) in a pass.
    fn with_app(
        mut p: crate::agent::Pass,
        kind: PassKind,
        failure: Option<&str>,
    ) -> crate::agent::Pass {
        p.kind = kind;
        p.groups[0].name = "app".into();
        p.groups[0].outcome = Some(GroupOutcome {
            name: "app".into(),
            pid: 1,
            threads: vec![ThreadOutcome {
                app: Some(AppOutcome {
                    exit_status: Some(if failure.is_some() { 2 } else { 0 }),
                    failure: failure.map(str::to_string),
                    ..Default::default()
                }),
                ..Default::default()
            }],
            errors: vec![],
        });
        p
    }

    #[test]
    fn an_application_failing_under_the_scheduler_fails_the_cell_and_under_fair_is_an_error() {
        let s = crate::scenario::parse(
            Path::new("a.yaml"),
            "name: a\ndescription: d\nduration: 3s\ngroups:\n  - { name: app, work: { kind: command, argv: [sh, -c, 'true'], exit: 0 } }\n",
        )
        .unwrap()
        .scenario;
        let base = crate::compare::sample_result(1, CellVerdict::Pass)
            .agent
            .unwrap();
        let pass = base.passes[0].clone();
        let why = "sh exited with status 2, not 0; its output's last lines:\n    no input";
        let agent = |fair: Option<&str>, main: Option<&str>| AgentOutput {
            passes: vec![
                with_app(pass.clone(), PassKind::Fair, fair),
                with_app(pass.clone(), PassKind::Scheduler, main),
            ],
            ..base.clone()
        };
        let (v, summary, _) = verdict(&s, Some(&agent(None, Some(why))), &[], None, false);
        assert_eq!(v, CellVerdict::Fail, "{summary}");
        assert!(
            summary.contains("app app") && summary.contains("not 0"),
            "{summary}"
        );
        let (v, summary, _) = verdict(&s, Some(&agent(Some(why), Some(why))), &[], None, false);
        assert_eq!(v, CellVerdict::Error, "{summary}");
        assert!(
            summary
                .starts_with("the application failed under the fair class: group app: sh exited"),
            "{summary}"
        );
        let (v, summary, _) = verdict(&s, Some(&agent(None, None)), &[], None, false);
        assert_eq!(v, CellVerdict::Pass, "{summary}");
    }
}
