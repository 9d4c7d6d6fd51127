//! `bisect`: the search for the first bad step between a good and a bad
//! end, and how one step is judged. The steps are indices: 0 is the good
//! end, `n` the bad end, 1..n the revisions between them in order.
//! [`Search`] picks which step to test next and says when the first bad
//! one is known, when skipped steps leave a range, or when a step could not
//! be decided; [`judge`] turns the runs of a candidate (and of the good end,
//! for a metric) into a [`Mark`].
//!
//! Knows compare's statistics and cell results; nothing about git, builds
//! or VMs (`bisect::git`, `bisect::crates`, `cli::bisect`).

pub mod crates;
pub mod git;

use serde::Serialize;

use crate::compare::{compare_scenario_deciding, ScenarioComparison};
use crate::report::{CellResult, CellVerdict};
use crate::stats::{self, Verdict};

/// What a tested step turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Mark {
    /// As the good end.
    Good,
    /// As the bad end.
    Bad,
    /// Not testable: it did not build, or its runs could not be measured
    /// (as `git bisect skip`).
    Skip,
    /// Tested, and the statistics could not tell (the difference is below
    /// the noise, or the runs disagree).
    Undecided,
}

/// What the search does next, or how it ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    /// Test this step.
    Test(usize),
    /// The first bad step: its predecessor is good (or skipped steps lie
    /// between only if this is `Range`).
    Found(usize),
    /// Every step strictly between `good` and `bad` was skipped: the first
    /// bad one is one of `good + 1 ..= bad`.
    Range { good: usize, bad: usize },
    /// Step `at` could not be decided: the change lies in `good + 1 ..=
    /// bad`, and the search does not guess.
    Undecided { at: usize, good: usize, bad: usize },
}

/// A binary search over steps `0..=n`, 0 good and `n` bad.
#[derive(Debug, Clone)]
pub struct Search {
    marks: Vec<Option<Mark>>,
}

impl Search {
    /// A search over `n` steps after the good end (`n >= 1`: the bad end
    /// is step `n`). The ends are taken as marked; verify them first.
    pub fn new(n: usize) -> Search {
        let mut marks = vec![None; n.max(1) + 1];
        marks[0] = Some(Mark::Good);
        marks[n.max(1)] = Some(Mark::Bad);
        Search { marks }
    }

    pub fn mark(&mut self, step: usize, mark: Mark) {
        if let Some(m) = self.marks.get_mut(step) {
            *m = Some(mark);
        }
    }

    /// The last good step and the first bad one after it.
    fn bounds(&self) -> (usize, usize) {
        let good = self
            .marks
            .iter()
            .rposition(|m| *m == Some(Mark::Good))
            .unwrap_or(0);
        let bad = (good + 1..self.marks.len())
            .find(|i| self.marks[*i] == Some(Mark::Bad))
            .unwrap_or(self.marks.len() - 1);
        (good, bad)
    }

    pub fn next(&self) -> Next {
        let (good, bad) = self.bounds();
        if let Some(at) = (good + 1..bad).find(|i| self.marks[*i] == Some(Mark::Undecided)) {
            return Next::Undecided { at, good, bad };
        }
        if bad == good + 1 {
            return Next::Found(bad);
        }
        let mid = (good + bad) / 2;
        // The untested step nearest the middle (the lower on a tie), as
        // `git bisect` moves off a skipped commit.
        match (good + 1..bad)
            .filter(|i| self.marks[*i].is_none())
            .min_by_key(|i| (i.abs_diff(mid), *i))
        {
            Some(i) => Next::Test(i),
            None => Next::Range { good, bad },
        }
    }
}

/// What makes a step bad.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Criterion {
    /// A check of the scenario fails (or the scheduler fails outright) in
    /// any of the candidate's runs.
    Checks,
    /// Worse than the good end, by compare's statistics (Mann-Whitney p,
    /// adjusted by Holm's method across the metrics that decide, below
    /// alpha, and the ratio's whole bootstrap interval beyond the noise,
    /// in the metric's known direction): the named metric alone (one with
    /// no better direction: changed either way), or with `None` any key
    /// metric, the key metrics tested together. A run that fails outright is bad too; a good end that
    /// fails outright beside a step leaves the step untestable (`Skip`).
    Worse(Option<String>),
}

impl Criterion {
    /// Whether a step needs runs of the good end beside its own.
    pub fn needs_good_runs(&self) -> bool {
        matches!(self, Criterion::Worse(_))
    }
}

/// A step's judgement on one scenario.
#[derive(Debug, Clone, Serialize)]
pub struct Judgement {
    pub mark: Mark,
    /// Why, in one line: the failing check, the metric's change, or what
    /// is unsettled.
    pub why: String,
    /// With [`Criterion::Worse`]: the metrics found worse here, each with
    /// its ratio (median here / median at the good end). At the bad end,
    /// what the search then looks for.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub shifts: Vec<Shift>,
}

/// A metric that moved between the good end and a step: its name as
/// `compare` gives it, and median(step) / median(good end).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Shift {
    pub metric: String,
    pub ratio: f64,
}

/// Judges a candidate's runs of one scenario (and the good end's, for
/// [`Criterion::Worse`]). `ends`: what moved between the ends on this
/// scenario (the bad end's [`Judgement::shifts`]; `None` while judging the
/// bad end itself): a step between them is then judged on those metrics
/// only, good when each one's interval lies on the good end's side of
/// halfway to the bad end's ratio (and within the noise at least), bad when
/// it is worse and its interval lies past halfway on the bad end's side,
/// undecided otherwise (a smaller change, or too few runs), so the search
/// finds the change between the ends rather than asking every step to be
/// equal to the good end within the noise. `Err` when the named
/// metric is not among those the runs have (bad input: the message lists
/// them).
pub fn judge(
    criterion: &Criterion,
    good: &[&CellResult],
    candidate: &[&CellResult],
    alpha: f64,
    noise: f64,
    ends: Option<&[Shift]>,
) -> Result<Judgement, String> {
    let first_line = |s: &str| s.lines().next().unwrap_or("").to_string();
    // A failing check decides even beside a run that was not measured.
    if *criterion == Criterion::Checks {
        if let Some(r) = candidate.iter().find(|r| r.verdict == CellVerdict::Fail) {
            return Ok(Judgement {
                mark: Mark::Bad,
                why: first_line(&r.summary),
                shifts: Vec::new(),
            });
        }
    }
    if let Some(r) = candidate
        .iter()
        .find(|r| matches!(r.verdict, CellVerdict::Error | CellVerdict::NotRun))
    {
        return Ok(Judgement {
            mark: Mark::Skip,
            why: format!("not measured: {}", first_line(&r.summary)),
            shifts: Vec::new(),
        });
    }
    match criterion {
        Criterion::Checks => Ok(Judgement {
            mark: Mark::Good,
            why: format!("{} run(s) passed", candidate.len()),
            shifts: Vec::new(),
        }),
        Criterion::Worse(metric) => {
            let decides = |name: &str, key: bool| deciding(name, key, metric.as_deref(), ends);
            let c = compare_scenario_deciding(good, candidate, alpha, noise, &decides);
            worse(&c, metric.as_deref(), (alpha, noise), ends)
        }
    }
}

/// "; ... more runs" when no metric that decides could be called at
/// `alpha` with the runs so far (Holm across them), else empty.
fn too_few(chosen: &[&crate::compare::MetricComparison], alpha: f64) -> String {
    match chosen.iter().any(|m| m.callable(alpha)) {
        true => String::new(),
        false => format!(
            "; {} run(s) a side cannot reach p < {alpha} across {} metric(s) at all: more runs",
            chosen.first().map_or(0, |m| m.candidate.len()),
            chosen.first().map_or(0, |m| m.stats.family)
        ),
    }
}

/// Whether metric `name` decides a step (tested as one family with the
/// others that do): between the ends, those that moved between them;
/// otherwise the one named with `--metric`, or the key ones.
fn deciding(name: &str, key: bool, metric: Option<&str>, ends: Option<&[Shift]>) -> bool {
    match ends {
        Some(shifts) => shifts.iter().any(|s| s.metric == name),
        None => metric.map_or(key, |n| n == name),
    }
}

fn worse(
    c: &ScenarioComparison,
    metric: Option<&str>,
    (alpha, noise): (f64, f64),
    ends: Option<&[Shift]>,
) -> Result<Judgement, String> {
    let judged = |mark, why| Judgement {
        mark,
        why,
        shifts: Vec::new(),
    };
    if let Some(o) = c.outright.iter().find(|o| o.side == "candidate") {
        return Ok(judged(Mark::Bad, format!("failed outright: {}", o.reason)));
    }
    // More runs beside a good end that fails would not settle anything:
    // the step is not testable.
    if let Some(o) = c.outright.first() {
        return Ok(judged(
            Mark::Skip,
            format!("the good end failed outright beside it: {}", o.reason),
        ));
    }
    if let Some(name) = metric.filter(|n| !c.metrics.iter().any(|m| m.name == *n)) {
        let names: Vec<&str> = c.metrics.iter().map(|m| m.name.as_str()).collect();
        return Err(format!(
            "{}: no metric {name}\n  fix: --metric one of {}",
            c.scenario,
            names.join(", ")
        ));
    }
    // Between the ends, only what moved between them counts.
    let chosen: Vec<_> = c
        .metrics
        .iter()
        .filter(|m| deciding(&m.name, m.key, metric, ends))
        .collect();
    let show = |m: &crate::compare::MetricComparison| {
        format!(
            "{} {} -> {} x{:.3} [{:.3}, {:.3}] p={:.4}",
            m.name,
            crate::metric::show(&m.name, &m.unit, m.stats.median_a),
            crate::metric::show(&m.name, &m.unit, m.stats.median_b),
            m.stats.ratio,
            m.stats.ci_low,
            m.stats.ci_high,
            m.stats.p_value
        )
    };
    // Worse; or, for a metric named on its own that has no better
    // direction, changed beyond the noise (what the user asked about).
    // Between the ends, only as far as halfway to the bad end's change on
    // its side: a smaller change is not the one searched for.
    let past_half = |m: &crate::compare::MetricComparison| match ends {
        None => true,
        Some(shifts) => shifts.iter().any(|s| {
            s.metric == m.name && {
                let half = ((s.ratio - 1.0).abs() / 2.0).max(noise);
                if s.ratio >= 1.0 {
                    m.stats.ci_low > 1.0 + half
                } else {
                    m.stats.ci_high < 1.0 - half
                }
            }
        }),
    };
    let worse: Vec<_> = chosen
        .iter()
        .filter(|m| {
            (m.stats.verdict == Verdict::Worse
                || (metric.is_some() && m.stats.verdict == Verdict::Changed))
                && past_half(m)
        })
        .collect();
    if let Some(m) = worse.first() {
        let what = match m.stats.verdict {
            Verdict::Changed => "changed (it has no better direction)",
            _ => "worse",
        };
        return Ok(Judgement {
            mark: Mark::Bad,
            why: format!("{what}: {}", show(m)),
            shifts: worse
                .iter()
                .map(|m| Shift {
                    metric: m.name.clone(),
                    ratio: m.stats.ratio,
                })
                .collect(),
        });
    }
    match ends {
        None => {
            if chosen.is_empty() {
                return Err(format!("{}: no key metric to judge by", c.scenario));
            }
            if let Some(m) = chosen.iter().find(|m| !stats::settled(&m.stats, noise)) {
                return Ok(judged(
                    Mark::Undecided,
                    format!("not settled: {}{}", show(m), too_few(&chosen, alpha)),
                ));
            }
            Ok(judged(
                Mark::Good,
                match chosen.as_slice() {
                    [m] => format!("no worse: {}", show(m)),
                    all => format!("no key metric worse ({} within the noise)", all.len()),
                },
            ))
        }
        Some(shifts) => {
            let Some(first) = chosen.first() else {
                return Ok(judged(
                    Mark::Good,
                    "none of its metrics moved between the ends".into(),
                ));
            };
            for m in &chosen {
                let Some(s) = shifts.iter().find(|s| s.metric == m.name) else {
                    continue;
                };
                let half = ((s.ratio - 1.0).abs() / 2.0).max(noise);
                let near_good = m.stats.verdict != Verdict::Unclear
                    && if s.ratio >= 1.0 {
                        m.stats.ci_high <= 1.0 + half
                    } else {
                        m.stats.ci_low >= 1.0 - half
                    };
                if !near_good {
                    return Ok(judged(
                        Mark::Undecided,
                        format!(
                            "not settled: {} (its interval reaches past halfway to the bad end's x{:.3}){}",
                            show(m),
                            s.ratio,
                            too_few(&chosen, alpha)
                        ),
                    ));
                }
            }
            let bad_end = shifts
                .iter()
                .find(|s| s.metric == first.name)
                .map_or(f64::NAN, |s| s.ratio);
            Ok(judged(
                Mark::Good,
                format!(
                    "as the good end: {} (the bad end x{bad_end:.3})",
                    show(first)
                ),
            ))
        }
    }
}

/// The marks of a step's scenarios as one: bad if any is, else undecided
/// if any is, else skipped if any is, else good.
pub fn combine(marks: impl IntoIterator<Item = Mark>) -> Mark {
    let marks: Vec<Mark> = marks.into_iter().collect();
    [Mark::Bad, Mark::Undecided, Mark::Skip]
        .into_iter()
        .find(|m| marks.contains(m))
        .unwrap_or(Mark::Good)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs the search against steps whose first bad one is `k` (of `n`),
    /// with `skip` untestable; returns how it ended and the steps tested.
    fn search(n: usize, k: usize, skip: &[usize]) -> (Next, Vec<usize>) {
        let mut s = Search::new(n);
        let mut tested = Vec::new();
        loop {
            match s.next() {
                Next::Test(i) => {
                    assert!(!tested.contains(&i), "step {i} tested twice");
                    tested.push(i);
                    let m = if skip.contains(&i) {
                        Mark::Skip
                    } else if i >= k {
                        Mark::Bad
                    } else {
                        Mark::Good
                    };
                    s.mark(i, m);
                }
                end => return (end, tested),
            }
        }
    }

    #[test]
    fn the_first_bad_step_is_found_in_about_log2_n_tests() {
        for n in 1..=40usize {
            for k in 1..=n {
                let (end, tested) = search(n, k, &[]);
                assert_eq!(end, Next::Found(k), "n={n} k={k}");
                let bound = (n as f64).log2().ceil() as usize;
                assert!(tested.len() <= bound, "n={n} k={k}: {tested:?}");
            }
        }
    }

    #[test]
    fn skipped_steps_are_stepped_around_and_leave_a_range_when_they_must() {
        // Step 4 does not build; the first bad is 6: still found.
        assert_eq!(search(8, 6, &[4]).0, Next::Found(6));
        // The first bad is 5 and 4 is skipped: 3 good, 5 bad, 4 unknown.
        assert_eq!(search(8, 5, &[4]).0, Next::Range { good: 3, bad: 5 });
        // Everything between the ends skipped.
        assert_eq!(search(4, 2, &[1, 2, 3]).0, Next::Range { good: 0, bad: 4 });
    }

    #[test]
    fn an_undecided_step_ends_the_search_with_the_range_left() {
        let mut s = Search::new(8);
        let Next::Test(first) = s.next() else {
            panic!("a step to test")
        };
        s.mark(first, Mark::Good);
        let Next::Test(second) = s.next() else {
            panic!("a step to test")
        };
        s.mark(second, Mark::Undecided);
        assert_eq!(
            s.next(),
            Next::Undecided {
                at: second,
                good: first,
                bad: 8
            }
        );
    }

    fn runs(delays: &[u64], verdict: CellVerdict) -> Vec<CellResult> {
        delays
            .iter()
            .map(|d| crate::compare::sample_result(*d, verdict))
            .collect()
    }

    fn judged(c: &Criterion, good: &[u64], cand: &[u64]) -> Result<Judgement, String> {
        between(c, good, cand, None)
    }

    fn between(
        c: &Criterion,
        good: &[u64],
        cand: &[u64],
        ends: Option<&[Shift]>,
    ) -> Result<Judgement, String> {
        let (g, b) = (runs(good, CellVerdict::Pass), runs(cand, CellVerdict::Pass));
        let (g, b): (Vec<_>, Vec<_>) = (g.iter().collect(), b.iter().collect());
        judge(c, &g, &b, 0.05, 0.05, ends)
    }

    #[test]
    fn between_the_ends_a_step_is_judged_against_halfway_to_the_bad_ends_change() {
        let any = Criterion::Worse(None);
        // The bad end: p50 5x the good end's; that is what is looked for.
        let end = judged(&any, &[1, 1, 1, 1], &[5, 5, 5, 5]).unwrap();
        assert_eq!(end.mark, Mark::Bad);
        let shifts = end.shifts.clone();
        assert!(
            shifts
                .iter()
                .any(|s| s.metric == "run_delay.g.p50" && s.ratio > 4.0),
            "{shifts:?}"
        );
        // Runs that disagree by 2x: not the good end within 5%, yet far
        // from halfway to 5x: good between these ends, undecided alone.
        let j = between(&any, &[1, 2, 1, 2], &[2, 1, 2, 1], Some(&shifts)).unwrap();
        assert_eq!(j.mark, Mark::Good, "{}", j.why);
        assert_eq!(
            judged(&any, &[1, 2, 1, 2], &[2, 1, 2, 1]).unwrap().mark,
            Mark::Undecided
        );
        // As bad as the bad end: bad.
        let j = between(&any, &[1, 1, 1, 1], &[5, 5, 5, 5], Some(&shifts)).unwrap();
        assert_eq!(j.mark, Mark::Bad, "{}", j.why);
        // Too few runs to say: undecided.
        let j = between(&any, &[1, 1], &[1, 1], Some(&shifts)).unwrap();
        assert_eq!(j.mark, Mark::Undecided, "{}", j.why);
        // Twice worse, tightly: worse than the good end on its own, but on
        // the good end's side of halfway to the 5x searched for (a smaller
        // change); 4x is past halfway: bad.
        let j = judged(&any, &[1, 1, 1, 1], &[2, 2, 2, 2]).unwrap();
        assert_eq!(j.mark, Mark::Bad, "{}", j.why);
        let j = between(&any, &[1, 1, 1, 1], &[2, 2, 2, 2], Some(&shifts)).unwrap();
        assert_eq!(j.mark, Mark::Good, "{}", j.why);
        let j = between(&any, &[1, 1, 1, 1], &[4, 4, 4, 4], Some(&shifts)).unwrap();
        assert_eq!(j.mark, Mark::Bad, "{}", j.why);
    }

    #[test]
    fn a_metric_worse_beyond_the_noise_is_bad_the_same_is_good_and_noise_is_undecided() {
        let any = Criterion::Worse(None);
        let j = judged(&any, &[1, 1, 1, 1], &[5, 5, 5, 5]).unwrap();
        assert_eq!(j.mark, Mark::Bad, "{}", j.why);
        assert!(j.why.starts_with("worse: "), "{}", j.why);
        let j = judged(&any, &[1, 1, 1, 1], &[1, 1, 1, 1]).unwrap();
        assert_eq!(j.mark, Mark::Good, "{}", j.why);
        // Runs that disagree: no verdict, and more runs could change that.
        let j = judged(&any, &[1, 3, 1, 3], &[3, 1, 3, 1]).unwrap();
        assert_eq!(j.mark, Mark::Undecided, "{}", j.why);
        // Better is not bad.
        let j = judged(&any, &[5, 5, 5, 5], &[1, 1, 1, 1]).unwrap();
        assert_eq!(j.mark, Mark::Good, "{}", j.why);
    }

    #[test]
    fn a_named_metric_decides_alone_and_an_unknown_one_is_refused_with_the_names() {
        let m = Criterion::Worse(Some("run_delay.g.max".into()));
        let j = judged(&m, &[1, 1, 1, 1], &[5, 5, 5, 5]).unwrap();
        assert_eq!(j.mark, Mark::Bad, "{}", j.why);
        assert!(j.why.contains("run_delay.g.max"), "{}", j.why);
        let e = judged(&Criterion::Worse(Some("nosuch".into())), &[1; 4], &[1; 4]).unwrap_err();
        assert!(
            e.contains("no metric nosuch") && e.contains("run_delay.g.max"),
            "{e}"
        );
    }

    #[test]
    fn with_checks_a_failing_run_is_bad_and_an_unmeasured_one_is_skipped() {
        let mut cand = runs(&[1, 1], CellVerdict::Pass);
        let refs: Vec<_> = cand.iter().collect();
        assert_eq!(
            judge(&Criterion::Checks, &[], &refs, 0.05, 0.05, None)
                .unwrap()
                .mark,
            Mark::Good
        );
        cand[1].verdict = CellVerdict::Fail;
        cand[1].summary = "run_delay p50: observed 1.2ms".into();
        let refs: Vec<_> = cand.iter().collect();
        let j = judge(&Criterion::Checks, &[], &refs, 0.05, 0.05, None).unwrap();
        assert_eq!(
            (j.mark, j.why.as_str()),
            (Mark::Bad, "run_delay p50: observed 1.2ms")
        );
        // The failing check decides beside a run that was not measured;
        // without it the step cannot be judged.
        cand[0].verdict = CellVerdict::Error;
        let refs: Vec<_> = cand.iter().collect();
        let j = judge(&Criterion::Checks, &[], &refs, 0.05, 0.05, None).unwrap();
        assert_eq!(j.mark, Mark::Bad, "{}", j.why);
        cand[1].verdict = CellVerdict::Pass;
        let refs: Vec<_> = cand.iter().collect();
        let j = judge(&Criterion::Checks, &[], &refs, 0.05, 0.05, None).unwrap();
        assert_eq!(j.mark, Mark::Skip, "{}", j.why);
    }

    #[test]
    fn marks_combine_worst_first() {
        assert_eq!(combine([Mark::Good, Mark::Bad, Mark::Skip]), Mark::Bad);
        assert_eq!(
            combine([Mark::Good, Mark::Skip, Mark::Undecided]),
            Mark::Undecided
        );
        assert_eq!(combine([Mark::Good, Mark::Skip]), Mark::Skip);
        assert_eq!(combine([Mark::Good, Mark::Good]), Mark::Good);
    }
}
