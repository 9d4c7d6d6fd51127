//! Helpers shared by the integration tests: one place that knows how to run
//! the binary and where the test kernel comes from.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The `scx-harness` binary under test, with its cache redirected to `cache`.
pub fn harness(cache: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_scx-harness"));
    cmd.env("SCX_HARNESS_CACHE", cache);
    cmd
}

/// Runs and returns the output, with stderr as text for assertions.
pub fn run(cmd: &mut Command) -> (Option<i32>, String, String) {
    let Output {
        status,
        stdout,
        stderr,
    } = cmd.output().expect("running scx-harness");
    (
        status.code(),
        String::from_utf8_lossy(&stdout).into_owned(),
        String::from_utf8_lossy(&stderr).into_owned(),
    )
}

/// A file with a valid bzImage header (nothing boots from it): for tests
/// that must get past the kernel check without booting.
pub fn fake_bzimage(dir: &Path) -> PathBuf {
    let kernel = dir.join("bzImage");
    let mut bytes = vec![0u8; 0x400];
    bytes[0x202..0x206].copy_from_slice(b"HdrS");
    std::fs::write(&kernel, &bytes).unwrap();
    kernel
}

/// What a fake kernel tree's `make bzImage` does.
pub enum FakeBuild {
    /// Produces a tiny bzImage, vmlinux and kernel.release.
    Succeeds,
    /// Prints a compiler error and fails.
    FailsToCompile,
    /// Kconfig drops SCHED_CLASS_EXT and DEBUG_INFO_BTF from .config.
    DropsSchedExt,
    /// Blocks until killed, after touching `make-started`.
    Hangs,
}

/// A directory that virtme-ng's kconfig step and the harness's build accept
/// as a kernel tree: its Makefile implements the targets they call. Each
/// `make bzImage` appends a line to `make-count`.
pub fn fake_kernel_tree(dir: &Path, kind: FakeBuild) -> PathBuf {
    let tree = dir.join("linux");
    std::fs::create_dir_all(tree.join("kernel")).unwrap();
    std::fs::write(tree.join("Kconfig"), "source \"kernel/Kconfig.ext\"\n").unwrap();
    std::fs::write(
        tree.join("kernel/Kconfig.ext"),
        "config SCHED_CLASS_EXT\n\tbool \"sched_ext\"\n\tdepends on BPF_SYSCALL && BPF_JIT && DEBUG_INFO_BTF\n\n\
         config DEBUG_INFO_BTF\n\tbool \"BTF\"\n\tdepends on DEBUG_INFO && PAHOLE_VERSION_OK\n",
    )
    .unwrap();
    let olddefconfig = match kind {
        FakeBuild::DropsSchedExt => {
            "\tsed -i -e '/^CONFIG_SCHED_CLASS_EXT=/d' -e '/^CONFIG_DEBUG_INFO_BTF=/d' .config\n"
        }
        _ => "\t@true\n",
    };
    let bzimage = match kind {
        FakeBuild::Succeeds | FakeBuild::DropsSchedExt => {
            "\techo x >> make-count\n\
             \techo '  CC      kernel/sched/ext.o'\n\
             \tmkdir -p arch/x86/boot include/config\n\
             \tprintf '6.12.0-fake\\n' > include/config/kernel.release\n\
             \tpython3 -c \"import sys; b=bytearray(0x400); b[0x202:0x206]=b'HdrS'; open('arch/x86/boot/bzImage','wb').write(b)\"\n\
             \techo vmlinux > vmlinux\n"
        }
        FakeBuild::FailsToCompile => {
            "\techo x >> make-count\n\
             \techo '  CC      kernel/sched/ext.o'\n\
             \techo 'kernel/sched/ext.c:42:7: error: deliberate failure for the test' >&2\n\
             \texit 2\n"
        }
        FakeBuild::Hangs => "\techo x >> make-count\n\ttouch make-started\n\tsleep 1000\n",
    };
    std::fs::write(
        tree.join("Makefile"),
        format!(
            "x86_64_defconfig:\n\techo '# fake defconfig' > .config\n\n\
             olddefconfig:\n{olddefconfig}\n\
             bzImage:\n{bzimage}\n\
             .PHONY: x86_64_defconfig olddefconfig bzImage\n"
        ),
    )
    .unwrap();
    tree
}

/// The kernel the VM tests boot: `$SCX_HARNESS_TEST_KERNEL`, else the cached
/// default kernel. Never skips: without one the test fails and says how to
/// get one.
pub fn test_kernel() -> PathBuf {
    if let Some(k) = std::env::var_os("SCX_HARNESS_TEST_KERNEL") {
        return PathBuf::from(k);
    }
    let cache = scx_harness::kernel::Cache::user();
    match scx_harness::kernel::cached_default(&cache) {
        Ok(Some(entry)) => entry.bzimage(),
        Ok(None) => panic!(
            "no sched_ext kernel for the VM tests: the default kernel is not in {}\n  \
             fix: run `cargo ci kernel` (or `scx-harness kernel build`, ~15 min), \
             or set SCX_HARNESS_TEST_KERNEL=/path/to/bzImage",
            cache.root().display()
        ),
        Err(e) => panic!("cannot look up the default kernel: {e:#}\n  fix: run `cargo ci setup`"),
    }
}

/// The cache entry of catalog kernel `name` (kernel-config/kernels.yaml).
/// Never builds or fetches: without it the test fails and names the
/// command that gets it (`cargo ci test` gets every named kernel).
pub fn named_kernel(name: &str) -> scx_harness::kernel::Entry {
    let cache = scx_harness::kernel::Cache::user();
    let catalog = scx_harness::kernel::Catalog::embedded();
    let def = catalog.require(name).unwrap();
    match scx_harness::kernel::lookup(def, &cache) {
        Ok(Some(entry)) => entry,
        Ok(None) => panic!(
            "kernel {name} is not in {}\n  fix: run `scx-harness kernel build {name}` (or `cargo ci test`, which gets every named kernel)",
            cache.root().display()
        ),
        Err(e) => panic!("cannot look up kernel {name}: {e:#}\n  fix: run `cargo ci setup`"),
    }
}

/// The cache entry of the kernel the VM tests boot, when it is a cached one
/// (schedulers are built against its tree).
pub fn test_kernel_entry() -> scx_harness::kernel::Entry {
    let cache = scx_harness::kernel::Cache::user();
    let kernel = test_kernel();
    cache
        .list()
        .unwrap()
        .into_iter()
        .find(|e| e.bzimage() == kernel)
        .unwrap_or_else(|| {
            panic!(
                "{} is not a cached kernel; scheduler tests build against a cached kernel's tree\n  \
                 fix: run `cargo ci kernel`, or unset SCX_HARNESS_TEST_KERNEL",
                kernel.display()
            )
        })
}

/// QEMU processes whose command line mentions `dir` (each VM's shared
/// directory is on its command line).
pub fn qemus_mentioning(dir: &Path) -> Vec<PathBuf> {
    let needle = dir.to_string_lossy().into_owned();
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|p| {
            std::fs::read(p.path().join("cmdline")).is_ok_and(|c| {
                let c = String::from_utf8_lossy(&c);
                c.contains("qemu-system") && c.contains(&needle)
            })
        })
        .map(|p| p.path())
        .collect()
}

/// What a person needs when a VM test fails: outcome, output, console tail.
pub fn explain_vm(r: &scx_harness::vm::VmResult) -> String {
    let console = scx_harness::vm::console::read(&r.console_log);
    let tail: Vec<&str> = console.lines().rev().take(30).collect();
    let trouble = r.crashes.first().map_or(String::new(), |c| {
        format!(
            "\n--- the kernel's first trouble (console line {}) ---\n{}",
            c.line_no,
            crash_excerpt(&console, c)
        )
    });
    format!(
        "outcome: {:?}\naccel: {}\n--- stdout ---\n{}\n--- stderr ---\n{}\n--- console (last 30 lines of {}) ---\n{}{trouble}",
        r.outcome,
        r.accel,
        r.stdout,
        r.stderr,
        r.console_log.display(),
        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
    )
}

/// A crash line and the 40 console lines after it: an RCU stall's report
/// (which CPU or task, its backtrace), a WARNING's backtrace.
fn crash_excerpt(console: &str, c: &scx_harness::vm::console::CrashLine) -> String {
    scx_harness::vm::console::excerpt(console, c, 40)
}

/// The bundled scheduler registry.
pub fn registry() -> scx_harness::scheduler::registry::Registry {
    scx_harness::scheduler::registry::Registry::load(
        &scx_harness::paths::workspace_root().join("schedulers/registry.yaml"),
    )
    .unwrap()
}

/// A scheduler's run in a VM and its run directory, which is deleted when
/// the test passes and kept (and named) when it fails.
pub struct TestRun {
    pub run: scx_harness::scheduler::lifecycle::Run,
    dir: Option<tempfile::TempDir>,
}

impl std::ops::Deref for TestRun {
    type Target = scx_harness::scheduler::lifecycle::Run;
    fn deref(&self) -> &Self::Target {
        &self.run
    }
}

impl Drop for TestRun {
    fn drop(&mut self) {
        if std::thread::panicking() {
            if let Some(d) = self.dir.take() {
                eprintln!("run directory kept: {}", d.keep().display());
            }
        }
    }
}

/// Builds `name` for the test kernel (in the user's cache, shared with
/// `cargo ci test`'s pre-build), runs its lifecycle in a VM with `args`
/// after the registry's and `payload` under it, and records the verdict
/// for `schedulers list`.
pub fn run_scheduler(name: &str, args: &[&str], payload: Option<String>) -> TestRun {
    run_scheduler_on(&test_kernel_entry(), name, args, payload)
}

/// [`run_scheduler`] on the cached kernel `entry`, with the registry as it
/// is on that kernel (`on:`, `kernels:`).
pub fn run_scheduler_on(
    entry: &scx_harness::kernel::Entry,
    name: &str,
    args: &[&str],
    payload: Option<String>,
) -> TestRun {
    use scx_harness::scheduler::{lifecycle, status};
    let spec = guest_spec(entry, name, args, payload);
    let work = tempfile::Builder::new()
        .prefix(&format!("scx-harness-test-{name}-"))
        .tempdir()
        .unwrap();
    let run = lifecycle::run_in_vm(
        &entry.bzimage(),
        Path::new(env!("CARGO_BIN_EXE_scx-harness")),
        &spec,
        work.path(),
        std::time::Duration::from_secs(150),
    )
    .unwrap();
    let cache = scx_harness::kernel::Cache::user();
    status::record(&cache, &entry.bzimage(), name, &run.verdict()).unwrap();
    TestRun {
        run,
        dir: Some(work),
    }
}

/// `name` built for the cached kernel `entry` (in the user's cache, shared
/// with `cargo ci test`'s pre-build), as the guest side runs it: with
/// `args` after the registry's and `payload` under it.
pub fn guest_spec(
    entry: &scx_harness::kernel::Entry,
    name: &str,
    args: &[&str],
    payload: Option<String>,
) -> scx_harness::scheduler::lifecycle::GuestSpec {
    try_guest_spec(entry, name, args, payload).unwrap_or_else(|e| panic!("{e}"))
}

/// [`guest_spec`], with a build that fails as an error naming the
/// scheduler.
pub fn try_guest_spec(
    entry: &scx_harness::kernel::Entry,
    name: &str,
    args: &[&str],
    payload: Option<String>,
) -> Result<scx_harness::scheduler::lifecycle::GuestSpec, String> {
    use scx_harness::scheduler::{build, lifecycle};
    let cache = scx_harness::kernel::Cache::user();
    let registry = registry().for_kernel(entry.meta.name.as_deref());
    let def = registry.get(name).map_err(|e| format!("{e:#}"))?;
    let ctx = build::BuildCtx {
        cache: &cache,
        kernel: Some(entry),
        registry: &registry,
    };
    let mut progress = scx_harness::progress::Progress::new(name);
    let built =
        build::build(def, &ctx, &mut progress).map_err(|e| format!("building {name}: {e:#}"))?;
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    Ok(lifecycle::GuestSpec::for_built(&built, &args, payload))
}

/// The load every clean-lifecycle test runs under its scheduler: twice the
/// guest's 2 vCPUs of busy loops for 3 s.
pub fn lifecycle_load() -> String {
    scx_harness::cli::schedulers::cpu_load(4, 3.0)
}

/// Attaches within its deadline, keeps [`lifecycle_load`] running, detaches
/// cleanly, on the cached kernel `entry`. A scheduler the registry marks
/// unsupported (on that kernel) may instead fail to attach, and one with a
/// known issue may exit during the run or detach badly, but only in the
/// way the registry describes.
///
/// With [`shared_sessions`], every scheduler under test on that kernel
/// runs in turn in one VM, booted by the first of these tests to get there
/// (`scheduler::lifecycle::run_each_in_vm`), and each test judges its own
/// turn; otherwise this one boots a VM of its own.
pub fn check_clean_on(entry: &scx_harness::kernel::Entry, name: &str) {
    let def = registry()
        .for_kernel(entry.meta.name.as_deref())
        .get(name)
        .unwrap()
        .clone();
    let l = lifecycle_of(entry, name);
    judge_clean(&def, &l.verdict, l.report.as_ref(), &l.crashes, &l.context);
}

/// One scheduler's clean-lifecycle run under [`lifecycle_load`] on the
/// cached kernel `entry`: its turn in the shared VM of every scheduler on
/// that kernel with [`shared_sessions`], else a VM of its own (kept, and
/// named, if the test panics).
pub struct Lifecycle {
    pub verdict: scx_harness::scheduler::lifecycle::Verdict,
    pub report: Option<scx_harness::scheduler::lifecycle::Report>,
    /// The kernel's crash lines: in its turn and outside every turn of the
    /// shared VM, or in the whole of a VM of its own.
    pub crashes: Vec<String>,
    /// Where to look when a check of it fails.
    pub context: String,
    _run: Option<TestRun>,
}

/// See [`Lifecycle`].
pub fn lifecycle_of(entry: &scx_harness::kernel::Entry, name: &str) -> Lifecycle {
    let Some(run_id) = shared_sessions() else {
        let run = run_scheduler_on(entry, name, &[], Some(lifecycle_load()));
        return Lifecycle {
            verdict: run.verdict(),
            report: run.report.clone(),
            crashes: run.vm.crashes.iter().map(|c| c.text.clone()).collect(),
            context: explain_vm(&run.vm),
            _run: Some(run),
        };
    };
    let dir = once_per_run(&run_id, "lifecycle", &entry.meta.key, |dir| {
        every_lifecycle(entry, dir)
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let file = dir.join(SHARED_LIFECYCLES);
    let shared: SharedLifecycles = serde_json::from_slice(
        &std::fs::read(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display())),
    )
    .unwrap();
    let turn = shared
        .turns
        .into_iter()
        .find(|t| t.name == name)
        .unwrap_or_else(|| panic!("{name} had no turn in {}", file.display()));
    let verdict = turn
        .verdict
        .unwrap_or_else(|| panic!("{name}: {}", turn.error.as_deref().unwrap_or("no verdict")));
    if let Some(r) = &turn.report {
        assert_eq!(r.name, name, "a turn's report is another scheduler's");
    }
    let outside = shared
        .crashes_outside_turns
        .iter()
        .map(|c| format!("{c} (printed outside every turn)"));
    let trouble = turn
        .first_crash
        .iter()
        .chain(&shared.first_crash_outside_turns)
        .map(|e| format!("\n--- the kernel's trouble ---\n{e}"))
        .collect::<String>();
    Lifecycle {
        verdict,
        report: turn.report,
        crashes: turn.crashes.into_iter().chain(outside).collect(),
        context: format!(
            "{name}'s turn in the VM every scheduler under test on {} ran in ({}); console log: {}{trouble}",
            entry.meta.key,
            file.display(),
            shared.console_log.display()
        ),
        _run: None,
    }
}

/// Where [`check_clean_on`]'s shared run leaves its turns.
const SHARED_LIFECYCLES: &str = "lifecycles.json";

/// Every scheduler under test on a kernel, run in turn in one VM.
#[derive(serde::Serialize, serde::Deserialize)]
struct SharedLifecycles {
    console_log: PathBuf,
    /// The kernel's crash lines printed outside every turn (booting,
    /// between turns): every turn fails on them.
    crashes_outside_turns: Vec<String>,
    /// The first of them with the console lines after it.
    first_crash_outside_turns: Option<String>,
    turns: Vec<Turn>,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Turn {
    name: String,
    /// None when it could not be built.
    verdict: Option<scx_harness::scheduler::lifecycle::Verdict>,
    report: Option<scx_harness::scheduler::lifecycle::Report>,
    /// The kernel's crash lines printed during its turn.
    crashes: Vec<String>,
    /// The first of them with the console lines after it.
    first_crash: Option<String>,
    error: Option<String>,
}

/// Builds every scheduler under test on `entry` (the fair class aside: it
/// has no lifecycle), runs them in turn in one VM, records each verdict for
/// `schedulers list`, and writes `dir/lifecycles.json`.
fn every_lifecycle(entry: &scx_harness::kernel::Entry, dir: &Path) -> Result<(), String> {
    use scx_harness::scheduler::{lifecycle, registry::Kind, status};
    let cache = scx_harness::kernel::Cache::user();
    let mut turns = Vec::new();
    let mut specs = Vec::new();
    for def in registry()
        .for_kernel(entry.meta.name.as_deref())
        .under_test()
        .filter(|d| d.kind != Kind::Default)
    {
        let (verdict, report) = (None, None);
        match try_guest_spec(entry, &def.name, &[], Some(lifecycle_load())) {
            Ok(spec) => {
                specs.push(spec);
                turns.push(Turn {
                    name: def.name.clone(),
                    verdict,
                    report,
                    crashes: Vec::new(),
                    first_crash: None,
                    error: None,
                });
            }
            Err(e) => turns.push(Turn {
                name: def.name.clone(),
                verdict,
                report,
                crashes: Vec::new(),
                first_crash: None,
                error: Some(e),
            }),
        }
    }
    // Each turn's attach deadline, its 3 s of load and 20 s to start and
    // stop; a minute to boot.
    let timeout = std::time::Duration::from_secs(60)
        + specs
            .iter()
            .map(|s| std::time::Duration::from_millis(s.attach_timeout_ms + 23_000))
            .sum::<std::time::Duration>();
    let work = dir.join("vm");
    std::fs::create_dir_all(&work).map_err(|e| format!("{}: {e}", work.display()))?;
    let batch = lifecycle::run_each_in_vm(
        &entry.bzimage(),
        Path::new(env!("CARGO_BIN_EXE_scx-harness")),
        &specs,
        &work,
        timeout,
    )
    .map_err(|e| format!("running every scheduler on {}: {e:#}", entry.meta.key))?;
    eprintln!(
        "every scheduler on {}: {:?} in {:.0?}",
        entry.meta.key, batch.vm.outcome, batch.vm.elapsed
    );
    let console = scx_harness::vm::console::read(&batch.vm.console_log);
    for (i, spec) in specs.iter().enumerate() {
        let verdict = batch.verdict(i);
        // `schedulers list` learns only what a scheduler's own turn said:
        // a turn the VM never reached is no verdict on it.
        if batch.reports[i].is_some() {
            status::record(&cache, &entry.bzimage(), &spec.name, &verdict)
                .map_err(|e| format!("{e:#}"))?;
        }
        let turn = turns.iter_mut().find(|t| t.name == spec.name).unwrap();
        turn.verdict = Some(verdict);
        turn.report = batch.reports[i].clone();
        turn.crashes = batch.crashes(i).iter().map(|c| c.text.clone()).collect();
        turn.first_crash = batch.crashes(i).first().map(|c| crash_excerpt(&console, c));
    }
    let shared = SharedLifecycles {
        console_log: batch.vm.console_log.clone(),
        crashes_outside_turns: batch
            .crashes_outside_turns()
            .iter()
            .map(|c| c.text.clone())
            .collect(),
        first_crash_outside_turns: batch
            .crashes_outside_turns()
            .first()
            .map(|c| crash_excerpt(&console, c)),
        turns,
    };
    scx_harness::kernel::cache::write_atomic(
        &dir.join(SHARED_LIFECYCLES),
        &serde_json::to_vec_pretty(&shared).unwrap(),
    )
    .map_err(|e| format!("{e:#}"))
}

/// The clean-lifecycle verdict on one scheduler's run: `context` says
/// where to look when it fails.
fn judge_clean(
    def: &scx_harness::scheduler::registry::Def,
    verdict: &scx_harness::scheduler::lifecycle::Verdict,
    report: Option<&scx_harness::scheduler::lifecycle::Report>,
    crashes: &[String],
    context: &str,
) {
    use scx_harness::scheduler::exit::ExitKind;
    use scx_harness::scheduler::lifecycle::{expected_failure, Verdict};
    let name = &def.name;
    let r = report.unwrap_or_else(|| panic!("no report from the guest ({verdict:?})\n{context}"));
    if let Some(reason) = expected_failure(def, verdict, &r.loader_log) {
        eprintln!(
            "{name}: {} as its registry entry expects ({reason})",
            verdict.why()
        );
        return;
    }
    assert_eq!(*verdict, Verdict::Clean, "{r:#?}\n{context}");
    assert!(def.ops_matches(r.ops.as_deref().unwrap_or("")), "{r:#?}");
    assert_eq!(r.exit_kind, Some(ExitKind::Unreg), "{r:#?}");
    assert_eq!(r.after.enable_seq, r.before.enable_seq + 1, "{r:#?}");
    assert_eq!(r.after.state, "disabled");
    assert_eq!(r.payload_status, Some(0), "{r:#?}");
    assert_eq!(r.after.nr_rejected, r.before.nr_rejected, "{r:#?}");
    if name == "scx_fifo" || name == "scx_vtime" || name == "scx_local" {
        // Ours run the guest's whole task set, not a partial switch.
        assert_eq!(r.attached.as_ref().unwrap().switch_all, 1, "{r:#?}");
    }
    assert!(r.attach_ms.unwrap() <= def.attach_timeout.as_millis() as u64);
    assert!(crashes.is_empty(), "the kernel: {crashes:?}\n{context}");
    let ops = r.ops.as_deref().unwrap();
    assert!(
        r.kernel_log
            .iter()
            .any(|l| l.contains(&format!("BPF scheduler \"{ops}\" enabled"))),
        "the kernel never logged the attach: {:?}",
        r.kernel_log
    );
}

/// With `SCX_HARNESS_SHARED_SESSIONS=1` under nextest (`cargo ci test`
/// without arguments sets it; with a partition or a filter it does not):
/// this nextest run's id. Tests that can share a VM (the matrix's cells of
/// a kernel, the schedulers' clean lifecycles on a kernel) then share one
/// through [`once_per_run`]; otherwise each boots its own.
pub fn shared_sessions() -> Option<String> {
    if std::env::var("SCX_HARNESS_SHARED_SESSIONS").ok()? != "1" {
        return None;
    }
    std::env::var("NEXTEST_RUN_ID").ok()
}

/// The directory `WHAT-RUN_ID/KEY` under the target's test scratch, filled
/// by `fill` in the first test process of nextest run `run_id` to get
/// here, under a lock the others wait on. A fill that failed is not tried
/// again: the others read what it left (and its error is in their own
/// checks of it).
pub fn once_per_run(
    run_id: &str,
    what: &str,
    key: &str,
    fill: impl FnOnce(&Path) -> Result<(), String>,
) -> Result<PathBuf, String> {
    use std::os::fd::AsRawFd;
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("{what}-{run_id}"))
        .join(key);
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let lock = std::fs::File::create(dir.join("lock")).map_err(|e| e.to_string())?;
    // SAFETY: flock on a file we hold; released when it closes.
    if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) } != 0 {
        return Err(format!("locking {}", dir.display()));
    }
    let (attempted, done) = (dir.join("attempted"), dir.join("done"));
    if !attempted.exists() {
        std::fs::write(&attempted, b"").map_err(|e| e.to_string())?;
        match fill(&dir) {
            Ok(()) => std::fs::write(&done, b"").map_err(|e| e.to_string())?,
            Err(e) => {
                eprintln!("{what} on {key}: {e}");
                std::fs::write(dir.join("error"), e.as_bytes()).map_err(|e| e.to_string())?;
            }
        }
    }
    drop(lock);
    match std::fs::read_to_string(dir.join("error")) {
        Ok(e) => Err(format!("the shared {what} run on {key} failed: {e}")),
        Err(_) if done.exists() => Ok(dir),
        Err(_) => Err(format!(
            "the test that ran the shared {what} run on {key} did not finish it (it panicked, or nextest stopped it at its slow-timeout): see that test's output; what it left is in {}",
            dir.display()
        )),
    }
}

/// A cell's result and its directory, which is kept (and named) when the
/// test fails.
pub struct TestCell {
    pub result: scx_harness::report::CellResult,
    dir: Option<tempfile::TempDir>,
}

impl std::ops::Deref for TestCell {
    type Target = scx_harness::report::CellResult;
    fn deref(&self) -> &Self::Target {
        &self.result
    }
}

impl TestCell {
    /// Keeps the cell's directory (for a failure reported other than by a
    /// panic) and returns its path.
    pub fn keep(mut self) -> PathBuf {
        self.dir.take().map(|d| d.keep()).unwrap_or_default()
    }
}

impl Drop for TestCell {
    fn drop(&mut self) {
        if std::thread::panicking() {
            if let Some(d) = self.dir.take() {
                eprintln!(
                    "cell directory kept: {}\n{}{}",
                    d.keep().display(),
                    scx_harness::report::describe(&self.result),
                    scheduler_output_tail(&self.result, 40)
                );
            }
        }
    }
}

/// The last `lines` lines of the scheduler's own stderr in a cell's
/// directory (`SCHEDULER.stderr`): where the kernel's debug dump of an
/// exit is, with the stalled task's stack. For a failing test's output:
/// CI keeps no directory.
pub fn scheduler_output_tail(r: &scx_harness::report::CellResult, lines: usize) -> String {
    let file = r.dir.join(format!("{}.stderr", r.scheduler));
    let Ok(text) = std::fs::read_to_string(&file) else {
        return String::new();
    };
    let all: Vec<&str> = text.lines().collect();
    format!(
        "--- the last {} lines of {}\n{}\n",
        lines.min(all.len()),
        file.display(),
        all[all.len().saturating_sub(lines)..].join("\n")
    )
}

/// Runs scenario `yaml` (written to a file) under scheduler `name` with
/// `args` after the registry's, on the test kernel, in a VM of its own.
pub fn run_cell(name: &str, args: &[&str], yaml: &str) -> TestCell {
    let dir = tempfile::Builder::new()
        .prefix(&format!("scx-harness-cell-{name}-"))
        .tempdir()
        .unwrap();
    let file = dir.path().join("scenario.yaml");
    std::fs::write(&file, yaml).unwrap();
    let scenario = scx_harness::scenario::load(&file).unwrap_or_else(|e| panic!("{e:#}"));
    run_loaded_cell(&test_kernel_entry(), name, args, &scenario, dir)
}

/// Runs a bundled scenario under scheduler `name` on the test kernel.
pub fn run_bundled_cell(name: &str, scenario: &str) -> TestCell {
    run_bundled_cell_on(&test_kernel_entry(), name, scenario)
}

/// Runs a bundled scenario under scheduler `name` on the cached kernel
/// `entry`, with the registry as it is on that kernel.
pub fn run_bundled_cell_on(
    entry: &scx_harness::kernel::Entry,
    name: &str,
    scenario: &str,
) -> TestCell {
    let dir = tempfile::Builder::new()
        .prefix(&format!("scx-harness-cell-{name}-{scenario}-"))
        .tempdir()
        .unwrap();
    let scenario = scx_harness::scenario::resolve(scenario).unwrap_or_else(|e| panic!("{e:#}"));
    run_loaded_cell(entry, name, &[], &scenario, dir)
}

fn run_loaded_cell(
    entry: &scx_harness::kernel::Entry,
    name: &str,
    args: &[&str],
    scenario: &scx_harness::scenario::Loaded,
    dir: tempfile::TempDir,
) -> TestCell {
    use scx_harness::scheduler::build;
    let cache = scx_harness::kernel::Cache::user();
    let registry = registry().for_kernel(entry.meta.name.as_deref());
    let ctx = build::BuildCtx {
        cache: &cache,
        kernel: Some(entry),
        registry: &registry,
    };
    let mut progress = scx_harness::progress::Progress::new(name);
    let mut build_one = |n: &str| {
        build::build(registry.get(n).unwrap(), &ctx, &mut progress)
            .unwrap_or_else(|e| panic!("building {n}: {e:#}"))
    };
    let built = build_one(name);
    let swap_built: Vec<build::Built> = scenario
        .scenario
        .swaps
        .iter()
        .map(|sw| {
            if sw.to == "cell" {
                built.clone()
            } else {
                build_one(&sw.to)
            }
        })
        .collect();
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let result = scx_harness::runner::run_one(
        &scx_harness::cell::Planned {
            scenario,
            scheduler: &built,
            args,
            swap_to: swap_built.iter().collect(),
            dir: dir.path().join("cell"),
            recording: scx_harness::agent::PassRecording::Off,
        },
        &scx_harness::runner::Session {
            target: scx_harness::runner::Target::Vm {
                kernel: &entry.bzimage(),
                accel: scx_harness::vm::AccelChoice::Auto,
            },
            harness: Path::new(env!("CARGO_BIN_EXE_scx-harness")),
            dir: dir.path().join("vm"),
            timeout: None,
        },
    )
    .unwrap_or_else(|e| panic!("{e:#}"));
    TestCell {
        result,
        dir: Some(dir),
    }
}

/// Runs `scx-harness run` with `args` on the test kernel (the user's
/// cache, where it and the schedulers are built), results under
/// `dir/run`; returns the cells.
pub fn run_cells(dir: &Path, args: &[&str]) -> Vec<scx_harness::report::CellResult> {
    let out = dir.join("run");
    let cache = scx_harness::kernel::Cache::user();
    let (code, stdout, stderr) = run(harness(cache.root())
        .arg("run")
        .arg("--kernel")
        .arg(test_kernel())
        .arg("--out")
        .arg(&out)
        .args(args));
    eprintln!("{stdout}\n{stderr}");
    assert!(code.is_some(), "scx-harness run was killed\n{stderr}");
    scx_harness::report::load_run(&out).unwrap_or_else(|e| panic!("{e:#}\n{stderr}"))
}

/// The cell of `scheduler` on `scenario` among `cells`.
pub fn cell<'a>(
    cells: &'a [scx_harness::report::CellResult],
    scheduler: &str,
    scenario: &str,
) -> &'a scx_harness::report::CellResult {
    cells
        .iter()
        .find(|c| c.scheduler == scheduler && c.scenario == scenario)
        .unwrap_or_else(|| panic!("no cell {scheduler}/{scenario}"))
}

/// `scx-harness compare` of `scenario` (written to `dir/scenario.yaml`)
/// between `baseline` and `candidate` on the test kernel, results under
/// `dir/run`: (exit code, stdout, stderr, that directory).
pub fn compare(
    dir: &Path,
    scenario: &str,
    baseline: &str,
    candidate: &str,
    extra: &[&str],
) -> (Option<i32>, String, String, PathBuf) {
    let file = dir.join("scenario.yaml");
    std::fs::write(&file, scenario).unwrap();
    let out = dir.join("run");
    let key = test_kernel_entry().meta.key;
    let (code, stdout, stderr) = run(Command::new(env!("CARGO_BIN_EXE_scx-harness"))
        .args(["compare", "--baseline", baseline, "--candidate", candidate])
        .args(["--kernel", &key, "--out"])
        .arg(&out)
        .args(extra)
        .arg(&file));
    (code, stdout, stderr, out)
}

/// The `compare.json` of a compare's results directory.
pub fn compare_report(out: &Path) -> scx_harness::compare::CompareReport {
    let bytes = std::fs::read(out.join("compare.json"))
        .unwrap_or_else(|e| panic!("{}: {e}", out.display()));
    serde_json::from_slice(&bytes).unwrap()
}

/// scx_local's BPF source (`text`) with a dispatch delay: every task spins
/// `ns` in `ops.running` before it runs, so each run delay the probe
/// measures (wakeup to switch-in) grows by that. Panics if the source no
/// longer has the places it edits.
pub fn scx_local_with_spin(text: &str, ns: u64) -> String {
    let spin = format!(
        "
static long spin_until(u64 i, void *ctx)
{{
\treturn bpf_ktime_get_ns() >= *(u64 *)ctx;
}}

void BPF_STRUCT_OPS(local_running, struct task_struct *p)
{{
\tu64 until = bpf_ktime_get_ns() + {ns};

\tbpf_loop(1 << 20, spin_until, &until, 0);
}}
"
    );
    let out = text
        .replace(
            "void BPF_STRUCT_OPS(local_exit,",
            &format!("{spin}\nvoid BPF_STRUCT_OPS(local_exit,"),
        )
        .replace(
            ".exit\t\t= (void *)local_exit,",
            ".exit\t\t= (void *)local_exit,\n\t       .running\t= (void *)local_running,",
        );
    assert!(
        out.contains("spin_until") && out.contains(".running"),
        "scx_local's source no longer has local_exit where the spin goes"
    );
    out
}

/// A periodic group whose tasks, named "delayed", wake every 20 ms for
/// 1 ms of work: what scx_fault's `--delay-comm delayed` holds (compare's
/// and sweep's delay tests). 2 s, 300 ms warm-up.
pub const DELAYED: &str = "name: delay-ab\n\
    description: a periodic group, for delay A/B\n\
    duration: 2s\n\
    warmup: 300ms\n\
    groups:\n\
    \x20 - { name: delayed, threads: 2, work: { kind: periodic, run: 1ms, period: 20ms } }\n\
    checks:\n\
    \x20 - scheduler_healthy: {}\n";

/// Runs `cmd` (a command whose input is bad) and asserts it is refused as
/// bad input: exit 65, `says` and a `fix:` line on stderr, and `never`
/// (its `--out`) not made.
pub fn assert_refused(cmd: &mut Command, says: &str, never: &Path) {
    let shown = format!("{cmd:?}");
    let (code, stdout, stderr) = run(cmd);
    assert_eq!(code, Some(65), "{shown}: {stdout}\n{stderr}");
    assert!(stderr.contains(says), "{shown}: {stderr}");
    assert!(stderr.contains("fix: "), "{shown}: {stderr}");
    assert!(!never.exists(), "{shown}");
}

/// Three tasks that wake every 2 to 10 ms for 200 us of work: their median
/// run delay must stay under 500 us (scx_local: tens of us under TCG).
pub const BISECT_QUICK: &str = "name: bisect-quick
description: three tasks wake every 2 to 10 ms for 200 us of work, a median run delay under 500 us
duration: 3s
warmup: 500ms
seed: 1
groups:
  - name: nappers
    threads: 3
    work: { kind: sleepy, run: 200us, min_sleep: 2ms, max_sleep: 10ms }
checks:
  - run_delay: { group: nappers, p50: 500us }
  - stall: { max_runnable: 2s, tasks: guest }
  - scheduler_healthy: {}
";

pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["-c", "user.name=t", "-c", "user.email=t@t"])
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "git {args:?}: {out:?}");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// bisect's repository (tests bisect and host): commit 0 is scx_local as it is; commit i (1..=8) adds a
/// comment line; commit 5 also adds the delay, 6 a line that is not C,
/// which 7 removes. Returns the commit ids, oldest first.
pub fn bisect_repo(dir: &Path) -> Vec<String> {
    git(dir, &["init", "-q", "-b", "main"]);
    let file = dir.join("scx_local.bpf.c");
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../schedulers/bpf/scx_local.bpf.c"),
        &file,
    )
    .unwrap();
    let mut ids = Vec::new();
    for i in 0..=8 {
        let mut text = std::fs::read_to_string(&file).unwrap();
        if i > 0 {
            text.push_str(&format!("/* change {i} */\n"));
        }
        let subject = match i {
            5 => {
                // The regression: every task spins 1 ms in ops.running.
                text = scx_local_with_spin(&text, 1_000_000);
                "spin in running".to_string()
            }
            6 => {
                text.push_str("this_is_not_c;\n");
                "break the build".to_string()
            }
            7 => {
                text = text.replace("this_is_not_c;\n", "");
                "mend the build".to_string()
            }
            _ => format!("change {i}"),
        };
        std::fs::write(&file, text).unwrap();
        git(dir, &["add", "scx_local.bpf.c"]);
        git(dir, &["commit", "-q", "-m", &subject]);
        ids.push(git(dir, &["rev-parse", "HEAD"]));
    }
    ids
}
