//! Building what a registry entry names into something the guest can run:
//! a binary, a BPF object, or nothing (the fair class).
//!
//! - `workspace`: `cargo build -p PKG` in this checkout, with the profile the
//!   harness itself was built with (cargo keeps it up to date).
//! - `kernel_example`: `scheduler::kernel_examples`, from the kernel's tree.
//! - `crate`: `cargo install --locked` of the exact version into the cache
//!   (`schedulers/crates/NAME-VERSION/`, installed atomically; the crates
//!   share one target directory so scx_utils is compiled once).
//! - `bpf_c`: clang-19 against the kernel tree's headers, cached by the
//!   source's content hash (`schedulers/bpf-KERNEL/NAME-HASH.bpf.o`).
//! - `path`: used as it is.
//!
//! Knows the registry and the kernel cache; nothing about VMs.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::kernel_examples;
use super::registry::{CrateSource, Def, Kind, Registry, Source};
use crate::error::{fail, Failure};
use crate::kernel::cache::{install_dir, sha256_hex};
use crate::kernel::{run_logged, Cache, Entry};
use crate::process::{SupervisedCommand, Terminal};
use crate::progress::Progress;

/// What a built scheduler is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Artifact {
    Binary(PathBuf),
    Object(PathBuf),
    /// The fair class: nothing to run.
    Nothing,
}

/// A scheduler ready to run.
#[derive(Debug, Clone)]
pub struct Built {
    pub def: Def,
    pub artifact: Artifact,
    /// The version that is built: a crate's or package's version, the
    /// kernel release of an example, the content hash of a BPF source.
    pub version: String,
}

/// What building needs: the cache, and the kernel the scheduler will run on
/// (examples and BPF C sources are built from and for its tree).
pub struct BuildCtx<'a> {
    pub cache: &'a Cache,
    pub kernel: Option<&'a Entry>,
    pub registry: &'a Registry,
}

impl BuildCtx<'_> {
    fn kernel(&self, def: &Def) -> Result<&Entry> {
        self.kernel.ok_or_else(|| {
            fail(
                Failure::BadInput,
                format!(
                    "{} is built from the kernel's own tree, and this kernel is not a cached build\n  \
                     fix: use a kernel built by `scx-harness kernel build` (pass its key to --kernel)",
                    def.name
                ),
            )
        })
    }

    fn resolve(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.registry.dir().join(p)
        }
    }
}

/// The built scheduler if nothing needs building, without building it.
pub fn cached(def: &Def, ctx: &BuildCtx) -> Option<Built> {
    let (artifact, version) = match (def.kind, def.source.as_ref()) {
        (Kind::Default, _) => (Artifact::Nothing, String::new()),
        (_, None) => return None,
        (_, Some(Source::Workspace(pkg))) => {
            let bin = workspace_binary(pkg);
            if !bin.is_file() {
                return None;
            }
            (Artifact::Binary(bin), workspace_version(pkg))
        }
        (_, Some(Source::KernelExample(name))) => {
            let entry = ctx.kernel?;
            let ex = kernel_examples::cached(ctx.cache, entry)?;
            if !ex.binary(name).is_file() {
                return None;
            }
            (
                Artifact::Binary(ex.binary(name)),
                entry.meta.release.clone(),
            )
        }
        (_, Some(Source::Crate(c))) => {
            let bin = crate_dir(ctx.cache, c).join("bin").join(&c.name);
            if !bin.is_file() {
                return None;
            }
            (Artifact::Binary(bin), c.version.clone())
        }
        (_, Some(Source::BpfC(src))) => {
            let src = ctx.resolve(src);
            let (obj, hash) = bpf_object_path(ctx.cache, ctx.kernel?, &src).ok()?;
            if !obj.is_file() {
                return None;
            }
            (Artifact::Object(obj), hash)
        }
        (kind, Some(Source::Path(p))) => {
            let p = ctx.resolve(p);
            if !p.is_file() {
                return None;
            }
            (artifact_of(kind, p), "prebuilt".into())
        }
    };
    Some(Built {
        def: def.clone(),
        artifact,
        version,
    })
}

/// Builds `def` (or finds it built) and returns what to run.
pub fn build(def: &Def, ctx: &BuildCtx, progress: &mut Progress) -> Result<Built> {
    if let Some(src) = &def.source {
        match src {
            // cargo decides itself whether anything changed.
            Source::Workspace(pkg) => cargo_build(pkg, ctx.cache, progress)?,
            _ if cached(def, ctx).is_some() => {}
            Source::KernelExample(name) => {
                let entry = ctx.kernel(def)?;
                let ex = kernel_examples::build(ctx.cache, entry, progress)?;
                if !ex.binary(name).is_file() {
                    return Err(fail(
                        Failure::HostTool,
                        format!(
                            "{}: kernel {} ({}) has no {name}: its tools/sched_ext lacks it or it did not compile\n  \
                             build log: {}\n  fix: scope it in {} (`kernels:`) to the kernels that have it",
                            def.name,
                            entry.meta.name.as_deref().unwrap_or(&entry.meta.key),
                            entry.meta.release,
                            ex.dir.join("build.log").display(),
                            ctx.registry.path.display()
                        ),
                    ));
                }
            }
            Source::Crate(c) => cargo_install(c, ctx.cache, progress)?,
            Source::BpfC(src) => {
                let src = ctx.resolve(src);
                let entry = ctx.kernel(def)?;
                let (obj, _) = bpf_object_path(ctx.cache, entry, &src)?;
                kernel_examples::compile_bpf(ctx.cache, entry, &src, &obj, progress)?;
            }
            Source::Path(p) => {
                let p = ctx.resolve(p);
                return Err(fail(
                    Failure::BadInput,
                    format!(
                        "{}: {} does not exist\n  fix: correct its path in {}",
                        def.name,
                        p.display(),
                        ctx.registry.path.display()
                    ),
                ));
            }
        }
    }
    cached(def, ctx).with_context(|| format!("{} was built but its output is missing", def.name))
}

fn artifact_of(kind: Kind, p: PathBuf) -> Artifact {
    match kind {
        Kind::BpfObject => Artifact::Object(p),
        Kind::Binary => Artifact::Binary(p),
        Kind::Default => Artifact::Nothing,
    }
}

/// The cargo profile the harness was built with: scheduler binaries come
/// from the same build, so tests do not compile everything twice.
pub(crate) fn profile() -> (&'static str, &'static str) {
    if cfg!(debug_assertions) {
        ("dev", "debug")
    } else {
        ("release", "release")
    }
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| crate::paths::workspace_root().join("target"))
}

fn workspace_binary(pkg: &str) -> PathBuf {
    target_dir().join(profile().1).join(pkg)
}

/// The `version = "..."` of `schedulers/PKG/Cargo.toml`.
fn workspace_version(pkg: &str) -> String {
    let manifest = crate::paths::workspace_root()
        .join("schedulers")
        .join(pkg)
        .join("Cargo.toml");
    std::fs::read_to_string(manifest)
        .ok()
        .and_then(|t| {
            t.lines().find_map(|l| {
                let v = l.trim().strip_prefix("version")?.trim().strip_prefix('=')?;
                Some(v.trim().trim_matches('"').to_string())
            })
        })
        .unwrap_or_default()
}

fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())
}

fn cargo_build(pkg: &str, cache: &Cache, progress: &mut Progress) -> Result<()> {
    let log_path = cache.log_path(&format!("workspace-{pkg}"));
    std::fs::create_dir_all(log_path.parent().expect("logs dir"))?;
    let mut log = std::fs::File::create(&log_path)
        .with_context(|| format!("creating {}", log_path.display()))?;
    progress.stage(&format!("cargo build -p {pkg}"));
    let mut cmd = SupervisedCommand::new(cargo(), Terminal::Detached);
    cmd.args(["build", "--profile", profile().0, "-p", pkg, "--bin", pkg])
        .arg("--manifest-path")
        .arg(crate::paths::workspace_root().join("Cargo.toml"))
        .env("BPF_CLANG", "clang-19");
    run_logged(
        cmd,
        &format!("cargo build -p {pkg}"),
        &mut log,
        &log_path,
        progress,
    )
}

fn crate_dir(cache: &Cache, c: &CrateSource) -> PathBuf {
    cache
        .root()
        .join("schedulers/crates")
        .join(format!("{}-{}", c.name, c.version))
}

/// `cargo install --locked NAME --version =VERSION` into the cache. About
/// 3 minutes for the first crate on 2 cores, less for the next ones (they
/// share the target directory and with it scx_utils and libbpf).
fn cargo_install(c: &CrateSource, cache: &Cache, progress: &mut Progress) -> Result<()> {
    let dest = crate_dir(cache, c);
    let _lock = crate::kernel::lock(
        &cache.locks_dir(),
        &format!("crate-{}-{}", c.name, c.version),
    )?;
    if dest.join("bin").join(&c.name).is_file() {
        return Ok(());
    }
    let log_path = cache.log_path(&format!("crate-{}-{}", c.name, c.version));
    std::fs::create_dir_all(log_path.parent().expect("logs dir"))?;
    let mut log = std::fs::File::create(&log_path)
        .with_context(|| format!("creating {}", log_path.display()))?;
    let target = cache.root().join("schedulers/crates/.target");
    progress.stage(&format!(
        "cargo install {} {} (minutes; once per version)",
        c.name, c.version
    ));
    install_dir(&dest, |staging| {
        let mut cmd = SupervisedCommand::new(cargo(), Terminal::Detached);
        cmd.args(["install", "--locked", "--no-track"])
            .arg("--root")
            .arg(staging)
            .arg("--target-dir")
            .arg(&target)
            .arg(&c.name)
            .arg("--version")
            .arg(format!("={}", c.version))
            .env("BPF_CLANG", "clang-19");
        run_logged(
            cmd,
            &format!("cargo install {} {}", c.name, c.version),
            &mut log,
            &log_path,
            progress,
        )?;
        std::fs::copy(&log_path, staging.join("install.log"))?;
        Ok(())
    })
}

/// Where the object of `src` built for `entry` lives, and the source's
/// content hash (part of the name, so an edit rebuilds).
fn bpf_object_path(cache: &Cache, entry: &Entry, src: &Path) -> Result<(PathBuf, String)> {
    let text = std::fs::read(src).map_err(|e| {
        fail(
            Failure::BadInput,
            format!("BPF source {}: {e}", src.display()),
        )
    })?;
    let hash = sha256_hex(&text)[..12].to_string();
    let stem = src
        .file_name()
        .unwrap_or_default()
        .to_string_lossy()
        .trim_end_matches(".bpf.c")
        .trim_end_matches(".c")
        .to_string();
    let obj = cache
        .root()
        .join("schedulers")
        .join(format!("bpf-{}", entry.meta.key))
        .join(format!("{stem}-{hash}.bpf.o"));
    Ok((obj, hash))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workspace_versions_come_from_the_manifest() {
        assert_eq!(workspace_version("scx_fifo"), "0.1.0");
        assert_eq!(workspace_version("no_such_package"), "");
    }

    #[test]
    fn bpf_objects_are_named_by_content() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::new(dir.path().join("cache"));
        let entry = Entry {
            dir: dir.path().join("k"),
            meta: crate::kernel::cache::Meta {
                key: "k1".into(),
                created: 0,
                source: String::new(),
                fragments: vec![],
                release: "6.12.117".into(),
                tree: dir.path().join("tree"),
                build_seconds: 0,
                inputs: String::new(),
                name: None,
            },
        };
        let src = dir.path().join("x.bpf.c");
        std::fs::write(&src, "one").unwrap();
        let (a, _) = bpf_object_path(&cache, &entry, &src).unwrap();
        std::fs::write(&src, "two").unwrap();
        let (b, _) = bpf_object_path(&cache, &entry, &src).unwrap();
        assert_ne!(a, b);
        assert!(a.to_string_lossy().contains("schedulers/bpf-k1/x-"));
        let err = bpf_object_path(&cache, &entry, &dir.path().join("missing.c")).unwrap_err();
        assert_eq!(crate::classify(&err), Some(Failure::BadInput));
    }
}
