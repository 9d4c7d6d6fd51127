//! The scenario world (issue 15) in VMs: policies, processes, nested
//! cgroups, the timeline, fan-out, messaging and bursty work, knobs,
//! commands and topology, each shown doing what the format says, with the
//! verdicts the bundled inputs describe. Each test is one `scx-harness run`
//! (one VM per VM shape, schedulers hot-swapped); nextest runs them one VM
//! at a time.

mod common;

use std::path::Path;
use std::time::Duration;

use scx_harness::agent::{Pass, PassKind};
use scx_harness::report::{CellResult, CellVerdict};

use common::{cell, run_cells as run};

fn main_pass(c: &CellResult) -> &Pass {
    c.agent
        .as_ref()
        .and_then(|a| a.pass(PassKind::Scheduler))
        .unwrap_or_else(|| {
            panic!(
                "{}/{}: no scheduler pass: {}",
                c.scheduler, c.scenario, c.summary
            )
        })
}

fn window_iterations(p: &Pass, group: &str) -> Vec<u64> {
    p.group(group)
        .and_then(|g| g.outcome.as_ref())
        .map(|o| o.threads.iter().map(|t| t.iterations_window).collect())
        .unwrap_or_default()
}

fn assert_pass(c: &CellResult) {
    assert_eq!(
        c.verdict,
        CellVerdict::Pass,
        "{}/{}: {}\n{}",
        c.scheduler,
        c.scenario,
        c.summary,
        scx_harness::report::describe(c)
    );
}

#[test]
fn vm_the_issue_inputs_give_the_verdicts_they_describe() {
    let dir = tempfile::tempdir().unwrap();
    let cells = run(
        dir.path(),
        &[
            "-s",
            "default",
            "-s",
            "scx_vtime",
            "rt-hog-pinned",
            "cgroup-weight-swap",
            "affinity-churn",
            "cgroup-churn",
            "fan-out",
            "idle-build",
            "hackbench-like",
        ],
    );
    // 1. A SCHED_FIFO hog on CPU 1 (the group's own policy, no wrapper):
    // under the fair class the pinned tasks get RT throttling's window;
    // the free tasks never wait behind the hog, under either scheduler.
    let fair = cell(&cells, "default", "rt-hog-pinned");
    assert_pass(fair);
    for sched in ["default", "scx_vtime"] {
        let c = cell(&cells, sched, "rt-hog-pinned");
        let p = main_pass(c);
        let free = p.group("free").unwrap().probe.max_runnable_ns;
        assert!(
            free < 500_000_000,
            "{sched}: a free task waited {free} ns behind the RT hog"
        );
        if let Some(st) = &p.stall {
            // 6.12 gives sched_ext tasks no share of an RT-held CPU: the
            // stall found is a pinned task's (the kernels issue). A free
            // task caught on CPU 1 when the hog came is handed back by
            // scx_vtime's ops.cpu_release (before it had one, CI of
            // 2026-12-01 found a free task here: rt-hog-free).
            assert!(
                st.group.as_deref().is_some_and(|g| g.starts_with("pinned")),
                "{sched}: {st:?}"
            );
        }
    }
    let hog = main_pass(fair).group("rt-hog").unwrap();
    let hog_cpu = hog.probe.run_ns_window as f64 / main_pass(fair).window().as_nanos() as f64;
    assert!(hog_cpu > 0.5, "the FIFO hog ran {hog_cpu:.2} of a CPU");

    // 2. Weights swapped at 5 s under one slice: about 91/9, then 9/91,
    // for the fair class and for scx_vtime (which claims cgroup weights).
    for sched in ["default", "scx_vtime"] {
        let c = cell(&cells, sched, "cgroup-weight-swap");
        assert_pass(c);
        let shares: Vec<_> = c
            .checks
            .iter()
            .filter(|o| o.name.starts_with("share by weight"))
            .collect();
        assert_eq!(shares.len(), 2, "{:?}", c.checks);
        for s in shares {
            assert!(s.pass && s.unclaimed.is_none(), "{sched}: {s:?}");
        }
        let ops = &main_pass(c).operations;
        assert_eq!(ops.len(), 2, "{ops:?}");
        assert!(
            ops.iter()
                .all(|o| o.error.is_none() && o.late() < Duration::from_millis(100)),
            "{ops:?}"
        );
    }

    // 3. Affinity changed every 100 ms from 500 ms on: 95 times, each on
    // time, no stall.
    for sched in ["default", "scx_vtime"] {
        let c = cell(&cells, sched, "affinity-churn");
        assert_pass(c);
        let ops = &main_pass(c).operations;
        assert_eq!(ops.len(), 95, "{sched}: {}", ops.len());
        let late = ops.iter().map(|o| o.late()).max().unwrap();
        assert!(
            late < Duration::from_millis(100),
            "{sched}: an operation {late:?} late"
        );
        assert!(
            ops.iter()
                .all(|o| o.error.is_none() && o.what.starts_with("8 task(s)")),
            "{ops:?}"
        );
    }

    // 5. Moves every 500 ms, a cgroup made and removed every second:
    // healthy (no error exit, no console warning), no stall.
    for sched in ["default", "scx_vtime"] {
        let c = cell(&cells, sched, "cgroup-churn");
        assert_pass(c);
        let ops = &main_pass(c).operations;
        let moves = ops.iter().filter(|o| o.kind == "move").count();
        let churns = ops.iter().filter(|o| o.kind == "churn").count();
        assert_eq!((moves, churns), (19, 9), "{ops:?}");
        assert!(ops.iter().all(|o| o.error.is_none()), "{ops:?}");
    }

    // 4. Fan-out: each ring's message task wakes its 16 workers every
    // 20 ms (350 rounds in the 7 s window), each worker answers the rounds
    // it sees, and their wakeups are measured by the probe. How many rounds
    // there are moves with the host: 342-350 sent and 339-350 answered on
    // an idle host, 248-302 sent and 193-285 answered under both the fair
    // class and scx_vtime with a busy loop on one of the host's 2 cores
    // (2026-12-03; a slow-host CI had scx_vtime's workers at 275-318). So
    // the rounds are bounded against their own ring's message task, not
    // against 350: a worker answers no round that was not sent (but one
    // at either edge of the window: a round sent before it opened and
    // answered inside, and one answered before its message task, which
    // counts it after the wake-all, was counted), and at least 60% of
    // those that were (71% the worst seen).
    for sched in ["default", "scx_vtime"] {
        let c = cell(&cells, sched, "fan-out");
        assert_pass(c);
        let p = main_pass(c);
        let rounds = window_iterations(p, "rings");
        assert_eq!(rounds.len(), 68);
        for ring in rounds.chunks(17) {
            let (sent, answered) = (ring[0], &ring[1..]);
            assert!(
                sent >= 175,
                "{sched}: {sent} of 350 rounds sent: {rounds:?}"
            );
            assert!(
                answered
                    .iter()
                    .all(|a| *a <= sent + 2 && a * 10 >= sent * 6),
                "{sched}: {sent} rounds sent, answered {answered:?}"
            );
        }
        // Every answered round is a wakeup or follows one (1.14x to 1.39x
        // as many waits as answers measured).
        let answers: u64 = rounds.chunks(17).flat_map(|r| &r[1..]).sum();
        let waits = p.group("rings").unwrap().probe.run_delay.count();
        assert!(
            waits >= answers,
            "{sched}: {waits} waits, {answers} answers"
        );
    }

    // 6. The SCHED_IDLE build beside an interactive task: the fair class
    // passes its own relative bound; the build's jobs ran.
    let c = cell(&cells, "default", "idle-build");
    assert_pass(c);
    for sched in ["default", "scx_vtime"] {
        let p = main_pass(cell(&cells, sched, "idle-build"));
        let jobs: u64 = window_iterations(p, "build").iter().sum();
        assert!(jobs >= 20, "{sched}: {jobs} jobs");
        let o = p.group("build").unwrap().outcome.as_ref().unwrap();
        // Four processes, not four threads of one.
        let pids: std::collections::BTreeSet<u32> = o.threads.iter().map(|t| t.tid).collect();
        assert_eq!(pids.len(), 4);
        assert!(!pids.contains(&o.pid));
    }

    // Messaging between processes: the rate is counted and flows.
    for sched in ["default", "scx_vtime"] {
        let c = cell(&cells, sched, "hackbench-like");
        assert_pass(c);
        let msgs = window_iterations(main_pass(c), "hackbench");
        assert!(msgs.iter().all(|m| *m > 1000), "{sched}: {msgs:?}");
    }
}

const SWAP_LOAD: &str = "\
name: swap-load
description: six swaps planned under 64 spinners and two tickers on 2 vCPUs
duration: 16s
warmup: 1s
groups:
  - { name: hogs, threads: 64, work: { kind: spin } }
  - { name: ticker, threads: 2, work: { kind: periodic, run: 1ms, period: 10ms } }
swaps:
  - { at: 3s, to: scx_simple }
  - { at: 5s, to: cell }
  - { at: 8s, to: scx_simple }
  - { at: 9s, to: cell }
  - { at: 11s, to: scx_simple }
  - { at: 13s, to: cell }
timeline:
  - { at: 1s, every: 1s, nice: { group: ticker, nice: 0 } }
";

const WORLD_OPS: &str = "\
name: world-ops
description: policies, knobs, cpu.max and a command's exit status, each doing what it says
duration: 6s
warmup: 1s
knobs: { kernel.sched_rt_runtime_us: 900000 }
groups:
  - { name: ext, threads: 2, policy: ext, work: { kind: periodic, run: 1ms, period: 10ms } }
  - name: capped
    threads: 2
    cgroup: { name: capped.slice/job.scope, max: { quota: 20ms, period: 100ms } }
    work: { kind: spin }
  - { name: free, threads: 2, work: { kind: spin } }
  - name: cmd
    stop: 3s
    work: { kind: command, argv: [sh, -c, 'sleep 30 & echo $(cat /proc/sys/kernel/sched_rt_runtime_us); exit 3'], exit: 3 }
timeline:
  - { at: 2s, nice: { group: free, nice: 10 } }
  - { at: 2s, policy: { group: ext, policy: batch } }
  - { at: 3s, cpu_max: { cgroup: capped.slice/job.scope } }
";

/// rt-hog-free: the task an RT hog preempts is free to move to the other
/// CPU. scx_vtime claims that (higher_class_handoff: its ops.cpu_release
/// hands the hog CPU's local DSQ back) and is held to it; the fair class
/// does not claim it (on 7.3 it does not always hold) and holds on 6.12;
/// scx_simple, without ops.cpu_release, leaves the task at the head of CPU
/// 1's local DSQ, where 6.12 gives it no share while the hog runs: the
/// property does not hold, reported, not failed, and that wait is the
/// higher class's. Two runs each: whether a spinner is on CPU 1 as the hog
/// comes is timing (6 of 8 single-phase runs caught scx_simple; the
/// scenario has three hog arrivals per run).
#[test]
fn vm_a_task_free_to_move_is_not_held_behind_an_rt_hog() {
    let dir = tempfile::tempdir().unwrap();
    let cells = run(
        dir.path(),
        &[
            "-s",
            "default",
            "-s",
            "scx_vtime",
            "-s",
            "scx_simple",
            "--repeat",
            "2",
            "rt-hog-free",
        ],
    );
    let property = |c: &CellResult| {
        c.checks
            .iter()
            .find(|o| o.name.starts_with("run_delay"))
            .cloned()
            .unwrap_or_else(|| panic!("{}: no run_delay check: {:?}", c.scheduler, c.checks))
    };
    let of = |sched: &str| -> Vec<&CellResult> {
        let v: Vec<_> = cells.iter().filter(|c| c.scheduler == sched).collect();
        assert_eq!(v.len(), 2, "{sched}: {} cell(s)", v.len());
        v
    };
    for c in of("scx_vtime") {
        assert_pass(c);
        let o = property(c);
        assert!(o.pass && o.unclaimed.is_none(), "scx_vtime: {o:?}");
    }
    for c in of("default") {
        assert_pass(c);
        let o = property(c);
        assert!(o.pass && o.unclaimed.is_some(), "default: {o:?}");
    }
    // scx_simple: each cell passes (the property is not its claim, and no
    // wait reaches the stall bound); in at least one run the property
    // does not hold, a free task's wait past the bound, nearly all of it
    // behind the hog.
    let mut caught = 0;
    for c in of("scx_simple") {
        assert_pass(c);
        let o = property(c);
        assert!(o.unclaimed.is_some(), "scx_simple: {o:?}");
        if o.pass {
            continue;
        }
        caught += 1;
        let free = &main_pass(c).group("free").unwrap().probe;
        // A hog phase (2 s) on 6.12; the deadline server's 950 ms on 7.3.
        assert!(
            free.max_wait_ns > 500_000_000,
            "scx_simple: the longest free wait {} ns",
            free.max_wait_ns
        );
        assert!(
            free.max_own_ns < free.max_wait_ns / 10,
            "the wait is behind the hog, not the scheduler's own: {} of {} ns",
            free.max_own_ns,
            free.max_wait_ns
        );
    }
    assert!(
        caught > 0,
        "scx_simple held in both runs: the check caught nothing"
    );
}

#[test]
fn vm_the_timeline_keeps_its_schedule_and_each_operation_does_what_it_says() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p.display().to_string()
    };
    let (swap, ops) = (
        write("swap-load.yaml", SWAP_LOAD),
        write("world-ops.yaml", WORLD_OPS),
    );
    let missing = write(
        "no-knob.yaml",
        &WORLD_OPS
            .replace("name: world-ops", "name: no-knob")
            .replace(
                "kernel.sched_rt_runtime_us: 900000",
                "kernel.no_such_knob: 1",
            ),
    );
    // The fair class as the cell's scheduler: it is the one that enforces
    // cpu.max (6.12 has no bandwidth for sched_ext tasks; later kernels
    // hand it to ops.cgroup_set_bandwidth, which few schedulers have).
    let cells = run(dir.path(), &["-s", "default", &swap, &ops, &missing]);

    // Every swap happens, and begins when it is due or, when the previous
    // one is still detaching and attaching, as soon as that is done: the
    // 64 spinners delay nothing the agent drives. (Before the loader ran
    // at real-time priority, one of six happened: attaching scx_simple
    // took 13 s.) "As soon as" is within 250 ms: the watch loop does one
    // round of its own work (a sample, a stall scan) between the end of
    // one swap and the start of the next, and under TCG in CI that round
    // once took 106 ms right after scx_simple attached.
    let c = cell(&cells, "default", "swap-load");
    let p = main_pass(c);
    assert_eq!(p.swaps.len(), 6, "{:#?}", p.swaps);
    let mut free_at = 0u64;
    for s in &p.swaps {
        let due = s.planned_ns.max(free_at);
        assert!(
            s.at_ns < due + 250_000_000,
            "a swap planned at {} ns began at {} ns (free at {free_at}): {:#?}",
            s.planned_ns,
            s.at_ns,
            p.swaps
        );
        assert!(s.attach_ms.is_some(), "{s:?}");
        free_at = s.at_ns + (s.detach_ms + s.attach_ms.unwrap()) * 1_000_000;
    }
    let late = p.operations.iter().map(|o| o.late()).max().unwrap();
    assert!(
        late < Duration::from_millis(100),
        "an operation {late:?} late: {:#?}",
        p.operations
    );

    let c = cell(&cells, "default", "world-ops");
    assert_pass(c);
    let p = main_pass(c);
    assert!(
        p.operations.iter().all(|o| o.error.is_none()),
        "{:#?}",
        p.operations
    );
    // cpu.max 20 ms per 100 ms: the capped cgroup gets 0.2 CPU until the
    // limit is lifted at 3 s, then about its fair part of 2 CPUs.
    let g = p.groups.iter().position(|g| g.name == "capped").unwrap();
    let before = p.cpu_between(g, Duration::from_secs(1), Duration::from_secs(3)) / 2e9;
    let after = p.cpu_between(g, Duration::from_millis(3500), Duration::from_millis(5500)) / 2e9;
    assert!(
        (0.12..=0.28).contains(&before),
        "capped: {before:.2} CPU under 20ms/100ms"
    );
    assert!(after > 0.4, "capped: {after:.2} CPU once lifted");
    // The command exited 3 by itself, as it had to; it saw the knob.
    let cmd = p.group("cmd").unwrap().outcome.as_ref().unwrap();
    assert_eq!(cmd.threads[0].exit_status, Some(3), "{cmd:?}");
    let out =
        std::fs::read_to_string(Path::new(&c.dir).join("scheduler-cmd-0.out")).unwrap_or_default();
    assert_eq!(out.trim(), "900000");

    // A knob the kernel lacks: the cell errs with its name, nothing runs.
    let c = cell(&cells, "default", "no-knob");
    assert_eq!(c.verdict, CellVerdict::Error, "{}", c.summary);
    assert!(c.summary.contains("kernel.no_such_knob"), "{}", c.summary);
}

const TOPOLOGY_PROBE: &str = "\
name: topology-probe
description: the guest sees the topology the scenario asks for
vm: { cpus: 4, memory: 2G, topology: { sockets: 2, cores: 1, threads: 2, numa: true } }
duration: 3s
warmup: 1s
groups:
  - name: look
    stop: 2s
    work: { kind: command, argv: [sh, -c, 'cat /sys/devices/system/cpu/cpu0/topology/thread_siblings_list; ls -d /sys/devices/system/node/node*; cat /sys/devices/system/cpu/cpu0/cache/index3/shared_cpu_list'], exit: 0 }
";

#[test]
fn vm_a_topology_with_smt_llcs_and_numa_boots_and_cpus_go_offline_and_back() {
    let dir = tempfile::tempdir().unwrap();
    let probe = dir.path().join("topology-probe.yaml");
    std::fs::write(&probe, TOPOLOGY_PROBE).unwrap();
    let cells = run(
        dir.path(),
        &[
            "-s",
            "default",
            "topology-hotplug",
            &probe.display().to_string(),
        ],
    );
    let c = cell(&cells, "default", "topology-probe");
    assert_pass(c);
    let out = std::fs::read_to_string(Path::new(&c.dir).join("scheduler-look-0.out")).unwrap();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines,
        [
            "0-1",
            "/sys/devices/system/node/node0",
            "/sys/devices/system/node/node1",
            "0-1"
        ],
        "{out}"
    );
    let c = cell(&cells, "default", "topology-hotplug");
    assert_pass(c);
    let ops = &main_pass(c).operations;
    assert_eq!(ops.len(), 4, "{ops:#?}");
    assert!(ops.iter().all(|o| o.error.is_none()), "{ops:#?}");
}

/// The bundled kernel-work scenario with one more group: a shell that, at
/// 3 s, finds the VM's scratch disk by its serial and exits 7 only if the
/// block layer has completed more than 100 reads and 100 writes on it
/// (its counters in /sys/block/vdX/stat), shell builtins only.
fn kernel_work_with_a_look_at_the_disk() -> String {
    let bundled =
        std::fs::read_to_string(scx_harness::scenario::bundled_dir().join("kernel-work.yaml"))
            .unwrap();
    let look = r#"  - name: disk-seen
    start: 3s
    stop: 5s
    work:
      kind: command
      argv: [sh, -c, 'for d in /sys/block/*; do s=; read s < $d/serial 2>/dev/null; if [ "$s" = scx-scratch ]; then read r rm rs rt w rest < $d/stat; echo "$d: $r reads, $w writes"; [ "$w" -gt 100 ] && [ "$r" -gt 100 ] && exit 7; fi; done; exit 1']
      exit: 7
checks:
"#;
    assert!(bundled.contains("\nchecks:\n"));
    bundled.replacen("checks:\n", look, 1)
}

#[test]
fn vm_kernel_work_makes_the_kernel_work_and_the_interactive_bounds_tell_schedulers_apart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kernel-work.yaml");
    std::fs::write(&path, kernel_work_with_a_look_at_the_disk()).unwrap();
    let path = path.display().to_string();
    let cells = run(dir.path(), &["-s", "default", "-s", "scx_simple", &path]);

    // The fair class passes every check, the disk's counters included (a
    // command that does not exit 7 is an error of the cell).
    let fair = cell(&cells, "default", "kernel-work");
    assert_pass(fair);
    for sched in ["default", "scx_simple"] {
        let c = cell(&cells, sched, "kernel-work");
        let a = c.agent.as_ref().expect("agent output");
        for kind in [PassKind::Fair, PassKind::Scheduler] {
            let p = a.pass(kind).unwrap();
            for g in ["timer", "kworkers", "disk"] {
                let n: u64 = window_iterations(p, g).iter().sum();
                assert!(n > 0, "{sched} {kind:?}: {g} did no kernel work");
            }
        }
    }
    // scx_simple (global vtime, 20 ms slices, no preemption) serves the
    // kernel work after the hogs' slices: it does not claim `interactive`,
    // and the bounds of
    // that property are reported as not held, not passed, each with the
    // measured rate (0.25-0.31x of the fair class's when measured).
    let simple = cell(&cells, "scx_simple", "kernel-work");
    let bounds: Vec<_> = simple
        .checks
        .iter()
        .filter(|o| o.unclaimed == Some(scx_harness::scenario::Property::Interactive))
        .collect();
    assert_eq!(bounds.len(), 3, "{:#?}", simple.checks);
    let below = bounds.iter().filter(|o| !o.pass).count();
    assert!(
        below >= 2,
        "scx_simple held the interactive bounds: {bounds:#?}"
    );
    for o in simple.checks.iter().filter(|o| o.unclaimed.is_none()) {
        assert!(o.pass, "scx_simple: {o:?}");
    }
}

#[test]
fn vm_a_partial_scheduler_runs_only_the_sched_ext_groups_and_the_cell_checks_it() {
    // Named alone, the partial one gets the bundled scenarios that have a
    // SCHED_EXT group: partial-mode only.
    let dir = tempfile::tempdir().unwrap();
    let mut cells = run(dir.path(), &["-s", "scx_qmap_partial"]);
    let ran: Vec<_> = cells.iter().map(|c| c.scenario.as_str()).collect();
    assert_eq!(ran, ["partial-mode"]);
    let full = tempfile::tempdir().unwrap();
    cells.extend(run(full.path(), &["-s", "scx_qmap", "partial-mode"]));
    // As the kernel reports it, as the window opened: scx_qmap -p holds the
    // SCHED_EXT groups and not the SCHED_OTHER one; scx_qmap holds all.
    for (sched, switch_all, fair_tick_on_ext) in
        [("scx_qmap_partial", 0, false), ("scx_qmap", 1, true)]
    {
        let c = cell(&cells, sched, "partial-mode");
        assert_pass(c);
        let a = c.agent.as_ref().unwrap();
        let attached = a.scheduler.as_ref().and_then(|r| r.attached.as_ref());
        assert_eq!(attached.map(|c| c.switch_all), Some(switch_all), "{sched}");
        let p = main_pass(c);
        for g in ["ext-spin", "ext-tick", "fair-tick"] {
            let seen = p
                .group(g)
                .and_then(|r| r.on_sched_ext)
                .unwrap_or_else(|| panic!("{sched}: {g}: where its tasks ran is unknown"));
            let want = g.starts_with("ext") || fair_tick_on_ext;
            assert!(seen.tasks > 0, "{sched} {g}: {seen:?}");
            assert_eq!(seen.on_ext == seen.tasks, want, "{sched} {g}: {seen:?}");
            assert!(
                seen.on_ext == 0 || seen.on_ext == seen.tasks,
                "{sched} {g}: {seen:?}"
            );
        }
    }
}

#[test]
fn a_partial_scheduler_on_a_scenario_without_a_sched_ext_group_is_refused_before_booting() {
    let dir = tempfile::tempdir().unwrap();
    let cache = scx_harness::kernel::Cache::user();
    let (code, _, stderr) = common::run(
        common::harness(cache.root())
            .args([
                "run",
                "--kernel",
                "lts",
                "-s",
                "scx_qmap_partial",
                "idle-baseline",
                "--out",
            ])
            .arg(dir.path().join("run")),
    );
    assert_eq!(code, Some(65), "{stderr}");
    assert!(
        stderr.contains("idle-baseline.yaml: scx_qmap_partial switches only SCHED_EXT tasks")
            && stderr.contains("fix: give a group `policy: ext`"),
        "{stderr}"
    );
    assert!(!dir.path().join("run").exists(), "it made a run directory");
}
