//! `scx-harness sweep` end to end: the fault fixture's injected delay swept
//! over 0, 2, 5 and 10 ms (and a value it refuses) on a periodic group, in
//! one VM; and bad input refused before anything is built or booted.

mod common;

use std::process::Command;

use scx_harness::sweep::{PointKind, Report, Status};

use common::DELAYED;

#[test]
fn vm_a_delay_sweep_ranks_the_delays_races_the_worst_out_and_goes_on_past_a_refused_value() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = dir.path().join("delay-ab.yaml");
    std::fs::write(&scenario, DELAYED).unwrap();
    let out = dir.path().join("run");
    let (code, stdout, stderr) = common::run(
        Command::new(env!("CARGO_BIN_EXE_scx-harness"))
            .args(["sweep", "scx_fault"])
            .arg(&scenario)
            .args([
                "--param",
                "delay-comm=delayed",
                "--param",
                "delay-ms=0,2,5,10,x",
                "--objective",
                "run_delay.delayed.p99",
                "--frontier",
                "run_delay.delayed.p50,run_delay.delayed.p99",
                "--samples",
                "2",
                "--rounds",
                "3",
                "--seed",
                "1",
                "--out",
            ])
            .arg(&out)
            .arg("--kernel")
            .arg(common::test_kernel()),
    );
    let all = format!("{stdout}\n{stderr}");
    assert_eq!(code, Some(0), "{all}");
    let r: Report =
        serde_json::from_slice(&std::fs::read(out.join("sweep.json")).unwrap()).unwrap();
    let label = |ms: &str| format!("delay-comm=delayed delay-ms={ms}");
    let point = |ms: &str| {
        r.points
            .iter()
            .find(|p| p.point.label == label(ms))
            .unwrap_or_else(|| panic!("no point {ms}: {all}"))
    };
    // No delay is best, and the medians rank the delays in order.
    assert_eq!(point("0").status, Status::Best, "{all}");
    let medians: Vec<f64> = ["0", "2", "5", "10"]
        .iter()
        .map(|ms| point(ms).metrics[0].median.expect("measured"))
        .collect();
    assert!(
        medians.windows(2).all(|w| w[0] < w[1]),
        "{medians:?}\n{all}"
    );
    // A 10 ms hold is raced out as soon as racing can speak (4 samples a
    // side, after round 2), so the sweep ran fewer runs than the grid.
    match &point("10").status {
        Status::Dropped { round, by } => {
            assert_eq!(*round, 2, "{all}");
            assert!(by.comparison.ratio > 2.0, "{all}");
        }
        s => panic!("10 ms not dropped: {s:?}\n{all}"),
    }
    assert_eq!(point("10").runs, 4, "{all}");
    // Every run that counts is in the order, once.
    assert_eq!(r.runs, r.order.len());
    assert_eq!(r.runs, r.points.iter().map(|p| p.runs).sum::<usize>());
    // The value scx_fault refuses fails its point, and the sweep goes on.
    match &point("x").status {
        Status::Failed { why } => assert!(!why.is_empty()),
        s => panic!("x did not fail: {s:?}\n{all}"),
    }
    assert_eq!(point("x").runs, 1, "{all}");
    // The references ran every round (3, or 2 when racing left one
    // contender after round 2), never raced.
    for kind in [PointKind::Defaults, PointKind::FairClass] {
        let p = r.points.iter().find(|p| p.point.kind == kind).unwrap();
        assert_eq!(p.status, Status::Reference { failed: None }, "{all}");
        assert_eq!(p.runs, 2 * r.rounds, "{kind:?}\n{all}");
    }
    assert!(point("0").metrics[0].vs_defaults.is_some(), "{all}");
    // No delay is on the grid's frontier of two lower-is-better delays
    // (p50, p99); 10 ms is not; the references are never on it.
    assert!(point("0").on_frontier && !point("10").on_frontier, "{all}");
    assert!(r
        .points
        .iter()
        .all(|p| p.point.kind == PointKind::Grid || !p.on_frontier));
    assert!(r.runner_up.is_some(), "{all}");
    assert!(
        stdout.contains("best: delay-comm=delayed delay-ms=0;"),
        "{all}"
    );
    // Round 1 ran in the order the seed gives.
    let first: Vec<(usize, usize)> = r
        .order
        .iter()
        .filter(|o| o.0 == 1)
        .map(|o| (o.1, o.2))
        .collect();
    let expected =
        scx_harness::sweep::round_order(&(0..r.points.len()).collect::<Vec<_>>(), 1, 2, 1, 0);
    let x = r
        .points
        .iter()
        .position(|p| p.point.label == label("x"))
        .unwrap();
    // (x ran once: its second run was skipped once it had failed.)
    let expected: Vec<(usize, usize)> = {
        let mut seen_x = false;
        expected
            .into_iter()
            .filter(|o| {
                if o.0 != x {
                    return true;
                }
                !std::mem::replace(&mut seen_x, true)
            })
            .collect()
    };
    assert_eq!(first, expected);
    let html = std::fs::read_to_string(out.join("sweep.html")).unwrap();
    assert!(html.contains("data-plots-expected', '2'"), "{html}");
    assert!(out.join("results.json").is_file());
    assert!(common::qemus_mentioning(&out).is_empty());
}

#[test]
fn bad_input_is_refused_before_anything_is_built() {
    let dir = tempfile::tempdir().unwrap();
    let cases: &[(&[&str], &str)] = &[
        (
            &[
                "scx_fault",
                "--param",
                "delay-ms",
                "--objective",
                "stall_max",
            ],
            "--param \"delay-ms\": no `=`",
        ),
        (
            &["scx_fault", "--param", "a=1,1", "--objective", "stall_max"],
            "1 is listed twice",
        ),
        (
            &[
                "scx_fault",
                "--param",
                "a=1",
                "--objective",
                "cpu_share.spinners",
            ],
            "no better direction",
        ),
        (
            &[
                "scx_fault",
                "idle-baseline",
                "wake-pingpong",
                "--param",
                "a=1",
                "--objective",
                "stall_max",
            ],
            "which scenario's?",
        ),
        (
            &["scx_local", "--param", "a=1", "--objective", "stall_max"],
            "takes no arguments, so there is nothing to sweep",
        ),
        (
            &[
                "scx_fault",
                "--param",
                "a=1",
                "--objective",
                "run_delay.nosuch.p99",
            ],
            "has no group \"nosuch\"",
        ),
        (
            &[
                "scx_fault",
                "--param",
                "a=1",
                "--param",
                "--a=2",
                "--objective",
                "stall_max",
            ],
            "given twice",
        ),
        (
            &[
                "scx_fault",
                "--param",
                "a=1,2",
                "--objective",
                "stall_max",
                "--budget",
                "5",
            ],
            "the first round alone is 8 runs",
        ),
        (
            &[
                "scx_fault",
                "--param",
                "a=1",
                "--objective",
                "stall_max",
                "--budget",
                "soon",
            ],
            "--budget soon: neither",
        ),
    ];
    for (args, says) in cases {
        let never = dir.path().join("never");
        common::assert_refused(
            common::harness(&dir.path().join("cache"))
                .arg("sweep")
                .args(*args)
                .arg("--out")
                .arg(&never),
            says,
            &never,
        );
    }
}
