//! The subcommands behind the `scx-harness` binary: argument types (clap)
//! and what each one does with the library. Printing for people lives here;
//! the modules below return data.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};

use crate::error::{fail, Failure};
use crate::kernel::{self, BuildSpec, Cache, Kernel};
use crate::progress::Progress;
use crate::units::parse_positive_duration;

pub mod bisect;
pub mod compare;
pub mod dev;
pub mod history;
pub mod record;
pub mod replay_check;
pub mod run;
pub mod scenarios;
pub mod schedulers;
pub mod sweep;
use crate::vm::{self, AccelChoice, GuestCommand, VmSpec};

#[derive(Debug, clap::Args)]
pub struct BuildArgs {
    /// Kernels of kernel-config/kernels.yaml (lts, stable, debian), or
    /// `all` for every one; default: the catalog's default (lts).
    #[arg(value_name = "NAME", conflicts_with = "source")]
    pub names: Vec<String>,
    /// Build this kernel tree in place (incrementally) instead of a named
    /// kernel's Debian source.
    #[arg(long, value_name = "DIR")]
    pub source: Option<PathBuf>,
    /// Extra config fragment applied after the kernel's own fragments
    /// (repeatable).
    #[arg(long = "config", value_name = "FILE")]
    pub configs: Vec<PathBuf>,
    /// Parallel make jobs (default: number of CPUs).
    #[arg(long, short)]
    pub jobs: Option<usize>,
}

impl BuildArgs {
    /// The kernel to build: a tree, or a catalog kernel (plain `ensure`
    /// when it is a prebuilt one or nothing is added to it).
    fn target(&self, cache: &Cache, progress: &mut Progress) -> Result<BuildTarget> {
        let mut spec = match &self.source {
            Some(dir) => BuildSpec::for_tree(dir)?,
            None => {
                let catalog = kernel::Catalog::embedded();
                let def = match self.names.first() {
                    Some(n) => catalog.require(n)?,
                    None => catalog.default_kernel(),
                };
                if self.configs.is_empty() && self.jobs.is_none() {
                    return Ok(BuildTarget::Named(def.clone()));
                }
                let mut spec = kernel::spec_of(def, cache, progress)?;
                // With extra fragments it is another kernel than the named one.
                if !self.configs.is_empty() {
                    spec.name = None;
                }
                spec
            }
        };
        spec.extra_fragments = self.configs.clone();
        if let Some(j) = self.jobs {
            spec.jobs = j.max(1);
        }
        Ok(BuildTarget::Spec(spec))
    }
}

enum BuildTarget {
    Named(kernel::KernelDef),
    Spec(BuildSpec),
}

/// `--target`: where cells run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum TargetKind {
    /// A VM booted per session (per VM shape, or per cell).
    #[default]
    Vm,
    /// This machine's running kernel, no VM (root; a kernel with
    /// sched_ext). See README, "Host mode".
    Host,
}

/// Where cells run, and how their schedulers are found.
#[derive(Debug, Clone, clap::Args)]
pub struct TargetOpts {
    /// Where the cells run: in VMs (default), or on this machine's running
    /// kernel (`host`: checked first, contained in a cgroup of the
    /// harness's own, a stalling scheduler detached at once; --kernel then
    /// only names the kernel whose tree builds kernel-example schedulers).
    #[arg(long, value_enum, default_value_t = TargetKind::Vm)]
    pub target: TargetKind,
    /// With --target host: detach a sched_ext scheduler that is already
    /// attached (sysrq-S) instead of refusing. It is not restarted.
    #[arg(long)]
    pub replace: bool,
    /// Never build a scheduler: use what `scx-harness schedulers build`
    /// left in the cache (a read-only checkout, a lab machine without the
    /// toolchain); a scheduler not built is an error naming it.
    #[arg(long)]
    pub no_build: bool,
}

impl TargetOpts {
    /// The kernel the target needs: in a VM, `--kernel`'s (fetched or built
    /// if it must be, `kernel_for`); on the host, the one whose tree builds
    /// kernel-example schedulers (`host_build_kernel`).
    pub fn kernel(&self, vm: &VmOpts) -> Result<Kernel> {
        match self.target {
            TargetKind::Host => host_build_kernel(vm),
            TargetKind::Vm => kernel_for(vm),
        }
    }
}

impl TargetOpts {
    /// `--replace` without `--target host` is refused: it would do nothing.
    pub fn check(&self) -> Result<()> {
        if self.replace && self.target != TargetKind::Host {
            return Err(fail(
                Failure::BadInput,
                "--replace only applies to --target host\n  fix: add --target host, or drop --replace",
            ));
        }
        Ok(())
    }

    /// A scheduler, built for `ctx`'s kernel, or with --no-build the one
    /// built before.
    pub fn scheduler(
        &self,
        def: &crate::scheduler::registry::Def,
        ctx: &crate::scheduler::build::BuildCtx,
        progress: &mut Progress,
    ) -> Result<crate::scheduler::build::Built> {
        if !self.no_build {
            return crate::scheduler::build::build(def, ctx, progress);
        }
        crate::scheduler::build::cached(def, ctx).ok_or_else(|| {
            fail(
                Failure::BadInput,
                format!(
                    "{} is not built for this kernel in {}, and --no-build was given\n  fix: run `scx-harness schedulers build {}` first (with the same --kernel; under sudo the cache is root's unless SCX_HARNESS_CACHE says otherwise)",
                    def.name,
                    ctx.cache.root().display(),
                    def.name
                ),
            )
        })
    }
}

/// What a command that keeps one serving session sets up (`dev`,
/// `bisect`), in this order: the host target's preflight (with
/// `--target host`), its run directory (`--out`, else
/// ./scx-runs/PREFIX-TIMESTAMP; canonical, as the guest sees it), the
/// history database opened once (so a bad `--record` fails before
/// anything runs), and the harness's own executable (what the guest
/// runs).
pub struct Serving {
    pub host: Option<crate::host::Host>,
    pub rundir: crate::rundir::RunDir,
    pub dir: PathBuf,
    pub harness: PathBuf,
}

impl Serving {
    pub fn start(
        prefix: &str,
        target: &TargetOpts,
        scenarios: &[crate::scenario::Loaded],
        out: Option<PathBuf>,
        record: Option<&std::path::Path>,
    ) -> Result<Serving> {
        let host = match target.target == TargetKind::Host {
            true => Some(crate::host::preflight(
                crate::host::Needs::of(scenarios),
                target.replace,
            )?),
            false => None,
        };
        let rundir =
            crate::rundir::RunDir::create(out, &format!("{prefix}-{}", run::timestamp()), 64)?;
        let dir = std::fs::canonicalize(rundir.path())?;
        if let Some(db) = record {
            crate::history::Db::open(db)?;
        }
        Ok(Serving {
            host,
            rundir,
            dir,
            harness: std::env::current_exe()?,
        })
    }

    /// The serving session's base (its VMs go under `sessions/`), on
    /// `kernel` unless on the host.
    pub fn session<'a>(
        &'a self,
        kernel: &'a Kernel,
        accel: AccelChoice,
    ) -> crate::runner::Session<'a> {
        crate::runner::Session {
            target: crate::runner::Target::of(self.host.as_ref(), &kernel.bzimage, accel),
            harness: &self.harness,
            dir: self.dir.join(crate::report::SESSIONS_DIR),
            timeout: None,
        }
    }
}

/// The scenarios of a command that keeps one VM (`who`: dev, bisect):
/// `names` resolved (files or bundled names; none: `dev::DEFAULT_SCENARIO`),
/// refused as bad input naming the two files when their VM shapes (`vm:`)
/// differ.
pub fn one_vm_scenarios(names: &[String], who: &str) -> Result<Vec<crate::scenario::Loaded>> {
    let names = match names.is_empty() {
        true => vec![dev::DEFAULT_SCENARIO.to_string()],
        false => names.to_vec(),
    };
    let scenarios = names
        .iter()
        .map(|s| crate::scenario::resolve(s))
        .collect::<Result<Vec<_>>>()?;
    match scenarios
        .iter()
        .find(|s| s.scenario.vm != scenarios[0].scenario.vm)
    {
        Some(other) => Err(fail(
            Failure::BadInput,
            format!(
                "{}: its VM shape (`vm:`) differs from {}'s, and {who} keeps one VM\n  fix: run scenarios of one shape",
                other.path.display(),
                scenarios[0].path.display()
            ),
        )),
        None => Ok(scenarios),
    }
}

/// The kernel whose tree a host run's schedulers are built in: --kernel
/// if given, else the cached kernel of the running release, else none
/// (workspace, crate and BPF-object schedulers need no tree).
pub fn host_build_kernel(opts: &VmOpts) -> Result<Kernel> {
    if opts.kernel_arg()?.is_some() {
        return kernel_for(opts);
    }
    let entry = running_release_entry();
    Ok(Kernel {
        bzimage: entry.as_ref().map(|e| e.bzimage()).unwrap_or_default(),
        entry,
    })
}

/// The catalog name of [`host_build_kernel`]'s kernel, found without
/// fetching or building anything.
pub fn host_kernel_name(opts: &VmOpts) -> Result<Option<String>> {
    Ok(match opts.kernel_arg()? {
        Some(k) => kernel::name_of_arg(Some(k), &Cache::user()),
        None => running_release_entry().and_then(|e| e.meta.name),
    })
}

/// The newest cached kernel of the running release.
fn running_release_entry() -> Option<kernel::Entry> {
    let release = crate::host::release();
    Cache::user()
        .list()
        .unwrap_or_default()
        .into_iter()
        .find(|e| e.meta.release == release)
}

/// Options shared by everything that boots a VM.
#[derive(Debug, Clone, clap::Args)]
pub struct VmOpts {
    /// A kernel name of kernel-config/kernels.yaml (lts, stable, debian:
    /// fetched and built on first use), a cache key, a bzImage or a kernel
    /// tree (default: the catalog's default, lts; for `run --suite`, the
    /// suite's own kernels). `run` and `schedulers build` take it more
    /// than once (`schedulers build --kernel all`: every named kernel):
    /// the cells on each kernel, one after the other.
    #[arg(long, value_name = "NAME|PATH|KEY")]
    pub kernel: Vec<String>,
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

    /// The options with their defaults (no kernel named).
    pub fn default_for_bench() -> VmOpts {
        VmOpts {
            kernel: Vec::new(),
            accel: AccelChoice::Auto,
            cpus: 2,
            memory: "2G".into(),
            timeout: None,
        }
    }

    /// The VMs a bench boots with these options.
    pub fn bench_vm(&self) -> crate::bench::BenchVm {
        crate::bench::BenchVm {
            accel: self.accel,
            cpus: self.cpus,
            memory: self.memory.clone(),
            timeout: self.timeout(),
        }
    }

    /// The one `--kernel` of a command that boots one kernel (`None`: the
    /// default); more than one is bad input.
    pub fn kernel_arg(&self) -> Result<Option<&str>> {
        match &self.kernel[..] {
            [] => Ok(None),
            [k] => Ok(Some(k)),
            ks => Err(fail(
                Failure::BadInput,
                format!(
                    "--kernel is given {} times ({}); this command boots one kernel\n  \
                     fix: pass one --kernel (`scx-harness run` takes several)",
                    ks.len(),
                    ks.join(", ")
                ),
            )),
        }
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
pub struct SelftestsArgs {
    #[command(flatten)]
    pub opts: VmOpts,
    /// Keep the run directory (console log) even when every test passed.
    #[arg(long)]
    pub keep: bool,
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
    /// The `scheduler::lifecycle::GuestSpec`, as JSON. Several run in turn,
    /// each with the `--out` of the same place.
    #[arg(long, required = true)]
    pub spec_json: Vec<String>,
    /// Where to write the report (`@shared/NAME`: the VM's shared
    /// directory), one per `--spec-json`.
    #[arg(long, required = true)]
    pub out: Vec<String>,
    /// Running on a host (`--target host`): its trace settings are left
    /// alone.
    #[arg(long)]
    pub on_host: bool,
}

pub fn kernel_build(args: BuildArgs) -> Result<i32> {
    // Several names (or `all`): each in turn, one error stopping the rest.
    let catalog = kernel::Catalog::embedded();
    let names = catalog.expand_all(&args.names);
    if names.len() > 1 {
        if !args.configs.is_empty() || args.jobs.is_some() {
            return Err(fail(
                Failure::BadInput,
                "--config and --jobs apply to one kernel\n  fix: build the kernels one at a time"
                    .to_string(),
            ));
        }
        for n in &names {
            catalog.require(n)?;
        }
        for n in names {
            kernel_build(BuildArgs {
                names: vec![n],
                source: None,
                configs: Vec::new(),
                jobs: None,
            })?;
        }
        return Ok(0);
    }
    let args = BuildArgs { names, ..args };
    let cache = Cache::user();
    let what = match (&args.source, args.names.first()) {
        (Some(d), _) => format!("kernel build {}", d.display()),
        (None, Some(n)) => format!("kernel {n}"),
        (None, None) => "kernel (default)".to_string(),
    };
    let mut progress = Progress::new(&what);
    let started = std::time::Instant::now();
    let entry = match args.target(&cache, &mut progress)? {
        BuildTarget::Named(def) => kernel::ensure(&def, &cache, &mut progress)?,
        BuildTarget::Spec(spec) => kernel::build(&spec, &cache, &mut progress)?,
    };
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

/// Disk use of a directory tree in bytes (files only; links not followed).
fn du(dir: &std::path::Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            match e.file_type() {
                Ok(t) if t.is_dir() => stack.push(e.path()),
                Ok(t) if t.is_file() => total += e.metadata().map_or(0, |m| m.len()),
                _ => {}
            }
        }
    }
    total
}

pub fn kernel_list() -> Result<i32> {
    let cache = Cache::user();
    let catalog = kernel::Catalog::embedded();
    println!("named kernels ({}):", kernel::catalog::FILE);
    println!(
        "  {:<8}  {:<18}  {:<16}  {:>8}  {:>6}  DESCRIPTION",
        "NAME", "RELEASE", "KEY", "SIZE", "BUILD"
    );
    let mut named_keys = Vec::new();
    for def in &catalog.kernels {
        let entry = kernel::lookup(def, &cache)?;
        let default = if def.name == catalog.default {
            " (default)"
        } else {
            ""
        };
        match &entry {
            Some(e) => {
                named_keys.push(e.meta.key.clone());
                println!(
                    "  {:<8}  {:<18}  {:<16}  {:>7}M  {:>5}s  {}{default}",
                    def.name,
                    e.meta.release,
                    e.meta.key,
                    du(&e.dir) / (1 << 20),
                    e.meta.build_seconds,
                    def.description
                );
            }
            None => println!(
                "  {:<8}  {:<18}  {:<16}  {:>8}  {:>6}  {}{default}",
                def.name, "-", "not here", "-", "-", def.description
            ),
        }
    }
    let others: Vec<_> = cache
        .list()?
        .into_iter()
        .filter(|e| !named_keys.contains(&e.meta.key))
        .collect();
    if !others.is_empty() {
        println!("\nother cached kernels:");
        println!(
            "  {:<16}  {:<18}  {:>7}  {:<20}  SOURCE",
            "KEY", "RELEASE", "BUILD", "CREATED (UTC)"
        );
        for e in others {
            println!(
                "  {:<16}  {:<18}  {:>6}s  {:<20}  {}{}{}",
                e.meta.key,
                e.meta.release,
                e.meta.build_seconds,
                utc(e.meta.created),
                e.meta
                    .name
                    .as_deref()
                    .map(|n| format!("[{n}, older inputs] "))
                    .unwrap_or_default(),
                e.meta.source,
                // Fragments beyond the embedded ones (`--config FILE`).
                e.meta
                    .fragments
                    .iter()
                    .filter(|f| !f.starts_with("<embedded"))
                    .map(|f| format!(" + {f}"))
                    .collect::<String>()
            );
        }
    }
    println!("\n(`scx-harness kernel build NAME` fetches and builds a named kernel; `--kernel NAME` everywhere)");
    Ok(0)
}

pub fn kernel_path(key: Option<String>) -> Result<i32> {
    let cache = Cache::user();
    let catalog = kernel::Catalog::embedded();
    let named = key.as_deref().and_then(|k| catalog.get(k));
    let entry = match key {
        Some(k) if named.is_some() => kernel::lookup(named.expect("named"), &cache)?.ok_or_else(|| {
            fail(
                Failure::BadInput,
                format!("kernel {k} is not here yet\n  fix: `scx-harness kernel build {k}` fetches and builds it"),
            )
        })?,
        Some(k) => cache.get(&k).ok_or_else(|| {
            fail(
                Failure::BadInput,
                format!("no cached kernel has key {k:?}\n  fix: `scx-harness kernel list` shows the keys"),
            )
        })?,
        None => kernel::cached_default(&cache)?.ok_or_else(|| {
            fail(
                Failure::BadInput,
                "the default kernel is not built yet\n  fix: run `scx-harness kernel build` (about 9 minutes on 2 cores)",
            )
        })?,
    };
    println!("{}", entry.bzimage().display());
    Ok(0)
}

/// `scx-harness selftests`: the kernel's own sched_ext selftests, built in
/// its tree and run as one suite in a VM of it; a line per test.
pub fn selftests(args: SelftestsArgs) -> Result<i32> {
    let kernel = kernel_for(&args.opts)?;
    let entry = kernel.entry.as_ref().ok_or_else(|| {
        fail(
            Failure::BadInput,
            "the selftests are built in a cached kernel's tree; this kernel is a bare bzImage\n  \
             fix: pass a kernel name (`--kernel stable`) or a cache key",
        )
    })?;
    let cache = Cache::user();
    let tree = kernel::source_tree(entry, &cache)?;
    let names = crate::selftests::names(&tree)?;
    let mut progress = Progress::new("selftests");
    let runner = crate::selftests::build(&cache, entry, &mut progress)?;
    progress.finish(&format!(
        "{} test(s), runner {}",
        names.len(),
        runner.display()
    ));
    let work = new_run_dir("scx-harness-selftests-")?;
    let shape = spec_for(
        &args.opts,
        &kernel,
        work.clone(),
        GuestCommand::Exec(vec![]),
    );
    let suite = crate::selftests::run_suite(
        entry,
        &runner,
        &work,
        args.opts.timeout.unwrap_or(Duration::from_secs(600)),
        Some(&shape),
    )?;
    let known = crate::selftests::Known::load()?;
    let kname = kernel.name().unwrap_or("");
    let mut unexpected = 0;
    for n in &names {
        let (label, why) = match suite.outcomes.get(n) {
            Some(o) => match o.status {
                crate::selftests::Status::Pass => ("pass", String::new()),
                crate::selftests::Status::Skip => {
                    ("skip", o.output.last().cloned().unwrap_or_default())
                }
                crate::selftests::Status::Fail => match known.get(kname, n) {
                    Some(k) => ("known", k.reason.clone()),
                    None => {
                        unexpected += 1;
                        (
                            "FAIL",
                            o.output
                                .iter()
                                .rev()
                                .take(3)
                                .cloned()
                                .collect::<Vec<_>>()
                                .join(" | "),
                        )
                    }
                },
            },
            None => {
                unexpected += 1;
                (
                    "NOT RUN",
                    format!("the suite ended before it ({})", suite.vm_outcome),
                )
            }
        };
        println!("{label:<8} {n:<32} {why}");
    }
    if unexpected == 0 && !args.keep {
        let _ = std::fs::remove_dir_all(&work);
    } else {
        eprintln!("scx-harness: run directory kept: {}", work.display());
    }
    if unexpected > 0 {
        return Err(fail(
            Failure::UnderTest,
            format!(
                "{unexpected} of {} selftest(s) of kernel {} failed or did not run; console: {}",
                names.len(),
                kernel.name().unwrap_or(&entry.meta.key),
                suite.console_log.display()
            ),
        ));
    }
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
    match opts.kernel_arg()? {
        Some(arg) => kernel::resolve(arg, &cache),
        None => {
            let mut progress = Progress::new("default kernel");
            let catalog = kernel::Catalog::embedded();
            let entry = kernel::ensure(catalog.default_kernel(), &cache, &mut progress)?;
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
    /// Rounds with the probe also watch for stalls, as a scenario with a
    /// stall check does: the scenario's tasks, or every task of the guest
    /// (`tasks: guest`). Default: no stall check.
    #[arg(long, value_enum)]
    pub stall_watch: Option<StallWatchArg>,
}

/// `bench probe --stall-watch`.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum StallWatchArg {
    Scenario,
    Guest,
}

pub fn bench_probe(args: BenchProbeArgs) -> Result<i32> {
    let kernel = kernel_for(&args.opts)?;
    crate::bench::probe(
        &kernel,
        &args.opts.bench_vm(),
        args.rounds,
        args.seconds,
        args.pairs,
        args.cost_rounds,
        args.stall_watch.map(|w| match w {
            StallWatchArg::Scenario => crate::scenario::StallTasks::Scenario,
            StallWatchArg::Guest => crate::scenario::StallTasks::Guest,
        }),
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
    /// Also run the same cells with `--target host` inside a guest of the
    /// kernel (timed there, the boot left out): the host target's own cost
    /// per cell beside the VM target's.
    #[arg(long)]
    pub host: bool,
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
    let host_kernel = match args.host {
        true => {
            let mut opts = VmOpts::default_for_bench();
            opts.kernel = args.kernel.iter().cloned().collect();
            Some(kernel_for(&opts)?.bzimage)
        }
        false => None,
    };
    crate::bench::hotswap(
        &vm_args,
        &schedulers,
        &scenarios,
        args.rounds.max(1),
        host_kernel.as_deref(),
    )
}

#[derive(Debug, clap::Args)]
pub struct BenchDevArgs {
    /// The scheduler (a registry name; with --tree, any name).
    pub scheduler: String,
    /// The scenario each save runs.
    #[arg(default_value = dev::DEFAULT_SCENARIO)]
    pub scenario: String,
    /// Saves timed each way.
    #[arg(long, default_value_t = 5)]
    pub saves: usize,
    /// The scheduler's sources, as `dev --tree`.
    #[arg(long, value_name = "DIR")]
    pub tree: Option<PathBuf>,
    /// The file each save edits (a comment line appended, restored at the
    /// end; default: the scheduler's BPF source).
    #[arg(long, value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// A kernel for both (default: the default kernel).
    #[arg(long, value_name = "PATH|KEY")]
    pub kernel: Option<String>,
}

pub fn bench_dev(args: BenchDevArgs) -> Result<i32> {
    let mut opts = VmOpts::default_for_bench();
    opts.kernel = args.kernel.iter().cloned().collect();
    let kernel = kernel_for(&opts)?;
    let cache = Cache::user();
    let registry = crate::scheduler::registry::Registry::load(
        &crate::scheduler::registry::Registry::default_path(),
    )?
    .for_kernel(kernel.name());
    let source = crate::dev::source::DevSource::resolve(
        registry.get(&args.scheduler).ok(),
        &args.scheduler,
        args.tree.as_deref(),
        kernel.entry.as_ref(),
        &cache,
        registry.dir(),
    )?;
    let kernel_arg: Vec<String> = args
        .kernel
        .iter()
        .flat_map(|k| ["--kernel".to_string(), k.clone()])
        .collect();
    crate::bench::edit_loop(
        &source,
        &kernel,
        &cache,
        &kernel_arg,
        &args.scenario,
        args.saves.max(2),
        args.file.as_deref(),
        args.tree.as_deref(),
    )
}

pub fn bench_boot(args: BenchBootArgs) -> Result<i32> {
    let kernel = kernel_for(&args.opts)?;
    crate::bench::boot(&kernel, &args.opts.bench_vm(), args.samples, args.study)
}

pub fn guest_run_scheduler(args: GuestRunSchedulerArgs) -> Result<i32> {
    if !args.on_host {
        crate::agent::quiet_tracing();
    }
    if args.spec_json.len() != args.out.len() {
        return Err(fail(
            Failure::BadInput,
            format!(
                "{} --spec-json and {} --out: give one --out per --spec-json",
                args.spec_json.len(),
                args.out.len()
            ),
        ));
    }
    let specs = args
        .spec_json
        .iter()
        .enumerate()
        .map(|(i, s)| {
            serde_json::from_str::<crate::scheduler::lifecycle::GuestSpec>(s)
                .map_err(|e| fail(Failure::BadInput, format!("--spec-json #{}: {e}", i + 1)))
        })
        .collect::<Result<Vec<_>>>()?;
    // In turn; one that cannot be run (its report is then missing, and the
    // host side says so) does not keep the others from running.
    // Each turn between its markers in the kernel log, for the host side to
    // cut the turn's part of the console out (not on a host: its log is
    // not ours to write in).
    let mark = |i: usize, name: &str, mark| {
        if !args.on_host {
            crate::kmsg::write(&crate::protocol::turn_marker(i, name, mark));
        }
    };
    let mut failed = None;
    for (i, (spec, out)) in specs.iter().zip(&args.out).enumerate() {
        let out = crate::protocol::guest_path(out);
        mark(i, &spec.name, crate::protocol::Mark::Begins);
        let ran = crate::scheduler::lifecycle::run_in_guest(spec, &out);
        mark(i, &spec.name, crate::protocol::Mark::Ends);
        match ran {
            Ok(report) => println!("{}: {}", spec.name, serde_json::to_string(&report.verdict)?),
            Err(e) => {
                eprintln!("scx-harness: {}: {e:#}", spec.name);
                failed.get_or_insert(e.context(format!("running {}", spec.name)));
            }
        }
        if crate::process::interrupted() {
            break;
        }
    }
    failed.map_or(Ok(0), Err)
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
