//! `scx-harness history`: record run directories in the results database,
//! show a metric of a cell over time, and check a run against history
//! (the nightly job's verdict).

use std::path::{Path, PathBuf};

use anyhow::Result;

use crate::error::{fail, Failure};
use crate::history::{self, Db};
use crate::report::CellResult;

#[derive(Debug, Clone, clap::Args)]
pub struct DbOpt {
    /// The results database (default: $SCX_HARNESS_DB, else
    /// ~/.local/share/scx-harness/history.sqlite).
    #[arg(long, value_name = "FILE")]
    pub db: Option<PathBuf>,
}

impl DbOpt {
    pub fn path(&self) -> PathBuf {
        self.db.clone().unwrap_or_else(history::default_path)
    }
}

#[derive(Debug, clap::Subcommand)]
pub enum HistoryCommand {
    /// Record run directories (from `run` or `compare`) in the database.
    Record {
        #[command(flatten)]
        db: DbOpt,
        #[arg(required = true)]
        run_dirs: Vec<PathBuf>,
    },
    /// A metric of one cell over time (without --metric: the metrics there are).
    Show {
        #[command(flatten)]
        db: DbOpt,
        scheduler: String,
        scenario: String,
        /// e.g. run_delay.interactive.p99, throughput.pairs, stall_max.
        #[arg(long)]
        metric: Option<String>,
        /// At most this many points, the newest.
        #[arg(long, default_value_t = 30)]
        last: usize,
    },
    /// Judge each cell of a recorded run against its recent history; exit 1
    /// naming the cells that regressed or failed.
    Check {
        #[command(flatten)]
        db: DbOpt,
        run_dir: PathBuf,
        /// How many earlier runs of a cell form its history.
        #[arg(long, default_value_t = 20)]
        window: usize,
        #[arg(long, default_value_t = 0.01)]
        alpha: f64,
        #[arg(long, default_value_t = 0.10)]
        noise: f64,
    },
}

/// Records a run in the database. On failure the error says that the
/// results are safe in the run directory and how to record them later.
pub fn record_or_explain(db: &Path, run_dir: &Path, results: &[CellResult]) -> Result<i64> {
    Db::open(db)
        .and_then(|mut d| d.record(run_dir, results))
        .map_err(|e| {
            let class = crate::error::classify(&e).unwrap_or(Failure::Infrastructure);
            fail(
                class,
                format!(
                    "{e:#}\n  the results are not lost: they are in {}\n  fix: record them later with `scx-harness history record {} --db {}`",
                    run_dir.display(),
                    run_dir.display(),
                    db.display()
                ),
            )
        })
}

pub fn run(cmd: HistoryCommand) -> Result<i32> {
    match cmd {
        HistoryCommand::Record { db, run_dirs } => {
            for d in &run_dirs {
                let results = crate::report::load_run(d)?;
                let dir = std::fs::canonicalize(d)?;
                let id = record_or_explain(&db.path(), &dir, &results)?;
                println!(
                    "recorded {} ({} cells) as run {id} in {}",
                    dir.display(),
                    results.len(),
                    db.path().display()
                );
            }
            Ok(0)
        }
        HistoryCommand::Show {
            db,
            scheduler,
            scenario,
            metric,
            last,
        } => {
            let d = Db::open(&db.path())?;
            let names = d.metric_names(&scheduler, &scenario)?;
            if names.is_empty() {
                return Err(fail(
                    Failure::BadInput,
                    format!(
                        "no recorded runs of {scheduler} / {scenario} in {}\n  fix: record runs with `scx-harness run --record` or `scx-harness history record RUN_DIR`",
                        db.path().display()
                    ),
                ));
            }
            let Some(metric) = metric else {
                println!("metrics recorded for {scheduler} / {scenario}:");
                for n in names {
                    println!("  {n}");
                }
                return Ok(0);
            };
            if !names.contains(&metric) {
                return Err(fail(
                    Failure::BadInput,
                    format!(
                        "no metric `{metric}` for {scheduler} / {scenario}\n  fix: one of: {}",
                        names.join(", ")
                    ),
                ));
            }
            let pts = d.series(&scheduler, &scenario, &metric, last)?;
            // The newest point's declared unit, for the median too.
            let unit = pts.last().map_or("", |p| p.unit.as_str());
            let show = |v| crate::metric::show(&metric, unit, v);
            println!(
                "{scheduler} / {scenario}: {metric}, {} point(s), oldest first",
                pts.len()
            );
            println!(
                "  {:<20} {:>10}  {:<8} {:<36} {:<6} scenario",
                "started (UTC)", "value", "verdict", "kernel", "accel"
            );
            for p in &pts {
                let kernel = if p.kernel_name.is_empty() {
                    format!("{} {}", p.kernel, p.kernel_id)
                } else {
                    format!("{} {} {}", p.kernel_name, p.kernel, p.kernel_id)
                };
                println!(
                    "  {:<20} {:>10}  {:<8} {:<36} {:<6} {}",
                    super::utc(p.started_at),
                    crate::metric::show(&metric, &p.unit, p.value),
                    p.verdict,
                    kernel,
                    p.accel,
                    &p.scenario_hash[..p.scenario_hash.len().min(12)]
                );
            }
            let values: Vec<f64> = pts.iter().map(|p| p.value).collect();
            println!("  median {}", show(crate::stats::median(&values)));
            Ok(0)
        }
        HistoryCommand::Check {
            db,
            run_dir,
            window,
            alpha,
            noise,
        } => {
            let results = crate::report::load_run(&run_dir)?;
            let dir = std::fs::canonicalize(&run_dir)?;
            let d = Db::open(&db.path())?;
            let checks = history::check_run(&d, &dir, &results, window, alpha, noise)?;
            print!("{}", history::check_table(&checks));
            let bad = checks.iter().filter(|c| c.bad()).count();
            if bad > 0 {
                return Err(fail(
                    Failure::UnderTest,
                    format!(
                        "{bad} cell(s) regressed or failed against their history; evidence above"
                    ),
                ));
            }
            Ok(0)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A corrupt database: the error names it, says the results are safe
    /// in the run directory, and gives the command that records them later.
    #[test]
    fn a_corrupt_database_loses_nothing_and_says_how_to_record_later() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("h.sqlite");
        std::fs::write(&db, vec![0xffu8; 8192]).unwrap();
        let run = dir.path().join("run");
        let e = record_or_explain(&db, &run, &[]).unwrap_err();
        let msg = format!("{e:#}");
        assert!(msg.contains(&db.display().to_string()), "{msg}");
        assert!(
            msg.contains(&format!(
                "the results are not lost: they are in {}",
                run.display()
            )),
            "{msg}"
        );
        assert!(msg.contains("scx-harness history record"), "{msg}");
    }
}
