//! The kernel tree's own example schedulers (`tools/sched_ext`: scx_simple,
//! scx_qmap, scx_central, scx_flatcg), built from the very tree a cached
//! kernel was built in, and cached beside it.
//!
//! Layout: `schedulers/kernel-KEY/bin/NAME` and `build.log`, installed
//! atomically. Knows the kernel cache's entries; nothing about VMs.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::error::{fail, Failure};
use crate::kernel::cache::install_dir;
use crate::kernel::{run_logged, Cache, Entry};
use crate::process::{SupervisedCommand, Terminal};
use crate::progress::Progress;

/// The examples `make -C tools/sched_ext` builds: 6.12's four, then those
/// 7.3's tree adds. A tree builds the ones it has.
pub const NAMES: &[&str] = &[
    "scx_simple",
    "scx_qmap",
    "scx_central",
    "scx_flatcg",
    "scx_cpu0",
    "scx_pair",
    "scx_sdt",
    "scx_userland",
];

/// Built example schedulers for one kernel.
#[derive(Debug, Clone)]
pub struct KernelExamples {
    pub dir: PathBuf,
}

impl KernelExamples {
    pub fn binary(&self, name: &str) -> PathBuf {
        self.dir.join("bin").join(name)
    }
}

fn dir_for(cache: &Cache, entry: &Entry) -> PathBuf {
    cache
        .root()
        .join("schedulers")
        .join(format!("kernel-{}", entry.meta.key))
}

/// The examples for `entry` if they were built (the directory appears
/// whole; an example its tree lacks or that failed to build is not in it,
/// and its build log says why).
pub fn cached(cache: &Cache, entry: &Entry) -> Option<KernelExamples> {
    let dir = dir_for(cache, entry);
    dir.join("build.log")
        .is_file()
        .then_some(KernelExamples { dir })
}

/// Builds the examples in the kernel's tree with clang-19 (about 10 s once
/// the kernel is built) and caches the binaries; returns the cached ones if
/// present.
pub fn build(cache: &Cache, entry: &Entry, progress: &mut Progress) -> Result<KernelExamples> {
    if let Some(found) = cached(cache, entry) {
        return Ok(found);
    }
    let tree = &crate::kernel::source_tree(entry, cache)?;
    let src = tree.join("tools/sched_ext");
    if !src.join("Makefile").is_file() || !tree.join("vmlinux").is_file() {
        return Err(fail(
            Failure::BadInput,
            format!(
                "kernel {} has no built tree with tools/sched_ext at {}\n  fix: {}",
                entry.meta.key,
                tree.display(),
                crate::kernel::rebuild_hint(entry)
            ),
        ));
    }
    // Per tree, not per kernel: a prebuilt kernel builds in its
    // `tree_from` kernel's tree.
    let _lock = crate::kernel::lock(
        &cache.locks_dir(),
        &crate::kernel::tree_lock_name("examples", tree),
    )?;
    if let Some(found) = cached(cache, entry) {
        return Ok(found);
    }
    let dest = dir_for(cache, entry);
    let log_path = cache.log_path(&format!("examples-{}", entry.meta.key));
    std::fs::create_dir_all(log_path.parent().expect("logs dir"))?;
    let mut log = std::fs::File::create(&log_path)
        .with_context(|| format!("creating {}", log_path.display()))?;
    progress.stage(&format!(
        "building tools/sched_ext of kernel {}",
        entry.meta.key
    ));
    // -k: one example that does not build (a newer tree's example the
    // toolchain cannot compile) must not take the others with it; its
    // scheduler's build then fails alone, pointing at this log.
    let mut make = SupervisedCommand::new("make", Terminal::Detached);
    make.arg("-C")
        .arg(&src)
        .arg("-k")
        .args(["CC=gcc", "CLANG=clang-19", "LLVM_STRIP=llvm-strip-19"])
        .arg(format!(
            "-j{}",
            std::thread::available_parallelism().map_or(2, |n| n.get())
        ));
    let made = run_logged(
        make,
        "make -C tools/sched_ext",
        &mut log,
        &log_path,
        progress,
    );
    drop(log);
    let built: Vec<&str> = NAMES
        .iter()
        .copied()
        .filter(|n| src.join("build/bin").join(n).is_file())
        .collect();
    // An interrupted make says nothing about what compiles: nothing is kept.
    let made = match made {
        Err(e) if crate::error::classify(&e) == Some(Failure::Interrupted) => return Err(e),
        m => m,
    };
    if built.is_empty() {
        made?;
        return Err(fail(
            Failure::HostTool,
            format!(
                "make -C tools/sched_ext built no example\n  full log: {}",
                log_path.display()
            ),
        ));
    }
    if let Err(e) = made {
        tracing::warn!("some kernel examples did not build: {e:#}");
    }
    install_dir(&dest, |staging| {
        std::fs::create_dir_all(staging.join("bin"))?;
        for name in &built {
            copy_executable(
                &src.join("build/bin").join(name),
                &staging.join("bin").join(name),
            )?;
        }
        std::fs::copy(&log_path, staging.join("build.log"))?;
        Ok(())
    })?;
    Ok(KernelExamples { dir: dest })
}

fn copy_executable(from: &Path, to: &Path) -> Result<()> {
    std::fs::copy(from, to)
        .with_context(|| format!("copying {} (did the build produce it?)", from.display()))?;
    Ok(())
}

/// Compiles a BPF C scheduler against the kernel tree's `tools/sched_ext`
/// headers and its `vmlinux.h` (generated from the kernel's BTF by the
/// examples' build, which runs first), the way the examples themselves are
/// compiled. Writes the object to `out` atomically.
pub fn compile_bpf(
    cache: &Cache,
    entry: &Entry,
    src: &Path,
    out: &Path,
    progress: &mut Progress,
) -> Result<()> {
    build(cache, entry, progress)?;
    let tree = crate::kernel::source_tree(entry, cache)?;
    let sx = tree.join("tools/sched_ext");
    let tools = tree.join("tools");
    let name = src.file_name().unwrap_or_default().to_string_lossy();
    let log_path = cache.log_path(&format!("bpf-{}-{name}", entry.meta.key));
    std::fs::create_dir_all(log_path.parent().expect("logs dir"))?;
    let mut log = std::fs::File::create(&log_path)
        .with_context(|| format!("creating {}", log_path.display()))?;
    let dir = out.parent().context("object path has no directory")?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let tmp = tempfile::Builder::new()
        .suffix(".bpf.o")
        .tempfile_in(dir)
        .context("creating a temporary object file")?;
    progress.stage(&format!("compiling {}", src.display()));
    let mut clang = SupervisedCommand::new("clang-19", Terminal::Detached);
    clang
        .args(["-g", "-O2", "-Wall", "-Wno-compare-distinct-pointer-types"])
        .args([
            "-D__TARGET_ARCH_x86",
            "-mcpu=v3",
            "-mlittle-endian",
            "-target",
            "bpf",
        ])
        .arg("-I")
        .arg(sx.join("include"))
        .arg("-I")
        .arg(sx.join("include/bpf-compat"))
        .arg("-I")
        .arg(sx.join("build/include"))
        .arg("-I")
        .arg(tools.join("include/uapi"))
        .arg("-I")
        .arg(tools.join("include"))
        .arg("-c")
        .arg(src)
        .arg("-o")
        .arg(tmp.path());
    run_logged(
        clang,
        &format!("clang-19 -target bpf {}", src.display()),
        &mut log,
        &log_path,
        progress,
    )?;
    tmp.persist(out)
        .with_context(|| format!("writing {}", out.display()))?;
    Ok(())
}
