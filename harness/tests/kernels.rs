//! The kernel axis: every scheduler of the registry through its lifecycle
//! on every kernel of kernel-config/kernels.yaml other than the default
//! (tests/schedulers.rs runs them on that one), one test each:
//! `lifecycle::KERNEL::SCHEDULER`. A scheduler whose registry entry leaves
//! a kernel out (`kernels:`) has no test there; one marked unsupported
//! there must fail exactly as its entry says. Listing reads the two data
//! files only; each test boots one VM on a cached kernel (`cargo ci test`
//! builds and fetches them all; a missing one fails the test with the
//! command that gets it).

mod common;

use libtest_mimic::{Arguments, Trial};
use scx_harness::cli::schedulers::cpu_load;
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
                    common::check_clean_on(&entry, &name, cpu_load(4, 3.0));
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
            let run = common::run_scheduler_on(&entry, "scx_local", &[], Some(cpu_load(4, 2.0)));
            let r = run
                .report
                .as_ref()
                .ok_or_else(|| format!("no report\n{}", common::explain_vm(&run.vm)))?;
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

fn main() {
    let args = Arguments::from_args();
    libtest_mimic::run(&args, trials()).exit();
}
