//! The search of `scx-harness sweep` (the running is `cli::sweep`): a grid
//! of one scheduler's argument sets, sampled in rounds whose order a seed
//! shuffles (host drift then hits every point alike), raced on one
//! objective metric (a point significantly worse than the best by
//! `compare`'s statistics is dropped, so the runs go to the contenders),
//! and summarised per point, with the Pareto frontier over two metrics.
//! Pure: no VM, no files.

use serde::{Deserialize, Serialize};

use crate::stats::{Better, Comparison};

/// One swept option of the scheduler: `NAME=V1,V2,...`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Param {
    /// As written: `slice-us`, `--slice-us`, `-s`.
    pub name: String,
    pub values: Vec<String>,
}

impl Param {
    /// Parses `NAME=V1,V2,...`. Errors (the text of a `--param` error)
    /// when there is no `=`, no name, an empty value, or a value twice.
    pub fn parse(s: &str) -> Result<Param, String> {
        let (name, values) = s
            .split_once('=')
            .ok_or_else(|| format!("--param {s:?}: no `=`\n  fix: --param NAME=V1,V2,... (e.g. --param slice-us=1000,5000)"))?;
        let name = name.trim();
        if name.trim_start_matches('-').is_empty() {
            return Err(format!(
                "--param {s:?}: no option name before `=`\n  fix: --param NAME=V1,V2,..."
            ));
        }
        let values: Vec<String> = values.split(',').map(|v| v.trim().to_string()).collect();
        if values.iter().any(String::is_empty) {
            return Err(format!(
                "--param {s:?}: an empty value\n  fix: list values separated by commas, none empty"
            ));
        }
        for (i, v) in values.iter().enumerate() {
            if values[..i].contains(v) {
                return Err(format!(
                    "--param {s:?}: {v} is listed twice\n  fix: list each value once"
                ));
            }
        }
        Ok(Param {
            name: name.to_string(),
            values,
        })
    }

    /// The option as the scheduler gets it: `--NAME` for a bare name,
    /// else as written (`-s`, `--slice-us`).
    pub fn flag(&self) -> String {
        match self.name.starts_with('-') {
            true => self.name.clone(),
            false => format!("--{}", self.name),
        }
    }

    /// The name without its dashes, for labels.
    pub fn bare(&self) -> &str {
        self.name.trim_start_matches('-')
    }
}

/// What a point is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PointKind {
    /// One argument set of the grid: a contender.
    Grid,
    /// The scheduler with only its registry arguments: a reference.
    Defaults,
    /// The kernel's fair class (no sched_ext scheduler): a reference.
    FairClass,
}

/// One argument set, or a reference point.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Point {
    /// `slice-us=1000 lat-us=5` for the grid; `defaults`; `fair class`.
    pub label: String,
    pub kind: PointKind,
    /// The arguments after the registry's own (`--slice-us 1000`).
    pub args: Vec<String>,
}

/// Every combination of the values of `params`, the first parameter
/// varying slowest: the product of their value counts points.
pub fn grid(params: &[Param]) -> Vec<Point> {
    let mut points = vec![(Vec::<String>::new(), Vec::<String>::new())];
    for p in params {
        points = points
            .into_iter()
            .flat_map(|(label, args)| {
                p.values.iter().map(move |v| {
                    let mut l = label.clone();
                    l.push(format!("{}={v}", p.bare()));
                    let mut a = args.clone();
                    a.extend([p.flag(), v.clone()]);
                    (l, a)
                })
            })
            .collect();
    }
    points
        .into_iter()
        .map(|(label, args)| Point {
            label: label.join(" "),
            kind: PointKind::Grid,
            args,
        })
        .collect()
}

/// The runs of round `round`: each of `points` `samples` times on each of
/// `scenarios` scenarios, as (point, scenario) pairs in an order shuffled
/// by `seed` and the round (the same seed gives the same order; each round
/// its own).
pub fn round_order(
    points: &[usize],
    scenarios: usize,
    samples: usize,
    seed: u64,
    round: usize,
) -> Vec<(usize, usize)> {
    let mut order: Vec<(usize, usize)> = (0..samples)
        .flat_map(|_| {
            points
                .iter()
                .flat_map(move |&p| (0..scenarios).map(move |sc| (p, sc)))
        })
        .collect();
    // A different stream per round from one seed (the 64-bit golden ratio
    // spreads consecutive rounds across the seed space); splitmix64, ours,
    // so a seed gives the same order on every version.
    let mut rng = crate::stats::Rng(seed ^ (round as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    rng.shuffle(&mut order);
    order
}

/// A point dropped by racing: the comparison of its objective samples
/// against the best point's (`a`: the best, `b`: this one).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Dropped {
    pub point: usize,
    /// The point that was best when it was dropped.
    pub best: usize,
    pub comparison: Comparison,
}

/// After a round: the best of `alive` on the objective (the best median;
/// `samples[p]`: point p's objective values so far), and every other alive
/// point significantly worse than it by `stats::compare` (Mann-Whitney
/// p < `alpha` and the whole interval of the ratio of medians beyond
/// `noise`), which racing drops. None when no alive point has samples.
/// `better` must be `Lower` or `Higher`.
pub fn race(
    samples: &[Vec<f64>],
    alive: &[usize],
    better: Better,
    alpha: f64,
    noise: f64,
    seed: u64,
) -> Option<(usize, Vec<Dropped>)> {
    let best = best_of(samples, alive, better)?;
    let dropped = alive
        .iter()
        .filter(|&&p| p != best)
        .filter_map(|&p| {
            let c = crate::stats::compare(
                &samples[best],
                &samples[p],
                better,
                alpha,
                noise,
                seed ^ p as u64,
            );
            (c.verdict == crate::stats::Verdict::Worse).then_some(Dropped {
                point: p,
                best,
                comparison: c,
            })
        })
        .collect();
    Some((best, dropped))
}

/// The point of `among` with the best median of `samples` (ties: the
/// first); None when none has samples.
pub fn best_of(samples: &[Vec<f64>], among: &[usize], better: Better) -> Option<usize> {
    among
        .iter()
        .filter(|&&p| !samples[p].is_empty())
        .map(|&p| (p, crate::stats::median(&samples[p])))
        .filter(|(_, m)| m.is_finite())
        .reduce(|a, b| match (better, b.1 < a.1, b.1 > a.1) {
            (Better::Lower, true, _) | (Better::Higher, _, true) => b,
            _ => a,
        })
        .map(|(p, _)| p)
}

/// The Pareto frontier of `values` (point, x, y; medians): the points no
/// other point beats, at least as good on both metrics and better on one,
/// in the order given. Differences within `noise` (a fraction: 0.05 is 5%)
/// count as equal: a point kept on the frontier only by a 0.6% edge that
/// the runs cannot tell apart is not a setting worth choosing. `bx`, `by`:
/// which way each metric is better (`Neither` is read as lower).
pub fn frontier(values: &[(usize, f64, f64)], bx: Better, by: Better, noise: f64) -> Vec<usize> {
    // q better than p on a metric beyond the noise.
    let beats = |b: Better, q: f64, p: f64| match b {
        Better::Higher => q > p * (1.0 + noise),
        _ => q * (1.0 + noise) < p,
    };
    values
        .iter()
        .filter(|(p, x, y)| {
            !values.iter().any(|(q, qx, qy)| {
                q != p
                    && !beats(bx, *x, *qx)
                    && !beats(by, *y, *qy)
                    && (beats(bx, *qx, *x) || beats(by, *qy, *y))
            })
        })
        .map(|(p, _, _)| *p)
        .collect()
}

/// A metric of one scenario: `SCENARIO:METRIC`, or `METRIC` when the sweep
/// has one scenario.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetricRef {
    pub scenario: String,
    pub metric: String,
    /// Which way is better (never `Neither`: parse refuses it).
    pub better: Better,
}

impl MetricRef {
    /// Parses `[SCENARIO:]METRIC` against the sweep's scenarios
    /// (`scenario::Scenario::better` says a metric's direction); errors
    /// name the flag, the scenarios and the fix.
    pub fn parse(
        s: &str,
        flag: &str,
        scenarios: &[&crate::scenario::Scenario],
    ) -> Result<MetricRef, String> {
        let scenarios_in = scenarios;
        let names: Vec<&str> = scenarios.iter().map(|s| s.name.as_str()).collect();
        let scenarios = &names[..];
        let (scenario, metric) = match s.split_once(':') {
            Some((sc, m)) => (sc.to_string(), m.to_string()),
            None if scenarios.len() == 1 => (scenarios[0].to_string(), s.to_string()),
            None => {
                return Err(format!(
                    "{flag} {s}: which scenario's? The sweep runs {}\n  fix: {flag} SCENARIO:{s}",
                    scenarios.join(", ")
                ))
            }
        };
        if !scenarios.contains(&scenario.as_str()) {
            return Err(format!(
                "{flag} {s}: the sweep runs no scenario {scenario:?} (it runs {})\n  fix: name one of them",
                scenarios.join(", ")
            ));
        }
        if metric.is_empty() {
            return Err(format!(
                "{flag} {s}: no metric after the scenario\n  fix: {flag} {scenario}:METRIC (e.g. run_delay.GROUP.p99)"
            ));
        }
        let sc = scenarios_in
            .iter()
            .find(|x| x.name == scenario)
            .expect("checked above");
        let better = sc.better(&metric);
        if better == Better::Neither {
            return Err(format!(
                "{flag} {s}: {metric} has no better direction (a CPU share, an unknown name), so it cannot rank points\n  fix: a run delay (run_delay.GROUP.p99), a throughput or an application's own metric"
            ));
        }
        let group = match crate::metric::Metric::parse(&metric) {
            Some(crate::metric::Metric::RunDelay { group, .. })
            | Some(crate::metric::Metric::Throughput { group })
            | Some(crate::metric::Metric::App { group, .. }) => Some(group),
            _ => None,
        };
        if let Some(g) = group.filter(|g| sc.group(g).is_none()) {
            return Err(format!(
                "{flag} {s}: scenario {scenario} has no group {g:?}, so no run would measure it\n  fix: one of its groups: {}",
                sc.groups.iter().map(|g| g.name.as_str()).collect::<Vec<_>>().join(", ")
            ));
        }
        Ok(MetricRef {
            scenario,
            metric,
            better,
        })
    }
}

impl std::fmt::Display for MetricRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.scenario, self.metric)
    }
}

/// The schema name of `sweep.json`.
pub const SCHEMA: &str = "scx-harness/sweep/v1";

/// Where a point stands at the end.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Status {
    /// The grid point with the best objective median.
    Best,
    /// A grid point racing did not drop.
    Contender,
    /// Dropped by racing after round `round` (1-based).
    Dropped { round: usize, by: Dropped },
    /// A run of it failed (the scheduler refused its arguments, did not
    /// attach, exited, stalled a task): it took no further part.
    Failed { why: String },
    /// The defaults or the fair class: measured every round, never raced;
    /// `failed`: why it stopped being run (its first failed run).
    Reference { failed: Option<String> },
}

/// One metric of one point: its values over the point's usable runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricSummary {
    /// `SCENARIO:METRIC`.
    pub metric: String,
    pub samples: Vec<f64>,
    /// None without samples.
    pub median: Option<f64>,
    /// Against the defaults point (`a`: the defaults, `b`: this point):
    /// the ratio of medians with its interval; None without the reference
    /// or with too few samples on either side.
    pub vs_defaults: Option<Comparison>,
}

/// One point at the end of the sweep.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PointSummary {
    pub point: Point,
    #[serde(flatten)]
    pub status: Status,
    /// Runs it took (every scenario).
    pub runs: usize,
    /// The objective first, then the frontier's metrics.
    pub metrics: Vec<MetricSummary>,
    pub on_frontier: bool,
}

/// `sweep.json`: what was swept, how, and where every point stands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub schema: String,
    pub scheduler: String,
    /// Given to every point, the defaults included, after the registry's.
    pub fixed_args: Vec<String>,
    pub params: Vec<Param>,
    pub objective: MetricRef,
    /// The two metrics of the frontier, when asked for.
    pub frontier: Option<(MetricRef, MetricRef)>,
    pub seed: u64,
    /// Runs per point per scenario per round.
    pub samples: usize,
    pub racing: bool,
    pub rounds: usize,
    pub runs: usize,
    pub seconds: f64,
    /// Why it stopped: "rounds", "one contender left", "budget",
    /// "no contender left".
    pub stopped: String,
    pub points: Vec<PointSummary>,
    /// The index of the best point in `points`.
    pub best: Option<usize>,
    /// The best against the next best standing point on the objective
    /// (`a`: the best): whether the best is ahead by more than noise.
    pub runner_up: Option<Dropped>,
    /// Every run in the order it ran: (round, point, scenario index).
    pub order: Vec<(usize, usize, usize)>,
}

/// The points as a table, best objective first (points without one
/// last): objective median, against the defaults with the interval, runs,
/// where it stands; the frontier marked; then the best against the next.
pub fn table(r: &Report) -> String {
    let show = |v: f64| crate::metric::show(&r.objective.metric, "", v);
    let width = r
        .points
        .iter()
        .map(|p| p.point.label.len())
        .max()
        .unwrap_or(5)
        .max(5);
    let mut out = format!(
        "{:width$}  {:>12}  {:>22}  {:>4}  status\n",
        "point", "objective", "vs defaults [interval]", "runs"
    );
    let mut rows: Vec<&PointSummary> = r.points.iter().collect();
    let key = |p: &PointSummary| {
        p.metrics[0].median.map(|m| match r.objective.better {
            Better::Higher => -m,
            _ => m,
        })
    };
    rows.sort_by(|a, b| match (key(a), key(b)) {
        (Some(x), Some(y)) => x.total_cmp(&y),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => std::cmp::Ordering::Equal,
    });
    for p in rows {
        let m = &p.metrics[0];
        let vs = m.vs_defaults.as_ref().map_or("-".to_string(), |c| {
            format!("{:.2}x [{:.2}, {:.2}]", c.ratio, c.ci_low, c.ci_high)
        });
        let status = match &p.status {
            Status::Best => "BEST".to_string(),
            Status::Contender => "contender".to_string(),
            Status::Dropped { round, by } => format!(
                "dropped after round {round} ({:.2}x the best then, p = {:.3})",
                by.comparison.ratio, by.comparison.p_value
            ),
            Status::Failed { why } => format!("failed: {why}"),
            Status::Reference { failed: None } => "reference".to_string(),
            Status::Reference { failed: Some(why) } => format!("reference, failed: {why}"),
        };
        out.push_str(&format!(
            "{:width$}  {:>12}  {:>22}  {:>4}  {status}{}\n",
            p.point.label,
            m.median.map_or("-".into(), show),
            vs,
            p.runs,
            if p.on_frontier { "  (frontier)" } else { "" }
        ));
    }
    if let (Some(b), Some(u)) = (r.best, &r.runner_up) {
        let c = &u.comparison;
        out.push_str(&format!(
            "best: {}; the next, {}, is {:.2}x [{:.2}, {:.2}] of it, p = {:.3}: {}\n",
            r.points[b].point.label,
            r.points[u.point].point.label,
            c.ratio,
            c.ci_low,
            c.ci_high,
            c.p_value,
            match c.verdict {
                crate::stats::Verdict::Worse => "the best is ahead",
                _ => "not told apart (more rounds or samples may tell)",
            }
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_parse_and_refuse_with_the_fix() {
        let p = Param::parse("slice-us=1000, 5000").unwrap();
        assert_eq!(p.values, ["1000", "5000"]);
        assert_eq!(p.flag(), "--slice-us");
        assert_eq!(Param::parse("-s=1,2").unwrap().flag(), "-s");
        for bad in ["slice-us", "=1,2", "--=1", "a=1,,2", "a=1,1"] {
            let e = Param::parse(bad).unwrap_err();
            assert!(e.contains("fix:"), "{bad}: {e}");
        }
    }

    #[test]
    fn the_grid_is_every_combination_first_parameter_slowest() {
        let g = grid(&[
            Param::parse("a=1,2").unwrap(),
            Param::parse("--b=x,y,z").unwrap(),
        ]);
        assert_eq!(g.len(), 6);
        assert_eq!(g[0].label, "a=1 b=x");
        assert_eq!(g[0].args, ["--a", "1", "--b", "x"]);
        assert_eq!(g[5].label, "a=2 b=z");
        assert!(g.iter().all(|p| p.kind == PointKind::Grid));
    }

    #[test]
    fn a_round_runs_each_point_as_often_in_an_order_the_seed_fixes() {
        let o = round_order(&[0, 2, 5], 2, 3, 7, 0);
        assert_eq!(o.len(), 3 * 2 * 3);
        for p in [0, 2, 5] {
            for sc in 0..2 {
                assert_eq!(o.iter().filter(|x| **x == (p, sc)).count(), 3);
            }
        }
        assert_eq!(
            o,
            round_order(&[0, 2, 5], 2, 3, 7, 0),
            "same seed, same order"
        );
        assert_ne!(o, round_order(&[0, 2, 5], 2, 3, 7, 1), "each round its own");
        assert_ne!(o, round_order(&[0, 2, 5], 2, 3, 8, 0), "another seed");
    }

    #[test]
    fn racing_drops_only_points_clearly_worse_than_the_best() {
        // Lower is better: point 0 ~1 ms, 1 ~1.02 ms (noise), 2 ~5 ms.
        let s = vec![
            vec![1.00, 1.01, 0.99, 1.02, 1.00, 0.98],
            vec![1.02, 1.00, 1.03, 1.01, 1.04, 1.02],
            vec![5.0, 5.1, 4.9, 5.2, 5.0, 5.05],
        ];
        let (best, dropped) = race(&s, &[0, 1, 2], Better::Lower, 0.05, 0.05, 1).unwrap();
        assert_eq!(best, 0);
        assert_eq!(dropped.iter().map(|d| d.point).collect::<Vec<_>>(), [2]);
        assert!(dropped[0].comparison.ratio > 4.0);
        // Higher is better turns it round.
        let (best, dropped) = race(&s, &[0, 1, 2], Better::Higher, 0.05, 0.05, 1).unwrap();
        assert_eq!(best, 2);
        assert_eq!(dropped.len(), 2);
        // Three samples a side can never reach p < 0.05: nothing dropped.
        let few: Vec<Vec<f64>> = s.iter().map(|v| v[..3].to_vec()).collect();
        assert!(race(&few, &[0, 1, 2], Better::Lower, 0.05, 0.05, 1)
            .unwrap()
            .1
            .is_empty());
        assert!(race(&[vec![], vec![]], &[0, 1], Better::Lower, 0.05, 0.05, 1).is_none());
    }

    #[test]
    fn the_frontier_keeps_the_points_nothing_beats_on_both() {
        // x: p99 delay (lower better), y: throughput (higher better).
        let v = [
            (0, 1.0, 10.0),
            (1, 2.0, 20.0),
            (2, 3.0, 15.0), // beaten by 1 on both
            (3, 0.5, 5.0),
            (4, 2.0, 20.0), // equal to 1: neither beats the other
        ];
        assert_eq!(
            frontier(&v, Better::Lower, Better::Higher, 0.0),
            [0, 1, 3, 4]
        );
        assert_eq!(frontier(&v, Better::Higher, Better::Higher, 0.0), [1, 2, 4]);
        // Within the noise is equal: 1 ms and 16380/s beats 1.6 ms and
        // 16472/s (a 0.6% edge), which is then off the frontier.
        let w = [(0, 1.0, 16380.0), (1, 1.6, 16472.0)];
        assert_eq!(frontier(&w, Better::Lower, Better::Higher, 0.05), [0]);
        assert_eq!(frontier(&w, Better::Lower, Better::Higher, 0.0), [0, 1]);
    }

    #[test]
    fn a_report_with_a_failed_point_reads_back_and_its_table_puts_it_last() {
        let m = |median: Option<f64>, samples: Vec<f64>| MetricSummary {
            metric: "a:run_delay.x.p99".into(),
            samples,
            median,
            vs_defaults: None,
        };
        let point = |label: &str, status: Status, median: Option<f64>| PointSummary {
            point: Point {
                label: label.into(),
                kind: PointKind::Grid,
                args: vec![],
            },
            status,
            runs: 2,
            metrics: vec![m(median, median.into_iter().collect())],
            on_frontier: false,
        };
        let r = Report {
            schema: SCHEMA.into(),
            scheduler: "s".into(),
            fixed_args: vec![],
            params: vec![],
            objective: MetricRef {
                scenario: "a".into(),
                metric: "run_delay.x.p99".into(),
                better: Better::Lower,
            },
            frontier: None,
            seed: 1,
            samples: 2,
            racing: true,
            rounds: 1,
            runs: 6,
            seconds: 1.0,
            stopped: "rounds".into(),
            points: vec![
                point("slow", Status::Contender, Some(5e6)),
                point("broken", Status::Failed { why: "x".into() }, None),
                point("fast", Status::Best, Some(1e6)),
            ],
            best: Some(2),
            runner_up: None,
            order: vec![(1, 0, 0)],
        };
        let back: Report = serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
        assert_eq!(back, r);
        let t = table(&r);
        let rows: Vec<&str> = t
            .lines()
            .skip(1)
            .map(|l| l.split_whitespace().next().unwrap())
            .collect();
        assert_eq!(rows, ["fast", "slow", "broken"], "{t}");
    }

    fn scenario(name: &str) -> crate::scenario::Scenario {
        let text = format!(
            "name: {name}\ndescription: d\nduration: 3s\ngroups:\n  - {{ name: app, work: {{ kind: command, argv: [sh, -c, 'true'], exit: 0, metrics: [{{ name: ops, from: wall_time, unit: s, better: higher }}] }} }}\n  - {{ name: x, work: {{ kind: spin }} }}\n"
        );
        crate::scenario::parse(std::path::Path::new("t.yaml"), &text)
            .unwrap()
            .scenario
    }

    #[test]
    fn metric_refs_name_their_scenario_and_take_its_direction() {
        let (a, b) = (scenario("a"), scenario("b"));
        let one = MetricRef::parse("run_delay.x.p99", "--objective", &[&a]).unwrap();
        assert_eq!(one.to_string(), "a:run_delay.x.p99");
        assert_eq!(one.better, Better::Lower);
        // An application metric goes the way its scenario declares.
        let app = MetricRef::parse("b:app.app.ops", "--frontier", &[&a, &b]).unwrap();
        assert_eq!(app.better, Better::Higher);
        let e = MetricRef::parse("run_delay.x.p99", "--objective", &[&a, &b]).unwrap_err();
        assert!(
            e.contains("fix: --objective SCENARIO:run_delay.x.p99"),
            "{e}"
        );
        let e = MetricRef::parse("c:run_delay.x.p99", "--objective", &[&a, &b]).unwrap_err();
        assert!(e.contains("no scenario \"c\""), "{e}");
        let e = MetricRef::parse("a:cpu_share.x", "--frontier", &[&a, &b]).unwrap_err();
        assert!(e.contains("no better direction"), "{e}");
    }
}
