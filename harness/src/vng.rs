//! The one place that knows virtme-ng's command line.
//!
//! Finds the `vng` that `cargo ci setup` installed, and builds the argument
//! lists for its kconfig step and for booting a kernel. Knows nothing about
//! caching or about what runs in the guest.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Result;

use crate::error::{fail, Failure};
use crate::paths;

/// The virtme-ng version `cargo ci setup` pins and the harness is tested with.
pub const PINNED_VERSION: &str = "1.42";

/// A located virtme-ng installation.
#[derive(Debug, Clone)]
pub struct Vng {
    /// The `vng` executable.
    pub bin: PathBuf,
    /// Directory to put first on PATH: vng runs its helpers
    /// (`virtme-configkernel`, `virtme-run`) by name.
    pub bin_dir: PathBuf,
}

impl Vng {
    /// `$SCX_HARNESS_VNG`, else the set-up virtualenv, else `vng` on PATH.
    pub fn locate() -> Result<Vng> {
        let candidates: Vec<PathBuf> = std::env::var_os("SCX_HARNESS_VNG")
            .map(PathBuf::from)
            .into_iter()
            .chain([paths::vng_venv().join("bin/vng")])
            .chain(which("vng"))
            .collect();
        for bin in candidates {
            if is_executable(&bin) {
                let bin_dir = bin.parent().map(Path::to_path_buf).unwrap_or_default();
                return Ok(Vng { bin, bin_dir });
            }
        }
        Err(fail(
            Failure::HostTool,
            format!(
                "virtme-ng (vng) is not installed: looked in $SCX_HARNESS_VNG, {} and PATH\n  \
                 fix: run `cargo ci setup` in the scx-harness checkout (installs virtme-ng {PINNED_VERSION})",
                paths::vng_venv().join("bin/vng").display()
            ),
        ))
    }

    /// A `vng` command with PATH set so its helpers are found.
    pub fn command(&self) -> Command {
        let mut cmd = Command::new(&self.bin);
        cmd.env("PATH", self.search_path());
        cmd
    }

    /// PATH with the virtualenv's bin directory first.
    pub fn search_path(&self) -> OsString {
        let mut path = OsString::from(&self.bin_dir);
        if let Some(rest) = std::env::var_os("PATH") {
            path.push(":");
            path.push(rest);
        }
        path
    }

    /// `vng --version`'s output, part of the kernel cache key (its kconfig
    /// step decides the base configuration).
    pub fn version(&self) -> Result<String> {
        let out = self.command().arg("--version").output().map_err(|e| {
            fail(
                Failure::HostTool,
                format!("running {} --version: {e}", self.bin.display()),
            )
        })?;
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    /// Arguments for the kconfig step in a kernel tree: virtme-ng's minimal
    /// guest config plus the given fragments, in order.
    pub fn kconfig_args(fragments: &[PathBuf]) -> Vec<OsString> {
        let mut args: Vec<OsString> = vec!["--kconfig".into()];
        for f in fragments {
            args.push("--config".into());
            args.push(f.into());
        }
        args
    }
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    p.metadata()
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// The first `name` on PATH.
pub fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| Path::new(d).join(name))
        .find(|p| is_executable(p))
}
