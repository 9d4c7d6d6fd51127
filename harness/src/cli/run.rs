//! `scx-harness run`: scenarios under schedulers, one VM per cell, with a
//! verdict per cell and every result kept in a run directory. And the
//! guest-side subcommands that run inside those VMs.

use std::path::PathBuf;

use anyhow::{Context, Result};

use super::{kernel_for, VmOpts};
use crate::cell::{self, CellSpec};
use crate::error::{fail, Failure};
use crate::kernel::Cache;
use crate::progress::Progress;
use crate::report::{self, CellResult, CellVerdict};
use crate::scenario;
use crate::scheduler::build::{self, BuildCtx};

/// The schedulers `run` uses when none is named: the baseline, the
/// kernel's simplest example, and ours.
pub const DEFAULT_SCHEDULERS: &[&str] = &["default", "scx_simple", "scx_fifo", "scx_vtime"];

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub registry: super::schedulers::RegistryOpt,
    /// A scheduler from the registry (repeatable; default: default,
    /// scx_simple, scx_fifo, scx_vtime).
    #[arg(long = "scheduler", short = 's', value_name = "NAME")]
    pub schedulers: Vec<String>,
    /// Where the run directory goes (default: ./scx-runs/TIMESTAMP). It
    /// must not exist: results are never overwritten.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    #[command(flatten)]
    pub vm: VmOpts,
    /// Scenario files or bundled scenario names (default: every bundled
    /// scenario).
    pub scenarios: Vec<String>,
}

fn timestamp() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    super::utc(secs).replace([' ', ':'], "-")
}

/// Creates the run directory; refuses one that exists, and says so before
/// any VM boots when it cannot be written.
pub fn create_run_dir(out: Option<PathBuf>) -> Result<PathBuf> {
    let dir = out.unwrap_or_else(|| PathBuf::from("scx-runs").join(timestamp()));
    if dir.exists() {
        return Err(fail(
            Failure::BadInput,
            format!(
                "run directory {} already exists; results are never overwritten\n  fix: pass another --out, or leave it out for a new one",
                dir.display()
            ),
        ));
    }
    std::fs::create_dir_all(&dir).map_err(|e| {
        fail(
            Failure::BadInput,
            format!(
                "cannot create the run directory {}: {e}\n  fix: pass a writable --out",
                dir.display()
            ),
        )
    })?;
    Ok(std::fs::canonicalize(&dir)?)
}

pub fn run(args: RunArgs) -> Result<i32> {
    let registry = args.registry.load()?;
    let names: Vec<String> = if args.schedulers.is_empty() {
        DEFAULT_SCHEDULERS.iter().map(|s| s.to_string()).collect()
    } else {
        args.schedulers.clone()
    };
    let defs = names
        .iter()
        .map(|n| registry.get(n).cloned())
        .collect::<Result<Vec<_>>>()?;
    let scenario_args = if args.scenarios.is_empty() {
        scenario::bundled_names()
    } else {
        args.scenarios.clone()
    };
    let scenarios = scenario_args
        .iter()
        .map(|s| scenario::resolve(s))
        .collect::<Result<Vec<_>>>()?;
    let dir = create_run_dir(args.out.clone())?;
    let kernel = kernel_for(&args.vm)?;
    let cache = Cache::user();
    let ctx = BuildCtx {
        cache: &cache,
        kernel: kernel.entry.as_ref(),
        registry: &registry,
    };
    let mut progress = Progress::new("schedulers");
    let built = defs
        .iter()
        .map(|d| build::build(d, &ctx, &mut progress))
        .collect::<Result<Vec<_>>>()?;
    drop(progress);
    for b in &built {
        super::schedulers::check_artifact(b)?;
    }
    let harness = std::env::current_exe()?;
    eprintln!(
        "running {} scenario(s) x {} scheduler(s) on {}; results in {}",
        scenarios.len(),
        built.len(),
        kernel.bzimage.display(),
        dir.display()
    );
    let mut results: Vec<CellResult> = Vec::new();
    'cells: for b in &built {
        for sc in &scenarios {
            let cell_dir = dir.join(&b.def.name).join(&sc.scenario.name);
            let r = cell::run(&CellSpec {
                scenario: sc,
                scheduler: b,
                args: &[],
                kernel: &kernel.bzimage,
                harness: &harness,
                dir: cell_dir,
                accel: args.vm.accel,
            })
            .with_context(|| format!("{} / {}", b.def.name, sc.scenario.name))?;
            eprint!("{}", report::describe(&r));
            let interrupted = crate::process::interrupted();
            results.push(r);
            if interrupted {
                break 'cells;
            }
        }
    }
    crate::kernel::cache::write_atomic(
        &dir.join("results.json"),
        &serde_json::to_vec_pretty(&results)?,
    )?;
    println!(
        "{:<14} {:<24} {:<6} SUMMARY",
        "SCHEDULER", "SCENARIO", "VERDICT"
    );
    for r in &results {
        println!(
            "{:<14} {:<24} {:<6} {}",
            r.scheduler,
            r.scenario,
            r.verdict.label(),
            r.summary.lines().next().unwrap_or("")
        );
    }
    println!("results: {}", dir.display());
    if crate::process::interrupted() {
        return Err(fail(
            Failure::Interrupted,
            format!("interrupted; finished cells are in {}", dir.display()),
        ));
    }
    let count = |v| results.iter().filter(|r| r.verdict == v).count();
    match (count(CellVerdict::Error), count(CellVerdict::Fail)) {
        (0, 0) => Ok(0),
        (0, f) => Err(fail(
            Failure::UnderTest,
            format!(
                "{f} of {} cell(s) failed their checks; see {}",
                results.len(),
                dir.display()
            ),
        )),
        (e, _) => Err(fail(
            Failure::Infrastructure,
            format!(
                "{e} of {} cell(s) could not be measured; see {}",
                results.len(),
                dir.display()
            ),
        )),
    }
}

#[derive(Debug, clap::Args)]
pub struct GuestRunScenarioArgs {
    /// The `agent::AgentSpec`, as JSON.
    #[arg(long)]
    pub spec_json: String,
    /// Where to write the output (`@shared/NAME`: the VM's shared directory).
    #[arg(long)]
    pub out: String,
}

pub fn guest_run_scenario(args: GuestRunScenarioArgs) -> Result<i32> {
    let spec: crate::agent::AgentSpec = serde_json::from_str(&args.spec_json)
        .map_err(|e| fail(Failure::BadInput, format!("--spec-json: {e}")))?;
    let out = crate::scheduler::lifecycle::guest_path(&args.out);
    let output = crate::agent::run(&spec, &out)?;
    match &output.error {
        Some(e) => Err(anyhow::anyhow!("{e}")),
        None => Ok(0),
    }
}

#[derive(Debug, clap::Args)]
pub struct GuestWorkloadGroupArgs {
    /// The `workload::GroupSpec`, as JSON.
    #[arg(long)]
    pub spec_json: String,
}

pub fn guest_workload_group(args: GuestWorkloadGroupArgs) -> Result<i32> {
    let spec: crate::workload::GroupSpec = serde_json::from_str(&args.spec_json)
        .map_err(|e| fail(Failure::BadInput, format!("--spec-json: {e}")))?;
    crate::workload::run_group(&spec)?;
    Ok(0)
}

#[derive(Debug, clap::Args)]
pub struct GuestBenchProbeArgs {
    /// The `agent::AgentSpec`, as JSON.
    #[arg(long)]
    pub spec_json: String,
    #[arg(long)]
    pub rounds: usize,
    #[arg(long)]
    pub out: String,
}

pub fn guest_bench_probe(args: GuestBenchProbeArgs) -> Result<i32> {
    let spec: crate::agent::AgentSpec = serde_json::from_str(&args.spec_json)
        .map_err(|e| fail(Failure::BadInput, format!("--spec-json: {e}")))?;
    let out = crate::scheduler::lifecycle::guest_path(&args.out);
    let dir = out
        .parent()
        .unwrap_or(std::path::Path::new("/tmp"))
        .to_path_buf();
    let rounds = crate::agent::bench_probe(&spec, args.rounds, &dir)?;
    crate::kernel::cache::write_atomic(&out, &serde_json::to_vec(&rounds)?)?;
    Ok(0)
}
