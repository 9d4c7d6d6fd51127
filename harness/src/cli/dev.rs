//! `scx-harness dev`: the edit loop (see `crate::dev`): arguments, the
//! session's run directory, the watch and the terminal's commands.

use std::path::PathBuf;

use anyhow::Result;

use super::{TargetOpts, VmOpts};
use crate::dev::{self, source::DevSource, Dev, Input, Options};
use crate::error::{fail, Failure};
use crate::kernel::Cache;

/// The scenario `dev` runs when none is named: 6 s, three tasks that
/// sleep and wake, bounded run delays; what a scheduler change moves
/// first (scenarios/idle-baseline.yaml).
pub const DEFAULT_SCENARIO: &str = "idle-baseline";

#[derive(Debug, clap::Args)]
pub struct DevArgs {
    #[command(flatten)]
    pub registry: super::schedulers::RegistryOpt,
    /// The scheduler: a registry name (its sources are watched), or any
    /// name with --tree.
    #[arg(required_unless_present = "replay")]
    pub scheduler: Option<String>,
    /// Scenario files or bundled names (default: idle-baseline). All must
    /// have one VM shape.
    pub scenarios: Vec<String>,
    /// The scheduler's sources: an scx-style checkout (a cargo workspace
    /// with the package SCHEDULER), a directory with SCHEDULER.bpf.c, or a
    /// kernel tree (its tools/sched_ext example SCHEDULER).
    #[arg(long, value_name = "DIR")]
    pub tree: Option<PathBuf>,
    /// Scenario runs per build; with 2 or more each is interleaved with a
    /// run of the previous build, for a delta with statistics.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    pub runs: u32,
    #[command(flatten)]
    pub stats: super::compare::StatsOpts,
    /// End after this many builds (failed ones included), e.g. in scripts;
    /// default: until `q`, end of watching, or SIGINT.
    #[arg(long, value_name = "N")]
    pub max_builds: Option<usize>,
    /// Where the session goes (default: ./scx-runs/dev-TIMESTAMP).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Also record every run in this history database when the session
    /// ends.
    #[arg(long, value_name = "DB")]
    pub record: Option<PathBuf>,
    /// Replay a finished session (its directory) as a `compare` of two of
    /// its builds, without booting: --baseline-build against
    /// --candidate-build (default: its first and last builds that ran).
    #[arg(long, value_name = "SESSION_DIR")]
    pub replay: Option<PathBuf>,
    /// With --replay: the baseline build's number.
    #[arg(long, value_name = "N", requires = "replay")]
    pub baseline_build: Option<usize>,
    /// With --replay: the candidate build's number.
    #[arg(long, value_name = "N", requires = "replay")]
    pub candidate_build: Option<usize>,
    #[command(flatten)]
    pub vm: VmOpts,
    #[command(flatten)]
    pub target: TargetOpts,
}

/// `dev --replay`: the comparison table, `compare.json`-shaped JSON beside
/// the session (`replay-A-B.json`), exit 1 when the candidate is worse on
/// a key metric or failed.
fn replay(args: &DevArgs, dir: &std::path::Path) -> Result<i32> {
    args.stats.check()?;
    let report = dev::replay(
        dir,
        args.baseline_build,
        args.candidate_build,
        args.stats.alpha,
        args.stats.noise,
    )?;
    print!("{}", crate::compare::table(&report));
    let name = format!(
        "replay-{}-{}.json",
        report
            .baseline
            .label
            .split_whitespace()
            .nth(1)
            .unwrap_or("a"),
        report
            .candidate
            .label
            .split_whitespace()
            .nth(1)
            .unwrap_or("b")
    );
    crate::kernel::cache::write_atomic(&dir.join(&name), &serde_json::to_vec_pretty(&report)?)?;
    println!("comparison: {}", dir.join(name).display());
    Ok(i32::from(report.regressed()))
}

pub fn run(args: DevArgs) -> Result<i32> {
    if let Some(dir) = &args.replay {
        return replay(&args, dir);
    }
    let name = args
        .scheduler
        .clone()
        .expect("clap requires it without --replay");
    args.target.check()?;
    args.stats.check()?;
    if args.target.no_build {
        return Err(fail(
            Failure::BadInput,
            "dev builds the scheduler on every save; --no-build does not apply\n  fix: drop --no-build",
        ));
    }
    if args.vm.timeout.is_some() {
        return Err(fail(
            Failure::BadInput,
            "dev keeps its VM for as long as it runs (each cell has its own deadline); --timeout does not apply\n  fix: drop --timeout",
        ));
    }
    let registry = args.registry.load()?;
    let scenarios = super::one_vm_scenarios(&args.scenarios, "dev")?;
    let cache = Cache::user();
    let kernel = args.target.kernel(&args.vm)?;
    let registry = registry.for_kernel(kernel.name());
    let def = registry.get(&name).ok();
    if def.is_none() && args.tree.is_none() {
        registry.get(&name)?;
    }
    let source = DevSource::resolve(
        def,
        &name,
        args.tree.as_deref(),
        kernel.entry.as_ref(),
        &cache,
        registry.dir(),
    )?;
    let serving = super::Serving::start(
        "dev",
        &args.target,
        &scenarios,
        args.out.clone(),
        args.record.as_deref(),
    )?;
    let dir = serving.dir.clone();
    let session = serving.session(&kernel, args.vm.accel);
    let (tx, rx) = std::sync::mpsc::channel::<Input>();
    let relevant = {
        let s = source.clone();
        move |p: &std::path::Path| s.relevant(p)
    };
    let _watch = dev::watch::start(&source.watch, relevant, tx.clone(), Input::Changed)?;
    dev::read_commands(tx);
    let mut dev = Dev::new(
        source,
        &kernel,
        &cache,
        session,
        scenarios,
        dir.clone(),
        Options {
            runs: args.runs as usize,
            alpha: args.stats.alpha,
            noise: args.stats.noise,
            max_builds: args.max_builds,
        },
    )?;
    let code = dev.run(&rx);
    let results = dev.results();
    drop(dev);
    let html = serving.rundir.finish(&results)?;
    println!("report: {}", html.display());
    if let Some(db) = &args.record {
        if !results.is_empty() {
            let id = super::history::record_or_explain(db, &dir, &results)?;
            println!("recorded as run {id} in {}", db.display());
        }
    }
    if let Some(h) = &serving.host {
        h.check_left_nothing()?;
    }
    code
}
