//! Watching a scheduler's sources for `dev`: inotify (through `notify`)
//! on each watched directory, recursively; every event on a path the
//! source calls relevant is sent on, as it comes. Coalescing a burst of
//! events (an editor's write, rename and chmod of one save) is the
//! caller's.

use std::path::PathBuf;
use std::sync::mpsc::Sender;

use anyhow::{Context, Result};
use notify::{RecursiveMode, Watcher};

/// A running watch; dropping it stops it.
pub struct Watch {
    _watcher: notify::RecommendedWatcher,
}

/// Watches `dirs` and sends, for each event on a path `relevant` accepts,
/// `wrap(path)` on `tx`. Errors name the directory that cannot be watched.
pub fn start<T: Send + 'static>(
    dirs: &[PathBuf],
    relevant: impl Fn(&std::path::Path) -> bool + Send + 'static,
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
    for d in dirs {
        if !d.is_dir() {
            continue;
        }
        watcher.watch(d, RecursiveMode::Recursive).with_context(|| {
            format!(
                "watching {} (inotify)\n  fix: raise fs.inotify.max_user_watches if it is the limit",
                d.display()
            )
        })?;
    }
    Ok(Watch { _watcher: watcher })
}
