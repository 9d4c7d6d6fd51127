//! `scx-harness schedulers list|build|run`: the registry, built for a
//! kernel, and one scheduler's lifecycle in a VM for people at a desk.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;

use super::{kernel_for, new_run_dir, VmOpts};
use crate::error::{fail, Failure};
use crate::kernel::{self, Cache, Kernel};
use crate::progress::Progress;
use crate::scheduler::build::{self, Artifact, BuildCtx, Built};
use crate::scheduler::lifecycle::{run_in_vm, verdict_of, GuestSpec, Report, Verdict};
use crate::scheduler::registry::{Def, Registry, Source};
use crate::scheduler::{bpf_object, status};
use crate::units::parse_positive_duration;

#[derive(Debug, Clone, clap::Args)]
pub struct RegistryOpt {
    /// The scheduler registry (default: $SCX_HARNESS_REGISTRY, else the
    /// checkout's schedulers/registry.yaml).
    #[arg(long, value_name = "FILE")]
    pub registry: Option<PathBuf>,
}

impl RegistryOpt {
    pub fn load(&self) -> Result<Registry> {
        Registry::load(&self.registry.clone().unwrap_or_else(Registry::default_path))
    }

    /// The registry as it is on the kernel `--kernel` names (`on:` and
    /// `kernels:` applied; kernel-config/kernels.yaml), decided without
    /// building anything.
    pub fn load_for(&self, kernel: Option<&str>) -> Result<Registry> {
        let name = kernel::name_of_arg(kernel, &Cache::user());
        Ok(self.load()?.for_kernel(name.as_deref()))
    }
}

#[derive(Debug, clap::Args)]
pub struct ListArgs {
    #[command(flatten)]
    pub registry: RegistryOpt,
    /// The kernel to show build and load status for: a name of
    /// kernel-config/kernels.yaml, a cache key or a bzImage (default: the
    /// default kernel; listing never builds anything).
    #[arg(long, value_name = "NAME|PATH|KEY")]
    pub kernel: Option<String>,
}

#[derive(Debug, clap::Args)]
pub struct BuildArgs {
    #[command(flatten)]
    pub registry: RegistryOpt,
    #[command(flatten)]
    pub vm: VmOpts,
    /// Schedulers to build (default: every one in the registry).
    pub names: Vec<String>,
}

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub registry: RegistryOpt,
    #[command(flatten)]
    pub vm: VmOpts,
    #[command(flatten)]
    pub target: super::TargetOpts,
    /// The scheduler (a name from `scx-harness schedulers list`).
    pub name: String,
    /// Run this shell command under the scheduler instead of the default
    /// CPU load.
    #[arg(long, value_name = "CMD")]
    pub payload: Option<String>,
    /// How long the default CPU load (2 busy loops per vCPU) runs.
    #[arg(long, value_parser = parse_positive_duration, default_value = "5s")]
    pub load_for: Duration,
    /// Keep the run directory (console log, report, scheduler output) even
    /// when the run was clean.
    #[arg(long)]
    pub keep: bool,
    /// Extra arguments for the scheduler, after the registry's own.
    #[arg(last = true)]
    pub args: Vec<String>,
}

/// A shell command that keeps `threads` busy loops running for `secs`.
pub fn cpu_load(threads: u32, secs: f64) -> String {
    format!(
        "i=0; while [ $i -lt {threads} ]; do timeout {secs} sh -c 'while :; do :; done' & i=$((i+1)); done; wait"
    )
}

fn kernel_entry(kernel: &Kernel) -> Option<&kernel::Entry> {
    kernel.entry.as_ref()
}

fn source_text(d: &Def) -> String {
    match &d.source {
        None => "kernel".into(),
        Some(Source::Workspace(p)) => format!("workspace {p}"),
        Some(Source::KernelExample(e)) => format!("kernel tools/sched_ext/{e}"),
        Some(Source::Crate(c)) => format!("crates.io {} {}", c.name, c.version),
        Some(Source::BpfC(p)) => format!("bpf_c {}", p.display()),
        Some(Source::Path(p)) => format!("path {}", p.display()),
    }
}

pub fn list(args: ListArgs) -> Result<i32> {
    let registry = args.registry.load_for(args.kernel.as_deref())?;
    let cache = Cache::user();
    let catalog = kernel::Catalog::embedded();
    let kernel = match args.kernel.as_deref() {
        Some(k) if catalog.get(k).is_some() => {
            kernel::lookup(catalog.require(k)?, &cache)?.map(|e| Kernel {
                bzimage: e.bzimage(),
                entry: Some(e),
            })
        }
        Some(k) => Some(kernel::resolve(k, &cache)?),
        None => kernel::cached_default(&cache)?.map(|e| Kernel {
            bzimage: e.bzimage(),
            entry: Some(e),
        }),
    };
    let ctx = BuildCtx {
        cache: &cache,
        kernel: kernel.as_ref().and_then(kernel_entry),
        registry: &registry,
    };
    let name = registry.kernel.as_deref().unwrap_or("unnamed");
    match &kernel {
        Some(k) => println!(
            "registry {}; kernel {name}: {} ({})",
            registry.path.display(),
            k.bzimage.display(),
            k.release().unwrap_or("not a cached build")
        ),
        None => println!(
            "registry {}; kernel {name} is not built yet (`scx-harness kernel build {name}`)",
            registry.path.display()
        ),
    }
    println!(
        "{:<15} {:<10} {:<36} {:<12} {:<6} LAST RUN ON THIS KERNEL",
        "NAME", "KIND", "SOURCE", "VERSION", "BUILT"
    );
    for d in &registry.schedulers {
        let built = build::cached(d, &ctx);
        let last = kernel
            .as_ref()
            .and_then(|k| status::last(&cache, &k.bzimage, &d.name))
            .map(|s| {
                if s.why.is_empty() {
                    s.verdict
                } else {
                    format!("{}: {}", s.verdict, first_line(&s.why, 60))
                }
            })
            .unwrap_or_else(|| "never tried".into());
        println!(
            "{:<15} {:<10} {:<36} {:<12} {:<6} {}{}{}{}",
            d.name,
            d.kind.as_str(),
            source_text(d),
            built
                .as_ref()
                .map(|b| b.version.clone())
                .filter(|v| !v.is_empty())
                .unwrap_or_else(|| "-".into()),
            if built.is_some() { "yes" } else { "no" },
            last,
            if d.fixture { " [fixture]" } else { "" },
            d.unsupported
                .as_ref()
                .map(|u| format!(" [unsupported: {}]", first_line(&u.reason, 60)))
                .unwrap_or_default(),
            d.known_issue
                .as_ref()
                .map(|k| format!(" [known issue: {}]", first_line(&k.reason, 60)))
                .unwrap_or_default()
        );
    }
    for d in &registry.absent {
        println!(
            "{:<15} {:<10} {:<36} not on kernel {name} (only {})",
            d.name,
            d.kind.as_str(),
            source_text(d),
            d.kernels.as_deref().unwrap_or_default().join(", ")
        );
    }
    Ok(0)
}

fn first_line(s: &str, max: usize) -> String {
    let l = s.lines().next().unwrap_or("");
    if l.chars().count() > max {
        format!("{}...", l.chars().take(max).collect::<String>())
    } else {
        l.to_string()
    }
}

pub fn build(args: BuildArgs) -> Result<i32> {
    // Several --kernel (or `all`): the registry's schedulers of each kernel.
    let kernels = crate::kernel::Catalog::embedded().expand_all(&args.vm.kernel);
    if kernels.len() > 1 {
        for k in kernels {
            let mut vm = args.vm.clone();
            vm.kernel = vec![k.clone()];
            println!("kernel {k}:");
            build(BuildArgs {
                registry: args.registry.clone(),
                vm,
                names: args.names.clone(),
            })?;
        }
        return Ok(0);
    }
    let args = BuildArgs {
        vm: crate::cli::VmOpts {
            kernel: kernels,
            ..args.vm
        },
        ..args
    };
    let registry = args.registry.load_for(args.vm.kernel_arg()?)?;
    let defs: Vec<&Def> = if args.names.is_empty() {
        registry.schedulers.iter().collect()
    } else {
        args.names
            .iter()
            .map(|n| registry.get(n))
            .collect::<Result<_>>()?
    };
    let kernel = kernel_for(&args.vm)?;
    let cache = Cache::user();
    let ctx = BuildCtx {
        cache: &cache,
        kernel: kernel_entry(&kernel),
        registry: &registry,
    };
    let mut progress = Progress::new("schedulers build");
    for d in defs {
        let built = build::build(d, &ctx, &mut progress)?;
        println!("{:<15} {}", d.name, describe(&built));
    }
    progress.finish("done");
    Ok(0)
}

fn describe(b: &Built) -> String {
    match &b.artifact {
        Artifact::Binary(p) | Artifact::Object(p) => p.display().to_string(),
        Artifact::Nothing => "(the kernel's fair class)".into(),
    }
}

/// Refuses, before any VM boots, what cannot work: a binary that is not
/// there, an object without a struct_ops map.
pub fn check_artifact(built: &Built) -> Result<()> {
    match &built.artifact {
        Artifact::Binary(p) if !p.is_file() => Err(fail(
            Failure::BadInput,
            format!(
                "{}: binary {} does not exist\n  fix: `scx-harness schedulers build {}`, or correct its source in the registry",
                built.def.name,
                p.display(),
                built.def.name
            ),
        )),
        Artifact::Object(p) => bpf_object::check(p).map(|_| ()),
        _ => Ok(()),
    }
}

pub fn run(args: RunArgs) -> Result<i32> {
    args.target.check()?;
    let on_host = args.target.target == super::TargetKind::Host;
    let registry = match on_host {
        true => args
            .registry
            .load()?
            .for_kernel(super::host_kernel_name(&args.vm)?.as_deref()),
        false => args.registry.load_for(args.vm.kernel_arg()?)?,
    };
    let def = registry.get(&args.name)?.clone();
    if !args.args.is_empty() && def.kind != crate::scheduler::registry::Kind::Binary {
        return Err(fail(
            Failure::BadInput,
            format!(
                "{} is a {} scheduler: it takes no arguments",
                def.name,
                def.kind.as_str()
            ),
        ));
    }
    // On a host, the machine is checked before anything is built.
    let host = match on_host {
        true => Some(crate::host::preflight(
            crate::host::Needs {
                cpus: 1,
                cpu_controller: false,
                hotplug: None,
            },
            args.target.replace,
        )?),
        false => None,
    };
    // Then the kernel (fetched or built if it must be).
    let kernel = args.target.kernel(&args.vm)?;
    let cache = Cache::user();
    let ctx = BuildCtx {
        cache: &cache,
        kernel: kernel_entry(&kernel),
        registry: &registry,
    };
    let mut progress = Progress::new(&format!("scheduler {}", def.name));
    let built = args.target.scheduler(&def, &ctx, &mut progress)?;
    drop(progress);
    check_artifact(&built)?;
    let payload = args
        .payload
        .clone()
        .unwrap_or_else(|| cpu_load(2 * args.vm.cpus, args.load_for.as_secs_f64()));
    let spec = GuestSpec::for_built(&built, &args.args, Some(payload));
    let work = new_run_dir(&format!("scx-harness-{}-", def.name))?;
    let harness = std::env::current_exe()?;
    // The session: a VM's result, or how the host agent ended.
    let (verdict, report, session) = match &host {
        Some(h) => {
            eprintln!("running {} on this machine ({}) ...", def.name, h.release);
            let shared = work.join("shared");
            let argv = vec![
                harness.display().to_string(),
                "guest".into(),
                "run-scheduler".into(),
                "--on-host".into(),
                "--spec-json".into(),
                serde_json::to_string(&spec)?,
                "--out".into(),
                crate::protocol::shared_arg(crate::protocol::SCHEDULER_REPORT),
            ];
            let end = h
                .agent_run(
                    argv,
                    shared.clone(),
                    work.join("console.log"),
                    args.vm.timeout(),
                )
                .run()?;
            let report: Option<crate::scheduler::lifecycle::Report> =
                std::fs::read(shared.join(crate::protocol::SCHEDULER_REPORT))
                    .ok()
                    .and_then(|b| serde_json::from_slice(&b).ok());
            (verdict_of(&end, report.as_ref()), report, Err(end))
        }
        None => {
            eprintln!("booting {} with {} ...", kernel.bzimage.display(), def.name);
            let run = run_in_vm(&kernel.bzimage, &harness, &spec, &work, args.vm.timeout())?;
            let verdict = run.verdict();
            status::record(&cache, &kernel.bzimage, &def.name, &verdict)?;
            (verdict, run.report, Ok(run.vm))
        }
    };
    print_run(&def, report.as_ref(), &verdict);
    let left = host.as_ref().map_or(Ok(()), |h| h.check_left_nothing());
    if verdict.is_clean() && left.is_ok() && !args.keep {
        let _ = std::fs::remove_dir_all(&work);
    } else {
        eprintln!("scx-harness: run directory kept: {}", work.display());
    }
    if crate::process::interrupted() {
        if let Err(e) = &left {
            eprintln!("scx-harness: {e:#}");
        }
        return Err(fail(Failure::Interrupted, "interrupted".to_string()));
    }
    left?;
    match verdict {
        Verdict::Clean => Ok(0),
        // The VM's own classification (timed out, infrastructure) with its
        // evidence; on a host, how its agent ended.
        Verdict::NoReport { .. } => match session {
            Ok(vm) => vm
                .exit_code()
                .and_then(|_| Err(fail(Failure::Infrastructure, verdict.why().to_string()))),
            Err(end) => Err(fail(
                match end.outcome {
                    crate::vm::Outcome::Interrupted => Failure::Interrupted,
                    _ => Failure::Infrastructure,
                },
                verdict.why().to_string(),
            )),
        },
        v => Err(fail(
            Failure::UnderTest,
            format!("{} {}: {}", def.name, v.label().replace('_', " "), v.why()),
        )),
    }
}

fn print_run(def: &Def, report: Option<&Report>, verdict: &Verdict) {
    println!("scheduler     {}", def.name);
    println!("verdict       {}", verdict.label());
    let log = report.map_or(&[][..], |r| &r.loader_log[..]);
    if let Some(reason) = crate::scheduler::lifecycle::expected_failure(def, verdict, log) {
        println!(
            "known         its registry entry expects this failure: {}",
            first_line(reason, 200)
        );
    }
    if let Some(r) = report {
        if let Some(ops) = &r.ops {
            println!("ops           {ops}");
        }
        if let Some(ms) = r.attach_ms {
            println!("attached in   {ms} ms");
        }
        if let Some(ms) = r.left_after_ms {
            println!("left after    {ms} ms");
        }
        println!("exit          {}", r.exit_summary());
        if let Some(e) = &r.scheduler_exit {
            println!("it said       {e}");
        }
        println!(
            "nr_rejected   {} -> {}; enable_seq {} -> {}",
            r.before.nr_rejected, r.after.nr_rejected, r.before.enable_seq, r.after.enable_seq
        );
        if !r.loader_log.is_empty() && !verdict.is_clean() {
            println!("loader's last lines:");
            for l in &r.loader_log {
                println!("  {l}");
            }
        }
    }
    if !verdict.is_clean() {
        println!("why           {}", verdict.why());
    }
}
