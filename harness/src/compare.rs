//! A/B comparison of two variants (schedulers, argument sets, builds or
//! kernels) from their cells' results: the metrics of one run, the
//! statistics per metric, and the document and table people read. Pure:
//! results in, comparison out; running the samples is `cli::compare`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::agent::PassKind;
use crate::metric::{Declared, DelayStat, Metric};
use crate::probe::hist::Histogram;
use crate::report::{short, CellResult, CellVerdict};
use crate::stats::{self, Comparison, Verdict};
use crate::workload::app::AppValue;

/// Bump on any change that an older reader would misread.
pub const SCHEMA: &str = "scx-harness/compare/v1";

/// One side of a comparison.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Variant {
    /// As the user wrote it ("scx_fault --delay-ms 5").
    pub label: String,
    pub scheduler: String,
    pub args: Vec<String>,
    /// The kernel (cache key or path) it ran on.
    pub kernel: String,
}

/// The metrics of one measured run (its scheduler pass), by name:
/// `run_delay.GROUP.p50|p99|max` (ns), `stall_max` (ns, longest wait of
/// any task over the whole pass), `cpu_share.GROUP` (fraction of the VM),
/// `throughput.GROUP` (iterations per second, for groups that count them),
/// `sched_ext_event.NAME` (the kernel's own sched_ext event counters over
/// the scheduler's attachment, on kernels that have them: 7.3).
/// Empty when the run was not measured.
pub fn metrics(r: &CellResult) -> BTreeMap<String, f64> {
    let mut m = BTreeMap::new();
    let Some(p) = r.agent.as_ref().and_then(|a| a.pass(PassKind::Scheduler)) else {
        return m;
    };
    let window = p.window().as_secs_f64().max(1e-9);
    for g in &p.groups {
        let h = &g.probe.run_delay;
        if h.count() > 0 {
            let delay = |stat| Metric::RunDelay {
                group: g.name.clone(),
                stat,
            };
            for (q, stat) in [(0.5, DelayStat::P50), (0.99, DelayStat::P99)] {
                if let Some(v) = h.quantile(q) {
                    m.insert(delay(stat).name(), v.as_nanos() as f64);
                }
            }
            m.insert(delay(DelayStat::Max).name(), p.max_run_delay(g) as f64);
        }
        let group = g.name.clone();
        m.insert(
            Metric::CpuShare {
                group: group.clone(),
            }
            .name(),
            p.cpu_share(g, r.cpus),
        );
        let it = g.iterations_window();
        if it > 0 {
            m.insert(
                Metric::Throughput {
                    group: group.clone(),
                }
                .name(),
                it as f64 / window,
            );
        }
        for (name, v) in app_values(g) {
            let app = Metric::App {
                group: group.clone(),
                name: name.clone(),
            };
            m.insert(app.name(), v.value);
        }
    }
    // The scenario's own tasks; a guest-wide watch's other tasks apart.
    let stall = p.longest_runnable(|g| g.is_some()).map_or(0, |l| l.ns);
    m.insert(Metric::StallMax.name(), stall as f64);
    if let Some(l) = p.longest_runnable(|g| g.is_none()) {
        m.insert(Metric::StallMaxGuest.name(), l.ns as f64);
    }
    if let Some(report) = r.agent.as_ref().and_then(|a| a.scheduler.as_ref()) {
        for (name, count) in &report.events {
            let ev = Metric::SchedExtEvent { name: name.clone() };
            m.insert(ev.name(), *count as f64);
        }
    }
    m
}

/// A group's application metrics as read (its first instance's; a group
/// with metrics has one), none when it failed.
fn app_values(g: &crate::agent::GroupResult) -> impl Iterator<Item = (&String, &AppValue)> {
    g.apps()
        .next()
        .filter(|a| a.failure.is_none())
        .into_iter()
        .flat_map(|a| a.metrics.iter())
}

/// The application metrics' declarations (unit, direction) the runs'
/// scheduler passes carry.
pub fn declared<'r>(runs: impl IntoIterator<Item = &'r CellResult>) -> Declared {
    let mut d = Declared::default();
    for r in runs {
        let Some(p) = r.agent.as_ref().and_then(|a| a.pass(PassKind::Scheduler)) else {
            continue;
        };
        for g in &p.groups {
            for (name, v) in app_values(g) {
                let m = Metric::App {
                    group: g.name.clone(),
                    name: name.clone(),
                };
                d.add(m.name(), v.better.into(), &v.unit);
            }
        }
    }
    d
}

/// Why a run cannot be a sample: it was not measured, or the scheduler
/// failed under it (ejected, crashed, a task stalled, an application
/// failed: its numbers are missing, not worse). None for a run whose
/// numbers count, including one that only missed a bound.
pub fn failure(r: &CellResult) -> Option<String> {
    let first = |s: &str| s.lines().next().unwrap_or("").to_string();
    if matches!(r.verdict, CellVerdict::Error | CellVerdict::NotRun) {
        return Some(first(&r.summary));
    }
    if let Some(o) = r.checks.iter().find(|o| {
        (o.is(crate::scenario::CheckKind::SchedulerHealthy)
            || o.check == Some(crate::scenario::CheckKind::App))
            && !o.pass
    }) {
        return Some(first(&o.line()));
    }
    let pass = r.agent.as_ref().and_then(|a| a.pass(PassKind::Scheduler));
    if let Some(st) = pass.and_then(|p| p.stall.as_ref()) {
        return Some(format!(
            "stall: {} runnable for {} without running",
            st.who(),
            short(Duration::from_nanos(st.waited_ns))
        ));
    }
    None
}

/// One metric compared, with both sides' samples.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricComparison {
    pub name: String,
    pub key: bool,
    /// An application metric's declared unit ("" for the harness's own).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub unit: String,
    pub baseline: Vec<f64>,
    pub candidate: Vec<f64>,
    #[serde(flatten)]
    pub stats: Comparison,
}

impl MetricComparison {
    /// Whether these samples could call this metric different at `alpha`
    /// at all: the smallest p-value their values can give
    /// ([`stats::smallest_p_of`]), times its family's size (Holm's first
    /// step), is below `alpha`.
    pub fn callable(&self, alpha: f64) -> bool {
        stats::callable(&self.baseline, &self.candidate, self.stats.family, alpha)
    }
}

/// A run that failed outright.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outright {
    /// "baseline" or "candidate".
    pub side: String,
    /// Its index among that side's runs, from 0.
    pub run: usize,
    pub reason: String,
    pub dir: PathBuf,
}

/// One scenario compared.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScenarioComparison {
    pub scenario: String,
    pub scenario_hash: String,
    pub runs_baseline: usize,
    pub runs_candidate: usize,
    /// Runs whose checks failed (bounds missed) on each side: still
    /// samples, but worth knowing.
    pub failed_checks_baseline: usize,
    pub failed_checks_candidate: usize,
    /// Runs that failed outright; when there is one, `metrics` is empty:
    /// a failing variant is reported as failing, not as a statistic.
    pub outright: Vec<Outright>,
    pub metrics: Vec<MetricComparison>,
    /// Per group: the run delays of all measured runs pooled, baseline and
    /// candidate (for plots side by side).
    pub run_delay: Vec<(String, Histogram, Histogram)>,
}

impl ScenarioComparison {
    /// Every key metric's verdict is settled (or a side failed outright:
    /// more runs will not help).
    pub fn settled(&self, noise: f64) -> bool {
        !self.outright.is_empty()
            || (!self.metrics.is_empty()
                && self
                    .metrics
                    .iter()
                    .filter(|m| m.key)
                    .all(|m| stats::settled(&m.stats, noise)))
    }

    /// When these runs cannot call any key metric different at `alpha`,
    /// however far apart the sides are, what to do about it ("with 5 and
    /// 5 runs ... use --runs 6 or more"); None when they can.
    pub fn blind(&self, alpha: f64) -> Option<String> {
        let key: Vec<&MetricComparison> = self.metrics.iter().filter(|m| m.key).collect();
        let called = |m: &&MetricComparison| {
            matches!(
                m.stats.verdict,
                Verdict::Better | Verdict::Worse | Verdict::Changed
            )
        };
        if key.is_empty() || key.iter().any(|m| m.callable(alpha) || called(m)) {
            return None;
        }
        let m = key.iter().map(|k| k.stats.family).max().unwrap_or(1);
        let p = stats::family_floor(
            key.iter()
                .map(|k| (k.baseline.as_slice(), k.candidate.as_slice())),
        );
        Some(stats::blind_note(
            (self.runs_baseline, self.runs_candidate),
            p,
            m,
            alpha,
            ("--runs", stats::runs_needed(m, alpha, None)),
        ))
    }

    pub fn unsettled(&self, noise: f64) -> Vec<&str> {
        self.metrics
            .iter()
            .filter(|m| m.key && !stats::settled(&m.stats, noise))
            .map(|m| m.name.as_str())
            .collect()
    }
}

/// A stable seed per metric, so a comparison is reproducible.
fn seed(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

/// Compares the runs of one scenario on both sides. The key metrics decide
/// and are tested as one family (Holm's correction across them, see
/// [`stats::compare_family`]); the other metrics are a second family, for
/// information.
pub fn compare_scenario(
    baseline: &[&CellResult],
    candidate: &[&CellResult],
    alpha: f64,
    noise: f64,
) -> ScenarioComparison {
    compare_scenario_deciding(baseline, candidate, alpha, noise, &|_, key| key)
}

/// [`compare_scenario`] with the deciding family chosen by `decides(name,
/// key)` (bisect's `--metric` decides on one metric alone).
pub fn compare_scenario_deciding(
    baseline: &[&CellResult],
    candidate: &[&CellResult],
    alpha: f64,
    noise: f64,
    decides: &dyn Fn(&str, bool) -> bool,
) -> ScenarioComparison {
    let first = baseline.first().or(candidate.first());
    let mut outright = Vec::new();
    for (side, runs) in [("baseline", baseline), ("candidate", candidate)] {
        for (i, r) in runs.iter().enumerate() {
            if let Some(reason) = failure(r) {
                outright.push(Outright {
                    side: side.into(),
                    run: i,
                    reason,
                    dir: r.dir.clone(),
                });
            }
        }
    }
    let failed = |runs: &[&CellResult]| {
        runs.iter()
            .filter(|r| r.verdict == CellVerdict::Fail)
            .count()
    };
    let mut metrics = Vec::new();
    let declared = declared(baseline.iter().chain(candidate).copied());
    if outright.is_empty() {
        let ma: Vec<_> = baseline.iter().map(|r| self::metrics(r)).collect();
        let mb: Vec<_> = candidate.iter().map(|r| self::metrics(r)).collect();
        let mut names: Vec<&String> = ma.iter().chain(&mb).flat_map(|m| m.keys()).collect();
        names.sort();
        names.dedup();
        let mut samples = Vec::new();
        for name in names {
            let a: Vec<f64> = ma.iter().filter_map(|m| m.get(name).copied()).collect();
            let b: Vec<f64> = mb.iter().filter_map(|m| m.get(name).copied()).collect();
            // The kernel's own event counters exist on 7.3, not on 6.12: a
            // comparison across those kernels has them on one side only,
            // which says nothing about the schedulers.
            if name.starts_with("sched_ext_event.") && (a.is_empty() || b.is_empty()) {
                continue;
            }
            samples.push((name.clone(), a, b));
        }
        let mut stats: Vec<Option<Comparison>> = vec![None; samples.len()];
        for deciding in [true, false] {
            let family: Vec<usize> = (0..samples.len())
                .filter(|&i| {
                    let name = &samples[i].0;
                    decides(name, declared.kind(name).1) == deciding
                })
                .collect();
            let sides: Vec<stats::Sides> = family
                .iter()
                .map(|&i| {
                    let (name, a, b) = &samples[i];
                    stats::Sides {
                        a,
                        b,
                        better: declared.kind(name).0,
                        seed: seed(name),
                    }
                })
                .collect();
            for (i, st) in family
                .iter()
                .zip(stats::compare_family(&sides, alpha, noise))
            {
                stats[*i] = Some(st);
            }
        }
        for ((name, a, b), st) in samples.into_iter().zip(stats) {
            metrics.push(MetricComparison {
                key: declared.kind(&name).1,
                unit: declared.unit(&name).to_string(),
                name,
                baseline: a,
                candidate: b,
                stats: st.expect("every metric is in one of the two families"),
            });
        }
    }
    let mut run_delay: Vec<(String, Histogram, Histogram)> = Vec::new();
    for (side, runs) in [baseline, candidate].iter().enumerate() {
        for r in runs.iter() {
            let Some(p) = r.agent.as_ref().and_then(|a| a.pass(PassKind::Scheduler)) else {
                continue;
            };
            for g in &p.groups {
                let i = match run_delay.iter().position(|(n, _, _)| *n == g.name) {
                    Some(i) => i,
                    None => {
                        run_delay.push((
                            g.name.clone(),
                            Histogram::default(),
                            Histogram::default(),
                        ));
                        run_delay.len() - 1
                    }
                };
                let slot = &mut run_delay[i];
                if side == 0 { &mut slot.1 } else { &mut slot.2 }.merge(&g.probe.run_delay);
            }
        }
    }
    ScenarioComparison {
        run_delay,
        scenario: first.map(|r| r.scenario.clone()).unwrap_or_default(),
        scenario_hash: first.map(|r| r.scenario_hash.clone()).unwrap_or_default(),
        runs_baseline: baseline.len(),
        runs_candidate: candidate.len(),
        failed_checks_baseline: failed(baseline),
        failed_checks_candidate: failed(candidate),
        outright,
        metrics,
    }
}

/// The comparison document (`compare.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CompareReport {
    pub schema: String,
    pub baseline: Variant,
    pub candidate: Variant,
    pub alpha: f64,
    pub noise: f64,
    /// "fixed N" or "auto (max M)".
    pub runs: String,
    /// Why sampling stopped, for people.
    pub stopped: String,
    pub scenarios: Vec<ScenarioComparison>,
}

impl CompareReport {
    /// Whether any key metric got worse, or a side failed outright.
    pub fn regressed(&self) -> bool {
        self.scenarios.iter().any(|s| {
            s.outright.iter().any(|o| o.side == "candidate")
                || s.metrics
                    .iter()
                    .any(|m| m.key && m.stats.verdict == Verdict::Worse)
        })
    }
}

/// The level of the intervals compared at `alpha` as people read it:
/// "95% CI" at 0.05, "99.9% CI" at 0.001.
pub fn ci_label(alpha: f64) -> String {
    format!("{}% CI", ((1.0 - alpha) * 100_000.0).round() / 1000.0)
}

/// What a p-value shown beside a comparison is, when it is not the
/// metric's own: ", Holm across 3 (raw 0.0079)"; empty for a family of 1.
pub fn holm_note(st: &crate::stats::Comparison) -> String {
    if st.family > 1 {
        format!(", Holm across {} (raw {:.4})", st.family, st.p_raw)
    } else {
        String::new()
    }
}

/// A comparison's `1 - alpha` interval of the ratio as people read it,
/// `[0.912, 1.034]`, or `-` when there were too few samples for one.
pub fn interval(st: &crate::stats::Comparison) -> String {
    if st.ci_low.is_finite() {
        format!("[{:.3}, {:.3}]", st.ci_low, st.ci_high)
    } else {
        "-".into()
    }
}

/// The comparison as a terminal table, a block per scenario.
pub fn table(c: &CompareReport) -> String {
    let mut t = format!(
        "baseline:  {}\ncandidate: {}\n{}; alpha {}, noise threshold {:.0}%\n",
        c.baseline.label,
        c.candidate.label,
        c.stopped,
        c.alpha,
        c.noise * 100.0
    );
    for s in &c.scenarios {
        t.push_str(&format!(
            "\n{} ({} baseline run(s), {} candidate run(s){})\n",
            s.scenario,
            s.runs_baseline,
            s.runs_candidate,
            if s.failed_checks_baseline + s.failed_checks_candidate > 0 {
                format!(
                    "; checks failed in {} baseline and {} candidate run(s)",
                    s.failed_checks_baseline, s.failed_checks_candidate
                )
            } else {
                String::new()
            }
        ));
        if !s.outright.is_empty() {
            for o in &s.outright {
                t.push_str(&format!(
                    "  {} run {} failed outright: {}\n    evidence: {}\n",
                    o.side,
                    o.run + 1,
                    o.reason,
                    o.dir.display()
                ));
            }
            t.push_str("  no statistics: a variant that fails is reported as failing\n");
            continue;
        }
        let (key, other) =
            s.metrics.iter().fold(
                (0, 0),
                |(k, o), m| {
                    if m.key {
                        (k + 1, o)
                    } else {
                        (k, o + 1)
                    }
                },
            );
        t.push_str(&format!(
            "  p: Holm-adjusted across the {key} key metric(s), and apart across the {other} other(s)\n"
        ));
        if let Some(why) = s.blind(c.alpha) {
            t.push_str(&format!("  NOTE: {why}\n"));
        }
        t.push_str(&format!(
            "  {:<28} {:>10} {:>10} {:>7} {:>17} {:>8}  {}\n",
            "metric",
            "baseline",
            "candidate",
            "ratio",
            ci_label(c.alpha),
            "p",
            "verdict"
        ));
        for m in &s.metrics {
            let show = |v| crate::metric::show(&m.name, &m.unit, v);
            let st = &m.stats;
            t.push_str(&format!(
                "  {:<28} {:>10} {:>10} {:>7.3} {:>17} {:>8.4}  {}{}\n",
                m.name,
                show(st.median_a),
                show(st.median_b),
                st.ratio,
                interval(st),
                st.p_value,
                st.verdict.label(),
                if m.key { "" } else { " (not key)" }
            ));
        }
    }
    t
}

/// A synthetic result: one group "g" whose 100 run delays sit at
/// `delay_ms` (for tests of what reads results, here and in tests/).
#[doc(hidden)]
pub fn sample_result(delay_ms: u64, verdict: CellVerdict) -> CellResult {
    use crate::agent::{AgentOutput, GroupResult, Pass};
    use crate::probe::GroupData;
    const MS: u64 = 1_000_000;
    {
        let mut h = Histogram::default();
        for i in 0..100 {
            h.record(delay_ms * MS + i * 1000);
        }
        let group = GroupResult {
            name: "g".into(),
            probe: GroupData {
                run_delay: h,
                max_wait_ns: delay_ms * MS + 99_000,
                max_runnable_ns: delay_ms * MS + 99_000,
                run_ns_window: 500 * MS,
                ..Default::default()
            },
            ..Default::default()
        };
        let pass = Pass {
            kind: PassKind::Scheduler,
            t0_ns: 0,
            window_start_ns: 0,
            window_end_ns: 1000 * MS,
            ended_at_ns: 1000 * MS,
            groups: vec![group],
            stall: None,
            still_waiting: vec![],
            other_worst: None,
            probe_events: 0,
            probe_dropped: 0,
            swaps: vec![],
            operations: vec![],
            timeline: vec![],
            errors: vec![],
            replayed: None,
        };
        CellResult {
            schema: crate::report::SCHEMA.into(),
            scenario: "s".into(),
            scenario_hash: "h".into(),
            scenario_path: "s.yaml".into(),
            scheduler: "x".into(),
            scheduler_version: "1".into(),
            scheduler_args: vec![],
            kernel: "k".into(),
            kernel_id: "k".into(),
            kernel_name: String::new(),
            accel: "tcg".into(),
            cpus: 1,
            memory: "2G".into(),
            host: "h".into(),
            started_at: 0,
            elapsed_s: 1.0,
            session_end: Some(crate::vm::Outcome::Exited { code: 0 }),
            target: crate::report::Target::Vm,
            verdict,
            summary: "it broke\nmore".into(),
            checks: vec![],
            agent: Some(AgentOutput {
                passes: vec![pass],
                scheduler: None,
                swapped_out: vec![],
                error: None,
            }),
            console_log: "c".into(),
            dir: "d".into(),
        }
    }
}

/// Gives `r`'s group "g" (from [`sample_result`]) an application whose
/// metric `name` read `value` in `unit`, higher being better.
#[doc(hidden)]
pub fn with_sample_app_metric(r: &mut CellResult, name: &str, value: f64, unit: &str) {
    use crate::workload::app::{AppOutcome, AppValue};
    let g = &mut r.agent.as_mut().expect("a sample has passes").passes[0].groups[0];
    g.outcome = Some(crate::workload::GroupOutcome {
        name: "g".into(),
        pid: 1,
        threads: vec![crate::workload::ThreadOutcome {
            app: Some(AppOutcome {
                metrics: [(
                    name.to_string(),
                    AppValue {
                        value,
                        unit: unit.into(),
                        better: crate::appmetric::Direction::Higher,
                    },
                )]
                .into(),
                ..Default::default()
            }),
            ..Default::default()
        }],
        errors: vec![],
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A report of scenario `s` between variants "a" and "b", `runs` a side.
    fn report_of(s: ScenarioComparison, alpha: f64, runs: usize) -> CompareReport {
        let variant = |name: &str| Variant {
            label: name.into(),
            scheduler: name.into(),
            args: vec![],
            kernel: "k".into(),
        };
        CompareReport {
            schema: SCHEMA.into(),
            baseline: variant("a"),
            candidate: variant("b"),
            alpha,
            noise: 0.05,
            runs: format!("fixed {runs}"),
            stopped: format!("{runs} runs each"),
            scenarios: vec![s],
        }
    }

    const MS: u64 = 1_000_000;

    fn result(delay_ms: u64, verdict: CellVerdict) -> CellResult {
        sample_result(delay_ms, verdict)
    }

    #[test]
    fn a_run_whose_application_failed_is_no_sample_and_its_metrics_carry_their_declaration() {
        let mut r = sample_result(1, CellVerdict::Pass);
        with_sample_app_metric(&mut r, "rps", 812.5, "req/s");
        assert_eq!(metrics(&r)["app.g.rps"], 812.5);
        let d = declared([&r]);
        assert_eq!(d.kind("app.g.rps").0, crate::stats::Better::Higher);
        assert_eq!(d.unit("app.g.rps"), "req/s");
        assert_eq!(failure(&r), None);
        // Its application failed: a failed run, not a sample of 0.
        r.verdict = CellVerdict::Fail;
        r.checks.push(crate::checks::Outcome {
            name: "app g".into(),
            pass: false,
            observed: "1 of 1 failed".into(),
            bound: "runs as declared".into(),
            observed_value: Some(1.0),
            bound_value: 0.0,
            detail: "redis-benchmark exited with status 1, not 0".into(),
            unclaimed: None,
            check: Some(crate::scenario::CheckKind::App),
        });
        let why = failure(&r).unwrap();
        assert!(why.starts_with("app g: observed 1 of 1 failed"), "{why}");
    }

    #[test]
    fn metrics_of_a_run() {
        let m = metrics(&result(5, CellVerdict::Pass));
        assert!((m["cpu_share.g"] - 0.5).abs() < 1e-9);
        assert!(m["run_delay.g.p50"] >= 5.0 * MS as f64);
        assert_eq!(m["stall_max"], (5 * MS + 99_000) as f64);
        assert!(
            !m.contains_key("throughput.g"),
            "no iterations, no throughput"
        );
    }

    #[test]
    fn a_slower_candidate_is_worse_and_a_failing_one_is_not_a_statistic() {
        let a: Vec<CellResult> = (0..6)
            .map(|i| result(1 + i % 2, CellVerdict::Pass))
            .collect();
        let b: Vec<CellResult> = (0..6)
            .map(|i| result(6 + i % 2, CellVerdict::Fail))
            .collect();
        let ar: Vec<&CellResult> = a.iter().collect();
        let br: Vec<&CellResult> = b.iter().collect();
        let s = compare_scenario(&ar, &br, 0.05, 0.05);
        let p99 = s
            .metrics
            .iter()
            .find(|m| m.name == "run_delay.g.p99")
            .unwrap();
        assert_eq!(p99.stats.verdict, Verdict::Worse, "{p99:?}");
        assert!(p99.stats.ci_low > 1.0);
        assert_eq!(s.failed_checks_candidate, 6);
        assert!(s.settled(0.05));
        let same = compare_scenario(&ar, &ar, 0.05, 0.05);
        assert!(same
            .metrics
            .iter()
            .all(|m| m.stats.verdict == Verdict::NoDifference));

        let mut broken = b.clone();
        broken[2] = result(6, CellVerdict::Error);
        let br: Vec<&CellResult> = broken.iter().collect();
        let s = compare_scenario(&ar, &br, 0.05, 0.05);
        assert!(s.metrics.is_empty());
        assert_eq!(s.outright.len(), 1);
        assert_eq!(
            (s.outright[0].side.as_str(), s.outright[0].run),
            ("candidate", 2)
        );
        assert_eq!(s.outright[0].reason, "it broke");
        let report = report_of(s, 0.05, 6);
        assert!(report.regressed());
        assert!(
            table(&report).contains("candidate run 3 failed outright: it broke"),
            "{}",
            table(&report)
        );
    }

    /// The key metrics are one family and the rest another, each with
    /// Holm's correction; runs too few for the key family to call anything
    /// say so, with the runs that would do; bisect's `--metric` makes a
    /// family of one.
    #[test]
    fn key_metrics_are_tested_as_a_family_and_too_few_runs_say_so() {
        let side = |delay: u64, n: usize| -> Vec<CellResult> {
            (0..n).map(|_| result(delay, CellVerdict::Pass)).collect()
        };
        let (a, b) = (side(1, 5), side(6, 5));
        let (ar, br): (Vec<&CellResult>, Vec<&CellResult>) =
            (a.iter().collect(), b.iter().collect());
        let s = compare_scenario(&ar, &br, 0.05, 0.05);
        let key: Vec<&MetricComparison> = s.metrics.iter().filter(|m| m.key).collect();
        let other: Vec<&MetricComparison> = s.metrics.iter().filter(|m| !m.key).collect();
        assert!(key.len() >= 2 && other.len() >= 2, "{s:?}");
        assert!(key.iter().all(|m| m.stats.family == key.len()), "{key:?}");
        assert!(
            other.iter().all(|m| m.stats.family == other.len()),
            "{other:?}"
        );
        assert!(
            key.iter().all(|m| m.stats.verdict == Verdict::Worse),
            "{key:?}"
        );
        assert!(
            s.metrics.iter().all(|m| m.stats.p_value >= m.stats.p_raw),
            "{s:?}"
        );
        assert_eq!(s.blind(0.05), None);

        // At 0.005 the key family of two is not called (2 x 0.004), where
        // p99 deciding on its own is.
        let s = compare_scenario(&ar, &br, 0.005, 0.05);
        let p99 = |s: &ScenarioComparison| {
            let m = s
                .metrics
                .iter()
                .find(|m| m.name == "run_delay.g.p99")
                .unwrap();
            (m.stats.family, m.stats.verdict)
        };
        assert_eq!(p99(&s), (key.len(), Verdict::NoDifference), "{s:?}");
        let one = compare_scenario_deciding(&ar, &br, 0.005, 0.05, &|n, _| n == "run_delay.g.p99");
        assert_eq!(p99(&one), (1, Verdict::Worse), "{one:?}");

        // Three runs a side cannot call a family of two at 0.01, however
        // far apart: the comparison says so, and what would do.
        let (a, b) = (side(1, 3), side(6, 3));
        let (ar, br): (Vec<&CellResult>, Vec<&CellResult>) =
            (a.iter().collect(), b.iter().collect());
        let s = compare_scenario(&ar, &br, 0.01, 0.05);
        assert!(
            s.metrics
                .iter()
                .all(|m| m.stats.verdict == Verdict::NoDifference),
            "{s:?}"
        );
        let why = s.blind(0.01).expect("blind with 3 runs a side");
        assert!(why.contains("use --runs"), "{why}");
        let report = report_of(s, 0.01, 3);
        let t = table(&report);
        assert!(
            t.contains("NOTE: with 3 against 3 samples") && t.contains("99% CI"),
            "{t}"
        );
    }
}
