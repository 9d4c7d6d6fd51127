//! `scx-harness compare`: A/B runs of scenarios under two variants,
//! interleaved in the same VM where the kernels allow, until a fixed count
//! or (with `--runs auto`) until the verdicts settle.

use std::path::PathBuf;

use anyhow::Result;

use super::{kernel_for, TargetKind, TargetOpts, VmOpts};
use crate::cell::Planned;
use crate::compare::{self, CompareReport, Variant};
use crate::error::{fail, Failure};
use crate::kernel::{self, Cache, Kernel};
use crate::progress::Progress;
use crate::report::CellResult;
use crate::runner::{self, Session, Target};
use crate::scenario;
use crate::scheduler::build::{BuildCtx, Built};

/// `--runs`: a count per side, or `auto`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Runs {
    Fixed(usize),
    Auto,
}

pub(crate) fn parse_runs(s: &str) -> std::result::Result<Runs, String> {
    if s == "auto" {
        return Ok(Runs::Auto);
    }
    match s.parse::<usize>() {
        Ok(n) if n >= 1 => Ok(Runs::Fixed(n)),
        _ => Err(format!("`{s}` is neither a count (1 or more) nor `auto`")),
    }
}

#[derive(Debug, clap::Args)]
pub struct CompareArgs {
    #[command(flatten)]
    pub registry: super::schedulers::RegistryOpt,
    /// The baseline: a scheduler from the registry and extra arguments,
    /// e.g. "scx_fault --delay-comm worker --delay-ms 0".
    #[arg(long, value_name = "SCHEDULER [ARGS]")]
    pub baseline: String,
    /// The candidate, as --baseline.
    #[arg(long, value_name = "SCHEDULER [ARGS]")]
    pub candidate: String,
    /// The baseline's kernel (default: --kernel). Different kernels on the
    /// two sides mean a VM per side per round instead of one shared VM.
    #[arg(long, value_name = "PATH|KEY")]
    pub baseline_kernel: Option<String>,
    /// The candidate's kernel (default: --kernel).
    #[arg(long, value_name = "PATH|KEY")]
    pub candidate_kernel: Option<String>,
    /// Runs per side and scenario: a count, or `auto` (rounds of 5 until
    /// every key metric's verdict is settled, at most --max-runs).
    #[arg(long, value_parser = parse_runs, default_value = "10")]
    pub runs: Runs,
    /// The most runs per side `--runs auto` takes.
    #[arg(long, default_value_t = 30)]
    pub max_runs: usize,
    #[command(flatten)]
    pub stats: StatsOpts,
    /// Where the run directory goes (default: ./scx-runs/compare-TIMESTAMP).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Also record every run in this history database.
    #[arg(long, value_name = "DB")]
    pub record: Option<PathBuf>,
    #[command(flatten)]
    pub vm: VmOpts,
    #[command(flatten)]
    pub target: TargetOpts,
    /// Scenario files or bundled scenario names.
    #[arg(required = true)]
    pub scenarios: Vec<String>,
}

/// How a difference is judged (`compare`, `dev`).
#[derive(Debug, Clone, Copy, clap::Args)]
pub struct StatsOpts {
    /// Significance level (1 - confidence of the bootstrap interval).
    /// Family-wise: a scenario's key metrics are tested together, the
    /// Mann-Whitney p-values adjusted by Holm's method, and so are its
    /// other metrics; a scenario's runs too few to reach it say so.
    #[arg(long, default_value_t = 0.05)]
    pub alpha: f64,
    /// Changes smaller than this fraction are never a verdict (0.05: 5%).
    #[arg(long, default_value_t = 0.05)]
    pub noise: f64,
}

impl StatsOpts {
    /// Refuses an alpha outside (0, 0.5) or a noise outside [0, 1).
    pub fn check(&self) -> Result<()> {
        if !(0.0 < self.alpha && self.alpha < 0.5) {
            return Err(fail(
                Failure::BadInput,
                format!(
                    "--alpha {} is outside (0, 0.5)\n  fix: e.g. --alpha 0.05",
                    self.alpha
                ),
            ));
        }
        if !(0.0..1.0).contains(&self.noise) {
            return Err(fail(
                Failure::BadInput,
                format!(
                    "--noise {} is outside [0, 1)\n  fix: e.g. --noise 0.05",
                    self.noise
                ),
            ));
        }
        Ok(())
    }
}

/// "scx_fault --delay-ms 5" -> ("scx_fault", ["--delay-ms", "5"]).
fn split_variant(s: &str, flag: &str) -> Result<(String, Vec<String>)> {
    let mut words = s.split_whitespace().map(String::from);
    let name = words.next().ok_or_else(|| {
        fail(
            Failure::BadInput,
            format!("{flag} is empty\n  fix: name a scheduler from `scx-harness schedulers list`, e.g. {flag} \"scx_simple\""),
        )
    })?;
    Ok((name, words.collect()))
}

struct Side {
    variant: Variant,
    kernel: Kernel,
    built: Built,
    args: Vec<String>,
}

/// The runs of one round, in the order they run: baseline and candidate
/// alternate, and which goes first alternates from run to run (ABBA), so
/// drift in the VM hits both alike.
pub(crate) fn round_order(
    first_run: usize,
    runs: usize,
    scenarios: usize,
) -> Vec<(usize, usize, usize)> {
    let mut order = Vec::new();
    for run in first_run..first_run + runs {
        for sc in 0..scenarios {
            let sides = if run % 2 == 0 { [0, 1] } else { [1, 0] };
            for side in sides {
                order.push((side, sc, run));
            }
        }
    }
    order
}

pub fn run(args: CompareArgs) -> Result<i32> {
    args.stats.check()?;
    args.target.check()?;
    let on_host = args.target.target == TargetKind::Host;
    if on_host && (args.baseline_kernel.is_some() || args.candidate_kernel.is_some()) {
        return Err(fail(
            Failure::BadInput,
            "--target host compares on the running kernel; --baseline-kernel and --candidate-kernel need VMs\n  fix: drop them, or drop --target host",
        ));
    }
    let registry = args.registry.load()?;
    let (na, aa) = split_variant(&args.baseline, "--baseline")?;
    let (nb, ab) = split_variant(&args.candidate, "--candidate")?;
    registry.get(&na)?;
    registry.get(&nb)?;
    let scenarios = args
        .scenarios
        .iter()
        .map(|s| scenario::resolve(s))
        .collect::<Result<Vec<_>>>()?;
    if let Some(sc) = scenarios.iter().find(|s| !s.scenario.swaps.is_empty()) {
        return Err(fail(
            Failure::BadInput,
            format!(
                "{}: a scenario with swaps runs several schedulers; a comparison needs one per side\n  fix: compare scenarios without `swaps`",
                sc.path.display()
            ),
        ));
    }
    let host = match on_host {
        true => Some(crate::host::preflight(
            crate::host::Needs::of(&scenarios),
            args.target.replace,
        )?),
        false => None,
    };
    let rundir = crate::rundir::RunDir::create(
        args.out.clone(),
        &format!("compare-{}", super::run::timestamp()),
        2 * scenarios.len()
            * match args.runs {
                Runs::Fixed(n) => n,
                Runs::Auto => args.max_runs,
            },
    )?;
    let dir = rundir.path().to_path_buf();
    if let Some(db) = &args.record {
        crate::history::Db::open(db)?;
    }
    let cache = Cache::user();
    let kernel_of = |arg: &Option<String>| -> Result<Kernel> {
        match (arg, on_host) {
            (_, true) => super::host_build_kernel(&args.vm),
            (Some(a), false) => kernel::resolve(a, &cache),
            (None, false) => kernel_for(&args.vm),
        }
    };
    let mut progress = Progress::new("schedulers");
    let mut sides = Vec::new();
    for ((name, extra), (label, karg)) in [(na, aa), (nb, ab)].into_iter().zip([
        (&args.baseline, &args.baseline_kernel),
        (&args.candidate, &args.candidate_kernel),
    ]) {
        let kernel = kernel_of(karg)?;
        // The scheduler as it is on this side's kernel (registry `on:`).
        let registry = registry.for_kernel(kernel.name());
        let ctx = BuildCtx {
            cache: &cache,
            kernel: kernel.entry.as_ref(),
            registry: &registry,
        };
        let built = args
            .target
            .scheduler(registry.get(&name)?, &ctx, &mut progress)?;
        super::schedulers::check_artifact(&built)?;
        sides.push(Side {
            variant: Variant {
                label: label.trim().to_string(),
                scheduler: name,
                args: extra.clone(),
                kernel: kernel.entry.as_ref().map_or_else(
                    || kernel.bzimage.display().to_string(),
                    |e| match &e.meta.name {
                        Some(n) => format!("{n} ({})", e.meta.key),
                        None => e.meta.key.clone(),
                    },
                ),
            },
            kernel,
            built,
            args: extra,
        });
    }
    drop(progress);
    let shared_vm = sides[0].kernel.bzimage == sides[1].kernel.bzimage;
    let harness = std::env::current_exe()?;
    let side_name = ["baseline", "candidate"];
    // results[side][scenario]: the runs so far, in order.
    let mut results: Vec<Vec<Vec<CellResult>>> = vec![vec![Vec::new(); scenarios.len()]; 2];
    let (mut done, mut vm_n) = (0usize, 0usize);
    let stopped;
    loop {
        let this_round = match args.runs {
            Runs::Fixed(n) => n - done,
            Runs::Auto => 5.min(args.max_runs.saturating_sub(done)).max(1),
        };
        let order = round_order(done, this_round, scenarios.len());
        let planned: Vec<(usize, Planned)> = order
            .iter()
            .map(|&(side, sc, run)| {
                let s = &sides[side];
                (
                    side,
                    Planned {
                        scenario: &scenarios[sc],
                        scheduler: &s.built,
                        args: s.args.clone(),
                        swap_to: Vec::new(),
                        recording: crate::agent::PassRecording::Off,
                        dir: dir
                            .join(side_name[side])
                            .join(&scenarios[sc].scenario.name)
                            .join(format!("{run:03}")),
                    },
                )
            })
            .collect();
        // One VM for the round, or one per side when the kernels differ.
        let groups: Vec<Vec<usize>> = if shared_vm {
            vec![(0..planned.len()).collect()]
        } else {
            let first = if (done / 5) % 2 == 0 { [0, 1] } else { [1, 0] };
            first
                .iter()
                .map(|s| (0..planned.len()).filter(|i| planned[*i].0 == *s).collect())
                .collect()
        };
        for idx in groups {
            if crate::process::interrupted() {
                break;
            }
            let batch: Vec<Planned> = idx
                .iter()
                .map(|i| {
                    let p = &planned[*i].1;
                    Planned {
                        scenario: p.scenario,
                        scheduler: p.scheduler,
                        args: p.args.clone(),
                        swap_to: Vec::new(),
                        recording: crate::agent::PassRecording::Off,
                        dir: p.dir.clone(),
                    }
                })
                .collect();
            let kernel = &sides[planned[idx[0]].0].kernel;
            let session = Session {
                target: Target::of(host.as_ref(), &kernel.bzimage, args.vm.accel),
                harness: &harness,
                dir: dir.join(crate::report::SESSIONS_DIR).join(vm_n.to_string()),
                timeout: args.vm.timeout,
            };
            vm_n += 1;
            let rs = runner::run_session(&batch, &session, |r| {
                eprintln!(
                    "{:<8} {} / {} ({:.1} s)",
                    r.verdict.label(),
                    r.scheduler,
                    r.scenario,
                    r.elapsed_s
                )
            })?;
            for (i, r) in idx.iter().zip(rs) {
                let (side, sc, _) = order[*i];
                results[side][sc].push(r);
            }
        }
        done += this_round;
        let report = summarise(&args, &sides, &results, String::new());
        if crate::process::interrupted() {
            stopped = format!("interrupted after {done} run(s) per side");
            break;
        }
        match args.runs {
            Runs::Fixed(n) => {
                stopped = format!("{n} run(s) per side, as asked");
                break;
            }
            Runs::Auto => {
                let unsettled: Vec<String> = report
                    .scenarios
                    .iter()
                    .filter(|s| !s.settled(args.stats.noise))
                    .map(|s| {
                        format!(
                            "{}: {}",
                            s.scenario,
                            s.unsettled(args.stats.noise).join(", ")
                        )
                    })
                    .collect();
                if unsettled.is_empty() {
                    stopped = format!(
                        "--runs auto: every key metric settled after {done} run(s) per side"
                    );
                    break;
                }
                if done >= args.max_runs {
                    stopped = format!(
                        "--runs auto: stopped at the maximum of {done} run(s) per side with verdicts still unsettled ({})",
                        unsettled.join("; ")
                    );
                    break;
                }
                eprintln!(
                    "after {done} run(s) per side, not yet settled: {}",
                    unsettled.join("; ")
                );
            }
        }
    }
    let report = summarise(&args, &sides, &results, stopped);
    let all: Vec<CellResult> = results.iter().flatten().flatten().cloned().collect();
    let write = crate::kernel::cache::write_atomic;
    write(&dir.join("results.json"), &serde_json::to_vec_pretty(&all)?)?;
    write(
        &dir.join("compare.json"),
        &serde_json::to_vec_pretty(&report)?,
    )?;
    let html = dir.join("report.html");
    write(&html, crate::html::page(&all, Some(&report)).as_bytes())?;
    print!("{}", compare::table(&report));
    println!("results: {}\nreport:  {}", dir.display(), html.display());
    if let Some(db) = &args.record {
        super::history::record_or_explain(db, &dir, &all)?;
    }
    if crate::process::interrupted() {
        return Err(fail(
            Failure::Interrupted,
            format!("interrupted; the runs so far are in {}", dir.display()),
        ));
    }
    if let Some(h) = &host {
        h.check_left_nothing()?;
    }
    if report.regressed() {
        return Err(fail(
            Failure::UnderTest,
            format!(
                "the candidate is worse on a key metric or failed outright; see {}",
                html.display()
            ),
        ));
    }
    Ok(0)
}

fn summarise(
    args: &CompareArgs,
    sides: &[Side],
    results: &[Vec<Vec<CellResult>>],
    stopped: String,
) -> CompareReport {
    let scenarios = (0..results[0].len())
        .map(|sc| {
            let a: Vec<&CellResult> = results[0][sc].iter().collect();
            let b: Vec<&CellResult> = results[1][sc].iter().collect();
            compare::compare_scenario(&a, &b, args.stats.alpha, args.stats.noise)
        })
        .collect();
    CompareReport {
        schema: compare::SCHEMA.into(),
        baseline: sides[0].variant.clone(),
        candidate: sides[1].variant.clone(),
        alpha: args.stats.alpha,
        noise: args.stats.noise,
        runs: match args.runs {
            Runs::Fixed(n) => format!("fixed {n}"),
            Runs::Auto => format!("auto (max {})", args.max_runs),
        },
        stopped,
        scenarios,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_alternate_which_side_goes_first() {
        let o = round_order(0, 2, 1);
        assert_eq!(o, vec![(0, 0, 0), (1, 0, 0), (1, 0, 1), (0, 0, 1)]);
        assert_eq!(
            round_order(5, 1, 2),
            vec![(1, 0, 5), (0, 0, 5), (1, 1, 5), (0, 1, 5)]
        );
    }

    #[test]
    fn runs_argument() {
        assert_eq!(parse_runs("auto"), Ok(Runs::Auto));
        assert_eq!(parse_runs("7"), Ok(Runs::Fixed(7)));
        assert!(parse_runs("0").is_err());
        assert!(parse_runs("many").is_err());
    }

    #[test]
    fn variants_split_into_a_name_and_arguments() {
        let (n, a) = split_variant(" scx_fault  --delay-ms 5 ", "--candidate").unwrap();
        assert_eq!(
            (n.as_str(), a),
            ("scx_fault", vec!["--delay-ms".to_string(), "5".into()])
        );
        let e = split_variant("  ", "--baseline").unwrap_err();
        assert!(format!("{e:#}").contains("--baseline is empty"));
    }
}
