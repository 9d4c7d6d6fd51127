//! What happened the last time each scheduler was tried on each kernel, for
//! `scx-harness schedulers list` ("did it load on this kernel?"). Kept in
//! the cache as `schedulers/status.json`, updated atomically under a lock.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Result;
use serde::{Deserialize, Serialize};

use super::lifecycle::Verdict;
use crate::kernel::cache::{sha256_hex, write_atomic};
use crate::kernel::Cache;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    /// `Verdict::label()`: clean, failed_to_attach, ...
    pub verdict: String,
    pub why: String,
    /// Seconds since the Unix epoch.
    pub at: u64,
}

/// kernel id -> scheduler name -> status
type Table = BTreeMap<String, BTreeMap<String, Status>>;

fn path(cache: &Cache) -> PathBuf {
    cache.root().join("schedulers/status.json")
}

/// A cached kernel's key, or a hash of a bzImage's path, size and mtime.
pub fn kernel_id(bzimage: &Path) -> String {
    let in_cache = bzimage
        .parent()
        .filter(|d| d.parent().and_then(|p| p.file_name()) == Some("kernels".as_ref()))
        .and_then(|d| d.file_name())
        .map(|n| n.to_string_lossy().into_owned());
    in_cache.unwrap_or_else(|| {
        use std::os::unix::fs::MetadataExt;
        let md = std::fs::metadata(bzimage).ok();
        let id = format!(
            "{}|{}|{}",
            bzimage.display(),
            md.as_ref().map_or(0, |m| m.size()),
            md.as_ref().map_or(0, |m| m.mtime())
        );
        format!("file-{}", &sha256_hex(id.as_bytes())[..16])
    })
}

fn read(cache: &Cache) -> Table {
    std::fs::read(path(cache))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

/// Records `verdict` as the latest for `name` on `kernel`.
pub fn record(cache: &Cache, kernel: &Path, name: &str, verdict: &Verdict) -> Result<()> {
    let _lock = crate::kernel::lock(&cache.locks_dir(), "scheduler-status")?;
    let mut table = read(cache);
    table.entry(kernel_id(kernel)).or_default().insert(
        name.to_string(),
        Status {
            verdict: verdict.label().to_string(),
            why: verdict.why().to_string(),
            at: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
        },
    );
    let file = path(cache);
    std::fs::create_dir_all(file.parent().expect("status file has a parent"))?;
    write_atomic(&file, &serde_json::to_vec_pretty(&table)?)
}

/// The latest status of `name` on `kernel`, if it was ever tried.
pub fn last(cache: &Cache, kernel: &Path, name: &str) -> Option<Status> {
    read(cache).get(&kernel_id(kernel))?.get(name).cloned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latest_verdict_per_kernel_and_scheduler() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::new(dir.path().join("cache"));
        let k1 = dir.path().join("cache/kernels/abc/bzImage");
        let k2 = dir.path().join("other/bzImage");
        assert_eq!(kernel_id(&k1), "abc");
        assert!(kernel_id(&k2).starts_with("file-"));
        assert_eq!(last(&cache, &k1, "scx_fifo"), None);
        record(
            &cache,
            &k1,
            "scx_fifo",
            &Verdict::FailedToAttach {
                why: "verifier".into(),
            },
        )
        .unwrap();
        record(&cache, &k1, "scx_fifo", &Verdict::Clean).unwrap();
        record(
            &cache,
            &k2,
            "scx_fifo",
            &Verdict::Crashed { why: "boom".into() },
        )
        .unwrap();
        assert_eq!(last(&cache, &k1, "scx_fifo").unwrap().verdict, "clean");
        let s = last(&cache, &k2, "scx_fifo").unwrap();
        assert_eq!((s.verdict.as_str(), s.why.as_str()), ("crashed", "boom"));
    }
}
