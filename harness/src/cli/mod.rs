//! The subcommands behind the `scx-harness` binary: argument types (clap)
//! and what each one does with the library. Printing for people lives here;
//! the modules below return data.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};

use crate::error::{fail, Failure};
use crate::kernel::{self, BuildSpec, Cache, Kernel, Source};
use crate::progress::Progress;
use crate::units::parse_positive_duration;

pub mod compare;
pub mod history;
pub mod run;
pub mod scenarios;
pub mod schedulers;
use crate::vm::{self, AccelChoice, GuestCommand, VmSpec};

#[derive(Debug, clap::Args)]
pub struct BuildArgs {
    /// Build this kernel tree in place (incrementally) instead of Debian's
    /// linux-source-6.12.
    #[arg(long, value_name = "DIR")]
    pub source: Option<PathBuf>,
    /// Extra config fragment applied after kernel-config/sched-ext.config
    /// (repeatable).
    #[arg(long = "config", value_name = "FILE")]
    pub configs: Vec<PathBuf>,
    /// Parallel make jobs (default: number of CPUs).
    #[arg(long, short)]
    pub jobs: Option<usize>,
}

impl BuildArgs {
    fn spec(&self) -> BuildSpec {
        let mut spec = BuildSpec::default();
        if let Some(dir) = &self.source {
            spec.source = Source::Tree(dir.clone());
        }
        spec.extra_fragments = self.configs.clone();
        if let Some(j) = self.jobs {
            spec.jobs = j.max(1);
        }
        spec
    }
}

/// Options shared by everything that boots a VM.
#[derive(Debug, Clone, clap::Args)]
pub struct VmOpts {
    /// A bzImage, a kernel tree, or a cache key (default: the default
    /// kernel, built on first use).
    #[arg(long, value_name = "PATH|KEY")]
    pub kernel: Option<String>,
    /// Accelerator: auto tries KVM once per host boot and falls back to TCG.
    #[arg(long, value_enum, default_value_t = AccelChoice::Auto)]
    pub accel: AccelChoice,
    /// Guest vCPUs.
    #[arg(long, default_value_t = 2)]
    pub cpus: u32,
    /// Guest memory (QEMU syntax).
    #[arg(long, default_value = "2G")]
    pub memory: String,
    /// Kill the VM after this long (e.g. 90s, 5m). Default: 5m; for `run`
    /// and `compare`, what the VM's cells need (their scenarios, attach
    /// and detach deadlines, and a minute).
    #[arg(long, value_parser = parse_positive_duration)]
    pub timeout: Option<Duration>,
}

/// `--timeout` when not given, for everything but `run` and `compare`.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(300);

impl VmOpts {
    pub fn timeout(&self) -> Duration {
        self.timeout.unwrap_or(DEFAULT_TIMEOUT)
    }
}

#[derive(Debug, clap::Args)]
pub struct VmArgs {
    #[command(flatten)]
    pub opts: VmOpts,
    /// Keep the run directory (console log, output) even on success.
    #[arg(long)]
    pub keep: bool,
    /// Command to run in the guest; without one, an interactive shell.
    #[arg(last = true)]
    pub command: Vec<String>,
}

#[derive(Debug, clap::Args)]
pub struct BenchBootArgs {
    #[command(flatten)]
    pub opts: VmOpts,
    /// Samples per variant.
    #[arg(long, default_value_t = 5)]
    pub samples: usize,
    /// Also run bare-vng variants that isolate one setting each.
    #[arg(long)]
    pub study: bool,
}

#[derive(Debug, clap::Args)]
pub struct GuestRunSchedulerArgs {
    /// The `scheduler::lifecycle::GuestSpec`, as JSON.
    #[arg(long)]
    pub spec_json: String,
    /// Where to write the report (`@shared/NAME`: the VM's shared directory).
    #[arg(long)]
    pub out: String,
}

pub fn kernel_build(args: BuildArgs) -> Result<i32> {
    let cache = Cache::user();
    let mut progress = Progress::new("kernel build");
    let started = std::time::Instant::now();
    let entry = kernel::build(&args.spec(), &cache, &mut progress)?;
    progress.finish(&format!(
        "{} {} ({})",
        entry.meta.key,
        entry.meta.release,
        if started.elapsed() < Duration::from_secs(2) {
            "cached"
        } else {
            "built"
        }
    ));
    println!("{}", entry.bzimage().display());
    Ok(0)
}

pub fn kernel_list() -> Result<i32> {
    let cache = Cache::user();
    let entries = cache.list()?;
    if entries.is_empty() {
        eprintln!(
            "no cached kernels in {} (build one with `scx-harness kernel build`)",
            cache.root().display()
        );
        return Ok(0);
    }
    println!(
        "{:<16}  {:<12}  {:>7}  {:<20}  SOURCE",
        "KEY", "RELEASE", "BUILD", "CREATED (UTC)"
    );
    for e in entries {
        println!(
            "{:<16}  {:<12}  {:>6}s  {:<20}  {}{}",
            e.meta.key,
            e.meta.release,
            e.meta.build_seconds,
            utc(e.meta.created),
            e.meta.source,
            if e.meta.fragments.len() > 1 {
                format!(" + {}", e.meta.fragments[1..].join(" + "))
            } else {
                String::new()
            }
        );
    }
    Ok(0)
}

pub fn kernel_path(key: Option<String>) -> Result<i32> {
    let cache = Cache::user();
    let entry = match key {
        Some(k) => cache.get(&k).ok_or_else(|| {
            fail(
                Failure::BadInput,
                format!("no cached kernel has key {k:?}\n  fix: `scx-harness kernel list` shows the keys"),
            )
        })?,
        None => kernel::cached_default(&cache)?.ok_or_else(|| {
            fail(
                Failure::BadInput,
                "the default kernel is not built yet\n  fix: run `scx-harness kernel build` (about 15 minutes on 2 cores)",
            )
        })?,
    };
    println!("{}", entry.bzimage().display());
    Ok(0)
}

pub fn kernel_rm(keys: Vec<String>) -> Result<i32> {
    let cache = Cache::user();
    let mut missing = Vec::new();
    for k in &keys {
        if cache.remove(k)? {
            eprintln!("removed {k}");
        } else {
            missing.push(k.as_str());
        }
    }
    if missing.is_empty() {
        Ok(0)
    } else {
        Err(fail(
            Failure::BadInput,
            format!(
                "no cached kernel has key(s) {}\n  fix: `scx-harness kernel list` shows the keys",
                missing.join(", ")
            ),
        ))
    }
}

/// `--kernel` if given, else the default kernel, built if missing.
pub fn kernel_for(opts: &VmOpts) -> Result<Kernel> {
    let cache = Cache::user();
    match &opts.kernel {
        Some(arg) => kernel::resolve(arg, &cache),
        None => {
            let mut progress = Progress::new("default kernel");
            let entry = kernel::build(&BuildSpec::default(), &cache, &mut progress)?;
            Ok(Kernel {
                bzimage: entry.bzimage(),
                entry: Some(entry),
            })
        }
    }
}

fn spec_for(opts: &VmOpts, kernel: &Kernel, work_dir: PathBuf, command: GuestCommand) -> VmSpec {
    let mut spec = VmSpec::new(kernel.bzimage.clone(), work_dir, command);
    spec.accel = opts.accel;
    spec.cpus = opts.cpus;
    spec.memory = opts.memory.clone();
    spec.timeout = Some(opts.timeout());
    spec
}

pub(crate) fn new_run_dir(prefix: &str) -> Result<PathBuf> {
    let dir = tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .context("creating a run directory")?;
    Ok(dir.keep())
}

pub fn vm(args: VmArgs) -> Result<i32> {
    let kernel = kernel_for(&args.opts)?;
    let work = new_run_dir("scx-harness-vm-")?;
    let command = if args.command.is_empty() {
        GuestCommand::Shell
    } else {
        GuestCommand::Exec(args.command.clone())
    };
    let interactive = command == GuestCommand::Shell;
    let mut spec = spec_for(&args.opts, &kernel, work.clone(), command);
    spec.stream = true;
    if interactive {
        spec.timeout = None;
    }
    let result = vm::run(&spec)?;
    let code = result.exit_code();
    let trouble = result.kernel_trouble();
    if let (Ok(_), Some(t)) = (&code, &trouble) {
        eprintln!("scx-harness: warning: {t}");
    }
    let keep = args.keep || code.is_err() || trouble.is_some();
    if keep {
        eprintln!("scx-harness: run directory kept: {}", work.display());
    } else {
        let _ = std::fs::remove_dir_all(&work);
    }
    code
}

#[derive(Debug, clap::Args)]
pub struct BenchProbeArgs {
    #[command(flatten)]
    pub opts: VmOpts,
    /// Rounds with the probe, and as many without (many short rounds: the
    /// loss is judged between upper quartiles, see BENCHMARKS.md).
    #[arg(long, default_value_t = 60)]
    pub rounds: usize,
    /// Measured seconds per round (after 1 s of warm-up).
    #[arg(long, default_value_t = 2)]
    pub seconds: u64,
    /// Ping-pong pairs.
    #[arg(long, default_value_t = 2)]
    pub pairs: u32,
    /// Rounds after those, with the probe attached and the kernel timing
    /// each run of its programs: where its cost goes (0: none).
    #[arg(long, default_value_t = 5)]
    pub cost_rounds: usize,
}

pub fn bench_probe(args: BenchProbeArgs) -> Result<i32> {
    let kernel = kernel_for(&args.opts)?;
    crate::bench::probe(
        &kernel,
        &args.opts,
        args.rounds,
        args.seconds,
        args.pairs,
        args.cost_rounds,
    )
}

#[derive(Debug, clap::Args)]
pub struct BenchHotswapArgs {
    /// Schedulers (default: scx_simple, scx_fifo, scx_vtime, scx_qmap).
    #[arg(long = "scheduler", short = 's', value_name = "NAME")]
    pub schedulers: Vec<String>,
    /// Rounds of both modes.
    #[arg(long, default_value_t = 1)]
    pub rounds: usize,
    /// A kernel for both (default: the default kernel).
    #[arg(long, value_name = "PATH|KEY")]
    pub kernel: Option<String>,
    /// Scenarios (default: the default suite's four).
    pub scenarios: Vec<String>,
}

pub fn bench_hotswap(args: BenchHotswapArgs) -> Result<i32> {
    let or = |v: Vec<String>, d: &[&str]| {
        if v.is_empty() {
            d.iter().map(|s| s.to_string()).collect()
        } else {
            v
        }
    };
    let schedulers = or(
        args.schedulers,
        &["scx_simple", "scx_fifo", "scx_vtime", "scx_qmap"],
    );
    let scenarios = or(
        args.scenarios,
        &[
            "idle-baseline",
            "interactive-vs-batch",
            "wake-pingpong",
            "cgroup-weights",
        ],
    );
    let vm_args: Vec<String> = args
        .kernel
        .iter()
        .flat_map(|k| ["--kernel".to_string(), k.clone()])
        .collect();
    crate::bench::hotswap(&vm_args, &schedulers, &scenarios, args.rounds.max(1))
}

pub fn bench_boot(args: BenchBootArgs) -> Result<i32> {
    let kernel = kernel_for(&args.opts)?;
    crate::bench::boot(&kernel, &args.opts, args.samples, args.study)
}

pub fn guest_run_scheduler(args: GuestRunSchedulerArgs) -> Result<i32> {
    crate::agent::quiet_tracing();
    let spec: crate::scheduler::lifecycle::GuestSpec = serde_json::from_str(&args.spec_json)
        .map_err(|e| fail(Failure::BadInput, format!("--spec-json: {e}")))?;
    let out = crate::scheduler::lifecycle::guest_path(&args.out);
    let report = crate::scheduler::lifecycle::run_in_guest(&spec, &out)?;
    println!("{}", serde_json::to_string(&report.verdict)?);
    Ok(0)
}

pub(crate) fn utc(secs: u64) -> String {
    // Civil-from-days (Howard Hinnant), to avoid a date dependency.
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_formats_known_instants() {
        assert_eq!(utc(0), "1970-01-01 00:00:00");
        assert_eq!(utc(1_795_000_000), "2026-11-18 11:06:40");
    }
}
