//! One scheduler's life in the guest: start it, wait until the kernel says
//! it is attached, run a payload under it, stop it, wait until it is
//! detached, and report what happened.
//!
//! The guest side ([`run_in_guest`]) runs inside the VM as
//! `scx-harness guest run-scheduler ...` (the guest sees the host's root, so
//! the same binary runs there) and writes a JSON [`Report`] into the VM's
//! shared directory. The host side ([`run_in_vm`]) boots the VM and reads
//! it. Knows sysfs and the kernel log; knows nothing about scenarios.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use super::exit::{kernel_events, ExitKind, KernelEvent};
use crate::kernel::cache::write_atomic;
use crate::vm::{self, GuestCommand, VmResult, VmSpec};

const SYSFS: &str = "/sys/kernel/sched_ext";

/// What the guest side is asked to do.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct GuestSpec {
    /// The scheduler's executable and its arguments.
    pub argv: Vec<String>,
    /// The ops name it registers (`root/ops`); a trailing `*` matches a
    /// prefix (scx's crates append their version).
    pub ops: String,
    pub attach_timeout_ms: u64,
    /// Run under the scheduler once attached (`sh -c`).
    pub payload: Option<String>,
    /// SIGINT, then SIGKILL after this long.
    pub stop_grace_ms: u64,
}

/// sched_ext's global counters at one moment.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Counters {
    pub state: String,
    pub enable_seq: u64,
    pub nr_rejected: u64,
}

fn read_sysfs(name: &str) -> Option<String> {
    std::fs::read_to_string(Path::new(SYSFS).join(name))
        .ok()
        .map(|s| s.trim().to_string())
}

fn counters() -> Counters {
    Counters {
        state: read_sysfs("state").unwrap_or_default(),
        enable_seq: read_sysfs("enable_seq")
            .and_then(|s| s.parse().ok())
            .unwrap_or(0),
        nr_rejected: read_sysfs("nr_rejected")
            .and_then(|s| s.parse().ok())
            .unwrap_or(0),
    }
}

fn ops_matches(pattern: &str, ops: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => ops.starts_with(prefix),
        None => ops == pattern,
    }
}

/// How the run went.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum Verdict {
    /// Attached, ran the payload, detached on request with an orderly exit.
    Clean,
    /// Never attached: the process exited, or the deadline passed.
    FailedToAttach { why: String },
    /// Attached, then left on its own before it was asked to.
    ExitedDuringRun { why: String },
    /// Asked to stop, it left with an error exit kind or did not leave.
    BadDetach { why: String },
}

/// What the guest side reports.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Report {
    pub verdict: Verdict,
    /// The ops name seen in `root/ops` while attached.
    pub ops: Option<String>,
    pub attach_ms: Option<u64>,
    pub before: Counters,
    pub after: Counters,
    /// The kernel's `disabled (REASON)` line for this scheduler.
    pub exit_kind: Option<ExitKind>,
    pub exit_reason: Option<String>,
    /// The `sched_ext: OPS: MESSAGE` line after an error exit.
    pub exit_message: Option<String>,
    /// The scheduler process's exit status (None: killed by a signal).
    pub process_status: Option<i32>,
    pub payload_status: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

/// Guest side: runs the lifecycle and writes the report to `out`.
pub fn run_in_guest(spec: &GuestSpec, out: &Path) -> Result<Report> {
    let before = counters();
    let dir = out.parent().unwrap_or(Path::new("/tmp"));
    let out_path = dir.join("scheduler.stdout");
    let err_path = dir.join("scheduler.stderr");
    let (program, args) = spec.argv.split_first().context("empty scheduler command")?;
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path)?)
        .stderr(std::fs::File::create(&err_path)?)
        .spawn()
        .with_context(|| format!("starting {program}"))?;
    let started = Instant::now();
    let deadline = started + Duration::from_millis(spec.attach_timeout_ms);
    let mut ops_seen = None;
    let mut early_exit = None;
    // Attach: the kernel's state and ops name, checked with the process's
    // liveness against one deadline.
    let attached = loop {
        let c = counters();
        let ops = read_sysfs("root/ops");
        if c.state == "enabled" && c.enable_seq > before.enable_seq {
            if let Some(o) = ops.filter(|o| ops_matches(&spec.ops, o)) {
                ops_seen = Some(o);
                break true;
            }
        }
        if let Some(status) = child.try_wait()? {
            early_exit = Some(status);
            break false;
        }
        if Instant::now() >= deadline {
            break false;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let attach_ms = attached.then(|| started.elapsed().as_millis() as u64);
    let mut payload_status = None;
    let mut verdict = None;
    if attached {
        if let Some(p) = &spec.payload {
            payload_status = Command::new("sh").arg("-c").arg(p).status()?.code();
        }
        if counters().state != "enabled" || child.try_wait()?.is_some() {
            verdict = Some(Verdict::ExitedDuringRun {
                why: "the scheduler was no longer attached when the payload ended".into(),
            });
        }
    } else {
        verdict = Some(Verdict::FailedToAttach {
            why: match early_exit {
                Some(s) => format!("the scheduler exited ({s}) before it attached"),
                None => format!(
                    "not attached as {:?} within {} ms (state {:?}, ops {:?})",
                    spec.ops,
                    spec.attach_timeout_ms,
                    counters().state,
                    read_sysfs("root/ops")
                ),
            },
        });
    }
    // Stop: SIGINT, a grace period, then SIGKILL.
    let status = match child.try_wait()? {
        Some(s) => Some(s),
        None => {
            // SAFETY: signalling our own child.
            unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
            let grace = Instant::now() + Duration::from_millis(spec.stop_grace_ms);
            loop {
                if let Some(s) = child.try_wait()? {
                    break Some(s);
                }
                if Instant::now() >= grace {
                    let _ = child.kill();
                    break child.wait().ok();
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    };
    // Detach: the kernel finishes disabling asynchronously.
    let detach_deadline = Instant::now() + Duration::from_secs(10);
    while counters().state != "disabled" && Instant::now() < detach_deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let after = counters();
    let (exit_kind, exit_reason, exit_message) = exit_from_kmsg(ops_seen.as_deref());
    if verdict.is_none() {
        verdict = Some(if after.state != "disabled" {
            Verdict::BadDetach {
                why: format!("still {:?} 10 s after the stop", after.state),
            }
        } else if exit_kind.is_some_and(ExitKind::is_error) {
            Verdict::BadDetach {
                why: format!(
                    "exit kind {:?}: {}",
                    exit_kind,
                    exit_reason.clone().unwrap_or_default()
                ),
            }
        } else {
            Verdict::Clean
        });
    }
    let read = |p: &Path| {
        let mut s = String::new();
        let _ = std::fs::File::open(p).and_then(|mut f| f.read_to_string(&mut s));
        s
    };
    let report = Report {
        verdict: verdict.expect("set above"),
        ops: ops_seen,
        attach_ms,
        before,
        after,
        exit_kind,
        exit_reason,
        exit_message,
        process_status: status.and_then(|s| s.code()),
        payload_status,
        stdout: read(&out_path),
        stderr: read(&err_path),
    };
    write_atomic(out, &serde_json::to_vec_pretty(&report)?)?;
    Ok(report)
}

/// The last disable of `ops` in the kernel log (`dmesg`), with its message.
fn exit_from_kmsg(ops: Option<&str>) -> (Option<ExitKind>, Option<String>, Option<String>) {
    let Some(ops) = ops else {
        return (None, None, None);
    };
    let log = Command::new("dmesg")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    let mut kind = None;
    let mut reason = None;
    let mut message = None;
    for e in kernel_events(&log) {
        match e {
            KernelEvent::Disabled {
                ops: o,
                reason: r,
                kind: k,
            } if o == ops => {
                kind = k;
                reason = Some(r);
                message = None;
            }
            KernelEvent::Message { ops: o, message: m } if o == ops && reason.is_some() => {
                message.get_or_insert(m);
            }
            _ => {}
        }
    }
    (kind, reason, message)
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
) -> Result<(VmResult, Option<Report>)> {
    let mut argv = vec![
        harness_bin.display().to_string(),
        "guest".into(),
        "run-scheduler".into(),
        "--spec-json".into(),
        serde_json::to_string(spec)?,
    ];
    argv.push("--out".into());
    argv.push("@shared/report.json".into());
    let mut vm_spec = VmSpec::new(
        kernel.to_path_buf(),
        work_dir.to_path_buf(),
        GuestCommand::Exec(argv),
    );
    vm_spec.timeout = Some(timeout);
    let result = vm::run(&vm_spec)?;
    let report = std::fs::read(result.shared_dir.join("report.json"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok());
    Ok((result, report))
}

/// `@shared/NAME` in a guest-side path argument means the VM's shared
/// directory, which the wrapper exports as `SCX_HARNESS_SHARED`.
pub fn guest_path(arg: &str) -> PathBuf {
    match (
        arg.strip_prefix("@shared/"),
        std::env::var_os("SCX_HARNESS_SHARED"),
    ) {
        (Some(rest), Some(dir)) => PathBuf::from(dir).join(rest),
        _ => PathBuf::from(arg),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ops_patterns() {
        assert!(ops_matches("simple", "simple"));
        assert!(!ops_matches("simple", "simple2"));
        assert!(ops_matches(
            "bpfland_*",
            "bpfland_1.1.4_x86_64_unknown_linux_gnu"
        ));
        assert!(!ops_matches("bpfland_*", "lavd_1.0"));
    }

    #[test]
    fn spec_round_trips_through_json() {
        let spec = GuestSpec {
            argv: vec!["/x/scx_simple".into(), "-v".into()],
            ops: "simple".into(),
            attach_timeout_ms: 20_000,
            payload: Some("sh -c 'exit 0'".into()),
            stop_grace_ms: 5_000,
        };
        let back: GuestSpec = serde_json::from_str(&serde_json::to_string(&spec).unwrap()).unwrap();
        assert_eq!(back, spec);
    }
}
