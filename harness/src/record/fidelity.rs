//! How faithfully a replay reproduced a recording (`replay-check`): per
//! group, each recorded figure against the replay's, as a score (the
//! smaller of replayed/recorded and recorded/replayed: 1 is exact, 0.5 is
//! off by a factor of two) with a pass mark; a group's score is its
//! lowest, the scenario's its lowest group's.
//!
//! Pure: knows the scenario's `recorded` figures and what a cell result
//! holds; not VMs or the CLI.

use std::time::Duration;

use serde::Serialize;

use crate::agent::PassKind;
use crate::report::CellResult;
use crate::scenario::{Recorded, Scenario, Work};

/// Pass marks. CPU use and the burst rate are the workload's own and
/// must be reproduced within 25%. The wakeup delay is shown but not
/// scored: it is the replaying machine's and scheduler's more than the
/// workload's (a duty cycle recorded on this project's host woke in 76 us
/// at the median and, replayed in a TCG guest, in 302 us, with its CPU use
/// and burst rate within 5%: BENCHMARKS.md). The score is the smaller
/// ratio, so a mark of 0.75 passes a replay from 0.75 to 1.33 times the
/// recorded figure.
pub const MARK_CPU: f64 = 0.75;
pub const MARK_BURSTS: f64 = 0.75;
/// A coupling's wakeups a second (a `replay` group's `woken_by`): the
/// waking group's tasks must end the recorded number of its sleeps
/// within 25% too.
pub const MARK_COUPLING: f64 = 0.75;
/// Below this many CPUs busy (recorded and replayed) CPU use is not
/// scored: 1% of a CPU is within any machine's noise.
const CPU_FLOOR: f64 = 0.01;

/// One figure compared.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Figure {
    /// `cpus_busy`, `bursts_per_s`, `delay_p50`, `delay_p90` (the
    /// delays in us), `woken_by:GROUP` (that group's wakeups of this one
    /// a second).
    pub name: String,
    pub recorded: f64,
    pub replayed: f64,
    /// min(replayed/recorded, recorded/replayed); 1 when both are 0.
    pub score: f64,
    /// The lowest score that passes; None for a figure shown, not scored.
    pub mark: Option<f64>,
    pub pass: bool,
}

/// One group's figures.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GroupScore {
    pub group: String,
    pub figures: Vec<Figure>,
    /// Its lowest figure's score.
    pub score: f64,
    pub pass: bool,
}

/// The whole replay's.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Fidelity {
    pub scenario: String,
    pub groups: Vec<GroupScore>,
    /// The lowest group's score.
    pub score: f64,
    pub pass: bool,
}

fn ratio_score(a: f64, b: f64) -> f64 {
    if a <= 0.0 && b <= 0.0 {
        return 1.0;
    }
    if a <= 0.0 || b <= 0.0 {
        return 0.0;
    }
    (a / b).min(b / a)
}

fn figure(name: &str, recorded: f64, replayed: f64, mark: Option<f64>) -> Figure {
    let score = ratio_score(recorded, replayed);
    Figure {
        name: name.to_string(),
        recorded,
        replayed,
        score,
        mark,
        pass: mark.is_none_or(|m| score >= m),
    }
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// Scores `result` (a run of `scenario`, one cell) against the figures
/// `scenario` recorded. Errors: the scenario has no `recorded` figures,
/// or the result has no pass of the scheduler (the cell failed before
/// measuring): said with the cell's summary.
pub fn score(scenario: &Scenario, result: &CellResult) -> anyhow::Result<Fidelity> {
    anyhow::ensure!(
        !scenario.recorded.is_empty(),
        "{} has no `recorded` figures: it was not written by `scx-harness record`, so there is nothing to score a replay against",
        scenario.name
    );
    let pass = result
        .agent
        .as_ref()
        .and_then(|a| a.pass(PassKind::Scheduler))
        .ok_or_else(|| {
            anyhow::anyhow!(
                "the replay measured nothing: {}",
                result.summary.lines().next().unwrap_or("")
            )
        })?;
    let window = (pass.window_end_ns.saturating_sub(pass.window_start_ns)) as f64 / 1e9;
    let mut groups = Vec::new();
    for r in &scenario.recorded {
        groups.push(score_group(scenario, r, pass, window));
    }
    let score = groups.iter().map(|g| g.score).fold(1.0, f64::min);
    let ok = groups.iter().all(|g| g.pass);
    Ok(Fidelity {
        scenario: scenario.name.clone(),
        groups,
        score,
        pass: ok,
    })
}

fn score_group(
    scenario: &Scenario,
    r: &Recorded,
    pass: &crate::agent::Pass,
    window: f64,
) -> GroupScore {
    let mut figures = Vec::new();
    let measured = pass.group(&r.group);
    let (cpu, bursts, p50, p90) = match measured {
        Some(g) => {
            let bursts: u64 = g
                .outcome
                .as_ref()
                .map_or(0, |o| o.threads.iter().map(|t| t.iterations_window).sum());
            (
                g.probe.run_ns_window as f64 / 1e9 / window.max(1e-9),
                bursts as f64 / window.max(1e-9),
                g.probe.run_delay.quantile(0.5).map_or(0.0, us),
                g.probe.run_delay.quantile(0.9).map_or(0.0, us),
            )
        }
        None => (0.0, 0.0, 0.0, 0.0),
    };
    if r.cpus_busy >= CPU_FLOOR || cpu >= CPU_FLOOR {
        figures.push(figure("cpus_busy", r.cpus_busy, cpu, Some(MARK_CPU)));
    }
    // A spin group's iterations are loops, not bursts.
    let replays = matches!(
        scenario.group(&r.group).map(|g| &g.work),
        Some(Work::Replay { .. })
    );
    if replays {
        figures.push(figure(
            "bursts_per_s",
            r.bursts_per_s,
            bursts,
            Some(MARK_BURSTS),
        ));
        figures.push(figure("delay_p50", us(r.delay_p50), p50, None));
        figures.push(figure("delay_p90", us(r.delay_p90), p90, None));
        figures.extend(couplings(scenario, r, measured, window));
    }
    let score = figures
        .iter()
        .filter(|f| f.mark.is_some())
        .map(|f| f.score)
        .fold(1.0, f64::min);
    GroupScore {
        group: r.group.clone(),
        pass: measured.is_some() && figures.iter().all(|f| f.pass),
        figures,
        score: if measured.is_some() { score } else { 0.0 },
    }
}

/// Group `r`'s recorded wakeups by replayed groups (`recorded.woken_by`
/// naming a `replay` group of the scenario, 5% of its wakeups or more:
/// what `record` makes couplings of): the wakeups a second that group's
/// tasks made in the replay against the recorded share of the bursts. A
/// coupling the scenario does not replay scores 0.
fn couplings(
    scenario: &Scenario,
    r: &Recorded,
    measured: Option<&crate::agent::GroupResult>,
    window: f64,
) -> Vec<Figure> {
    let threads = measured
        .and_then(|g| g.outcome.as_ref())
        .map_or(&[][..], |o| &o.threads[..]);
    r.woken_by
        .iter()
        .filter(|w| {
            w.share >= crate::record::MIN_COUPLING
                && matches!(
                    scenario.group(&w.by).map(|g| &g.work),
                    Some(Work::Replay { .. })
                )
        })
        .map(|w| {
            let woken: u64 = threads
                .iter()
                .flat_map(|t| &t.woken_by)
                .filter(|c| c.group == w.by)
                .map(|c| c.woken)
                .sum();
            figure(
                &format!("woken_by:{}", w.by),
                w.share * r.bursts_per_s,
                woken as f64 / window.max(1e-9),
                Some(MARK_COUPLING),
            )
        })
        .collect()
}

/// The scores as a table for people.
pub fn table(f: &Fidelity) -> String {
    let mut out = format!(
        "{:<20} {:<20} {:>12} {:>12} {:>6} {:>6}\n",
        "group", "figure", "recorded", "replayed", "score", "mark"
    );
    for g in &f.groups {
        for x in &g.figures {
            out.push_str(&format!(
                "{:<20} {:<20} {:>12.3} {:>12.3} {:>6.2} {:>6}{}\n",
                g.group,
                x.name,
                x.recorded,
                x.replayed,
                x.score,
                x.mark.map_or("-".to_string(), |m| format!("{m:.2}")),
                match (x.pass, x.mark) {
                    (false, _) => "  MISSED",
                    (true, None) => "  (shown: the replaying machine's)",
                    (true, Some(_)) => "",
                }
            ));
        }
    }
    out.push_str(&format!(
        "fidelity {:.2} ({}): the lowest scored figure's score; 1 is exact, 0.5 off by a factor of two\n",
        f.score,
        if f.pass {
            "every figure within its mark"
        } else {
            "a figure missed its mark"
        }
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_score_is_the_ratio_either_way_and_a_mark_decides() {
        assert_eq!(ratio_score(2.0, 1.0), 0.5);
        assert_eq!(ratio_score(1.0, 2.0), 0.5);
        assert_eq!(ratio_score(0.0, 0.0), 1.0);
        assert_eq!(ratio_score(0.0, 3.0), 0.0);
        let f = figure("cpus_busy", 1.0, 0.8, Some(MARK_CPU));
        assert!(f.pass && (f.score - 0.8).abs() < 1e-12);
        assert!(!figure("bursts_per_s", 100.0, 70.0, Some(MARK_BURSTS)).pass);
        let shown = figure("delay_p50", 50.0, 500.0, None);
        assert!(shown.pass && (shown.score - 0.1).abs() < 1e-12);
    }
}
