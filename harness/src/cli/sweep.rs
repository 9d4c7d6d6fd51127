//! `scx-harness sweep`: one scheduler over a grid of argument sets,
//! hot-swapped in one serving session (one VM), in rounds shuffled by a
//! seed, raced on an objective metric, with the scheduler's defaults and
//! the fair class as reference points (the search itself: `crate::sweep`).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Result;

use super::compare::StatsOpts;
use super::{TargetOpts, VmOpts};
use crate::cell::Planned;
use crate::error::{fail, Failure};
use crate::kernel::Cache;
use crate::progress::Progress;
use crate::report::CellResult;
use crate::scheduler::build::BuildCtx;
use crate::scheduler::registry::Kind;
use crate::sweep::{self, MetricRef, MetricSummary, Param, Point, PointKind, PointSummary, Status};

#[derive(Debug, clap::Args)]
pub struct SweepArgs {
    #[command(flatten)]
    pub registry: super::schedulers::RegistryOpt,
    /// The scheduler (a name from `scx-harness schedulers list`; one that
    /// takes arguments).
    pub scheduler: String,
    /// Scenario files or bundled names (default: idle-baseline). All must
    /// have one VM shape.
    pub scenarios: Vec<String>,
    /// An option of the scheduler and its values, `NAME=V1,V2,...`
    /// (`slice-us=1000,5000` passes `--slice-us 1000`; `-s=...` passes
    /// `-s`). Several: every combination.
    #[arg(
        long = "param",
        value_name = "NAME=V1,V2",
        required = true,
        allow_hyphen_values = true
    )]
    pub params: Vec<String>,
    /// The metric racing and the ranking go by, `[SCENARIO:]METRIC` as
    /// `compare` names it (e.g. run_delay.nappers.p99); its better
    /// direction is the metric's own.
    #[arg(long, value_name = "[SCENARIO:]METRIC")]
    pub objective: String,
    /// Two metrics, `[SCENARIO:]A,[SCENARIO:]B`: the grid's points no other
    /// grid point beats on both, differences within --noise counting as
    /// equal (e.g. one scenario's p99 delay against another's throughput).
    #[arg(long, value_name = "A,B")]
    pub frontier: Option<String>,
    /// Runs of each point on each scenario per round.
    #[arg(long, default_value_t = 2)]
    pub samples: usize,
    /// Rounds at most.
    #[arg(long, default_value_t = 5)]
    pub rounds: usize,
    /// Stop before a round that would pass this: a number of runs, or a
    /// time (`20m`).
    #[arg(long, value_name = "RUNS|TIME")]
    pub budget: Option<String>,
    /// Run every point every round (no racing): the full grid, to check
    /// what racing saved.
    #[arg(long)]
    pub no_race: bool,
    /// Without the defaults and fair-class reference points.
    #[arg(long)]
    pub no_references: bool,
    /// The seed of the rounds' order (default: from the clock, printed).
    #[arg(long)]
    pub seed: Option<u64>,
    #[command(flatten)]
    pub stats: StatsOpts,
    /// Where the sweep goes (default: ./scx-runs/sweep-TIMESTAMP).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Also record every run in this history database.
    #[arg(long, value_name = "DB")]
    pub record: Option<PathBuf>,
    #[command(flatten)]
    pub vm: VmOpts,
    #[command(flatten)]
    pub target: TargetOpts,
    /// Arguments every point gets, the defaults included, after the
    /// registry's own.
    #[arg(last = true)]
    pub args: Vec<String>,
}

/// A budget: runs or wall time.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Budget {
    Runs(usize),
    Time(Duration),
}

fn parse_budget(s: &str) -> Result<Budget> {
    if let Ok(n) = s.parse::<usize>() {
        if n > 0 {
            return Ok(Budget::Runs(n));
        }
    }
    crate::units::parse_positive_duration(s)
        .map(Budget::Time)
        .map_err(|e| {
            fail(
                Failure::BadInput,
                format!("--budget {s}: neither a number of runs nor a time ({e})\n  fix: --budget 60 (runs) or --budget 20m"),
            )
        })
}

fn bad(msg: String) -> anyhow::Error {
    fail(Failure::BadInput, msg)
}

pub fn run(args: SweepArgs) -> Result<i32> {
    let started = Instant::now();
    args.target.check()?;
    args.stats.check()?;
    if args.samples == 0 || args.rounds == 0 {
        return Err(bad(
            "--samples and --rounds must be 1 or more\n  fix: e.g. --samples 2 --rounds 5".into(),
        ));
    }
    let params = args
        .params
        .iter()
        .map(|p| Param::parse(p).map_err(bad))
        .collect::<Result<Vec<_>>>()?;
    for (i, p) in params.iter().enumerate() {
        if params[..i].iter().any(|q| q.bare() == p.bare()) {
            return Err(bad(format!(
                "--param {}: given twice\n  fix: one --param {}=V1,V2,... with every value",
                p.name,
                p.bare()
            )));
        }
    }
    let registry = args.registry.load()?;
    let scenarios = super::one_vm_scenarios(&args.scenarios, "sweep")?;
    // The points: the grid, then the references.
    let mut points = sweep::grid(&params);
    for p in &mut points {
        p.args = args.args.iter().cloned().chain(p.args.drain(..)).collect();
    }
    if !args.no_references {
        points.push(Point {
            label: "defaults".into(),
            kind: PointKind::Defaults,
            args: args.args.clone(),
        });
        points.push(Point {
            label: "fair class".into(),
            kind: PointKind::FairClass,
            args: Vec::new(),
        });
    }
    let first_round = points.len() * args.samples * scenarios.len();
    let budget = args.budget.as_deref().map(parse_budget).transpose()?;
    if let Some(Budget::Runs(b)) = budget {
        if b < first_round {
            return Err(bad(format!(
                "--budget {b}: the first round alone is {first_round} runs ({} point(s) x {} sample(s) x {} scenario(s))\n  fix: --budget {first_round} or more, fewer values, or --samples 1",
                points.len(),
                args.samples,
                scenarios.len()
            )));
        }
    }
    let sc_refs: Vec<&crate::scenario::Scenario> = scenarios.iter().map(|l| &l.scenario).collect();
    let objective = MetricRef::parse(&args.objective, "--objective", &sc_refs).map_err(bad)?;
    let frontier = match &args.frontier {
        None => None,
        Some(f) => {
            let (a, b) = f.split_once(',').ok_or_else(|| {
                bad(format!(
                    "--frontier {f}: two metrics, separated by a comma\n  fix: --frontier SCENARIO:A,SCENARIO:B"
                ))
            })?;
            Some((
                MetricRef::parse(a.trim(), "--frontier", &sc_refs).map_err(bad)?,
                MetricRef::parse(b.trim(), "--frontier", &sc_refs).map_err(bad)?,
            ))
        }
    };
    // Before a kernel is fetched or built: a scheduler with no arguments
    // has nothing to sweep.
    let kind = registry.get(&args.scheduler)?.kind;
    if kind != Kind::Binary {
        return Err(bad(format!(
            "{} is a {} scheduler: it takes no arguments, so there is nothing to sweep\n  fix: sweep a scheduler that runs as a program (a cargo package, a crate)",
            args.scheduler,
            kind.as_str()
        )));
    }
    let kernel = args.target.kernel(&args.vm)?;
    let registry = registry.for_kernel(kernel.name());
    let def = registry.get(&args.scheduler)?;
    let seed = args.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64)
    });
    let cache = Cache::user();
    let ctx = BuildCtx {
        cache: &cache,
        kernel: kernel.entry.as_ref(),
        registry: &registry,
    };
    let mut progress = Progress::new("schedulers");
    let built = args.target.scheduler(def, &ctx, &mut progress)?;
    super::schedulers::check_artifact(&built)?;
    let fair = args
        .target
        .scheduler(registry.get("default")?, &ctx, &mut progress)?;
    drop(progress);
    let serving = super::Serving::start(
        "sweep",
        &args.target,
        &scenarios,
        args.out.clone(),
        args.record.as_deref(),
    )?;
    let dir = serving.dir.clone();
    let session = serving.session(&kernel, args.vm.accel);
    let grid_n = points.iter().filter(|p| p.kind == PointKind::Grid).count();
    println!(
        "sweep {} over {} point(s){} on {}; objective {} ({} is better); seed {seed}; results in {}",
        def.name,
        grid_n,
        if args.no_references {
            String::new()
        } else {
            " + defaults + fair class".into()
        },
        scenarios
            .iter()
            .map(|s| s.scenario.name.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        objective,
        match objective.better {
            crate::stats::Better::Higher => "higher",
            _ => "lower",
        },
        dir.display()
    );

    let n = points.len();
    let mut sw = Sweeping {
        runs: vec![Vec::new(); n],
        status: vec![None; n],
        ref_failed: vec![None; n],
        order: Vec::new(),
        all: Vec::new(),
        rounds: 0,
        stopped: "rounds".into(),
    };
    let mut live = None;
    let mut vms = 0usize;
    let samples_of = |runs: &[(usize, CellResult)], m: &MetricRef| -> Vec<f64> {
        runs.iter()
            .filter(|(sc, r)| {
                scenarios[*sc].scenario.name == m.scenario && crate::compare::failure(r).is_none()
            })
            .filter_map(|(_, r)| crate::compare::metrics(r).get(&m.metric).copied())
            .collect()
    };
    // The budget's clock starts with the session, not the builds.
    let session_started = Instant::now();
    let result: Result<()> = (|| {
        for round in 0..args.rounds {
            let active: Vec<usize> = (0..n)
                .filter(|&p| sw.status[p].is_none() && sw.ref_failed[p].is_none())
                .collect();
            let contenders = active
                .iter()
                .filter(|&&p| points[p].kind == PointKind::Grid)
                .count();
            if contenders == 0 {
                sw.stopped = "no contender left".into();
                break;
            }
            // One left, with enough runs to set it beside the defaults
            // (racing's and compare's 4 a side).
            if contenders == 1 && !args.no_race && round * args.samples >= 4 {
                sw.stopped = "one contender left".into();
                break;
            }
            let this = sweep::round_order(&active, scenarios.len(), args.samples, seed, round);
            match budget {
                Some(Budget::Runs(b)) if sw.order.len() + this.len() > b => {
                    sw.stopped = "budget".into();
                    break;
                }
                // A round's time, from the runs so far.
                Some(Budget::Time(t)) if !sw.order.is_empty() => {
                    let per_run = session_started.elapsed() / sw.order.len() as u32;
                    if session_started.elapsed() + per_run * this.len() as u32 > t {
                        sw.stopped = "budget".into();
                        break;
                    }
                }
                _ => {}
            }
            for (p, sc) in this {
                if crate::process::interrupted() {
                    return Err(fail(Failure::Interrupted, "interrupted"));
                }
                // A point that failed earlier in this round runs no more.
                if sw.status[p].is_some() || sw.ref_failed[p].is_some() {
                    continue;
                }
                let k = sw.runs[p].iter().filter(|(s, _)| *s == sc).count();
                let mut attempt = 0;
                let r = loop {
                    if let Some(what) =
                        crate::runner::keep_serving(&mut live, &mut vms, &scenarios, &session)?
                    {
                        println!("  the VM ended ({what}); booting it again");
                    }
                    let planned = Planned {
                        scenario: &scenarios[sc],
                        scheduler: match points[p].kind {
                            PointKind::FairClass => &fair,
                            _ => &built,
                        },
                        args: points[p].args.clone(),
                        swap_to: Vec::new(),
                        recording: crate::agent::PassRecording::Off,
                        dir: dir
                            .join("points")
                            .join(format!("{p:02}"))
                            .join(&scenarios[sc].scenario.name)
                            .join(format!(
                                "{:03}{}",
                                k + 1,
                                if attempt > 0 { "-again" } else { "" }
                            )),
                    };
                    let l = live.as_mut().expect("a session");
                    let r = l.run(&planned)?;
                    // An interrupt cut it short: no verdict on the point.
                    if crate::process::interrupted() {
                        sw.all.push(r);
                        return Err(fail(Failure::Interrupted, "interrupted"));
                    }
                    // The VM ended under it, not by a kernel crash (which
                    // is the point's doing): once more, on a fresh VM.
                    let infra = l
                        .ended()
                        .is_some_and(|e| e.outcome != crate::vm::Outcome::KernelCrash);
                    if infra && attempt == 0 && crate::compare::failure(&r).is_some() {
                        println!(
                            "  {}: the VM ended during its run ({}); running it again",
                            points[p].label,
                            crate::compare::failure(&r).unwrap_or_default()
                        );
                        sw.all.push(r);
                        attempt += 1;
                        continue;
                    }
                    break r;
                };
                sw.order.push((round + 1, p, sc));
                if let Some(why) = crate::compare::failure(&r) {
                    match points[p].kind {
                        PointKind::Grid => {
                            println!("  {}: failed: {why}", points[p].label);
                            sw.status[p] = Some(Status::Failed { why });
                        }
                        kind => {
                            println!(
                                "  {} (a reference) failed: {why}; it runs no more{}",
                                points[p].label,
                                match kind {
                                    PointKind::Defaults => "\n  fix: if the scheduler needs options to start, give them after `--` (every point gets them); or --no-references",
                                    _ => "",
                                }
                            );
                            sw.ref_failed[p] = Some(why);
                        }
                    }
                }
                sw.all.push(r.clone());
                sw.runs[p].push((sc, r));
            }
            sw.rounds = round + 1;
            let alive: Vec<usize> = (0..n)
                .filter(|&p| sw.status[p].is_none() && points[p].kind == PointKind::Grid)
                .collect();
            let samples: Vec<Vec<f64>> =
                sw.runs.iter().map(|r| samples_of(r, &objective)).collect();
            let mut line = format!("round {}: {} run(s) so far", round + 1, sw.order.len());
            if !args.no_race {
                if let Some((best, dropped)) = sweep::race(
                    &samples,
                    &alive,
                    objective.better,
                    args.stats.alpha,
                    args.stats.noise,
                    seed,
                ) {
                    line.push_str(&format!("; best so far {}", points[best].label));
                    for d in dropped {
                        line.push_str(&format!(
                            "; dropped {} ({:.2}x the best, interval [{:.2}, {:.2}], p = {:.3})",
                            points[d.point].label,
                            d.comparison.ratio,
                            d.comparison.ci_low,
                            d.comparison.ci_high,
                            d.comparison.p_value
                        ));
                        let at = d.point;
                        sw.status[at] = Some(Status::Dropped {
                            round: round + 1,
                            by: d,
                        });
                    }
                }
            }
            println!("{line}");
        }
        Ok(())
    })();
    if let Some(l) = live.take() {
        let _ = l.finish();
    }
    drop(live);
    drop(session);

    // Every point's numbers, the best, the next and the frontier.
    let metrics: Vec<&MetricRef> = std::iter::once(&objective)
        .chain(frontier.iter().flat_map(|(a, b)| [a, b]))
        .collect();
    let defaults = points.iter().position(|p| p.kind == PointKind::Defaults);
    let summary = |p: usize, m: &MetricRef| -> MetricSummary {
        let s = samples_of(&sw.runs[p], m);
        let vs_defaults = defaults.filter(|&d| d != p).and_then(|d| {
            let base = samples_of(&sw.runs[d], m);
            let c = crate::stats::compare(
                &base,
                &s,
                m.better,
                args.stats.alpha,
                args.stats.noise,
                seed,
            );
            (base.len() >= 3 && s.len() >= 3 && c.ratio.is_finite() && c.ci_low.is_finite())
                .then_some(c)
        });
        MetricSummary {
            metric: m.to_string(),
            median: (!s.is_empty()).then(|| crate::stats::median(&s)),
            samples: s,
            vs_defaults,
        }
    };
    let obj_samples: Vec<Vec<f64>> = sw.runs.iter().map(|r| samples_of(r, &objective)).collect();
    let grid_ok = |p: usize| {
        points[p].kind == PointKind::Grid && !matches!(sw.status[p], Some(Status::Failed { .. }))
    };
    let standing: Vec<usize> = (0..n)
        .filter(|&p| grid_ok(p) && !matches!(sw.status[p], Some(Status::Dropped { .. })))
        .collect();
    let best = sweep::best_of(&obj_samples, &standing, objective.better);
    let runner_up = best.and_then(|b| {
        let others: Vec<usize> = (0..n).filter(|&p| p != b && grid_ok(p)).collect();
        let u = sweep::best_of(&obj_samples, &others, objective.better)?;
        let c = crate::stats::compare(
            &obj_samples[b],
            &obj_samples[u],
            objective.better,
            args.stats.alpha,
            args.stats.noise,
            seed,
        );
        (c.ratio.is_finite() && c.ci_low.is_finite()).then_some(sweep::Dropped {
            point: u,
            best: b,
            comparison: c,
        })
    });
    let mut summaries: Vec<PointSummary> = (0..n)
        .map(|p| PointSummary {
            point: points[p].clone(),
            status: match (&sw.status[p], points[p].kind) {
                (_, PointKind::Defaults | PointKind::FairClass) => Status::Reference {
                    failed: sw.ref_failed[p].clone(),
                },
                (Some(s), _) => s.clone(),
                (None, _) if Some(p) == best => Status::Best,
                (None, _) => Status::Contender,
            },
            runs: sw.runs[p].len(),
            metrics: metrics.iter().map(|m| summary(p, m)).collect(),
            on_frontier: false,
        })
        .collect();
    // The frontier of the settings: the grid's points that ran (the
    // references are beside it, not on it).
    if let Some((a, b)) = &frontier {
        let values: Vec<(usize, f64, f64)> = (0..n)
            .filter(|&p| grid_ok(p))
            .filter_map(|p| {
                Some((
                    p,
                    summaries[p].metrics[1].median?,
                    summaries[p].metrics[2].median?,
                ))
            })
            .collect();
        for p in sweep::frontier(&values, a.better, b.better, args.stats.noise) {
            summaries[p].on_frontier = true;
        }
    }
    let report = sweep::Report {
        schema: sweep::SCHEMA.into(),
        scheduler: def.name.clone(),
        fixed_args: args.args.clone(),
        params,
        objective: objective.clone(),
        frontier: frontier.clone(),
        seed,
        samples: args.samples,
        racing: !args.no_race,
        rounds: sw.rounds,
        runs: sw.order.len(),
        seconds: started.elapsed().as_secs_f64(),
        stopped: match &result {
            Ok(()) => sw.stopped.clone(),
            Err(e) => format!("stopped: {e:#}"),
        },
        points: summaries,
        best,
        runner_up,
        order: sw.order.clone(),
    };
    crate::kernel::cache::write_atomic(
        &dir.join("sweep.json"),
        &serde_json::to_vec_pretty(&report)?,
    )?;
    crate::kernel::cache::write_atomic(
        &dir.join("sweep.html"),
        crate::html::sweep_page(&report).as_bytes(),
    )?;
    let all = std::mem::take(&mut sw.all);
    // On an error, the error is what is returned; the results are still
    // written if they can be.
    let html = serving.rundir.finish(&all);
    print!("{}", sweep::table(&report));
    if let Err(e) = result {
        eprintln!(
            "sweep: stopped; the points so far are in {}",
            dir.join("sweep.json").display()
        );
        return Err(e);
    }
    let html = html?;
    println!(
        "sweep: {} ({} run(s) in {} round(s), {:.0} s; stopped: {})\nreport: {}  runs: {}",
        dir.join("sweep.json").display(),
        report.runs,
        report.rounds,
        report.seconds,
        report.stopped,
        dir.join("sweep.html").display(),
        html.display()
    );
    if let Some(db) = &args.record {
        if !all.is_empty() {
            let id = super::history::record_or_explain(db, &dir, &all)?;
            println!("recorded as run {id} in {}", db.display());
        }
    }
    if let Some(h) = &serving.host {
        h.check_left_nothing()?;
    }
    Ok(if report.best.is_some() { 0 } else { 1 })
}

/// The sweep's state between rounds.
struct Sweeping {
    /// runs[p]: point p's runs that count, each with its scenario index.
    runs: Vec<Vec<(usize, CellResult)>>,
    /// A grid point's end (failed, dropped); None while it runs.
    status: Vec<Option<Status>>,
    /// Why a reference point stopped being run.
    ref_failed: Vec<Option<String>>,
    /// (round, point, scenario) of every run that counts, in order.
    order: Vec<(usize, usize, usize)>,
    /// Every run, those run again after the VM ended under them included.
    all: Vec<CellResult>,
    /// Rounds completed.
    rounds: usize,
    stopped: String,
}
