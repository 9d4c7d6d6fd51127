//! Scenarios in the VM: the workload engine, the probe and the checks,
//! proven against the fault fixture's known faults. nextest runs these one
//! VM at a time.

mod common;

use std::time::Duration;

use scx_harness::report::CellVerdict;

fn check<'a>(
    r: &'a scx_harness::report::CellResult,
    name: &str,
) -> &'a scx_harness::checks::Outcome {
    r.checks
        .iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no check {name:?} in {:#?}", r.checks))
}

#[test]
fn vm_injected_delay_is_measured_exactly_and_fails_a_10ms_bound() {
    // Tasks named "delayed" wake every 50 ms for 1 ms of work; scx_fault
    // holds each of their wakeups for exactly 20 ms.
    let r = common::run_cell(
        "scx_fault",
        &["--delay-comm", "delayed", "--delay-ms", "20"],
        "name: delay-probe\n\
         description: the probe against a known delay\n\
         duration: 5s\n\
         warmup: 1s\n\
         groups:\n\
         \x20 - { name: delayed, threads: 2, work: { kind: periodic, run: 1ms, period: 50ms } }\n\
         checks:\n\
         \x20 - run_delay: { group: delayed, p50: 10ms }\n",
    );
    assert_eq!(r.verdict, CellVerdict::Fail, "{}", r.summary);
    let c = check(&r, "run_delay delayed p50");
    assert!(!c.pass);
    let p50 = Duration::from_nanos(c.observed_value.unwrap() as u64);
    eprintln!("{}", scx_harness::report::describe(&r));
    // 20 ms within 10% or 1 ms.
    assert!(
        p50 >= Duration::from_millis(19) && p50 <= Duration::from_millis(22),
        "p50 {p50:?}"
    );
}

#[test]
fn vm_stalled_task_fails_the_stall_check_within_bound_plus_one_second() {
    // scx_fault never dispatches tasks named "victim"; the kernel watchdog
    // would take 30 s. The harness's own bound is 1 s.
    let bound = Duration::from_secs(1);
    let r = common::run_cell(
        "scx_fault",
        &["--stall-comm", "victim"],
        "name: stall-probe\n\
         description: a task that never runs is found while the run goes on\n\
         duration: 20s\n\
         warmup: 1s\n\
         groups:\n\
         \x20 - { name: victim, threads: 1, work: { kind: periodic, run: 1ms, period: 20ms } }\n\
         \x20 - { name: bystander, threads: 2, work: { kind: spin } }\n\
         checks:\n\
         \x20 - stall: { max_runnable: 1s }\n",
    );
    assert_eq!(r.verdict, CellVerdict::Fail, "{}", r.summary);
    let c = check(&r, "stall max_runnable");
    assert!(!c.pass);
    let waited = Duration::from_nanos(c.observed_value.unwrap() as u64);
    assert!(
        waited > bound && waited <= bound + Duration::from_secs(1),
        "reported after {waited:?} of waiting"
    );
    assert!(
        c.detail.contains("victim") && c.detail.contains("pid"),
        "{}",
        c.detail
    );
    let pass = r.agent.as_ref().unwrap().pass("scheduler").unwrap();
    let st = pass
        .stall
        .as_ref()
        .expect("the pass was ended by the stall");
    assert_eq!(st.comm, "victim");
    assert_eq!(st.group, "victim");
    // Found long before the 20 s run (and the 30 s watchdog) would end.
    assert!(
        st.found_at_ns < 5_000_000_000,
        "found at {} ns",
        st.found_at_ns
    );
}

#[test]
fn vm_bpf_error_fails_scheduler_healthy_with_its_message() {
    let r = common::run_cell(
        "scx_fault",
        &["--error-after", "2000"],
        "name: error-probe\n\
         description: a scheduler that errors out is not healthy\n\
         duration: 5s\n\
         warmup: 1s\n\
         groups:\n\
         \x20 - { name: load, threads: 2, work: { kind: spin } }\n\
         checks:\n\
         \x20 - scheduler_healthy: {}\n",
    );
    assert_eq!(r.verdict, CellVerdict::Fail, "{}", r.summary);
    let c = check(&r, "scheduler_healthy");
    assert!(!c.pass);
    assert!(
        c.detail.contains("ErrorBpf")
            && c.detail
                .contains("injected by scx_fault --error-after 2000 ms"),
        "{}",
        c.detail
    );
}

#[test]
fn vm_probe_agrees_with_the_kernels_schedstat() {
    // The probe's total wait per task and the kernel's own run_delay
    // (/proc/PID/schedstat) measure the same thing by different means.
    let r = common::run_cell(
        "scx_simple",
        &[],
        "name: probe-vs-schedstat\n\
         description: the probe's wait totals match the kernel's\n\
         duration: 4s\n\
         warmup: 0s\n\
         groups:\n\
         \x20 - { name: hogs, threads: 4, work: { kind: spin } }\n\
         \x20 - { name: naps, threads: 2, work: { kind: sleepy, run: 500us, min_sleep: 1ms, max_sleep: 5ms } }\n",
    );
    assert_eq!(r.verdict, CellVerdict::Pass, "{}", r.summary);
    let pass = r.agent.as_ref().unwrap().pass("scheduler").unwrap();
    for g in &pass.groups {
        let threads = &g.outcome.as_ref().unwrap().threads;
        let kernel: u64 = threads.iter().map(|t| t.schedstat_wait_ns).sum();
        let probe = g.probe.wait_ns;
        let diff = (kernel as f64 - probe as f64).abs() / (kernel.max(1) as f64);
        eprintln!(
            "{}: probe {probe} ns, schedstat {kernel} ns, {:.2}%",
            g.name,
            diff * 100.0
        );
        assert!(
            diff < 0.05,
            "group {}: probe {probe} ns vs schedstat {kernel} ns ({:.1}%)",
            g.name,
            diff * 100.0
        );
    }
}
