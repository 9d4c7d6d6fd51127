//! The HTML report in a real browser: Debian's Chromium, headless, renders
//! a page built from results, and the page's own script counts the plots
//! it laid out. Also `scx-harness report` on a run directory, in every
//! format, and on bad input.

mod common;

use std::path::Path;
use std::process::Command;

use scx_harness::agent::{AgentOutput, GroupResult, Pass};
use scx_harness::checks::Outcome;
use scx_harness::probe::hist::Histogram;
use scx_harness::probe::GroupData;
use scx_harness::report::{CellResult, CellVerdict, SCHEMA};

const MS: u64 = 1_000_000;

fn group(name: &str, spread_ms: u64, cpu: u64) -> GroupResult {
    let mut h = Histogram::default();
    for i in 1..=500u64 {
        h.record(i * spread_ms * MS / 50);
    }
    GroupResult {
        name: name.into(),
        probe: GroupData {
            run_delay: h,
            nr_waits: 500,
            wait_ns: 0,
            max_wait_ns: 10 * spread_ms * MS,
            max_runnable_ns: 10 * spread_ms * MS,
            run_ns: cpu,
            run_ns_window: cpu,
            nr_tasks: 2,
            ..Default::default()
        },
        outcome: None,
        exit_status: Some(0),
        on_sched_ext: None,
    }
}

fn result(scheduler: &str, scenario: &str, verdict: CellVerdict) -> CellResult {
    let timeline: Vec<(u64, Vec<u64>)> = (0..20u64)
        .map(|i| (i * 250 * MS, vec![i * 200 * MS, i * 300 * MS]))
        .collect();
    let pass = Pass {
        kind: scx_harness::agent::PassKind::Scheduler,
        t0_ns: 0,
        window_start_ns: 1_000 * MS,
        window_end_ns: 6_000 * MS,
        ended_at_ns: 6_000 * MS,
        groups: vec![
            group("<batch>", 2, 4_000 * MS),
            group("interactive", 1, 1_000 * MS),
        ],
        stall: None,
        still_waiting: vec![],
        other_worst: None,
        probe_events: 1,
        probe_dropped: 0,
        swaps: vec![],
        operations: vec![],
        timeline,
        errors: vec![],
        replayed: None,
    };
    CellResult {
        schema: SCHEMA.into(),
        scenario: scenario.into(),
        scenario_hash: "abc".into(),
        scenario_path: "s.yaml".into(),
        scheduler: scheduler.into(),
        scheduler_version: "1".into(),
        scheduler_args: vec![],
        kernel: "6.12.117".into(),
        kernel_id: "k".into(),
        kernel_name: "lts".into(),
        accel: "tcg".into(),
        cpus: 2,
        memory: "2G".into(),
        host: "h".into(),
        started_at: 0,
        elapsed_s: 1.0,
        session_end: Some(scx_harness::vm::Outcome::Exited { code: 0 }),
        target: scx_harness::report::Target::Vm,
        verdict,
        summary: "run_delay interactive p99: observed 40ms against <= 20ms (FAIL)".into(),
        checks: vec![Outcome {
            unclaimed: None,
            check: None,
            name: "run_delay interactive p99".into(),
            pass: verdict == CellVerdict::Pass,
            observed: "40ms".into(),
            bound: "<= 20ms".into(),
            observed_value: Some(40.0e6),
            bound_value: 20.0e6,
            detail: String::new(),
        }],
        agent: Some(AgentOutput {
            passes: vec![pass],
            scheduler: None,
            swapped_out: vec![],
            error: None,
        }),
        console_log: "console.log".into(),
        dir: "cell".into(),
    }
}

fn chromium(page: &Path, args: &[&str]) -> std::process::Output {
    let profile = tempfile::tempdir().unwrap();
    Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(args)
        .arg(format!("file://{}", page.display()))
        .output()
        .expect("chromium (installed by cargo ci setup)")
}

#[test]
fn the_html_report_renders_its_plots_in_chromium() {
    let dir = tempfile::tempdir().unwrap();
    let results = vec![
        result("scx_vtime", "interactive-vs-batch", CellVerdict::Pass),
        result("scx_fifo", "interactive-vs-batch", CellVerdict::Fail),
    ];
    let page = dir.path().join("report.html");
    std::fs::write(&page, scx_harness::html::page(&results, None)).unwrap();
    let out = chromium(&page, &["--dump-dom"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dom = String::from_utf8_lossy(&out.stdout);
    // Two cells with two plots each; the page's script counted the ones the
    // browser laid out with a drawn line.
    assert!(dom.contains("data-plots-expected=\"4\""), "{dom}");
    assert!(
        dom.contains("data-plots-rendered=\"4\""),
        "plots did not render"
    );
    assert!(dom.contains("id=\"matrix\""));
    assert!(
        dom.contains("&lt;batch&gt;"),
        "a group name was not escaped"
    );
    assert!(!dom.contains("<batch>"));
    // And a picture of it is not blank.
    let png = dir.path().join("page.png");
    let shot = chromium(
        &page,
        &[
            "--window-size=1000,1400",
            &format!("--screenshot={}", png.display()),
        ],
    );
    assert!(shot.status.success());
    assert!(
        std::fs::metadata(&png).unwrap().len() > 20_000,
        "the screenshot is nearly empty"
    );
}

/// A run over two kernels gets a row per kernel and scheduler, each cell
/// with its own anchor; a pass whose unclaimed property did not hold is
/// marked `pass*` with what did not hold.
#[test]
fn the_matrix_has_a_row_per_kernel_and_marks_unheld_unclaimed_bounds() {
    let lts = result("scx_fifo", "nice-pinned", CellVerdict::Pass);
    let mut stable = lts.clone();
    stable.kernel_name = "stable".into();
    stable.kernel = "7.3.4".into();
    stable.checks[0].pass = false;
    stable.checks[0].unclaimed = Some(scx_harness::scenario::Property::NiceWeights);
    let cells = [lts, stable];
    let page = scx_harness::html::page(&cells, None);
    // JUnit and Markdown name each cell with its kernel too.
    let junit = scx_harness::report::junit(&cells);
    assert!(
        junit.contains("classname=\"lts/scx_fifo\"")
            && junit.contains("classname=\"stable/scx_fifo\""),
        "{junit}"
    );
    let md = scx_harness::report::markdown(&cells);
    assert!(
        md.starts_with("| kernel | scheduler |") && md.contains("| stable | scx_fifo |"),
        "{md}"
    );
    let matrix = &page[page.find("id=\"matrix\"").unwrap()..page.find("</table>").unwrap()];
    assert!(matrix.contains("<th>kernel</th>"), "{matrix}");
    assert!(matrix.contains("<th>lts</th><th>scx_fifo</th>"), "{matrix}");
    assert!(
        matrix.contains("<th>stable</th><th>scx_fifo</th>"),
        "{matrix}"
    );
    assert!(
        matrix.contains("href=\"#cell-stable-scx-fifo-nice-pinned\">pass*</a>"),
        "{matrix}"
    );
    assert!(
        matrix.contains("title=\"nice_weights not claimed; does not hold\""),
        "{matrix}"
    );
    assert!(page.contains("id=\"cell-lts-scx-fifo-nice-pinned\""));
    assert!(
        page.contains("kernel lts 6.12.117 (k); stable 7.3.4 (k)"),
        "{page}"
    );
}

#[test]
fn report_writes_every_format_from_a_run_directory() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    std::fs::create_dir_all(run.join("scx_fifo/interactive-vs-batch")).unwrap();
    let r = result("scx_fifo", "interactive-vs-batch", CellVerdict::Fail);
    // No results.json: the cells' own result.json files are found.
    std::fs::write(
        run.join("scx_fifo/interactive-vs-batch/result.json"),
        serde_json::to_vec(&r).unwrap(),
    )
    .unwrap();
    let bin = env!("CARGO_BIN_EXE_scx-harness");
    let (code, out, err) = common::run(Command::new(bin).arg("report").arg(&run));
    assert_eq!(code, Some(0), "{err}");
    assert!(out.trim().ends_with("report.html"));
    assert!(std::fs::read_to_string(run.join("report.html"))
        .unwrap()
        .contains("scx_fifo"));
    let (_, junit, _) = common::run(
        Command::new(bin)
            .args(["report", "--format", "junit"])
            .arg(&run),
    );
    assert!(
        junit.contains("<failure message=\"checks failed\">") && junit.contains("failures=\"1\""),
        "{junit}"
    );
    let (_, md, _) = common::run(
        Command::new(bin)
            .args(["report", "--format", "markdown"])
            .arg(&run),
    );
    assert!(
        md.contains("| scx_fifo | interactive-vs-batch | FAIL |"),
        "{md}"
    );
    let (_, json, _) = common::run(
        Command::new(bin)
            .args(["report", "--format", "json"])
            .arg(&run),
    );
    let back: Vec<CellResult> = serde_json::from_str(&json).unwrap();
    assert_eq!(back, vec![r]);
    // A directory without results is one clear error.
    let (code, _, err) = common::run(
        Command::new(bin)
            .arg("report")
            .arg(dir.path().join("empty-nothing")),
    );
    assert_eq!(code, Some(65), "{err}");
}
