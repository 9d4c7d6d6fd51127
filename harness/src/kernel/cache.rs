//! The kernel cache: finished builds keyed by a content hash, written
//! atomically, under the user's cache directory.
//!
//! Layout under `paths::cache_dir()`:
//! - `kernels/KEY/` one finished build: `bzImage`, `vmlinux`, `config`,
//!   `build.log`, `meta.json`. Only complete entries ever carry this name:
//!   they are assembled in `kernels/.tmp-KEY-PID/` and renamed into place.
//! - `trees/KEY/` the source tree a default-source build ran in (kept for
//!   incremental rebuilds and for building the tree's `tools/sched_ext`).
//! - `logs/KEY.log` the log of the latest build attempt of KEY.
//! - `sources/ID` memoised content hashes of source tarballs.
//!
//! Knows nothing about how a kernel is built.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// What a cache entry records about itself (`meta.json`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Meta {
    pub key: String,
    /// Seconds since the Unix epoch when the entry was installed.
    pub created: u64,
    /// Human description of the source (tarball path or tree path).
    pub source: String,
    /// Fragment origins, in the order they were applied.
    pub fragments: Vec<String>,
    /// `uname -r` of the built kernel.
    pub release: String,
    /// The tree the build ran in.
    pub tree: PathBuf,
    pub build_seconds: u64,
    /// The exact text the key was hashed from.
    pub inputs: String,
    /// The catalog name it was built or fetched as (`lts`, `stable`,
    /// `debian`; kernel-config/kernels.yaml), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// A complete cache entry.
#[derive(Debug, Clone)]
pub struct Entry {
    pub dir: PathBuf,
    pub meta: Meta,
}

impl Entry {
    pub fn bzimage(&self) -> PathBuf {
        self.dir.join("bzImage")
    }
    pub fn vmlinux(&self) -> PathBuf {
        self.dir.join("vmlinux")
    }
    pub fn config(&self) -> PathBuf {
        self.dir.join("config")
    }
    pub fn build_log(&self) -> PathBuf {
        self.dir.join("build.log")
    }
    /// A prebuilt kernel's modules (`lib/modules/RELEASE/`), which the
    /// guest sees at `/usr/lib/modules` (`vm::run`); built kernels have none.
    pub fn modules(&self) -> PathBuf {
        self.dir.join("lib/modules")
    }
}

/// Whether `s` has the shape of a cache key (16 lower-case hex digits), so
/// that a kernel name can never be mistaken for one.
pub fn looks_like_key(s: &str) -> bool {
    s.len() == 16
        && s.chars()
            .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
}

#[derive(Debug, Clone)]
pub struct Cache {
    root: PathBuf,
}

impl Cache {
    pub fn new(root: PathBuf) -> Cache {
        Cache { root }
    }

    /// The cache under the user's cache directory.
    pub fn user() -> Cache {
        Cache::new(crate::paths::cache_dir())
    }

    pub fn root(&self) -> &Path {
        &self.root
    }
    fn kernels(&self) -> PathBuf {
        self.root.join("kernels")
    }
    pub fn tree_dir(&self, key: &str) -> PathBuf {
        self.root.join("trees").join(key)
    }
    pub fn log_path(&self, key: &str) -> PathBuf {
        self.root.join("logs").join(format!("{key}.log"))
    }
    pub fn locks_dir(&self) -> PathBuf {
        self.root.join("locks")
    }
    fn sources(&self) -> PathBuf {
        self.root.join("sources")
    }

    /// The entry for `key`, if a complete one exists.
    pub fn get(&self, key: &str) -> Option<Entry> {
        if key.is_empty() || key.starts_with('.') || key.contains('/') {
            return None;
        }
        let dir = self.kernels().join(key);
        let meta: Meta =
            serde_json::from_slice(&std::fs::read(dir.join("meta.json")).ok()?).ok()?;
        dir.join("bzImage").is_file().then_some(Entry { dir, meta })
    }

    /// Every complete entry, newest first.
    pub fn list(&self) -> Result<Vec<Entry>> {
        let mut out = Vec::new();
        let dir = self.kernels();
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(e).with_context(|| format!("listing {}", dir.display())),
        };
        for e in entries.flatten() {
            if let Some(entry) = self.get(&e.file_name().to_string_lossy()) {
                out.push(entry);
            }
        }
        out.sort_by_key(|e| std::cmp::Reverse(e.meta.created));
        Ok(out)
    }

    /// Assembles an entry in a staging directory with `fill`, writes its
    /// `meta.json`, and renames it into place. If `fill` fails (or the process
    /// dies) no entry appears. If another process installed the same key
    /// meanwhile, theirs is kept.
    pub fn install(&self, meta: Meta, fill: impl FnOnce(&Path) -> Result<()>) -> Result<Entry> {
        let dest = self.kernels().join(&meta.key);
        install_dir(&dest, |staging| {
            fill(staging)?;
            write_atomic(
                &staging.join("meta.json"),
                serde_json::to_string_pretty(&meta)?.as_bytes(),
            )
        })?;
        self.get(&meta.key)
            .with_context(|| format!("cache entry {} vanished after install", dest.display()))
    }

    /// Removes a cached kernel: its entry (renamed away first, so it vanishes
    /// at once and whole), the tree it was built in if that is in the cache,
    /// and its log. Returns false if there was no such entry.
    pub fn remove(&self, key: &str) -> Result<bool> {
        let Some(entry) = self.get(key) else {
            return Ok(false);
        };
        let doomed = self
            .kernels()
            .join(format!(".tmp-rm-{key}-{}", std::process::id()));
        std::fs::rename(&entry.dir, &doomed)
            .with_context(|| format!("removing {}", entry.dir.display()))?;
        std::fs::remove_dir_all(&doomed)
            .with_context(|| format!("deleting {}", doomed.display()))?;
        let tree = self.tree_dir(key);
        if tree.exists() {
            std::fs::remove_dir_all(&tree)
                .with_context(|| format!("deleting {}", tree.display()))?;
        }
        let _ = std::fs::remove_file(self.log_path(key));
        Ok(true)
    }

    /// sha256 of a (large) file, memoised by path, size, mtime and inode so
    /// that a cache lookup does not re-read a 150 MB tarball.
    pub fn file_digest(&self, path: &Path) -> Result<String> {
        use std::os::unix::fs::MetadataExt;
        let md = std::fs::metadata(path).with_context(|| format!("reading {}", path.display()))?;
        let id = sha256_hex(
            format!(
                "{}|{}|{}.{}|{}",
                path.display(),
                md.size(),
                md.mtime(),
                md.mtime_nsec(),
                md.ino()
            )
            .as_bytes(),
        );
        let memo = self.sources().join(&id[..32]);
        if let Ok(d) = std::fs::read_to_string(&memo) {
            if d.len() == 64 {
                return Ok(d);
            }
        }
        let digest = sha256_file(path)?;
        std::fs::create_dir_all(self.sources())?;
        write_atomic(&memo, digest.as_bytes())?;
        Ok(digest)
    }
}

/// Creates directory `dest` atomically: `fill` populates a staging
/// directory beside it (`.tmp-NAME-PID`), which is then renamed to `dest`.
/// If `fill` fails, or the process dies, `dest` does not appear; staging
/// directories of dead processes are swept on the next install. If `dest`
/// appeared meanwhile (a concurrent install), that one is kept.
pub fn install_dir(dest: &Path, fill: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let parent = dest.parent().context("install target has no parent")?;
    let name = dest
        .file_name()
        .context("install target has no name")?
        .to_string_lossy();
    std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    sweep_stale_staging(parent);
    let staging = parent.join(format!(".tmp-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&staging);
    std::fs::create_dir(&staging).with_context(|| format!("creating {}", staging.display()))?;
    if let Err(e) = fill(&staging) {
        let _ = std::fs::remove_dir_all(&staging);
        return Err(e);
    }
    if let Err(e) = std::fs::rename(&staging, dest) {
        let _ = std::fs::remove_dir_all(&staging);
        if !dest.is_dir() {
            return Err(e).with_context(|| format!("installing {}", dest.display()));
        }
    }
    Ok(())
}

/// Removes `.tmp-*-PID` staging directories in `dir` whose process is gone.
fn sweep_stale_staging(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        let Some(pid) = name
            .strip_prefix(".tmp-")
            .and_then(|r| r.rsplit('-').next())
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

/// Writes `bytes` to `path` through a temporary file in the same directory
/// and a rename, so readers see the old content or the new, never a part.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("creating a temporary file in {}", dir.display()))?;
    tmp.write_all(bytes)?;
    // NamedTempFile creates 0600; results and cache files are for reading.
    use std::os::unix::fs::PermissionsExt;
    tmp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(0o644))?;
    tmp.as_file().sync_all()?;
    tmp.persist(path)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

pub fn sha256_file(path: &Path) -> Result<String> {
    let mut f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut h = Sha256::new();
    std::io::copy(&mut f, &mut h).with_context(|| format!("reading {}", path.display()))?;
    Ok(hex(&h.finalize()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(key: &str) -> Meta {
        Meta {
            key: key.into(),
            created: 1,
            source: "s".into(),
            fragments: vec![],
            release: "6.12.117".into(),
            tree: "/t".into(),
            build_seconds: 0,
            inputs: "i".into(),
            name: None,
        }
    }

    #[test]
    fn failed_fill_leaves_no_entry() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::new(dir.path().into());
        let err = cache
            .install(meta("abc"), |d| {
                std::fs::write(d.join("bzImage"), b"half")?;
                anyhow::bail!("build died")
            })
            .unwrap_err();
        assert!(format!("{err}").contains("build died"));
        assert!(cache.get("abc").is_none());
        assert_eq!(
            std::fs::read_dir(dir.path().join("kernels"))
                .unwrap()
                .count(),
            0
        );
    }

    #[test]
    fn installed_entry_is_listed_and_found() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::new(dir.path().into());
        let e = cache
            .install(meta("k1"), |d| Ok(std::fs::write(d.join("bzImage"), b"x")?))
            .unwrap();
        assert_eq!(e.meta, meta("k1"));
        assert_eq!(cache.list().unwrap().len(), 1);
        assert!(cache.get("k1").is_some());
        // Names that are not keys never resolve.
        for bad in ["", ".tmp-k1-1", "../k1"] {
            assert!(cache.get(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn remove_takes_entry_tree_and_log() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::new(dir.path().into());
        cache
            .install(meta("k4"), |d| Ok(std::fs::write(d.join("bzImage"), b"x")?))
            .unwrap();
        std::fs::create_dir_all(cache.tree_dir("k4").join("kernel")).unwrap();
        std::fs::create_dir_all(cache.log_path("k4").parent().unwrap()).unwrap();
        std::fs::write(cache.log_path("k4"), "log").unwrap();
        assert!(cache.remove("k4").unwrap());
        assert!(cache.get("k4").is_none());
        assert!(!cache.tree_dir("k4").exists());
        assert!(!cache.log_path("k4").exists());
        assert!(!cache.remove("k4").unwrap());
        assert_eq!(
            std::fs::read_dir(dir.path().join("kernels"))
                .unwrap()
                .count(),
            0
        );
    }

    #[test]
    fn stale_staging_of_dead_process_is_swept() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::new(dir.path().into());
        // pid_max is at most 2^22, so this pid cannot exist.
        let stale = dir.path().join("kernels/.tmp-k2-99999999");
        std::fs::create_dir_all(&stale).unwrap();
        cache
            .install(meta("k3"), |d| Ok(std::fs::write(d.join("bzImage"), b"x")?))
            .unwrap();
        assert!(!stale.exists());
    }

    #[test]
    fn file_digest_is_memoised_and_tracks_changes() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::new(dir.path().join("cache"));
        let f = dir.path().join("src.tar");
        std::fs::write(&f, b"one").unwrap();
        let d1 = cache.file_digest(&f).unwrap();
        assert_eq!(d1, sha256_hex(b"one"));
        assert_eq!(cache.file_digest(&f).unwrap(), d1);
        std::fs::write(&f, b"two!").unwrap();
        assert_eq!(cache.file_digest(&f).unwrap(), sha256_hex(b"two!"));
    }
}
