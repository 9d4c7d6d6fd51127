//! The host target (`--target host`), proven where a kernel with sched_ext
//! runs: inside a VM of the test kernel, the harness runs `run --target
//! host` on the guest's own kernel, as it would on a lab machine. The
//! guest sees this checkout read-only, so its runs use `--no-build` (the
//! schedulers are built here first) and write under the VM's shared
//! directory. Each test boots one VM; nextest runs them one at a time
//! (`binary(host)` is in the vm group).

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use scx_harness::report::{CellResult, CellVerdict, Target};

const HARNESS: &str = env!("CARGO_BIN_EXE_scx-harness");

/// The default registry's scx_simple, and scx_fault stalling tasks named
/// `victim`.
const REGISTRY: &str = "schedulers:
  - name: default
    kind: default
  - name: scx_simple
    kind: binary
    source: { kernel_example: scx_simple }
    ops: simple
  - name: stalls_victim
    kind: binary
    source: { workspace: scx_fault }
    ops: \"fault_*\"
    args: [--stall-comm, victim]
    fixture: true
  - name: scx_fault
    kind: binary
    source: { workspace: scx_fault }
    ops: \"fault_*\"
    fixture: true
";

/// A task that scx_fault's --stall-comm never runs, beside two spinners,
/// for 20 s unless the stall check stops it; bound 1 s.
const VICTIM: &str = "name: victim-stall
description: a task that never runs is found, and the scheduler detached
duration: 20s
warmup: 1s
groups:
  - { name: victim, threads: 1, work: { kind: periodic, run: 1ms, period: 20ms } }
  - { name: hostspin, threads: 2, work: { kind: spin } }
checks:
  - stall: { max_runnable: 1s }
";

/// Two spinners for 30 s, to be interrupted.
const LONG: &str = "name: long-spin
description: long enough to be killed mid-run
duration: 30s
groups:
  - { name: hostspin, threads: 2, work: { kind: spin } }
checks:
  - stall: { max_runnable: 2s }
";

/// The run after a killed one: what it must do is clean up and finish,
/// not meet a timing bound. (It was idle-baseline, whose stall bound, then 30 ms,
/// the fair class itself crossed once in a CI, on this host target inside
/// a TCG guest: a napper runnable 56.6 ms during the warm-up, 114 ms in
/// the fair pass before it.)
const SHORT: &str = "name: short-spin
description: a short run after a killed one
duration: 3s
warmup: 500ms
groups:
  - { name: hostspin, threads: 2, work: { kind: spin } }
checks:
  - stall: { max_runnable: 2s }
  - scheduler_healthy: {}
";

struct Fixture {
    dir: tempfile::TempDir,
    registry: PathBuf,
}

impl Fixture {
    /// The registry and scenarios written, and every scheduler of the
    /// registry built here for the test kernel (the guest cannot build).
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let registry = dir.path().join("registry.yaml");
        std::fs::write(&registry, REGISTRY).unwrap();
        std::fs::write(dir.path().join("victim-stall.yaml"), VICTIM).unwrap();
        std::fs::write(dir.path().join("long-spin.yaml"), LONG).unwrap();
        std::fs::write(dir.path().join("short-spin.yaml"), SHORT).unwrap();
        std::fs::write(dir.path().join("delay-ab.yaml"), common::DELAYED).unwrap();
        let kernel = common::test_kernel();
        let (code, out, err) = common::run(
            std::process::Command::new(HARNESS)
                .args(["schedulers", "build", "--registry"])
                .arg(&registry)
                .arg("--kernel")
                .arg(&kernel)
                .args(["scx_simple", "stalls_victim", "scx_fault"]),
        );
        assert_eq!(code, Some(0), "building the schedulers: {out}\n{err}");
        Fixture { dir, registry }
    }

    fn scenario(&self, name: &str) -> String {
        self.dir
            .path()
            .join(format!("{name}.yaml"))
            .display()
            .to_string()
    }

    /// `run --target host` as the guest runs it, with `extra` arguments.
    fn host_run(&self, out: &str, extra: &str) -> String {
        format!(
            "{HARNESS} run --target host --no-build --registry {} --out \"$SCX_HARNESS_SHARED/{out}\" {extra}",
            self.registry.display()
        )
    }
}

/// Runs `script` with sh in a VM of the test kernel (2 vCPUs); returns its
/// stdout and the VM's shared directory.
fn in_guest(script: &str, timeout: Duration) -> (String, PathBuf) {
    in_guest_writing(script, timeout, &[])
}

/// [`in_guest`], with `rw` writable in the guest too.
fn in_guest_writing(script: &str, timeout: Duration, rw: &[PathBuf]) -> (String, PathBuf) {
    let work = tempfile::tempdir().unwrap().keep();
    let mut spec = scx_harness::vm::VmSpec::new(
        common::test_kernel(),
        work,
        scx_harness::vm::GuestCommand::Exec(vec!["sh".into(), "-c".into(), script.into()]),
    );
    spec.timeout = Some(timeout);
    spec.rw_dirs = rw.to_vec();
    let r = scx_harness::vm::run(&spec).unwrap_or_else(|e| panic!("{e:#}"));
    assert!(
        matches!(r.outcome, scx_harness::vm::Outcome::Exited { .. }),
        "{}",
        common::explain_vm(&r)
    );
    (r.stdout.clone(), r.shared_dir.clone())
}

/// The value after `KEY` on the line that starts with it.
fn said<'a>(out: &'a str, key: &str) -> &'a str {
    out.lines()
        .find_map(|l| l.strip_prefix(key).map(str::trim))
        .unwrap_or_else(|| panic!("no `{key}` line in:\n{out}"))
}

fn results(dir: &Path) -> Vec<CellResult> {
    scx_harness::report::load_run(dir).unwrap_or_else(|e| panic!("{}: {e:#}", dir.display()))
}

fn verdicts(rs: &[CellResult]) -> Vec<(String, String, CellVerdict)> {
    let mut v: Vec<_> = rs
        .iter()
        .map(|r| (r.scheduler.clone(), r.scenario.clone(), r.verdict))
        .collect();
    v.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
    v
}

/// The same cells on both targets get the same verdicts; the host's
/// results say where they ran; the stalling scheduler is detached within
/// the bound plus one second of the stalled task's wakeup.
#[test]
fn vm_host_target_verdicts_match_the_vm_targets_and_a_stall_is_detached_at_once() {
    let f = Fixture::new();
    let cells = format!(
        "-s scx_simple -s stalls_victim idle-baseline {}",
        f.scenario("victim-stall")
    );
    // The VM target, from here.
    let vm_out = f.dir.path().join("vm-run");
    let (code, out, err) = common::run(
        std::process::Command::new(HARNESS)
            .args(["run", "--registry"])
            .arg(&f.registry)
            .arg("--kernel")
            .arg(common::test_kernel())
            .arg("--out")
            .arg(&vm_out)
            .args(cells.split_whitespace()),
    );
    assert_eq!(code, Some(1), "one cell fails its checks:\n{out}\n{err}");
    // The host target, in a guest of the same kernel.
    let script = format!(
        "cd /tmp; {}; echo \"EXIT $?\"; echo \"STATE $(cat /sys/kernel/sched_ext/state)\"; \
         echo \"CGROUPS $(ls -d /sys/fs/cgroup/scx-harness 2>/dev/null | wc -l)\"",
        f.host_run("run", &cells)
    );
    let (gout, shared) = in_guest(&script, Duration::from_secs(300));
    assert_eq!(said(&gout, "EXIT"), "1", "{gout}");
    assert_eq!(said(&gout, "STATE"), "disabled", "{gout}");
    assert_eq!(said(&gout, "CGROUPS"), "0", "{gout}");
    let (vm, host) = (results(&vm_out), results(&shared.join("run")));
    assert_eq!(verdicts(&vm), verdicts(&host));
    assert_eq!(host.len(), 4);
    for r in &host {
        assert_eq!(r.accel, "host");
        match &r.target {
            Target::Host { cpus, kernel, .. } => {
                assert_eq!(cpus, "0-1");
                assert_eq!(kernel, &vm[0].kernel, "the guest runs the test kernel");
            }
            t => panic!("{}: ran on {t:?}", r.dir.display()),
        }
    }
    assert!(vm.iter().all(|r| r.target == Target::Vm));
    let stalled = host
        .iter()
        .find(|r| r.scheduler == "stalls_victim" && r.scenario == "victim-stall")
        .unwrap();
    assert_eq!(stalled.verdict, CellVerdict::Fail, "{}", stalled.summary);
    let pass = stalled
        .agent
        .as_ref()
        .unwrap()
        .pass(scx_harness::agent::PassKind::Scheduler)
        .unwrap();
    let st = pass.stall.as_ref().expect("the stall stopped the pass");
    assert_eq!(st.comm, "victim");
    // Detached through the kernel (the loader of a stalling scheduler may
    // be starved itself), not by asking the loader.
    let dmesg = std::fs::read_to_string(stalled.dir.join("dmesg.txt")).unwrap();
    assert!(dmesg.contains("sysrq"), "{dmesg}");
    let detached = Duration::from_nanos(st.detached_after_ns.expect("sched_ext disabled"));
    let stuck = Duration::from_nanos(st.waited_ns) + detached;
    assert!(
        stuck <= Duration::from_secs(2),
        "the victim waited {:?} and the scheduler went {detached:?} after: longer than the 1 s bound + 1 s",
        Duration::from_nanos(st.waited_ns)
    );
}

/// `sweep --target host`: scx_fault's injected delay swept over 0 and
/// 10 ms on the guest's own kernel, each point hot-swapped on the running
/// kernel as on a lab machine; the ranking is right, every run says it ran
/// on the host, and nothing is left attached or in the harness's cgroups.
#[test]
fn vm_host_target_sweep_ranks_an_injected_delay_on_the_running_kernel() {
    let f = Fixture::new();
    let script = format!(
        "cd /tmp; {HARNESS} sweep scx_fault {} --target host --no-build --registry {} \
         --param delay-comm=delayed --param delay-ms=0,10 --objective run_delay.delayed.p99 \
         --samples 2 --rounds 2 --seed 1 --out \"$SCX_HARNESS_SHARED/sweep\"; echo \"EXIT $?\"; \
         echo \"STATE $(cat /sys/kernel/sched_ext/state)\"; \
         echo \"CGROUPS $(ls -d /sys/fs/cgroup/scx-harness 2>/dev/null | wc -l)\"",
        f.scenario("delay-ab"),
        f.registry.display()
    );
    let (gout, shared) = in_guest(&script, Duration::from_secs(500));
    assert_eq!(said(&gout, "EXIT"), "0", "{gout}");
    assert_eq!(said(&gout, "STATE"), "disabled", "{gout}");
    assert_eq!(said(&gout, "CGROUPS"), "0", "{gout}");
    let out = shared.join("sweep");
    let r: scx_harness::sweep::Report =
        serde_json::from_slice(&std::fs::read(out.join("sweep.json")).unwrap()).unwrap();
    let point = |ms: &str| {
        let label = format!("delay-comm=delayed delay-ms={ms}");
        r.points
            .iter()
            .find(|p| p.point.label == label)
            .unwrap_or_else(|| panic!("no point {ms}:\n{gout}"))
    };
    assert_eq!(
        point("0").status,
        scx_harness::sweep::Status::Best,
        "{gout}"
    );
    let median = |ms: &str| point(ms).metrics[0].median.expect("measured");
    assert!(
        median("10") > 2.0 * median("0"),
        "p99 at 10 ms {} against {} at 0 ms\n{gout}",
        median("10"),
        median("0")
    );
    let runs = results(&out);
    assert!(runs.len() >= r.runs, "every run that counts has its result");
    for c in &runs {
        assert_eq!(c.accel, "host", "{}", c.dir.display());
        assert!(matches!(c.target, Target::Host { .. }), "{:?}", c.target);
    }
}

/// `bisect --target host`: the search of `bisect::vm_bisect_*` (scx_local
/// over nine commits, the fifth adds a 1 ms spin, the sixth does not
/// compile), first on the VM target from here, then on the guest's own
/// kernel with `--target host`: the same commit is named, every commit the
/// VM search built is taken from the cache rather than built again, the
/// one that does not compile is skipped there too (built in the guest, in
/// a worktree of the repository), and nothing is left attached.
#[test]
fn vm_host_target_bisect_names_the_same_commit_as_the_vm_target() {
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("tree");
    std::fs::create_dir(&tree).unwrap();
    let ids = common::bisect_repo(&tree);
    let scenario = dir.path().join("quick.yaml");
    std::fs::write(&scenario, common::BISECT_QUICK).unwrap();
    let kernel = common::test_kernel();
    let bisect = |target: &str, out: &str| {
        format!(
            "{HARNESS} bisect scx_local {} --tree {} --good {} --bad main --kernel {} --target {target} --out {out}",
            scenario.display(),
            tree.display(),
            ids[0],
            kernel.display()
        )
    };
    let vm_out = dir.path().join("vm-run");
    let (code, vm_said, err) = common::run(
        std::process::Command::new("sh")
            .arg("-c")
            .arg(bisect("vm", &vm_out.display().to_string())),
    );
    assert_eq!(code, Some(0), "{vm_said}\n{err}");
    let named = format!("first bad commit: {}", ids[5]);
    assert!(vm_said.contains(&named), "{vm_said}");
    let script = format!(
        "cd /tmp; {} 2>&1; echo \"EXIT $?\"; echo \"STATE $(cat /sys/kernel/sched_ext/state)\"; \
         echo \"CGROUPS $(ls -d /sys/fs/cgroup/scx-harness 2>/dev/null | wc -l)\"",
        bisect("host", "\"$SCX_HARNESS_SHARED/bisect\"")
    );
    let (gout, shared) = in_guest_writing(
        &script,
        Duration::from_secs(500),
        std::slice::from_ref(&tree),
    );
    assert_eq!(said(&gout, "EXIT"), "0", "{gout}");
    assert!(gout.contains(&named), "{gout}");
    assert_eq!(said(&gout, "STATE"), "disabled", "{gout}");
    assert_eq!(said(&gout, "CGROUPS"), "0", "{gout}");
    let built_here = vm_said.matches(": built in ").count();
    assert!(built_here >= 3, "{vm_said}");
    assert_eq!(
        (
            gout.matches("built before (cached)").count(),
            gout.matches(": built in ").count()
        ),
        (built_here, 0),
        "the guest reused the VM search's builds:\n{gout}"
    );
    assert!(
        gout.lines()
            .any(|l| l.starts_with("skip ") && l.contains("did not build")),
        "{gout}"
    );
    let runs = results(&shared.join("bisect"));
    assert!(!runs.is_empty());
    for c in &runs {
        assert!(matches!(c.target, Target::Host { .. }), "{:?}", c.target);
    }
    assert_eq!(common::git(&tree, &["status", "--porcelain"]), "");
    // The worktrees the guest made (as root) are gone from the repository.
    let worktrees = common::git(&tree, &["worktree", "list", "--porcelain"]);
    assert_eq!(worktrees.matches("worktree ").count(), 1, "{worktrees}");
}

/// SIGINT, SIGTERM and SIGKILL of the harness mid-run (the scheduler
/// attached, the scenario's tasks running): no scheduler stays attached,
/// no scenario process and no process in the harness's cgroups is left;
/// after SIGINT and SIGTERM no cgroup either, and what SIGKILL left (an
/// empty cgroup) the next run removes and names.
#[test]
fn vm_host_target_killed_mid_run_leaves_nothing_behind() {
    let f = Fixture::new();
    let run = f.host_run(
        "run-$sig",
        &format!("-s scx_simple {}", f.scenario("long-spin")),
    );
    let script = format!(
        r#"cd /tmp
for sig in INT TERM KILL; do
  {run} > "$SCX_HARNESS_SHARED/$sig.log" 2>&1 &
  pid=$!
  end=$(($(date +%s) + 60))
  until [ "$(cat /sys/kernel/sched_ext/state)" = enabled ] && ps -eLo comm= | grep -q '^hostspin$'; do
    if [ $(date +%s) -gt $end ]; then echo "NEVER-STARTED $sig"; break; fi; sleep 0.05
  done
  kill -$sig $pid; wait $pid; echo "EXIT-$sig $?"
  end=$(($(date +%s) + 5))
  until [ "$(cat /sys/kernel/sched_ext/state)" = disabled ] || [ $(date +%s) -gt $end ]; do sleep 0.05; done
  echo "STATE-$sig $(cat /sys/kernel/sched_ext/state)"
  echo "SPINNERS-$sig $(ps -eLo comm= | grep -c '^hostspin$')"
  echo "IN-CGROUPS-$sig $(cat $(find /sys/fs/cgroup/scx-harness -name cgroup.procs 2>/dev/null) /dev/null | wc -l)"
  echo "CGROUPS-$sig $(find /sys/fs/cgroup/scx-harness -mindepth 1 -type d 2>/dev/null | wc -l) $(ls -d /sys/fs/cgroup/scx-harness 2>/dev/null | wc -l)"
done
{next} > "$SCX_HARNESS_SHARED/next.log" 2>&1; echo "EXIT-next $?"
echo "CGROUPS-next $(ls -d /sys/fs/cgroup/scx-harness 2>/dev/null | wc -l)"
"#,
        next = f.host_run("next", &format!("-s default {}", f.scenario("short-spin"))),
    );
    let (out, shared) = in_guest(&script, Duration::from_secs(400));
    assert!(!out.contains("NEVER-STARTED"), "{out}");
    for (sig, code) in [("INT", "130"), ("TERM", "130"), ("KILL", "137")] {
        assert_eq!(said(&out, &format!("EXIT-{sig}")), code, "{out}");
        assert_eq!(said(&out, &format!("STATE-{sig}")), "disabled", "{out}");
        assert_eq!(said(&out, &format!("SPINNERS-{sig}")), "0", "{out}");
        assert_eq!(said(&out, &format!("IN-CGROUPS-{sig}")), "0", "{out}");
    }
    // Nothing at all: no session cgroup, not even the harness's own.
    assert_eq!(said(&out, "CGROUPS-INT"), "0 0", "{out}");
    assert_eq!(said(&out, "CGROUPS-TERM"), "0 0", "{out}");
    // SIGKILL runs no code of the harness: its empty session cgroup (with
    // its agent's and cells' cgroups) stays until the next run.
    let kill = said(&out, "CGROUPS-KILL");
    assert!(kill.ends_with(" 1") && !kill.starts_with("0 "), "{out}");
    let next = std::fs::read_to_string(shared.join("next.log")).unwrap();
    assert_eq!(said(&out, "EXIT-next"), "0", "{next}");
    assert!(
        next.contains("removed what run") && next.contains("0 process(es) killed"),
        "{next}"
    );
    assert_eq!(said(&out, "CGROUPS-next"), "0", "{out}");
    // The interrupted runs kept what they measured and said so.
    for sig in ["INT", "TERM"] {
        let log = std::fs::read_to_string(shared.join(format!("{sig}.log"))).unwrap();
        assert!(log.contains("interrupted"), "{sig}: {log}");
    }
}

/// Refused before anything changes: a scheduler someone else attached
/// (named; `--replace` detaches it and runs), and a run without root;
/// neither touches what a killed run left, which the run that goes ahead
/// removes. Then `schedulers run --target host`: the lifecycle alone.
#[test]
fn vm_host_target_refuses_an_attached_scheduler_and_a_non_root_user() {
    let f = Fixture::new();
    let simple = {
        let reg = scx_harness::scheduler::registry::Registry::load(&f.registry).unwrap();
        let entry = common::test_kernel_entry();
        let reg = reg.for_kernel(entry.meta.name.as_deref());
        let cache = scx_harness::kernel::Cache::user();
        let ctx = scx_harness::scheduler::build::BuildCtx {
            cache: &cache,
            kernel: Some(&entry),
            registry: &reg,
        };
        match scx_harness::scheduler::build::cached(reg.get("scx_simple").unwrap(), &ctx)
            .expect("built by the fixture")
            .artifact
        {
            scx_harness::scheduler::build::Artifact::Binary(p) => p,
            a => panic!("scx_simple is {a:?}"),
        }
    };
    // The replacing run must only finish: no timing bound (SHORT).
    let cells = &format!("-s default {}", f.scenario("short-spin"));
    // What a killed run left: the runs refused must leave it, the first
    // run that goes ahead removes it.
    let script = format!(
        r#"cd /tmp
mkdir -p /sys/fs/cgroup/scx-harness/host-999999/agent
setpriv --reuid=65534 --regid=65534 --clear-groups {nonroot} > "$SCX_HARNESS_SHARED/nonroot.log" 2>&1; echo "EXIT-nonroot $?"
echo "RUNDIR-nonroot $(ls "$SCX_HARNESS_SHARED" | grep -c nonroot-run)"
echo "LEFTOVER-nonroot $(ls -d /sys/fs/cgroup/scx-harness/host-999999 2>/dev/null | wc -l)"
{simple} > /dev/null 2>&1 &
sp=$!
end=$(($(date +%s) + 30))
until [ "$(cat /sys/kernel/sched_ext/state)" = enabled ] || [ $(date +%s) -gt $end ]; do sleep 0.05; done
{attached} > "$SCX_HARNESS_SHARED/attached.log" 2>&1; echo "EXIT-attached $?"
echo "RUNDIR-attached $(ls "$SCX_HARNESS_SHARED" | grep -c attached-run)"
echo "LEFTOVER-attached $(ls -d /sys/fs/cgroup/scx-harness/host-999999 2>/dev/null | wc -l)"
echo "STILL $(cat /sys/kernel/sched_ext/state) $(cat /sys/kernel/sched_ext/root/ops)"
{replace} > "$SCX_HARNESS_SHARED/replace.log" 2>&1; echo "EXIT-replace $?"
wait $sp; echo "SIMPLE-GONE $?"
echo "LEFTOVER-replace $(ls -d /sys/fs/cgroup/scx-harness/host-999999 2>/dev/null | wc -l)"
{HARNESS} schedulers run --target host --no-build --registry {registry} --load-for 2s scx_simple > "$SCX_HARNESS_SHARED/lifecycle.log" 2>&1; echo "EXIT-lifecycle $?"
echo "STATE-lifecycle $(cat /sys/kernel/sched_ext/state) $(find /sys/fs/cgroup/scx-harness -mindepth 1 -type d 2>/dev/null | wc -l)"
"#,
        nonroot = f.host_run("nonroot-run", cells),
        simple = simple.display(),
        attached = f.host_run("attached-run", cells),
        replace = f.host_run("replace-run", &format!("--replace {cells}")),
        registry = f.registry.display(),
    );
    let (out, shared) = in_guest(&script, Duration::from_secs(300));
    let log = |n: &str| std::fs::read_to_string(shared.join(format!("{n}.log"))).unwrap();
    // Bad input (65), with the reason and a fix, and nothing made.
    assert_eq!(said(&out, "EXIT-nonroot"), "65", "{}", log("nonroot"));
    assert!(log("nonroot").contains("needs root"), "{}", log("nonroot"));
    assert_eq!(said(&out, "RUNDIR-nonroot"), "0", "{out}");
    assert_eq!(said(&out, "LEFTOVER-nonroot"), "1", "{out}");
    assert_eq!(said(&out, "EXIT-attached"), "65", "{}", log("attached"));
    let attached = log("attached");
    assert!(
        attached.contains("is attached (simple") && attached.contains("--replace"),
        "{attached}"
    );
    assert_eq!(said(&out, "RUNDIR-attached"), "0", "{out}");
    assert_eq!(said(&out, "LEFTOVER-attached"), "1", "{out}");
    assert!(said(&out, "STILL").starts_with("enabled simple"), "{out}");
    assert_eq!(said(&out, "EXIT-replace"), "0", "{}", log("replace"));
    assert!(
        log("replace").contains("detached simple"),
        "{}",
        log("replace")
    );
    assert!(
        log("replace").contains("removed what run 999999 left"),
        "{}",
        log("replace")
    );
    assert_eq!(said(&out, "LEFTOVER-replace"), "0", "{out}");
    // The lifecycle alone (`schedulers run --target host`): attached,
    // loaded, detached, nothing left.
    let lifecycle = log("lifecycle");
    assert_eq!(said(&out, "EXIT-lifecycle"), "0", "{lifecycle}");
    assert!(said(&lifecycle, "verdict") == "clean", "{lifecycle}");
    assert_eq!(said(&out, "STATE-lifecycle"), "disabled 0", "{out}");
}

/// On a machine without sched_ext (this one: the host kernel has none),
/// the host target refuses with that reason, before making anything.
#[test]
fn host_target_on_a_kernel_without_sched_ext_is_refused() {
    assert!(
        !Path::new("/sys/kernel/sched_ext").exists(),
        "this test needs a machine whose kernel has no sched_ext (the VM tests above cover one that has)"
    );
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let (code, _, err) = common::run(
        std::process::Command::new(HARNESS)
            .args([
                "run",
                "--target",
                "host",
                "-s",
                "default",
                "idle-baseline",
                "--out",
            ])
            .arg(&out),
    );
    assert_eq!(code, Some(65), "{err}");
    assert!(err.contains("has no sched_ext"), "{err}");
    assert!(err.contains("fix:"), "{err}");
    assert!(!out.exists(), "a run directory was made");
}
