//! Schedulers in the VM: each is built, attached, kept under load, detached,
//! and its report checked; each fault of the scx_fault fixture is shown to
//! be detected and classified. nextest runs these one VM at a time.

mod common;

use scx_harness::cli::schedulers::cpu_load;
use scx_harness::scheduler::exit::ExitKind;
use scx_harness::scheduler::lifecycle::{Report, Run, Verdict};

fn report(run: &Run) -> &Report {
    run.report
        .as_ref()
        .unwrap_or_else(|| panic!("no report from the guest\n{}", common::explain_vm(&run.vm)))
}

/// Attaches within its deadline, keeps the load running, detaches cleanly.
/// A scheduler the registry marks unsupported may instead fail to attach,
/// and one with a known issue may exit during the run or detach badly, but
/// only in the way the registry describes.
fn check_clean(name: &str) {
    common::check_clean_on(&common::test_kernel_entry(), name);
}

macro_rules! clean_tests {
    ($($test:ident => $name:literal),* $(,)?) => {$(
        #[test]
        fn $test() {
            check_clean($name);
        }
    )*};
}

clean_tests! {
    vm_scx_fifo_attaches_runs_and_detaches => "scx_fifo",
    vm_scx_vtime_attaches_runs_and_detaches => "scx_vtime",
    vm_scx_local_bpf_object_attaches_runs_and_detaches => "scx_local",
    vm_kernel_example_scx_simple_attaches_runs_and_detaches => "scx_simple",
    vm_kernel_example_scx_qmap_attaches_runs_and_detaches => "scx_qmap",
    vm_kernel_example_scx_qmap_partial_attaches_runs_and_detaches => "scx_qmap_partial",
    vm_kernel_example_scx_central_attaches_runs_and_detaches => "scx_central",
    vm_kernel_example_scx_flatcg_attaches_runs_and_detaches => "scx_flatcg",
    vm_crate_scx_bpfland_attaches_runs_and_detaches => "scx_bpfland",
    vm_crate_scx_lavd_attaches_runs_and_detaches => "scx_lavd",
    vm_crate_scx_rusty_attaches_runs_and_detaches => "scx_rusty",
    vm_crate_scx_flash_attaches_runs_and_detaches => "scx_flash",
}

/// Several schedulers in turn in one boot (how the clean-lifecycle tests
/// share a VM per kernel): each turn is judged on its own kernel lines,
/// crash lines and counters, so a scheduler that errors out between two
/// clean ones is the only one that fails, and the one after it attaches
/// and detaches clean. The fault's turn also prints a kernel WARNING line
/// (its payload writes one to /dev/kmsg): the crash line is its turn's.
#[test]
fn vm_schedulers_in_turn_in_one_vm_are_each_judged_on_their_own_turn() {
    let entry = common::test_kernel_entry();
    let turns: [(&str, &[&str]); 3] = [
        ("scx_simple", &[]),
        ("scx_fault", &["--error-after", "1000"]),
        ("scx_fifo", &[]),
    ];
    const WARNING: &str = "WARNING: CPU: 0 PID: 1 at scx-harness fault fixture";
    let specs: Vec<_> = turns
        .iter()
        .map(|(name, args)| {
            let load = cpu_load(2, 2.0);
            let payload = match *name {
                "scx_fault" => format!("echo '{WARNING}' > /dev/kmsg; {load}"),
                _ => load,
            };
            common::guest_spec(&entry, name, args, Some(payload))
        })
        .collect();
    let work = tempfile::tempdir().unwrap();
    let batch = scx_harness::scheduler::lifecycle::run_each_in_vm(
        &entry.bzimage(),
        std::path::Path::new(env!("CARGO_BIN_EXE_scx-harness")),
        &specs,
        work.path(),
        std::time::Duration::from_secs(150),
    )
    .unwrap();
    let explain = common::explain_vm(&batch.vm);
    let reports: Vec<&Report> = batch
        .reports
        .iter()
        .map(|r| {
            r.as_ref()
                .unwrap_or_else(|| panic!("a turn wrote no report\n{explain}"))
        })
        .collect();
    for (r, (name, _)) in reports.iter().zip(&turns) {
        assert_eq!(&r.name, name);
    }
    assert_eq!(batch.verdict(0), Verdict::Clean, "{:#?}", reports[0]);
    match batch.verdict(1) {
        Verdict::ExitedDuringRun { why } => assert!(why.contains("ErrorBpf"), "{why}"),
        v => panic!("expected exited_during_run, got {v:?}\n{:#?}", reports[1]),
    }
    assert_eq!(batch.verdict(2), Verdict::Clean, "{:#?}", reports[2]);
    assert_eq!(reports[2].exit_kind, Some(ExitKind::Unreg));
    // Each turn's own kernel lines only: the fault's error is in its turn
    // (ops "fault_*") and not in the next.
    let fault_ops = reports[1].ops.as_deref().expect("the fault attached");
    assert!(
        reports[1].kernel_log.iter().any(|l| l.contains(fault_ops)),
        "{:?}",
        reports[1].kernel_log
    );
    assert!(
        reports[2].kernel_log.iter().all(|l| !l.contains(fault_ops)),
        "{:?}",
        reports[2].kernel_log
    );
    // One attach each, in order.
    assert_eq!(
        reports[1].before.enable_seq,
        reports[0].before.enable_seq + 1
    );
    assert_eq!(
        reports[2].before.enable_seq,
        reports[0].before.enable_seq + 2
    );
    // The crash line is the fault's turn's, and no other's.
    let crashes = |i| -> Vec<&str> { batch.crashes(i).iter().map(|c| c.text.as_str()).collect() };
    assert!(
        matches!(crashes(1)[..], [w] if w.contains(WARNING)),
        "{:?}\n{explain}",
        crashes(1)
    );
    assert!(crashes(0).is_empty() && crashes(2).is_empty(), "{explain}");
    assert!(batch.crashes_outside_turns().is_empty(), "{explain}");
    assert_eq!(batch.vm.crashes.len(), 1, "{explain}");
}

#[test]
fn every_scheduler_under_test_has_a_clean_run_test() {
    // The list above must follow the registry: a scheduler added there and
    // not here would go untested.
    // (On the default kernel; tests/kernels.rs lists the others' itself.)
    let src = include_str!("schedulers.rs");
    let default = scx_harness::kernel::Catalog::embedded().default;
    for d in common::registry().for_kernel(Some(&default)).under_test() {
        if d.kind == scx_harness::scheduler::registry::Kind::Default {
            continue;
        }
        assert!(
            src.contains(&format!("=> \"{}\"", d.name)),
            "{} is in the registry but has no clean-run test",
            d.name
        );
    }
}

#[test]
fn vm_default_scheduler_runs_the_load_on_the_fair_class() {
    let run = common::run_scheduler("default", &[], Some(common::lifecycle_load()));
    let r = report(&run);
    assert_eq!(run.verdict(), Verdict::Clean, "{r:#?}");
    assert_eq!(r.ops, None);
    assert_eq!(r.payload_status, Some(0));
    assert_eq!(
        r.after.enable_seq, r.before.enable_seq,
        "something attached"
    );
    assert_eq!(r.after.state, "disabled");
}

#[test]
fn vm_fault_error_after_is_exited_during_run_with_error_bpf() {
    let run = common::run_scheduler(
        "scx_fault",
        &["--error-after", "1000"],
        Some(cpu_load(2, 4.0)),
    );
    let r = report(&run);
    match run.verdict() {
        Verdict::ExitedDuringRun { why } => assert!(why.contains("ErrorBpf"), "{why}"),
        v => panic!("expected exited_during_run, got {v:?}\n{r:#?}"),
    }
    assert_eq!(r.exit_kind, Some(ExitKind::ErrorBpf), "{r:#?}");
    // scx's scx_bpf_error() prefixes the message with FILE:LINE.
    let msg = r.exit_message.as_deref().unwrap_or("");
    assert!(
        msg.ends_with("injected by scx_fault --error-after 1000 ms"),
        "{r:#?}"
    );
    // The fault fires 1000 ms after load; attach comes a little after load.
    let left = r.left_after_ms.expect("left during the run");
    assert!((500..=2500).contains(&left), "left after {left} ms");
    let said = r.scheduler_exit.as_deref().unwrap_or("");
    assert!(said.contains("scx_bpf_error"), "{said:?}");
    assert_eq!(
        r.process_status,
        Some(1),
        "an error exit is a non-zero status"
    );
}

#[test]
fn vm_fault_stall_is_caught_by_the_shortened_watchdog_as_error_stall() {
    // A task named "victim" is never dispatched; with --timeout-ms 2000 the
    // kernel's watchdog ejects the scheduler, then the victim runs and ends.
    let payload = "d=$(mktemp -d); ln -s \"$(command -v sh)\" $d/victim; \
                   $d/victim -c 'i=0; while [ $i -lt 2000 ]; do i=$((i+1)); done'";
    let run = common::run_scheduler(
        "scx_fault",
        &["--stall-comm", "victim", "--timeout-ms", "2000"],
        Some(payload.into()),
    );
    let r = report(&run);
    assert!(
        matches!(run.verdict(), Verdict::ExitedDuringRun { .. }),
        "{:?}\n{r:#?}",
        run.verdict()
    );
    assert_eq!(r.exit_kind, Some(ExitKind::ErrorStall), "{r:#?}");
    let msg = r.exit_message.as_deref().unwrap_or("");
    assert!(
        msg.contains("victim[") && msg.contains("failed to run for"),
        "{msg:?}"
    );
    // 2 s timeout, checked every 1 s: ejected within about 3 s.
    let left = r.left_after_ms.unwrap();
    assert!((1500..=6000).contains(&left), "left after {left} ms");
    assert_eq!(
        r.payload_status,
        Some(0),
        "the victim ran once the scheduler was gone"
    );
}

#[test]
fn vm_fault_delay_holds_named_tasks_for_the_given_time() {
    // "napper" wakes 10 times from a 1 ms sleep; each wakeup is held 50 ms,
    // so the 10 rounds take at least 500 ms (they take ~20 ms without).
    let payload = "d=$(mktemp -d); ln -s \"$(command -v sh)\" $d/napper; \
                   t0=$(date +%s%N); \
                   $d/napper -c 'for i in 1 2 3 4 5 6 7 8 9 10; do sleep 0.001; done'; \
                   echo elapsed_ms=$(( ($(date +%s%N) - t0) / 1000000 ))";
    let run = common::run_scheduler(
        "scx_fault",
        &["--delay-comm", "napper", "--delay-ms", "50"],
        Some(format!("{payload} > $SCX_HARNESS_SHARED/payload.out")),
    );
    let r = report(&run);
    assert_eq!(run.verdict(), Verdict::Clean, "{r:#?}");
    let out = std::fs::read_to_string(run.vm.shared_dir.join("payload.out")).unwrap();
    let ms: u64 = out
        .trim()
        .strip_prefix("elapsed_ms=")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("payload said {out:?}"));
    assert!(ms >= 500, "10 held wakeups took only {ms} ms");
    let held: u64 = r
        .stderr
        .lines()
        .find_map(|l| l.strip_prefix("scx_fault: held "))
        .and_then(|l| l.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no held count in {:?}", r.stderr));
    assert!(held >= 10, "held {held} enqueues");
}

#[test]
fn vm_fault_user_space_abort_is_a_crash_and_the_kernel_unloads_it() {
    let run = common::run_scheduler(
        "scx_fault",
        &["--abort-after", "1000"],
        Some(cpu_load(2, 4.0)),
    );
    let r = report(&run);
    match run.verdict() {
        Verdict::Crashed { why } => assert!(why.contains("SIGABRT"), "{why}"),
        v => panic!("expected crashed, got {v:?}\n{r:#?}"),
    }
    assert_eq!(r.process_signal, Some(libc::SIGABRT));
    assert_eq!(r.exit_kind, Some(ExitKind::Unreg), "{r:#?}");
    assert_eq!(r.after.state, "disabled");
    let left = r.left_after_ms.unwrap();
    assert!((800..=2500).contains(&left), "left after {left} ms");
}

#[test]
fn vm_fault_verifier_rejection_before_attaching_is_failed_to_attach() {
    let run = common::run_scheduler(
        "scx_fault",
        &["--reject-verifier"],
        Some(common::lifecycle_load()),
    );
    let r = report(&run);
    assert!(
        matches!(run.verdict(), Verdict::FailedToAttach { .. }),
        "{:?}\n{r:#?}",
        run.verdict()
    );
    let log = r.loader_log.join("\n");
    assert!(
        log.contains("invalid mem access 'scalar'"),
        "verifier lines missing:\n{log}"
    );
    assert_eq!(r.process_status, Some(1));
    assert_eq!(r.after.enable_seq, r.before.enable_seq);
}

#[test]
fn vm_bpf_object_the_verifier_refuses_is_failed_to_attach_with_its_log() {
    let run = common::run_scheduler("fault_verifier", &[], Some(common::lifecycle_load()));
    let r = report(&run);
    match run.verdict() {
        Verdict::FailedToAttach { why } => assert!(why.contains("loading"), "{why}"),
        v => panic!("expected failed_to_attach, got {v:?}\n{r:#?}"),
    }
    let log = r.loader_log.join("\n");
    assert!(
        log.contains("invalid mem access 'scalar'"),
        "verifier lines missing:\n{log}"
    );
}

#[test]
fn vm_bpf_object_exit_info_is_read_from_its_uei() {
    let run = common::run_scheduler("scx_local", &[], Some(common::lifecycle_load()));
    let r = report(&run);
    let uei = r
        .uei
        .as_ref()
        .unwrap_or_else(|| panic!("no uei read: {r:#?}"));
    assert_eq!(uei.kind, ExitKind::Unreg.value() as i64, "{uei:?}");
    assert_eq!(uei.reason, "unregistered from user space");
}

#[test]
fn vm_arguments_the_scheduler_rejects_are_failed_to_attach_with_its_message() {
    let run = common::run_scheduler("scx_fifo", &["--bogus"], Some(common::lifecycle_load()));
    let r = report(&run);
    match run.verdict() {
        Verdict::FailedToAttach { why } => {
            assert!(why.contains("exited") && why.contains("--bogus"), "{why}")
        }
        v => panic!("expected failed_to_attach, got {v:?}\n{r:#?}"),
    }
    assert_eq!(
        r.payload_status, None,
        "the payload must not run without the scheduler"
    );
}

#[test]
fn vm_cli_run_reports_a_rejected_argument_once_and_leaves_no_vm() {
    let tmp = tempfile::tempdir().unwrap();
    let (code, out, err) = common::run(
        std::process::Command::new(env!("CARGO_BIN_EXE_scx-harness"))
            .env("TMPDIR", tmp.path())
            .args(["schedulers", "run", "scx_fifo", "--kernel"])
            .arg(common::test_kernel())
            .args(["--timeout", "2m", "--", "--bogus"]),
    );
    assert_eq!(code, Some(1), "{out}\n{err}");
    assert_eq!(
        err.matches("scx-harness: error:").count(),
        1,
        "one error:\n{err}"
    );
    assert!(err.contains("scx_fifo failed to attach"), "{err}");
    assert!(out.contains("unexpected argument '--bogus'"), "{out}");
    assert!(common::qemus_mentioning(tmp.path()).is_empty());
}

/// A failure the registry expects (here scx_fault's stall, written down as
/// a known issue) is still a failure (exit 1), and `schedulers run` says
/// the registry expects it; the same scheduler's clean run says nothing of
/// the kind.
#[test]
fn vm_cli_run_names_a_failure_its_registry_entry_expects() {
    let tmp = tempfile::tempdir().unwrap();
    let reg = tmp.path().join("registry.yaml");
    std::fs::write(
        &reg,
        "schedulers:\n  - name: flaky\n    kind: binary\n    source: { workspace: scx_fault }\n    \
         ops: \"fault_*\"\n    fixture: true\n    \
         known_issue: { reason: leaves a task named victim runnable, says: (runnable task stall) }\n",
    )
    .unwrap();
    let payload = "d=$(mktemp -d); ln -s \"$(command -v sh)\" $d/victim; \
                   $d/victim -c 'i=0; while [ $i -lt 2000 ]; do i=$((i+1)); done'";
    let cli = |extra: &[&str]| {
        common::run(
            std::process::Command::new(env!("CARGO_BIN_EXE_scx-harness"))
                .env("TMPDIR", tmp.path())
                .args(["schedulers", "run", "flaky", "--registry"])
                .arg(&reg)
                .arg("--kernel")
                .arg(common::test_kernel())
                .args(["--timeout", "2m", "--payload", payload, "--"])
                .args(extra),
        )
    };
    let (code, out, err) = cli(&["--stall-comm", "victim", "--timeout-ms", "2000"]);
    assert_eq!(code, Some(1), "{out}\n{err}");
    assert!(out.contains("verdict       exited_during_run"), "{out}");
    assert!(
        out.contains("known         its registry entry expects this failure: leaves a task named victim runnable"),
        "{out}"
    );
    let (code, out, err) = cli(&[]);
    assert_eq!(code, Some(0), "{out}\n{err}");
    assert!(!out.contains("known "), "{out}");
    assert!(common::qemus_mentioning(tmp.path()).is_empty());
}
