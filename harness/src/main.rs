//! The `scx-harness` command line: parses arguments, sets up logging and the
//! signal handler, calls the library, and maps failures to exit codes.

use std::process::ExitCode as ProcessExit;

use anyhow::Result;
use clap::{Parser, Subcommand};
use scx_harness::cli;

#[derive(Parser)]
#[command(
    name = "scx-harness",
    version,
    about = "Test sched_ext schedulers in QEMU guests"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Build, list and locate sched_ext kernels.
    Kernel {
        #[command(subcommand)]
        command: KernelCommand,
    },
    /// Boot a kernel and run a command in the guest (a shell without one).
    Vm(cli::VmArgs),
    /// Build and run the kernel's own sched_ext selftests in a VM of it.
    Selftests(cli::SelftestsArgs),
    /// The schedulers the harness knows: list, build, try one in a VM.
    Schedulers {
        #[command(subcommand)]
        command: SchedulersCommand,
    },
    /// Write a run directory's report: HTML (default), JUnit, JSON, Markdown.
    Report(cli::run::ReportArgs),
    /// Validate scenario files without booting anything.
    Check(cli::scenarios::CheckArgs),
    /// Print the scenario format as a JSON Schema (for editors).
    Schema(cli::scenarios::SchemaArgs),
    /// Measure boot times (see BENCHMARKS.md).
    Bench {
        #[command(subcommand)]
        command: BenchCommand,
    },
    /// Run scenarios under schedulers, a VM per cell, with a verdict per cell.
    Run(cli::run::RunArgs),
    /// The edit loop: one VM kept, the scheduler rebuilt and swapped in on
    /// every save, a verdict and the change against earlier builds.
    Dev(cli::dev::DevArgs),
    /// A/B: two variants (schedulers, argument sets, kernels) over the same
    /// scenarios, interleaved, with statistics per metric.
    Compare(cli::compare::CompareArgs),
    /// The first bad commit of a scheduler's git tree between a good and a
    /// bad one: each tested commit built in a worktree and run in one VM,
    /// judged by the scenarios' checks or, beside the good end, by
    /// compare's statistics.
    Bisect(cli::bisect::BisectArgs),
    /// One scheduler over a grid of argument sets, hot-swapped in one VM:
    /// rounds in a seeded order, racing on an objective metric, the best
    /// point, the Pareto frontier over two metrics, the defaults and the
    /// fair class beside them.
    Sweep(cli::sweep::SweepArgs),
    /// Record what a machine's threads do (BPF on the running kernel; no
    /// sched_ext needed) and write it as a scenario that replays it.
    Record(cli::record::RecordArgs),
    /// Replay a scenario `record` wrote (a VM, the fair class by default)
    /// and score each group's replay against what was recorded.
    ReplayCheck(cli::replay_check::ReplayCheckArgs),
    /// The results database: record runs, show a metric over time, check a
    /// run against history.
    History {
        #[command(subcommand)]
        command: cli::history::HistoryCommand,
    },
    /// Guest-side helpers, run inside the VM by the harness itself.
    #[command(hide = true)]
    Guest {
        #[command(subcommand)]
        command: GuestCommand,
    },
}

#[derive(Subcommand)]
enum GuestCommand {
    /// Start a scheduler, wait for attach, run a payload, stop, report JSON.
    RunScheduler(cli::GuestRunSchedulerArgs),
    /// Run a scenario under a scheduler and write what was measured.
    RunScenario(cli::run::GuestRunScenarioArgs),
    /// One workload group's process (started by run-scenario).
    WorkloadGroup(cli::run::GuestWorkloadGroupArgs),
    /// The probe-overhead benchmark's guest side.
    BenchProbe(cli::run::GuestBenchProbeArgs),
    /// Run several cells one after the other (hot-swap).
    RunBatch(cli::run::GuestRunBatchArgs),
}

#[derive(Subcommand)]
enum KernelCommand {
    /// Build (or fetch) a kernel with sched_ext: a named one, or a tree
    /// (cached: the same inputs again are instant).
    Build(cli::BuildArgs),
    /// The named kernels (kernel-config/kernels.yaml) with release, key,
    /// size and build time, then the other cached kernels.
    List,
    /// Print the bzImage path of a cached kernel (default: the default kernel).
    Path {
        /// A kernel name or a cache key from `kernel list`.
        key: Option<String>,
    },
    /// Remove cached kernels (entry, build tree and log).
    Rm {
        /// Cache keys from `kernel list`.
        #[arg(required = true)]
        keys: Vec<String>,
    },
}

#[derive(Subcommand)]
enum SchedulersCommand {
    /// Every scheduler in the registry: source, version, built, last run.
    List(cli::schedulers::ListArgs),
    /// Build schedulers (default: all) for a kernel (--kernel is repeatable;
    /// `--kernel all`: every kernel of kernel-config/kernels.yaml).
    Build(cli::schedulers::BuildArgs),
    /// Boot a VM, attach one scheduler, run a load under it, detach, report.
    Run(cli::schedulers::RunArgs),
}

#[derive(Subcommand)]
enum BenchCommand {
    /// Time from start to the guest command's first output, several ways.
    Boot(cli::BenchBootArgs),
    /// The probe's overhead: ping-pong rate with and without it, one VM.
    Probe(cli::BenchProbeArgs),
    /// Wall time of the same cells with a VM per cell and hot-swapped.
    Hotswap(cli::BenchHotswapArgs),
    /// The edit loop: save to verdict with `dev` against a build and `run`.
    Dev(cli::BenchDevArgs),
}

fn main() -> ProcessExit {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SCX_HARNESS_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Cli::parse();
    // A workload group process has no children to clean up (its task
    // processes die with it) and must stay single-threaded until it forks
    // them: no handler (ctrlc's is a thread of its own).
    let workload = matches!(
        args.command,
        Command::Guest {
            command: GuestCommand::WorkloadGroup(_)
        }
    );
    if !workload {
        if let Err(e) = scx_harness::process::install_signal_handler() {
            eprintln!("scx-harness: {e:#}");
        }
    }
    let result: Result<i32> = match args.command {
        Command::Kernel { command } => match command {
            KernelCommand::Build(a) => cli::kernel_build(a),
            KernelCommand::List => cli::kernel_list(),
            KernelCommand::Path { key } => cli::kernel_path(key),
            KernelCommand::Rm { keys } => cli::kernel_rm(keys),
        },
        Command::Vm(a) => cli::vm(a),
        Command::Selftests(a) => cli::selftests(a),
        Command::Schedulers { command } => match command {
            SchedulersCommand::List(a) => cli::schedulers::list(a),
            SchedulersCommand::Build(a) => cli::schedulers::build(a),
            SchedulersCommand::Run(a) => cli::schedulers::run(a),
        },
        Command::Bench { command } => match command {
            BenchCommand::Boot(a) => cli::bench_boot(a),
            BenchCommand::Probe(a) => cli::bench_probe(a),
            BenchCommand::Hotswap(a) => cli::bench_hotswap(a),
            BenchCommand::Dev(a) => cli::bench_dev(a),
        },
        Command::Run(a) => cli::run::run(a),
        Command::Compare(a) => cli::compare::run(a),
        Command::Dev(a) => cli::dev::run(a),
        Command::Bisect(a) => cli::bisect::run(a),
        Command::Sweep(a) => cli::sweep::run(a),
        Command::Record(a) => cli::record::run(a),
        Command::ReplayCheck(a) => cli::replay_check::run(a),
        Command::History { command } => cli::history::run(command),
        Command::Check(a) => cli::scenarios::check(a),
        Command::Report(a) => cli::run::report(a),
        Command::Schema(a) => cli::scenarios::schema(a),
        Command::Guest { command } => match command {
            GuestCommand::RunScheduler(a) => cli::guest_run_scheduler(a),
            GuestCommand::RunScenario(a) => cli::run::guest_run_scenario(a),
            GuestCommand::WorkloadGroup(a) => cli::run::guest_workload_group(a),
            GuestCommand::BenchProbe(a) => cli::run::guest_bench_probe(a),
            GuestCommand::RunBatch(a) => cli::run::guest_run_batch(a),
        },
    };
    match result {
        Ok(code) => ProcessExit::from(code.clamp(0, 255) as u8),
        Err(e) => {
            eprintln!("scx-harness: error: {e:#}");
            let code = scx_harness::classify(&e)
                .map(|f| f.exit_code())
                .unwrap_or(scx_harness::ExitCode::HostTool);
            ProcessExit::from(code.code() as u8)
        }
    }
}
