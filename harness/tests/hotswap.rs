//! Hot-swap: several cells in one VM, and schedulers swapped while a
//! scenario's tasks run. A scheduler that is ejected leaves the VM going;
//! a kernel crash ends it, and the cells after it are reported as not run
//! with the reason. nextest runs these one VM at a time.

mod common;

use std::path::Path;

use scx_harness::agent::PassKind;
use scx_harness::cell::Planned;
use scx_harness::report::CellVerdict;
use scx_harness::runner::{self, Session, Target};
use scx_harness::scheduler::build::{self, Built};

fn built(name: &str) -> Built {
    let entry = common::test_kernel_entry();
    let cache = scx_harness::kernel::Cache::user();
    let registry = common::registry();
    let ctx = build::BuildCtx {
        cache: &cache,
        kernel: Some(&entry),
        registry: &registry,
    };
    build::build(
        registry.get(name).unwrap(),
        &ctx,
        &mut scx_harness::progress::Progress::new(name),
    )
    .unwrap()
}

/// One VM on the test kernel, its files under `dir/vm`.
fn vm_plan(dir: &Path) -> Session<'static> {
    static KERNEL: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    Session {
        target: Target::Vm {
            kernel: KERNEL.get_or_init(common::test_kernel),
            accel: scx_harness::vm::AccelChoice::Auto,
        },
        harness: Path::new(env!("CARGO_BIN_EXE_scx-harness")),
        dir: dir.join("vm"),
        timeout: None,
    }
}

fn scenario(dir: &Path, name: &str, text: &str) -> scx_harness::scenario::Loaded {
    let f = dir.join(format!("{name}.yaml"));
    std::fs::write(&f, text).unwrap();
    scx_harness::scenario::load(&f).unwrap()
}

const SHORT: &str = "description: d\nduration: 3s\nwarmup: 500ms\ngroups:\n  - { name: hogs, threads: 2, work: { kind: spin } }\n  - { name: ticker, work: { kind: periodic, run: 1ms, period: 10ms } }\nchecks:\n  - stall: { max_runnable: 1s }\n  - scheduler_healthy: {}\n";

#[test]
fn vm_an_ejected_scheduler_is_reported_and_the_vm_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let sc = scenario(dir.path(), "short", &format!("name: short\n{SHORT}"));
    let (fifo, fault, simple) = (built("scx_fifo"), built("scx_fault"), built("scx_simple"));
    fn plan<'a>(
        sc: &'a scx_harness::scenario::Loaded,
        b: &'a Built,
        args: &[&str],
        dir: std::path::PathBuf,
    ) -> Planned<'a> {
        Planned {
            scenario: sc,
            scheduler: b,
            args: args.iter().map(|a| a.to_string()).collect(),
            swap_to: vec![],
            dir,
            recording: scx_harness::agent::PassRecording::Off,
        }
    }
    let cells = vec![
        plan(&sc, &fifo, &[], dir.path().join("1")),
        plan(
            &sc,
            &fault,
            &["--error-after", "1000"],
            dir.path().join("2"),
        ),
        plan(&sc, &simple, &[], dir.path().join("3")),
    ];
    let mut seen = Vec::new();
    let results = runner::run_session(&cells, &vm_plan(dir.path()), |r| {
        seen.push(r.scheduler.clone())
    })
    .unwrap();
    // Each verdict was reported as its cell ended, in order.
    assert_eq!(seen, ["scx_fifo", "scx_fault", "scx_simple"]);
    let verdicts: Vec<CellVerdict> = results.iter().map(|r| r.verdict).collect();
    assert_eq!(
        verdicts,
        [CellVerdict::Pass, CellVerdict::Fail, CellVerdict::Pass],
        "{results:#?}"
    );
    let healthy = results[1]
        .checks
        .iter()
        .find(|c| c.name == "scheduler_healthy")
        .unwrap();
    assert!(healthy.detail.contains("ErrorBpf"), "{}", healthy.detail);
    // Each cell has its own share of the console, with its scheduler's lines.
    let console = std::fs::read_to_string(dir.path().join("2/console.log")).unwrap();
    assert!(console.contains("disabled (scx_bpf_error)"), "{console}");
    assert!(
        !console.contains("BPF scheduler \"simple\""),
        "cell 3's lines leaked into cell 2's console"
    );
}

#[test]
fn vm_a_kernel_crash_ends_the_vm_and_the_rest_is_not_run() {
    let dir = tempfile::tempdir().unwrap();
    let ok = scenario(dir.path(), "short", &format!("name: short\n{SHORT}"));
    let crash = scenario(
        dir.path(),
        "crash",
        "name: crash\ndescription: panics the guest on purpose\nduration: 3s\nwarmup: 500ms\ngroups:\n  - name: sysrq\n    work: { kind: command, argv: [sh, -c, 'echo c > /proc/sysrq-trigger'] }\n",
    );
    let simple = built("scx_simple");
    let mk = |sc: &scx_harness::scenario::Loaded, n: &str| (sc.clone(), dir.path().join(n));
    let specs = [mk(&ok, "1"), mk(&crash, "2"), mk(&ok, "3")];
    let cells: Vec<Planned> = specs
        .iter()
        .map(|(sc, d)| Planned {
            scenario: sc,
            scheduler: &simple,
            args: vec![],
            swap_to: vec![],
            dir: d.clone(),
            recording: scx_harness::agent::PassRecording::Off,
        })
        .collect();
    let results = runner::run_session(&cells, &vm_plan(dir.path()), |_| {}).unwrap();
    let verdicts: Vec<CellVerdict> = results.iter().map(|r| r.verdict).collect();
    assert_eq!(
        verdicts,
        [CellVerdict::Pass, CellVerdict::Error, CellVerdict::NotRun],
        "{results:#?}"
    );
    assert!(
        results[1]
            .summary
            .contains("the guest kernel crashed during scx_simple/crash"),
        "{}",
        results[1].summary
    );
    assert!(
        results[1].summary.contains("sysrq triggered crash"),
        "{}",
        results[1].summary
    );
    assert!(
        results[2]
            .summary
            .starts_with("not run: the guest kernel crashed"),
        "{}",
        results[2].summary
    );
    // The crashing cell keeps the panic in its console part.
    let console = std::fs::read_to_string(dir.path().join("2/console.log")).unwrap();
    assert!(console.contains("Kernel panic - not syncing"), "{console}");
}

#[test]
fn vm_swapping_schedulers_while_tasks_run_is_measured() {
    let r = common::run_bundled_cell("scx_vtime", "hot-swap");
    let pass = r.agent.as_ref().unwrap().pass(PassKind::Scheduler).unwrap();
    assert_eq!(pass.swaps.len(), 2, "{:#?}", pass.swaps);
    assert_eq!(pass.swaps[0].to, "scx_simple");
    assert_eq!(pass.swaps[1].to, "scx_vtime");
    for s in &pass.swaps {
        assert!(s.attach_ms.is_some(), "{s:?}");
        assert!(
            s.max_delay_ns > 0,
            "no wait measured around the swap: {s:?}"
        );
        assert!(
            s.watched_ms.is_some_and(|w| w >= 1_000),
            "the second after the attach not watched: {s:?}"
        );
    }
    // scx_vtime, then scx_simple, were detached by the swaps, cleanly.
    let out = &r.agent.as_ref().unwrap().swapped_out;
    let names: Vec<&str> = out.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["scx_vtime", "scx_simple"]);
    assert_eq!(
        r.verdict,
        CellVerdict::Pass,
        "{}",
        scx_harness::report::describe(&r.result)
    );
}

/// Ctrl-C in the middle of `scx-harness run`: the VM is stopped, the cell
/// that finished keeps its result, the rest is marked as not measured with
/// the reason, and results.json and the report are still written.
#[test]
fn vm_sigint_during_run_keeps_finished_cells_and_marks_the_rest() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_scx-harness"))
        .args(["run", "-s", "default", "idle-baseline", "cgroup-weights"])
        .arg("--kernel")
        .arg(common::test_kernel())
        .arg("--out")
        .arg(&out)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The first cell's result is written as soon as the host judges it,
    // while the VM goes on with the second.
    let first = out.join("default/idle-baseline/result.json");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(240);
    while !first.exists() {
        assert!(
            child.try_wait().unwrap().is_none(),
            "scx-harness ended before the first cell finished"
        );
        assert!(std::time::Instant::now() < deadline, "no first result");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(
        !common::qemus_mentioning(&out).is_empty(),
        "the VM should still be running the second cell"
    );
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let done = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&done.stderr);
    assert_eq!(done.status.code(), Some(130), "{err}");
    assert!(err.contains("finished cells are in"), "{err}");
    assert!(common::qemus_mentioning(&out).is_empty(), "QEMU left");
    let results: Vec<scx_harness::report::CellResult> =
        serde_json::from_slice(&std::fs::read(out.join("results.json")).unwrap()).unwrap();
    assert_eq!(results.len(), 2);
    assert_eq!(results[0].scenario, "idle-baseline");
    assert!(
        matches!(results[0].verdict, CellVerdict::Pass | CellVerdict::Fail),
        "{:?}: {}",
        results[0].verdict,
        results[0].summary
    );
    assert_eq!(results[1].scenario, "cgroup-weights");
    assert!(
        matches!(results[1].verdict, CellVerdict::Error | CellVerdict::NotRun),
        "{:?}",
        results[1].verdict
    );
    assert!(
        results[1].summary.contains("interrupted"),
        "{}",
        results[1].summary
    );
    assert!(out.join("report.html").is_file());
}
