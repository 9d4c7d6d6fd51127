//! VM tests: each boots the real sched_ext kernel under QEMU through
//! virtme-ng (TCG on hosts where KVM does not work) and checks what came
//! back. nextest runs them one at a time (`.config/nextest.toml`, group vm).

mod common;

use std::path::Path;
use std::time::Duration;

use scx_harness::vm::console::CrashKind;
use scx_harness::vm::{self, GuestCommand, Outcome, VmSpec};

fn sh(script: &str) -> GuestCommand {
    GuestCommand::Exec(vec!["sh".into(), "-c".into(), script.into()])
}

fn spec(work: &Path, command: GuestCommand, timeout: Duration) -> VmSpec {
    let mut s = VmSpec::new(common::test_kernel(), work.to_path_buf(), command);
    s.timeout = Some(timeout);
    s
}

#[test]
fn vm_boots_with_sched_ext_disabled_and_the_right_kernel() {
    let work = tempfile::tempdir().unwrap();
    let r = vm::run(&spec(
        work.path(),
        sh("cat /sys/kernel/sched_ext/state; uname -r"),
        Duration::from_secs(120),
    ))
    .unwrap();
    assert_eq!(
        r.outcome,
        Outcome::Exited { code: 0 },
        "{}",
        common::explain_vm(&r)
    );
    let lines: Vec<&str> = r.stdout.lines().collect();
    let expected =
        scx_harness::kernel::bzimage_release(&common::test_kernel()).expect("release in bzImage");
    assert_eq!(
        lines,
        ["disabled", expected.as_str()],
        "{}",
        common::explain_vm(&r)
    );
    // The console log is the kernel's, from the first line of boot.
    let console = std::fs::read_to_string(&r.console_log).unwrap();
    assert!(
        console.contains("Linux version"),
        "{}",
        common::explain_vm(&r)
    );
    assert!(r.crashes.is_empty(), "{:?}", r.crashes);
}

/// Boots catalog kernel `name` and checks what its guest sees: the
/// release the catalog's entry recorded, sched_ext present and idle, the
/// kernel config readable where libbpf looks (IKCONFIG, or for Debian's
/// prebuilt kernel `/boot/config-RELEASE`), and its modules loadable.
fn boots_named_kernel(name: &str) {
    let entry = common::named_kernel(name);
    let work = tempfile::tempdir().unwrap();
    let mut s = VmSpec::new(
        entry.bzimage(),
        work.path().to_path_buf(),
        sh("cat /sys/kernel/sched_ext/state; uname -r; \
            if [ -e /proc/config.gz ]; then zcat /proc/config.gz; else cat /boot/config-$(uname -r); fi | grep -c '^CONFIG_SCHED_CLASS_EXT=y'; \
            if grep -q '^9p ' /proc/modules; then echo module; else echo builtin; fi"),
    );
    s.timeout = Some(Duration::from_secs(120));
    let r = vm::run(&s).unwrap();
    assert_eq!(
        r.outcome,
        Outcome::Exited { code: 0 },
        "{}",
        common::explain_vm(&r)
    );
    let lines: Vec<&str> = r.stdout.lines().collect();
    let nine_p = if entry.modules().is_dir() {
        "module"
    } else {
        "builtin"
    };
    assert_eq!(
        lines,
        ["disabled", entry.meta.release.as_str(), "1", nine_p],
        "{}",
        common::explain_vm(&r)
    );
    assert!(r.crashes.is_empty(), "{:?}", r.crashes);
}

#[test]
fn vm_kernel_lts_boots_with_sched_ext() {
    boots_named_kernel("lts");
}

#[test]
fn vm_kernel_stable_boots_with_sched_ext() {
    boots_named_kernel("stable");
}

#[test]
fn vm_kernel_debian_boots_as_shipped_with_its_modules() {
    boots_named_kernel("debian");
}

#[test]
fn vm_guest_exit_code_and_output_come_back() {
    let work = tempfile::tempdir().unwrap();
    let r = vm::run(&spec(
        work.path(),
        sh("echo to-stdout; echo to-stderr >&2; exit 42"),
        Duration::from_secs(120),
    ))
    .unwrap();
    assert_eq!(
        r.outcome,
        Outcome::Exited { code: 42 },
        "{}",
        common::explain_vm(&r)
    );
    assert_eq!(r.stdout, "to-stdout\n", "{}", common::explain_vm(&r));
    assert_eq!(r.stderr, "to-stderr\n", "{}", common::explain_vm(&r));
    assert!(r.first_output.is_some());
}

#[test]
fn vm_hung_guest_is_killed_at_its_deadline_with_nothing_left() {
    let work = tempfile::tempdir().unwrap();
    let timeout = Duration::from_secs(45);
    let r = vm::run(&spec(
        work.path(),
        sh("echo started; exec sleep 100000"),
        timeout,
    ))
    .unwrap();
    assert_eq!(
        r.outcome,
        Outcome::TimedOut {
            reached_guest: true
        },
        "{}",
        common::explain_vm(&r)
    );
    assert!(r.elapsed >= timeout, "{:?}", r.elapsed);
    assert!(
        r.elapsed < timeout + Duration::from_secs(15),
        "kill took too long: {:?}",
        r.elapsed
    );
    let left = common::qemus_mentioning(work.path());
    assert!(
        left.is_empty(),
        "QEMU still running after the timeout: {left:?}"
    );
    // The classified error says what happened and where the console is.
    let err = format!("{:#}", r.exit_code().unwrap_err());
    assert!(
        err.contains("deadline") && err.contains("console.log"),
        "{err}"
    );
    assert_eq!(
        scx_harness::classify(&r.exit_code().unwrap_err()),
        Some(scx_harness::Failure::Infrastructure)
    );
}

#[test]
fn vm_kernel_panic_is_reported_as_a_crash_at_once() {
    let work = tempfile::tempdir().unwrap();
    let timeout = Duration::from_secs(120);
    let r = vm::run(&spec(
        work.path(),
        sh("echo c > /proc/sysrq-trigger; sleep 1000"),
        timeout,
    ))
    .unwrap();
    assert_eq!(
        r.outcome,
        Outcome::KernelCrash,
        "{}",
        common::explain_vm(&r)
    );
    assert!(
        r.elapsed < timeout / 2,
        "the VM did not end at the panic: {:?}",
        r.elapsed
    );
    let panic = r
        .crashes
        .iter()
        .find(|c| c.kind == CrashKind::Panic)
        .expect("a panic line");
    assert!(panic.text.contains("sysrq triggered crash"), "{panic:?}");
    let err = r.exit_code().unwrap_err();
    assert_eq!(
        scx_harness::classify(&err),
        Some(scx_harness::Failure::KernelCrash)
    );
    assert!(
        format!("{err:#}").contains("Kernel panic - not syncing"),
        "{err:#}"
    );
    assert!(common::qemus_mentioning(work.path()).is_empty());
}

/// Starts `scx-harness vm -- sleep` with its run directory under `tmp`,
/// waits until the guest command has started, and returns the child.
fn harness_with_sleeping_guest(tmp: &Path) -> std::process::Child {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_scx-harness"))
        .env("TMPDIR", tmp)
        .arg("vm")
        .arg("--kernel")
        .arg(common::test_kernel())
        .args(["--timeout", "10m", "--", "sleep", "100000"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        let started = std::fs::read_dir(tmp)
            .unwrap()
            .flatten()
            .any(|d| d.path().join("shared/started").exists());
        if started {
            return child;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "scx-harness exited before the guest started"
        );
        assert!(
            std::time::Instant::now() < deadline,
            "the guest never started"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Polls until no QEMU mentions `dir`, or fails after `limit`.
fn assert_qemus_gone(dir: &Path, limit: Duration) {
    let deadline = std::time::Instant::now() + limit;
    loop {
        let left = common::qemus_mentioning(dir);
        if left.is_empty() {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "QEMU survived the harness: {left:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn vm_sigterm_to_the_harness_stops_the_vm_and_exits_130() {
    let tmp = tempfile::tempdir().unwrap();
    let mut child = harness_with_sleeping_guest(tmp.path());
    assert!(
        !common::qemus_mentioning(tmp.path()).is_empty(),
        "no QEMU found for the running VM"
    );
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130));
    // The harness waits for the tree to exit before it returns.
    assert!(
        common::qemus_mentioning(tmp.path()).is_empty(),
        "QEMU left after SIGTERM"
    );
}

#[test]
fn vm_sigkill_of_the_harness_takes_qemu_with_it() {
    let tmp = tempfile::tempdir().unwrap();
    let mut child = harness_with_sleeping_guest(tmp.path());
    assert!(
        !common::qemus_mentioning(tmp.path()).is_empty(),
        "no QEMU found for the running VM"
    );
    child.kill().unwrap(); // SIGKILL: no handler, no Drop runs in the harness
    child.wait().unwrap();
    // The kernel delivers the parent-death signal and tears the PID
    // namespace down asynchronously; it is quick, but not instant.
    assert_qemus_gone(tmp.path(), Duration::from_secs(10));
}

#[test]
fn vm_qemu_that_cannot_start_is_an_infrastructure_failure() {
    let work = tempfile::tempdir().unwrap();
    let mut s = spec(work.path(), sh("true"), Duration::from_secs(120));
    s.memory = "64T".into(); // more than any host can give
    let r = vm::run(&s).unwrap();
    match &r.outcome {
        Outcome::InfraFailure { reason } => {
            assert!(
                reason.contains("never reached the guest command"),
                "{reason}"
            );
            assert!(
                reason.contains("qemu-system-x86_64"),
                "QEMU's own message is missing: {reason}"
            );
        }
        other => panic!(
            "expected an infrastructure failure, got {other:?}\n{}",
            common::explain_vm(&r)
        ),
    }
    assert!(r.elapsed < Duration::from_secs(60), "{:?}", r.elapsed);
    assert_eq!(
        scx_harness::classify(&r.exit_code().unwrap_err()),
        Some(scx_harness::Failure::Infrastructure)
    );
}

/// Tracepoint (un)registrations mid-run must not re-patch kernel text: the
/// guest's boot arguments pin the static calls of the probe's tracepoints
/// (vm::BOOT_ARGS; each is checked enabled at boot). Here each of those
/// events is switched on and off 5,000 times in a trace instance of the
/// test's while stress-ng's context-switch load runs on both vCPUs (the
/// one of 2026-11-26 did sched_wakeup alone, 20,000 times). Without the pinning
/// each switch rewrites the `call` in try_to_wake_up and this guest died
/// with "Oops: int3" within seconds, 4 times in 4 (2026-11-26). The clock
/// source also stays the TSC (`tsc=reliable`).
#[test]
fn vm_tracepoint_registrations_do_not_patch_kernel_text_under_load() {
    let work = tempfile::tempdir().unwrap();
    let events = vm::BOOT_ARGS
        .iter()
        .find_map(|a| a.strip_prefix("trace_event="))
        .expect("a trace_event= boot argument")
        .split(',')
        .map(|e| e.replace(':', "/"))
        .collect::<Vec<_>>()
        .join(" ");
    assert!(events.contains("sched/sched_migrate_task"), "{events}");
    // The second function on the tracepoints the comm recorder does not
    // hook (sched_migrate_task, the kicks, cpu_idle): our instance's events.
    let (instance, instance_events) = vm::BOOT_ARGS
        .iter()
        .find_map(|a| a.strip_prefix("trace_instance="))
        .and_then(|a| a.split_once(','))
        .map(|(i, e)| (i.to_string(), e.replace(':', "/").replace(',', " ")))
        .expect("a trace_instance= boot argument");
    for e in [
        "ipi/ipi_send_cpu",
        "sched/sched_wake_idle_without_ipi",
        "power/cpu_idle",
    ] {
        assert!(events.contains(e) && instance_events.contains(e), "{e}");
    }
    let r = vm::run(&spec(
        work.path(),
        sh(&format!(
            "set -e
            T=/sys/kernel/tracing
            [ -e $T/tracing_on ] || mount -t tracefs nodev $T
            for e in {events}; do grep -q 1 $T/events/$e/enable; done
            for e in {instance_events}; do grep -q 1 $T/instances/{instance}/events/$e/enable; done
            (cd /tmp && exec stress-ng --switch 2 --timeout 120s >/dev/null 2>&1) &
            LOAD=$!
            mkdir -p $T/instances/t
            i=0
            for e in {events}; do
                F=$T/instances/t/events/$e/enable
                j=0
                while [ $j -lt 5000 ]; do echo 1 > $F; echo 0 > $F; j=$((j+1)); done
                i=$((i+j))
            done
            kill -0 $LOAD
            kill $LOAD
            cat /sys/devices/system/clocksource/clocksource0/current_clocksource
            echo toggled $i"
        )),
        Duration::from_secs(180),
    ))
    .unwrap();
    assert_eq!(
        r.outcome,
        Outcome::Exited { code: 0 },
        "{}",
        common::explain_vm(&r)
    );
    assert!(r.crashes.is_empty(), "{:?}", r.crashes);
    assert_eq!(
        r.stdout.lines().collect::<Vec<_>>(),
        [
            "tsc",
            &format!("toggled {}", 5000 * events.split(' ').count())
        ],
        "{}",
        common::explain_vm(&r)
    );
}

/// `bench probe` end to end, in two short rounds a side: both sides ran
/// (every round counted ping-pong round trips), and the verdict is
/// printed from the upper quartiles with its interval; a cost round then
/// has the kernel time each of the probe's programs, and both of the
/// busy ones ran and took time. The "with" rounds also run the
/// guest-wide stall watch (`--stall-watch guest`), as its cost is measured
/// in BENCHMARKS.md.
#[test]
fn vm_bench_probe_measures_both_sides_and_judges_them() {
    let dir = tempfile::tempdir().unwrap();
    let (code, out, err) = common::run(
        common::harness(dir.path())
            .args([
                "bench",
                "probe",
                "--rounds",
                "2",
                "--seconds",
                "1",
                "--cost-rounds",
                "1",
                "--stall-watch",
                "guest",
                "--kernel",
            ])
            .arg(common::test_kernel()),
    );
    assert_eq!(code, Some(0), "{out}\n{err}");
    for prog in ["on_switch", "on_wakeup"] {
        let row: Vec<&str> = out
            .lines()
            .find(|l| l.starts_with(&format!("| {prog} |")))
            .unwrap_or_else(|| panic!("no cost row for {prog}:\n{out}"))
            .trim_matches('|')
            .split('|')
            .map(str::trim)
            .collect();
        let (per_sec, ns): (f64, f64) = (row[1].parse().unwrap(), row[2].parse().unwrap());
        // Thousands of runs a second; under TCG a run takes from tens of
        // ns to some µs.
        assert!(per_sec > 1000.0, "{prog}: {out}");
        assert!(ns > 10.0 && ns < 100_000.0, "{prog}: {out}");
    }
    assert!(out.contains("the programs together: "), "{out}");
    let rounds: Vec<(f64, f64)> = out
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.trim_matches('|').split('|').map(str::trim).collect();
            match f[..] {
                [i, w, o] if i.parse::<u32>().is_ok() => Some((w.parse().ok()?, o.parse().ok()?)),
                _ => None,
            }
        })
        .collect();
    assert_eq!(rounds.len(), 2, "{out}");
    for (with, without) in &rounds {
        // Ping-pong under TCG runs tens of thousands of round trips a second.
        assert!(*with > 1000.0 && *without > 1000.0, "{out}");
    }
    assert!(out.contains("upper quartile with"), "{out}");
    assert!(
        out.contains("target: upper-quartile loss under 5%: "),
        "{out}"
    );
}
