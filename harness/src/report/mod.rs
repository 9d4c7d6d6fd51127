//! The result of a cell as one JSON document with a versioned schema, and
//! its forms for people (a verdict line, the checks, a metrics table).
//! Pure: documents in, text out.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::agent::{AgentOutput, Pass, PassKind};
use crate::checks;
use crate::vm::Outcome;

/// Bump on any change that an older reader would misread. v2: the
/// session's end as a typed [`Outcome`] (`session_end`; v1 had the string
/// `vm_outcome`, still read) and where the cell ran (`target`). v3:
/// applications (`groups[].outcome.threads[].app`: values with unit and
/// direction, exit status, wall time, failure) and the check kinds `app`
/// and `app_metric`, which a v2 reader does not know.
pub const SCHEMA: &str = "scx-harness/cell-result/v3";

/// The run directory's subdirectory of session directories (console logs,
/// shared directories), one per VM boot or host agent.
pub const SESSIONS_DIR: &str = "sessions";

/// Where a cell ran: a VM the harness booted, or the machine the harness
/// runs on (`--target host`), named so that history never mixes the two.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Target {
    /// A VM of the cell's shape (`cpus`, `memory`); results of v1 ran
    /// there.
    #[default]
    Vm,
    /// The running kernel of `hostname`, on the CPUs `cpus` (a cpuset list
    /// such as "0-3", as many CPUs as the scenario's `vm.cpus`).
    Host {
        hostname: String,
        /// /proc/cpuinfo's `model name`.
        cpu_model: String,
        /// `uname -r`.
        kernel: String,
        cpus: String,
    },
}

impl Target {
    /// "vm", or "host NAME (CPU MODEL, cpus LIST)".
    pub fn describe(&self) -> String {
        match self {
            Target::Vm => "vm".into(),
            Target::Host {
                hostname,
                cpu_model,
                cpus,
                ..
            } => format!("host {hostname} ({cpu_model}, cpus {cpus})"),
        }
    }
}

/// Reads `session_end` (v2: an [`Outcome`] or null) and v1's `vm_outcome`
/// (the outcome's debug form, "KernelCrash", "Exited { code: 0 }", or
/// "running" / "not started" for none).
fn session_end_any_version<'de, D>(d: D) -> Result<Option<Outcome>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Either {
        V2(Option<Outcome>),
        V1(String),
    }
    Ok(match Either::deserialize(d)? {
        Either::V2(o) => o,
        Either::V1(s) => outcome_from_v1(&s),
    })
}

/// v1's `vm_outcome` string as the typed outcome.
pub fn outcome_from_v1(s: &str) -> Option<Outcome> {
    let number = |s: &str| -> Option<i32> {
        s.trim_matches(|c: char| !c.is_ascii_digit() && c != '-')
            .parse()
            .ok()
    };
    let s = s.trim();
    Some(if s.starts_with("Exited") {
        Outcome::Exited { code: number(s)? }
    } else if s == "KernelCrash" {
        Outcome::KernelCrash
    } else if s.starts_with("TimedOut") {
        Outcome::TimedOut {
            reached_guest: s.contains("true"),
        }
    } else if let Some(rest) = s.strip_prefix("InfraFailure") {
        Outcome::InfraFailure {
            reason: rest
                .trim_matches(|c: char| " {}\"".contains(c))
                .trim_start_matches("reason: \"")
                .to_string(),
        }
    } else if s == "Interrupted" {
        Outcome::Interrupted
    } else {
        return None;
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CellVerdict {
    /// Every check passed.
    Pass,
    /// The run was measured and a check failed.
    Fail,
    /// The run could not be measured (VM, agent or kernel trouble): no
    /// verdict on the scheduler.
    Error,
    /// The VM never got to the cell (an earlier cell crashed the kernel,
    /// the run was interrupted).
    NotRun,
}

impl CellVerdict {
    pub fn label(self) -> &'static str {
        match self {
            CellVerdict::Pass => "pass",
            CellVerdict::Fail => "FAIL",
            CellVerdict::Error => "ERROR",
            CellVerdict::NotRun => "NOT RUN",
        }
    }
}

/// One cell's result document (`result.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CellResult {
    pub schema: String,
    pub scenario: String,
    /// The scenario's content hash (`scenario::Scenario::hash`).
    pub scenario_hash: String,
    pub scenario_path: PathBuf,
    pub scheduler: String,
    pub scheduler_version: String,
    pub scheduler_args: Vec<String>,
    /// `uname -r` of the kernel, and its cache key (or path hash).
    pub kernel: String,
    pub kernel_id: String,
    /// Its name in kernel-config/kernels.yaml (`lts`, `stable`, `debian`);
    /// empty for a kernel without one (and in results written before it).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub kernel_name: String,
    /// "kvm" or "tcg".
    pub accel: String,
    /// The VM's shape.
    pub cpus: u32,
    pub memory: String,
    pub host: String,
    /// Seconds since the Unix epoch.
    pub started_at: u64,
    pub elapsed_s: f64,
    /// How the cell's session (its VM, or its agent on the host) ended;
    /// null while it still ran when the cell was judged, or when none
    /// started. v1: `vm_outcome`, a string.
    #[serde(
        default,
        alias = "vm_outcome",
        deserialize_with = "session_end_any_version"
    )]
    pub session_end: Option<Outcome>,
    /// Where the cell ran (absent in v1: a VM).
    #[serde(default)]
    pub target: Target,
    pub verdict: CellVerdict,
    /// One line for a pass, the failed checks' lines for a failure, the
    /// reason for an error.
    pub summary: String,
    pub checks: Vec<checks::Outcome>,
    /// Everything the guest measured, as it wrote it.
    pub agent: Option<AgentOutput>,
    pub console_log: PathBuf,
    pub dir: PathBuf,
}

/// A duration for tables: "850us", "12.3ms", "1.20s".
pub fn short(d: Duration) -> String {
    let us = d.as_micros();
    if us >= 1_000_000 {
        format!("{:.2}s", d.as_secs_f64())
    } else if us >= 1000 {
        format!("{:.1}ms", us as f64 / 1000.0)
    } else {
        format!("{us}us")
    }
}

/// Per-group metrics of a pass, as a table.
pub fn metrics_table(p: &Pass, cpus: u32) -> String {
    let mut t = format!(
        "  {:<14} {:>7} {:>7} {:>8} {:>8} {:>8} {:>8} {:>8} {:>10}\n",
        "group", "cpu%", "waits", "p50", "p90", "p99", "max", "stall", "iter/s"
    );
    let window = p.window();
    for g in &p.groups {
        let h = &g.probe.run_delay;
        let q = |x: f64| h.quantile(x).map_or("-".into(), short);
        let cpu = p.cpu_share(g, cpus);
        t.push_str(&format!(
            "  {:<14} {:>6.1}% {:>7} {:>8} {:>8} {:>8} {:>8} {:>8} {:>10.0}\n",
            g.name,
            cpu * 100.0,
            h.count(),
            q(0.5),
            q(0.9),
            q(0.99),
            short(Duration::from_nanos(p.max_run_delay(g))),
            p.longest_runnable(|x| x == Some(g.name.as_str()))
                .map_or("-".into(), |l| short(Duration::from_nanos(l.ns))),
            g.iterations_window() as f64 / window.as_secs_f64().max(1e-9),
        ));
    }
    for row in app_rows(p) {
        t.push_str(&format!(
            "  {:<14} {} = {} ({} is better)\n",
            row.group, row.metric, row.value, row.better
        ));
    }
    t
}

/// One application metric of a pass, as people read it.
pub struct AppRow {
    pub group: String,
    /// Its declared name, or "failed" when the application failed.
    pub metric: String,
    /// The value with its unit, or the failure's first line.
    pub value: String,
    /// "lower" or "higher"; "" for a failure.
    pub better: &'static str,
}

/// The application metrics of a pass's `command` groups, and their
/// failures.
pub fn app_rows(p: &Pass) -> Vec<AppRow> {
    let mut rows = Vec::new();
    for g in &p.groups {
        for a in g.apps() {
            if let Some(f) = &a.failure {
                rows.push(AppRow {
                    group: g.name.clone(),
                    metric: "failed".into(),
                    value: f.lines().next().unwrap_or("").to_string(),
                    better: "",
                });
                continue;
            }
            for (name, v) in &a.metrics {
                rows.push(AppRow {
                    group: g.name.clone(),
                    metric: name.clone(),
                    value: format!("{} {}", crate::metric::Unit::Plain.show(v.value), v.unit),
                    better: match v.better {
                        crate::appmetric::Direction::Lower => "lower",
                        crate::appmetric::Direction::Higher => "higher",
                    },
                });
            }
        }
    }
    rows
}

/// What a person reads after a cell: the verdict, the checks, the numbers,
/// and where the evidence is.
pub fn describe(r: &CellResult) -> String {
    let mut s = format!(
        "{} / {}: {} ({:.1} s)\n",
        r.scheduler,
        r.scenario,
        r.verdict.label(),
        r.elapsed_s
    );
    for o in &r.checks {
        s.push_str(&format!("  {}\n", o.line()));
    }
    if matches!(r.verdict, CellVerdict::Error | CellVerdict::NotRun) {
        s.push_str(&format!("  {}\n", r.summary));
    }
    if let Some(a) = &r.agent {
        for p in &a.passes {
            s.push_str(&format!(
                "  pass {} (window {}):\n",
                p.kind.name(),
                short(p.window())
            ));
            s.push_str(&metrics_table(p, r.cpus));
            // Why they waited, where something else than the scheduler's
            // own tasks held the CPUs.
            for g in p.groups.iter().filter(|g| {
                g.probe.wait_higher_ns + g.probe.wait_idle_ns + g.probe.wait_waking_ns
                    > g.probe.wait_ns / 100
            }) {
                s.push_str(&format!(
                    "  {}: {}\n",
                    g.name,
                    crate::checks::why_waited(p, &g.name)
                ));
            }
            if let Some(st) = &p.stall {
                s.push_str(&format!(
                    "  stall: {}, pid {}, runnable for {} without running; stopped the pass {} into it\n",
                    st.who(),
                    st.pid,
                    short(Duration::from_nanos(st.waited_ns)),
                    short(Duration::from_nanos(st.found_at_ns))
                ));
            } else if let Some(l) = p.longest_runnable(|g| g.is_none()) {
                s.push_str(&format!(
                    "  longest wait outside the scenario: {} runnable for {}\n",
                    l.who(),
                    short(Duration::from_nanos(l.ns))
                ));
            }
            if !p.operations.is_empty() {
                let late: Vec<&crate::ops::OpEvent> = p
                    .operations
                    .iter()
                    .filter(|o| o.late() > crate::ops::SLIP)
                    .collect();
                s.push_str(&format!(
                    "  timeline: {} operation(s), {} more than {} late{}\n",
                    p.operations.len(),
                    late.len(),
                    short(crate::ops::SLIP),
                    late.iter()
                        .take(3)
                        .map(|o| format!(
                            "; {} planned at {}, done at {}",
                            o.kind,
                            short(Duration::from_nanos(o.planned_ns)),
                            short(Duration::from_nanos(o.at_ns))
                        ))
                        .collect::<String>()
                ));
            }
            for e in &p.errors {
                s.push_str(&format!("  problem: {e}\n"));
            }
        }
    }
    if r.verdict != CellVerdict::Pass {
        s.push_str(&format!("  evidence: {}\n", r.dir.display()));
    }
    s
}

/// The result of a cell that never ran.
pub fn not_run(
    scenario: &crate::scenario::Loaded,
    scheduler: &crate::scheduler::build::Built,
    dir: &std::path::Path,
    why: &str,
) -> CellResult {
    without_vm(
        scenario,
        &scheduler.def.name,
        &scheduler.version,
        dir,
        CellVerdict::NotRun,
        format!("not run: {why}"),
    )
}

/// The result of a cell whose scheduler did not build for the kernel: a
/// failure of what is tested (its source or its registry entry), with the
/// build's own error lines.
pub fn not_built(
    scenario: &crate::scenario::Loaded,
    scheduler: &str,
    dir: &std::path::Path,
    why: &str,
) -> CellResult {
    without_vm(
        scenario,
        scheduler,
        "",
        dir,
        CellVerdict::Fail,
        format!("the scheduler did not build: {why}"),
    )
}

/// The result of a cell that no VM measured: its verdict (not run, or
/// error, or a scheduler that did not build) and why.
pub fn without_vm(
    scenario: &crate::scenario::Loaded,
    scheduler: &str,
    version: &str,
    dir: &std::path::Path,
    verdict: CellVerdict,
    summary: String,
) -> CellResult {
    CellResult {
        schema: SCHEMA.into(),
        scenario: scenario.scenario.name.clone(),
        scenario_hash: scenario.hash.clone(),
        scenario_path: scenario.path.clone(),
        scheduler: scheduler.to_string(),
        scheduler_version: version.to_string(),
        scheduler_args: Vec::new(),
        kernel: String::new(),
        kernel_id: String::new(),
        kernel_name: String::new(),
        accel: String::new(),
        cpus: scenario.scenario.vm.cpus,
        memory: scenario.scenario.vm.memory.clone(),
        host: String::new(),
        started_at: 0,
        elapsed_s: 0.0,
        session_end: None,
        target: Target::Vm,
        verdict,
        summary,
        checks: Vec::new(),
        agent: None,
        console_log: dir.join("console.log"),
        dir: dir.to_path_buf(),
    }
}

/// The final table: scheduler x scenario, verdict, and the key numbers
/// (worst p99 run delay and longest runnable wait of the scheduler pass).
pub fn table(results: &[CellResult]) -> String {
    // A KERNEL column when the cells ran on more than one kernel.
    let kernels: std::collections::BTreeSet<&str> =
        results.iter().map(|r| r.kernel_name.as_str()).collect();
    let kernel_col = |k: &str| {
        if kernels.len() > 1 {
            format!("{k:<8} ")
        } else {
            String::new()
        }
    };
    let mut t = format!(
        "{}{:<14} {:<22} {:<8} {:>9} {:>9} SUMMARY\n",
        kernel_col("KERNEL"),
        "SCHEDULER",
        "SCENARIO",
        "VERDICT",
        "p99 max",
        "stall"
    );
    for r in results {
        let pass = r.agent.as_ref().and_then(|a| a.pass(PassKind::Scheduler));
        let p99 = pass
            .and_then(|p| {
                p.groups
                    .iter()
                    .filter_map(|g| g.probe.run_delay.quantile(0.99))
                    .max()
            })
            .map_or("-".into(), short);
        let stall = pass
            .map(|p| p.longest_runnable(|g| g.is_some()).map_or(0, |l| l.ns))
            .map_or("-".into(), |ns| short(Duration::from_nanos(ns)));
        t.push_str(&format!(
            "{}{:<14} {:<22} {:<8} {:>9} {:>9} {}\n",
            kernel_col(if r.kernel_name.is_empty() {
                "-"
            } else {
                &r.kernel_name
            }),
            r.scheduler,
            r.scenario,
            r.verdict.label(),
            p99,
            stall,
            r.summary.lines().next().unwrap_or("")
        ));
    }
    t
}

/// The results of a run directory: `results.json`, or else every cell's
/// `result.json` below it (a run that was killed before it wrote the
/// summary).
pub fn load_run(dir: &std::path::Path) -> anyhow::Result<Vec<CellResult>> {
    use anyhow::Context;
    if !dir.is_dir() {
        return Err(crate::error::fail(
            crate::error::Failure::BadInput,
            format!(
                "{} is not a directory\n  fix: pass a run directory `scx-harness run` wrote (it prints its path)",
                dir.display()
            ),
        ));
    }
    let summary = dir.join("results.json");
    if summary.is_file() {
        let bytes =
            std::fs::read(&summary).with_context(|| format!("reading {}", summary.display()))?;
        return serde_json::from_slice(&bytes).map_err(|e| {
            crate::error::fail(
                crate::error::Failure::BadInput,
                format!(
                    "{}: not a results file of this version: {e}",
                    summary.display()
                ),
            )
        });
    }
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d)
            .with_context(|| format!("reading {}", d.display()))?
            .flatten()
        {
            let p = e.path();
            // Sessions' own files (and v1's `vms/`) hold no results.
            let skip = [SESSIONS_DIR, "vms"].map(|n| Some(std::ffi::OsStr::new(n)));
            if p.is_dir() && !skip.contains(&p.file_name()) {
                stack.push(p);
            } else if p.file_name() == Some("result.json".as_ref()) {
                if let Ok(r) = serde_json::from_slice::<CellResult>(&std::fs::read(&p)?) {
                    found.push(r);
                }
            }
        }
    }
    if found.is_empty() {
        return Err(crate::error::fail(
            crate::error::Failure::BadInput,
            format!(
                "{} holds no results (no results.json, no cell result.json)\n  fix: pass a directory `scx-harness run` wrote",
                dir.display()
            ),
        ));
    }
    found.sort_by(|a, b| (&a.scheduler, &a.scenario).cmp(&(&b.scheduler, &b.scenario)));
    Ok(found)
}

/// Whether the cells ran on more than one kernel (their names then carry
/// the kernel).
fn several_kernels(results: &[CellResult]) -> bool {
    results
        .iter()
        .any(|r| r.kernel_name != results[0].kernel_name)
}

/// `s` escaped for HTML and XML text and attribute values.
pub fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// JUnit XML: a test case per cell (`SCHEDULER.SCENARIO`, or
/// `KERNEL/SCHEDULER.SCENARIO` in a run over several kernels), failures and
/// errors with their summary.
pub fn junit(results: &[CellResult]) -> String {
    let several = several_kernels(results);
    let count = |v| results.iter().filter(|r| r.verdict == v).count();
    let mut x = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites>\n<testsuite name=\"scx-harness\" tests=\"{}\" failures=\"{}\" errors=\"{}\" skipped=\"{}\">\n",
        results.len(),
        count(CellVerdict::Fail),
        count(CellVerdict::Error),
        count(CellVerdict::NotRun)
    );
    for r in results {
        x.push_str(&format!(
            "  <testcase classname=\"{}\" name=\"{}\" time=\"{:.1}\">",
            esc(&match several {
                true => format!("{}/{}", r.kernel_name, r.scheduler),
                false => r.scheduler.clone(),
            }),
            esc(&r.scenario),
            r.elapsed_s
        ));
        match r.verdict {
            CellVerdict::Pass => {}
            CellVerdict::Fail => x.push_str(&format!(
                "<failure message=\"checks failed\">{}</failure>",
                esc(&r.summary)
            )),
            CellVerdict::Error => x.push_str(&format!(
                "<error message=\"not measured\">{}</error>",
                esc(&r.summary)
            )),
            CellVerdict::NotRun => {
                x.push_str(&format!("<skipped message=\"{}\"/>", esc(&r.summary)))
            }
        }
        x.push_str("</testcase>\n");
    }
    x.push_str("</testsuite>\n</testsuites>\n");
    x
}

/// A Markdown table of the matrix and the failed checks.
pub fn markdown(results: &[CellResult]) -> String {
    let several = several_kernels(results);
    let mut m = String::from(match several {
        true => "| kernel | scheduler | scenario | verdict | summary |\n|---|---|---|---|---|\n",
        false => "| scheduler | scenario | verdict | summary |\n|---|---|---|---|\n",
    });
    for r in results {
        if several {
            m.push_str(&format!("| {} ", r.kernel_name));
        }
        m.push_str(&format!(
            "| {} | {} | {} | {} |\n",
            r.scheduler,
            r.scenario,
            r.verdict.label(),
            r.summary.lines().next().unwrap_or("").replace('|', "\\|")
        ));
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_outcome_strings_read_as_the_typed_outcome() {
        let cases = [
            ("Exited { code: 3 }", Some(Outcome::Exited { code: 3 })),
            ("KernelCrash", Some(Outcome::KernelCrash)),
            (
                "TimedOut { reached_guest: true }",
                Some(Outcome::TimedOut {
                    reached_guest: true,
                }),
            ),
            (
                "InfraFailure { reason: \"qemu died\" }",
                Some(Outcome::InfraFailure {
                    reason: "qemu died".into(),
                }),
            ),
            ("Interrupted", Some(Outcome::Interrupted)),
            ("running", None),
            ("not started", None),
        ];
        for (v1, want) in cases {
            assert_eq!(outcome_from_v1(v1), want, "{v1}");
        }
    }

    #[test]
    fn a_v1_document_and_a_v2_document_both_read() {
        let v1 = r#"{"vm_outcome": "KernelCrash"}"#;
        let v2 = r#"{"session_end": {"kind": "kernel_crash"}, "target": {"kind": "vm"}}"#;
        #[derive(Deserialize)]
        struct Part {
            #[serde(
                default,
                alias = "vm_outcome",
                deserialize_with = "session_end_any_version"
            )]
            session_end: Option<Outcome>,
            #[serde(default)]
            target: Target,
        }
        for doc in [v1, v2] {
            let p: Part = serde_json::from_str(doc).unwrap();
            assert_eq!(p.session_end, Some(Outcome::KernelCrash), "{doc}");
            assert_eq!(p.target, Target::Vm);
        }
    }
}
