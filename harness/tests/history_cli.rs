//! `scx-harness history` from the command line: record run directories,
//! show a metric over time, and the nightly check that names the cells
//! that regressed with the evidence. No VM: the run directories hold
//! result documents of the current version.

mod common;

use std::path::Path;

use common::run;
use scx_harness::report::{CellResult, CellVerdict};

fn write_run(dir: &Path, results: &[CellResult]) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(
        dir.join("results.json"),
        serde_json::to_vec(results).unwrap(),
    )
    .unwrap();
}

/// `runs` samples of cell x / s, run delays at `delay_ms` + 0, 1, 2 ms.
fn night(delay_ms: u64, n: u64, runs: u64) -> Vec<CellResult> {
    (0..runs)
        .map(|i| {
            let mut r =
                scx_harness::compare::sample_result(delay_ms + (n + i) % 3, CellVerdict::Pass);
            r.started_at = n * 100 + i;
            r
        })
        .collect()
}

#[test]
fn history_records_shows_and_names_the_cells_that_regressed() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("h.sqlite");
    let h = || {
        let mut c = common::harness(dir.path());
        c.env("SCX_HARNESS_DB", &db);
        c
    };
    for n in 0..6 {
        let d = dir.path().join(format!("night{n}"));
        write_run(&d, &night(4, n, 3));
        let (code, out, err) = run(h().args(["history", "record"]).arg(&d));
        assert_eq!(code, Some(0), "{out}{err}");
    }
    let (code, out, err) =
        run(h().args(["history", "show", "x", "s", "--metric", "run_delay.g.p99"]));
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("18 point(s)"), "{out}");

    // An unchanged night passes; a night twice as slow is named, with the
    // numbers and where the evidence is.
    let same = dir.path().join("same");
    write_run(&same, &night(4, 7, 5));
    run(h().args(["history", "record"]).arg(&same));
    let (code, out, err) = run(h().args(["history", "check"]).arg(&same));
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("1 judged against history"), "{out}");
    let slow = dir.path().join("slow");
    write_run(&slow, &night(10, 8, 5));
    run(h().args(["history", "record"]).arg(&slow));
    let (code, out, err) = run(h().args(["history", "check"]).arg(&slow));
    assert_eq!(code, Some(1), "{out}{err}");
    assert!(
        out.contains("REGRESSED x / s") && out.contains("run_delay.g.p99"),
        "{out}"
    );
    assert!(out.contains("evidence: d"), "{out}");
    assert!(err.contains("regressed"), "{err}");
}

#[test]
fn show_without_runs_or_with_an_unknown_metric_says_what_exists() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("h.sqlite");
    let (code, _, err) = run(common::harness(dir.path())
        .env("SCX_HARNESS_DB", &db)
        .args(["history", "show", "x", "s"]));
    assert_eq!(code, Some(65), "{err}");
    assert!(err.contains("no recorded runs of x / s"), "{err}");
    let d = dir.path().join("run");
    write_run(&d, &night(4, 0, 3));
    run(common::harness(dir.path())
        .env("SCX_HARNESS_DB", &db)
        .args(["history", "record"])
        .arg(&d));
    let (code, _, err) = run(common::harness(dir.path())
        .env("SCX_HARNESS_DB", &db)
        .args(["history", "show", "x", "s", "--metric", "nope"]));
    assert_eq!(code, Some(65), "{err}");
    assert!(
        err.contains("no metric `nope`") && err.contains("run_delay.g.p99"),
        "{err}"
    );
}

/// An application metric is shown in its declared unit, each point and
/// the median.
#[test]
fn show_gives_an_application_metric_in_its_declared_unit() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("h.sqlite");
    let h = || {
        let mut c = common::harness(dir.path());
        c.env("SCX_HARNESS_DB", &db);
        c
    };
    let d = dir.path().join("run");
    let mut rs = night(4, 0, 3);
    for (i, r) in rs.iter_mut().enumerate() {
        scx_harness::compare::with_sample_app_metric(r, "rps", 800.0 + i as f64, "req/s");
    }
    write_run(&d, &rs);
    let (code, out, err) = run(h().args(["history", "record"]).arg(&d));
    assert_eq!(code, Some(0), "{out}{err}");
    let (code, out, err) = run(h().args(["history", "show", "x", "s", "--metric", "app.g.rps"]));
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("3 point(s)"), "{out}");
    assert!(out.contains("802.0 req/s"), "{out}");
    assert!(out.contains("median 801.0 req/s"), "{out}");
}
