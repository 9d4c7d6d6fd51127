//! Choosing the accelerator: KVM when it really works, TCG otherwise.
//!
//! `/dev/kvm` existing is not enough (on some hosts QEMU stops with "KVM
//! internal error"), so the harness boots the kernel once under KVM with no
//! root file system and watches it reach its expected panic. The answer is
//! cached per host boot (keyed by `/proc/sys/kernel/random/boot_id`).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::kernel::cache::write_atomic;
use crate::process::{SupervisedCommand, Terminal, Waited};

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Accel {
    Kvm,
    Tcg,
}

impl std::fmt::Display for Accel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        })
    }
}

/// `--accel`: force one, or let the harness find out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum AccelChoice {
    #[default]
    Auto,
    Kvm,
    Tcg,
}

/// The result of the probe, as cached.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Probe {
    pub accel: Accel,
    /// Why KVM was rejected, or "KVM booted the kernel".
    pub reason: String,
}

/// The QEMU binary virtme-ng runs for x86_64 guests.
pub const QEMU: &str = "qemu-system-x86_64";
/// Under KVM the kernel reaches its no-root panic in about a second; TCG
/// needs about 3 s. Twice TCG's time leaves room for a loaded host.
const PROBE_SECS: u64 = 8;

/// Resolves `choice` to an accelerator, probing KVM at most once per host boot.
pub fn resolve(choice: AccelChoice, kernel: &Path, cache_dir: &Path) -> Result<Probe> {
    match choice {
        AccelChoice::Kvm => Ok(Probe {
            accel: Accel::Kvm,
            reason: "forced by --accel kvm".into(),
        }),
        AccelChoice::Tcg => Ok(Probe {
            accel: Accel::Tcg,
            reason: "forced by --accel tcg".into(),
        }),
        AccelChoice::Auto => {
            let memo = memo_path(cache_dir);
            if let Some(p) = memo
                .as_ref()
                .and_then(|m| std::fs::read(m).ok())
                .and_then(|b| serde_json::from_slice::<Probe>(&b).ok())
            {
                return Ok(p);
            }
            let probe = probe_kvm(kernel)?;
            tracing::info!("accelerator: {} ({})", probe.accel, probe.reason);
            if let Some(m) = memo {
                std::fs::create_dir_all(m.parent().expect("memo has a parent"))?;
                write_atomic(&m, &serde_json::to_vec(&probe)?)?;
            }
            Ok(probe)
        }
    }
}

fn memo_path(cache_dir: &Path) -> Option<PathBuf> {
    let boot_id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
    Some(
        cache_dir
            .join("accel")
            .join(format!("{}.json", boot_id.trim())),
    )
}

/// Boots `kernel` under KVM without a root file system: a working KVM gets
/// to the "VFS: Unable to mount root fs" panic within seconds and QEMU exits
/// (`-no-reboot`, `panic=-1`). A broken one stops with "KVM internal error",
/// hangs, or fails to start.
pub fn probe_kvm(kernel: &Path) -> Result<Probe> {
    let tcg = |reason: String| {
        Ok(Probe {
            accel: Accel::Tcg,
            reason,
        })
    };
    if let Err(e) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
    {
        return tcg(format!("/dev/kvm cannot be opened: {e}"));
    }
    let out = tempfile::NamedTempFile::new().context("creating the KVM probe's log")?;
    let mut cmd = SupervisedCommand::new(QEMU, Terminal::Detached);
    cmd.args(["-accel", "kvm", "-cpu", "host", "-m", "256", "-smp", "1"])
        .args(["-nodefaults", "-display", "none", "-no-reboot"])
        .args(["-serial", &format!("file:{}", out.path().display())])
        .arg("-kernel")
        .arg(kernel)
        .args(["-append", "console=ttyS0 panic=-1 root=/dev/nonexistent"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let started = Instant::now();
    let mut qemu = cmd.spawn("KVM probe (qemu)")?;
    let stderr = qemu.child_mut().stderr.take().expect("piped stderr");
    let err_text = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let reader = {
        let err_text = err_text.clone();
        std::thread::spawn(move || {
            for line in
                std::io::BufRead::lines(std::io::BufReader::new(stderr)).map_while(Result::ok)
            {
                let mut t = err_text.lock().expect("probe stderr lock");
                t.push_str(&line);
                t.push('\n');
            }
        })
    };
    // A KVM internal error pauses the guest instead of ending QEMU: watch
    // stderr for it so the probe does not sit out its whole deadline.
    let deadline = Instant::now() + Duration::from_secs(PROBE_SECS);
    let waited = loop {
        if let Some(s) = qemu.wait_for(Duration::from_millis(100))? {
            break Waited::Exited(s);
        }
        if err_text
            .lock()
            .expect("probe stderr lock")
            .contains("KVM internal error")
        {
            qemu.kill();
            break Waited::TimedOut;
        }
        if crate::process::interrupted() {
            qemu.kill();
            break Waited::Interrupted;
        }
        if Instant::now() >= deadline {
            qemu.kill();
            break Waited::TimedOut;
        }
    };
    drop(qemu);
    let _ = reader.join();
    let err = err_text.lock().expect("probe stderr lock").clone();
    let console = super::console::read(out.path());
    let booted = console.contains("Linux version") && console.contains("Kernel panic");
    match waited {
        _ if err.contains("KVM internal error") => tcg(format!(
            "QEMU stopped with \"KVM internal error\": {}",
            first_line(&err)
        )),
        Waited::Exited(_) if booted => Ok(Probe {
            accel: Accel::Kvm,
            reason: format!(
                "KVM booted the kernel in {:.1} s",
                started.elapsed().as_secs_f64()
            ),
        }),
        Waited::Exited(s) => tcg(format!(
            "QEMU under KVM exited ({s}) before the kernel ran: {}",
            first_line(&err)
        )),
        Waited::TimedOut => tcg(format!(
            "the kernel did not get through boot under KVM within {PROBE_SECS} s"
        )),
        Waited::Interrupted => Err(crate::fail(crate::Failure::Interrupted, "interrupted")),
    }
}

fn first_line(s: &str) -> &str {
    s.lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("(no message)")
}
