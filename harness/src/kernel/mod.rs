//! Kernels: building a bzImage with sched_ext, caching it by content hash,
//! and resolving what `--kernel` names.
//!
//! Knows how to drive Kbuild and where results go (`cache`); talks to
//! virtme-ng only through `crate::vng`; knows nothing about booting.

pub mod cache;
pub mod catalog;
pub mod config;
pub mod debian;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};

use crate::error::{fail, Failure};
use crate::process::{SupervisedCommand, Terminal, Waited};
use crate::progress::Progress;
use crate::vng::Vng;
use cache::{sha256_hex, write_atomic, Meta};
pub use cache::{Cache, Entry};
use config::{DotConfig, Fragment};

pub use catalog::{Catalog, KernelDef};
/// Bump when the build steps change in a way that changes the result.
const RECIPE: &str = "scx-harness kernel recipe 1: vng --kconfig + fragments; make bzImage";

/// Where the kernel source comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A release tarball, extracted into the cache and built there.
    Tarball(PathBuf),
    /// A developer's own tree, built in place (incrementally).
    Tree(PathBuf),
}

impl Source {
    fn describe(&self) -> String {
        match self {
            Source::Tarball(p) => format!("tarball {}", p.display()),
            Source::Tree(p) => format!("tree {}", p.display()),
        }
    }
}

/// Everything that decides what a build produces.
#[derive(Debug, Clone)]
pub struct BuildSpec {
    pub source: Source,
    /// Embedded fragments (files of `kernel-config/`, `catalog::FRAGMENTS`)
    /// applied first, in order.
    pub base_fragments: Vec<String>,
    /// Fragments applied after the embedded ones, in order.
    pub extra_fragments: Vec<PathBuf>,
    /// `make -j`; defaults to the number of CPUs.
    pub jobs: usize,
    /// The catalog name this build is (recorded in the entry), if any.
    pub name: Option<String>,
}

fn default_jobs() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

impl BuildSpec {
    /// A developer's tree, built in place with the common fragment and each
    /// other embedded fragment whose options its Kconfig defines (so a 6.12
    /// tree gets `sched-ext-6.12.config` and a 7.3 tree does not).
    pub fn for_tree(dir: &Path) -> Result<BuildSpec> {
        check_tree(dir)?;
        Ok(BuildSpec {
            source: Source::Tree(dir.to_path_buf()),
            base_fragments: tree_fragments(dir)?,
            extra_fragments: Vec::new(),
            jobs: default_jobs(),
            name: None,
        })
    }
}

/// The embedded fragments for a tree: the common one, then each other one
/// whose every `CONFIG_X=...` symbol the tree's Kconfig files define.
fn tree_fragments(dir: &Path) -> Result<Vec<String>> {
    let mut out = vec![catalog::COMMON_FRAGMENT.to_string()];
    for (name, text) in catalog::FRAGMENTS {
        if *name == catalog::COMMON_FRAGMENT {
            continue;
        }
        let frag = Fragment::parse(name, text)?;
        let defined = frag
            .settings
            .iter()
            .filter(|s| matches!(s.value, config::Value::Set(_)))
            .all(|s| config::find_definition(dir, &s.name).is_some());
        if defined {
            out.push(name.to_string());
        }
    }
    Ok(out)
}

/// A bzImage to boot, with what is known about it.
#[derive(Debug, Clone)]
pub struct Kernel {
    pub bzimage: PathBuf,
    /// The cache entry it came from, if any (has vmlinux and config).
    pub entry: Option<Entry>,
}

impl Kernel {
    pub fn release(&self) -> Option<&str> {
        self.entry.as_ref().map(|e| e.meta.release.as_str())
    }
    /// Its catalog name (`lts`, `stable`, `debian`), if it is a named kernel.
    pub fn name(&self) -> Option<&str> {
        self.entry.as_ref().and_then(|e| e.meta.name.as_deref())
    }
}

/// The catalog name of the kernel whose cache entry holds `bzimage`, if
/// it is one (a bzImage elsewhere has none).
pub fn name_of_bzimage(bzimage: &Path) -> Option<String> {
    let meta = std::fs::read(bzimage.parent()?.join("meta.json")).ok()?;
    serde_json::from_slice::<Meta>(&meta).ok()?.name
}

/// The catalog name `--kernel ARG` stands for, without building or
/// fetching anything: the default kernel's for none, ARG itself for a
/// name, the recorded name of a cached entry's key; `None` for a bzImage
/// or tree (a kernel without a name, where every scheduler is tried).
pub fn name_of_arg(arg: Option<&str>, cache: &Cache) -> Option<String> {
    let catalog = Catalog::embedded();
    match arg {
        None => Some(catalog.default.clone()),
        Some(a) if catalog.get(a).is_some() => Some(a.to_string()),
        Some(a) => cache.get(a).and_then(|e| e.meta.name).or_else(|| {
            // A cache entry's bzImage or directory, given by path.
            let p = Path::new(a);
            name_of_bzimage(&if p.is_dir() {
                p.join("bzImage")
            } else {
                p.to_path_buf()
            })
        }),
    }
}

/// The resolved inputs of a build and the cache key hashed from them.
#[derive(Debug, Clone)]
pub struct Plan {
    pub key: String,
    pub inputs: String,
    pub fragments: Vec<Fragment>,
    /// The fragment files handed to `vng --kconfig`, in order.
    pub fragment_files: Vec<PathBuf>,
    pub spec: BuildSpec,
}

/// Reads the fragments and fingerprints the source and toolchain.
/// Fast: no build, and the tarball's hash is memoised.
pub fn plan(spec: &BuildSpec, cache: &Cache, vng: &Vng) -> Result<Plan> {
    let mut fragments = Vec::new();
    for name in &spec.base_fragments {
        let text =
            catalog::fragment_text(name).with_context(|| format!("no embedded fragment {name}"))?;
        fragments.push(Fragment::parse(
            &format!("<embedded kernel-config/{name}>"),
            text,
        )?);
    }
    for p in &spec.extra_fragments {
        fragments.push(Fragment::read(p)?);
    }
    let source_id = source_identity(&spec.source, cache)?;
    let mut tools: Vec<(&str, String)> = Vec::new();
    // virtme-ng applies this file to every kconfig run if it exists.
    if let Some(home) = std::env::var_os("HOME") {
        let user = Path::new(&home).join(".config/virtme-ng/kernel.config");
        if let Ok(text) = std::fs::read(&user) {
            tools.push(("vng-user-config", sha256_hex(&text)));
        }
    }
    tools.push(("vng", vng.version()?));
    tools.push(("gcc", tool_version("gcc", &["--version"])?));
    tools.push(("pahole", tool_version("pahole", &["--version"])?));
    let inputs = key_inputs(&source_id, &fragments, &tools);
    let key = key_of(&inputs);

    // Embedded fragments are materialised under their hash for vng to read.
    let frag_dir = cache.root().join("fragments");
    std::fs::create_dir_all(&frag_dir)
        .with_context(|| format!("creating {}", frag_dir.display()))?;
    let mut fragment_files = Vec::new();
    for f in &fragments[..spec.base_fragments.len()] {
        let file = frag_dir.join(format!("{}.config", &sha256_hex(f.text.as_bytes())[..16]));
        if !file.exists() {
            write_atomic(&file, f.text.as_bytes())?;
        }
        fragment_files.push(file);
    }
    fragment_files.extend(
        spec.extra_fragments
            .iter()
            .map(|p| config::fragment_path(p)),
    );
    Ok(Plan {
        key,
        inputs,
        fragments,
        fragment_files,
        spec: spec.clone(),
    })
}

/// The text a cache key is hashed from: the recipe, the source identity,
/// each fragment's content hash in order, and the tools' versions. Stored in
/// the entry's meta.json so a person can see why two keys differ.
fn key_inputs(source_id: &str, fragments: &[Fragment], tools: &[(&str, String)]) -> String {
    let mut inputs = format!("recipe: {RECIPE}\nsource: {source_id}\n");
    for f in fragments {
        inputs.push_str(&format!("fragment: {}\n", sha256_hex(f.text.as_bytes())));
    }
    for (tool, version) in tools {
        inputs.push_str(&format!("{tool}: {version}\n"));
    }
    inputs
}

fn key_of(inputs: &str) -> String {
    sha256_hex(inputs.as_bytes())[..16].to_string()
}

fn tool_version(tool: &str, args: &[&str]) -> Result<String> {
    let out = std::process::Command::new(tool).args(args).output().map_err(|e| {
        fail(
            Failure::HostTool,
            format!("cannot run {tool}: {e}\n  fix: run `cargo ci setup` to install the kernel build tools"),
        )
    })?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .unwrap_or("")
        .trim()
        .to_string())
}

/// A stable identity for the source: the tarball's content hash, or for a
/// tree its git commit plus uncommitted changes, or else a listing of its
/// source files' sizes and mtimes.
fn source_identity(source: &Source, cache: &Cache) -> Result<String> {
    match source {
        Source::Tarball(p) => {
            if !p.is_file() {
                return Err(fail(
                    Failure::BadInput,
                    format!(
                        "kernel source tarball {} does not exist\n  \
                         fix: run `cargo ci setup` (installs Debian's linux-source-6.12), \
                         or pass --source DIR to build your own tree",
                        p.display()
                    ),
                ));
            }
            Ok(format!("tarball sha256:{}", cache.file_digest(p)?))
        }
        Source::Tree(dir) => {
            check_tree(dir)?;
            if let Some(id) = git_identity(dir) {
                return Ok(id);
            }
            Ok(format!("files sha256:{}", listing_digest(dir)?))
        }
    }
}

fn check_tree(dir: &Path) -> Result<()> {
    let readable = std::fs::read_dir(dir).is_ok();
    if !readable || !dir.join("Makefile").is_file() || !dir.join("Kconfig").is_file() {
        return Err(fail(
            Failure::BadInput,
            format!(
                "{} is not a readable Linux source tree (expected a directory with Makefile and Kconfig)\n  \
                 fix: pass the top directory of a kernel checkout to --source",
                dir.display()
            ),
        ));
    }
    Ok(())
}

fn git_identity(dir: &Path) -> Option<String> {
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| o.stdout)
    };
    let head = String::from_utf8(git(&["rev-parse", "HEAD"])?).ok()?;
    let mut dirty = git(&["diff", "HEAD", "--binary"])?;
    let untracked = git(&["ls-files", "--others", "--exclude-standard", "-z"])?;
    for name in untracked.split(|b| *b == 0).filter(|n| !n.is_empty()) {
        dirty.extend_from_slice(name);
        if let Ok(bytes) = std::fs::read(dir.join(String::from_utf8_lossy(name).as_ref())) {
            dirty.extend_from_slice(sha256_hex(&bytes).as_bytes());
        }
    }
    Some(format!(
        "git {} + changes sha256:{}",
        head.trim(),
        sha256_hex(&dirty)
    ))
}

/// Sizes and mtimes of the files Kbuild reads, skipping build products.
fn listing_digest(dir: &Path) -> Result<String> {
    use std::os::unix::fs::MetadataExt;
    let mut lines = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d)
            .with_context(|| format!("reading {}", d.display()))?
            .flatten()
        {
            let name = e.file_name().to_string_lossy().to_string();
            let path = e.path();
            let Ok(md) = e.metadata() else { continue };
            if md.is_dir() {
                if !name.starts_with('.') && name != "generated" && name != "config" {
                    stack.push(path);
                }
                continue;
            }
            let source = name.starts_with("Kconfig")
                || name.starts_with("Makefile")
                || name == "Kbuild"
                || [
                    ".c", ".h", ".S", ".rs", ".lds", ".sh", ".py", ".awk", ".tbl",
                ]
                .iter()
                .any(|ext| name.ends_with(ext));
            if source {
                let rel = path
                    .strip_prefix(dir)
                    .unwrap_or(&path)
                    .display()
                    .to_string();
                lines.push(format!("{rel} {} {}", md.size(), md.mtime()));
            }
        }
    }
    lines.sort();
    Ok(sha256_hex(lines.join("\n").as_bytes()))
}

/// Returns the cached build for `spec`, building it first if needed.
pub fn build(spec: &BuildSpec, cache: &Cache, progress: &mut Progress) -> Result<Entry> {
    let vng = Vng::locate()?;
    let plan = plan(spec, cache, &vng)?;
    if let Some(entry) = cache.get(&plan.key) {
        return Ok(entry);
    }
    // One build at a time per tree: a developer's tree is shared by every
    // key built from it, a cache tree belongs to one key.
    let lock_name = match &spec.source {
        Source::Tarball(_) => format!("build-{}", plan.key),
        Source::Tree(dir) => {
            let canonical = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.clone());
            format!(
                "tree-{}",
                &sha256_hex(canonical.as_os_str().as_encoded_bytes())[..16]
            )
        }
    };
    let _lock = lock(&cache.locks_dir(), &lock_name)?;
    if let Some(entry) = cache.get(&plan.key) {
        return Ok(entry); // built by someone else while we waited
    }
    let started = Instant::now();
    let tree = match &spec.source {
        Source::Tarball(tarball) => {
            let tree = cache.tree_dir(&plan.key);
            if !tree.join("Makefile").is_file() {
                progress.stage(&format!("extracting {}", tarball.display()));
                extract(tarball, &tree)?;
            }
            tree
        }
        Source::Tree(dir) => dir.clone(),
    };
    let log_path = cache.log_path(&plan.key);
    std::fs::create_dir_all(log_path.parent().expect("logs dir"))?;
    let mut log = std::fs::File::create(&log_path)
        .with_context(|| format!("creating {}", log_path.display()))?;
    writeln!(
        log,
        "# scx-harness kernel build {}\n# inputs:\n{}",
        plan.key, plan.inputs
    )?;

    progress.stage("configuring (vng --kconfig + fragments)");
    let mut kconfig = SupervisedCommand::new(&vng.bin, Terminal::Detached);
    kconfig
        .args(Vng::kconfig_args(&plan.fragment_files))
        .env("PATH", vng.search_path())
        .current_dir(&tree);
    run_logged(kconfig, "vng --kconfig", &mut log, &log_path, progress)?;

    progress.stage("checking .config");
    let dot = DotConfig::read(&tree.join(".config"))?;
    let dropped = config::dropped_settings(&plan.fragments, &dot);
    if !dropped.is_empty() {
        return Err(fail(
            Failure::BadInput,
            format!(
                "Kconfig dropped {} setting(s) the fragments asked for:\n{}  full log: {}",
                dropped.len(),
                config::explain(&dropped, &tree, &dot),
                log_path.display()
            ),
        ));
    }

    progress.stage(&format!("compiling (make -j{} bzImage)", spec.jobs));
    let mut make = SupervisedCommand::new("make", Terminal::Detached);
    make.arg(format!("-j{}", spec.jobs))
        .arg("bzImage")
        .current_dir(&tree);
    run_logged(make, "make bzImage", &mut log, &log_path, progress)?;

    progress.stage("installing into the cache");
    let release = std::fs::read_to_string(tree.join("include/config/kernel.release"))
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    drop(log);
    let meta = Meta {
        key: plan.key.clone(),
        created: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        source: spec.source.describe(),
        fragments: plan.fragments.iter().map(|f| f.origin.clone()).collect(),
        release,
        tree: tree.clone(),
        build_seconds: started.elapsed().as_secs(),
        inputs: plan.inputs.clone(),
        name: spec.name.clone(),
    };
    cache.install(meta, |dir| {
        for (from, to) in [
            (tree.join("arch/x86/boot/bzImage"), "bzImage"),
            (tree.join("vmlinux"), "vmlinux"),
            (tree.join(".config"), "config"),
            (log_path.clone(), "build.log"),
        ] {
            std::fs::copy(&from, dir.join(to))
                .with_context(|| format!("copying {} into the cache", from.display()))?;
        }
        Ok(())
    })
}

/// Extracts a tarball into `dest` atomically (a partial extraction never
/// carries the final name).
fn extract(tarball: &Path, dest: &Path) -> Result<()> {
    let _ = std::fs::remove_dir_all(dest);
    cache::install_dir(dest, |staging| {
        let mut tar = SupervisedCommand::new("tar", Terminal::Detached);
        tar.arg("-xf")
            .arg(tarball)
            .arg("--strip-components=1")
            .arg("-C")
            .arg(staging)
            .stdin(Stdio::null());
        let waited = tar.spawn("tar")?.wait(None)?;
        if matches!(waited, Waited::Exited(s) if s.success()) {
            return Ok(());
        }
        interrupted_check(&waited)?;
        Err(fail(
            Failure::BadInput,
            format!(
                "cannot extract kernel source {} ({waited:?})\n  fix: reinstall it with `cargo ci setup`",
                tarball.display()
            ),
        ))
    })
}

fn interrupted_check(w: &Waited) -> Result<()> {
    if matches!(w, Waited::Interrupted) || crate::process::interrupted() {
        return Err(fail(Failure::Interrupted, "interrupted"));
    }
    Ok(())
}

/// Runs a build step with stdout and stderr merged into the build log, the
/// latest line shown as progress; on failure, the error shows the lines that
/// explain it and where the full log is.
pub(crate) fn run_logged(
    mut cmd: SupervisedCommand,
    what: &str,
    log: &mut std::fs::File,
    log_path: &Path,
    progress: &mut Progress,
) -> Result<()> {
    let (reader, writer) = std::io::pipe().context("creating a pipe")?;
    cmd.stdin(Stdio::null())
        .stdout(writer.try_clone()?)
        .stderr(writer);
    writeln!(log, "\n$ {what}")?;
    let mut child = cmd.spawn(what)?;
    let mut tail: std::collections::VecDeque<String> = Default::default();
    let mut errors: Vec<String> = Vec::new();
    for line in BufReader::new(reader).split(b'\n') {
        let line = String::from_utf8_lossy(&line.context("reading build output")?).to_string();
        writeln!(log, "{line}")?;
        let is_error =
            line.contains("error:") || line.contains("Error ") || line.starts_with("make: ***");
        if is_error && errors.len() < 30 {
            errors.push(line.clone());
        }
        progress.detail(&line);
        tail.push_back(line);
        if tail.len() > 15 {
            tail.pop_front();
        }
    }
    let waited = child.wait(None)?;
    log.flush()?;
    interrupted_check(&waited)?;
    if matches!(waited, Waited::Exited(s) if s.success()) {
        return Ok(());
    }
    let shown = if errors.is_empty() {
        tail.into_iter().collect::<Vec<_>>()
    } else {
        errors
    };
    Err(fail(
        Failure::HostTool,
        format!(
            "{what} failed ({waited}):\n  {}\n  full log: {}",
            shown.join("\n  "),
            log_path.display()
        ),
    ))
}

/// An exclusive lock (flock) held until the value is dropped; waits for a
/// concurrent holder.
pub struct Lock {
    _file: std::fs::File,
}

pub fn lock(dir: &Path, name: &str) -> Result<Lock> {
    use std::os::fd::AsRawFd;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join(format!("{name}.lock"));
    let f = std::fs::File::create(&path).with_context(|| format!("creating {}", path.display()))?;
    // SAFETY: flock on an fd we own.
    if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        tracing::info!("waiting for another build holding {}", path.display());
        // SAFETY: as above, blocking this time.
        if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(std::io::Error::last_os_error()).context("locking the build");
        }
    }
    Ok(Lock { _file: f })
}

/// What a catalog kernel needs before it can be planned or installed,
/// without building: the source tarball of a `build`, the packages of a
/// `prebuilt`.
enum Inputs {
    Tarball(PathBuf),
    Debs(Vec<PathBuf>),
}

/// The command that retries fetching or building `name`, for error messages.
fn retry_command(name: &str) -> String {
    format!("scx-harness kernel build {name}")
}

/// The inputs of `def`: fetched now when `fetch` (network), else only what
/// is already here (`None` when something is missing).
fn inputs_of(
    def: &KernelDef,
    cache: &Cache,
    fetch: bool,
    progress: &mut Progress,
) -> Result<Option<Inputs>> {
    let archive = debian::Archive::new(cache);
    let retry = retry_command(&def.name);
    match &def.how {
        catalog::How::Build(b) => {
            let Some(suite) = &b.suite else {
                return Ok(Some(Inputs::Tarball(
                    format!("/usr/src/{}.tar.xz", b.package).into(),
                )));
            };
            let deb = if fetch {
                archive.fetch(suite, &b.package, &retry, progress)?
            } else {
                match archive.cached(&b.package) {
                    Some(d) => d,
                    None => return Ok(None),
                }
            };
            let unpacked = archive.unpack(&deb)?;
            let tarball = unpacked.join(format!("usr/src/{}.tar.xz", b.package));
            if !tarball.is_file() {
                return Err(fail(
                    Failure::BadInput,
                    format!(
                        "{} has no usr/src/{}.tar.xz: not a kernel source package\n  \
                         fix: name a linux-source-X.Y package in {}",
                        deb.display(),
                        b.package,
                        catalog::FILE
                    ),
                ));
            }
            Ok(Some(Inputs::Tarball(tarball)))
        }
        catalog::How::Prebuilt(p) => {
            let mut debs = Vec::new();
            for package in &p.packages {
                let deb = if fetch {
                    archive.fetch(&p.suite, package, &retry, progress)?
                } else {
                    match archive.cached(package) {
                        Some(d) => d,
                        None => return Ok(None),
                    }
                };
                debs.push(deb);
            }
            Ok(Some(Inputs::Debs(debs)))
        }
    }
}

fn build_spec(def: &KernelDef, b: &catalog::Build, tarball: PathBuf) -> BuildSpec {
    BuildSpec {
        source: Source::Tarball(tarball),
        base_fragments: b.fragments.clone(),
        extra_fragments: Vec::new(),
        jobs: default_jobs(),
        name: Some(def.name.clone()),
    }
}

/// The build spec of a catalog `build` kernel whose source is here, with
/// `extra` fragments on top (`kernel build NAME --config FILE`).
pub fn spec_of(def: &KernelDef, cache: &Cache, progress: &mut Progress) -> Result<BuildSpec> {
    let catalog::How::Build(b) = &def.how else {
        return Err(fail(
            Failure::BadInput,
            format!(
                "kernel {:?} is Debian's prebuilt kernel: it is fetched as it ships, not built with fragments\n  \
                 fix: drop --config/--jobs, or name a kernel that is built ({})",
                def.name,
                Catalog::embedded()
                    .kernels
                    .iter()
                    .filter(|k| matches!(k.how, catalog::How::Build(_)))
                    .map(|k| k.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ));
    };
    match inputs_of(def, cache, true, progress)? {
        Some(Inputs::Tarball(t)) => Ok(build_spec(def, b, t)),
        _ => unreachable!("a build kernel's inputs are a tarball"),
    }
}

/// The cache entry of catalog kernel `def`, fetched and built (or
/// installed) first if needed. A build takes about 9 minutes on 2 cores;
/// a prebuilt kernel, its download and `depmod`.
pub fn ensure(def: &KernelDef, cache: &Cache, progress: &mut Progress) -> Result<Entry> {
    match inputs_of(def, cache, true, progress)?.expect("fetched") {
        Inputs::Tarball(tarball) => {
            let catalog::How::Build(b) = &def.how else {
                unreachable!("a tarball is a build kernel's input")
            };
            build(&build_spec(def, b, tarball), cache, progress)
        }
        Inputs::Debs(debs) => install_prebuilt(def, &debs, cache, progress),
    }
}

/// The cache entry of catalog kernel `def` if it is here; never fetches or
/// builds.
pub fn lookup(def: &KernelDef, cache: &Cache) -> Result<Option<Entry>> {
    let mut quiet = Progress::hidden();
    let Some(inputs) = inputs_of(def, cache, false, &mut quiet)? else {
        return Ok(None);
    };
    let key = match (inputs, &def.how) {
        (Inputs::Tarball(t), catalog::How::Build(b)) => {
            if !t.is_file() {
                return Ok(None);
            }
            let vng = Vng::locate()?;
            plan(&build_spec(def, b, t), cache, &vng)?.key
        }
        (Inputs::Debs(debs), _) => prebuilt_key(&debs, cache)?.0,
        _ => return Ok(None),
    };
    Ok(cache.get(&key))
}

/// Bump when the way a prebuilt kernel is installed changes its entry.
const PREBUILT_RECIPE: &str = "scx-harness prebuilt recipe 2: dpkg-deb -x; depmod; lib/modules";

/// The key of a prebuilt kernel: the recipe and each package's content.
fn prebuilt_key(debs: &[PathBuf], cache: &Cache) -> Result<(String, String)> {
    let mut inputs = format!("recipe: {PREBUILT_RECIPE}\n");
    for d in debs {
        inputs.push_str(&format!(
            "package: {} sha256:{}\n",
            d.file_name().unwrap_or_default().to_string_lossy(),
            cache.file_digest(d)?
        ));
    }
    Ok((key_of(&inputs), inputs))
}

/// Installs Debian's prebuilt kernel into the cache: `bzImage` (its
/// vmlinuz), `config`, `boot/config-RELEASE` and `lib/modules/RELEASE/` with
/// `depmod`'s indexes, so the guest can load its 9p and virtio modules.
fn install_prebuilt(
    def: &KernelDef,
    debs: &[PathBuf],
    cache: &Cache,
    progress: &mut Progress,
) -> Result<Entry> {
    let catalog::How::Prebuilt(p) = &def.how else {
        unreachable!("packages are a prebuilt kernel's input")
    };
    let (key, inputs) = prebuilt_key(debs, cache)?;
    if let Some(e) = cache.get(&key) {
        return Ok(e);
    }
    let _lock = lock(&cache.locks_dir(), &format!("build-{key}"))?;
    if let Some(e) = cache.get(&key) {
        return Ok(e);
    }
    let started = Instant::now();
    let release = &p.release;
    let meta = Meta {
        key: key.clone(),
        created: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        source: format!(
            "Debian {} packages {}",
            p.suite,
            debs.iter()
                .map(|d| d
                    .file_name()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
        fragments: Vec::new(),
        release: release.clone(),
        tree: PathBuf::new(),
        build_seconds: 0,
        inputs,
        name: Some(def.name.clone()),
    };
    cache.install(meta, |dir| {
        let root = dir.join("root");
        for deb in debs {
            progress.stage(&format!(
                "unpacking {}",
                deb.file_name().unwrap_or_default().to_string_lossy()
            ));
            debian::extract(deb, &root)?;
        }
        let mods = root.join("usr/lib/modules").join(release);
        let missing: Vec<&str> = ["vmlinuz", "config", "modules.order", "kernel"]
            .into_iter()
            .filter(|f| !mods.join(f).exists())
            .collect();
        if !missing.is_empty() {
            return Err(fail(
                Failure::BadInput,
                format!(
                    "kernel {:?}: the packages {} have no usr/lib/modules/{release}/{{{}}}\n  \
                     fix: list in {} the packages with vmlinuz, the modules, and config/modules.order \
                     (linux-binary-R, linux-modules-R, linux-base-R), and R's exact release",
                    def.name,
                    p.packages.join(", "),
                    missing.join(", "),
                    catalog::FILE
                ),
            ));
        }
        progress.stage("depmod (module indexes for the guest's modprobe)");
        let out = std::process::Command::new("depmod")
            .arg("-b")
            .arg(root.join("usr"))
            .arg(release)
            .output()
            .map_err(|e| {
                fail(
                    Failure::HostTool,
                    format!("cannot run depmod: {e}\n  fix: run `cargo ci setup` (installs kmod)"),
                )
            })?;
        if !out.status.success() {
            return Err(fail(
                Failure::HostTool,
                format!(
                    "depmod -b {} {release} failed: {}",
                    root.join("usr").display(),
                    String::from_utf8_lossy(&out.stderr).trim()
                ),
            ));
        }
        check_bzimage(&mods.join("vmlinuz"))?;
        std::fs::copy(mods.join("vmlinuz"), dir.join("bzImage"))?;
        std::fs::copy(mods.join("config"), dir.join("config"))?;
        std::fs::create_dir_all(dir.join("boot"))?;
        std::fs::copy(mods.join("config"), dir.join(format!("boot/config-{release}")))?;
        let config = DotConfig::read(&dir.join("config"))?;
        if !config.enabled("SCHED_CLASS_EXT") {
            return Err(fail(
                Failure::BadInput,
                format!(
                    "kernel {:?} ({release}) has no CONFIG_SCHED_CLASS_EXT in its config: it cannot run sched_ext schedulers\n  \
                     fix: name a kernel built with sched_ext in {}",
                    def.name,
                    catalog::FILE
                ),
            ));
        }
        std::fs::create_dir_all(dir.join("lib/modules"))?;
        std::fs::rename(&mods, dir.join("lib/modules").join(release))?;
        std::fs::remove_dir_all(&root)?;
        tracing::info!("installed {} in {:?}", def.name, started.elapsed());
        Ok(())
    })
}

/// A lock name for work done in a source tree (`PREFIX-HASH` of its path),
/// so that two kernels sharing a tree (`tree_from`) never run make in it
/// at once.
pub fn tree_lock_name(prefix: &str, tree: &Path) -> String {
    let canonical = std::fs::canonicalize(tree).unwrap_or_else(|_| tree.to_path_buf());
    format!(
        "{prefix}-{}",
        &sha256_hex(canonical.as_os_str().as_encoded_bytes())[..16]
    )
}

/// The command that gets a cached kernel built again: its catalog name's
/// build (after removing the entry), or for a prebuilt kernel its
/// `tree_from` kernel's.
pub fn rebuild_hint(entry: &Entry) -> String {
    let catalog = Catalog::embedded();
    match entry.meta.name.as_deref().and_then(|n| catalog.get(n)) {
        Some(KernelDef {
            how: catalog::How::Prebuilt(catalog::Prebuilt {
                tree_from: Some(t), ..
            }),
            ..
        }) => format!("build kernel {t}, whose tree it uses: `scx-harness kernel build {t}`"),
        Some(def) => format!(
            "`scx-harness kernel rm {}`, then `scx-harness kernel build {}`",
            entry.meta.key, def.name
        ),
        None => format!(
            "`scx-harness kernel rm {}`, then build it again (`scx-harness kernel build --source DIR` for a tree)",
            entry.meta.key
        ),
    }
}

/// The built source tree of a cached kernel: where it was built, or for a
/// prebuilt kernel its catalog entry's `tree_from` kernel's tree (which
/// must be built first). Used to compile the kernel's examples and BPF C
/// schedulers against matching headers.
pub fn source_tree(entry: &Entry, cache: &Cache) -> Result<PathBuf> {
    if !entry.meta.tree.as_os_str().is_empty() {
        return Ok(entry.meta.tree.clone());
    }
    let catalog = Catalog::embedded();
    let name = entry.meta.name.as_deref().unwrap_or("");
    let from = match catalog.get(name).map(|d| &d.how) {
        Some(catalog::How::Prebuilt(p)) => p.tree_from.clone(),
        _ => None,
    };
    let Some(from) = from else {
        return Err(fail(
            Failure::BadInput,
            format!(
                "kernel {} ({}) has no source tree to build schedulers against\n  \
                 fix: give it `tree_from:` in {}",
                entry.meta.key,
                entry.meta.release,
                catalog::FILE
            ),
        ));
    };
    let def = catalog.require(&from)?;
    match lookup(def, cache)? {
        Some(e) => Ok(e.meta.tree),
        None => Err(fail(
            Failure::BadInput,
            format!(
                "kernel {name}'s schedulers are built in kernel {from}'s tree, which is not built\n  \
                 fix: `scx-harness kernel build {from}`"
            ),
        )),
    }
}

/// The default kernel (the catalog's `default`) if it is here. Never
/// builds or fetches.
pub fn cached_default(cache: &Cache) -> Result<Option<Entry>> {
    let catalog = Catalog::embedded();
    lookup(catalog.default_kernel(), cache)
}

/// What `--kernel ARG` names: a catalog name (fetched and built if
/// needed), a cache key, a bzImage file, a cache entry directory, or a
/// kernel tree with a built `arch/x86/boot/bzImage`.
pub fn resolve(arg: &str, cache: &Cache) -> Result<Kernel> {
    let catalog = Catalog::embedded();
    if let Some(def) = catalog.get(arg) {
        let mut progress = Progress::new(&format!("kernel {arg}"));
        let entry = ensure(def, cache, &mut progress)?;
        progress.finish(&format!("{} {}", entry.meta.key, entry.meta.release));
        return Ok(Kernel {
            bzimage: entry.bzimage(),
            entry: Some(entry),
        });
    }
    if let Some(entry) = cache.get(arg) {
        return Ok(Kernel {
            bzimage: entry.bzimage(),
            entry: Some(entry),
        });
    }
    let path = Path::new(arg);
    let file = if path.is_dir() {
        [path.join("bzImage"), path.join("arch/x86/boot/bzImage")]
            .into_iter()
            .find(|p| p.is_file())
            .ok_or_else(|| {
                fail(
                    Failure::BadInput,
                    format!(
                        "--kernel {arg}: directory has no bzImage nor arch/x86/boot/bzImage\n  \
                         fix: build it (`scx-harness kernel build --source {arg}`) or pass the bzImage itself"
                    ),
                )
            })?
    } else if path.exists() {
        path.to_path_buf()
    } else {
        return Err(fail(
            Failure::BadInput,
            format!(
                "--kernel {arg}: not a kernel name ({}), no such file, and no cached kernel has that key\n  \
                 fix: `scx-harness kernel list` shows the names and the cached keys",
                catalog.names().join(", ")
            ),
        ));
    };
    check_bzimage(&file)?;
    // A cache entry's own bzImage, given by path, is that entry (its tree
    // builds the kernel's schedulers, its name picks the registry's fields).
    let entry = file
        .parent()
        .and_then(|d| d.file_name())
        .and_then(|key| cache.get(&key.to_string_lossy()))
        .filter(|e| same_file(&e.bzimage(), &file));
    Ok(Kernel {
        bzimage: file,
        entry,
    })
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(x), Ok(y)) => x == y,
        _ => false,
    }
}

/// A bzImage carries the x86 boot protocol magic "HdrS" at offset 0x202.
pub fn check_bzimage(path: &Path) -> Result<()> {
    use std::io::Read;
    let mut head = [0u8; 0x206];
    let ok = std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut head))
        .map(|()| &head[0x202..0x206] == b"HdrS");
    match ok {
        Ok(true) => Ok(()),
        Ok(false) | Err(_) => Err(fail(
            Failure::BadInput,
            format!(
                "{} is not a bzImage (no x86 boot header \"HdrS\" at offset 0x202)\n  \
                 fix: pass arch/x86/boot/bzImage of a built kernel, not vmlinux or a compressed image",
                path.display()
            ),
        )),
    }
}

/// The release (`uname -r`) a bzImage will report, read from its boot
/// header: `kernel_version` at 0x20E points (minus 0x200) at a string like
/// "6.12.117 (root@host) #1 SMP ...".
pub fn bzimage_release(path: &Path) -> Option<String> {
    let bytes = std::fs::read(path).ok()?;
    if bytes.get(0x202..0x206)? != b"HdrS" {
        return None;
    }
    let ptr = u16::from_le_bytes([*bytes.get(0x20E)?, *bytes.get(0x20F)?]) as usize + 0x200;
    let tail = bytes.get(ptr..)?;
    let end = tail.iter().position(|b| *b == 0 || *b == b' ')?;
    String::from_utf8(tail[..end].to_vec()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn release_is_read_from_the_boot_header() {
        let dir = tempfile::tempdir().unwrap();
        let img = dir.path().join("bzImage");
        let mut bytes = vec![0u8; 0x400];
        bytes[0x202..0x206].copy_from_slice(b"HdrS");
        bytes[0x20E..0x210].copy_from_slice(&0x100u16.to_le_bytes());
        bytes[0x300..0x300 + 20].copy_from_slice(b"6.12.117 (root@x) #1");
        std::fs::write(&img, &bytes).unwrap();
        assert_eq!(bzimage_release(&img).as_deref(), Some("6.12.117"));
    }

    #[test]
    fn cache_key_follows_every_input() {
        let frag = |t: &str| Fragment::parse("f", t).unwrap();
        let tools = |gcc: &str| vec![("gcc", gcc.to_string()), ("pahole", "v1.24".to_string())];
        let base = key_of(&key_inputs(
            "tarball sha256:aa",
            &[frag("CONFIG_A=y\n")],
            &tools("gcc 12"),
        ));
        assert_eq!(base.len(), 16);
        // Same inputs, same key.
        assert_eq!(
            base,
            key_of(&key_inputs(
                "tarball sha256:aa",
                &[frag("CONFIG_A=y\n")],
                &tools("gcc 12")
            ))
        );
        for other in [
            key_inputs(
                "tarball sha256:ab",
                &[frag("CONFIG_A=y\n")],
                &tools("gcc 12"),
            ),
            key_inputs(
                "tarball sha256:aa",
                &[frag("CONFIG_A=m\n")],
                &tools("gcc 12"),
            ),
            key_inputs(
                "tarball sha256:aa",
                &[frag("CONFIG_A=y\n"), frag("CONFIG_B=y\n")],
                &tools("gcc 12"),
            ),
            key_inputs(
                "tarball sha256:aa",
                &[frag("CONFIG_A=y\n")],
                &tools("gcc 13"),
            ),
        ] {
            assert_ne!(base, key_of(&other), "{other}");
        }
        // Fragment order matters: a later fragment overrides an earlier one.
        let ab = key_inputs("s", &[frag("CONFIG_A=y\n"), frag("CONFIG_A=m\n")], &[]);
        let ba = key_inputs("s", &[frag("CONFIG_A=m\n"), frag("CONFIG_A=y\n")], &[]);
        assert_ne!(key_of(&ab), key_of(&ba));
    }

    #[test]
    fn bzimage_magic_is_checked() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("bzImage");
        let mut bytes = vec![0u8; 0x300];
        bytes[0x202..0x206].copy_from_slice(b"HdrS");
        std::fs::write(&good, &bytes).unwrap();
        check_bzimage(&good).unwrap();
        let bad = dir.path().join("vmlinux");
        std::fs::write(&bad, b"\x7fELF not a bzimage").unwrap();
        let err = check_bzimage(&bad).unwrap_err();
        assert_eq!(crate::classify(&err), Some(Failure::BadInput));
        assert!(format!("{err}").contains("is not a bzImage"));
    }

    #[test]
    fn resolve_reports_missing_kernel_as_bad_input() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::new(dir.path().into());
        let err = resolve("/nonexistent/bzImage", &cache).unwrap_err();
        assert_eq!(crate::classify(&err), Some(Failure::BadInput));
        assert!(format!("{err}").contains("kernel list"));
    }

    #[test]
    fn tree_identity_follows_source_changes_not_build_products() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::new(dir.path().join("cache"));
        let tree = dir.path().join("linux");
        std::fs::create_dir_all(tree.join("kernel")).unwrap();
        std::fs::write(tree.join("Makefile"), "all:\n").unwrap();
        std::fs::write(tree.join("Kconfig"), "").unwrap();
        std::fs::write(tree.join("kernel/a.c"), "int a;").unwrap();
        let src = Source::Tree(tree.clone());
        let id1 = source_identity(&src, &cache).unwrap();
        std::fs::write(tree.join("kernel/a.o"), "object").unwrap();
        assert_eq!(
            source_identity(&src, &cache).unwrap(),
            id1,
            "a build product changed the id"
        );
        std::fs::write(tree.join("kernel/a.c"), "int a = 1;").unwrap();
        assert_ne!(
            source_identity(&src, &cache).unwrap(),
            id1,
            "a source edit kept the id"
        );
    }

    #[test]
    fn bad_sources_are_bad_input() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::new(dir.path().into());
        for src in [
            Source::Tree(dir.path().join("missing")),
            Source::Tree(dir.path().to_path_buf()),
            Source::Tarball(dir.path().join("linux.tar.xz")),
        ] {
            let err = source_identity(&src, &cache).unwrap_err();
            assert_eq!(crate::classify(&err), Some(Failure::BadInput), "{src:?}");
            assert!(format!("{err}").contains("fix:"), "{err}");
        }
    }
}
