//! Schedulers in the VM: each is built, attached, kept under load, and
//! detached, and its report checked. nextest runs these one VM at a time.

mod common;

use std::time::Duration;

use scx_harness::scheduler::exit::ExitKind;
use scx_harness::scheduler::kernel_examples;
use scx_harness::scheduler::lifecycle::{run_in_vm, GuestSpec, Verdict};

/// 2x the guest's 2 vCPUs of pure CPU burners for 3 s.
const CPU_LOAD: &str = "for i in 1 2 3 4; do timeout 3 sh -c 'while :; do :; done' & done; wait";

fn check_kernel_example(name: &str, ops: &str) {
    let entry = common::test_kernel_entry();
    let cache = scx_harness::kernel::Cache::user();
    let mut progress = scx_harness::progress::Progress::new("kernel examples");
    let examples = kernel_examples::build(&cache, &entry, &mut progress).unwrap();
    let spec = GuestSpec {
        argv: vec![examples.binary(name).display().to_string()],
        ops: ops.into(),
        attach_timeout_ms: 20_000,
        payload: Some(CPU_LOAD.into()),
        stop_grace_ms: 5_000,
    };
    let work = tempfile::tempdir().unwrap();
    let (vm, report) = run_in_vm(
        &entry.bzimage(),
        std::path::Path::new(env!("CARGO_BIN_EXE_scx-harness")),
        &spec,
        work.path(),
        Duration::from_secs(120),
    )
    .unwrap();
    let console = std::fs::read_to_string(&vm.console_log).unwrap_or_default();
    let report = report.unwrap_or_else(|| {
        panic!(
            "no report from the guest; outcome {:?}\nstdout:\n{}\nconsole tail:\n{}",
            vm.outcome,
            vm.stdout,
            console
                .lines()
                .rev()
                .take(40)
                .collect::<Vec<_>>()
                .join("\n")
        )
    });
    assert_eq!(report.verdict, Verdict::Clean, "{report:#?}");
    assert_eq!(report.ops.as_deref(), Some(ops));
    assert_eq!(report.exit_kind, Some(ExitKind::Unreg), "{report:#?}");
    assert_eq!(
        report.after.enable_seq,
        report.before.enable_seq + 1,
        "{report:#?}"
    );
    assert_eq!(report.after.state, "disabled");
    assert_eq!(report.payload_status, Some(0), "{report:#?}");
    assert!(vm.crashes.is_empty(), "{:?}", vm.crashes);
    assert!(
        console.contains(&format!("sched_ext: BPF scheduler \"{ops}\" enabled")),
        "the kernel never logged the attach"
    );
}

#[test]
fn vm_kernel_example_scx_simple_attaches_runs_and_detaches() {
    check_kernel_example("scx_simple", "simple");
}

#[test]
fn vm_kernel_example_scx_qmap_attaches_runs_and_detaches() {
    check_kernel_example("scx_qmap", "qmap");
}

#[test]
fn vm_kernel_example_scx_central_attaches_runs_and_detaches() {
    check_kernel_example("scx_central", "central");
}

#[test]
fn vm_kernel_example_scx_flatcg_attaches_runs_and_detaches() {
    check_kernel_example("scx_flatcg", "flatcg");
}
