//! The VM runner: boot a kernel with virtme-ng and run one command in the
//! guest, with a deadline, the console captured to a file, and no process
//! left behind.
//!
//! Lifecycle as types: a [`VmSpec`] describes the VM, [`run`] boots it and
//! waits, a [`VmResult`] is what came back. Talks to virtme-ng only through
//! `crate::vng`; knows nothing about schedulers or scenarios (the guest
//! command is opaque).

pub mod accel;
pub mod console;

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

pub use accel::{Accel, AccelChoice};
use console::CrashLine;

use crate::error::{fail, Failure};
use crate::kernel::check_bzimage;
use crate::process::{SupervisedCommand, Terminal, Waited};
use crate::vng::Vng;

/// What to run in the guest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GuestCommand {
    /// An argv, run without a shell (pass `sh -c '...'` for one).
    Exec(Vec<String>),
    /// An interactive shell on the terminal (for people at a desk).
    Shell,
}

/// Everything that describes one VM run.
#[derive(Debug, Clone)]
pub struct VmSpec {
    /// The bzImage to boot.
    pub kernel: PathBuf,
    /// vCPUs. Default 2.
    pub cpus: u32,
    /// Guest memory as QEMU reads it ("2G", "512M"). Default "2G".
    pub memory: String,
    /// Sockets, cores, SMT threads and NUMA nodes. Default: none given
    /// (QEMU's: one socket of `cpus` cores).
    pub topology: Option<crate::scenario::Topology>,
    pub accel: AccelChoice,
    /// Wall-clock limit from start to the end of the guest command. Default
    /// 5 minutes. `None` only makes sense for an interactive shell.
    pub timeout: Option<Duration>,
    pub command: GuestCommand,
    /// Host directories the guest may write, at the same path.
    pub rw_dirs: Vec<PathBuf>,
    /// Where the console log, the guest's output and the shared directory go.
    pub work_dir: PathBuf,
    /// Copy the guest's stdout/stderr to ours as they arrive.
    pub stream: bool,
    /// Extra kernel command line arguments.
    pub kernel_args: Vec<String>,
    /// Attach a scratch disk: a virtio-blk device with serial
    /// [`crate::protocol::SCRATCH_SERIAL`], backed by a sparse file of
    /// [`crate::protocol::SCRATCH_BYTES`] in `work_dir`, removed when the
    /// VM ends.
    pub scratch_disk: bool,
    /// Set by another thread to stop the VM now (reported as timed out):
    /// a serving session whose cell ran past its deadline.
    pub stop: Option<Arc<AtomicBool>>,
}

impl VmSpec {
    pub fn new(kernel: PathBuf, work_dir: PathBuf, command: GuestCommand) -> VmSpec {
        VmSpec {
            kernel,
            cpus: 2,
            memory: "2G".into(),
            topology: None,
            accel: AccelChoice::Auto,
            timeout: Some(Duration::from_secs(300)),
            command,
            rw_dirs: Vec::new(),
            work_dir,
            stream: false,
            kernel_args: Vec::new(),
            scratch_disk: false,
            stop: None,
        }
    }
}

/// How a VM run ended.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Outcome {
    /// The guest command ran to completion with this exit status.
    Exited { code: i32 },
    /// The guest kernel panicked (see [`VmResult::crashes`]).
    KernelCrash,
    /// The deadline passed; the VM was killed.
    TimedOut { reached_guest: bool },
    /// The VM never got to run the guest command, or died under it without
    /// a kernel crash: QEMU would not start, boot failed, QEMU was killed.
    InfraFailure { reason: String },
    /// The harness was interrupted (SIGINT/SIGTERM); the VM was killed.
    Interrupted,
}

/// How a session ended, whatever its target.
#[derive(Debug, Clone)]
pub struct SessionEnd {
    pub outcome: Outcome,
    /// Kernel trouble found in the session's console (VM) or kernel log
    /// (host).
    pub crashes: Vec<CrashLine>,
    /// The console log (VM) or the kernel log lines of the session (host).
    pub console_log: PathBuf,
}

impl From<&VmResult> for SessionEnd {
    fn from(v: &VmResult) -> SessionEnd {
        SessionEnd {
            outcome: v.outcome.clone(),
            crashes: v.crashes.clone(),
            console_log: v.console_log.clone(),
        }
    }
}

/// What came back from a VM run.
#[derive(Debug, Clone)]
pub struct VmResult {
    pub outcome: Outcome,
    pub stdout: String,
    pub stderr: String,
    /// The full console log (kernel messages from the first line of boot).
    pub console_log: PathBuf,
    /// The directory shared read-write with the guest (`$SCX_HARNESS_SHARED`
    /// there), where guest-side tools leave their results.
    pub shared_dir: PathBuf,
    /// Console lines that announce kernel trouble, fatal or not.
    pub crashes: Vec<CrashLine>,
    pub accel: Accel,
    /// Why that accelerator (the KVM probe's finding, or "forced").
    pub accel_reason: String,
    pub elapsed: Duration,
    /// From start to the first byte of the guest command's stdout.
    pub first_output: Option<Duration>,
}

impl VmResult {
    /// Kernel trouble that did not end the guest (a WARNING, a BUG, a
    /// lockup report), for the user to see even when the command succeeded.
    pub fn kernel_trouble(&self) -> Option<String> {
        if self.crashes.is_empty() {
            return None;
        }
        let lines: Vec<String> = self
            .crashes
            .iter()
            .take(10)
            .map(|c| format!("  {:?} (console line {}): {}", c.kind, c.line_no, c.text))
            .collect();
        Some(format!(
            "the guest kernel reported {} problem line(s):\n{}\n  console log: {}",
            self.crashes.len(),
            lines.join("\n"),
            self.console_log.display()
        ))
    }

    /// The guest command's status, or a classified error that explains what
    /// went wrong and where the evidence is.
    pub fn exit_code(&self) -> Result<i32> {
        let evidence = format!("console log: {}", self.console_log.display());
        match &self.outcome {
            Outcome::Exited { code } => Ok(*code),
            Outcome::KernelCrash => {
                let console = console::read(&self.console_log);
                let first = self
                    .crashes
                    .iter()
                    .find(|c| c.kind.is_fatal())
                    .or(self.crashes.first());
                let excerpt = first
                    .map(|c| console::excerpt(&console, c, 12))
                    .unwrap_or_default();
                Err(fail(
                    Failure::KernelCrash,
                    format!("the guest kernel crashed:\n{excerpt}\n  {evidence}"),
                ))
            }
            Outcome::TimedOut { reached_guest } => Err(fail(
                Failure::Infrastructure,
                format!(
                    "the VM ran past its deadline and was killed ({}); {evidence}",
                    if *reached_guest {
                        "the guest command had started"
                    } else {
                        "the guest never reached the command"
                    }
                ),
            )),
            Outcome::InfraFailure { reason } => Err(fail(
                Failure::Infrastructure,
                format!("{reason}\n  {evidence}"),
            )),
            Outcome::Interrupted => Err(fail(
                Failure::Interrupted,
                "interrupted; the VM was stopped",
            )),
        }
    }
}

/// The guest-side wrapper around the command: marks that the guest got as
/// far as the command, keeps copies of its stdout and stderr, and records
/// its status, all through the shared directory. vng's own channels are not
/// enough: its status cannot tell "the command exited 255" from "the kernel
/// panicked", and its init occasionally loses the command's output (seen in
/// `bench boot`). POSIX sh: the guest's /bin/sh may be dash, which has no
/// pipefail, so the status is written from inside the pipeline.
fn wrapper_script(shared: &Path, argv: &[String]) -> String {
    let d = shell_quote(&shared.display().to_string());
    let cmd: Vec<String> = argv.iter().map(|a| shell_quote(a)).collect();
    format!(
        "#!/bin/sh\n# written by scx-harness for one VM run\n\
         {env}={d}; export {env}\n\
         : > {d}/{started}\n\
         {{ {{ {{ {}; echo $? > {d}/status.tmp; }} 2>&1 1>&3 3>&- | tee {d}/stderr >&2 3>&-; }} 3>&1 | tee {d}/stdout; }}\n\
         mv {d}/status.tmp {d}/status\n\
         exit $(cat {d}/status)\n",
        cmd.join(" "),
        env = crate::protocol::SHARED_ENV,
        started = crate::protocol::STARTED,
    )
}

pub fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-=:,+@%".contains(c))
    {
        return s.to_string();
    }
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// The vng arguments for booting `spec` (everything but the command), with
/// `scratch` as the scratch disk's file when it has one.
fn vng_args(spec: &VmSpec, accel: Accel, shared: &Path, scratch: Option<&Path>) -> Vec<String> {
    let mut args = vec![
        "--run".to_string(),
        spec.kernel.display().to_string(),
        "--cpus".into(),
        spec.cpus.to_string(),
        "--memory".into(),
        spec.memory.clone(),
        "--rwdir".into(),
        shared.display().to_string(),
    ];
    if let Some(t) = &spec.topology {
        // QEMU merges -smp options: this one adds the layout to vng's count.
        args.push(format!(
            "--qemu-opts=-smp {},sockets={},cores={},threads={}",
            spec.cpus, t.sockets, t.cores, t.threads
        ));
        if t.numa {
            let mib = crate::scenario::validate::memory_bytes(&spec.memory).unwrap_or(0) >> 20;
            let per_cpus = t.cores * t.threads;
            for n in 0..t.sockets {
                args.push("--numa".into());
                args.push(format!(
                    "{}M,cpus={}-{}",
                    mib / u64::from(t.sockets),
                    n * per_cpus,
                    (n + 1) * per_cpus - 1
                ));
            }
        }
    }
    if let Some(file) = scratch {
        // Through --qemu-opts, not vng's --disk (which names the device
        // after its path, cut to 20 bytes by QEMU); vng hands the text to a
        // shell. Raw, so QEMU lets the guest write sector 0; an error of
        // the host file is the guest's EIO, not a paused VM.
        let serial = crate::protocol::SCRATCH_SERIAL;
        args.push(format!(
            "--qemu-opts=-drive {} -device {}",
            shell_quote(&format!(
                "if=none,id={serial},format=raw,werror=report,rerror=report,file={}",
                file.display().to_string().replace(',', ",,")
            )),
            shell_quote(&format!("virtio-blk-pci,drive={serial},serial={serial}"))
        ));
    }
    if accel == Accel::Tcg {
        args.push("--disable-kvm".into());
        if patches_text_at_run_time(&spec.kernel) {
            // One host thread runs every vCPU: see patches_text_at_run_time.
            args.push("--qemu-opts=-accel tcg,thread=single".into());
        }
    }
    // Without a Rust virtiofsd on the host (Debian 12 has none), vng tries
    // the C one for the root and each shared directory, waiting 3.1 s each
    // time before it falls back to 9p: go to 9p directly (BENCHMARKS.md).
    args.push("--force-9p".into());
    for d in &spec.rw_dirs {
        args.push("--rwdir".into());
        args.push(d.display().to_string());
    }
    // Verbose: the serial console (from the first line of boot, through
    // earlyprintk) goes to vng's stderr, which the harness writes to the
    // console log. The guest command's stderr joins it there, in order; a
    // separate copy comes back through the shared directory.
    // An interactive shell keeps vng's quiet console: the terminal is the
    // user's, and there is no log to capture.
    if spec.command != GuestCommand::Shell {
        args.push("--verbose".into());
    }
    // `--opt=value` form: argparse takes a separate value starting with
    // "-" for an option of its own.
    for karg in BOOT_ARGS
        .iter()
        .map(|a| a.to_string())
        .chain(spec.kernel_args.iter().cloned())
    {
        args.push(format!("--append={karg}"));
    }
    args
}

/// Whether the kernel patches its own text when static keys flip
/// (`CONFIG_JUMP_LABEL=y` in the `config` beside its bzImage: Debian's
/// prebuilt kernel; ours are built without it, kernel-config/sched-ext.config).
/// Under QEMU's multi-threaded TCG a vCPU can run a stale translation of
/// the int3 that text_poke_bp() plants while another vCPU patches, and the
/// guest dies with "Oops: int3" (Debian's 7.3.4 kernel: 2 of about 30 boots
/// on 2026-11-30, 1.5 s into boot, when the boot-time trace events flip
/// their keys; every sched_ext attach and detach flips more). With one host
/// thread running all vCPUs (`-accel tcg,thread=single`) no vCPU runs while
/// another patches; the guest's vCPUs then share that one host thread.
fn patches_text_at_run_time(bzimage: &Path) -> bool {
    // A cache entry keeps `config` beside its bzImage; a tree's
    // arch/x86/boot/bzImage has the tree's `.config` three levels up.
    let dir = bzimage.parent();
    let candidates = [
        dir.map(|d| d.join("config")),
        dir.and_then(|d| d.ancestors().nth(3))
            .map(|t| t.join(".config")),
    ];
    candidates
        .into_iter()
        .flatten()
        .find_map(|p| std::fs::read_to_string(p).ok())
        .is_some_and(|c| c.lines().any(|l| l.trim() == "CONFIG_JUMP_LABEL=y"))
}

/// Kernel arguments of every guest. `loglevel=7`: every kernel line on the
/// console. `trace_event=...` and `trace_instance=...`: at least two
/// functions are registered on each of the probe's seven tracepoints while
/// only one CPU runs: on sched_switch and sched_wakeup(_new) the trace
/// event's and the comm recorder's; on sched_migrate_task and the three
/// that tell when an idle CPU is told to run or sleeps again
/// (sched_wake_idle_without_ipi, ipi_send_cpu, cpu_idle), which the comm
/// recorder does not hook, the event's in the global buffer and in an
/// instance of ours (`scx_harness_pin`; both kernels, 6.12 and 7.3, take
/// events there at boot). Without it the first BPF program that attaches
/// to them (the
/// probe), or that calls bpf_trace_printk (scx_utils's schedulers do: it
/// starts the comm recorder), switches their static calls, patching a
/// `call` in ttwu_do_activate and __schedule with an int3 while the other
/// vCPU runs it; under QEMU's multi-threaded TCG that crashed 1 VM in
/// about 20 ("Oops: int3" in ttwu_do_activate). With two functions there,
/// later ones do not change the static call. The agent turns the trace
/// buffers off (`agent::quiet_tracing`), so the events cost one check each.
///
/// `tsc=reliable`: no clocksource watchdog on the TSC. Under TCG the
/// watchdog's HPET reads are delayed whenever a vCPU thread waits for a
/// host core, and in 27 of 47 VMs (2026-11-26) it declared the TSC
/// unstable (at 9 to 25 s) and switched to the HPET, whose every read is
/// an emulated MMIO access: from then on each clock read (the probe's, the
/// timers') was slow, and idle wakeup p99 grew from 0.3-1.5 ms to 1.3-7.4
/// ms in the cells after it. QEMU's TSC is one clock for all vCPUs.
pub const BOOT_ARGS: &[&str] = &[
    "loglevel=7",
    "tsc=reliable",
    "trace_event=sched:sched_switch,sched:sched_wakeup,sched:sched_wakeup_new,sched:sched_migrate_task,sched:sched_wake_idle_without_ipi,ipi:ipi_send_cpu,power:cpu_idle",
    "trace_instance=scx_harness_pin,sched:sched_migrate_task,sched:sched_wake_idle_without_ipi,ipi:ipi_send_cpu,power:cpu_idle",
];

/// Boots the VM, runs the command, and waits for it, the deadline, or an
/// interrupt. Infrastructure trouble is reported in the result's outcome,
/// not as `Err`; `Err` means the run could not even be set up.
pub fn run(spec: &VmSpec) -> Result<VmResult> {
    check_bzimage(&spec.kernel)?;
    let vng = Vng::locate()?;
    if crate::vng::which(accel::QEMU).is_none() {
        return Err(fail(
            Failure::HostTool,
            format!(
                "{} is not installed (not on PATH)\n  fix: run `cargo ci setup` (installs qemu-system-x86)",
                accel::QEMU
            ),
        ));
    }
    let probe = accel::resolve(spec.accel, &spec.kernel, &crate::paths::cache_dir())?;
    std::fs::create_dir_all(&spec.work_dir)
        .with_context(|| format!("creating {}", spec.work_dir.display()))?;
    let work_dir = std::fs::canonicalize(&spec.work_dir)?;
    let shared = work_dir.join("shared");
    let _ = std::fs::remove_dir_all(&shared);
    std::fs::create_dir_all(&shared)?;
    let console_log = work_dir.join("console.log");
    let console_file = std::fs::File::create(&console_log)
        .with_context(|| format!("creating {}", console_log.display()))?;

    let interactive = spec.command == GuestCommand::Shell;
    let companions = kernel_companions(&spec.kernel);
    // A command runs over the lean root (see `lean_root_prefix`); an
    // interactive shell keeps the guest's full init and its terminal.
    let lean = if interactive {
        None
    } else {
        lean_root_prefix()
    };
    if companions.is_some() && lean.is_none() {
        return Err(fail(
            Failure::BadInput,
            format!(
                "{} brings its own modules, which the guest can only see through a private mount namespace{}\n  \
                 fix: run as root, with a command (`scx-harness vm -- sh` gives a shell)",
                spec.kernel.display(),
                if interactive { " (not set up for an interactive shell)" } else { "" }
            ),
        ));
    }
    let mut cmd = match lean {
        Some(prefix) => {
            let mut c = SupervisedCommand::new(&prefix[0], Terminal::Detached);
            c.args(&prefix[1..]).arg(&vng.bin);
            c
        }
        None => SupervisedCommand::new(
            &vng.bin,
            if interactive {
                Terminal::Foreground
            } else {
                Terminal::Detached
            },
        ),
    };
    // The scratch disk's file: sparse, beside the session's console log
    // (on the results' filesystem, not a RAM-backed /tmp), removed when
    // the VM has ended.
    let scratch = if spec.scratch_disk {
        let f = tempfile::Builder::new()
            .prefix("scratch-")
            .suffix(".img")
            .tempfile_in(&work_dir)
            .context("creating the VM's scratch disk file")?;
        f.as_file()
            .set_len(crate::protocol::SCRATCH_BYTES)
            .with_context(|| format!("sizing {}", f.path().display()))?;
        Some(f)
    } else {
        None
    };
    cmd.env("PATH", vng.search_path()).args(vng_args(
        spec,
        probe.accel,
        &shared,
        scratch.as_ref().map(|f| f.path()),
    ));
    if let Some((lib, boot)) = &companions {
        cmd.env("SCX_HARNESS_LIB", lib);
        if boot.is_dir() && Path::new("/boot").is_dir() {
            cmd.env("SCX_HARNESS_BOOT", boot);
        }
    }
    if let GuestCommand::Exec(argv) = &spec.command {
        let script = shared.join("run.sh");
        std::fs::write(&script, wrapper_script(&shared, argv))?;
        cmd.arg("--exec")
            .arg(format!("sh {}", shell_quote(&script.display().to_string())))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
    }
    tracing::debug!("booting: {:?}", *cmd);
    let started = Instant::now();
    let mut vm = cmd.spawn("virtme-ng VM")?;
    let done = Arc::new(AtomicBool::new(false));
    let readers = if interactive {
        None
    } else {
        let out = vm.child_mut().stdout.take().expect("piped stdout");
        let err = vm.child_mut().stderr.take().expect("piped stderr");
        Some((
            tee(out, vec![]),
            tee(err, vec![Box::new(console_file)]),
            follow(shared.clone(), done.clone(), spec.stream, started),
        ))
    };
    let waited = vm.wait_or_stop(spec.timeout.map(|t| started + t), spec.stop.as_deref())?;
    drop(vm);
    done.store(true, Ordering::SeqCst);
    let (stdout, vng_stderr, first_output) = match readers {
        Some((o, e, f)) => (
            o.join().unwrap_or_default(),
            e.join().unwrap_or_default(),
            f.join().unwrap_or_default(),
        ),
        None => (Vec::new(), Vec::new(), None),
    };
    let vng_stderr = String::from_utf8_lossy(&vng_stderr).to_string();
    let elapsed = started.elapsed();
    let console = console::read(&console_log);
    let crashes = console::scan(&console);
    let reached_guest = shared.join(crate::protocol::STARTED).exists();
    let status = std::fs::read_to_string(shared.join("status"))
        .ok()
        .and_then(|s| s.trim().parse::<i32>().ok());
    let read_shared = |name: &str| {
        std::fs::read(shared.join(name)).map(|b| String::from_utf8_lossy(&b).to_string())
    };
    let stderr = read_shared("stderr").unwrap_or_default();
    // The shared copy is complete even when vng's channel lost the output.
    let stdout =
        read_shared("stdout").unwrap_or_else(|_| String::from_utf8_lossy(&stdout).to_string());
    let panicked = crashes.iter().any(|c| c.kind.is_fatal());
    let outcome = match waited {
        Waited::Interrupted => Outcome::Interrupted,
        Waited::TimedOut => Outcome::TimedOut { reached_guest },
        Waited::Exited(_) if panicked => Outcome::KernelCrash,
        Waited::Exited(_) if interactive => Outcome::Exited {
            code: status.unwrap_or(0),
        },
        Waited::Exited(_) => match status {
            Some(code) => Outcome::Exited { code },
            None if reached_guest => Outcome::InfraFailure {
                reason: format!(
                    "the VM ended while the guest command was running (vng: {}){}",
                    describe_exit(&waited),
                    tail_of("the console ended with", &vng_stderr)
                ),
            },
            None => Outcome::InfraFailure {
                reason: format!(
                    "the VM never reached the guest command (vng: {}){}",
                    describe_exit(&waited),
                    tail_of("the console ended with", &vng_stderr)
                ),
            },
        },
    };
    Ok(VmResult {
        outcome,
        stdout,
        stderr,
        console_log,
        shared_dir: shared.clone(),
        crashes,
        accel: probe.accel,
        accel_reason: probe.reason,
        elapsed,
        first_output,
    })
}

fn describe_exit(w: &Waited) -> String {
    match w {
        Waited::Exited(s) => s.to_string(),
        other => format!("{other:?}"),
    }
}

fn tail_of(label: &str, text: &str) -> String {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    if lines.is_empty() {
        return String::new();
    }
    let tail = &lines[lines.len().saturating_sub(8)..];
    format!("\n  {label}:\n    {}", tail.join("\n    "))
}

/// Reads `src` to the end on a thread, writing everything to `sinks`, and
/// returns what it read.
fn tee(
    mut src: impl Read + Send + 'static,
    mut sinks: Vec<Box<dyn Write + Send>>,
) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut all = Vec::new();
        let mut buf = [0u8; 8192];
        loop {
            match src.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    all.extend_from_slice(&buf[..n]);
                    for w in sinks.iter_mut() {
                        let _ = w.write_all(&buf[..n]);
                        let _ = w.flush();
                    }
                }
            }
        }
        all
    })
}

/// Follows the guest command's stdout and stderr as the wrapper writes them
/// into the shared directory: copies them to ours when `stream` is set
/// (a person at a desk sees the command's output live, without the boot
/// log) and notes when the first byte of stdout arrived. Stops, after a
/// last read, once `done` is set.
fn follow(
    shared: PathBuf,
    done: Arc<AtomicBool>,
    stream: bool,
    started: Instant,
) -> std::thread::JoinHandle<Option<Duration>> {
    std::thread::spawn(move || {
        let mut first = None;
        let mut offsets = [0u64; 2];
        loop {
            let last = done.load(Ordering::SeqCst);
            for (i, name) in ["stdout", "stderr"].iter().enumerate() {
                let Ok(mut f) = std::fs::File::open(shared.join(name)) else {
                    continue;
                };
                let mut chunk = Vec::new();
                if f.seek(SeekFrom::Start(offsets[i])).is_err()
                    || f.read_to_end(&mut chunk).is_err()
                {
                    continue;
                }
                if chunk.is_empty() {
                    continue;
                }
                offsets[i] += chunk.len() as u64;
                if i == 0 && first.is_none() {
                    first = Some(started.elapsed());
                }
                if stream {
                    let _ = if i == 0 {
                        std::io::stdout()
                            .write_all(&chunk)
                            .and_then(|_| std::io::stdout().flush())
                    } else {
                        std::io::stderr().write_all(&chunk)
                    };
                }
            }
            if last {
                return first;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    })
}

/// The guest's init (virtme-ng-init) runs `systemd-tmpfiles`, starts udevd
/// and waits for udev to settle before the command whenever it finds them
/// in the guest's root file system, which is the host's: 2.5 s of a 4.9 s
/// boot under TCG (BENCHMARKS.md). The runner starts vng in a private
/// mount namespace where `/usr/lib/systemd` is an empty directory and
/// `systemd-tmpfiles` is `/bin/true`; QEMU shares that view over 9p, so
/// the init skips udev and starts the command with the console as its
/// terminal. The command's output comes back through the shared directory
/// as before. The host's own mounts are untouched.
///
///
/// A kernel that brings its own modules (Debian's prebuilt one: 9p and
/// virtio are modules there) is shown the same way: `$SCX_HARNESS_LIB` (a
/// directory holding `modules/RELEASE/`) is laid over `/usr/lib` with a
/// read-only overlay (the host may have no `/usr/lib/modules` to bind
/// over), where vng looks for the modules of its initramfs and the guest's
/// modprobe for the rest; `$SCX_HARNESS_BOOT` (holding `config-RELEASE`)
/// is bound over `/boot`, where libbpf reads the config of a kernel
/// without IKCONFIG. The host's own directories are never written.
const LEAN_ROOT_SCRIPT: &str = "set -e\n\
    mount --make-rprivate /\n\
    if [ -n \"${SCX_HARNESS_LIB:-}\" ]; then mount -t overlay scx-harness-modules -o \"lowerdir=$SCX_HARNESS_LIB:/usr/lib\" /usr/lib; fi\n\
    if [ -n \"${SCX_HARNESS_BOOT:-}\" ]; then mount --bind \"$SCX_HARNESS_BOOT\" /boot; fi\n\
    unset SCX_HARNESS_LIB SCX_HARNESS_BOOT\n\
    if [ -d /usr/lib/systemd ]; then mount -t tmpfs -o ro,mode=0755,size=4k scx-harness-lean /usr/lib/systemd; fi\n\
    if [ -e /usr/bin/systemd-tmpfiles ]; then mount --bind /bin/true /usr/bin/systemd-tmpfiles; fi\n\
    exec \"$@\"\n";

/// The directories a kernel brings for its guest: `lib/` (with
/// `modules/RELEASE/`) and `boot/` beside its bzImage (a prebuilt kernel's
/// cache entry), if present.
pub fn kernel_companions(bzimage: &Path) -> Option<(PathBuf, PathBuf)> {
    let dir = bzimage.parent()?;
    let lib = dir.join("lib");
    lib.join("modules")
        .is_dir()
        .then(|| (lib, dir.join("boot")))
}

/// The command prefix that starts a program over the lean root, if this
/// host allows private mount namespaces (root, or CAP_SYS_ADMIN); tried
/// once per process. Without it, VMs boot the slower way.
fn lean_root_prefix() -> Option<Vec<String>> {
    static PREFIX: OnceLock<Option<Vec<String>>> = OnceLock::new();
    PREFIX
        .get_or_init(|| {
            let prefix: Vec<String> = [
                "unshare",
                "--mount",
                "--",
                "sh",
                "-c",
                LEAN_ROOT_SCRIPT,
                "scx-harness-lean",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect();
            let works = std::process::Command::new(&prefix[0])
                .args(&prefix[1..])
                .arg("true")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if !works {
                tracing::warn!(
                    "no private mount namespace here: guests boot with udev (about 2.5 s slower)"
                );
            }
            works.then_some(prefix)
        })
        .clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_quote_round_trips_through_sh() {
        for s in ["plain", "with space", "it's", "$HOME", "a\"b", "", "-x"] {
            let out = std::process::Command::new("sh")
                .arg("-c")
                .arg(format!("printf %s {}", shell_quote(s)))
                .output()
                .unwrap();
            assert_eq!(String::from_utf8(out.stdout).unwrap(), s);
        }
    }

    #[test]
    fn wrapper_records_status_start_and_stderr() {
        let dir = tempfile::tempdir().unwrap();
        let script = wrapper_script(
            dir.path(),
            &[
                "sh".into(),
                "-c".into(),
                "echo hi; echo oops >&2; exit 3".into(),
            ],
        );
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(&script)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(3));
        assert_eq!(String::from_utf8_lossy(&out.stdout), "hi\n");
        assert_eq!(String::from_utf8_lossy(&out.stderr), "oops\n");
        assert_eq!(
            std::fs::read_to_string(dir.path().join("stderr")).unwrap(),
            "oops\n"
        );
        assert!(dir.path().join("started").exists());
        assert_eq!(
            std::fs::read_to_string(dir.path().join("status"))
                .unwrap()
                .trim(),
            "3"
        );
    }

    #[test]
    fn tcg_disables_kvm_and_console_is_verbose() {
        let mut spec = VmSpec::new(
            "/k/bzImage".into(),
            "/w".into(),
            GuestCommand::Exec(vec!["true".into()]),
        );
        let args = vng_args(&spec, Accel::Tcg, Path::new("/w/shared"), None);
        assert!(args.contains(&"--disable-kvm".to_string()));
        assert!(args.contains(&"--verbose".to_string()));
        spec.command = GuestCommand::Shell;
        let shell = vng_args(&spec, Accel::Tcg, Path::new("/w/shared"), None);
        assert!(!shell.contains(&"--verbose".to_string()));
        assert!(args.contains(&"--rwdir".to_string()));
        let kvm = vng_args(&spec, Accel::Kvm, Path::new("/w/shared"), None);
        assert!(!kvm.contains(&"--disable-kvm".to_string()));
        assert!(!kvm.iter().any(|a| a.contains("-drive")));
    }

    #[test]
    fn the_scratch_disk_is_a_virtio_blk_device_named_by_its_serial() {
        let spec = VmSpec::new("/k/bzImage".into(), "/w".into(), GuestCommand::Exec(vec![]));
        let args = vng_args(
            &spec,
            Accel::Kvm,
            Path::new("/w/shared"),
            Some(Path::new("/w/a b,c/scratch.img")),
        );
        let opts: Vec<_> = args.iter().filter(|a| a.contains("-drive")).collect();
        // One argument; vng runs it through a shell, QEMU reads ",," as ",".
        assert_eq!(
            opts,
            ["--qemu-opts=-drive 'if=none,id=scx-scratch,format=raw,werror=report,rerror=report,file=/w/a b,,c/scratch.img' -device virtio-blk-pci,drive=scx-scratch,serial=scx-scratch"]
        );
    }

    #[test]
    fn a_kernel_that_patches_its_text_runs_its_vcpus_on_one_host_thread_under_tcg() {
        let dir = tempfile::tempdir().unwrap();
        let bz = dir.path().join("bzImage");
        let single = "--qemu-opts=-accel tcg,thread=single".to_string();
        let args = |accel| {
            let spec = VmSpec::new(bz.clone(), dir.path().into(), GuestCommand::Exec(vec![]));
            vng_args(&spec, accel, Path::new("/w/shared"), None)
        };
        // Ours: no JUMP_LABEL (or no config at all): multi-threaded TCG.
        assert!(!args(Accel::Tcg).contains(&single));
        std::fs::write(
            dir.path().join("config"),
            "# CONFIG_JUMP_LABEL is not set\n",
        )
        .unwrap();
        assert!(!args(Accel::Tcg).contains(&single));
        // Debian's: JUMP_LABEL=y.
        std::fs::write(
            dir.path().join("config"),
            "CONFIG_A=y\nCONFIG_JUMP_LABEL=y\n",
        )
        .unwrap();
        assert!(args(Accel::Tcg).contains(&single));
        // KVM has no such race.
        assert!(!args(Accel::Kvm).contains(&single));
    }

    #[test]
    fn the_lean_root_hides_udev_and_tmpfiles_from_the_guest() {
        // The same script, in a mount namespace of our own: the host's view
        // is untouched, the namespace's has no udevd.
        let Some(prefix) = lean_root_prefix() else {
            panic!("private mount namespaces are not available: run the tests as root");
        };
        let out = std::process::Command::new(&prefix[0])
            .args(&prefix[1..])
            .args([
                "sh",
                "-c",
                "ls /usr/lib/systemd | wc -l; [ ! -e /usr/bin/systemd-tmpfiles ] || /usr/bin/systemd-tmpfiles --bogus",
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "systemd-tmpfiles is not /bin/true: {out:?}"
        );
        assert_eq!(String::from_utf8_lossy(&out.stdout), "0\n");
        assert!(
            std::path::Path::new("/usr/lib/systemd/system").exists(),
            "the host's view changed"
        );
    }
}
