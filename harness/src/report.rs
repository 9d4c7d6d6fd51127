//! The result of a cell as one JSON document with a versioned schema, and
//! its forms for people (a verdict line, the checks, a metrics table).
//! Pure: documents in, text out.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::agent::{AgentOutput, Pass};
use crate::checks::Outcome;

/// Bump on any change that an older reader would misread.
pub const SCHEMA: &str = "scx-harness/cell-result/v1";

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
}

impl CellVerdict {
    pub fn label(self) -> &'static str {
        match self {
            CellVerdict::Pass => "pass",
            CellVerdict::Fail => "FAIL",
            CellVerdict::Error => "ERROR",
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
    /// "kvm" or "tcg".
    pub accel: String,
    /// The VM's shape.
    pub cpus: u32,
    pub memory: String,
    pub host: String,
    /// Seconds since the Unix epoch.
    pub started_at: u64,
    pub elapsed_s: f64,
    pub vm_outcome: String,
    pub verdict: CellVerdict,
    /// One line for a pass, the failed checks' lines for a failure, the
    /// reason for an error.
    pub summary: String,
    pub checks: Vec<Outcome>,
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
        let cpu =
            g.probe.run_ns_window as f64 / (window.as_nanos() as f64 * f64::from(cpus)).max(1.0);
        t.push_str(&format!(
            "  {:<14} {:>6.1}% {:>7} {:>8} {:>8} {:>8} {:>8} {:>8} {:>10.0}\n",
            g.name,
            cpu * 100.0,
            h.count(),
            q(0.5),
            q(0.9),
            q(0.99),
            short(Duration::from_nanos(g.probe.max_wait_ns)),
            short(Duration::from_nanos(g.probe.max_wait_all_ns)),
            g.iterations_window() as f64 / window.as_secs_f64().max(1e-9),
        ));
    }
    t
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
    if r.verdict == CellVerdict::Error {
        s.push_str(&format!("  {}\n", r.summary));
    }
    if let Some(a) = &r.agent {
        for p in &a.passes {
            s.push_str(&format!(
                "  pass {} (window {}):\n",
                p.label,
                short(p.window())
            ));
            s.push_str(&metrics_table(p, r.cpus));
            if let Some(st) = &p.stall {
                s.push_str(&format!(
                    "  stall: {} (pid {}, tid {}, group {}) runnable for {} without running\n",
                    st.comm,
                    st.pid,
                    st.tid,
                    st.group,
                    short(Duration::from_nanos(st.waited_ns))
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
