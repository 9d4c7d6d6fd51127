//! Judging a scenario's measurements against its checks. Pure: the agent's
//! output, the scheduler's lifecycle report and the console's crash lines
//! in, one outcome per check out, each with the observed value next to its
//! bound. Knows nothing about VMs or how the numbers were taken.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::agent::{AgentOutput, Pass, PassKind, SPIKE_AFTER};
use crate::scenario::{
    AppMetricCheck, Check, CheckKind, Property, Scenario, StallCheck, StallTasks, Work,
};
use crate::scheduler::lifecycle::Verdict;
use crate::units::format_duration;
use crate::vm::console::CrashLine;
use crate::workload::app::AppOutcome;

/// The result of one check (or one bound of a check).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Outcome {
    /// "run_delay interactive p99", "stall", "share batch", ...
    pub name: String,
    pub pass: bool,
    /// The measured value and the bound, as people read them.
    pub observed: String,
    pub bound: String,
    /// The same as numbers (ns for times, fractions for shares, per second
    /// for throughput), for tools.
    pub observed_value: Option<f64>,
    pub bound_value: f64,
    /// Why it failed, or what else a reader needs.
    pub detail: String,
    /// The property the check guards when the scheduler does not claim it
    /// (registry `claims:`): the outcome is shown and recorded, and does
    /// not fail the cell.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unclaimed: Option<Property>,
    /// Which check of the scenario it comes from (absent in results of
    /// v1, and in `--check` outcomes built by hand).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check: Option<CheckKind>,
}

impl Outcome {
    /// Whether it comes from a check of this kind (results of v1 carry
    /// no kind: their outcome's name begins with it).
    pub fn is(&self, kind: CheckKind) -> bool {
        match self.check {
            Some(k) => k == kind,
            None => serde_json::to_value(kind)
                .ok()
                .and_then(|v| v.as_str().map(|n| self.name.starts_with(n)))
                .unwrap_or(false),
        }
    }

    /// Whether it fails the cell: it failed, and guards nothing the
    /// scheduler disclaims.
    pub fn fails(&self) -> bool {
        !self.pass && self.unclaimed.is_none()
    }

    /// "pass", "FAIL", or for a property the scheduler does not claim
    /// "not claimed: holds" / "not claimed: does not hold".
    pub fn status(&self) -> String {
        match (self.unclaimed, self.pass) {
            (None, true) => "pass".into(),
            (None, false) => "FAIL".into(),
            (Some(p), true) => format!("{} not claimed; holds", p.name()),
            (Some(p), false) => format!("{} not claimed; does not hold", p.name()),
        }
    }

    /// "run_delay interactive p99: observed 12.3ms against <= 20ms (pass)"
    pub fn line(&self) -> String {
        format!(
            "{}: observed {} against {} ({}){}",
            self.name,
            self.observed,
            self.bound,
            self.status(),
            if self.detail.is_empty() {
                String::new()
            } else {
                format!("; {}", self.detail)
            }
        )
    }
}

/// What the checks are evaluated on.
pub struct Evidence<'a> {
    pub scenario: &'a Scenario,
    pub agent: &'a AgentOutput,
    /// Kernel trouble seen in the console.
    pub crashes: &'a [CrashLine],
    /// The properties the scheduler claims (registry `claims:`); `None`:
    /// every property (a scheduler is held to every bound unless it says
    /// otherwise).
    pub claims: Option<&'a [Property]>,
    /// The scheduler switches only SCHED_EXT tasks (registry `partial:`).
    pub partial: bool,
}

fn ms(d: Duration) -> String {
    let us = d.as_micros();
    if us >= 10_000 {
        format!("{:.1}ms", us as f64 / 1000.0)
    } else if us >= 1000 {
        format!("{:.2}ms", us as f64 / 1000.0)
    } else {
        format!("{us}us")
    }
}

pub use crate::scenario::nice_weight;

/// Evaluates every check of the scenario. A pass that is missing (the
/// scheduler never attached, the agent failed) fails the checks that need
/// it, with the reason: never an empty pass.
pub fn evaluate(ev: &Evidence) -> Vec<Outcome> {
    let s = ev.scenario;
    let main = ev.agent.pass(PassKind::Scheduler);
    let fair = ev.agent.pass(PassKind::Fair);
    let missing = |name: String, bound: String, bound_value: f64, why: &str| Outcome {
        name,
        pass: false,
        observed: "not measured".into(),
        bound,
        observed_value: None,
        bound_value,
        detail: why.to_string(),
        unclaimed: None,
        check: None,
    };
    let no_pass_why = || -> String {
        if let Some(e) = &ev.agent.error {
            return format!("the guest agent failed: {e}");
        }
        match &ev.agent.scheduler {
            Some(r) if !r.verdict.is_clean() && r.attach_ms.is_none() => {
                format!("the scheduler never attached: {}", r.verdict.why())
            }
            _ => "the scenario did not run under the scheduler".into(),
        }
    };
    let mut out = Vec::new();
    for g in s
        .groups
        .iter()
        .filter(|g| matches!(g.work, Work::Command { .. }))
    {
        out.extend(app_ran(g, main));
    }
    for c in &s.checks {
        let first = out.len();
        evaluate_one(ev, c, main, fair, &missing, &no_pass_why, &mut out);
        for o in &mut out[first..] {
            o.check = Some(c.id());
        }
        if let Some(p) = c
            .property()
            .filter(|p| ev.claims.is_some_and(|cl| !cl.contains(p)))
        {
            for o in &mut out[first..] {
                o.unclaimed = Some(p);
            }
        }
    }
    out
}

/// The outcomes of one check, appended to `out`.
fn evaluate_one(
    ev: &Evidence,
    c: &Check,
    main: Option<&Pass>,
    fair: Option<&Pass>,
    missing: &dyn Fn(String, String, f64, &str) -> Outcome,
    no_pass_why: &dyn Fn() -> String,
    out: &mut Vec<Outcome>,
) {
    let s = ev.scenario;
    {
        match c {
            Check::RunDelay(rd) => {
                let own = rd.excluding.is_some();
                let excl = rd
                    .excluding
                    .map(|e| format!(" excluding {e}"))
                    .unwrap_or_default();
                for (label, q, bound) in rd.bounds() {
                    let name = format!("run_delay {} {label}{excl}", rd.group);
                    let Some(p) = main else {
                        out.push(missing(
                            name,
                            format!("<= {}", ms(bound)),
                            bound.as_nanos() as f64,
                            &no_pass_why(),
                        ));
                        continue;
                    };
                    let mut o = run_delay(p, &rd.group, (label, q, own), bound, name);
                    o.detail = format!("{}; {}", o.detail, why_waited(p, &rd.group));
                    out.push(o);
                }
                for (label, q, factor) in rd.fair_bounds() {
                    let name = format!("run_delay {} {label} of fair{excl}", rd.group);
                    let shown = format!("<= {factor:.2} x fair");
                    match (main, fair) {
                        (Some(m), Some(f)) => out.push(run_delay_of_fair(
                            m,
                            f,
                            &rd.group,
                            (label, q, factor, own),
                            rd.floor,
                            name,
                        )),
                        (Some(_), None) => out.push(missing(
                            name,
                            shown,
                            factor,
                            &format!(
                                "the scenario's pass under the fair class is missing: {}",
                                ev.agent
                                    .error
                                    .as_deref()
                                    .unwrap_or("the agent did not run it")
                            ),
                        )),
                        (None, _) => out.push(missing(name, shown, factor, &no_pass_why())),
                    }
                }
            }
            Check::Stall(st) => {
                let bound = st.max_runnable;
                let name = match (&st.group, st.tasks) {
                    (Some(g), _) => format!("stall {g} max_runnable"),
                    (None, StallTasks::Guest) => "stall guest max_runnable".to_string(),
                    (None, StallTasks::Scenario) => "stall max_runnable".to_string(),
                } + &st
                    .excluding
                    .map(|e| format!(" excluding {e}"))
                    .unwrap_or_default();
                let Some(p) = main else {
                    out.push(missing(
                        name,
                        format!("<= {}", ms(bound)),
                        bound.as_nanos() as f64,
                        &no_pass_why(),
                    ));
                    return;
                };
                out.push(stall(p, st, name));
            }
            Check::Share(sh) => {
                if let (Some(g), Some(f)) = (&sh.group, sh.min_of_fair) {
                    let name = format!("share {g} of fair");
                    let bound = format!(">= {f:.2} x fair");
                    match (main, fair) {
                        (Some(m), Some(fp)) => out.push(share_of_fair(s, m, fp, g, f, name, bound)),
                        _ => out.push(missing(name, bound, f, &no_pass_why())),
                    }
                } else if let Some(groups) = &sh.by_weight {
                    let tol = sh.tolerance.unwrap_or(0.25);
                    let name = match (sh.from, sh.to) {
                        (None, None) => format!("share by weight {}", groups.join(":")),
                        (f, t) => format!(
                            "share by weight {} {}-{}",
                            groups.join(":"),
                            format_duration(f.unwrap_or(s.warmup)),
                            format_duration(t.unwrap_or(s.duration))
                        ),
                    };
                    let bound = format!("within {:.0}% of the weights", tol * 100.0);
                    match main {
                        Some(m) => out.push(share_by_weight(s, sh, m, groups, tol, name, bound)),
                        None => out.push(missing(name, bound, tol, &no_pass_why())),
                    }
                }
            }
            Check::Throughput(t) => {
                let name = format!("throughput {}", t.group);
                let Some(m) = main else {
                    out.push(missing(name, "a floor".into(), 0.0, &no_pass_why()));
                    return;
                };
                // Iterations come from the group's own report, which a
                // group stopped early (by the stall check) never writes:
                // then the rate is not measured, rather than zero.
                let rate = |p: &Pass| {
                    p.group(&t.group)
                        .filter(|g| g.outcome.is_some())
                        .map(|g| g.iterations_window() as f64 / p.window().as_secs_f64().max(1e-9))
                };
                let observed = rate(m);
                let unreported = observed.is_none().then(|| {
                    format!(
                        "group {} wrote no report of its iterations: it was stopped early (see the stall check) or crashed",
                        t.group
                    )
                });
                if let Some(floor) = t.min_per_sec {
                    out.push(at_least(
                        format!("{name} per second"),
                        observed,
                        floor,
                        |v| format!("{v:.0}/s"),
                        unreported.clone().unwrap_or_default(),
                    ));
                }
                if let Some(f) = t.min_of_fair {
                    match fair.and_then(rate) {
                        Some(fr) => out.push(at_least(
                            format!("{name} of fair"),
                            observed.map(|o| o / fr.max(1e-9)),
                            f,
                            |v| format!("{v:.2} x fair"),
                            match &unreported {
                                Some(u) => format!("{u}; fair class: {fr:.0}/s"),
                                None => format!("fair class: {fr:.0}/s"),
                            },
                        )),
                        None => out.push(missing(
                            format!("{name} of fair"),
                            format!(">= {f:.2} x fair"),
                            f,
                            &no_pass_why(),
                        )),
                    }
                }
            }
            Check::SchedulerHealthy(_) => out.push(healthy(ev)),
            Check::AppMetric(a) => app_metric(ev, a, main, fair, no_pass_why, out),
            Check::Swap(sw) => {
                let bound = sw.max_delay;
                let Some(p) = main else {
                    out.push(missing(
                        "swap".into(),
                        format!("<= {}", ms(bound)),
                        bound.as_nanos() as f64,
                        &no_pass_why(),
                    ));
                    return;
                };
                if p.swaps.len() < s.swaps.len() {
                    out.push(missing(
                        "swap".into(),
                        format!("<= {}", ms(bound)),
                        bound.as_nanos() as f64,
                        &format!(
                            "{} of {} swaps happened before the run ended",
                            p.swaps.len(),
                            s.swaps.len()
                        ),
                    ));
                }
                let watch = SPIKE_AFTER.as_millis() as u64;
                for (i, e) in p.swaps.iter().enumerate() {
                    let v = Duration::from_nanos(e.max_delay_ns);
                    let name = format!(
                        "swap {} to {} at {}",
                        i + 1,
                        e.to,
                        format_duration(Duration::from_millis(e.at_ns / 1_000_000))
                    );
                    let short = e.watched_ms.filter(|&w| w < watch);
                    if let (Some(a), Some(w), true) = (e.attach_ms, short, v <= bound) {
                        // A watch the run cut short is no evidence that the
                        // scheduler that attached keeps the bound (a wait
                        // over it fails below, however short the watch).
                        let fix = if p.stall.is_some() {
                            "a stall stopped the pass (see the stall check)"
                        } else {
                            "fix: lengthen the scenario's duration, or space its swaps further (scx_lavd took 12 s to attach under TCG)"
                        };
                        out.push(missing(
                            name,
                            format!("<= {}", ms(bound)),
                            bound.as_nanos() as f64,
                            &format!(
                                "{} attached {a} ms after the detach and was watched {w} ms (the run's end, the next swap or a stall came first): the check needs the {watch} ms after an attach\n  {fix}",
                                e.to
                            ),
                        ));
                        continue;
                    }
                    out.push(Outcome {
                        name,
                        pass: e.attach_ms.is_some() && v <= bound,
                        observed: ms(v),
                        bound: format!("<= {}", ms(bound)),
                        observed_value: Some(e.max_delay_ns as f64),
                        bound_value: bound.as_nanos() as f64,
                        detail: {
                            let late = Duration::from_nanos(e.at_ns.saturating_sub(e.planned_ns));
                            let began = if late > SWAP_SLIP {
                                format!(
                                    "began {} late (planned at {}); ",
                                    ms(late),
                                    format_duration(Duration::from_nanos(e.planned_ns))
                                )
                            } else {
                                String::new()
                            };
                            match e.attach_ms {
                                Some(a) => format!("{began}attached {a} ms after the detach"),
                                None => format!("{began}{} did not attach: {}", e.to, e.why),
                            }
                        },
                        unclaimed: None,
                        check: None,
                    });
                }
            }
        }
    }
}

/// How late a swap may begin before its check's detail says so: the
/// agent's scan step is 100 ms, a swap waits for nothing but the previous
/// one's attach.
const SWAP_SLIP: Duration = Duration::from_millis(20);

fn run_delay(
    p: &Pass,
    group: &str,
    (label, q, own): (&str, Option<f64>, bool),
    bound: Duration,
    name: String,
) -> Outcome {
    let g = p.group(group);
    let still = still_waiting_max(p, group, own);
    let observed = delay_stat(p, group, q, own);
    let samples = g.map_or(0, |g| g.probe.run_delay.count());
    match observed {
        Some(v) => Outcome {
            unclaimed: None,
            check: None,
            pass: v <= bound,
            observed: ms(v),
            bound: format!("<= {}", ms(bound)),
            observed_value: Some(v.as_nanos() as f64),
            bound_value: bound.as_nanos() as f64,
            detail: format!(
                "{samples} wakeups measured{}",
                if still > 0 && label == "max" {
                    format!(
                        "; a task was still waiting at the stop ({})",
                        ms(Duration::from_nanos(still))
                    )
                } else {
                    String::new()
                }
            ),
            name,
        },
        None => Outcome {
            unclaimed: None,
            check: None,
            pass: false,
            observed: "no wakeups".into(),
            bound: format!("<= {}", ms(bound)),
            observed_value: None,
            bound_value: bound.as_nanos() as f64,
            detail: format!("no wakeup of group {group} ended inside the measurement window"),
            name,
        },
    }
}

/// The longest wait (or its own part) of a task of `group` still waiting
/// at the stop, ns; 0 if none was.
fn still_waiting_max(p: &Pass, group: &str, own: bool) -> u64 {
    p.still_waiting
        .iter()
        .filter(|w| w.group.as_deref() == Some(group))
        .map(|w| if own { w.own_ns } else { w.waited_ns })
        .max()
        .unwrap_or(0)
}

/// A group's statistic `q` (a quantile, or None for the max) in a pass,
/// of whole waits or of their own parts; `None` when it has none. A task
/// still waiting at the stop waited at least its time: one that never ran
/// is not missed.
fn delay_stat(p: &Pass, group: &str, q: Option<f64>, own: bool) -> Option<Duration> {
    let g = p.group(group)?;
    match q {
        Some(q) if own => g.probe.run_delay_own.quantile(q),
        Some(q) => g.probe.run_delay.quantile(q),
        None => (g.probe.nr_waits > 0 || still_waiting_max(p, group, own) > 0).then(|| {
            Duration::from_nanos(if own {
                p.max_run_delay_own(g)
            } else {
                p.max_run_delay(g)
            })
        }),
    }
}

/// "its waits: 62% behind a higher class, 20% while its CPU idled, 10%
/// while its CPU was waking, 8% behind fair or sched_ext tasks": why a
/// group's waits in the window lasted (on the CPU each waited on; waking:
/// idle after it was told to run, see `probe::GroupData`).
pub fn why_waited(p: &Pass, group: &str) -> String {
    let Some(g) = p.group(group).filter(|g| g.probe.wait_ns > 0) else {
        return "no wait to explain".into();
    };
    let total = g.probe.wait_ns as f64;
    let higher = g.probe.wait_higher_ns as f64 / total;
    let idle = g.probe.wait_idle_ns as f64 / total;
    let waking = g.probe.wait_waking_ns as f64 / total;
    format!(
        "its waits: {:.0}% behind a higher class (RT, deadline, stop), {:.0}% while its CPU idled, {:.0}% while its CPU was waking (told to run: the platform's), {:.0}% behind fair or sched_ext tasks",
        higher * 100.0,
        idle * 100.0,
        waking * 100.0,
        (1.0 - higher - idle - waking).max(0.0) * 100.0
    )
}

/// A run delay bounded by `factor` times the same statistic under the
/// fair class in the same VM, never below `floor`.
fn run_delay_of_fair(
    main: &Pass,
    fair: &Pass,
    group: &str,
    (label, q, factor, own): (&str, Option<f64>, f64, bool),
    floor: Option<Duration>,
    name: String,
) -> Outcome {
    let Some(fv) = delay_stat(fair, group, q, own).filter(|v| !v.is_zero() || floor.is_some())
    else {
        return Outcome {
            unclaimed: None,
        check: None,
            pass: false,
            observed: "not measured".into(),
            bound: format!("<= {factor:.2} x fair"),
            observed_value: None,
            bound_value: factor,
            detail: format!(
                "no wakeup of group {group} ended inside the fair class's window (or its {label} was 0 and no floor is set)"
            ),
            name,
        };
    };
    let relative = fv.mul_f64(factor);
    let bound = floor.map_or(relative, |f| relative.max(f));
    let bound_text = match floor {
        Some(f) if f > relative => format!(
            "<= {} (the floor; {factor:.2} x fair is {})",
            ms(f),
            ms(relative)
        ),
        _ => format!("<= {} ({factor:.2} x fair)", ms(bound)),
    };
    let mut o = run_delay(main, group, (label, q, own), bound, name);
    o.bound = bound_text;
    o.detail = format!("the fair class's {label}: {}; {}", ms(fv), o.detail);
    if let Some(v) = o.observed_value {
        if !fv.is_zero() {
            o.observed = format!("{} ({:.2} x fair)", o.observed, v / fv.as_nanos() as f64);
        }
    }
    o
}

fn stall(p: &Pass, st: &StallCheck, name: String) -> Outcome {
    let bound = st.max_runnable;
    let applies = |g: Option<&str>| st.applies_to(g);
    let own = st.excluding.is_some();
    let longest = if own {
        p.longest_runnable_own(applies)
    } else {
        p.longest_runnable(applies)
    };
    let observed = longest.as_ref().map_or(0, |l| l.ns);
    // The stall that stopped the pass fails this check if it is one of its
    // tasks and past its bound by its own measure.
    let stopped = p.stall.as_ref().filter(|e| {
        applies(e.group.as_deref())
            && Duration::from_nanos(if own { e.own_ns } else { e.waited_ns }) > bound
    });
    let detail = match (stopped, &longest) {
        (Some(e), _) => format!(
            "{}, pid {}, was runnable for {} without running{}, found {}; the run was stopped{}",
            e.who(),
            e.pid,
            ms(Duration::from_nanos(e.waited_ns)),
            if own {
                format!(
                    " ({} of it the scheduler's own, less what a higher class ran on its CPU and its CPU's waking after it was told to run)",
                    ms(Duration::from_nanos(e.own_ns))
                )
            } else {
                String::new()
            },
            if e.found_at_ns == 0 {
                "while its group was starting, before the run".to_string()
            } else {
                format!(
                    "{} into the run",
                    format_duration(Duration::from_millis(e.found_at_ns / 1_000_000))
                )
            },
            // Another task of this check may have waited longer (a looser
            // bound of its own let it): the observed value is its.
            match &longest {
                Some(l) if l.ns > if own { e.own_ns } else { e.waited_ns } => {
                    format!("; longest: {}, {}", l.who(), ms(Duration::from_nanos(l.ns)))
                }
                _ => String::new(),
            }
        ),
        (None, Some(l)) if l.at_stop => format!("{}, still waiting at the stop", l.who()),
        (None, Some(l)) => l.who(),
        (None, None) => "no task waited".into(),
    };
    let v = Duration::from_nanos(observed);
    Outcome {
        unclaimed: None,
        check: None,
        name,
        pass: stopped.is_none() && v <= bound,
        observed: ms(v),
        bound: format!("<= {}", ms(bound)),
        observed_value: Some(observed as f64),
        bound_value: bound.as_nanos() as f64,
        detail,
    }
}

/// A group's CPU time in the window, as a fraction of the VM's CPU time in
/// the window.
fn cpu_share(s: &Scenario, p: &Pass, group: &str) -> Option<f64> {
    Some(p.cpu_share(p.group(group)?, s.vm.cpus))
}

fn share_of_fair(
    s: &Scenario,
    m: &Pass,
    f: &Pass,
    group: &str,
    min: f64,
    name: String,
    bound: String,
) -> Outcome {
    let (ours, theirs) = (cpu_share(s, m, group), cpu_share(s, f, group));
    let ratio = match (ours, theirs) {
        (Some(o), Some(t)) if t > 0.0 => Some(o / t),
        _ => None,
    };
    at_least(
        name,
        ratio,
        min,
        |v| format!("{v:.2} x fair",),
        format!(
            "{:.1}% of the VM's CPU time, {:.1}% under the fair class",
            ours.unwrap_or(0.0) * 100.0,
            theirs.unwrap_or(0.0) * 100.0
        ),
    )
    .with_bound(bound)
}

fn share_by_weight(
    s: &Scenario,
    sh: &crate::scenario::ShareCheck,
    m: &Pass,
    groups: &[String],
    tol: f64,
    name: String,
    bound: String,
) -> Outcome {
    let from = sh.from.unwrap_or(s.warmup);
    let weight = |g: &str| -> f64 { s.weight_at(s.group(g).expect("validated"), from) };
    let cpu: Vec<f64> = if sh.from.is_none() && sh.to.is_none() {
        groups
            .iter()
            .map(|g| m.group(g).map_or(0.0, |r| r.probe.run_ns_window as f64))
            .collect()
    } else {
        let to = sh.to.unwrap_or(s.duration);
        groups
            .iter()
            .map(|g| {
                let i = s
                    .groups
                    .iter()
                    .position(|x| &x.name == g)
                    .expect("validated");
                m.cpu_between(i, from, to)
            })
            .collect()
    };
    let total_cpu: f64 = cpu.iter().sum();
    let weights: Vec<f64> = groups.iter().map(|g| weight(g)).collect();
    let total_w: f64 = weights.iter().sum();
    let mut worst = 0.0f64;
    let mut parts = Vec::new();
    for (i, g) in groups.iter().enumerate() {
        let got = cpu[i] / total_cpu.max(1.0);
        let want = weights[i] / total_w;
        let dev = (got / want - 1.0).abs();
        worst = worst.max(dev);
        parts.push(format!(
            "{g} {:.1}% (weight share {:.1}%)",
            got * 100.0,
            want * 100.0
        ));
    }
    Outcome {
        unclaimed: None,
        check: None,
        name,
        pass: total_cpu > 0.0 && worst <= tol,
        observed: format!("{:.0}% off at worst", worst * 100.0),
        bound,
        observed_value: Some(worst),
        bound_value: tol,
        detail: parts.join(", "),
    }
}

/// What a `command` group's application did in a pass: its first
/// instance's outcome, or why there is none.
fn app_of<'p>(p: &'p Pass, group: &str) -> Result<&'p AppOutcome, String> {
    let g = p
        .group(group)
        .ok_or_else(|| format!("no group {group} in the pass"))?;
    let o = g.outcome.as_ref().ok_or_else(|| {
        format!(
            "group {group} wrote no report: it was stopped early (see the stall check) or crashed"
        )
    })?;
    o.apps().next().ok_or_else(|| match o.errors.first() {
        Some(e) => format!("group {group}'s application did not run: {e}"),
        None => format!("group {group}'s application did not run"),
    })
}

/// The implicit outcome `app GROUP`: every instance of the group's program
/// did what it had to under the scheduler (its failure, with the reason,
/// fails the cell). None when no application ran to say either way (no
/// pass under the scheduler, a group stopped early or that never started
/// its program): the pass's errors, the stall check or the missing pass
/// decide those cells, as the harness's trouble and not the scheduler's.
fn app_ran(g: &crate::scenario::Group, main: Option<&Pass>) -> Option<Outcome> {
    let out = main?.group(&g.name)?.outcome.as_ref()?;
    let apps: Vec<&AppOutcome> = out.apps().collect();
    if apps.is_empty() {
        return None;
    }
    let failures: Vec<&str> = apps.iter().filter_map(|a| a.failure.as_deref()).collect();
    Some(Outcome {
        name: format!("app {}", g.name),
        pass: failures.is_empty(),
        observed: if failures.is_empty() {
            "ran as declared".into()
        } else {
            format!("{} of {} failed", failures.len(), apps.len())
        },
        bound: "runs as declared".into(),
        observed_value: Some(failures.len() as f64),
        bound_value: 0.0,
        detail: failures.join("\n"),
        unclaimed: None,
        check: Some(CheckKind::App),
    })
}

/// The outcomes of an `app_metric` check.
fn app_metric(
    ev: &Evidence,
    a: &AppMetricCheck,
    main: Option<&Pass>,
    fair: Option<&Pass>,
    no_pass_why: &dyn Fn() -> String,
    out: &mut Vec<Outcome>,
) {
    let unit = ev
        .scenario
        .group(&a.group)
        .and_then(|g| match &g.work {
            Work::Command { metrics, .. } => metrics.iter().find(|m| m.name == a.metric),
            _ => None,
        })
        .map_or(String::new(), |m| m.unit.clone());
    let name = format!("app_metric {}.{}", a.group, a.metric);
    let value = |p: Option<&Pass>| -> Result<f64, String> {
        let p = p.ok_or_else(no_pass_why)?;
        let app = app_of(p, &a.group)?;
        if let Some(f) = &app.failure {
            return Err(f.clone());
        }
        app.metrics
            .get(&a.metric)
            .map(|v| v.value)
            .ok_or_else(|| format!("metric {} was not read", a.metric))
    };
    let observed = value(main);
    let fair_value = value(fair);
    let bound = |label: &str,
                 observed: Result<f64, String>,
                 b: f64,
                 floor: bool,
                 show: &dyn Fn(f64) -> String,
                 detail: String| {
        let (pass, obs, why) = match observed {
            Ok(v) => (if floor { v >= b } else { v <= b }, Some(v), detail),
            Err(e) => (false, None, e),
        };
        Outcome {
            name: format!("{name} {label}"),
            pass,
            observed: obs.map_or("not measured".into(), show),
            bound: format!("{} {}", if floor { ">=" } else { "<=" }, show(b)),
            observed_value: obs,
            bound_value: b,
            detail: why,
            unclaimed: None,
            check: None,
        }
    };
    let abs = |v: f64| format!("{} {unit}", crate::metric::Unit::Plain.show(v));
    let of_fair = |v: f64| format!("{v:.2} x fair");
    if let Some(m) = a.min {
        out.push(bound("min", observed.clone(), m, true, &abs, String::new()));
    }
    if let Some(m) = a.max {
        out.push(bound(
            "max",
            observed.clone(),
            m,
            false,
            &abs,
            String::new(),
        ));
    }
    for (label, f, floor) in [
        ("min of fair", a.min_of_fair, true),
        ("max of fair", a.max_of_fair, false),
    ] {
        let Some(f) = f else { continue };
        let ratio = match (&observed, &fair_value) {
            (Ok(o), Ok(fv)) if *fv != 0.0 => Ok(o / fv),
            (Ok(_), Ok(_)) => Err("the fair class's value is 0".to_string()),
            (Err(e), _) => Err(e.clone()),
            (Ok(_), Err(e)) => Err(format!("under the fair class: {e}")),
        };
        let detail = fair_value
            .as_ref()
            .map(|fv| format!("fair class: {}", abs(*fv)))
            .unwrap_or_default();
        out.push(bound(label, ratio, f, floor, &of_fair, detail));
    }
}

fn at_least(
    name: String,
    observed: Option<f64>,
    min: f64,
    show: impl Fn(f64) -> String,
    detail: String,
) -> Outcome {
    Outcome {
        unclaimed: None,
        check: None,
        pass: observed.is_some_and(|o| o >= min),
        observed: observed.map_or("not measured".into(), &show),
        bound: format!(">= {}", show(min)),
        observed_value: observed,
        bound_value: min,
        detail,
        name,
    }
}

impl Outcome {
    fn with_bound(mut self, bound: String) -> Outcome {
        self.bound = bound;
        self
    }
}

fn healthy(ev: &Evidence) -> Outcome {
    let mut problems = Vec::new();
    for r in &ev.agent.swapped_out {
        if !matches!(r.verdict, Verdict::Clean) {
            problems.push(format!(
                "{} (before a swap) {}: {}",
                r.name,
                r.verdict.label(),
                r.verdict.why()
            ));
        }
    }
    match &ev.agent.scheduler {
        None => problems.push("no lifecycle report".to_string()),
        Some(r) => {
            if !matches!(r.verdict, Verdict::Clean) {
                problems.push(format!("{}: {}", r.verdict.label(), r.verdict.why()));
            }
            if r.after.nr_rejected != r.before.nr_rejected {
                problems.push(format!(
                    "nr_rejected went from {} to {}",
                    r.before.nr_rejected, r.after.nr_rejected
                ));
            }
        }
    }
    problems.extend(placement_problems(ev));
    if let Some(c) = ev.crashes.first() {
        problems.push(format!(
            "{} kernel problem line(s) in the console, first: {}",
            ev.crashes.len(),
            c.text
        ));
    }
    if let Some(e) = &ev.agent.error {
        problems.push(format!("the guest agent failed: {e}"));
    }
    Outcome {
        unclaimed: None,
        check: None,
        name: "scheduler_healthy".into(),
        pass: problems.is_empty(),
        observed: if problems.is_empty() {
            "attached throughout, clean exit".into()
        } else {
            "unhealthy".into()
        },
        bound: "attached throughout, clean exit, nr_rejected unchanged, tasks where their policy puts them, no kernel crash lines"
            .into(),
        observed_value: Some(problems.len() as f64),
        bound_value: 0.0,
        detail: problems.join("; "),
    }
}

/// Where the scenario's tasks ran against what the scheduler switches
/// (registry `partial:`): the kernel's `switch_all` while it was attached,
/// and each group's tasks on sched_ext as the window opened, by policy
/// ([`crate::scenario::Policy::on_sched_ext`]). Not judged for a scheduler
/// that did not run cleanly (that is its problem already), in a scenario
/// with swaps (another scheduler may hold the window's start) or for a
/// group whose policy the timeline changes.
fn placement_problems(ev: &Evidence) -> Vec<String> {
    let mut out = Vec::new();
    let Some(r) = &ev.agent.scheduler else {
        return out;
    };
    // The fair class (`default`) attaches nothing: state stays disabled.
    let (Some(attached), Verdict::Clean) = (&r.attached, &r.verdict) else {
        return out;
    };
    if attached.state != "enabled" {
        return out;
    }
    let switch_all = attached.switch_all == 1;
    if ev.partial && switch_all {
        out.push(format!(
            "{} is registered as partial (it switches only SCHED_EXT tasks), but the kernel's switch_all read 1 while it was attached: every task was switched\n  fix: start it in partial mode (scx_qmap: -p) or drop partial: true from its registry entry",
            r.name
        ));
    } else if !ev.partial && !switch_all {
        out.push(format!(
            "{} attached in partial mode (the kernel's switch_all read 0): only SCHED_EXT tasks were its, the others ran in the fair class and the checks measured that\n  fix: add partial: true to its registry entry (and give the scenario a policy: ext group), or start it without its partial-mode option",
            r.name
        ));
    }
    if !ev.scenario.swaps.is_empty() {
        return out;
    }
    let Some(pass) = ev.agent.pass(PassKind::Scheduler) else {
        return out;
    };
    for (g, res) in ev.scenario.groups.iter().zip(&pass.groups) {
        if ev.scenario.policy_ops().any(|p| p.group == g.name) {
            continue;
        }
        let Some(seen) = res.on_sched_ext else {
            continue;
        };
        let policy = g.policy.name();
        if g.policy.on_sched_ext(ev.partial) {
            if seen.on_ext < seen.tasks {
                out.push(format!(
                    "group {} (policy {policy}): {} of {} tasks were on sched_ext as the window opened; {} should have had them all",
                    g.name, seen.on_ext, seen.tasks, r.name
                ));
            }
        } else if seen.on_ext > 0 {
            let why = if g.policy.is_realtime() {
                "real-time tasks never are".to_string()
            } else {
                format!("{} switches only SCHED_EXT tasks", r.name)
            };
            out.push(format!(
                "group {} (policy {policy}): {} of {} tasks were on sched_ext as the window opened, though {why}",
                g.name, seen.on_ext, seen.tasks
            ));
        }
    }
    out
}

/// Whether a group's work counts iterations (for reports).
pub fn counts_iterations(w: &Work) -> bool {
    !matches!(w, Work::Command { .. })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::{GroupResult, StallEvent, StillWaiting, SwapEvent};
    use crate::probe::hist::Histogram;
    use crate::probe::GroupData;
    use crate::scheduler::lifecycle::{Counters, Report};
    use crate::workload::{GroupOutcome, ThreadOutcome};

    const MS: u64 = 1_000_000;

    fn scenario(checks: &str) -> Scenario {
        let text = format!(
            "name: t\ndescription: d\nduration: 6s\nwarmup: 1s\ngroups:\n  - {{ name: a, threads: 2, work: {{ kind: spin }} }}\n  - {{ name: b, threads: 2, work: {{ kind: spin }}, nice: 5 }}\nchecks:\n{checks}"
        );
        crate::scenario::parse(std::path::Path::new("t.yaml"), &text)
            .unwrap()
            .scenario
    }

    /// A stall that stopped the pass: the task, its group and CPU, how
    /// long it waited (all of it the scheduler's) and when it was found.
    fn stalled(
        tid: u32,
        pid: u32,
        comm: &str,
        group: &str,
        cpu: u32,
        waited_ns: u64,
        found_at_ns: u64,
    ) -> StallEvent {
        StallEvent {
            tid,
            pid,
            comm: comm.into(),
            group: Some(group.into()),
            cpu,
            waited_ns,
            own_ns: waited_ns,
            found_at_ns,
            detached_after_ns: None,
        }
    }

    fn hist(ns: &[u64]) -> Histogram {
        let mut h = Histogram::default();
        for v in ns {
            h.record(*v);
        }
        h
    }

    fn group(name: &str, waits_ms: &[u64], cpu_ms: u64, iterations: u64) -> GroupResult {
        let mut h = Histogram::default();
        for w in waits_ms {
            h.record(w * MS);
        }
        GroupResult {
            name: name.into(),
            probe: GroupData {
                run_delay: h,
                nr_waits: waits_ms.len() as u64,
                wait_ns: waits_ms.iter().sum::<u64>() * MS,
                max_wait_ns: waits_ms.iter().max().copied().unwrap_or(0) * MS,
                max_runnable_ns: waits_ms.iter().max().copied().unwrap_or(0) * MS,
                run_ns: cpu_ms * MS,
                run_ns_window: cpu_ms * MS,
                nr_tasks: 2,
                ..Default::default()
            },
            outcome: Some(GroupOutcome {
                name: name.into(),
                pid: 1,
                threads: vec![ThreadOutcome {
                    tid: 2,
                    iterations,
                    iterations_window: iterations,
                    cpu_ns: 0,
                    schedstat_wait_ns: 0,
                    exit_status: None,
                    app: None,
                    woken_by: vec![],
                }],
                errors: vec![],
            }),
            exit_status: Some(0),
            on_sched_ext: None,
        }
    }

    fn pass(kind: PassKind, groups: Vec<GroupResult>) -> Pass {
        Pass {
            kind,
            t0_ns: 0,
            window_start_ns: 1_000 * MS,
            window_end_ns: 6_000 * MS,
            ended_at_ns: 6_000 * MS,
            groups,
            stall: None,
            still_waiting: vec![],
            other_worst: None,
            probe_events: 1,
            probe_dropped: 0,
            swaps: vec![],
            operations: vec![],
            timeline: vec![],
            errors: vec![],
            replayed: None,
        }
    }

    fn report(verdict: Verdict) -> Report {
        Report {
            name: "x".into(),
            verdict,
            ops: Some("x".into()),
            attach_ms: Some(10),
            left_after_ms: None,
            before: Counters::default(),
            attached: None,
            after: Counters::default(),
            exit_kind: None,
            exit_reason: None,
            exit_message: None,
            scheduler_exit: None,
            uei: None,
            process_status: Some(0),
            process_signal: None,
            payload_status: None,
            loader_log: vec![],
            kernel_log: vec![],
            events: Default::default(),
            stdout: String::new(),
            stderr: String::new(),
        }
    }

    fn eval(s: &Scenario, passes: Vec<Pass>, verdict: Verdict) -> Vec<Outcome> {
        let agent = AgentOutput {
            passes,
            scheduler: Some(report(verdict)),
            swapped_out: vec![],
            error: None,
        };
        evaluate(&Evidence {
            scenario: s,
            agent: &agent,
            crashes: &[],
            claims: None,
            partial: false,
        })
    }

    #[test]
    fn a_swap_attached_too_late_to_be_watched_is_not_measured_not_passed() {
        let text = "name: t\ndescription: d\nduration: 6s\ngroups:\n  - { name: a, threads: 2, work: { kind: spin } }\nswaps:\n  - { at: 2s, to: y }\nchecks:\n  - swap: { max_delay: 350ms }\n";
        let s = crate::scenario::parse(std::path::Path::new("t.yaml"), text)
            .unwrap()
            .scenario;
        // The swap's longest wait (ms) and how long after its attach it was
        // watched (None: a result written before that was recorded).
        let judge = |max_ms: u64, watched_ms: Option<u64>| -> Outcome {
            let mut p = pass(PassKind::Scheduler, vec![group("a", &[1], 1, 1)]);
            p.swaps = vec![SwapEvent {
                at_ns: 2_000 * MS,
                planned_ns: 2_000 * MS,
                to: "y".into(),
                detach_ms: 100,
                attach_ms: Some(3_000),
                max_delay_ns: max_ms * MS,
                watched_ms,
                why: String::new(),
            }];
            eval(&s, vec![p], Verdict::Clean)
                .into_iter()
                .find(|o| o.name.starts_with("swap 1"))
                .unwrap()
        };
        assert!(judge(20, Some(1_000)).pass);
        assert!(judge(20, None).pass);
        assert!(!judge(400, Some(1_000)).pass);
        // A wait over the bound fails with its value however short the
        // watch.
        let over = judge(400, Some(500));
        assert!(!over.pass);
        assert_eq!(over.observed_value, Some((400 * MS) as f64));
        // Attached after the run's end: no wait of the new scheduler.
        let late = judge(20, Some(0));
        assert!(!late.pass, "{late:#?}");
        assert_eq!(late.observed, "not measured");
        assert!(late.detail.contains("was watched 0 ms"), "{}", late.detail);
        assert!(late.detail.contains("fix: lengthen"), "{}", late.detail);
        assert!(!judge(20, Some(999)).pass);
    }

    #[test]
    fn healthy_knows_where_each_policy_runs_under_full_and_partial_schedulers() {
        let text = "name: t\ndescription: d\nduration: 6s\ngroups:\n  - { name: e, threads: 2, policy: ext, work: { kind: spin } }\n  - { name: o, threads: 2, work: { kind: spin } }\n  - { name: r, threads: 2, policy: fifo, priority: 5, work: { kind: spin } }\nchecks:\n  - scheduler_healthy: {}\n";
        let s = crate::scenario::parse(std::path::Path::new("t.yaml"), text)
            .unwrap()
            .scenario;
        // `partial` as registered, the kernel's switch_all, and how many of
        // each group's 2 tasks were on sched_ext (None: the kernel did not
        // say).
        let judge = |partial: bool, switch_all: u64, on: Option<[u32; 3]>| -> Outcome {
            let mut r = report(Verdict::Clean);
            r.attached = Some(Counters {
                state: "enabled".into(),
                switch_all,
                ..Default::default()
            });
            let mut groups = vec![
                group("e", &[1], 1, 1),
                group("o", &[1], 1, 1),
                group("r", &[1], 1, 1),
            ];
            for (g, on_ext) in groups.iter_mut().zip(on.into_iter().flatten()) {
                g.on_sched_ext = Some(crate::agent::OnSchedExt { tasks: 2, on_ext });
            }
            let agent = AgentOutput {
                passes: vec![pass(PassKind::Scheduler, groups)],
                scheduler: Some(r),
                swapped_out: vec![],
                error: None,
            };
            evaluate(&Evidence {
                scenario: &s,
                agent: &agent,
                crashes: &[],
                claims: None,
                partial,
            })
            .remove(0)
        };
        // As the kernel does it: partial keeps other in the fair class.
        assert!(judge(true, 0, Some([2, 0, 0])).pass);
        assert!(judge(false, 1, Some([2, 2, 0])).pass);
        for (partial, switch_all, on, says) in [
            (true, 1, [2, 2, 0], "the kernel's switch_all read 1"),
            (false, 0, [2, 0, 0], "x attached in partial mode"),
            (false, 1, [2, 1, 0], "group o (policy other): 1 of 2 tasks"),
            (true, 0, [1, 0, 0], "group e (policy ext): 1 of 2 tasks"),
            (true, 0, [2, 2, 0], "though x switches only SCHED_EXT tasks"),
            (false, 1, [2, 2, 1], "though real-time tasks never are"),
        ] {
            let o = judge(partial, switch_all, Some(on));
            assert!(!o.pass && o.detail.contains(says), "{says}: {o:?}");
        }
        // Nothing to say when the kernel does not tell (no ext.enabled).
        let o = judge(false, 1, None);
        assert!(o.pass, "{o:?}");
    }

    #[test]
    fn cpu_between_interpolates_between_samples() {
        // Group 0 runs 1 CPU until 5 s, then none; samples every 300 ms.
        let mut p = pass(PassKind::Scheduler, vec![]);
        p.timeline = (1..=33u64)
            .map(|k| {
                let t = k * 300 * MS;
                (t, vec![t.min(5_000 * MS)])
            })
            .collect();
        let s = |a: u64, b: u64| {
            p.cpu_between(0, Duration::from_millis(a), Duration::from_millis(b)) / 1e6
        };
        // 1 s to 4.5 s: 3.5 s of CPU exactly, though no sample falls on
        // either end; up to the change at 5 s, off by less than a sample
        // step's worth (the samples cannot see the kink between them).
        assert!((s(1000, 4500) - 3500.0).abs() < 1.0, "{}", s(1000, 4500));
        assert!((s(1000, 5000) - 4000.0).abs() < 100.0, "{}", s(1000, 5000));
        assert!(s(5500, 9000) < 1.0);
        assert_eq!(s(0, 100), 0.0);
    }

    #[test]
    fn run_delay_percentiles_and_max_against_their_bounds() {
        let s = scenario("  - run_delay: { group: a, p50: 5ms, p99: 20ms, max: 30ms }\n");
        let waits: Vec<u64> = (1..=100).collect(); // 1..100 ms
        let out = eval(
            &s,
            vec![pass(
                PassKind::Scheduler,
                vec![group("a", &waits, 1, 1), group("b", &[], 1, 1)],
            )],
            Verdict::Clean,
        );
        assert_eq!(out.len(), 3);
        let p50 = &out[0];
        assert_eq!(p50.name, "run_delay a p50");
        assert!(
            !p50.pass && (p50.observed_value.unwrap() / MS as f64 - 50.0).abs() < 0.3,
            "{p50:?}"
        );
        assert!(!out[1].pass && !out[2].pass);
        assert!((out[2].observed_value.unwrap() - 100.0 * MS as f64).abs() < 1.0);
        let ok: Vec<u64> = vec![1, 2, 3, 4];
        let out = eval(
            &s,
            vec![pass(
                PassKind::Scheduler,
                vec![group("a", &ok, 1, 1), group("b", &[], 1, 1)],
            )],
            Verdict::Clean,
        );
        assert!(out.iter().all(|o| o.pass), "{out:#?}");
        // No wakeup measured is a failure, not a silent pass.
        let out = eval(
            &s,
            vec![pass(
                PassKind::Scheduler,
                vec![group("a", &[], 1, 1), group("b", &[], 1, 1)],
            )],
            Verdict::Clean,
        );
        assert!(
            out.iter().all(|o| !o.pass) && out[0].observed == "no wakeups",
            "{out:#?}"
        );
    }

    #[test]
    fn a_task_still_waiting_at_the_end_counts_for_max_and_stall() {
        let s =
            scenario("  - run_delay: { group: a, max: 30ms }\n  - stall: { max_runnable: 1s }\n");
        let mut p = pass(
            PassKind::Scheduler,
            vec![group("a", &[1, 2], 1, 1), group("b", &[], 1, 1)],
        );
        p.still_waiting = vec![StillWaiting {
            tid: 7,
            group: Some("a".into()),
            comm: "a".into(),
            cpu: 1,
            waited_ns: 1_500 * MS,
            own_ns: 1_500 * MS,
        }];
        let out = eval(&s, vec![p], Verdict::Clean);
        assert!(!out[0].pass && !out[1].pass, "{out:#?}");
        assert!(
            out[1].detail.contains("still waiting at the stop"),
            "{}",
            out[1].detail
        );
    }

    /// The one-wait example of issue 16: a pass stopped by a stall shows
    /// one number for that wait in the check, its detail, the report's
    /// stall columns and `compare`'s stall_max; later waits (ended after
    /// the stop) are in none of them.
    #[test]
    fn a_stopped_pass_shows_one_number_for_the_stalled_wait() {
        let s = scenario("  - stall: { max_runnable: 2s }\n");
        let mut p = pass(
            PassKind::Scheduler,
            vec![group("a", &[23], 1, 1), group("b", &[4], 1, 1)],
        );
        p.stall = Some(stalled(
            59,
            54,
            "sleeper",
            "b",
            0,
            2_098_600_000,
            2_453 * MS,
        ));
        // The same wait, read at the stop by the end-of-pass scan.
        p.still_waiting = vec![StillWaiting {
            tid: 59,
            group: Some("b".into()),
            comm: "sleeper".into(),
            cpu: 0,
            waited_ns: 2_098_600_000,
            own_ns: 2_098_600_000,
        }];
        let out = eval(&s, vec![p.clone()], Verdict::Clean);
        assert!(!out[0].pass);
        assert_eq!(out[0].observed, "2098.6ms");
        assert!(
            out[0].detail.contains("runnable for 2098.6ms"),
            "{}",
            out[0].detail
        );
        let table = crate::report::metrics_table(&p, 1);
        let b = table
            .lines()
            .find(|l| l.trim_start().starts_with("b "))
            .unwrap();
        assert_eq!(b.split_whitespace().nth(7), Some("2.10s"), "{table}");
        assert_eq!(
            p.longest_runnable(|_| true).map(|l| l.ns),
            Some(2_098_600_000)
        );
    }

    #[test]
    fn a_stall_bound_per_group_and_one_over_the_guest() {
        let s = scenario(
            "  - stall: { max_runnable: 10ms, group: a }\n  - stall: { max_runnable: 1s }\n  - stall: { max_runnable: 1s, tasks: guest }\n",
        );
        let mut p = pass(
            PassKind::Scheduler,
            vec![group("a", &[5], 1, 1), group("b", &[300], 1, 1)],
        );
        p.other_worst = Some(crate::probe::OtherWait {
            tid: 12,
            comm: "kworker/0:1".into(),
            cpu: 0,
            runnable_ns: 1_500 * MS,
        });
        let out = eval(&s, vec![p.clone()], Verdict::Clean);
        assert_eq!(out[0].name, "stall a max_runnable");
        assert!(out[0].pass && out[0].observed == "5.00ms", "{:?}", out[0]);
        // The scenario's tasks only: b's 300 ms, not the kworker.
        assert!(out[1].pass && out[1].observed == "300.0ms", "{:?}", out[1]);
        assert_eq!(out[2].name, "stall guest max_runnable");
        assert!(!out[2].pass, "{:?}", out[2]);
        for w in ["kworker/0:1", "tid 12", "outside the scenario", "CPU 0"] {
            assert!(out[2].detail.contains(w), "{w}: {}", out[2].detail);
        }
        // A stall that stopped the pass fails the checks whose tasks it
        // concerns and whose bound it passed, and only those: a's 11 ms
        // fails a's 10 ms bound, not the scenario's or the guest's 1 s.
        p.other_worst = None;
        p.stall = Some(stalled(3, 3, "a", "a", 1, 11 * MS, 2_000 * MS));
        let out = eval(&s, vec![p], Verdict::Clean);
        assert!(!out[0].pass && out[0].observed == "11.0ms", "{:?}", out[0]);
        assert!(out[1].pass, "{:?}", out[1]);
        assert!(out[2].pass, "{:?}", out[2]);
    }

    #[test]
    fn run_delay_relative_to_the_fair_class_with_a_floor() {
        let s = scenario(
            "  - run_delay: { group: a, p99_of_fair: 2, property: interactive }\n  - run_delay: { group: b, p99_of_fair: 2, floor: 3ms }\n",
        );
        // Fair: a's waits 4 ms (p99 4 ms), b's 0.5 ms.
        let fair = pass(
            PassKind::Fair,
            vec![group("a", &[4, 4, 4], 1, 1), group("b", &[0, 0, 0], 1, 1)],
        );
        let mut fair = fair;
        fair.groups[1].probe.run_delay = hist(&[500_000, 500_000]);
        // Ours: a 9 ms (2.25 x fair: fails), b 2 ms (4 x fair, under the floor).
        let mut ours = pass(
            PassKind::Scheduler,
            vec![group("a", &[9, 9, 9], 1, 1), group("b", &[2, 2, 2], 1, 1)],
        );
        ours.groups[1].probe.run_delay = hist(&[2_000_000, 2_000_000]);
        let out = eval(&s, vec![fair.clone(), ours.clone()], Verdict::Clean);
        assert_eq!(out[0].name, "run_delay a p99 of fair");
        assert!(!out[0].pass && out[0].fails(), "{:?}", out[0]);
        assert!(out[0].observed.contains("2.2"), "{}", out[0].observed);
        assert!(
            out[0].detail.contains("the fair class's p99: 4"),
            "{}",
            out[0].detail
        );
        assert!(out[1].pass, "{:?}", out[1]);
        assert!(out[1].bound.contains("the floor"), "{}", out[1].bound);
        // Not claimed: shown, not failed.
        let claims: &[Property] = &[];
        let out = evaluate(&Evidence {
            scenario: &s,
            agent: &AgentOutput {
                passes: vec![fair, ours],
                scheduler: Some(report(Verdict::Clean)),
                swapped_out: vec![],
                error: None,
            },
            crashes: &[],
            claims: Some(claims),
            partial: false,
        });
        assert!(!out[0].pass && !out[0].fails(), "{:?}", out[0]);
        // Without a fair pass the relative bound is not measured, and fails.
        let out = eval(
            &s,
            vec![pass(
                PassKind::Scheduler,
                vec![group("a", &[1], 1, 1), group("b", &[1], 1, 1)],
            )],
            Verdict::Clean,
        );
        assert!(
            !out[0].pass && out[0].observed == "not measured",
            "{:?}",
            out[0]
        );
    }

    #[test]
    fn a_live_stall_fails_and_names_the_task() {
        let s = scenario("  - stall: { max_runnable: 1s }\n");
        let mut p = pass(
            PassKind::Scheduler,
            vec![group("a", &[1], 1, 1), group("b", &[], 1, 1)],
        );
        p.stall = Some(stalled(42, 40, "victim", "a", 0, 1_020 * MS, 3_000 * MS));
        let out = eval(&s, vec![p], Verdict::Clean);
        assert!(!out[0].pass);
        for w in ["victim", "pid 40", "tid 42", "group a", "1020.0ms"] {
            assert!(out[0].detail.contains(w), "{w}: {}", out[0].detail);
        }
    }

    #[test]
    fn shares_against_fair_and_against_weights() {
        let s = scenario(
            "  - share: { group: a, min_of_fair: 0.8 }\n  - share: { by_weight: [a, b], tolerance: 0.25 }\n",
        );
        // Fair: a gets 3 CPU-s of 10 (30%); ours: 2.7 CPU-s (27%): 0.9 x.
        let fair = pass(
            PassKind::Fair,
            vec![group("a", &[1], 3000, 1), group("b", &[1], 3000, 1)],
        );
        // By weight: a is 2 x nice 0 (2048), b 2 x nice 5 (670): a should
        // get 75.3%; it gets 2700 / (2700 + 900) = 75%.
        let ours = pass(
            PassKind::Scheduler,
            vec![group("a", &[1], 2700, 1), group("b", &[1], 900, 1)],
        );
        let out = eval(&s, vec![fair.clone(), ours], Verdict::Clean);
        assert!(
            out[0].pass && (out[0].observed_value.unwrap() - 0.9).abs() < 1e-9,
            "{out:#?}"
        );
        assert!(out[1].pass, "{out:#?}");
        // A weight-blind split (50/50) is 34% off for a: outside 25%.
        let blind = pass(
            PassKind::Scheduler,
            vec![group("a", &[1], 1800, 1), group("b", &[1], 1800, 1)],
        );
        let out = eval(&s, vec![fair, blind], Verdict::Clean);
        assert!(!out[0].pass && !out[1].pass, "{out:#?}");
        // Without the fair pass the check fails, saying why.
        let out = eval(
            &s,
            vec![pass(
                PassKind::Scheduler,
                vec![group("a", &[1], 1, 1), group("b", &[1], 1, 1)],
            )],
            Verdict::Clean,
        );
        assert!(
            !out[0].pass && out[0].observed == "not measured",
            "{out:#?}"
        );
    }

    #[test]
    fn a_bound_on_a_property_the_scheduler_does_not_claim_is_reported_not_failed() {
        let s = scenario(
            "  - share: { by_weight: [a, b], tolerance: 0.25, property: cgroup_weights }\n  - stall: { max_runnable: 1s }\n",
        );
        let blind = || {
            vec![pass(
                PassKind::Scheduler,
                vec![group("a", &[1], 1800, 1), group("b", &[1], 1800, 1)],
            )]
        };
        let agent = AgentOutput {
            passes: blind(),
            scheduler: Some(report(Verdict::Clean)),
            swapped_out: vec![],
            error: None,
        };
        let judge = |claims: Option<&[Property]>| {
            evaluate(&Evidence {
                scenario: &s,
                agent: &agent,
                crashes: &[],
                claims,
                partial: false,
            })
        };
        // Claimed (explicitly, or by saying nothing): a weight-blind split fails.
        for claims in [None, Some(&[Property::CgroupWeights][..])] {
            let out = judge(claims);
            assert!(out[0].fails() && out[0].status() == "FAIL", "{out:#?}");
        }
        // Not claimed: the same numbers, reported, not a failure; the
        // property-free stall check is held as before.
        let out = judge(Some(&[Property::NiceWeights]));
        assert_eq!(out[0].unclaimed, Some(Property::CgroupWeights));
        assert!(!out[0].pass && !out[0].fails(), "{out:#?}");
        assert!(
            out[0]
                .line()
                .contains("(cgroup_weights not claimed; does not hold)"),
            "{}",
            out[0].line()
        );
        assert_eq!(out[1].unclaimed, None);
    }

    #[test]
    fn throughput_floors_and_fair_ratio() {
        let s = scenario("  - throughput: { group: a, min_per_sec: 100, min_of_fair: 0.5 }\n");
        let fair = pass(
            PassKind::Fair,
            vec![group("a", &[1], 1, 1000), group("b", &[1], 1, 1)],
        );
        let ours = pass(
            PassKind::Scheduler,
            vec![group("a", &[1], 1, 400), group("b", &[1], 1, 1)],
        );
        let out = eval(&s, vec![fair, ours], Verdict::Clean);
        // 400 iterations in a 5 s window: 80/s < 100; 0.4 of fair < 0.5.
        assert!(
            !out[0].pass && (out[0].observed_value.unwrap() - 80.0).abs() < 1e-9,
            "{out:#?}"
        );
        assert!(
            !out[1].pass && (out[1].observed_value.unwrap() - 0.4).abs() < 1e-9,
            "{out:#?}"
        );
    }

    #[test]
    fn throughput_of_a_group_stopped_early_is_not_measured_rather_than_zero() {
        let s = scenario("  - throughput: { group: a, min_of_fair: 0.5 }\n");
        let fair = pass(
            PassKind::Fair,
            vec![group("a", &[1], 1, 1000), group("b", &[1], 1, 1)],
        );
        let mut stopped = group("a", &[1], 1, 0);
        stopped.outcome = None;
        let ours = pass(PassKind::Scheduler, vec![stopped, group("b", &[1], 1, 1)]);
        let out = eval(&s, vec![fair, ours], Verdict::Clean);
        assert!(!out[0].pass, "{out:#?}");
        assert_eq!(out[0].observed, "not measured");
        assert_eq!(out[0].observed_value, None);
        assert!(out[0].detail.contains("stopped early"), "{out:#?}");
    }

    #[test]
    fn scheduler_healthy_needs_a_clean_lifecycle_and_a_clean_console() {
        let s = scenario("  - scheduler_healthy: {}\n");
        let p = || {
            vec![pass(
                PassKind::Scheduler,
                vec![group("a", &[1], 1, 1), group("b", &[1], 1, 1)],
            )]
        };
        assert!(eval(&s, p(), Verdict::Clean)[0].pass);
        let out = eval(
            &s,
            p(),
            Verdict::ExitedDuringRun {
                why: "ErrorBpf (scx_bpf_error): boom".into(),
            },
        );
        assert!(!out[0].pass && out[0].detail.contains("boom"), "{out:#?}");
        let agent = AgentOutput {
            passes: p(),
            scheduler: Some(report(Verdict::Clean)),
            swapped_out: vec![],
            error: None,
        };
        let crash = crate::vm::console::CrashLine {
            line_no: 3,
            kind: crate::vm::console::CrashKind::Warning,
            text: "WARNING: CPU: 1 at kernel/sched/ext.c".into(),
        };
        let out = evaluate(&Evidence {
            scenario: &s,
            agent: &agent,
            crashes: &[crash],
            claims: None,
            partial: false,
        });
        assert!(
            !out[0].pass && out[0].detail.contains("kernel/sched/ext.c"),
            "{out:#?}"
        );
    }

    #[test]
    fn nice_weights_are_the_kernels() {
        assert_eq!(nice_weight(0), 1024.0);
        assert_eq!(nice_weight(-20), 88761.0);
        assert_eq!(nice_weight(19), 15.0);
        assert_eq!(nice_weight(5), 335.0);
    }

    /// A command group "build" whose one instance reported `wall` seconds,
    /// or failed with `failure`.
    fn app_group(value: Option<f64>, failure: Option<&str>) -> GroupResult {
        let mut g = group("build", &[1, 2], 100, 0);
        let app = crate::workload::app::AppOutcome {
            exit_status: Some(0),
            wall_ns: Some(1),
            server_ready_ns: None,
            metrics: value
                .map(|v| {
                    (
                        "wall".to_string(),
                        crate::workload::app::AppValue {
                            value: v,
                            unit: "s".into(),
                            better: crate::appmetric::Direction::Lower,
                        },
                    )
                })
                .into_iter()
                .collect(),
            failure: failure.map(str::to_string),
        };
        g.outcome.as_mut().unwrap().threads[0].app = Some(app);
        g
    }

    fn app_scenario(checks: &str) -> Scenario {
        let text = format!(
            "name: t\ndescription: d\nduration: 6s\nwarmup: 1s\ngroups:\n  - {{ name: build, work: {{ kind: command, argv: [sh, -c, 'true'], exit: 0, metrics: [{{ name: wall, from: wall_time, unit: s, better: lower }}] }} }}\nchecks:\n{checks}"
        );
        crate::scenario::parse(std::path::Path::new("t.yaml"), &text)
            .unwrap()
            .scenario
    }

    #[test]
    fn app_metrics_are_bounded_absolutely_and_against_the_fair_class() {
        let s = app_scenario(
            "  - app_metric: { group: build, metric: wall, max: 10, max_of_fair: 1.3 }\n",
        );
        let fair = pass(PassKind::Fair, vec![app_group(Some(4.0), None)]);
        // 5 s: under 10 s, but 1.25 x fair passes and 6 s (1.5 x) fails.
        let o = eval(
            &s,
            vec![
                fair.clone(),
                pass(PassKind::Scheduler, vec![app_group(Some(5.0), None)]),
            ],
            Verdict::Clean,
        );
        let names: Vec<&str> = o.iter().map(|o| o.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "app build",
                "app_metric build.wall max",
                "app_metric build.wall max of fair"
            ]
        );
        assert!(o.iter().all(|o| o.pass), "{o:#?}");
        assert_eq!(o[1].observed, "5.000 s");
        assert_eq!(o[2].observed, "1.25 x fair");
        assert_eq!(o[2].detail, "fair class: 4.000 s");
        assert_eq!(o[0].check, Some(CheckKind::App));
        assert_eq!(o[2].check, Some(CheckKind::AppMetric));
        let o = eval(
            &s,
            vec![
                fair.clone(),
                pass(PassKind::Scheduler, vec![app_group(Some(6.0), None)]),
            ],
            Verdict::Clean,
        );
        assert!(o[1].pass && !o[2].pass, "{o:#?}");
        assert_eq!(o[2].observed_value, Some(1.5));
    }

    #[test]
    fn a_failed_application_fails_its_outcome_and_its_metrics_with_the_reason() {
        let s = app_scenario("  - app_metric: { group: build, metric: wall, max: 10 }\n");
        let why = "make exited with status 2, not 0; its output's last lines:\n    make: *** [all] Error 2";
        let o = eval(
            &s,
            vec![pass(PassKind::Scheduler, vec![app_group(None, Some(why))])],
            Verdict::Clean,
        );
        assert!(!o[0].pass && o[0].fails(), "{o:#?}");
        assert_eq!(o[0].detail, why);
        assert!(!o[1].pass);
        assert_eq!(o[1].observed, "not measured");
        assert_eq!(o[1].detail, why);
        assert_eq!(o[0].observed, "1 of 1 failed");
        // No pass under the scheduler, or a group that wrote no report
        // (stopped by the stall check): no `app` outcome (the missing
        // pass, the stall or the pass's errors decide), and the metric is
        // not measured, with why.
        let o = eval(&s, vec![], Verdict::Clean);
        assert!(o.iter().all(|o| o.check != Some(CheckKind::App)), "{o:#?}");
        assert_eq!(o[0].observed, "not measured");
        let mut g = app_group(Some(1.0), None);
        g.outcome = None;
        let o = eval(&s, vec![pass(PassKind::Scheduler, vec![g])], Verdict::Clean);
        assert!(o.iter().all(|o| o.check != Some(CheckKind::App)), "{o:#?}");
        assert!(o[0].detail.contains("wrote no report"), "{o:#?}");
    }
}
