//! Watching a scheduler's sources for `dev`: inotify (through `notify`)
//! on each watched directory and its subdirectories as they are when the
//! watch starts, leaving out build products (`source::NOT_SOURCES`: a
//! cargo `target/` alone can hold thousands of directories, each an
//! inotify watch, rewritten on every build). Every event on a path the
//! source calls relevant is sent on, as it comes; coalescing a burst of
//! events (an editor's write, rename and chmod of one save) is the
//! caller's. A directory made later is not watched.

use std::path::{Path, PathBuf};
use std::sync::mpsc::Sender;

use anyhow::{Context, Result};
use notify::{RecursiveMode, Watcher};

/// A running watch; dropping it stops it.
pub struct Watch {
    _watcher: notify::RecommendedWatcher,
}

/// `dir` and its subdirectories, build products and hidden ones left out
/// (also where `bench dev` looks for the file to edit).
pub(crate) fn source_dirs(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let name = e.file_name();
            let name = name.to_string_lossy();
            if e.file_type().is_ok_and(|t| t.is_dir())
                && !name.starts_with('.')
                && !super::source::NOT_SOURCES.contains(&name.as_ref())
            {
                todo.push(e.path());
            }
        }
        out.push(d);
    }
    out
}

/// Watches `dirs` and sends, for each event on a path `relevant` accepts,
/// `wrap(path)` on `tx`. Errors name the directory that cannot be watched.
pub fn start<T: Send + 'static>(
    dirs: &[PathBuf],
    relevant: impl Fn(&Path) -> bool + Send + 'static,
    tx: Sender<T>,
    wrap: impl Fn(PathBuf) -> T + Send + 'static,
) -> Result<Watch> {
    let mut watcher = notify::recommended_watcher(move |ev: notify::Result<notify::Event>| {
        let Ok(ev) = ev else { return };
        if matches!(ev.kind, notify::EventKind::Access(_)) {
            return;
        }
        for p in ev.paths {
            if relevant(&p) {
                let _ = tx.send(wrap(p));
            }
        }
    })
    .context("starting the file watch (inotify)")?;
    for d in dirs
        .iter()
        .filter(|d| d.is_dir())
        .flat_map(|d| source_dirs(d))
    {
        watcher
            .watch(&d, RecursiveMode::NonRecursive)
            .with_context(|| {
                format!(
                    "watching {} (inotify)\n  fix: raise fs.inotify.max_user_watches if it is the limit",
                    d.display()
                )
            })?;
    }
    Ok(Watch { _watcher: watcher })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_products_and_hidden_directories_are_not_watched() {
        let t = tempfile::tempdir().unwrap();
        for d in ["src/bpf", "target/debug/deps", ".git/objects", "build/x"] {
            std::fs::create_dir_all(t.path().join(d)).unwrap();
        }
        let mut got: Vec<String> = source_dirs(t.path())
            .iter()
            .map(|p| p.strip_prefix(t.path()).unwrap().display().to_string())
            .collect();
        got.sort();
        assert_eq!(got, ["", "src", "src/bpf"]);
    }

    #[test]
    fn a_save_is_seen() {
        let t = tempfile::tempdir().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let _w = start(&[t.path().to_path_buf()], |p| p.ends_with("a.c"), tx, |p| p).unwrap();
        std::fs::write(t.path().join("a.c"), "x").unwrap();
        let p = rx
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("an event for a.c");
        assert!(p.ends_with("a.c"));
    }
}
