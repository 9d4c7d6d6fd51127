//! `scx-harness check` and `scx-harness schema`: scenarios validated
//! without booting anything, and their format as a JSON Schema.

use std::path::{Path, PathBuf};

use anyhow::Result;

use crate::error::{fail, Failure};
use crate::scenario;

#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// Scenario files (or names of bundled scenarios); default: every
    /// bundled scenario.
    pub files: Vec<String>,
}

/// Validates each scenario; prints one line per good one, and every bad
/// one's error; fails if any is bad.
pub fn check(args: CheckArgs) -> Result<i32> {
    let files: Vec<String> = if args.files.is_empty() {
        scenario::bundled_names()
    } else {
        args.files
    };
    let mut bad = Vec::new();
    for f in &files {
        // A matrix file sits beside the scenarios: check it as a matrix.
        if crate::matrix::is_matrix_file(Path::new(f)) {
            match check_matrix(Path::new(f)) {
                Ok(summary) => println!("ok  {f} (matrix: {summary})"),
                Err(e) => {
                    eprintln!("{e:#}");
                    bad.push(f.clone());
                }
            }
            continue;
        }
        match scenario::resolve(f) {
            Ok(l) => println!(
                "ok  {} ({}: {} groups, {} threads, {} checks, hash {})",
                l.path.display(),
                l.scenario.name,
                l.scenario.groups.len(),
                l.scenario.total_threads(),
                l.scenario.checks.len(),
                l.hash
            ),
            Err(e) => {
                eprintln!("{e:#}");
                bad.push(f.clone());
            }
        }
    }
    if bad.is_empty() {
        Ok(0)
    } else {
        Err(fail(
            Failure::BadInput,
            format!(
                "{} of {} scenario(s) are invalid: {}",
                bad.len(),
                files.len(),
                bad.join(", ")
            ),
        ))
    }
}

/// Every suite of a matrix file, against the registry and the bundled
/// scenarios.
fn check_matrix(path: &Path) -> Result<String> {
    let matrix = crate::matrix::Matrix::load(path)?;
    let registry = crate::scheduler::registry::Registry::load(
        &crate::scheduler::registry::Registry::default_path(),
    )?;
    let catalog = crate::kernel::Catalog::embedded();
    let names = scenario::bundled_names();
    let mut parts = Vec::new();
    for suite in matrix.suites.keys() {
        let kernels = matrix.kernels(suite, &catalog, &Default::default())?;
        let mut n = 0;
        for k in &kernels {
            let on = registry.for_kernel(Some(k));
            n += matrix
                .cells(suite, Some(k), &on, &names, &Default::default())?
                .len();
        }
        parts.push(format!("{suite} {n} cells on {}", kernels.join(", ")));
    }
    Ok(parts.join(", "))
}

#[derive(Debug, clap::Args)]
pub struct SchemaArgs {
    /// Write it here instead of stdout (atomically).
    #[arg(long, short)]
    pub output: Option<PathBuf>,
}

pub fn schema(args: SchemaArgs) -> Result<i32> {
    let text = scenario::json_schema();
    match args.output {
        Some(p) => crate::kernel::cache::write_atomic(&p, text.as_bytes())?,
        None => print!("{text}"),
    }
    Ok(0)
}
