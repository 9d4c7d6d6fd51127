//! The results database: every recorded cell with its identity (kernel,
//! scheduler and version, scenario hash, host, accelerator) and metrics,
//! in one SQLite file with versioned migrations; a metric's series over
//! time; and the nightly check of a run's cells against their history.
//!
//! Knows `report::CellResult` and `compare` (metrics, statistics); knows
//! nothing of VMs. A database written by a newer version is refused.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use rusqlite::{params, Connection, OptionalExtension};
use serde::{Deserialize, Serialize};

use crate::compare;
use crate::error::{fail, Failure};
use crate::report::{CellResult, CellVerdict};
use crate::stats::{self, Comparison, Verdict};

/// The migrations, in order: the database's `user_version` is how many
/// have run. Append only; never edit one that has shipped.
const MIGRATIONS: &[&str] = &[
    // 1: runs, cells, metrics.
    "CREATE TABLE runs (
        id INTEGER PRIMARY KEY,
        run_dir TEXT NOT NULL,
        recorded_at INTEGER NOT NULL,
        harness_version TEXT NOT NULL
    );
    CREATE TABLE cells (
        id INTEGER PRIMARY KEY,
        run_id INTEGER NOT NULL REFERENCES runs(id),
        started_at INTEGER NOT NULL,
        host TEXT NOT NULL,
        accel TEXT NOT NULL,
        cpus INTEGER NOT NULL,
        kernel TEXT NOT NULL,
        kernel_id TEXT NOT NULL,
        scheduler TEXT NOT NULL,
        scheduler_version TEXT NOT NULL,
        scheduler_args TEXT NOT NULL,
        scenario TEXT NOT NULL,
        scenario_hash TEXT NOT NULL,
        verdict TEXT NOT NULL,
        summary TEXT NOT NULL,
        dir TEXT NOT NULL
    );
    CREATE INDEX cells_by_identity ON cells (scheduler, scenario, scenario_hash, accel, cpus, started_at);
    CREATE TABLE metrics (
        cell_id INTEGER NOT NULL REFERENCES cells(id),
        name TEXT NOT NULL,
        value REAL NOT NULL,
        PRIMARY KEY (cell_id, name)
    );",
    // 2: the kernel's name in kernel-config/kernels.yaml ('' for a kernel
    // without one, and for cells recorded before).
    "ALTER TABLE cells ADD COLUMN kernel_name TEXT NOT NULL DEFAULT '';",
    // 3: an application metric's declared unit ("s", "req/s", ...; '' for
    // the harness's own metrics, whose name says their unit, and for
    // metrics recorded before).
    "ALTER TABLE metrics ADD COLUMN unit TEXT NOT NULL DEFAULT '';",
];

/// Where the database lives unless `--db` or `SCX_HARNESS_DB` says.
pub fn default_path() -> PathBuf {
    if let Some(p) = std::env::var_os("SCX_HARNESS_DB") {
        return PathBuf::from(p);
    }
    crate::paths::data_dir().join("history.sqlite")
}

pub struct Db {
    conn: Connection,
    path: PathBuf,
}

impl Db {
    /// Opens (creating) the database and brings its schema up to date. A
    /// database from a newer harness is refused; one held by another
    /// writer is waited for up to 10 s.
    pub fn open(path: &Path) -> Result<Db> {
        Db::open_with(path, Duration::from_secs(10))
    }

    /// As `open`, waiting at most `busy` for another writer.
    pub fn open_with(path: &Path, busy: Duration) -> Result<Db> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).with_context(|| {
                format!(
                    "creating the directory of the results database {}",
                    path.display()
                )
            })?;
        }
        let conn = Connection::open(path)
            .with_context(|| format!("opening the results database {}", path.display()))?;
        conn.busy_timeout(busy)?;
        let mut db = Db {
            conn,
            path: path.to_path_buf(),
        };
        db.migrate()?;
        Ok(db)
    }

    fn explain(&self, what: &str, e: rusqlite::Error) -> anyhow::Error {
        anyhow::anyhow!(
            "{what} in the results database {}: {e}",
            self.path.display()
        )
    }

    fn migrate(&mut self) -> Result<()> {
        let version: i64 = self
            .conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(|e| self.explain("reading the schema version (is it an SQLite file?)", e))?;
        let known = MIGRATIONS.len() as i64;
        if version > known {
            return Err(fail(
                Failure::BadInput,
                format!(
                    "the results database {} has schema version {version}, written by a newer scx-harness; this one knows up to {known}\n  fix: use a newer scx-harness, or pass another --db",
                    self.path.display()
                ),
            ));
        }
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
            let tx = self.conn.transaction()?;
            tx.execute_batch(sql)
                .and_then(|_| tx.pragma_update(None, "user_version", i as i64 + 1))
                .and_then(|_| tx.commit())
                .map_err(|e| {
                    anyhow::anyhow!(
                        "migrating the results database {} to schema {}: {e}",
                        self.path.display(),
                        i + 1
                    )
                })?;
        }
        Ok(())
    }

    /// The schema version (the number of migrations applied).
    pub fn version(&self) -> Result<i64> {
        Ok(self
            .conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))?)
    }

    /// Records a run directory's cells and their metrics in one
    /// transaction; returns the run's id. A run directory already recorded
    /// is not recorded twice (its id is returned).
    pub fn record(&mut self, run_dir: &Path, results: &[CellResult]) -> Result<i64> {
        let dir = run_dir.display().to_string();
        if let Some(id) = self
            .conn
            .query_row("SELECT id FROM runs WHERE run_dir = ?1", [&dir], |r| {
                r.get(0)
            })
            .optional()
            .map_err(|e| self.explain("looking up the run", e))?
        {
            return Ok(id);
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let path = self.path.clone();
        let tx = self.conn.transaction()?;
        let run_id = (|| -> rusqlite::Result<i64> {
            tx.execute(
                "INSERT INTO runs (run_dir, recorded_at, harness_version) VALUES (?1, ?2, ?3)",
                params![dir, now as i64, env!("CARGO_PKG_VERSION")],
            )?;
            let run_id = tx.last_insert_rowid();
            for r in results {
                tx.execute(
                    "INSERT INTO cells (run_id, started_at, host, accel, cpus, kernel, kernel_id, scheduler,
                        scheduler_version, scheduler_args, scenario, scenario_hash, verdict, summary, dir,
                        kernel_name)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)",
                    params![
                        run_id,
                        r.started_at as i64,
                        r.host,
                        r.accel,
                        r.cpus,
                        r.kernel,
                        r.kernel_id,
                        r.scheduler,
                        r.scheduler_version,
                        r.scheduler_args.join(" "),
                        r.scenario,
                        r.scenario_hash,
                        r.verdict.label(),
                        r.summary,
                        r.dir.display().to_string(),
                        r.kernel_name,
                    ],
                )?;
                let cell_id = tx.last_insert_rowid();
                let declared = compare::declared(std::iter::once(r));
                for (name, value) in compare::metrics(r) {
                    tx.execute(
                        "INSERT INTO metrics (cell_id, name, value, unit) VALUES (?1, ?2, ?3, ?4)",
                        params![cell_id, name, value, declared.unit(&name)],
                    )?;
                }
            }
            Ok(run_id)
        })()
        .map_err(|e| anyhow::anyhow!("recording {dir} in the results database {}: {e}", path.display()))?;
        tx.commit().map_err(|e| {
            anyhow::anyhow!(
                "committing {dir} to the results database {}: {e}",
                path.display()
            )
        })?;
        Ok(run_id)
    }

    /// A metric of a cell over time, oldest first, at most `last` points.
    pub fn series(
        &self,
        scheduler: &str,
        scenario: &str,
        metric: &str,
        last: usize,
    ) -> Result<Vec<Point>> {
        let mut st = self.conn.prepare(
            "SELECT c.started_at, m.value, c.kernel_id, c.accel, c.scheduler_version, c.scenario_hash, c.verdict, c.dir,
                    c.kernel_name, c.kernel, m.unit
             FROM cells c JOIN metrics m ON m.cell_id = c.id
             WHERE c.scheduler = ?1 AND c.scenario = ?2 AND m.name = ?3
             ORDER BY c.started_at DESC, c.id DESC LIMIT ?4",
        )?;
        let mut v: Vec<Point> = st
            .query_map(params![scheduler, scenario, metric, last as i64], |r| {
                Ok(Point {
                    started_at: r.get::<_, i64>(0)? as u64,
                    value: r.get(1)?,
                    kernel_id: r.get(2)?,
                    accel: r.get(3)?,
                    scheduler_version: r.get(4)?,
                    scenario_hash: r.get(5)?,
                    verdict: r.get(6)?,
                    dir: r.get(7)?,
                    kernel_name: r.get(8)?,
                    kernel: r.get(9)?,
                    unit: r.get(10)?,
                })
            })?
            .collect::<rusqlite::Result<_>>()?;
        v.reverse();
        Ok(v)
    }

    /// The metric names recorded for a cell.
    pub fn metric_names(&self, scheduler: &str, scenario: &str) -> Result<Vec<String>> {
        let mut st = self.conn.prepare(
            "SELECT DISTINCT m.name FROM cells c JOIN metrics m ON m.cell_id = c.id
             WHERE c.scheduler = ?1 AND c.scenario = ?2 ORDER BY m.name",
        )?;
        let v = st
            .query_map(params![scheduler, scenario], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        Ok(v)
    }

    /// The metrics of the last `last` measured runs of the same cell (same
    /// scheduler, arguments, scenario content, kernel, accelerator and VM
    /// size), recorded before `run_dir`, newest first.
    pub fn history_of(
        &self,
        r: &CellResult,
        run_dir: &Path,
        last: usize,
    ) -> Result<Vec<BTreeMap<String, f64>>> {
        let mut st = self.conn.prepare(
            "SELECT c.id FROM cells c JOIN runs ru ON ru.id = c.run_id
             WHERE c.scheduler = ?1 AND c.scheduler_args = ?2 AND c.scenario_hash = ?3
               AND c.kernel_id = ?4 AND c.accel = ?5 AND c.cpus = ?6
               AND c.verdict IN ('pass', 'FAIL') AND ru.run_dir != ?7
             ORDER BY c.started_at DESC, c.id DESC LIMIT ?8",
        )?;
        let ids: Vec<i64> = st
            .query_map(
                params![
                    r.scheduler,
                    r.scheduler_args.join(" "),
                    r.scenario_hash,
                    r.kernel_id,
                    r.accel,
                    r.cpus,
                    run_dir.display().to_string(),
                    last as i64
                ],
                |row| row.get(0),
            )?
            .collect::<rusqlite::Result<_>>()?;
        let mut m = self
            .conn
            .prepare("SELECT name, value FROM metrics WHERE cell_id = ?1")?;
        ids.iter()
            .map(|id| {
                m.query_map([id], |row| {
                    Ok((row.get::<_, String>(0)?, row.get::<_, f64>(1)?))
                })?
                .collect::<rusqlite::Result<BTreeMap<_, _>>>()
                .map_err(anyhow::Error::from)
            })
            .collect()
    }
}

/// One point of a series.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Point {
    pub started_at: u64,
    pub value: f64,
    pub kernel_id: String,
    /// The kernel's catalog name ('' for none) and `uname -r`.
    pub kernel_name: String,
    pub kernel: String,
    pub accel: String,
    pub scheduler_version: String,
    pub scenario_hash: String,
    pub verdict: String,
    pub dir: String,
    /// An application metric's declared unit ('' for the harness's own
    /// metrics and for points recorded before schema 3).
    pub unit: String,
}

/// What the nightly check found for one cell.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CellCheck {
    /// The kernel's catalog name (empty for a kernel without one): a run
    /// over several kernels is checked per kernel.
    #[serde(default)]
    pub kernel_name: String,
    pub scheduler: String,
    pub scenario: String,
    /// This run's samples of the cell, and the history's.
    pub runs: usize,
    pub history: usize,
    /// Why the cell failed outright in this run, if it did.
    pub failed: Option<String>,
    /// Key metrics that got worse, with the evidence.
    pub regressed: Vec<(String, Comparison)>,
    /// The declared units of the application metrics among them.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub units: BTreeMap<String, String>,
    /// When this run's samples could not call any key metric worse
    /// however far they moved ([`stats::blind_note`]): the cell was not
    /// judged, and this says why and what would do.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blind: Option<String>,
    pub dirs: Vec<PathBuf>,
}

impl CellCheck {
    pub fn bad(&self) -> bool {
        self.failed.is_some() || !self.regressed.is_empty()
    }
}

/// The least history a cell needs before it is judged against it.
pub const MIN_HISTORY: usize = 5;

/// Checks each cell of a run against its last `window` recorded runs: a
/// cell regressed when it failed outright, or when a key metric is worse
/// (Mann-Whitney and the bootstrap interval beyond the noise threshold).
/// Cells with less than `MIN_HISTORY` runs of history are not judged.
pub fn check_run(
    db: &Db,
    run_dir: &Path,
    results: &[CellResult],
    window: usize,
    alpha: f64,
    noise: f64,
) -> Result<Vec<CellCheck>> {
    // The run's samples, grouped by cell and kernel (a run may repeat
    // cells, and run them on several kernels: each kernel's samples are
    // judged against that kernel's history alone).
    let mut cells: BTreeMap<(String, String, String, String), Vec<&CellResult>> = BTreeMap::new();
    for r in results {
        cells
            .entry((
                r.kernel_name.clone(),
                r.kernel_id.clone(),
                r.scheduler.clone(),
                r.scenario.clone(),
            ))
            .or_default()
            .push(r);
    }
    let mut out = Vec::new();
    for ((kernel_name, _, scheduler, scenario), runs) in cells {
        let failed = runs.iter().find_map(|r| {
            compare::failure(r)
                .or_else(|| (r.verdict == CellVerdict::Fail).then(|| r.summary.clone()))
        });
        let history = db.history_of(runs[0], run_dir, window)?;
        let mut regressed = Vec::new();
        let declared = compare::declared(runs.iter().copied());
        let mut units = BTreeMap::new();
        let mut blind = None;
        if failed.is_none() && history.len() >= MIN_HISTORY {
            let now: Vec<_> = runs.iter().map(|r| compare::metrics(r)).collect();
            // The key metrics, tested as one family (Holm): a nightly run
            // with many groups is not called regressed by one lucky metric.
            let mut samples = Vec::new();
            for name in now[0].keys() {
                let (better, key, _) = declared.kind(name);
                if !key {
                    continue;
                }
                let a: Vec<f64> = history
                    .iter()
                    .filter_map(|m| m.get(name).copied())
                    .collect();
                let b: Vec<f64> = now.iter().filter_map(|m| m.get(name).copied()).collect();
                samples.push((name, a, b, better));
            }
            let sides: Vec<stats::Sides> = samples
                .iter()
                .map(|(_, a, b, better)| stats::Sides {
                    a,
                    b,
                    better: *better,
                    seed: 1,
                })
                .collect();
            let m = sides.len();
            let p = stats::family_floor(sides.iter().map(|s| (s.a, s.b)));
            if m > 0 && p * m as f64 >= alpha {
                blind = Some(stats::blind_note(
                    (history.len(), runs.len()),
                    p,
                    m,
                    alpha,
                    (
                        "runs of the cell (run --repeat)",
                        stats::runs_needed(m, alpha, Some(history.len())),
                    ),
                ));
            }
            let family = stats::compare_family(&sides, alpha, noise);
            for ((name, ..), c) in samples.iter().zip(family) {
                if c.verdict == Verdict::Worse {
                    let unit = declared.unit(name);
                    if !unit.is_empty() {
                        units.insert((*name).clone(), unit.to_string());
                    }
                    regressed.push(((*name).clone(), c));
                }
            }
        }
        out.push(CellCheck {
            kernel_name,
            scheduler,
            scenario,
            runs: runs.len(),
            history: history.len(),
            failed,
            regressed,
            units,
            blind,
            dirs: runs.iter().map(|r| r.dir.clone()).collect(),
        });
    }
    Ok(out)
}

/// The nightly check for people: every bad cell with its evidence, and a
/// count of the rest.
pub fn check_table(checks: &[CellCheck]) -> String {
    let mut t = String::new();
    for c in checks.iter().filter(|c| c.bad()) {
        let on = match c.kernel_name.as_str() {
            "" => String::new(),
            k => format!(" on {k}"),
        };
        t.push_str(&format!("REGRESSED {} / {}{on}", c.scheduler, c.scenario));
        match &c.failed {
            Some(why) => t.push_str(&format!(": failed: {}\n", why.lines().next().unwrap_or(""))),
            None => {
                t.push_str(&format!(
                    " ({} run(s) now against {} in history)\n",
                    c.runs, c.history
                ));
                for (name, s) in &c.regressed {
                    let unit = c.units.get(name).map_or("", String::as_str);
                    let show = |v| crate::metric::show(name, unit, v);
                    t.push_str(&format!(
                        "  {name}: {} now, {} before: x{:.3} (interval [{:.3}, {:.3}], p {:.4}{})\n",
                        show(s.median_b),
                        show(s.median_a),
                        s.ratio,
                        s.ci_low,
                        s.ci_high,
                        s.p_value,
                        crate::compare::holm_note(s)
                    ));
                }
            }
        }
        for d in &c.dirs {
            t.push_str(&format!("  evidence: {}\n", d.display()));
        }
    }
    for c in checks.iter().filter(|c| !c.bad()) {
        if let Some(why) = &c.blind {
            t.push_str(&format!(
                "NOT JUDGED {} / {}: {why}\n",
                c.scheduler, c.scenario
            ));
        }
    }
    let bad = checks.iter().filter(|c| c.bad()).count();
    let blind = checks
        .iter()
        .filter(|c| !c.bad() && c.blind.is_some())
        .count();
    let young = checks
        .iter()
        .filter(|c| !c.bad() && c.history < MIN_HISTORY)
        .count();
    t.push_str(&format!(
        "{} cell(s): {bad} regressed or failed, {} judged against history, {young} with too little history (< {MIN_HISTORY} runs) to judge, {blind} with too few runs to call a change\n",
        checks.len(),
        checks.len() - bad - blind - young,
    ));
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_version_1_database_keeps_its_cells_and_gains_kernel_names() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("h.sqlite");
        {
            let conn = Connection::open(&p).unwrap();
            conn.execute_batch(MIGRATIONS[0]).unwrap();
            conn.pragma_update(None, "user_version", 1).unwrap();
        }
        let mut db = Db::open(&p).unwrap();
        assert_eq!(db.version().unwrap(), MIGRATIONS.len() as i64);
        let mut r = compare::sample_result(4, CellVerdict::Pass);
        r.kernel_name = "stable".into();
        db.record(&dir.path().join("run"), &[r.clone()]).unwrap();
        let pts = db
            .series(&r.scheduler, &r.scenario, "run_delay.g.p99", 10)
            .unwrap();
        assert!(!pts.is_empty(), "no point recorded");
        assert!(pts.iter().all(|p| p.kernel_name == "stable"), "{pts:?}");
    }

    /// An application metric keeps its declared unit in the database, and
    /// a series shows it; the harness's own metrics have none.
    #[test]
    fn an_application_metric_is_recorded_with_its_unit() {
        let dir = tempfile::tempdir().unwrap();
        let mut db = Db::open(&dir.path().join("h.sqlite")).unwrap();
        let mut r = compare::sample_result(4, CellVerdict::Pass);
        compare::with_sample_app_metric(&mut r, "rps", 812.5, "req/s");
        db.record(&dir.path().join("run"), &[r]).unwrap();
        let pts = db.series("x", "s", "app.g.rps", 10).unwrap();
        assert_eq!(pts.len(), 1, "{pts:?}");
        assert_eq!((pts[0].value, pts[0].unit.as_str()), (812.5, "req/s"));
        let own = db.series("x", "s", "stall_max", 10).unwrap();
        assert_eq!(own[0].unit, "");
    }

    #[test]
    fn a_newer_database_is_refused_and_an_old_one_migrated() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("h.sqlite");
        let db = Db::open(&p).unwrap();
        assert_eq!(db.version().unwrap(), MIGRATIONS.len() as i64);
        db.conn.pragma_update(None, "user_version", 99).unwrap();
        drop(db);
        let e = Db::open(&p).err().expect("refused");
        let msg = format!("{e:#}");
        assert!(
            msg.contains("schema version 99") && msg.contains("newer scx-harness"),
            "{msg}"
        );
        assert_eq!(crate::error::classify(&e), Some(Failure::BadInput));
    }

    fn at(delay_ms: u64, started_at: u64) -> CellResult {
        let mut r = compare::sample_result(delay_ms, CellVerdict::Pass);
        r.started_at = started_at;
        r
    }

    /// Six nights of history, then a night whose three samples are twice as
    /// slow: that cell regressed, with the evidence; an unchanged night does
    /// not; a failing cell is named whatever its history.
    #[test]
    fn a_run_is_judged_against_its_history() {
        let dir = tempfile::tempdir().unwrap();
        let mut db = Db::open(&dir.path().join("h.sqlite")).unwrap();
        for night in 0..6u64 {
            let rs: Vec<CellResult> = (0..3)
                .map(|i| at(4 + (night + i) % 3, night * 100 + i))
                .collect();
            db.record(&dir.path().join(format!("night{night}")), &rs)
                .unwrap();
        }
        let check = |db: &mut Db, name: &str, rs: Vec<CellResult>| {
            let run = dir.path().join(name);
            db.record(&run, &rs).unwrap();
            check_run(db, &run, &rs, 20, 0.01, 0.10).unwrap()
        };
        let same = check(
            &mut db,
            "same",
            (0..5).map(|i| at(4 + i % 3, 1000 + i)).collect(),
        );
        assert_eq!(same.len(), 1);
        assert!(!same[0].bad(), "{}", check_table(&same));
        assert_eq!((same[0].history, &same[0].blind), (18, &None));

        let slow = check(
            &mut db,
            "slow",
            (0..5).map(|i| at(10 + i % 3, 2000 + i)).collect(),
        );
        assert!(slow[0].bad(), "{}", check_table(&slow));
        let names: Vec<&str> = slow[0].regressed.iter().map(|(n, _)| n.as_str()).collect();
        assert!(names.contains(&"run_delay.g.p99"), "{names:?}");
        let table = check_table(&slow);
        assert!(
            table.contains("REGRESSED x / s") && table.contains("run_delay.g.p99"),
            "{table}"
        );
        assert!(table.contains("Holm across"), "{table}");

        // Three runs twice as slow, whose values repeat (18 of three kinds
        // in history): fully apart they give p = 0.0058 at best, which the
        // cell's key metrics tested together cannot get below 0.01. The
        // cell is not judged, and says so, rather than passing.
        let short = check(
            &mut db,
            "short",
            (0..3).map(|i| at(10 + i % 3, 2500 + i)).collect(),
        );
        assert!(!short[0].bad(), "{}", check_table(&short));
        let table = check_table(&short);
        assert!(
            table.contains("NOT JUDGED x / s") && table.contains("run --repeat"),
            "{table}"
        );
        assert!(
            table.contains("1 with too few runs to call a change"),
            "{table}"
        );

        let mut failing: Vec<CellResult> = (0..3).map(|i| at(4, 3000 + i)).collect();
        failing[1].verdict = CellVerdict::Error;
        let failed = check(&mut db, "failing", failing);
        assert!(
            failed[0].failed.as_deref() == Some("it broke"),
            "{failed:?}"
        );

        // A night over two kernels is judged per kernel: the other
        // kernel's cells have no history of their own yet, and the slow
        // samples there do not count against this kernel's history.
        let mut two: Vec<CellResult> = (0..5).map(|i| at(4 + i % 3, 4000 + i)).collect();
        for i in 0..5 {
            let mut r = at(10 + i % 3, 4100 + i);
            r.kernel_name = "stable".into();
            r.kernel_id = "other".into();
            two.push(r);
        }
        let per_kernel = check(&mut db, "two-kernels", two);
        assert_eq!(per_kernel.len(), 2, "{per_kernel:?}");
        assert!(
            per_kernel.iter().all(|c| !c.bad()),
            "{}",
            check_table(&per_kernel)
        );
        let stable = per_kernel
            .iter()
            .find(|c| c.kernel_name == "stable")
            .unwrap();
        assert_eq!((stable.runs, stable.history), (5, 0));
        // This kernel's cell was judged (it could have been called worse).
        assert!(per_kernel
            .iter()
            .all(|c| c.kernel_name == "stable" || c.blind.is_none()));

        // The series shows every recorded point, oldest first.
        let pts = db.series("x", "s", "run_delay.g.p99", 100).unwrap();
        assert_eq!(pts.len(), 6 * 3 + 5 + 5 + 3 + 3 + 10);
        assert!(pts.windows(2).all(|w| w[0].started_at <= w[1].started_at));
        // Recording a run directory twice records it once.
        let n = db.series("x", "s", "stall_max", 100).unwrap().len();
        db.record(&dir.path().join("night0"), &[at(4, 5000)])
            .unwrap();
        assert_eq!(db.series("x", "s", "stall_max", 100).unwrap().len(), n);
    }

    /// A locked database: the writer gives up after its busy timeout with
    /// an error naming the database, and nothing half-written stays.
    #[test]
    fn a_locked_database_is_an_error_not_a_hang() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("h.sqlite");
        let holder = Db::open(&p).unwrap();
        holder.conn.execute_batch("BEGIN EXCLUSIVE").unwrap();
        let t = std::time::Instant::now();
        let e = Db::open_with(&p, Duration::from_millis(100))
            .and_then(|mut db| db.record(&dir.path().join("run"), &[at(4, 1)]))
            .unwrap_err();
        assert!(t.elapsed() < Duration::from_secs(5));
        assert!(format!("{e:#}").contains(&p.display().to_string()), "{e:#}");
        holder.conn.execute_batch("ROLLBACK").unwrap();
        let db = Db::open(&p).unwrap();
        assert_eq!(db.series("x", "s", "stall_max", 10).unwrap().len(), 0);
    }

    #[test]
    fn a_file_that_is_not_a_database_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("h.sqlite");
        std::fs::write(&p, vec![b'x'; 4096]).unwrap();
        let e = Db::open(&p).err().expect("refused");
        assert!(format!("{e:#}").contains(&p.display().to_string()), "{e:#}");
    }
}
