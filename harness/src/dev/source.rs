//! What `dev` builds and watches: a scheduler's sources as the registry
//! names them (a workspace package, a BPF C file, a kernel example in the
//! kernel's tree) or as `--tree DIR` gives them (an scx-style cargo
//! checkout, a directory with `NAME.bpf.c`, a kernel tree or its
//! `tools/sched_ext`). Each successful build is a new, immutable snapshot
//! under the session's directory, so the guest never runs a file that a
//! later build rewrites and an earlier build stays runnable as a baseline.
//!
//! Knows the registry's sources and the build tools; nothing about VMs.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::error::{fail, Failure};
use crate::kernel::{run_logged, Cache, Entry};
use crate::process::{SupervisedCommand, Terminal};
use crate::progress::Progress;
use crate::scheduler::build::{Artifact, Built};
use crate::scheduler::registry::{Def, Kind, Source};

/// Directories that hold build products or a VCS's files, never sources:
/// not watched, and a change under them is not a save.
pub const NOT_SOURCES: &[&str] = &["target", "build", ".git", ".output"];

/// How a build is made.
#[derive(Debug, Clone)]
pub enum Recipe {
    /// `cargo build -p PACKAGE --bin PACKAGE` of a workspace (this
    /// checkout's `schedulers/`, or an scx-style checkout).
    Cargo {
        manifest: PathBuf,
        package: String,
        /// A cargo profile ("dev" or "release").
        profile: String,
        /// `--target-dir` (default: the workspace's own): bisect shares
        /// one among the worktrees of a tree, so each commit's build is
        /// incremental.
        target_dir: Option<PathBuf>,
    },
    /// clang-19 of one BPF C file against the kernel's tree (a
    /// `bpf_object` scheduler).
    BpfC { file: PathBuf },
    /// `make NAME` in a kernel tree's `tools/sched_ext` (incremental).
    KernelExample { dir: PathBuf, name: String },
}

/// A scheduler under development: its registry entry (or one made for a
/// `--tree`), how to build it and what to watch.
#[derive(Debug, Clone)]
pub struct DevSource {
    pub def: Def,
    pub recipe: Recipe,
    /// Directories watched (recursively), for [`DevSource::relevant`]
    /// files.
    pub watch: Vec<PathBuf>,
}

/// A build that failed: the compiler's diagnostics as `FILE:LINE[:COL]:
/// error: MESSAGE` lines where it printed any (else the output's last
/// lines), and the full log.
#[derive(Debug)]
pub struct BuildFailure {
    pub lines: Vec<String>,
    pub log: PathBuf,
    pub interrupted: bool,
}

impl DevSource {
    /// The sources of `def`, or of `tree` when given. `kernel`: the cached
    /// kernel the scheduler runs on (BPF C sources and examples are built
    /// against its tree). Errors (bad input) name what was looked for.
    pub fn resolve(
        def: Option<&Def>,
        name: &str,
        tree: Option<&Path>,
        kernel: Option<&Entry>,
        cache: &Cache,
        registry_dir: &Path,
    ) -> Result<DevSource> {
        let root = crate::paths::workspace_root();
        let made = |kind: Kind, source: Source| Def {
            name: name.to_string(),
            kind,
            source: Some(source),
            ..def.cloned().unwrap_or_else(|| Def::named(name, kind))
        };
        if let Some(tree) = tree {
            let tree = std::fs::canonicalize(tree).map_err(|e| {
                fail(
                    Failure::BadInput,
                    format!("--tree {}: {e}\n  fix: name a directory", tree.display()),
                )
            })?;
            if tree.join("Cargo.toml").is_file() {
                return Ok(DevSource {
                    def: made(Kind::Binary, Source::Path(tree.clone())),
                    recipe: Recipe::Cargo {
                        manifest: tree.join("Cargo.toml"),
                        package: name.to_string(),
                        profile: "release".into(),
                        target_dir: None,
                    },
                    watch: vec![tree],
                });
            }
            let bpf = tree.join(format!("{name}.bpf.c"));
            let examples = if tree.join("tools/sched_ext/Makefile").is_file() {
                tree.join("tools/sched_ext")
            } else {
                tree.clone()
            };
            if examples.join("Makefile").is_file()
                && examples.join(format!("{name}.bpf.c")).is_file()
                && examples.join(format!("{name}.c")).is_file()
            {
                return Ok(DevSource {
                    def: made(Kind::Binary, Source::KernelExample(name.into())),
                    recipe: Recipe::KernelExample {
                        dir: examples.clone(),
                        name: name.into(),
                    },
                    watch: vec![examples],
                });
            }
            if bpf.is_file() {
                return Ok(DevSource {
                    def: made(Kind::BpfObject, Source::BpfC(bpf.clone())),
                    recipe: Recipe::BpfC { file: bpf },
                    watch: vec![tree],
                });
            }
            return Err(fail(
                Failure::BadInput,
                format!(
                    "--tree {}: no Cargo.toml, no {name}.bpf.c, and no kernel tree's tools/sched_ext with {name}.c\n  \
                     fix: name an scx-style checkout (a cargo workspace with package {name}), a directory holding {name}.bpf.c, or a kernel tree",
                    tree.display()
                ),
            ));
        }
        let def = def.ok_or_else(|| {
            fail(
                Failure::BadInput,
                format!("{name} is not in the registry\n  fix: add it to schedulers/registry.yaml, or give its sources with --tree DIR"),
            )
        })?;
        let recipe_of = |src: &Source| -> Result<(Recipe, Vec<PathBuf>)> {
            Ok(match src {
                Source::Workspace(pkg) => (
                    Recipe::Cargo {
                        manifest: root.join("Cargo.toml"),
                        package: pkg.clone(),
                        profile: crate::scheduler::build::profile().0.into(),
                        target_dir: None,
                    },
                    vec![root.join("schedulers").join(pkg), root.join("schedulers/common")],
                ),
                Source::BpfC(p) => {
                    let file = if p.is_absolute() { p.clone() } else { registry_dir.join(p) };
                    let dir = file.parent().unwrap_or(Path::new("/")).to_path_buf();
                    (Recipe::BpfC { file }, vec![dir])
                }
                Source::KernelExample(ex) => {
                    let entry = kernel.ok_or_else(|| {
                        fail(
                            Failure::BadInput,
                            format!("{name} is built in the kernel's own tree, and this kernel is not a cached build\n  fix: use a kernel from `scx-harness kernel build`, or give the tree with --tree"),
                        )
                    })?;
                    let dir = crate::kernel::source_tree(entry, cache)?.join("tools/sched_ext");
                    (
                        Recipe::KernelExample {
                            dir: dir.clone(),
                            name: ex.clone(),
                        },
                        vec![dir],
                    )
                }
                Source::Crate(c) => {
                    return Err(fail(
                        Failure::BadInput,
                        format!(
                            "{name} is the published crate {} {}, which cannot be edited here\n  \
                             fix: check out its sources (e.g. github.com/sched-ext/scx) and pass --tree DIR",
                            c.name, c.version
                        ),
                    ))
                }
                Source::Path(p) => {
                    return Err(fail(
                        Failure::BadInput,
                        format!("{name} is a prebuilt file ({}): nothing to rebuild\n  fix: give its sources with --tree DIR", p.display()),
                    ))
                }
            })
        };
        let src = def.source.as_ref().ok_or_else(|| {
            fail(
                Failure::BadInput,
                format!("{name} is the fair class: there is nothing to build\n  fix: name a sched_ext scheduler"),
            )
        })?;
        let (recipe, watch) = recipe_of(src)?;
        Ok(DevSource {
            def: def.clone(),
            recipe,
            watch,
        })
    }

    /// Whether a change to `path` calls for a rebuild: a source file
    /// (`.c`, `.h`, `.rs`, `.toml`, `build.rs`...), not a build product, a
    /// VCS file or an editor's swap or backup file.
    pub fn relevant(&self, path: &Path) -> bool {
        // Only the part below the watched directory counts (a tree may
        // itself sit under a directory named `build`).
        let below = self
            .watch
            .iter()
            .find_map(|w| path.strip_prefix(w).ok())
            .unwrap_or(path);
        if below.components().any(|c| {
            c.as_os_str()
                .to_str()
                .is_some_and(|n| NOT_SOURCES.contains(&n))
        }) {
            return false;
        }
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            return false;
        };
        if name.starts_with('.') || name.ends_with('~') || name == "4913" {
            return false;
        }
        if let Recipe::BpfC { file } = &self.recipe {
            // Its own directory is watched for the file's replacement; an
            // included header beside it counts too.
            return path == file || name.ends_with(".h");
        }
        [".c", ".h", ".rs", ".toml", ".lock"]
            .iter()
            .any(|ext| name.ends_with(ext))
    }

    /// Builds the sources into `out` (a new directory for this build) and
    /// returns what the guest runs. `Err(BuildFailure)` when the build
    /// failed; `Err` of anything else is the harness's own trouble, in the
    /// failure's `lines`.
    pub fn build(
        &self,
        out: &Path,
        kernel: Option<&Entry>,
        cache: &Cache,
        progress: &mut Progress,
    ) -> std::result::Result<Built, BuildFailure> {
        std::fs::create_dir_all(out).map_err(|e| BuildFailure {
            lines: vec![format!("creating {}: {e}", out.display())],
            log: out.to_path_buf(),
            interrupted: false,
        })?;
        let log = out.join("build.log");
        let failed = |e: anyhow::Error, log: &Path| {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            let mut lines = diagnostics(&text);
            if lines.is_empty() {
                lines = format!("{e:#}").lines().map(String::from).collect();
            }
            BuildFailure {
                lines,
                log: log.to_path_buf(),
                interrupted: crate::error::classify(&e) == Some(Failure::Interrupted),
            }
        };
        let result = match &self.recipe {
            Recipe::Cargo {
                manifest,
                package,
                profile,
                target_dir,
            } => self.cargo(
                manifest,
                package,
                profile,
                target_dir.as_deref(),
                out,
                &log,
                progress,
            ),
            Recipe::BpfC { file } => self.bpf_c(file, out, &log, kernel, cache, progress),
            Recipe::KernelExample { dir, name } => {
                self.make(dir, name, out, &log, kernel, cache, progress)
            }
        };
        result.map_err(|e| failed(e, &log))
    }

    #[allow(clippy::too_many_arguments)]
    fn cargo(
        &self,
        manifest: &Path,
        package: &str,
        profile: &str,
        target_dir: Option<&Path>,
        out: &Path,
        log: &Path,
        progress: &mut Progress,
    ) -> Result<Built> {
        let mut file = std::fs::File::create(log)?;
        let mut cmd = SupervisedCommand::new(
            std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()),
            Terminal::Detached,
        );
        cmd.args([
            "build",
            "--profile",
            profile,
            "-p",
            package,
            "--bin",
            package,
        ])
        .arg("--message-format=json-render-diagnostics")
        .arg("--manifest-path")
        .arg(manifest)
        .env("BPF_CLANG", "clang-19");
        if let Some(t) = target_dir {
            cmd.arg("--target-dir").arg(t);
        }
        let what = format!("cargo build -p {package}");
        run_logged(cmd, &what, &mut file, log, progress)?;
        drop(file);
        // The executable cargo reports (its own target directory, wherever
        // that is configured).
        let text = std::fs::read_to_string(log)?;
        let exe = text
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v["reason"] == "compiler-artifact" && v["target"]["name"] == package)
            .filter_map(|v| v["executable"].as_str().map(PathBuf::from))
            .next_back()
            .with_context(|| format!("{what} reported no executable named {package}"))?;
        self.snapshot(&exe, out, package)
    }

    fn bpf_c(
        &self,
        file: &Path,
        out: &Path,
        log: &Path,
        kernel: Option<&Entry>,
        cache: &Cache,
        progress: &mut Progress,
    ) -> Result<Built> {
        let entry = kernel.context("a BPF C scheduler needs a cached kernel's tree")?;
        let name = file
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .to_string();
        let obj = out.join(name.replace(".bpf.c", ".bpf.o"));
        let r = crate::scheduler::kernel_examples::compile_bpf(cache, entry, file, &obj, progress);
        // compile_bpf logs into the cache's log for this source; keep a
        // copy with the build.
        let cache_log = cache.log_path(&format!("bpf-{}-{name}", entry.meta.key));
        let _ = std::fs::copy(&cache_log, log);
        r?;
        Ok(self.built(Artifact::Object(obj.clone()), &obj))
    }

    #[allow(clippy::too_many_arguments)]
    fn make(
        &self,
        dir: &Path,
        name: &str,
        out: &Path,
        log: &Path,
        kernel: Option<&Entry>,
        cache: &Cache,
        progress: &mut Progress,
    ) -> Result<Built> {
        // A cached kernel's tree: its examples are cached from the tree as
        // it was (before any edit), and `make` waits for any other build
        // of them.
        let tree = dir.parent().and_then(Path::parent).unwrap_or(dir);
        if let Some(entry) =
            kernel.filter(|e| crate::kernel::source_tree(e, cache).is_ok_and(|t| t == tree))
        {
            crate::scheduler::kernel_examples::build(cache, entry, progress)?;
        }
        let _lock = crate::kernel::lock(
            &cache.locks_dir(),
            &crate::kernel::tree_lock_name("examples", tree),
        )?;
        let mut file = std::fs::File::create(log)?;
        let mut make = SupervisedCommand::new("make", Terminal::Detached);
        make.arg("-C")
            .arg(dir)
            .args(["CC=gcc", "CLANG=clang-19", "LLVM_STRIP=llvm-strip-19"])
            .arg(format!(
                "-j{}",
                std::thread::available_parallelism().map_or(2, |n| n.get())
            ))
            .arg(name);
        run_logged(make, &format!("make {name}"), &mut file, log, progress)?;
        let bin = dir.join("build/bin").join(name);
        self.snapshot(&bin, out, name)
    }

    /// The executable `product` copied into the build's own directory
    /// `out` as `name`: what the guest runs, never rewritten by a later
    /// build.
    fn snapshot(&self, product: &Path, out: &Path, name: &str) -> Result<Built> {
        let snap = out.join(name);
        std::fs::copy(product, &snap)
            .with_context(|| format!("copying {} to {}", product.display(), snap.display()))?;
        Ok(self.built(Artifact::Binary(snap), product))
    }

    /// The build's version: the content hash of what was built (so two
    /// builds of the same sources say so).
    fn built(&self, artifact: Artifact, product: &Path) -> Built {
        let version = std::fs::read(product)
            .map(|b| crate::kernel::cache::sha256_hex(&b)[..12].to_string())
            .unwrap_or_default();
        Built {
            def: self.def.clone(),
            artifact,
            version,
        }
    }
}

/// The compiler's error lines in a build's output, each as `FILE:LINE:COL:
/// error: MESSAGE`: clang's and gcc's as they are, rustc's `error[..]:
/// MESSAGE` joined with the ` --> FILE:LINE:COL` that follows it. At most
/// 20; empty when there are none (the caller then shows the output's end).
pub fn diagnostics(output: &str) -> Vec<String> {
    let c_error = regex::Regex::new(r"^(\S+?):(\d+)(:\d+)?: (fatal error|error): (.*)$")
        .expect("a valid pattern");
    let rust_error = regex::Regex::new(r"^error(\[E\d+\])?: (.*)$").expect("a valid pattern");
    let lines: Vec<&str> = output.lines().collect();
    let mut found = Vec::new();
    for (i, l) in lines.iter().enumerate() {
        // cargo indents a build script's output (a Rust scheduler's BPF
        // compile) and run_logged's summary indents too.
        let l = l.trim_start();
        if c_error.is_match(l) {
            found.push(l.to_string());
        } else if let Some(c) = rust_error.captures(l) {
            let at = lines[i + 1..]
                .iter()
                .take(4)
                .find_map(|n| n.trim_start().strip_prefix("--> "));
            if let Some(at) = at {
                found.push(format!(
                    "{}: error{}: {}",
                    at.trim(),
                    c.get(1).map_or("", |m| m.as_str()),
                    &c[2]
                ));
            }
        }
        if found.len() == 20 {
            break;
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clang_and_rustc_errors_are_given_with_file_and_line() {
        let out = "\
  CLANG    x.bpf.o
/tmp/t/scx_local.bpf.c:52:2: error: use of undeclared identifier 'oops'
   52 |         oops;
1 error generated.
error[E0425]: cannot find value `y` in this scope
  --> schedulers/scx_vtime/src/main.rs:10:5
   |
error: could not compile `scx_vtime` (bin \"scx_vtime\") due to 1 previous error
make: *** [Makefile:1: all] Error 2
";
        assert_eq!(
            diagnostics(out),
            vec![
                "/tmp/t/scx_local.bpf.c:52:2: error: use of undeclared identifier 'oops'".to_string(),
                "schedulers/scx_vtime/src/main.rs:10:5: error[E0425]: cannot find value `y` in this scope".into(),
            ]
        );
        assert!(diagnostics("all good\n").is_empty());
        // A build script's stderr, as cargo shows it.
        assert_eq!(
            diagnostics("  warning: x\n  src/bpf/main.bpf.c:3:1: error: expected ';'\n"),
            vec!["src/bpf/main.bpf.c:3:1: error: expected ';'".to_string()]
        );
    }

    #[test]
    fn build_products_and_editor_files_are_not_changes() {
        let s = DevSource {
            def: Def::named("x", Kind::Binary),
            recipe: Recipe::Cargo {
                manifest: "/w/Cargo.toml".into(),
                package: "x".into(),
                profile: "dev".into(),
                target_dir: None,
            },
            watch: vec!["/w".into()],
        };
        assert!(s.relevant(Path::new("/w/src/main.rs")));
        assert!(s.relevant(Path::new("/w/src/bpf/main.bpf.c")));
        assert!(!s.relevant(Path::new("/w/target/debug/x")));
        assert!(!s.relevant(Path::new("/w/src/.main.rs.swp")));
        assert!(!s.relevant(Path::new("/w/src/main.rs~")));
        assert!(!s.relevant(Path::new("/w/src/4913")));
        // A tree under a directory named `build` still counts.
        let under = DevSource {
            watch: vec!["/home/me/build/linux".into()],
            ..s.clone()
        };
        assert!(under.relevant(Path::new("/home/me/build/linux/src/main.rs")));
        assert!(!under.relevant(Path::new("/home/me/build/linux/build/x.c")));
        let b = DevSource {
            recipe: Recipe::BpfC {
                file: "/w/a.bpf.c".into(),
            },
            ..s
        };
        assert!(b.relevant(Path::new("/w/a.bpf.c")));
        assert!(!b.relevant(Path::new("/w/other.bpf.c")));
    }
}
