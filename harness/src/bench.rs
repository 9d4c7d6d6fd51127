//! Boot-time benchmark (`scx-harness bench boot`): time from start to the
//! guest command's first output, for the harness's VM runner and for two
//! baselines, measured in one run on the same kernel with the samples
//! interleaved so that drift in the host hits every variant alike.
//!
//! - `runner`: `vm::run`, exactly as the harness boots every VM.
//! - `vng`: a bare `vng --run K --exec ...` with virtme-ng's defaults.
//! - `qemu-initramfs`: bare QEMU with a busybox initramfs whose init prints
//!   and powers off: the floor for this kernel and accelerator.
//!
//! With `--study`, bare-vng variants that isolate one setting each show
//! where virtme-ng's time goes (see BENCHMARKS.md).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::kernel::Kernel;
use crate::process::{SupervisedCommand, Terminal};
use crate::vm::{self, Accel, AccelChoice, GuestCommand, Outcome, VmSpec};
use crate::vng::Vng;

/// The VMs a bench boots: its command line's `--accel`, `--cpus`,
/// `--memory` and `--timeout`.
#[derive(Debug, Clone)]
pub struct BenchVm {
    pub accel: AccelChoice,
    pub cpus: u32,
    pub memory: String,
    /// Each VM's deadline.
    pub timeout: Duration,
}

const MARK: &str = "scx-bench-ready";

/// One way of booting to a first line of output.
struct Variant {
    name: String,
    what: String,
    /// Extra vng arguments for bare-vng variants; `None` for the others.
    vng_args: Option<Vec<String>>,
}

/// Results of one variant.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Timing {
    pub name: String,
    pub what: String,
    pub samples_s: Vec<f64>,
    /// Samples that produced no first output, with why. Reported, and left
    /// out of the statistics.
    pub failures: Vec<String>,
}

impl Timing {
    pub fn median(&self) -> f64 {
        median(&self.samples_s)
    }
}

pub use crate::stats::median;

pub fn boot(kernel: &Kernel, opts: &BenchVm, samples: usize, study: bool) -> Result<i32> {
    let vng = Vng::locate()?;
    let probe = vm::accel::resolve(opts.accel, &kernel.bzimage, &crate::paths::cache_dir())?;
    let scratch = tempfile::tempdir().context("creating the benchmark's scratch directory")?;
    let initramfs = busybox_initramfs(scratch.path())?;
    let mut variants = vec![
        Variant {
            name: "runner".into(),
            what: "scx-harness VM runner (vm::run)".into(),
            vng_args: None,
        },
        Variant {
            name: "vng".into(),
            what: "bare `vng --run K --exec`, virtme-ng defaults".into(),
            vng_args: Some(vec![]),
        },
        Variant {
            name: "qemu-initramfs".into(),
            what: "bare QEMU, busybox initramfs".into(),
            vng_args: None,
        },
    ];
    if study {
        for (name, what, args) in [
            (
                "vng+9p",
                "vng --force-9p: no virtiofsd attempts",
                vec!["--force-9p"],
            ),
            (
                "vng+9p+512M",
                "vng --force-9p --memory 512M",
                vec!["--force-9p", "--memory", "512M"],
            ),
            (
                "vng+9p+verbose",
                "vng --force-9p --verbose: console at loglevel 7",
                vec!["--force-9p", "--verbose", "--append=loglevel=7"],
            ),
            (
                "vng+9p+1cpu",
                "vng --force-9p --cpus 1",
                vec!["--force-9p", "--cpus", "1"],
            ),
            (
                "vng+9p+shinit",
                "vng --force-9p --no-virtme-ng-init: the bash init",
                vec!["--force-9p", "--no-virtme-ng-init"],
            ),
        ] {
            variants.push(Variant {
                name: name.into(),
                what: what.into(),
                vng_args: Some(args.into_iter().map(String::from).collect()),
            });
        }
    }
    let mut timings: Vec<Timing> = variants
        .iter()
        .map(|v| Timing {
            name: v.name.clone(),
            what: v.what.clone(),
            samples_s: vec![],
            failures: vec![],
        })
        .collect();
    eprintln!(
        "bench boot: {} samples of {} variants, kernel {}, accel {} ({})",
        samples,
        variants.len(),
        kernel.bzimage.display(),
        probe.accel,
        probe.reason
    );
    for i in 0..samples {
        for (v, t) in variants.iter().zip(timings.iter_mut()) {
            let secs = match (&v.vng_args, v.name.as_str()) {
                (None, "runner") => runner(kernel, opts, probe.accel, scratch.path()),
                (None, _) => bare_qemu(&kernel.bzimage, &initramfs, opts, probe.accel),
                (Some(args), _) => bare_vng(&vng, &kernel.bzimage, opts, probe.accel, args),
            };
            match secs {
                Ok(secs) => {
                    eprintln!("  sample {}/{samples} {:<16} {secs:6.2} s", i + 1, v.name);
                    t.samples_s.push(secs);
                }
                Err(e) => {
                    eprintln!("  sample {}/{samples} {:<16} FAILED: {e:#}", i + 1, v.name);
                    t.failures.push(format!("{e:#}"));
                }
            }
            if crate::process::interrupted() {
                bail!(crate::fail(crate::Failure::Interrupted, "interrupted"));
            }
        }
    }
    print_report(&timings, probe.accel, samples);
    Ok(0)
}

fn print_report(timings: &[Timing], accel: Accel, samples: usize) {
    let get = |n: &str| timings.iter().find(|t| t.name == n).map(Timing::median);
    println!("| variant | median (s) | min | max | failed | what |");
    println!("|---|---:|---:|---:|---:|---|");
    for t in timings {
        let min = t.samples_s.iter().copied().fold(f64::INFINITY, f64::min);
        let max = t.samples_s.iter().copied().fold(0.0, f64::max);
        println!(
            "| {} | {:.2} | {min:.2} | {max:.2} | {} | {} |",
            t.name,
            t.median(),
            t.failures.len(),
            t.what
        );
    }
    for t in timings.iter().filter(|t| !t.failures.is_empty()) {
        println!("\n{} failures:", t.name);
        for f in &t.failures {
            println!("- {}", f.lines().next().unwrap_or(""));
        }
    }
    if let (Some(a), Some(b), Some(c)) = (get("runner"), get("vng"), get("qemu-initramfs")) {
        println!();
        println!("accelerator {accel}, {samples} samples each, interleaved");
        println!("runner / vng            = {:.2}x (target <= 1.2x)", a / b);
        println!("runner / qemu-initramfs = {:.2}x (target <= 2x)", a / c);
    }
}

fn runner(kernel: &Kernel, opts: &BenchVm, accel: Accel, scratch: &Path) -> Result<f64> {
    let work = scratch.join("runner");
    let mut spec = VmSpec::new(
        kernel.bzimage.clone(),
        work,
        GuestCommand::Exec(vec!["echo".into(), MARK.into()]),
    );
    spec.accel = match accel {
        Accel::Kvm => vm::AccelChoice::Kvm,
        Accel::Tcg => vm::AccelChoice::Tcg,
    };
    spec.cpus = opts.cpus;
    spec.memory = opts.memory.clone();
    spec.timeout = Some(opts.timeout);
    let r = vm::run(&spec)?;
    match (&r.outcome, r.first_output) {
        (Outcome::Exited { code: 0 }, Some(t)) if r.stdout.contains(MARK) => Ok(t.as_secs_f64()),
        _ => {
            r.exit_code()?;
            bail!(
                "the runner's guest printed {:?} instead of {MARK}",
                r.stdout
            )
        }
    }
}

fn bare_vng(
    vng: &Vng,
    kernel: &Path,
    opts: &BenchVm,
    accel: Accel,
    extra: &[String],
) -> Result<f64> {
    let mut cmd = SupervisedCommand::new(&vng.bin, Terminal::Detached);
    cmd.env("PATH", vng.search_path())
        .arg("--run")
        .arg(kernel)
        .args(["--cpus", &opts.cpus.to_string(), "--memory", &opts.memory]);
    if accel == Accel::Tcg {
        cmd.arg("--disable-kvm");
    }
    // Later --cpus/--memory in `extra` override the defaults above.
    cmd.args(extra).arg("--exec").arg(format!("echo {MARK}"));
    time_to_mark(cmd, "bare vng", opts.timeout)
}

fn bare_qemu(kernel: &Path, initramfs: &Path, opts: &BenchVm, accel: Accel) -> Result<f64> {
    let mut cmd = SupervisedCommand::new("qemu-system-x86_64", Terminal::Detached);
    cmd.args([
        "-accel",
        &accel.to_string(),
        "-m",
        &opts.memory,
        "-smp",
        &opts.cpus.to_string(),
    ])
    .args(["-cpu", if accel == Accel::Kvm { "host" } else { "max" }])
    .args([
        "-nodefaults",
        "-display",
        "none",
        "-no-reboot",
        "-serial",
        "stdio",
    ])
    .arg("-kernel")
    .arg(kernel)
    .arg("-initrd")
    .arg(initramfs)
    .args(["-append", "console=ttyS0 panic=-1 quiet"]);
    time_to_mark(cmd, "bare qemu", opts.timeout)
}

/// Starts `cmd` with stdout piped and returns the seconds until a line
/// with [`MARK`] appears; then stops the tree.
fn time_to_mark(mut cmd: SupervisedCommand, what: &str, timeout: Duration) -> Result<f64> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let started = Instant::now();
    let mut child = cmd.spawn(what)?;
    let out = child.child_mut().stdout.take().expect("piped stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if line.contains(MARK) {
                let _ = tx.send(started.elapsed());
                return;
            }
        }
    });
    match rx.recv_timeout(timeout) {
        Ok(t) => {
            // Let it power off as it would, within reason, then stop it.
            let _ = child.wait(Some(Instant::now() + Duration::from_secs(30)));
            Ok(t.as_secs_f64())
        }
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
            bail!("{what} printed no {MARK} within {timeout:?}")
        }
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
            let status = child.wait(Some(Instant::now() + Duration::from_secs(30)));
            bail!(
                "{what} closed its output after {:.1} s without printing {MARK} ({status:?})",
                started.elapsed().as_secs_f64()
            )
        }
    }
}

/// A newc initramfs with busybox whose init prints the mark and powers off.
fn busybox_initramfs(dir: &Path) -> Result<PathBuf> {
    let busybox = Path::new("/bin/busybox");
    if !busybox.is_file() {
        bail!(crate::fail(
            crate::Failure::HostTool,
            "/bin/busybox is missing\n  fix: run `cargo ci setup` (installs busybox-static)"
        ));
    }
    let root = dir.join("initramfs");
    std::fs::create_dir_all(root.join("bin"))?;
    std::fs::copy(busybox, root.join("bin/busybox"))?;
    let init = root.join("init");
    std::fs::write(
        &init,
        format!("#!/bin/busybox sh\n/bin/busybox echo {MARK}\n/bin/busybox poweroff -f\n"),
    )?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&init, std::fs::Permissions::from_mode(0o755))?;
    let image = dir.join("initramfs.cpio");
    let status = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "cd {} && printf 'init\\nbin\\nbin/busybox\\n' | cpio --quiet -o -H newc > {}",
            vm::shell_quote(&root.display().to_string()),
            vm::shell_quote(&image.display().to_string())
        ))
        .status()
        .context("running cpio")?;
    if !status.success() {
        bail!("cpio failed building {}", image.display());
    }
    Ok(image)
}

/// `scx-harness bench probe`: the probe's cost. Ping-pong pairs (the most
/// wakeup-heavy work there is) run `rounds` times with the probe attached
/// and tracking them and `rounds` times with it detached, interleaved, in
/// one VM on the fair class; the loss is judged between the upper
/// quartiles of the two sides (`probe_summary`).
pub fn probe(
    kernel: &Kernel,
    opts: &BenchVm,
    rounds: usize,
    seconds: u64,
    pairs: u32,
    cost_rounds: usize,
    stall_watch: Option<crate::scenario::StallTasks>,
) -> Result<i32> {
    use crate::agent::{AgentSpec, BenchOutput};
    use crate::scenario::{Group, Scenario, VmShape, Work};
    let scenario = Scenario {
        name: "bench-probe".into(),
        description: "ping-pong pairs for the probe's overhead".into(),
        vm: VmShape {
            cpus: opts.cpus,
            memory: opts.memory.clone(),
            topology: None,
        },
        duration: Duration::from_secs(seconds + 1),
        warmup: Duration::from_secs(1),
        seed: 0,
        groups: vec![Group::new(
            "pairs",
            2 * pairs,
            Work::Pingpong {
                run: Duration::ZERO,
            },
        )],
        swaps: vec![],
        timeline: vec![],
        knobs: Default::default(),
        cgroups: vec![],
        recorded: vec![],
        // A bound no round reaches: the watch runs, nothing stops.
        checks: stall_watch
            .map(|tasks| {
                crate::scenario::Check::Stall(crate::scenario::StallCheck {
                    max_runnable: Duration::from_secs(60),
                    group: None,
                    tasks,
                    excluding: None,
                })
            })
            .into_iter()
            .collect(),
    };
    let spec = AgentSpec {
        sysrq_on_stall: false,
        recording: crate::agent::PassRecording::Off,
        apps_dir: None,
        scenario,
        scheduler: crate::scheduler::lifecycle::GuestSpec {
            name: "default".into(),
            start: crate::scheduler::lifecycle::Start::Default,
            ops: None,
            attach_timeout_ms: 0,
            payload: None,
            stop_grace_ms: 0,
        },
        baseline: false,
        swaps: vec![],
    };
    let work = tempfile::Builder::new()
        .prefix("scx-harness-bench-probe-")
        .tempdir()?;
    let argv = vec![
        std::env::current_exe()?.display().to_string(),
        "guest".into(),
        "bench-probe".into(),
        "--spec-json".into(),
        serde_json::to_string(&spec)?,
        "--rounds".into(),
        rounds.to_string(),
        "--cost-rounds".into(),
        cost_rounds.to_string(),
        "--out".into(),
        crate::protocol::shared_arg("bench.json"),
    ];
    let mut vm_spec = VmSpec::new(
        kernel.bzimage.clone(),
        work.path().to_path_buf(),
        GuestCommand::Exec(argv),
    );
    vm_spec.cpus = opts.cpus;
    vm_spec.memory = opts.memory.clone();
    vm_spec.accel = opts.accel;
    vm_spec.timeout = Some(Duration::from_secs(
        60 + (2 * rounds + cost_rounds) as u64 * (seconds + 5),
    ));
    let r = vm::run(&vm_spec)?;
    let read = || -> Result<BenchOutput> {
        r.exit_code()?;
        let bytes = std::fs::read(r.shared_dir.join("bench.json"))
            .context("the guest wrote no bench.json")?;
        Ok(serde_json::from_slice(&bytes)?)
    };
    let rounds_out = read().map_err(|e| {
        e.context(format!(
            "bench probe failed; its directory is kept: {}",
            work.keep().display()
        ))
    })?;
    let pick = |with: bool| -> Vec<f64> {
        rounds_out
            .rounds
            .iter()
            .filter(|b| b.probe == with)
            .map(|b| b.per_sec)
            .collect()
    };
    let (with, without) = (pick(true), pick(false));
    println!("| round | with probe (round trips/s) | without (round trips/s) |");
    println!("|---:|---:|---:|");
    for (i, (w, o)) in with.iter().zip(&without).enumerate() {
        println!("| {} | {:.0} | {:.0} |", i + 1, w, o);
    }
    print!("\n{}", probe_summary(&with, &without));
    if !rounds_out.costs.is_empty() {
        print!("\n{}", cost_summary(&rounds_out.costs, opts.cpus));
    }
    if let Some(e) = &rounds_out.cost_error {
        println!(
            "\ncost rounds: {} of {cost_rounds} done, then failed (the rounds above are whole): {e}",
            rounds_out.costs.len()
        );
    }
    println!(
        "accelerator {}, {} pairs, {} s per round",
        r.accel, pairs, seconds
    );
    Ok(i32::from(rounds_out.cost_error.is_some()))
}

/// Where the probe's time goes: per program, the medians over the cost
/// rounds of its runs per second, its time per run, and its share of the
/// VM's CPU time (`cpus` vCPUs), by the kernel's BPF run-time statistics.
/// Those time each run with two extra clock reads, which the figures
/// include; the share counts only time spent inside the programs, not the
/// tracepoints' dispatch nor what the programs leave behind in the caches.
pub fn cost_summary(costs: &[crate::agent::CostRound], cpus: u32) -> String {
    let mut names: Vec<&str> = Vec::new();
    for p in costs.iter().flat_map(|c| &c.progs) {
        if !names.contains(&p.name.as_str()) {
            names.push(&p.name);
        }
    }
    let mut out = format!(
        "{} rounds with the kernel's BPF run-time statistics on (each run also times itself):\n\
         | program | runs/s | ns per run | share of the CPUs |\n|---|---:|---:|---:|\n",
        costs.len()
    );
    // A round's run time as a share of the VM's CPU time in it.
    let share_of = |run_ns: u64, c: &crate::agent::CostRound| {
        run_ns as f64 / (c.wall_ns as f64 * f64::from(cpus.max(1)))
    };
    for name in names {
        let (mut rate, mut per_run, mut share) = (Vec::new(), Vec::new(), Vec::new());
        for c in costs {
            let secs = c.wall_ns as f64 / 1e9;
            if let Some(p) = c.progs.iter().find(|p| p.name == name) {
                rate.push(p.runs as f64 / secs);
                if p.runs > 0 {
                    per_run.push(p.run_ns as f64 / p.runs as f64);
                }
                share.push(share_of(p.run_ns, c));
            }
        }
        let per_run = if per_run.is_empty() {
            "-".to_string()
        } else {
            format!("{:.0}", median(&per_run))
        };
        out += &format!(
            "| {name} | {:.0} | {per_run} | {:.2}% |\n",
            median(&rate),
            median(&share) * 100.0
        );
    }
    let total_share: Vec<f64> = costs
        .iter()
        .map(|c| share_of(c.progs.iter().map(|p| p.run_ns).sum(), c))
        .collect();
    let per_sec: Vec<f64> = costs.iter().map(|c| c.per_sec).collect();
    out += &format!(
        "the programs together: {:.2}% of the CPUs (median of the rounds); \
         the work meanwhile: {:.0}/s (median; slowed by the statistics too)\n",
        median(&total_share) * 100.0,
        median(&per_sec)
    );
    out
}

/// The probe benchmark's statistics. Interference from outside the VM
/// (other work on the host) only ever slows a round, and on a busy host
/// it hits a good share of them, by up to 95%; the medians then move with
/// how many rounds each side happened to lose. The upper quartiles are
/// the rates of rounds with little interference, yet not a single lucky
/// round (as best-of-N would be): the loss is judged between them, with a
/// bootstrap interval. The medians are shown too.
pub fn probe_summary(with: &[f64], without: &[f64]) -> String {
    use crate::stats::{bootstrap_quantile_ratio_ci, quantile};
    let (mw, mo) = (median(with), median(without));
    let (qw, qo) = (quantile(with, 0.75), quantile(without, 0.75));
    let loss = 1.0 - qw / qo;
    let hit = |xs: &[f64], q: f64| xs.iter().filter(|x| **x < 0.7 * q).count();
    let mut out = format!(
        "median with {mw:.0}/s, without {mo:.0}/s: loss {:.1}%\n\
         upper quartile with {qw:.0}/s, without {qo:.0}/s: loss {:.1}%",
        (1.0 - mw / mo) * 100.0,
        loss * 100.0
    );
    if let Some((lo, hi)) = bootstrap_quantile_ratio_ci(without, with, 0.75, 0.05, 10_000, 1) {
        out += &format!(
            " (95% interval {:.1}% to {:.1}%)",
            (1.0 - hi) * 100.0,
            (1.0 - lo) * 100.0
        );
    }
    out += &format!(
        "\nrounds slowed below 70% of their side's upper quartile (interference): {} with, {} without\n\
         target: upper-quartile loss under 5%: {}\n",
        hit(with, qw),
        hit(without, qo),
        if loss < 0.05 { "met" } else { "not met" }
    );
    out
}

/// A bench's own directory for the runs it keeps:
/// `scx-runs/bench-NAME-UNIXTIME`, made.
fn bench_dir(name: &str) -> Result<PathBuf> {
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let root = PathBuf::from("scx-runs").join(format!("bench-{name}-{stamp}"));
    std::fs::create_dir_all(&root).with_context(|| format!("creating {}", root.display()))?;
    Ok(root)
}

/// `scx-harness bench hotswap`: the same cells run with a VM per cell and
/// hot-swapped in one VM, each as a whole `scx-harness run` (build checks,
/// boots, cells, reports), alternating which goes first from round to
/// round. Prints the wall times, their ratio, and whether the verdicts
/// agree; keeps both run directories.
pub fn hotswap(
    vm_args: &[String],
    schedulers: &[String],
    scenarios: &[String],
    rounds: usize,
    host_in: Option<&Path>,
) -> Result<i32> {
    let exe = std::env::current_exe()?;
    let root = bench_dir("hotswap")?;
    let names = ["vm-per-cell", "hot-swap", "host"];
    let modes = if host_in.is_some() { 3 } else { 2 };
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); modes];
    let mut verdicts: Vec<Vec<Vec<(String, String, String)>>> = vec![Vec::new(); modes];
    for round in 0..rounds {
        let mut order: Vec<usize> = (0..modes).collect();
        order.rotate_left(round % modes);
        for mode in order {
            let out = root.join(format!("{}-{round}", names[mode]));
            if let (2, Some(kernel)) = (mode, host_in) {
                eprintln!("round {}/{rounds}: host (in a guest) ...", round + 1);
                let (secs, results) = host_in_guest(&exe, kernel, schedulers, scenarios, &out)?;
                eprintln!("  {:.1} s in the guest, {} cells", secs, results.len());
                times[mode].push(secs);
                verdicts[mode].push(verdict_list(&results));
                continue;
            }
            let mut cmd = std::process::Command::new(&exe);
            cmd.arg("run").arg("--out").arg(&out).args(vm_args);
            if mode == 0 {
                cmd.arg("--vm-per-cell");
            }
            for s in schedulers {
                cmd.args(["-s", s]);
            }
            cmd.args(scenarios).stdout(Stdio::null());
            eprintln!("round {}/{rounds}: {} ...", round + 1, names[mode]);
            let t = Instant::now();
            let status = cmd.status().context("running scx-harness run")?;
            let secs = t.elapsed().as_secs_f64();
            let results = crate::report::load_run(&out)
                .with_context(|| format!("{} wrote no results (exit {status})", out.display()))?;
            eprintln!("  {:.1} s, {} cells, exit {status}", secs, results.len());
            times[mode].push(secs);
            verdicts[mode].push(verdict_list(&results));
        }
    }
    let (per_cell, hot) = (
        crate::stats::median(&times[0]),
        crate::stats::median(&times[1]),
    );
    println!(
        "{} scheduler(s) x {} scenario(s), {rounds} round(s); run directories in {}",
        schedulers.len(),
        scenarios.len(),
        root.display()
    );
    let cells = schedulers.len() * scenarios.len();
    let loaded = scenarios
        .iter()
        .map(|s| crate::scenario::resolve(s))
        .collect::<Result<Vec<_>>>()?;
    for (i, n) in names.iter().enumerate().take(modes) {
        let v: Vec<String> = times[i].iter().map(|t| format!("{t:.1}")).collect();
        let measured = nominal_seconds(&loaded, schedulers.len(), i == 0);
        println!(
            "  {n:<12} median {:7.1} s   samples [{}]   beyond the scenarios ({measured:.0} s): {:.1} s per cell",
            crate::stats::median(&times[i]),
            v.join(", "),
            (crate::stats::median(&times[i]) - measured) / cells as f64
        );
    }
    println!(
        "  hot-swap / vm-per-cell = {:.2}x (target <= 0.5x)",
        hot / per_cell
    );
    let mut disagree = 0;
    let others = verdicts[1..].iter().flatten();
    for (a, b) in verdicts[0].iter().cycle().zip(others) {
        for x in a {
            let y = b
                .iter()
                .find(|y| (&y.0, &y.1) == (&x.0, &x.1))
                .map_or("missing", |y| y.2.as_str());
            if x.2 != y {
                disagree += 1;
                println!(
                    "  verdicts differ: {} / {}: {} per cell, {y} in another mode",
                    x.0, x.1, x.2
                );
            }
        }
    }
    if disagree == 0 {
        println!("  verdicts agree in every cell of every round");
    }
    Ok(0)
}

fn verdict_list(results: &[crate::report::CellResult]) -> Vec<(String, String, String)> {
    results
        .iter()
        .map(|r| {
            (
                r.scheduler.clone(),
                r.scenario.clone(),
                r.verdict.label().to_string(),
            )
        })
        .collect()
}

/// The seconds the scenarios themselves take in a run of `schedulers`
/// schedulers on each: every cell's duration, and a fair-class pass per
/// scenario that needs one (per cell when each cell has its own VM; once
/// per session otherwise, where cells of a scenario share it).
fn nominal_seconds(
    scenarios: &[crate::scenario::Loaded],
    schedulers: usize,
    per_cell: bool,
) -> f64 {
    scenarios
        .iter()
        .map(|l| {
            let d = l.scenario.duration.as_secs_f64();
            let fair = match (l.scenario.needs_fair_baseline(), per_cell) {
                (false, _) => 0.0,
                (true, true) => d * schedulers as f64,
                (true, false) => d,
            };
            d * schedulers as f64 + fair
        })
        .sum()
}

/// `run --target host` of the same cells inside a guest booted on
/// `kernel` (its own sched_ext kernel; the schedulers built here first),
/// timed inside the guest: the host target's whole run without the boot.
fn host_in_guest(
    exe: &Path,
    kernel: &Path,
    schedulers: &[String],
    scenarios: &[String],
    out: &Path,
) -> Result<(f64, Vec<crate::report::CellResult>)> {
    let mut build = std::process::Command::new(exe);
    build
        .args(["schedulers", "build", "--kernel"])
        .arg(kernel)
        .args(schedulers)
        .stdout(Stdio::null());
    let status = build.status().context("building the schedulers")?;
    if !status.success() {
        bail!("`scx-harness schedulers build` failed ({status})");
    }
    let cells: Vec<String> = schedulers
        .iter()
        .flat_map(|s| ["-s".to_string(), s.clone()])
        .chain(scenarios.iter().cloned())
        .collect();
    let script = format!(
        "cd /tmp; s=$(date +%s.%N); {} run --target host --no-build --out \"$SCX_HARNESS_SHARED/run\" {} >/dev/null 2>&1; c=$?; echo \"WALL $s $(date +%s.%N) $c\"",
        exe.display(),
        cells.join(" ")
    );
    let mut spec = VmSpec::new(
        kernel.to_path_buf(),
        out.to_path_buf(),
        GuestCommand::Exec(vec!["sh".into(), "-c".into(), script]),
    );
    spec.timeout = Some(Duration::from_secs(1800));
    let r = vm::run(&spec)?;
    let wall = r
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("WALL "))
        .and_then(|l| {
            let v: Vec<f64> = l
                .split_whitespace()
                .filter_map(|x| x.parse().ok())
                .collect();
            (v.len() == 3).then(|| v[1] - v[0])
        })
        .with_context(|| {
            format!(
                "the guest printed no time ({:?}); see {}",
                r.outcome,
                out.display()
            )
        })?;
    let results = crate::report::load_run(&r.shared_dir.join("run"))?;
    Ok((wall, results))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_probe_summary_judges_the_upper_quartiles() {
        // 8 clean rounds a side, 5% apart; 3 "without" rounds hit hard.
        let with: Vec<f64> = (0..8).map(|i| 95.0 + f64::from(i % 3)).collect();
        let mut without: Vec<f64> = (0..8).map(|i| 100.0 + f64::from(i % 3)).collect();
        without[1] = 20.0;
        without[4] = 30.0;
        without[6] = 60.0;
        let s = probe_summary(&with, &without);
        assert!(
            s.contains("upper quartile with 96/s, without 101/s: loss 4.9%"),
            "{s}"
        );
        assert!(s.contains(": 0 with, 3 without"), "{s}");
        assert!(s.contains("loss under 5%: met"), "{s}");
        let slower: Vec<f64> = with.iter().map(|x| x * 0.9).collect();
        let s = probe_summary(&slower, &without);
        assert!(s.contains("loss under 5%: not met"), "{s}");
        assert!(s.contains("95% interval"), "{s}");
    }

    #[test]
    fn the_cost_summary_gives_each_program_its_medians() {
        use crate::agent::CostRound;
        use crate::probe::ProgRuns;
        let round = |wall_s: u64, switch: (u64, u64), wakeup: (u64, u64)| CostRound {
            wall_ns: wall_s * 1_000_000_000,
            per_sec: 1000.0 * wall_s as f64,
            progs: vec![
                ProgRuns {
                    name: "on_switch".into(),
                    runs: switch.0,
                    run_ns: switch.1,
                },
                ProgRuns {
                    name: "on_wakeup".into(),
                    runs: wakeup.0,
                    run_ns: wakeup.1,
                },
            ],
        };
        // 300 ns a switch at 100 000/s, then 400 at 50 000/s (a round of
        // 2 s), then 350 at 75 000/s: medians 75 000/s and 350 ns.
        let costs = [
            round(1, (100_000, 30_000_000), (0, 0)),
            round(2, (100_000, 40_000_000), (0, 0)),
            round(1, (75_000, 26_250_000), (0, 0)),
        ];
        let s = cost_summary(&costs, 2);
        // Shares of 2 CPUs: 1.5%, 1.0%, 1.3125%.
        assert!(s.contains("| on_switch | 75000 | 350 | 1.31% |"), "{s}");
        // A program that never ran has no time per run, not a division by 0.
        assert!(s.contains("| on_wakeup | 0 | - | 0.00% |"), "{s}");
        assert!(s.contains("together: 1.31% of the CPUs"), "{s}");
        assert!(s.contains("the work meanwhile: 1000/s"), "{s}");
        assert!(s.starts_with("3 rounds with"), "{s}");
    }
}

/// What `bench dev` measured for one save.
#[derive(Debug, Clone, Default)]
struct Save {
    /// From the edit to the verdict, seconds.
    total: f64,
    build: f64,
    /// Loading and verifying the scheduler (attach), seconds.
    load: f64,
    scenario: f64,
    judging: f64,
}

impl Save {
    /// Everything beyond the build and the scenario's own duration.
    fn beyond(&self) -> f64 {
        self.total - self.build - self.scenario
    }
}

/// Puts a file back as it was when dropped (`bench dev` edits a real
/// source file).
struct Restore {
    path: PathBuf,
    text: Vec<u8>,
}

impl Drop for Restore {
    fn drop(&mut self) {
        if let Err(e) = crate::kernel::cache::write_atomic(&self.path, &self.text) {
            eprintln!("could not restore {}: {e}", self.path.display());
        }
    }
}

/// The source file `bench dev` edits: `file`, else the scheduler's BPF
/// source.
fn file_to_edit(src: &crate::dev::source::DevSource, file: Option<&Path>) -> Result<PathBuf> {
    use crate::dev::source::Recipe;
    if let Some(f) = file {
        return Ok(f.to_path_buf());
    }
    Ok(match &src.recipe {
        Recipe::BpfC { file } => file.clone(),
        Recipe::KernelExample { dir, name } => dir.join(format!("{name}.bpf.c")),
        Recipe::Cargo { .. } => {
            // The first BPF source among the directories dev watches.
            let mut found: Vec<PathBuf> = crate::dev::watch::source_dirs(&src.watch[0])
                .iter()
                .flat_map(|d| std::fs::read_dir(d).into_iter().flatten().flatten())
                .map(|e| e.path())
                .filter(|p| p.to_string_lossy().ends_with(".bpf.c"))
                .collect();
            found.sort();
            found.into_iter().next().with_context(|| {
                format!(
                    "no .bpf.c under {}\n  fix: name the file to edit with --file",
                    src.watch[0].display()
                )
            })?
        }
    })
}

/// `scx-harness bench dev`: the edit loop's cost against today's way, in
/// one session. Each save appends a comment line to the scheduler's
/// source (restored at the end). Today's way: the same build, then
/// `scx-harness run -s SCHEDULER SCENARIO` as a process (a VM booted per
/// save); `dev`: one `scx-harness dev` process, each save timed from the
/// edit to its verdict line, split from its `session.jsonl`. Prints each
/// way's save-to-verdict times (min/median/max), the split's medians and
/// what is beyond the build and the scenario; keeps everything in
/// `scx-runs/bench-dev-TIMESTAMP`.
#[allow(clippy::too_many_arguments)]
pub fn edit_loop(
    src: &crate::dev::source::DevSource,
    kernel: &Kernel,
    cache: &crate::kernel::Cache,
    kernel_arg: &[String],
    scenario: &str,
    saves: usize,
    file: Option<&Path>,
    tree: Option<&Path>,
) -> Result<i32> {
    let exe = std::env::current_exe()?;
    let root = std::fs::canonicalize(bench_dir("dev")?)?;
    let loaded = crate::scenario::resolve(scenario)?;
    let own = loaded.scenario.duration.as_secs_f64();
    let path = file_to_edit(src, file)?;
    let _restore = Restore {
        text: std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?,
        path: path.clone(),
    };
    let mut edits = 0usize;
    let mut edit = || -> Result<()> {
        edits += 1;
        let mut f = std::fs::OpenOptions::new().append(true).open(&path)?;
        use std::io::Write;
        writeln!(f, "/* scx-harness bench dev: save {edits} */")?;
        Ok(())
    };
    let name = &src.def.name;

    // Today's way.
    let mut today = Vec::new();
    for k in 1..=saves {
        edit()?;
        let t = Instant::now();
        let mut progress = crate::progress::Progress::new("bench dev");
        let built = src
            .build(
                &root.join(format!("today-build-{k}")),
                kernel.entry.as_ref(),
                cache,
                &mut progress,
            )
            .map_err(|f| anyhow::anyhow!("the build failed: {}", f.lines.join("\n")))?;
        drop(progress);
        let build = t.elapsed().as_secs_f64();
        let out = root.join(format!("today-run-{k}"));
        let mut cmd = std::process::Command::new(&exe);
        cmd.arg("run")
            .args(kernel_arg)
            .args(["-s", name, scenario, "--out"])
            .arg(&out)
            .stdout(Stdio::null());
        if let Some(reg) = registry_for(&built, &root, k)? {
            cmd.arg("--registry").arg(reg);
        }
        let status = cmd.status().context("running scx-harness run")?;
        let total = t.elapsed().as_secs_f64();
        let results = crate::report::load_run(&out)
            .with_context(|| format!("{} wrote no results (exit {status})", out.display()))?;
        let load = results
            .iter()
            .filter_map(|r| r.agent.as_ref()?.scheduler.as_ref()?.attach_ms)
            .map(|m| m as f64 / 1000.0)
            .sum();
        eprintln!("today {k}/{saves}: {total:.1} s (build {build:.1} s), exit {status}");
        today.push(Save {
            total,
            build,
            load,
            scenario: own,
            judging: 0.0,
        });
    }

    // dev.
    let out = root.join("dev");
    let mut cmd = SupervisedCommand::new(&exe, Terminal::Detached);
    cmd.arg("dev").arg(name).arg(scenario).args(kernel_arg);
    if let Some(t) = tree {
        cmd.arg("--tree").arg(t);
    }
    cmd.arg("--out")
        .arg(&out)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    // Supervised: an error below kills it, and its VM, on the way out.
    let mut child = cmd.spawn("scx-harness dev")?;
    let lines = BufReader::new(child.child_mut().stdout.take().context("dev's stdout")?).lines();
    let mut lines = lines.map_while(std::result::Result::ok);
    let mut wait_verdict = |n: usize| -> Result<()> {
        let at = format!("build {n}: ");
        for l in lines.by_ref() {
            if let Some(rest) = l.strip_prefix(&at) {
                if rest.starts_with("built in") {
                    continue;
                }
                if !rest.starts_with("pass") {
                    bail!("dev's build {n}: {rest} (see {})", out.display());
                }
                return Ok(());
            }
        }
        bail!(
            "dev ended before build {n}'s verdict (see {})",
            out.display()
        )
    };
    wait_verdict(1)?;
    let mut dev = Vec::new();
    for k in 1..=saves {
        edit()?;
        let t = Instant::now();
        wait_verdict(k + 1)?;
        dev.push(Save {
            total: t.elapsed().as_secs_f64(),
            scenario: own,
            ..Save::default()
        });
    }
    {
        use std::io::Write;
        let _ = writeln!(
            child.child_mut().stdin.as_mut().context("dev's stdin")?,
            "q"
        );
    }
    child.wait(Some(Instant::now() + Duration::from_secs(120)))?;
    // The split, from dev's own record of each build.
    let jsonl = std::fs::read_to_string(out.join("session.jsonl"))?;
    for (line, save) in jsonl.lines().skip(1).zip(dev.iter_mut()) {
        let v: serde_json::Value = serde_json::from_str(line)?;
        save.build = v["build_s"].as_f64().unwrap_or(0.0);
        if let Some(c) = v["cells"].as_array().and_then(|c| c.first()) {
            save.load = c["attach_ms"].as_f64().unwrap_or(0.0) / 1000.0;
            save.judging = c["timing"]["judging_s"].as_f64().unwrap_or(0.0);
        }
    }
    let stat = |xs: Vec<f64>| {
        let med = crate::stats::median(&xs);
        let min = xs.iter().copied().fold(f64::INFINITY, f64::min);
        let max = xs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        format!("{min:.2} / {med:.2} / {max:.2}")
    };
    println!(
        "{name} on {scenario} ({own:.0} s), {saves} save(s) each way; run directories in {}",
        root.display()
    );
    println!("seconds, min / median / max:");
    for (what, s) in [("run", &today), ("dev", &dev)] {
        println!(
            "  {what:<4} save to verdict {}   build {}   load {}   beyond build and scenario {}",
            stat(s.iter().map(|x| x.total).collect()),
            stat(s.iter().map(|x| x.build).collect()),
            stat(s.iter().map(|x| x.load).collect()),
            stat(s.iter().map(Save::beyond).collect()),
        );
    }
    println!(
        "  dev  judging {}   beyond build, scenario and load {}",
        stat(dev.iter().map(|x| x.judging).collect()),
        stat(dev.iter().map(|x| x.beyond() - x.load).collect()),
    );
    println!("dev per save (total, build, load, beyond build and scenario):");
    for (k, x) in dev.iter().enumerate() {
        println!(
            "  save {}: {:.2}  {:.2}  {:.2}  {:.2}",
            k + 1,
            x.total,
            x.build,
            x.load,
            x.beyond()
        );
    }
    println!(
        "target: beyond build and scenario under 1.5 s: first save {:.2} s, later saves' median {:.2} s",
        dev.first().map_or(0.0, Save::beyond),
        crate::stats::median(&dev.iter().skip(1).map(Save::beyond).collect::<Vec<_>>()),
    );
    Ok(0)
}

/// A registry in which the scheduler is `built` as it was just built (a
/// `path:` source), for today's `run` to use the very build; `None` when
/// the registry's own source already is that build (a workspace package,
/// which cargo keeps in place).
fn registry_for(
    built: &crate::scheduler::build::Built,
    root: &Path,
    k: usize,
) -> Result<Option<PathBuf>> {
    use crate::scheduler::build::Artifact;
    let p = match &built.artifact {
        Artifact::Binary(p) | Artifact::Object(p) => p,
        Artifact::Nothing => return Ok(None),
    };
    if matches!(
        built.def.source,
        Some(crate::scheduler::registry::Source::Workspace(_))
    ) {
        return Ok(None);
    }
    let mut def = built.def.clone();
    def.source = Some(crate::scheduler::registry::Source::Path(p.clone()));
    def.on.clear();
    let yaml = serde_yaml::to_string(&serde_json::json!({ "schedulers": [def] }))?;
    let file = root.join(format!("registry-{k}.yaml"));
    std::fs::write(&file, yaml)?;
    Ok(Some(file))
}
