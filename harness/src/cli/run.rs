//! `scx-harness run`: scenarios under schedulers, one VM per cell, with a
//! verdict per cell and every result kept in a run directory. And the
//! guest-side subcommands that run inside those VMs.

use std::path::PathBuf;

use anyhow::{Context, Result};

use super::{kernel_for, TargetKind, TargetOpts, VmOpts};
use crate::cell::Planned;
use crate::error::{fail, Failure};
use crate::host::Host;
use crate::kernel::Cache;
use crate::matrix::{Matrix, Overrides};
use crate::progress::Progress;
use crate::report::{CellResult, CellVerdict};
use crate::runner::{self, Event, Target};
use crate::scenario;
use crate::scheduler::build::BuildCtx;
use crate::scheduler::build::Built;
use crate::scheduler::registry::Registry;

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub registry: super::schedulers::RegistryOpt,
    /// A scheduler from the registry (repeatable). With neither schedulers
    /// nor scenarios, the suite of the matrix runs.
    #[arg(long = "scheduler", short = 's', value_name = "NAME")]
    pub schedulers: Vec<String>,
    /// A suite of scenarios/matrix.yaml (default: $SCX_HARNESS_SUITE, else
    /// `default`); used when no scheduler and no scenario is named. It
    /// runs on the suite's kernels (its `kernels:`) unless --kernel names
    /// others.
    #[arg(long)]
    pub suite: Option<String>,
    /// Where the run directory goes (default: ./scx-runs/TIMESTAMP). It
    /// must not exist: results are never overwritten.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Boot a VM for every cell instead of hot-swapping schedulers in one
    /// VM per VM shape (slower; for isolation and comparison).
    #[arg(long)]
    pub vm_per_cell: bool,
    /// Run every cell this many times (samples for `history check`).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    pub repeat: u32,
    /// Also record the results in this history database (see `history`).
    #[arg(long, value_name = "DB")]
    pub record: Option<PathBuf>,
    #[command(flatten)]
    pub vm: VmOpts,
    #[command(flatten)]
    pub target: TargetOpts,
    /// Scenario files or bundled scenario names (default with -s: every
    /// bundled scenario).
    pub scenarios: Vec<String>,
    /// What is recorded of each cell's scheduler pass the way `record`
    /// records a machine (`replay-check` and `record --scenario` set it;
    /// no flag of its own).
    #[arg(skip)]
    pub recording: crate::agent::PassRecording,
}

pub(crate) fn timestamp() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    super::utc(secs).replace([' ', ':'], "-")
}

/// The suite a run without schedulers and scenarios runs: `--suite`, else
/// `SCX_HARNESS_SUITE`, else `default`, with the matrix and the
/// environment's overrides; `None` when cells are named.
struct SuiteRun {
    name: String,
    matrix: Matrix,
    overrides: Overrides,
}

fn suite_of(args: &RunArgs) -> Result<Option<SuiteRun>> {
    if !(args.schedulers.is_empty() && args.scenarios.is_empty()) {
        return Ok(None);
    }
    let overrides = Overrides::from_env();
    Ok(Some(SuiteRun {
        name: args
            .suite
            .clone()
            .or(overrides.suite.clone())
            .unwrap_or_else(|| "default".into()),
        matrix: Matrix::load(&Matrix::default_path())?,
        overrides,
    }))
}

/// The (scheduler, scenario) pairs to run, from the arguments or the
/// matrix, checked before anything is built or booted.
fn plan(
    args: &RunArgs,
    suite: Option<&SuiteRun>,
    kernel: Option<&str>,
    registry: &Registry,
) -> Result<Vec<(String, scenario::Loaded)>> {
    if let Some(suite) = suite {
        let cells = suite.matrix.cells(
            &suite.name,
            kernel,
            registry,
            &scenario::bundled_names(),
            &suite.overrides,
        )?;
        let mut loaded: std::collections::BTreeMap<String, scenario::Loaded> = Default::default();
        let mut out = Vec::new();
        for c in cells {
            if !loaded.contains_key(&c.scenario) {
                loaded.insert(c.scenario.clone(), scenario::resolve(&c.scenario)?);
            }
            out.push((c.scheduler, loaded[&c.scenario].clone()));
        }
        refuse_partial_without_ext(&out, registry)?;
        return Ok(out);
    }
    let names: Vec<String> = if args.schedulers.is_empty() {
        vec!["default".into()]
    } else {
        args.schedulers.clone()
    };
    for n in &names {
        registry.get(n)?;
    }
    let scenario_args = if args.scenarios.is_empty() {
        scenario::bundled_names()
    } else {
        args.scenarios.clone()
    };
    let scenarios = scenario_args
        .iter()
        .map(|s| scenario::resolve(s))
        .collect::<Result<Vec<_>>>()?;
    let mut out = Vec::new();
    for sc in &scenarios {
        for n in &names {
            // Of every bundled scenario, a scheduler that switches only
            // SCHED_EXT tasks gets those that have some.
            if args.scenarios.is_empty() && measures_nothing(registry, n, sc) {
                continue;
            }
            out.push((n.clone(), sc.clone()));
        }
    }
    if out.is_empty() {
        return Err(fail(
            Failure::BadInput,
            "no cell to run: the schedulers named switch only SCHED_EXT tasks (registry partial: true) and no bundled scenario has a policy: ext group\n  fix: name a scenario that has one".to_string(),
        ));
    }
    refuse_partial_without_ext(&out, registry)?;
    Ok(out)
}

/// Whether scheduler `name` switches only SCHED_EXT tasks (registry
/// `partial:`) and `sc` has none: every task would run in the fair class.
fn measures_nothing(registry: &Registry, name: &str, sc: &scenario::Loaded) -> bool {
    registry.get(name).is_ok_and(|d| d.partial) && !sc.scenario.uses_sched_ext_policy()
}

/// Refuses a pair whose scheduler switches only SCHED_EXT tasks (registry
/// `partial:`) and whose scenario has no `policy: ext` group: it would
/// measure the fair class and call it the scheduler's.
fn refuse_partial_without_ext(
    pairs: &[(String, scenario::Loaded)],
    registry: &Registry,
) -> Result<()> {
    for (name, sc) in pairs {
        if measures_nothing(registry, name, sc) {
            return Err(fail(
                Failure::BadInput,
                format!(
                    "{}: {name} switches only SCHED_EXT tasks (partial: true in {}), and no group of {} has policy: ext, so every task would run in the fair class\n  \
                     fix: give a group `policy: ext` (scenarios/README.md), or run a scheduler that switches every task",
                    sc.path.display(),
                    registry.path.display(),
                    sc.scenario.name
                ),
            ));
        }
    }
    Ok(())
}

pub fn run(args: RunArgs) -> Result<i32> {
    // Every kernel's cells are planned (and bad input refused) before
    // anything is built or booted.
    // The kernels: those --kernel names, else a suite's own `kernels:`
    // (scenarios/matrix.yaml), else the default kernel.
    args.target.check()?;
    let on_host = args.target.target == TargetKind::Host;
    let suite = suite_of(&args)?;
    let suite_kernels = match (args.vm.kernel.is_empty(), &suite) {
        // On the host the running kernel is the kernel.
        (true, Some(_)) if on_host => Vec::new(),
        (true, Some(s)) => {
            s.matrix
                .kernels(&s.name, &crate::kernel::Catalog::embedded(), &s.overrides)?
        }
        _ => Vec::new(),
    };
    let kernels: Vec<Option<&str>> = match (&args.vm.kernel[..], &suite_kernels[..]) {
        ([], []) => vec![None],
        ([], named) => named.iter().map(|k| Some(k.as_str())).collect(),
        (given, _) => given.iter().map(|k| Some(k.as_str())).collect(),
    };
    if let Some(k) = args
        .vm
        .kernel
        .iter()
        .enumerate()
        .find_map(|(i, k)| args.vm.kernel[..i].contains(k).then_some(k))
    {
        return Err(fail(
            Failure::BadInput,
            format!("--kernel {k} is given twice\n  fix: name each kernel once"),
        ));
    }
    if on_host && kernels.len() > 1 {
        return Err(fail(
            Failure::BadInput,
            "--target host runs on the running kernel; --kernel names the one tree schedulers are built in, once\n  fix: give --kernel at most once",
        ));
    }
    // On the host: the name of the kernel schedulers are built for (the
    // running release's cache entry, if any), so that the registry is the
    // one of that kernel; nothing is fetched or built yet.
    let host_kernel_name = match on_host {
        true => Some(super::host_kernel_name(&args.vm)?),
        false => None,
    };
    let mut plans = Vec::new();
    for k in &kernels {
        let name = match &host_kernel_name {
            Some(n) => n.clone(),
            None => crate::kernel::name_of_arg(*k, &crate::kernel::Cache::user()),
        };
        // On a host the kernel has no catalog name unless a cached one of
        // its release has: the registry as it is everywhere, not the
        // default kernel's.
        let registry = match on_host {
            true => args.registry.load()?.for_kernel(name.as_deref()),
            false => args.registry.load_for(name.as_deref().or(*k))?,
        };
        let pairs = plan(&args, suite.as_ref(), name.as_deref(), &registry)?;
        plans.push((*k, registry, pairs));
    }
    // On the host, the machine is checked before anything is fetched or
    // built; nothing on it changes before the first session.
    let host = match on_host {
        true => {
            let scenarios = plans.iter().flat_map(|(_, _, p)| p.iter().map(|(_, s)| s));
            Some(crate::host::preflight(
                crate::host::Needs::of(scenarios),
                args.target.replace,
            )?)
        }
        false => None,
    };
    // Then every kernel is fetched or built (a cold one takes minutes),
    // before any cell runs.
    let kernels: Vec<crate::kernel::Kernel> = match on_host {
        true => vec![super::host_build_kernel(&args.vm)?],
        false => kernels
            .iter()
            .map(|k| {
                let mut opts = args.vm.clone();
                opts.kernel = k.iter().map(|k| k.to_string()).collect();
                kernel_for(&opts)
            })
            .collect::<Result<_>>()?,
    };
    let total: usize = plans.iter().map(|(_, _, p)| p.len()).sum::<usize>() * args.repeat as usize;
    let rundir = crate::rundir::RunDir::create(args.out.clone(), &timestamp(), total)?;
    let dir = rundir.path().to_path_buf();
    if let Some(db) = &args.record {
        // A database that cannot be opened is reported before any VM boots.
        crate::history::Db::open(db)?;
    }
    let ui = Ui::new(total);
    let mut results: Vec<CellResult> = Vec::new();
    for ((k, registry, pairs), kernel) in plans.iter().zip(&kernels) {
        let sub = match k {
            // With several kernels each has its own part of the run
            // directory: KERNEL/SCHEDULER/SCENARIO.
            Some(name) if plans.len() > 1 => dir.join(name.replace('/', "_")),
            _ => dir.clone(),
        };
        // Every cell of this kernel, unmeasured, with one verdict and why.
        let unmeasured = |verdict: CellVerdict, summary: &str| -> Vec<CellResult> {
            let repeat = args.repeat as usize;
            let mut out = Vec::new();
            for (name, sc) in pairs {
                for i in 0..repeat {
                    let dir = cell_dir(&sub, name, sc, repeat, i);
                    let mut r =
                        crate::report::without_vm(sc, name, "", &dir, verdict, summary.to_string());
                    set_kernel(&mut r, kernel, host.as_ref());
                    ui.cell(&r);
                    out.push(r);
                }
            }
            out
        };
        if crate::process::interrupted() {
            results.extend(unmeasured(
                CellVerdict::NotRun,
                "not run: interrupted before its kernel's VMs started",
            ));
            continue;
        }
        match run_on_kernel(&args, kernel, host.as_ref(), registry, pairs, &sub, &ui) {
            Ok(rs) => results.extend(rs),
            // With one kernel its error is the run's, as before; with
            // several, the kernels that ran keep their results and this
            // one's cells say what stopped them.
            Err(e)
                if plans.len() == 1 || crate::error::classify(&e) == Some(Failure::Interrupted) =>
            {
                if results.is_empty() {
                    return Err(e);
                }
                eprintln!("scx-harness: {e:#}");
            }
            Err(e) => {
                results.extend(unmeasured(
                    CellVerdict::Error,
                    &format!("not measured: {e:#}"),
                ));
            }
        }
    }
    ui.finish();
    // The table first: what was measured is seen even if nothing more can
    // be saved.
    print!("{}", crate::report::table(&results));
    let html = rundir.finish(&results)?;
    println!("results: {}\nreport:  {}", dir.display(), html.display());
    if let Some(db) = &args.record {
        let id = super::history::record_or_explain(db, &dir, &results)?;
        println!("recorded as run {id} in {}", db.display());
    }
    let left = host.as_ref().map_or(Ok(()), |h| h.check_left_nothing());
    if crate::process::interrupted() {
        if let Err(e) = &left {
            eprintln!("scx-harness: {e:#}");
        }
        return Err(fail(
            Failure::Interrupted,
            format!("interrupted; finished cells are in {}", dir.display()),
        ));
    }
    left?;
    let count = |v| results.iter().filter(|r| r.verdict == v).count();
    let unmeasured = count(CellVerdict::Error) + count(CellVerdict::NotRun);
    match (unmeasured, count(CellVerdict::Fail)) {
        (0, 0) => Ok(0),
        (0, f) => Err(fail(
            Failure::UnderTest,
            format!(
                "{f} of {} cell(s) failed their checks; see {}",
                results.len(),
                html.display()
            ),
        )),
        (e, _) => {
            // A guest kernel crash is told apart from the VM's own trouble
            // (its exit code is the kernel crash's).
            let crashed = results.iter().any(|r| {
                r.verdict == CellVerdict::Error
                    && r.session_end == Some(crate::vm::Outcome::KernelCrash)
            });
            Err(fail(
                if crashed {
                    Failure::KernelCrash
                } else {
                    Failure::Infrastructure
                },
                format!(
                    "{e} of {} cell(s) could not be measured{}; see {}",
                    results.len(),
                    if crashed {
                        " (the guest kernel crashed)"
                    } else {
                        ""
                    },
                    html.display()
                ),
            ))
        }
    }
}

/// A cell that never reached a session still says which kernel (and on a
/// host, which machine) it was for.
fn set_kernel(r: &mut CellResult, kernel: &crate::kernel::Kernel, host: Option<&Host>) {
    match host {
        Some(h) => h.label(r),
        None => {
            r.kernel = kernel.release().unwrap_or_default().to_string();
            r.kernel_name = kernel.name().unwrap_or_default().to_string();
        }
    }
}

/// The directory of one cell: DIR/SCHEDULER/SCENARIO, and /NNN per sample
/// when cells repeat.
fn cell_dir(
    dir: &std::path::Path,
    name: &str,
    sc: &scenario::Loaded,
    repeat: usize,
    i: usize,
) -> PathBuf {
    let d = dir.join(name).join(&sc.scenario.name);
    if repeat > 1 {
        d.join(format!("{i:03}"))
    } else {
        d
    }
}

/// The cells of one kernel: its schedulers built (one that does not build
/// fails its own cells), then one VM per VM shape (or per cell), each
/// verdict shown as it comes. Cells of VMs never started (interrupted) are
/// `not run`.
fn run_on_kernel(
    args: &RunArgs,
    kernel: &crate::kernel::Kernel,
    host: Option<&crate::host::Host>,
    registry: &Registry,
    pairs: &[(String, scenario::Loaded)],
    dir: &std::path::Path,
    ui: &Ui,
) -> Result<Vec<CellResult>> {
    let cache = Cache::user();
    let ctx = BuildCtx {
        cache: &cache,
        kernel: kernel.entry.as_ref(),
        registry,
    };
    // Build every scheduler once, before any VM boots. One that does not
    // build for this kernel fails its own cells (with the build's error
    // lines); the others run.
    let mut progress = Progress::new("schedulers");
    let mut built: std::collections::BTreeMap<String, Built> = Default::default();
    let mut unbuilt: std::collections::BTreeMap<String, String> = Default::default();
    for (name, sc) in pairs {
        let swap_targets = sc
            .scenario
            .swaps
            .iter()
            .filter(|sw| sw.to != "cell")
            .map(|sw| &sw.to);
        for n in std::iter::once(name).chain(swap_targets) {
            if !built.contains_key(n) && !unbuilt.contains_key(n) {
                let def = registry.get(n).map_err(|e| {
                    e.context(format!("{}: a swap names a scheduler", sc.path.display()))
                })?;
                match args
                    .target
                    .scheduler(def, &ctx, &mut progress)
                    .and_then(|b| super::schedulers::check_artifact(&b).map(|()| b))
                {
                    Ok(b) => {
                        built.insert(n.to_string(), b);
                    }
                    Err(e) if crate::error::classify(&e) == Some(Failure::Interrupted) => {
                        return Err(e)
                    }
                    Err(e) => {
                        eprintln!("scx-harness: {n} did not build; its cells fail: {e:#}");
                        unbuilt.insert(n.to_string(), format!("{e:#}"));
                    }
                }
            }
        }
    }
    drop(progress);
    let harness = std::env::current_exe()?;
    let repeat = args.repeat as usize;
    let cell_dir = |name: &str, sc: &scenario::Loaded, i: usize| cell_dir(dir, name, sc, repeat, i);
    // A cell whose scheduler, or a scheduler its scenario swaps to, did
    // not build.
    let not_built = |name: &str, sc: &scenario::Loaded| {
        std::iter::once(name)
            .chain(sc.scenario.swaps.iter().map(|sw| sw.to.as_str()))
            .find_map(|n| unbuilt.get(n).map(|why| format!("{n}: {why}")))
    };
    let mut results: Vec<CellResult> = Vec::new();
    for (name, sc) in pairs {
        if let Some(why) = not_built(name, sc) {
            for i in 0..repeat {
                let mut r = crate::report::not_built(sc, name, &cell_dir(name, sc, i), &why);
                set_kernel(&mut r, kernel, host);
                crate::cell::write_result(&r)?;
                results.push(r);
            }
        }
    }
    let planned: Vec<Planned> = pairs
        .iter()
        .filter(|(name, sc)| not_built(name, sc).is_none())
        .flat_map(|p| std::iter::repeat_n(p, repeat).enumerate())
        .map(|(i, (name, sc))| Planned {
            scenario: sc,
            scheduler: &built[name],
            args: Vec::new(),
            swap_to: sc
                .scenario
                .swaps
                .iter()
                .map(|sw| {
                    if sw.to == "cell" {
                        &built[name]
                    } else {
                        &built[&sw.to]
                    }
                })
                .collect(),
            dir: cell_dir(name, sc, i),
            recording: args.recording,
        })
        .collect();
    let target = Target::of(host, &kernel.bzimage, args.vm.accel);
    let sessions = runner::sessions(&planned, args.vm_per_cell).len();
    ui.say(format!(
        "running {} cell(s) in {} {} on {}; results in {}",
        planned.len(),
        sessions,
        match host {
            Some(_) => "session(s)",
            None => "VM(s)",
        },
        match host {
            Some(h) => format!(
                "this machine ({}, kernel {}, CPUs {})",
                h.hostname,
                h.release,
                crate::units::cpu_list(
                    &h.cpus(
                        planned
                            .iter()
                            .map(|p| p.scenario.scenario.vm.cpus)
                            .max()
                            .unwrap_or(1)
                    )
                )
            ),
            None => format!(
                "{}{}",
                kernel
                    .name()
                    .map(|n| format!("kernel {n}, "))
                    .unwrap_or_default(),
                kernel.bzimage.display()
            ),
        },
        dir.display()
    ));
    for r in &results {
        ui.cell(r);
    }
    let rs = runner::run_cells(
        &planned,
        target,
        &harness,
        dir,
        args.vm_per_cell,
        args.vm.timeout,
        |e| match e {
            Event::Session { n, of, first } => ui.vm(n, of, &first),
            Event::Cell(r) => ui.cell(r),
        },
    )?;
    for mut r in rs {
        if r.kernel.is_empty() {
            set_kernel(&mut r, kernel, host);
        }
        results.push(r);
    }
    Ok(results)
}

/// What people see while cells run: on a terminal, a bar over all cells
/// and each verdict printed above it; elsewhere, a line per VM and cell.
struct Ui {
    bar: Option<indicatif::ProgressBar>,
}

impl Ui {
    fn new(total: usize) -> Ui {
        use std::io::IsTerminal;
        let bar = std::io::stderr().is_terminal().then(|| {
            let b = indicatif::ProgressBar::new(total as u64);
            b.set_style(
                indicatif::ProgressStyle::with_template(
                    "{spinner} [{elapsed_precise}] [{bar:30}] {pos}/{len} cells {wide_msg}",
                )
                .expect("valid template"),
            );
            b.enable_steady_tick(std::time::Duration::from_millis(200));
            b
        });
        Ui { bar }
    }

    fn say(&self, line: String) {
        match &self.bar {
            Some(b) => b.println(line),
            None => eprintln!("{line}"),
        }
    }

    fn vm(&self, n: usize, of: usize, first: &str) {
        match &self.bar {
            Some(b) => b.set_message(format!("session {n}/{of}, from {first}")),
            None => eprintln!("session {n}/{of}: starting (first cell {first})"),
        }
    }

    fn cell(&self, r: &CellResult) {
        if let Some(b) = &self.bar {
            b.inc(1);
        }
        let first = r.summary.lines().next().unwrap_or("");
        self.say(format!(
            "{:<8} {} / {} ({:.1} s){}",
            r.verdict.label(),
            r.scheduler,
            r.scenario,
            r.elapsed_s,
            if r.verdict == CellVerdict::Pass {
                String::new()
            } else {
                format!(": {first}\n         evidence: {}", r.dir.display())
            }
        ));
    }

    fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
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
    crate::agent::quiet_tracing();
    let spec: crate::agent::AgentSpec = serde_json::from_str(&args.spec_json)
        .map_err(|e| fail(Failure::BadInput, format!("--spec-json: {e}")))?;
    let out = crate::protocol::guest_path(&args.out);
    let output = crate::agent::run(&spec, &out)?;
    match &output.error {
        Some(e) => Err(anyhow::anyhow!("{e}")),
        None => Ok(0),
    }
}

#[derive(Debug, clap::Args)]
pub struct GuestWorkloadGroupArgs {
    /// The `workload::GroupSpec`, as JSON (default: the first line on
    /// stdin, for a group process started ahead of its cell).
    #[arg(long)]
    pub spec_json: Option<String>,
}

pub fn guest_workload_group(args: GuestWorkloadGroupArgs) -> Result<i32> {
    let spec: crate::workload::GroupSpec = match &args.spec_json {
        Some(json) => serde_json::from_str(json)
            .map_err(|e| fail(Failure::BadInput, format!("--spec-json: {e}")))?,
        None => crate::workload::spec_from_stdin()?,
    };
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
    #[arg(long, default_value_t = 0)]
    pub cost_rounds: usize,
    #[arg(long)]
    pub out: String,
}

pub fn guest_bench_probe(args: GuestBenchProbeArgs) -> Result<i32> {
    crate::agent::quiet_tracing();
    let spec: crate::agent::AgentSpec = serde_json::from_str(&args.spec_json)
        .map_err(|e| fail(Failure::BadInput, format!("--spec-json: {e}")))?;
    let out = crate::protocol::guest_path(&args.out);
    let dir = out
        .parent()
        .unwrap_or(std::path::Path::new("/tmp"))
        .to_path_buf();
    let output = crate::agent::bench_probe(&spec, args.rounds, args.cost_rounds, &dir)?;
    crate::kernel::cache::write_atomic(&out, &serde_json::to_vec(&output)?)?;
    Ok(0)
}

#[derive(Debug, clap::Args)]
pub struct GuestRunBatchArgs {
    /// The `agent::BatchSpec`, as a JSON file.
    #[arg(long)]
    pub spec_file: PathBuf,
}

pub fn guest_run_batch(args: GuestRunBatchArgs) -> Result<i32> {
    let bytes = std::fs::read(&args.spec_file)
        .with_context(|| format!("reading {}", args.spec_file.display()))?;
    let batch: crate::agent::BatchSpec = serde_json::from_slice(&bytes).map_err(|e| {
        fail(
            Failure::BadInput,
            format!("{}: {e}", args.spec_file.display()),
        )
    })?;
    // In a VM the trace buffer the boot's trace events fill is turned off;
    // a host's trace settings are its own.
    if batch.host.is_none() {
        crate::agent::quiet_tracing();
    }
    let shared = crate::protocol::guest_path(&crate::protocol::shared_arg(""));
    crate::agent::run_batch(&batch, &shared)?;
    Ok(0)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ReportFormat {
    Html,
    Junit,
    Json,
    Markdown,
}

#[derive(Debug, clap::Args)]
pub struct ReportArgs {
    /// A run directory `scx-harness run` wrote.
    pub run_dir: PathBuf,
    #[arg(long, value_enum, default_value_t = ReportFormat::Html)]
    pub format: ReportFormat,
    /// Write here (atomically) instead of RUN_DIR/report.html (html) or
    /// stdout (the others).
    #[arg(long, short)]
    pub output: Option<PathBuf>,
}

pub fn report(args: ReportArgs) -> Result<i32> {
    let results = crate::report::load_run(&args.run_dir)?;
    // A comparison's run directory also holds compare.json.
    let cmp = args.run_dir.join("compare.json");
    let compare: Option<crate::compare::CompareReport> = if cmp.is_file() {
        let bytes = std::fs::read(&cmp)?;
        Some(serde_json::from_slice(&bytes).map_err(|e| {
            fail(
                Failure::BadInput,
                format!("{}: not a comparison of this version: {e}", cmp.display()),
            )
        })?)
    } else {
        None
    };
    let text = match args.format {
        ReportFormat::Html => crate::html::page(&results, compare.as_ref()),
        ReportFormat::Junit => crate::report::junit(&results),
        ReportFormat::Json => match &compare {
            Some(c) => {
                serde_json::to_string_pretty(
                    &serde_json::json!({ "cells": results, "compare": c }),
                )? + "\n"
            }
            None => serde_json::to_string_pretty(&results)? + "\n",
        },
        ReportFormat::Markdown => crate::report::markdown(&results),
    };
    let out = match (&args.output, args.format) {
        (Some(p), _) => Some(p.clone()),
        (None, ReportFormat::Html) => Some(args.run_dir.join("report.html")),
        (None, _) => None,
    };
    match out {
        Some(p) => {
            crate::kernel::cache::write_atomic(&p, text.as_bytes())?;
            println!("{}", p.display());
        }
        None => print!("{text}"),
    }
    Ok(0)
}
