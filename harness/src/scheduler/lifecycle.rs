//! One scheduler's life in the guest: start it, wait until the kernel says
//! it is attached, run a payload under it, stop it, wait until it is
//! detached, and classify what happened.
//!
//! The guest side ([`run_in_guest`]) runs inside the VM as
//! `scx-harness guest run-scheduler ...` (the guest sees the host's root, so
//! the same binary runs there) and writes a JSON [`Report`] into the VM's
//! shared directory. The host side ([`run_in_vm`]) boots the VM, reads the
//! report, and adds what only the host sees (a kernel crash, a guest that
//! never reported). Knows sysfs, the kernel log and the registry's kinds;
//! knows nothing about scenarios.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use super::bpf_object::{self, ExitInfo};
use super::build::{Artifact, Built};
use super::exit::{kernel_events, ExitKind, KernelEvent};
use super::registry::ops_matches;
use crate::kernel::cache::write_atomic;
use crate::kmsg;
use crate::vm::{self, GuestCommand, Outcome, VmResult, VmSpec};

const SYSFS: &str = "/sys/kernel/sched_ext";
/// How long the kernel may take to finish disabling after a stop.
const DETACH_TIMEOUT: Duration = Duration::from_secs(10);
const POLL: Duration = Duration::from_millis(10);

/// How the guest starts the scheduler.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Start {
    /// Nothing: the kernel's fair class.
    Default,
    /// A process that attaches and stays until SIGINT.
    Binary { argv: Vec<String> },
    /// A BPF object the guest side loads and attaches itself.
    BpfObject { path: PathBuf },
}

/// What the guest side is asked to do.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct GuestSpec {
    /// The registry name, for reports.
    pub name: String,
    pub start: Start,
    /// The ops name it registers; a trailing `*` matches a prefix.
    pub ops: Option<String>,
    pub attach_timeout_ms: u64,
    /// Run under the scheduler once attached (`sh -c`).
    pub payload: Option<String>,
    /// SIGINT, then SIGKILL after this long.
    pub stop_grace_ms: u64,
}

impl GuestSpec {
    /// The spec for a built scheduler, with `extra_args` after the
    /// registry's own arguments.
    pub fn for_built(built: &Built, extra_args: &[String], payload: Option<String>) -> GuestSpec {
        let start = match &built.artifact {
            Artifact::Nothing => Start::Default,
            Artifact::Object(path) => Start::BpfObject { path: path.clone() },
            Artifact::Binary(bin) => Start::Binary {
                argv: std::iter::once(bin.display().to_string())
                    .chain(built.def.args.iter().cloned())
                    .chain(extra_args.iter().cloned())
                    .collect(),
            },
        };
        GuestSpec {
            name: built.def.name.clone(),
            start,
            ops: built.def.ops.clone(),
            attach_timeout_ms: built.def.attach_timeout.as_millis() as u64,
            payload,
            stop_grace_ms: 5_000,
        }
    }
}

/// sched_ext's global counters at one moment.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Counters {
    pub state: String,
    pub enable_seq: u64,
    pub nr_rejected: u64,
    /// 1 while every task runs on the sched_ext scheduler (not partial).
    pub switch_all: u64,
}

/// `root/events` of the attached scheduler ("NAME COUNT" lines), empty
/// where the kernel has no such file.
fn read_events() -> std::collections::BTreeMap<String, u64> {
    parse_events(&read_sysfs("root/events").unwrap_or_default())
}

fn parse_events(text: &str) -> std::collections::BTreeMap<String, u64> {
    text.lines()
        .filter_map(|l| {
            let (name, count) = l.trim().split_once(char::is_whitespace)?;
            Some((name.to_string(), count.trim().parse().ok()?))
        })
        .collect()
}

fn read_sysfs(name: &str) -> Option<String> {
    std::fs::read_to_string(Path::new(SYSFS).join(name))
        .ok()
        .map(|s| s.trim().to_string())
}

/// Whether the running kernel has sched_ext (`/sys/kernel/sched_ext`).
pub fn sched_ext_present() -> bool {
    Path::new(SYSFS).join("state").exists()
}

/// The attached scheduler's ops name (`root/ops`; "(state S)" while it is
/// enabling or disabling), or `None` when sched_ext is disabled or absent.
pub fn attached_ops() -> Option<String> {
    match read_sysfs("state").as_deref() {
        None | Some("disabled") => None,
        Some(state) => Some(read_sysfs("root/ops").unwrap_or_else(|| format!("(state {state})"))),
    }
}

/// Polls until no scheduler is attached, for at most `within`: how long
/// that took, or `None`.
pub fn wait_detached(within: Duration) -> Option<Duration> {
    let start = Instant::now();
    loop {
        if attached_ops().is_none() {
            return Some(start.elapsed());
        }
        if start.elapsed() >= within {
            return None;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Asks the kernel to detach the sched_ext scheduler now (sysrq-S,
/// Documentation/scheduler/sched-ext.rst: "reset to SCHED_NORMAL"):
/// `scx_disable` runs from the kernel's own RT worker, so it works even
/// when the scheduler's loader is one of the tasks it starves.
pub fn detach_through_sysrq() -> std::io::Result<()> {
    std::fs::write("/proc/sysrq-trigger", "S")
}

fn counters() -> Counters {
    let num = |n: &str| read_sysfs(n).and_then(|s| s.parse().ok()).unwrap_or(0);
    Counters {
        state: read_sysfs("state").unwrap_or_default(),
        enable_seq: num("enable_seq"),
        nr_rejected: num("nr_rejected"),
        switch_all: num("switch_all"),
    }
}

/// How the run went.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum Verdict {
    /// Attached, ran the payload, detached on request with an orderly exit.
    Clean,
    /// Never attached: the loader or verifier refused it, it exited, or the
    /// deadline passed.
    FailedToAttach { why: String },
    /// Attached, then the kernel disabled it before it was asked to stop
    /// (an error exit, a stall, unregistering itself).
    ExitedDuringRun { why: String },
    /// Its process died of a signal it was not sent, or the guest kernel
    /// crashed.
    Crashed { why: String },
    /// Asked to stop, it left with an error exit kind or did not leave.
    BadDetach { why: String },
    /// The guest never reported (the VM timed out or failed).
    NoReport { why: String },
}

impl Verdict {
    pub fn is_clean(&self) -> bool {
        matches!(self, Verdict::Clean)
    }

    /// A short label for tables: clean, failed_to_attach, ...
    pub fn label(&self) -> &'static str {
        match self {
            Verdict::Clean => "clean",
            Verdict::FailedToAttach { .. } => "failed_to_attach",
            Verdict::ExitedDuringRun { .. } => "exited_during_run",
            Verdict::Crashed { .. } => "crashed",
            Verdict::BadDetach { .. } => "bad_detach",
            Verdict::NoReport { .. } => "no_report",
        }
    }

    pub fn why(&self) -> &str {
        match self {
            Verdict::Clean => "",
            Verdict::FailedToAttach { why }
            | Verdict::ExitedDuringRun { why }
            | Verdict::Crashed { why }
            | Verdict::BadDetach { why }
            | Verdict::NoReport { why } => why,
        }
    }
}

/// What the guest side reports.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Report {
    pub name: String,
    pub verdict: Verdict,
    /// The ops name seen in `root/ops` while attached.
    pub ops: Option<String>,
    /// From start to attached.
    pub attach_ms: Option<u64>,
    /// From attached to the moment it stopped being attached on its own.
    pub left_after_ms: Option<u64>,
    pub before: Counters,
    /// Read right after attaching (None if it never attached).
    pub attached: Option<Counters>,
    pub after: Counters,
    /// From the kernel's `disabled (REASON)` line for this scheduler.
    pub exit_kind: Option<ExitKind>,
    pub exit_reason: Option<String>,
    /// The kernel's `sched_ext: OPS: MESSAGE` line after an error exit.
    pub exit_message: Option<String>,
    /// What the scheduler itself recorded: its `EXIT: ...` line, or the
    /// `uei` of a BPF object.
    pub scheduler_exit: Option<String>,
    pub uei: Option<ExitInfo>,
    /// The scheduler process's exit code, or the signal that killed it.
    pub process_status: Option<i32>,
    pub process_signal: Option<i32>,
    pub payload_status: Option<i32>,
    /// When attaching failed: the loader's last lines (the scheduler's
    /// stderr, or libbpf's log with the verifier's output).
    pub loader_log: Vec<String>,
    /// The kernel's sched_ext lines printed during the run.
    pub kernel_log: Vec<String>,
    /// sched_ext's own event counters for this scheduler
    /// (`/sys/kernel/sched_ext/root/events`, "NAME COUNT" lines; 7.3 has
    /// them, 6.12 does not: `SCX_ATTR(events)` in kernel/sched/ext/ext.c),
    /// read just before it was stopped: counts since it attached. Empty
    /// where the kernel has none or the scheduler was not attached then.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub events: std::collections::BTreeMap<String, u64>,
    pub stdout: String,
    pub stderr: String,
}

impl Report {
    /// "ErrorBpf (scx_bpf_error): message", or what is known of it.
    pub fn exit_summary(&self) -> String {
        describe_exit(
            self.exit_kind,
            self.exit_reason.as_deref(),
            self.exit_message.as_deref(),
        )
    }
}

fn describe_exit(kind: Option<ExitKind>, reason: Option<&str>, message: Option<&str>) -> String {
    let mut s = match (kind, reason) {
        (Some(k), Some(r)) => format!("{k:?} ({r})"),
        (None, Some(r)) => r.to_string(),
        _ => "no sched_ext exit line in the kernel log".into(),
    };
    if let Some(m) = message {
        s.push_str(": ");
        s.push_str(m);
    }
    s
}

/// A started scheduler.
enum Running {
    Nothing,
    Process {
        child: Child,
        status: Option<ExitStatus>,
        /// True once we sent SIGKILL (a death by it is then ours).
        killed: bool,
    },
    Object {
        attached: Option<bpf_object::Attached>,
        uei: Option<ExitInfo>,
    },
}

/// Starts a loader at real-time priority [`crate::sched::LOADER_PRIORITY`]
/// (what it forks and its threads start in the normal class,
/// SCHED_RESET_ON_FORK): a scheduler attaches when it is due even while the
/// scenario's tasks hold every CPU (64 spinners on 2 vCPUs held a nice-0
/// loader off for 13 s under the fair class). Once attached it runs in the
/// normal class, as it would on a machine ([`Running::to_normal_class`]).
/// Where the harness may not (not root), the loader starts as it is.
fn loader_outranks_the_workload(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: sched_setscheduler is async-signal-safe; its error is ignored.
    unsafe {
        cmd.pre_exec(|| {
            let _ = crate::sched::set_raw(
                0,
                libc::SCHED_FIFO | libc::SCHED_RESET_ON_FORK,
                crate::sched::LOADER_PRIORITY,
            );
            Ok(())
        });
    }
}

/// Sets `policy` and `priority` on every thread of process `pid`; a thread
/// gone meanwhile is skipped.
fn set_every_thread(pid: u32, policy: i32, priority: i32) {
    for tid in crate::probe::tids_of(pid) {
        let _ = crate::sched::set_raw(tid as i32, policy, priority);
    }
}

impl Running {
    /// Puts an attached loader's threads in the normal class (nice 0).
    fn to_normal_class(&self) {
        if let Running::Process { child, .. } = self {
            set_every_thread(child.id(), libc::SCHED_OTHER, 0);
        }
    }

    /// True once the process has exited or the BPF side recorded an exit.
    fn gone(&mut self) -> bool {
        match self {
            Running::Nothing => false,
            Running::Process { child, status, .. } => {
                if status.is_none() {
                    *status = child.try_wait().ok().flatten();
                }
                status.is_some()
            }
            Running::Object { attached, uei } => {
                if uei.is_none() {
                    *uei = attached.as_ref().and_then(|a| a.exit_info());
                }
                uei.is_some()
            }
        }
    }

    /// SIGINT then SIGKILL after `grace` for a process; detach for an
    /// object.
    fn stop(&mut self, grace: Duration) {
        match self {
            Running::Nothing => {}
            Running::Process {
                child,
                status,
                killed,
            } => {
                if status.is_some() || self_exited(child, status) {
                    return;
                }
                // Leaving must not wait for CPU time the workload holds:
                // the loader detaches its scheduler as the attach did,
                // above every scenario task.
                // Every thread: a loader may handle SIGINT on one of its own.
                set_every_thread(
                    child.id(),
                    libc::SCHED_FIFO | libc::SCHED_RESET_ON_FORK,
                    crate::sched::LOADER_PRIORITY,
                );
                // SAFETY: signalling our own child.
                unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
                let deadline = Instant::now() + grace;
                while Instant::now() < deadline {
                    if self_exited(child, status) {
                        return;
                    }
                    std::thread::sleep(POLL);
                }
                *killed = true;
                let _ = child.kill();
                *status = child.wait().ok();
            }
            Running::Object { attached, uei } => {
                if let Some(a) = attached.as_mut() {
                    a.detach();
                }
                // The kernel records the exit info while disabling.
                let deadline = Instant::now() + DETACH_TIMEOUT;
                while uei.is_none() && Instant::now() < deadline {
                    *uei = attached.as_ref().and_then(|a| a.exit_info());
                    if uei.is_none() {
                        std::thread::sleep(POLL);
                    }
                }
            }
        }
    }
}

fn self_exited(child: &mut Child, status: &mut Option<ExitStatus>) -> bool {
    if status.is_none() {
        *status = child.try_wait().ok().flatten();
    }
    status.is_some()
}

/// What a report keeps of a loader's output: its last 25 lines, and where
/// the verifier explains itself at length (7.3's "Verification failed"
/// block can run to a hundred lines) also the verifier's own error line and
/// the source line above it, which the tail would lose.
fn loader_excerpt(text: &str) -> Vec<String> {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let tail_from = lines.len().saturating_sub(25);
    let mut keep: Vec<usize> = Vec::new();
    if let Some(h) = lines[..tail_from]
        .iter()
        .position(|l| l.starts_with("Verification failed"))
    {
        let from = lines[..h]
            .iter()
            .rposition(|l| l.starts_with("; "))
            .unwrap_or(h.saturating_sub(2));
        keep.extend(from..=h);
    }
    keep.extend(tail_from..lines.len());
    keep.iter().map(|&i| lines[i].to_string()).collect()
}

/// The line of a loader's output that says why: the last one that speaks of
/// an error or a refusal, else the last one.
fn key_line(lines: &[String]) -> Option<&String> {
    const WORDS: &[&str] = &["error", "invalid", "failed", "denied", "unexpected"];
    lines
        .iter()
        .rev()
        .find(|l| {
            let l = l.to_lowercase();
            WORDS.iter().any(|w| l.contains(w))
        })
        .or(lines.last())
}

/// The verifier's verdict in a loader log: the line before "processed N
/// insns" in a program load log, with the source line it refers to (the
/// last `; CODE @ FILE:LINE` above it). Kernels since 7.3 write an
/// explanation block between the two (`kernel/bpf/diagnostics.c`: a
/// "Verification failed: CATEGORY: Problem" header, then "Reason:", "At:",
/// "Causal path:", "Suggestion:" sections, each line of which can mention
/// a source line or read like an error): the verdict is then the line
/// before that header, and the header is added to it.
fn verifier_says(lines: &[String]) -> Option<String> {
    let processed = lines
        .iter()
        .position(|l| l.starts_with("processed ") && l.contains(" insns"))?;
    let header = lines[..processed]
        .iter()
        .position(|l| l.starts_with("Verification failed"));
    let end = header.unwrap_or(processed);
    let verdict = lines[..end].iter().rev().find(|l| !l.trim().is_empty())?;
    let at = lines[..end]
        .iter()
        .rev()
        .find(|l| l.starts_with("; "))
        .and_then(|l| l.rsplit_once(" @ "))
        .map(|(_, place)| format!(" (at {})", place.trim()))
        .unwrap_or_default();
    let explained = header
        .map(|h| format!(" [{}]", lines[h].trim()))
        .unwrap_or_default();
    Some(format!("{}{at}{explained}", verdict.trim()))
}

fn signal_name(sig: i32) -> String {
    let name = match sig {
        libc::SIGABRT => "SIGABRT",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGKILL => "SIGKILL",
        libc::SIGBUS => "SIGBUS",
        libc::SIGILL => "SIGILL",
        libc::SIGFPE => "SIGFPE",
        libc::SIGTERM => "SIGTERM",
        libc::SIGINT => "SIGINT",
        _ => return format!("signal {sig}"),
    };
    name.to_string()
}

/// A scheduler started in the guest: attached (or not), watched while a
/// workload runs, then stopped and classified by [`Session::finish`].
pub struct Session {
    spec: GuestSpec,
    out_path: PathBuf,
    err_path: PathBuf,
    kmsg: kmsg::Cursor,
    before: Counters,
    started: Instant,
    running: Running,
    failed_start: Option<String>,
    loader_log: Vec<String>,
    ops_seen: Option<String>,
    attached: bool,
    attached_at: Instant,
    attach_ms: Option<u64>,
    attached_counters: Option<Counters>,
    left_after_ms: Option<u64>,
    /// Set once we asked it to stop: leaving is then no longer its doing.
    stopped: bool,
}

impl Session {
    /// Starts the scheduler and waits until it is attached, it dies, or the
    /// attach deadline passes. Its output goes to `dir/NAME.stdout|stderr`.
    pub fn start(spec: &GuestSpec, dir: &Path) -> Result<Session> {
        let out_path = dir.join(format!("{}.stdout", spec.name));
        let err_path = dir.join(format!("{}.stderr", spec.name));
        let kmsg = kmsg::Cursor::at_end();
        let before = counters();
        let started = Instant::now();
        let mut loader_log = Vec::new();
        let mut failed_start = None;
        let mut running = match &spec.start {
            Start::Default => Running::Nothing,
            Start::Binary { argv } => {
                let (program, args) = argv.split_first().context("empty scheduler command")?;
                // The loader holds the scheduler's link: it must end with
                // the agent, however the agent ends (the kernel detaches a
                // struct_ops scheduler when its link's last fd closes).
                let mut cmd = Command::new(program);
                crate::process::die_with_parent(&mut cmd);
                loader_outranks_the_workload(&mut cmd);
                match cmd
                    .args(args)
                    .stdin(Stdio::null())
                    .stdout(std::fs::File::create(&out_path)?)
                    .stderr(std::fs::File::create(&err_path)?)
                    .spawn()
                {
                    Ok(child) => Running::Process {
                        child,
                        status: None,
                        killed: false,
                    },
                    Err(e) => {
                        failed_start = Some(format!("cannot start {program}: {e}"));
                        Running::Nothing
                    }
                }
            }
            Start::BpfObject { path } => match bpf_object::load_and_attach(path) {
                Ok(a) => Running::Object {
                    attached: Some(a),
                    uei: None,
                },
                Err(f) => {
                    loader_log = loader_excerpt(&f.log.join("\n"));
                    failed_start = Some(f.message);
                    Running::Object {
                        attached: None,
                        uei: None,
                    }
                }
            },
        };

        // Attach: the kernel's state and ops name, checked together with
        // the scheduler's liveness against one deadline.
        let deadline = started + Duration::from_millis(spec.attach_timeout_ms);
        let mut ops_seen = None;
        let attached = match (&spec.start, &failed_start) {
            (_, Some(_)) => false,
            (Start::Default, _) => true,
            _ => loop {
                let c = counters();
                if c.state == "enabled" && c.enable_seq > before.enable_seq {
                    let ops = read_sysfs("root/ops");
                    if let Some(o) =
                        ops.filter(|o| spec.ops.as_deref().is_some_and(|p| ops_matches(p, o)))
                    {
                        ops_seen = Some(o);
                        break true;
                    }
                }
                if running.gone() || Instant::now() >= deadline {
                    break false;
                }
                std::thread::sleep(POLL);
            },
        };
        if attached {
            running.to_normal_class();
        }
        Ok(Session {
            spec: spec.clone(),
            out_path,
            err_path,
            kmsg,
            before,
            started,
            running,
            failed_start,
            loader_log,
            ops_seen,
            attached,
            attached_at: Instant::now(),
            attach_ms: attached.then(|| started.elapsed().as_millis() as u64),
            attached_counters: attached.then(counters),
            left_after_ms: None,
            stopped: false,
        })
    }

    /// True if it attached (always, for the fair class).
    pub fn attached(&self) -> bool {
        self.attached
    }

    /// The ops name it attached as.
    pub fn ops(&self) -> Option<&str> {
        self.ops_seen.as_deref()
    }

    /// Looks whether it is still attached, and notes when it stopped being
    /// so. Call it often while a workload runs. Returns true while it is.
    pub fn watch(&mut self) -> bool {
        if !self.attached || self.stopped {
            return false;
        }
        if self.spec.ops.is_none() {
            return true;
        }
        if self.left_after_ms.is_none() {
            let still = counters().state == "enabled"
                && read_sysfs("root/ops").as_deref() == self.ops_seen.as_deref()
                && !self.running.gone();
            if !still {
                self.left_after_ms = Some(self.attached_at.elapsed().as_millis() as u64);
            }
        }
        self.left_after_ms.is_none()
    }

    /// When it stopped being attached on its own, from the attach.
    pub fn left_after(&self) -> Option<Duration> {
        self.left_after_ms.map(Duration::from_millis)
    }

    /// Stops it now (idempotent): SIGINT then SIGKILL, or detach. For a
    /// run that must end early, e.g. because a task stalled under it.
    pub fn stop(&mut self) {
        self.watch();
        self.stopped = true;
        self.running
            .stop(Duration::from_millis(self.spec.stop_grace_ms));
    }

    /// Stops it, waits for the kernel to finish disabling it, and
    /// classifies the run.
    pub fn finish(mut self, payload_status: Option<i32>) -> Report {
        // The counters go with the scheduler: read them while it is there.
        let events = match (&self.spec.ops, counters()) {
            (Some(_), c) if c.state == "enabled" => read_events(),
            _ => Default::default(),
        };
        self.stop();
        let detach_deadline = Instant::now() + DETACH_TIMEOUT;
        while self.spec.ops.is_some()
            && counters().state != "disabled"
            && Instant::now() < detach_deadline
        {
            std::thread::sleep(POLL);
        }
        let after = counters();
        let Session {
            spec,
            out_path,
            err_path,
            mut kmsg,
            before,
            started,
            running,
            failed_start,
            mut loader_log,
            ops_seen,
            attached,
            attach_ms,
            attached_counters,
            left_after_ms,
            ..
        } = self;
        let kernel_log: Vec<String> = kmsg
            .read_new()
            .into_iter()
            .filter(|l| l.contains("sched_ext") || l.contains("failed to run for"))
            .collect();
        let (exit_kind, exit_reason, exit_message) =
            exit_from_kernel(spec.ops.as_deref(), &kernel_log);
        let read = |p: &Path| {
            std::fs::read(p)
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_default()
        };
        let (stdout, stderr) = (read(&out_path), read(&err_path));
        let (status, killed, uei) = match &running {
            Running::Process { status, killed, .. } => (*status, *killed, None),
            Running::Object { uei, .. } => (None, false, uei.clone()),
            Running::Nothing => (None, false, None),
        };
        let process_status = status.and_then(|s| s.code());
        let process_signal = {
            use std::os::unix::process::ExitStatusExt;
            status.and_then(|s| s.signal())
        };
        let scheduler_exit = match &uei {
            Some(u) if !u.msg.is_empty() => Some(format!("EXIT: {} ({})", u.reason, u.msg)),
            Some(u) => Some(format!("EXIT: {}", u.reason)),
            None => stderr
                .lines()
                .chain(stdout.lines())
                .filter_map(|l| l.find("EXIT: ").map(|i| l[i..].trim().to_string()))
                .next_back(),
        };
        if !attached && loader_log.is_empty() {
            loader_log = loader_excerpt(&stderr);
        }

        let exit_text =
            || describe_exit(exit_kind, exit_reason.as_deref(), exit_message.as_deref());
        let verdict = if !attached {
            let why = match (&failed_start, status) {
                (Some(f), _) => f.clone(),
                (None, Some(s)) => format!(
                    "the scheduler exited ({s}) {} ms after it was started, before it attached",
                    started.elapsed().as_millis()
                ),
                (None, None) => format!(
                    "not attached as {:?} within {} ms (state {:?}, ops {:?})",
                    spec.ops.as_deref().unwrap_or(""),
                    spec.attach_timeout_ms,
                    counters().state,
                    read_sysfs("root/ops")
                ),
            };
            let verifier = verifier_says(&loader_log)
                .map(|v| format!("; the verifier said: {v}"))
                .unwrap_or_default();
            let last = key_line(&loader_log)
                .map(|l| format!("; the loader said: {}", l.trim()))
                .unwrap_or_default();
            Verdict::FailedToAttach {
                why: format!("{why}{verifier}{last}"),
            }
        } else if let Some(sig) = process_signal.filter(|s| !(killed && *s == libc::SIGKILL)) {
            Verdict::Crashed {
                why: format!(
                    "the scheduler process died of {}{}; the kernel then disabled it: {}",
                    signal_name(sig),
                    left_after_ms
                        .map(|ms| format!(" {ms} ms after attaching"))
                        .unwrap_or_default(),
                    exit_text()
                ),
            }
        } else if let Some(ms) = left_after_ms {
            Verdict::ExitedDuringRun {
                why: format!("{} ms after attaching: {}", ms, exit_text()),
            }
        } else if spec.ops.is_some() && after.state != "disabled" {
            Verdict::BadDetach {
                why: format!(
                    "still {:?} {} s after the stop",
                    after.state,
                    DETACH_TIMEOUT.as_secs()
                ),
            }
        } else if exit_kind.is_some_and(ExitKind::is_error) {
            Verdict::BadDetach { why: exit_text() }
        } else if killed {
            Verdict::BadDetach {
                why: format!(
                    "it ignored SIGINT for {} ms and was killed",
                    spec.stop_grace_ms
                ),
            }
        } else {
            Verdict::Clean
        };
        Report {
            name: spec.name.clone(),
            verdict,
            ops: ops_seen,
            attach_ms,
            left_after_ms,
            before,
            attached: attached_counters,
            after,
            exit_kind,
            exit_reason,
            exit_message,
            scheduler_exit,
            uei,
            process_status,
            process_signal,
            payload_status,
            loader_log,
            kernel_log,
            events,
            stdout,
            stderr,
        }
    }
}

/// Guest side of `scx-harness guest run-scheduler`: starts the scheduler,
/// runs the payload under it while watching it, stops it, and writes the
/// report to `out`.
pub fn run_in_guest(spec: &GuestSpec, out: &Path) -> Result<Report> {
    let dir = out.parent().unwrap_or(Path::new("/tmp"));
    let mut session = Session::start(spec, dir)?;
    let mut payload_status = None;
    if session.attached() {
        if let Some(p) = &spec.payload {
            let mut payload = Command::new("sh")
                .arg("-c")
                .arg(p)
                .stdin(Stdio::null())
                .spawn()
                .context("starting the payload")?;
            loop {
                session.watch();
                if let Some(s) = payload.try_wait()? {
                    payload_status = s.code();
                    break;
                }
                std::thread::sleep(POLL);
            }
        }
    }
    let report = session.finish(payload_status);
    write_atomic(out, &serde_json::to_vec_pretty(&report)?)?;
    Ok(report)
}

/// The last disable of a scheduler whose ops name matches `pattern` in the
/// kernel lines of this run, with its message.
fn exit_from_kernel(
    pattern: Option<&str>,
    lines: &[String],
) -> (Option<ExitKind>, Option<String>, Option<String>) {
    let Some(pattern) = pattern else {
        return (None, None, None);
    };
    let mut kind = None;
    let mut reason = None;
    let mut message = None;
    let mut ops_of_disable = None;
    for e in kernel_events(&lines.join("\n")) {
        match e {
            KernelEvent::Disabled {
                ops,
                reason: r,
                kind: k,
            } if ops_matches(pattern, &ops) => {
                kind = k;
                reason = Some(r);
                message = None;
                ops_of_disable = Some(ops);
            }
            KernelEvent::Message { ops, message: m } if Some(&ops) == ops_of_disable.as_ref() => {
                message.get_or_insert(m);
            }
            _ => {}
        }
    }
    (kind, reason, message)
}

/// What a host-side run produced.
#[derive(Debug)]
pub struct Run {
    pub vm: VmResult,
    pub report: Option<Report>,
}

impl Run {
    /// The guest's verdict, or what the host saw instead (a kernel crash, a
    /// VM that ended without a report).
    pub fn verdict(&self) -> Verdict {
        verdict_of(&crate::vm::SessionEnd::from(&self.vm), self.report.as_ref())
    }
}

/// The guest side's verdict, or what the host saw instead: a kernel crash,
/// a session (a VM, or the host target's agent) that ended without a
/// report.
pub fn verdict_of(end: &crate::vm::SessionEnd, report: Option<&Report>) -> Verdict {
    match (&end.outcome, report) {
        (Outcome::KernelCrash, _) => Verdict::Crashed {
            why: format!(
                "the guest kernel crashed: {}",
                end.crashes
                    .iter()
                    .find(|c| c.kind.is_fatal())
                    .or(end.crashes.first())
                    .map(|c| c.text.clone())
                    .unwrap_or_default()
            ),
        },
        (_, Some(r)) => r.verdict.clone(),
        (outcome, None) => Verdict::NoReport {
            why: format!(
                "the guest side wrote no report (session: {outcome:?}); console log: {}",
                end.console_log.display()
            ),
        },
    }
}

/// The registry's word for a failure it expects of this scheduler: an
/// `unsupported` one failing to attach with its `loader_says` text (in the
/// verdict or the loader's log), or a `known_issue` exiting during the run
/// or detaching badly with its `says` text. Returns the registry's reason;
/// None for any other verdict, a clean one included.
pub fn expected_failure<'a>(
    def: &'a super::registry::Def,
    verdict: &Verdict,
    loader_log: &[String],
) -> Option<&'a str> {
    match verdict {
        Verdict::FailedToAttach { why } => def
            .unsupported
            .as_ref()
            .filter(|u| {
                why.contains(&u.loader_says)
                    || loader_log.iter().any(|l| l.contains(&u.loader_says))
            })
            .map(|u| u.reason.as_str()),
        Verdict::ExitedDuringRun { why } | Verdict::BadDetach { why } => def
            .known_issue
            .as_ref()
            .filter(|k| why.contains(&k.says))
            .map(|k| k.reason.as_str()),
        _ => None,
    }
}

/// Host side: boots `kernel`, runs the lifecycle of `spec` with
/// `harness_bin` (an scx-harness binary the guest can execute) and returns
/// the VM's result with the guest's report, if it wrote one.
pub fn run_in_vm(
    kernel: &Path,
    harness_bin: &Path,
    spec: &GuestSpec,
    work_dir: &Path,
    timeout: Duration,
) -> Result<Run> {
    let mut batch = run_each_in_vm(
        kernel,
        harness_bin,
        std::slice::from_ref(spec),
        work_dir,
        timeout,
    )?;
    Ok(Run {
        report: batch.reports.pop().flatten(),
        vm: batch.vm,
    })
}

/// What one boot running several schedulers' lifecycles in turn produced:
/// the VM's result and each scheduler's report, in the order given (None
/// for one that wrote none: the VM ended first, or it could not be run).
#[derive(Debug)]
pub struct Batch {
    pub vm: VmResult,
    pub reports: Vec<Option<Report>>,
    /// Each turn's lines of the console log (0-based, its markers
    /// included; to the end when the VM ended in it), None for a turn that
    /// never began.
    pub turns: Vec<Option<std::ops::Range<usize>>>,
}

impl Batch {
    /// The turn a console line (0-based) was printed in, if any: the
    /// turns' lines never overlap (see [`run_each_in_vm`]).
    fn turn_of(&self, line: usize) -> Option<usize> {
        self.turns
            .iter()
            .position(|t| t.as_ref().is_some_and(|t| t.contains(&line)))
    }

    /// The kernel's crash lines printed during the `i`th turn. A stall is
    /// reported in the turn it was printed in, which may come after the
    /// one it began in: the kernel prints an RCU stall once it has lasted
    /// CONFIG_RCU_CPU_STALL_TIMEOUT (21 s by default).
    pub fn crashes(&self, i: usize) -> Vec<&crate::vm::console::CrashLine> {
        self.vm
            .crashes
            .iter()
            .filter(|c| self.turn_of(c.line_no - 1) == Some(i))
            .collect()
    }

    /// The kernel's crash lines printed outside every turn: while booting,
    /// between two turns, after the last. No scheduler's, and every one's
    /// concern.
    pub fn crashes_outside_turns(&self) -> Vec<&crate::vm::console::CrashLine> {
        self.vm
            .crashes
            .iter()
            .filter(|c| self.turn_of(c.line_no - 1).is_none())
            .collect()
    }

    /// The verdict of the `i`th scheduler: its report's, or, with none,
    /// what the host saw while it ran (the kernel crash, the VM that
    /// ended), or, for a turn that never began, that it never ran.
    pub fn verdict(&self, i: usize) -> Verdict {
        match &self.reports[i] {
            Some(r) => r.verdict.clone(),
            // It never began, and an earlier turn did: the VM ended in
            // that one, whose verdict the crash is.
            None if self.turns[i].is_none() && self.turns[..i].iter().any(Option::is_some) => {
                let last = self.turns[..i]
                    .iter()
                    .rposition(Option::is_some)
                    .unwrap_or(0);
                Verdict::NoReport {
                    why: format!(
                        "never ran: the VM ended ({:?}) in turn {last}, before this one began",
                        self.vm.outcome
                    ),
                }
            }
            None => verdict_of(&crate::vm::SessionEnd::from(&self.vm), None),
        }
    }
}

/// Host side: boots `kernel` once and runs the lifecycle of each of
/// `specs` in turn, as [`run_in_vm`] runs one (each attaches, runs its
/// payload, detaches, and is judged on the kernel lines and counters of its
/// own turn). Saves a boot per scheduler (6-15 s under TCG): for checking
/// a kernel against every scheduler. A scheduler that never detaches fails
/// the ones after it to attach; `timeout` is for the whole boot.
pub fn run_each_in_vm(
    kernel: &Path,
    harness_bin: &Path,
    specs: &[GuestSpec],
    work_dir: &Path,
    timeout: Duration,
) -> Result<Batch> {
    let mut argv = vec![
        harness_bin.display().to_string(),
        "guest".into(),
        "run-scheduler".into(),
    ];
    for (i, spec) in specs.iter().enumerate() {
        argv.extend([
            "--spec-json".into(),
            serde_json::to_string(spec)?,
            "--out".into(),
            crate::protocol::shared_arg(&crate::protocol::scheduler_report(i)),
        ]);
    }
    let mut vm_spec = VmSpec::new(
        kernel.to_path_buf(),
        work_dir.to_path_buf(),
        GuestCommand::Exec(argv),
    );
    vm_spec.timeout = Some(timeout);
    let vm = vm::run(&vm_spec)?;
    let reports = (0..specs.len())
        .map(|i| {
            std::fs::read(vm.shared_dir.join(crate::protocol::scheduler_report(i)))
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok())
        })
        .collect();
    let console = crate::vm::console::read(&vm.console_log);
    let mut turns: Vec<Option<std::ops::Range<usize>>> = specs
        .iter()
        .enumerate()
        .map(|(i, spec)| {
            let mark = |m| crate::protocol::turn_marker(i, &spec.name, m);
            crate::protocol::marked_lines(
                &console,
                &mark(crate::protocol::Mark::Begins),
                &mark(crate::protocol::Mark::Ends),
            )
        })
        .collect();
    // A turn whose end marker is missing (lost, or cut by output on the
    // same console line) ends where the next one begins, not at the end.
    for i in 0..turns.len() {
        let next = turns[i + 1..].iter().flatten().map(|t| t.start).next();
        if let (Some(t), Some(next)) = (&mut turns[i], next) {
            t.end = t.end.min(next);
        }
    }
    Ok(Batch { vm, reports, turns })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_registry_names_the_failures_it_expects_and_no_others() {
        let reg = crate::scheduler::registry::Registry::parse(
            std::path::Path::new("reg.yaml"),
            "schedulers:\n  - name: flaky\n    kind: binary\n    source: { path: flaky }\n    ops: flaky\n    \
             known_issue: { reason: stalls now and then, says: (runnable task stall) }\n  \
             - name: old\n    kind: binary\n    source: { path: old }\n    ops: old\n    \
             unsupported: { reason: needs 6.13, loader_says: unknown func }\n",
        )
        .unwrap();
        let (flaky, old) = (reg.get("flaky").unwrap(), reg.get("old").unwrap());
        let exited = |why: &str| Verdict::ExitedDuringRun { why: why.into() };
        let stall = exited("3079 ms after attaching: ErrorStall (runnable task stall): x[73] failed to run for 30.4s");
        assert_eq!(
            expected_failure(flaky, &stall, &[]),
            Some("stalls now and then")
        );
        let bad_detach = Verdict::BadDetach {
            why: "ErrorStall (runnable task stall): watchdog failed to check in for 30.440s".into(),
        };
        assert!(expected_failure(flaky, &bad_detach, &[]).is_some());
        // Any other failure of the same scheduler is not the known one.
        let bpf_error = exited("ErrorBpf (scx_bpf_error): oops");
        assert_eq!(expected_failure(flaky, &bpf_error, &[]), None);
        let crashed = Verdict::Crashed {
            why: "(runnable task stall)".into(),
        };
        assert_eq!(expected_failure(flaky, &crashed, &[]), None);
        assert_eq!(expected_failure(flaky, &Verdict::Clean, &[]), None);
        let refused = Verdict::FailedToAttach {
            why: "the scheduler exited (1)".into(),
        };
        assert_eq!(expected_failure(flaky, &refused, &[]), None);
        // Unsupported: only its failure to attach, found in the loader's log too.
        let log = vec!["libbpf: unknown func bpf_foo".to_string()];
        assert_eq!(expected_failure(old, &refused, &log), Some("needs 6.13"));
        assert_eq!(expected_failure(old, &refused, &[]), None);
        assert_eq!(expected_failure(old, &stall, &log), None);
    }

    #[test]
    fn spec_round_trips_through_json() {
        for start in [
            Start::Default,
            Start::Binary {
                argv: vec!["/x/scx_simple".into(), "-v".into()],
            },
            Start::BpfObject {
                path: "/x/local.bpf.o".into(),
            },
        ] {
            let spec = GuestSpec {
                name: "x".into(),
                start,
                ops: Some("simple".into()),
                attach_timeout_ms: 20_000,
                payload: Some("sh -c 'exit 0'".into()),
                stop_grace_ms: 5_000,
            };
            let back: GuestSpec =
                serde_json::from_str(&serde_json::to_string(&spec).unwrap()).unwrap();
            assert_eq!(back, spec);
        }
    }

    #[test]
    fn the_key_loader_line_is_the_one_that_says_why() {
        let lines: Vec<String> = [
            "error: unexpected argument '--bogus' found",
            "",
            "Usage: scx_fifo",
            "For more information, try '--help'.",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert_eq!(key_line(&lines).unwrap(), &lines[0]);
        let plain = vec!["a".to_string(), "b".to_string()];
        assert_eq!(key_line(&plain).unwrap(), "b");
        assert_eq!(key_line(&[]), None);
    }

    #[test]
    fn the_verifiers_verdict_is_found_with_its_source_line() {
        let log: Vec<String> = "libbpf: prog 'fault_tick': -- BEGIN PROG LOAD LOG --
0: R1=ctx() R10=fp0
; u64 addr = bpf_ktime_get_ns(); @ main.bpf.c:185
5: (85) call bpf_ktime_get_ns#5       ; R0_w=scalar()
; p->scx.slice = *(volatile u64 *)addr; @ main.bpf.c:187
6: (79) r1 = *(u64 *)(r0 +0)
R0 invalid mem access 'scalar'
processed 6 insns (limit 1000000) max_states_per_insn 0 total_states 0
-- END PROG LOAD LOG --
Error: Failed to load BPF program"
            .lines()
            .map(String::from)
            .collect();
        assert_eq!(
            verifier_says(&log).unwrap(),
            "R0 invalid mem access 'scalar' (at main.bpf.c:187)"
        );
        assert_eq!(verifier_says(&log[..3]), None);
    }

    #[test]
    fn a_long_explanation_keeps_the_verifiers_own_line_in_the_excerpt() {
        let mut text = String::from(
            "libbpf: prog 'qmap_dequeue': -- BEGIN PROG LOAD LOG --\n\
             ; taskc->q_prev = NULL; @ scx_qmap.bpf.c:336\n\
             97: (7b) *(u64 *)(r7 +16) = r1\n\
             R7 invalid mem access 'scalar'\n\n\
             Verification failed: Register Type Safety: Invalid dereference\n",
        );
        for i in 0..100 {
            text.push_str(&format!("  context line {i} @ scx_qmap.bpf.c:{i}\n"));
        }
        text.push_str(
            "processed 71 insns (limit 1000000)\n-- END PROG LOAD LOG --\nFailed to load skel\n",
        );
        let excerpt = loader_excerpt(&text);
        assert!(excerpt.len() <= 25 + 4, "{excerpt:#?}");
        assert_eq!(
            verifier_says(&excerpt).unwrap(),
            "R7 invalid mem access 'scalar' (at scx_qmap.bpf.c:336) \
             [Verification failed: Register Type Safety: Invalid dereference]"
        );
        // A short log is its tail, as before.
        assert_eq!(loader_excerpt("a\n\nb\n"), ["a", "b"]);
    }

    #[test]
    fn event_counters_are_read_as_7_3_writes_them() {
        // scx_attr_events_show: "%s %llu\n" per SCX_EVENTS_LIST entry.
        let e =
            parse_events("SCX_EV_SELECT_CPU_FALLBACK 12\nSCX_EV_BYPASS_DURATION 0\nnot a line\n");
        assert_eq!(e.len(), 2);
        assert_eq!(e["SCX_EV_SELECT_CPU_FALLBACK"], 12);
        assert!(parse_events("").is_empty());
    }

    #[test]
    fn a_7_3_explanation_block_does_not_hide_the_verdict() {
        // The shape 7.3's kernel/bpf/diagnostics.c writes after the error:
        // a header, then sections whose lines cite source lines and end
        // with advice; before, the advice's last line became the verdict.
        let log: Vec<String> = "libbpf: prog 'qmap_dequeue': -- BEGIN PROG LOAD LOG --
; if (!taskc) @ scx_qmap.bpf.c:329
41: (15) if r7 == 0x0 goto pc+20
; taskc->core_sched_seq = 0; @ scx_qmap.bpf.c:331
42: (7b) *(u64 *)(r7 +8) = r8
R7 invalid mem access 'scalar'

Verification failed: Memory Safety: Invalid memory access through a scalar

Reason:
  r7 holds a number, not a pointer the verifier can check

At:
  331 | taskc->core_sched_seq = 0; @ scx_qmap.bpf.c:331

Causal path:
  ; taskc = bpf_arena_get(...); @ scx_qmap.bpf.c:320

Suggestion:
  Check the pointer right before the access; a value kept across
  arithmetic, helper calls, or other operations that can invalidate it.
processed 42 insns (limit 1000000) max_states_per_insn 0 total_states 3
-- END PROG LOAD LOG --"
            .lines()
            .map(String::from)
            .collect();
        assert_eq!(
            verifier_says(&log).unwrap(),
            "R7 invalid mem access 'scalar' (at scx_qmap.bpf.c:331) \
             [Verification failed: Memory Safety: Invalid memory access through a scalar]"
        );
    }

    #[test]
    fn exit_lines_are_matched_by_ops_pattern() {
        let lines: Vec<String> = [
            "sched_ext: BPF scheduler \"other\" disabled (unregistered from user space)",
            "sched_ext: BPF scheduler \"fault_0.1.0_x\" enabled",
            "sched_ext: BPF scheduler \"fault_0.1.0_x\" disabled (scx_bpf_error)",
            "sched_ext: fault_0.1.0_x: injected by scx_fault --error-after 1000 ms",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let (kind, reason, msg) = exit_from_kernel(Some("fault_*"), &lines);
        assert_eq!(kind, Some(ExitKind::ErrorBpf));
        assert_eq!(reason.as_deref(), Some("scx_bpf_error"));
        assert_eq!(
            msg.as_deref(),
            Some("injected by scx_fault --error-after 1000 ms")
        );
        assert_eq!(exit_from_kernel(Some("nope"), &lines), (None, None, None));
    }
}
