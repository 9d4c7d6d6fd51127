//! The kernel axis: every scheduler of the registry through its lifecycle
//! on every kernel of kernel-config/kernels.yaml other than the default
//! (tests/schedulers.rs runs them on that one), one test each:
//! `lifecycle::KERNEL::SCHEDULER`; and every kernel's own sched_ext
//! selftest on each kernel built from source, `selftest::KERNEL::NAME`. A scheduler whose registry entry leaves
//! a kernel out (`kernels:`) has no test there; one marked unsupported
//! there must fail exactly as its entry says. Listing reads the two data
//! files only; each test boots one VM on a cached kernel (`cargo ci test`
//! builds and fetches them all; a missing one fails the test with the
//! command that gets it).

mod common;

use libtest_mimic::{Arguments, Trial};
use scx_harness::scheduler::registry::Kind;

fn trials() -> Vec<Trial> {
    let catalog = scx_harness::kernel::Catalog::embedded();
    let registry = common::registry();
    let mut out = Vec::new();
    for k in catalog.kernels.iter().filter(|k| k.name != catalog.default) {
        let here = registry.for_kernel(Some(&k.name));
        for d in here.under_test().filter(|d| d.kind != Kind::Default) {
            let (kernel, name) = (k.name.clone(), d.name.clone());
            out.push(Trial::test(
                format!("lifecycle::{kernel}::{name}"),
                move || {
                    let entry = common::named_kernel(&kernel);
                    common::check_clean_on(&entry, &name);
                    Ok(())
                },
            ));
        }
    }
    // sched_ext's own event counters: 7.3 has them
    // (/sys/kernel/sched_ext/root/events), 6.12 does not; a scheduler's
    // report carries them as the kernel counted them.
    for (kernel, has) in [("stable", true), ("lts", false)] {
        out.push(Trial::test(format!("events::{kernel}"), move || {
            let entry = common::named_kernel(kernel);
            let run = common::lifecycle_of(&entry, "scx_local");
            let r = run
                .report
                .as_ref()
                .ok_or_else(|| format!("no report\n{}", run.context))?;
            if has {
                for name in ["SCX_EV_SELECT_CPU_FALLBACK", "SCX_EV_BYPASS_DURATION"] {
                    if !r.events.contains_key(name) {
                        return Err(format!("{name} missing from {:?}", r.events).into());
                    }
                }
            } else if !r.events.is_empty() {
                return Err(format!("6.12 has no event counters, yet: {:?}", r.events).into());
            }
            Ok(())
        }));
    }
    out
}

/// The kernels built from source: their trees have the selftests.
fn built_kernels() -> Vec<String> {
    scx_harness::kernel::Catalog::embedded()
        .kernels
        .iter()
        .filter(|k| matches!(k.how, scx_harness::kernel::catalog::How::Build(_)))
        .map(|k| k.name.clone())
        .collect()
}

/// One trial per selftest of each built kernel, named from the kernel
/// tree's sources (no VM, no build at listing time). A kernel that is not
/// built yet lists one trial that fails with the command that builds it.
fn selftest_trials() -> Vec<Trial> {
    let cache = scx_harness::kernel::Cache::user();
    let catalog = scx_harness::kernel::Catalog::embedded();
    let mut out = Vec::new();
    for kernel in built_kernels() {
        let entry = catalog
            .get(&kernel)
            .and_then(|d| scx_harness::kernel::lookup(d, &cache).ok().flatten());
        let names = entry
            .as_ref()
            .and_then(|e| scx_harness::kernel::source_tree(e, &cache).ok())
            .and_then(|t| scx_harness::selftests::names(&t).ok())
            .unwrap_or_default();
        if names.is_empty() {
            out.push(Trial::test(
                format!("selftest::{kernel}::kernel_not_built"),
                move || {
                    Err(format!(
                        "kernel {kernel} is not built, so its selftests cannot be listed\n  fix: `scx-harness kernel build {kernel}` (or `cargo ci test`)"
                    )
                    .into())
                },
            ));
            continue;
        }
        for name in names {
            let kernel = kernel.clone();
            out.push(Trial::test(
                format!("selftest::{kernel}::{name}"),
                move || selftest(&kernel, &name),
            ));
        }
    }
    out
}

/// The whole suite of `kernel` runs once per test run (one VM): the first
/// test to need it runs it, under a lock, and the others read its result
/// (per nextest run, `NEXTEST_RUN_ID`; without nextest, per process).
fn suite(kernel: &str) -> Result<scx_harness::selftests::SuiteRun, String> {
    let entry = common::named_kernel(kernel);
    let run = std::env::var("NEXTEST_RUN_ID").unwrap_or_else(|_| std::process::id().to_string());
    let dir = std::env::temp_dir().join("scx-harness-selftests");
    let file = dir.join(format!("{run}-{}.json", entry.meta.key));
    let _lock = scx_harness::kernel::lock(&dir, &format!("{run}-{}", entry.meta.key))
        .map_err(|e| format!("{e:#}"))?;
    if let Ok(bytes) = std::fs::read(&file) {
        return serde_json::from_slice(&bytes).map_err(|e| e.to_string());
    }
    let cache = scx_harness::kernel::Cache::user();
    let mut progress = scx_harness::progress::Progress::new(&format!("selftests {kernel}"));
    let runner = scx_harness::selftests::build(&cache, &entry, &mut progress)
        .map_err(|e| format!("building the selftests of {kernel}: {e:#}"))?;
    let work = tempfile::Builder::new()
        .prefix(&format!("scx-harness-selftests-{kernel}-"))
        .tempdir()
        .map_err(|e| e.to_string())?
        .keep();
    let suite = scx_harness::selftests::run_suite(
        &entry,
        &runner,
        &work,
        // Within nextest's kill for this binary (.config/nextest.toml).
        std::time::Duration::from_secs(600),
        None,
    )
    .map_err(|e| format!("{e:#}"))?;
    scx_harness::kernel::cache::write_atomic(&file, &serde_json::to_vec(&suite).unwrap())
        .map_err(|e| format!("{e:#}"))?;
    Ok(suite)
}

fn selftest(kernel: &str, name: &str) -> Result<(), libtest_mimic::Failed> {
    use scx_harness::selftests::{Known, Status};
    let suite = suite(kernel)?;
    let Some(o) = suite.outcomes.get(name) else {
        return Err(format!(
            "{name} did not run: the suite ended before it ({}); its last lines:\n{}\nconsole: {}",
            suite.vm_outcome,
            suite.tail.join("\n"),
            suite.console_log.display()
        )
        .into());
    };
    match o.status {
        Status::Pass => Ok(()),
        Status::Skip => {
            eprintln!(
                "{name}: skipped by the kernel's runner: {}",
                o.output.join(" | ")
            );
            Ok(())
        }
        Status::Fail => match Known::load()
            .map_err(|e| format!("{e:#}"))?
            .get(kernel, name)
        {
            Some(k) => {
                eprintln!(
                    "{name}: failed as kernel-config/selftests.yaml expects: {}",
                    k.reason
                );
                Ok(())
            }
            None => Err(format!(
                "{name} failed on {kernel}:\n{}\nconsole: {}",
                o.output.join("\n"),
                suite.console_log.display()
            )
            .into()),
        },
    }
}

fn main() {
    let args = Arguments::from_args();
    let mut all = trials();
    all.extend(selftest_trials());
    libtest_mimic::run(&args, all).exit();
}
