//! The matrix under cargo nextest: one test per cell of the suite
//! (`scenarios/matrix.yaml`) on each of its kernels, named
//! `matrix::KERNEL::SCHEDULER::SCENARIO`. Listing reads the matrix, the
//! registry, the kernel catalog and the scenario names and nothing else
//! (no build, no VM); running one test builds its scheduler for its kernel
//! if needed and boots one VM of that kernel (which `cargo ci test` has
//! built or fetched; a missing one fails the test with the command that
//! gets it).
//!
//! The suite is `default` unless `SCX_HARNESS_SUITE` names another;
//! `SCX_HARNESS_KERNELS`, `SCX_HARNESS_SCHEDULERS` and
//! `SCX_HARNESS_SCENARIOS` narrow it. `SCX_HARNESS_TEST_KERNEL` (a cached
//! kernel's bzImage) runs the suite's cells on that kernel alone. A matrix
//! that names an unknown kernel, scheduler or scenario fails the listing
//! with the file, the line and the known names.
//!
//! With `SCX_HARNESS_SHARED_SESSIONS=1` under nextest (`cargo ci test`
//! without arguments), the first test of a kernel runs every cell of the suite on
//! it as one `scx-harness run` (hot-swapped, a VM per shape) and each test
//! judges its own cell from that run's results: the same cells and checks
//! in about 40% of the VM time (BENCHMARKS.md). A partitioned or filtered
//! run does not set it, so only the cells asked for run.
//!
//! For the nightly job: `SCX_HARNESS_REPEAT=N` runs each cell N times (a
//! VM each), and `SCX_HARNESS_RESULTS=DIR` keeps every cell's directory
//! under DIR/KERNEL/SCHEDULER/SCENARIO/NNN, a tree `scx-harness history
//! record` reads.

mod common;

use std::process::ExitCode;

use libtest_mimic::{Arguments, Failed, Trial};
use scx_harness::matrix::{Cell, Matrix, Overrides};
use scx_harness::report::CellVerdict;

fn trials() -> anyhow::Result<Vec<Trial>> {
    let overrides = Overrides::from_env();
    let matrix = Matrix::load(&Matrix::default_path())?;
    let registry = scx_harness::scheduler::registry::Registry::load(
        &scx_harness::scheduler::registry::Registry::default_path(),
    )?;
    let suite = overrides.suite.clone().unwrap_or_else(|| "default".into());
    // The suite's kernels, or the one $SCX_HARNESS_TEST_KERNEL boots (its
    // catalog name when it is a named kernel's cache entry).
    let kernels: Vec<Option<String>> = match std::env::var_os("SCX_HARNESS_TEST_KERNEL") {
        Some(p) => vec![scx_harness::kernel::name_of_bzimage(std::path::Path::new(
            &p,
        ))],
        None => matrix
            .kernels(
                &suite,
                &scx_harness::kernel::Catalog::embedded(),
                &overrides,
            )?
            .into_iter()
            .map(Some)
            .collect(),
    };
    let mut trials = Vec::new();
    for kernel in kernels {
        let cells = matrix.cells(
            &suite,
            kernel.as_deref(),
            &registry.for_kernel(kernel.as_deref()),
            &scx_harness::scenario::bundled_names(),
            &overrides,
        )?;
        trials.extend(cells.into_iter().map(|cell| {
            let name = cell.test_name();
            Trial::test(name, move || run(&cell))
        }));
    }
    Ok(trials)
}

fn run(cell: &Cell) -> Result<(), Failed> {
    let (scheduler, scenario) = (&cell.scheduler, &cell.scenario);
    let entry = match (&cell.kernel, std::env::var_os("SCX_HARNESS_TEST_KERNEL")) {
        (Some(name), None) => common::named_kernel(name),
        _ => common::test_kernel_entry(),
    };
    let repeat: usize = match std::env::var("SCX_HARNESS_REPEAT") {
        Ok(v) => v
            .parse()
            .ok()
            .filter(|n| *n >= 1)
            .ok_or_else(|| format!("SCX_HARNESS_REPEAT={v:?} is not a count of 1 or more"))?,
        Err(_) => 1,
    };
    let results = std::env::var_os("SCX_HARNESS_RESULTS").map(std::path::PathBuf::from);
    if let (Some(run_id), 1, None) = (common::shared_sessions(), repeat, &results) {
        return from_shared_run(cell, &entry, &run_id);
    }
    let mut failures = Vec::new();
    for i in 0..repeat {
        let r = common::run_bundled_cell_on(&entry, scheduler, scenario);
        if let Some(root) = &results {
            let kernel = cell.kernel.as_deref().unwrap_or("custom");
            keep_result(
                &r.result,
                &root
                    .join(kernel)
                    .join(scheduler)
                    .join(scenario)
                    .join(format!("{i:03}")),
            )?;
        }
        if r.verdict != CellVerdict::Pass {
            let text = scx_harness::report::describe(&r.result);
            // Keep the evidence: the cell's directory outlives the test.
            failures.push(format!(
                "{text}\ncell directory kept: {}",
                r.keep().display()
            ));
        }
    }
    match failures.is_empty() {
        true => Ok(()),
        false => Err(failures.join("\n").into()),
    }
}

/// The cell's result from the run of every cell of its kernel that the
/// first matrix test of this nextest run started: `scx-harness run` of
/// the suite on that kernel (the one pipeline, schedulers hot-swapped in a
/// VM per shape), under a lock the other tests wait on; each test then
/// judges its own cell from that run's result.
fn from_shared_run(
    cell: &Cell,
    entry: &scx_harness::kernel::Entry,
    run_id: &str,
) -> Result<(), Failed> {
    let root = common::once_per_run(run_id, "matrix", &entry.meta.key, |root| {
        let suite = Overrides::from_env()
            .suite
            .unwrap_or_else(|| "default".into());
        let log_file = std::fs::File::create(root.join("run.log")).map_err(|e| e.to_string())?;
        let status = std::process::Command::new(env!("CARGO_BIN_EXE_scx-harness"))
            .args(["run", "--suite", &suite, "--kernel"])
            .arg(entry.bzimage())
            .arg("--out")
            .arg(root.join("run"))
            .stdout(log_file.try_clone().map_err(|e| e.to_string())?)
            .stderr(log_file)
            .status()
            .map_err(|e| format!("running scx-harness run: {e}"))?;
        eprintln!("the suite on {}: {status}", entry.meta.key);
        Ok(())
    })?;
    let (out, log) = (root.join("run"), root.join("run.log"));
    let results = scx_harness::report::load_run(&out).map_err(|e| {
        format!(
            "the shared run wrote no results ({e:#}); its output: {}",
            log.display()
        )
    })?;
    let r = results
        .iter()
        .find(|r| r.scheduler == cell.scheduler && r.scenario == cell.scenario)
        .ok_or_else(|| {
            format!(
                "the shared run has no cell {}/{}; its output: {}",
                cell.scheduler,
                cell.scenario,
                log.display()
            )
        })?;
    match r.verdict {
        CellVerdict::Pass => Ok(()),
        _ => Err(format!(
            "{}
cell directory: {}",
            scx_harness::report::describe(r),
            r.dir.display()
        )
        .into()),
    }
}

/// Copies a cell's directory to `dest` and points its result there.
fn keep_result(r: &scx_harness::report::CellResult, dest: &std::path::Path) -> Result<(), Failed> {
    std::fs::create_dir_all(dest).map_err(|e| format!("creating {}: {e}", dest.display()))?;
    let status = std::process::Command::new("cp")
        .arg("-a")
        .arg(format!("{}/.", r.dir.display()))
        .arg(dest)
        .status()
        .map_err(|e| format!("cp: {e}"))?;
    if !status.success() {
        return Err(format!("copying {} to {} failed", r.dir.display(), dest.display()).into());
    }
    let mut moved = r.clone();
    moved.dir = dest.to_path_buf();
    moved.console_log = dest.join("console.log");
    let json = serde_json::to_vec_pretty(&moved).map_err(|e| e.to_string())?;
    scx_harness::kernel::cache::write_atomic(&dest.join("result.json"), &json)
        .map_err(|e| format!("{e:#}").into())
}

fn main() -> ExitCode {
    let args = Arguments::from_args();
    match trials() {
        Ok(trials) => libtest_mimic::run(&args, trials).exit_code(),
        Err(e) => {
            eprintln!("matrix: {e:#}");
            ExitCode::from(2)
        }
    }
}
