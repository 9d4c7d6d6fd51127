//! Scenarios in the VM: the workload engine, the probe and the checks,
//! proven against the fault fixture's known faults. nextest runs these one
//! VM at a time.

mod common;

use std::time::Duration;

use scx_harness::agent::PassKind;
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
    let pass = r.agent.as_ref().unwrap().pass(PassKind::Scheduler).unwrap();
    let st = pass
        .stall
        .as_ref()
        .expect("the pass was ended by the stall");
    assert_eq!(st.comm, "victim");
    assert_eq!(st.group.as_deref(), Some("victim"));
    // Found long before the 20 s run (and the 30 s watchdog) would end.
    assert!(
        st.found_at_ns < 5_000_000_000,
        "found at {} ns",
        st.found_at_ns
    );
}

/// Issue 16's one-wait example: three nice -20 spinners and a nice 19
/// sleeper on one vCPU under the fair class, stopped by the stall check.
/// The stalled wait is one number in the check, its detail, the report's
/// stall columns and `compare`'s stall_max; no wait that ended after the
/// stop is in the run delays.
#[test]
fn vm_a_stopped_cell_shows_one_number_for_its_stall() {
    let r = common::run_cell(
        "default",
        &[],
        "name: one-wait\n\
         description: the fair class starves a nice 19 sleeper behind nice -20 spinners\n\
         duration: 8s\n\
         warmup: 1s\n\
         vm: { cpus: 1 }\n\
         groups:\n\
         \x20 - { name: hogs, threads: 3, nice: -20, work: { kind: spin } }\n\
         \x20 - { name: sleeper, threads: 1, nice: 19, work: { kind: periodic, run: 1ms, period: 10ms } }\n\
         checks:\n\
         \x20 - stall: { max_runnable: 1s }\n",
    );
    eprintln!("{}", scx_harness::report::describe(&r));
    assert_eq!(r.verdict, CellVerdict::Fail, "{}", r.summary);
    let pass = r.agent.as_ref().unwrap().pass(PassKind::Scheduler).unwrap();
    let st = pass
        .stall
        .as_ref()
        .expect("the stall check stopped the pass");
    let c = check(&r, "stall max_runnable");
    assert_eq!(c.observed_value, Some(st.waited_ns as f64));
    let shown = format!("{:.1}ms", st.waited_ns as f64 / 1e6);
    assert_eq!(c.observed, shown);
    assert!(
        c.detail.contains(&format!("runnable for {shown}")),
        "{}",
        c.detail
    );
    assert_eq!(
        scx_harness::compare::metrics(&r).get("stall_max").copied(),
        Some(st.waited_ns as f64)
    );
    let longest = pass.longest_runnable(|_| true).unwrap();
    assert_eq!(longest.ns, st.waited_ns);
    // Found within a scan or two (100 ms) of the bound: the watch outranks the
    // workload.
    assert!(
        st.waited_ns >= 1_000_000_000 && st.waited_ns < 1_250_000_000,
        "{st:?}"
    );
    // The stop ends the window: no run delay ended after it.
    assert_eq!(pass.window_end_ns, pass.t0_ns + pass.ended_at_ns);
    for g in &pass.groups {
        assert!(
            g.probe.max_wait_ns <= st.waited_ns,
            "{}: {:?}",
            g.name,
            g.probe
        );
        assert!(
            g.probe.max_runnable_ns <= st.waited_ns,
            "{}: {:?}",
            g.name,
            g.probe
        );
    }
}

/// A group's main thread starved after the window, when it wakes to write
/// the group's outcome (issue 16: a "wl:g03" thread kept waiting 44 s
/// until the kernel's watchdog): the stall check finds it within its bound
/// plus a second, named, instead of waiting for the watchdog.
#[test]
fn vm_a_group_main_thread_starved_after_the_window_is_found() {
    let bound = Duration::from_secs(1);
    let r = common::run_cell(
        "scx_fault",
        &["--stall-comm", "wl:victim", "--stall-after", "4000"],
        "name: main-thread-stall\n\
         description: the group process's own thread is starved when it wakes at the stop\n\
         duration: 4s\n\
         warmup: 1s\n\
         groups:\n\
         \x20 - { name: victim, threads: 1, work: { kind: periodic, run: 1ms, period: 20ms } }\n\
         \x20 - { name: bystander, threads: 1, work: { kind: spin } }\n\
         checks:\n\
         \x20 - stall: { max_runnable: 1s }\n",
    );
    eprintln!("{}", scx_harness::report::describe(&r));
    assert_eq!(r.verdict, CellVerdict::Fail, "{}", r.summary);
    let pass = r.agent.as_ref().unwrap().pass(PassKind::Scheduler).unwrap();
    let st = pass.stall.as_ref().expect("the stall was found");
    assert_eq!(st.comm, "wl:victim");
    assert_eq!(st.group.as_deref(), Some("victim"));
    assert!(
        st.found_at_ns >= 4_000_000_000,
        "found after the window: {st:?}"
    );
    let waited = Duration::from_nanos(st.waited_ns);
    assert!(
        waited > bound && waited <= bound + Duration::from_secs(1),
        "{st:?}"
    );
    let c = check(&r, "stall max_runnable");
    assert!(!c.pass && c.detail.contains("wl:victim"), "{}", c.detail);
    // Long before the kernel's 30 s watchdog.
    assert!(r.elapsed_s < 30.0, "{} s", r.elapsed_s);
}

/// A group kept from getting ready (its main thread jailed from the
/// scheduler's load on, before it says "ready") is a stall found by the
/// harness, not a 60 s wait for "ready" after the kernel's 30 s watchdog.
#[test]
fn vm_a_group_starved_before_it_is_ready_is_found() {
    let r = common::run_cell(
        "scx_fault",
        &["--stall-comm", "wl:victim"],
        "name: ready-stall\n\
         description: the group process's own thread is starved before it is ready\n\
         duration: 4s\n\
         warmup: 1s\n\
         groups:\n\
         \x20 - { name: victim, threads: 1, work: { kind: periodic, run: 1ms, period: 20ms } }\n\
         \x20 - { name: bystander, threads: 1, work: { kind: spin } }\n\
         checks:\n\
         \x20 - stall: { max_runnable: 1s }\n",
    );
    eprintln!("{}", scx_harness::report::describe(&r));
    assert_eq!(r.verdict, CellVerdict::Fail, "{}", r.summary);
    let pass = r.agent.as_ref().unwrap().pass(PassKind::Scheduler).unwrap();
    let st = pass.stall.as_ref().expect("the stall was found");
    assert_eq!(st.comm, "wl:victim");
    assert_eq!(st.group.as_deref(), Some("victim"));
    assert!(r.elapsed_s < 30.0, "{} s", r.elapsed_s);
}

/// With `tasks: guest`, a kernel thread kept waiting is found and named
/// with its CPU: scx_fault jails CPU 0's kworkers, and a group asks every
/// CPU's kworker for work (writing /proc/sys/vm/stat_refresh runs
/// refresh_vm_stats on each CPU). The scenario-only check does not see it.
#[test]
fn vm_a_kworker_kept_waiting_is_found_by_the_guest_wide_watch() {
    let bound = Duration::from_secs(1);
    let r = common::run_cell(
        "scx_fault",
        &["--stall-comm", "kworker/0:*", "--stall-after", "1500"],
        "name: kworker-stall\n\
         description: a per-CPU kworker never runs\n\
         duration: 10s\n\
         warmup: 1s\n\
         groups:\n\
         \x20 - { name: refresh, threads: 1, work: { kind: command, argv: [sh, -c, 'while :; do echo 1 > /proc/sys/vm/stat_refresh; sleep 0.1; done'] } }\n\
         \x20 - { name: spinner, threads: 1, work: { kind: spin } }\n\
         checks:\n\
         \x20 - stall: { max_runnable: 1s }\n\
         \x20 - stall: { max_runnable: 1s, tasks: guest }\n",
    );
    eprintln!("{}", scx_harness::report::describe(&r));
    assert_eq!(r.verdict, CellVerdict::Fail, "{}", r.summary);
    let pass = r.agent.as_ref().unwrap().pass(PassKind::Scheduler).unwrap();
    let st = pass.stall.as_ref().expect("the stall was found");
    assert!(st.comm.starts_with("kworker/0:"), "{st:?}");
    assert_eq!(st.group, None);
    assert_eq!(st.cpu, 0);
    let waited = Duration::from_nanos(st.waited_ns);
    assert!(
        waited > bound && waited <= bound + Duration::from_secs(1),
        "{st:?}"
    );
    let c = check(&r, "stall guest max_runnable");
    assert!(!c.pass, "{c:?}");
    for w in ["kworker/0:", "outside the scenario", "CPU 0"] {
        assert!(c.detail.contains(w), "{w}: {}", c.detail);
    }
    assert!(
        check(&r, "stall max_runnable").pass,
        "the scenario's own tasks did not stall: {:?}",
        check(&r, "stall max_runnable")
    );
}

/// Why a task waited: a task pinned beside a spinning SCHED_FIFO task on
/// CPU 1 runs only in what RT throttling leaves (50 ms a second), under
/// the fair class. Its waits are the higher class's, not the scheduler's:
/// a bound on the whole wait fails, the same bound `excluding:
/// higher_class_and_waking` holds.
#[test]
fn vm_a_wait_behind_an_rt_task_is_the_higher_classs() {
    let r = common::run_cell(
        "default",
        &[],
        "name: behind-rt\n\
         description: a fair task pinned beside an RT spinner\n\
         duration: 5s\n\
         warmup: 1s\n\
         groups:\n\
         \x20 - { name: rt, threads: 1, work: { kind: command, argv: [chrt, -f, \"50\", taskset, -c, \"1\", sh, -c, 'while :; do :; done'] } }\n\
         \x20 - { name: victim, threads: 1, cpus: [1], work: { kind: periodic, run: 1ms, period: 10ms } }\n\
         checks:\n\
         \x20 - run_delay: { group: victim, max: 100ms }\n\
         \x20 - run_delay: { group: victim, max: 100ms, excluding: higher_class_and_waking }\n\
         \x20 - stall: { max_runnable: 3s, group: victim, excluding: higher_class_and_waking }\n",
    );
    eprintln!("{}", scx_harness::report::describe(&r));
    let whole = check(&r, "run_delay victim max");
    assert!(
        !whole.pass,
        "RT throttling leaves the task waiting: {whole:?}"
    );
    let own = check(&r, "run_delay victim max excluding higher_class_and_waking");
    assert!(own.pass, "{own:?}");
    assert!(
        own.detail.contains("behind a higher class"),
        "{}",
        own.detail
    );
    let stall = check(
        &r,
        "stall victim max_runnable excluding higher_class_and_waking",
    );
    assert!(stall.pass, "{stall:?}");
    let pass = r.agent.as_ref().unwrap().pass(PassKind::Scheduler).unwrap();
    let g = pass.group("victim").unwrap();
    assert!(
        g.probe.wait_higher_ns as f64 > 0.8 * g.probe.wait_ns as f64,
        "most of the waiting is behind the RT task: {:?}",
        g.probe
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
    let pass = r.agent.as_ref().unwrap().pass(PassKind::Scheduler).unwrap();
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

/// What one `replay` thread does in `[from, to)` ms of its group's time,
/// drawing as the thread does (a burst, then a sleep, from its seeded
/// stream) when each cycle also loses `overhead_ms` to the kernel:
/// (bursts ending in the window, their drawn CPU time in ms).
fn replay_plan(
    mut rng: scx_harness::workload::Rng,
    run: &[Duration],
    sleep: &[Duration],
    overhead_ms: f64,
    (from, to): (f64, f64),
) -> (u64, f64) {
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let (run, sleep) = (
        scx_harness::workload::Distribution::new(run, None),
        scx_harness::workload::Distribution::new(sleep, None),
    );
    let (mut t, mut bursts, mut cpu) = (0.0, 0, 0.0);
    loop {
        let burst = ms(run.draw(&mut rng));
        t += burst;
        if t >= to {
            return (bursts, cpu);
        }
        if t >= from {
            bursts += 1;
            cpu += burst;
        }
        t += ms(sleep.draw(&mut rng)) + overhead_ms;
    }
}

/// A `replay` group (what `record` writes) keeps the cycle its quantiles
/// describe: bursts of 0.2 to 1.8 ms of CPU time and sleeps whose
/// quantiles are 1, 2 and 30 ms, each drawn from the thread's seeded
/// stream, so the test draws the same and knows each thread's plan. Under
/// the fair class a thread keeps to its plan but for what TCG adds to
/// each cycle (the kernel's work around each sleep and wakeup, late
/// timers): 0.85 to 1.5 ms measured on 2026-12-01, about 0.2 ms in a CI
/// run on 2026-12-02; up to 2 ms allowed. (That draws follow their
/// quantiles, interpolated, is the unit test's:
/// `draws_follow_the_quantiles_they_are_given`; that the plan differs
/// from other readings of the same quantiles, the numbers below.)
#[test]
fn vm_a_replay_group_keeps_the_cycle_its_quantiles_describe() {
    let r = common::run_cell(
        "default",
        &[],
        "name: replay-cycle\n\
         description: a replayed group's bursts and sleeps\n\
         duration: 4s\n\
         warmup: 1s\n\
         seed: 1\n\
         groups:\n\
         \x20 - { name: replayed, threads: 2, work: { kind: replay, run: [200us, 1ms, 1800us], sleep: [1ms, 2ms, 30ms] } }\n",
    );
    assert_eq!(r.verdict, CellVerdict::Pass, "{}", r.summary);
    let pass = r.agent.as_ref().unwrap().pass(PassKind::Scheduler).unwrap();
    let g = pass.group("replayed").unwrap();
    let threads = &g.outcome.as_ref().unwrap().threads;
    let us = |v: u64| Duration::from_micros(v);
    let (run, sleep) = (
        [us(200), us(1000), us(1800)],
        [us(1000), us(2000), us(30_000)],
    );
    let (mut planned_cpu, mut bursts) = (0.0, 0);
    for (i, t) in threads.iter().enumerate() {
        let rng = scx_harness::workload::Rng::for_thread(1, 0, i as u32);
        let plan = |overhead| replay_plan(rng.clone(), &run, &sleep, overhead, (1e3, 4e3));
        let ((most, cpu), (fewest, _)) = (plan(0.0), plan(2.0));
        // Other readings of the same quantiles, at 0.2 to 1.5 ms a cycle
        // of overhead: every sleep at the median, about 1200 to 700
        // bursts; a listed quantile picked at random (mean 11 ms), 240 to
        // 225; uniform from 1 to 30 ms, about 180 to 170; all at the last
        // quantile, 96 to 92. The plans with seed 1: 257 to 307 bursts
        // (thread 0) and 274 to 331 (thread 1).
        eprintln!(
            "thread {i}: {} bursts in the window, {fewest} to {most} planned",
            t.iterations_window
        );
        // Up to 3% over the plan with nothing lost: a burst's CPU time
        // counts the kernel's work around it and a timed sleep aims early
        // by its measured lateness, so a cycle is the drawn one, or a
        // little less when the lateness learned runs long.
        assert!(
            (fewest.saturating_sub(3)..=most + most / 33 + 3).contains(&t.iterations_window),
            "thread {i}: {} bursts in the window, its plan {fewest} (2 ms a cycle lost) to {most} (none lost): {t:?}",
            t.iterations_window
        );
        planned_cpu += cpu;
        bursts += most;
    }
    // CPU time per burst in the window: the mean of the planned bursts
    // (about 1 ms), plus what the kernel does for the thread around each
    // sleep and wakeup and the group's main thread (0.2 to 0.5 ms a cycle
    // under TCG). Bursts all at the first quantile would be 0.2 ms plus
    // that, all at the last 1.8 ms plus that.
    let planned = planned_cpu / bursts as f64;
    let done: u64 = threads.iter().map(|t| t.iterations_window).sum();
    let per_burst = g.probe.run_ns_window as f64 / done as f64 / 1e6;
    eprintln!(
        "{done} bursts in the window, {per_burst:.3} ms of CPU time each, {planned:.3} ms planned"
    );
    assert!(
        (planned - 0.05..planned + 0.75).contains(&per_burst),
        "CPU time per burst {per_burst:.3} ms, {planned:.3} ms planned: {:?}",
        g.probe
    );
}

/// A `replay` group woken by another (`woken_by`, what `record` writes
/// for a recorded coupling) has its sleeps ended by that group's tasks:
/// a server whose every sleep a client's burst ends, and a pool of 4
/// workers half of whose sleeps its own tasks end and half its timer.
#[test]
fn vm_a_coupled_replay_group_is_woken_by_the_group_it_names() {
    let r = common::run_cell(
        "default",
        &[],
        "name: replay-coupled\n\
         description: replay groups that wake each other\n\
         duration: 4s\n\
         warmup: 1s\n\
         groups:\n\
         \x20 - { name: server, threads: 1, work: { kind: replay, run: [200us, 400us], sleep: [1ms, 3ms], woken_by: [{ group: client, share: 1 }] } }\n\
         \x20 - { name: client, threads: 2, work: { kind: replay, run: [100us, 300us], sleep: [2ms, 4ms] } }\n\
         \x20 - { name: pool, threads: 4, work: { kind: replay, run: [100us, 300us], sleep: [2ms, 4ms], woken_by: [{ group: pool, share: 0.5 }] } }\n",
    );
    assert_eq!(r.verdict, CellVerdict::Pass, "{}", r.summary);
    let pass = r.agent.as_ref().unwrap().pass(PassKind::Scheduler).unwrap();
    let threads = |g: &str| pass.group(g).unwrap().outcome.clone().unwrap().threads;
    for (group, share) in [("server", 1.0), ("pool", 0.5)] {
        for t in threads(group) {
            let [w] = &t.woken_by[..] else {
                panic!("{group}: one coupling: {t:?}")
            };
            let coupled = w.woken + w.missed;
            eprintln!(
                "{group} thread {}: {} bursts, {} sleeps woken by {}, {} missed",
                t.tid, t.iterations_window, w.woken, w.group, w.missed
            );
            // Its sleeps in the window (each burst is followed by one, but
            // for a burst and sleep cut by the window's ends), `share` of
            // them coupled: within 4 standard deviations of the draws.
            let n = t.iterations_window as f64;
            let sd = (n * share * (1.0 - share)).sqrt();
            assert!(
                (coupled as f64 - n * share).abs() <= 4.0 * sd + 2.0,
                "{group}: {coupled} of {n} sleeps coupled, {share} asked: {t:?}"
            );
            // The waking group's tasks end nearly all of them; a missed
            // wakeup is a wait that outlasted the sleeper's longest sleep
            // plus three of the waker's mean intervals between wakeups.
            // Measured here (2026-12-02): the server 3 of 863 missed (its
            // client wakes it at each burst end it finds it waiting); the
            // pool 23 to 30 of about 430 a thread (its tasks wake each
            // other as often as they wait for it, so some waits run
            // long), 20% with 2 threads.
            let most = if group == "server" { 0.05 } else { 0.15 };
            assert!(
                w.woken >= 50 && w.missed as f64 <= most * coupled as f64,
                "{group}: {} woken, {} missed: {t:?}",
                w.woken,
                w.missed
            );
        }
    }
    assert!(threads("client").iter().all(|t| t.woken_by.is_empty()));
}
