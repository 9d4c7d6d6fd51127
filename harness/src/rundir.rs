//! The run directory's lifecycle: created for one run and never reused
//! (`results are never overwritten`), checked for room before any VM
//! boots, marked incomplete while cells run, and finished with
//! `results.json` and `report.html`. A run killed before it finished
//! (SIGKILL, a power cut) leaves its marker; the next run that creates a
//! directory beside it finishes it from the cells' own `result.json`.
//!
//! Knows the layout of a run directory and the report's writers; nothing
//! about VMs or schedulers.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::error::{fail, Failure};
use crate::kernel::cache::write_atomic;
use crate::report::CellResult;

/// Present while a run goes on: "PID STARTTIME" of the harness.
const MARKER: &str = ".incomplete";

/// A run directory whose run is going on.
pub struct RunDir {
    path: PathBuf,
}

impl RunDir {
    /// Creates the run directory for `cells` cells: `out` (which must not
    /// exist), or else `scx-runs/DEFAULT_NAME`. Killed runs beside it are
    /// finished first.
    pub fn create(out: Option<PathBuf>, default_name: &str, cells: usize) -> Result<RunDir> {
        let parent = match &out {
            Some(o) => o.parent().map(Path::to_path_buf).unwrap_or_default(),
            None => PathBuf::from("scx-runs"),
        };
        for (dir, n) in finish_killed_runs(&parent) {
            eprintln!(
                "{}: a run killed before it finished; its {n} finished cell(s) are now in results.json",
                dir.display()
            );
        }
        let path = create(out, default_name, cells)?;
        write_atomic(&path.join(MARKER), me().as_bytes())?;
        Ok(RunDir { path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes `results.json` and `report.html` and ends the run. An error
    /// names what was not saved and where the rest is.
    pub fn finish(self, results: &[CellResult]) -> Result<PathBuf> {
        write_results(&self.path, results)?;
        Ok(self.path.join("report.html"))
    }
}

/// A run that ends, by any return (an error included), is not killed: only
/// SIGKILL, which runs no destructor, leaves the marker.
impl Drop for RunDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(self.path.join(MARKER));
    }
}

fn write_results(dir: &Path, results: &[CellResult]) -> Result<()> {
    let saved = |what: &str| {
        format!(
            "{what} not saved in {}; each finished cell's result.json, console and logs are in its directory there (SCHEDULER/SCENARIO/)",
            dir.display()
        )
    };
    write_atomic(
        &dir.join("results.json"),
        &serde_json::to_vec_pretty(results)?,
    )
    .with_context(|| saved("results.json"))?;
    write_atomic(
        &dir.join("report.html"),
        crate::html::page(results, None).as_bytes(),
    )
    .with_context(|| saved("report.html"))
}

/// "PID STARTTIME" of this process (start time in clock ticks since boot:
/// a pid reused by another process does not match).
fn me() -> String {
    format!(
        "{} {}",
        std::process::id(),
        start_time(std::process::id()).unwrap_or(0)
    )
}

fn start_time(pid: u32) -> Option<u64> {
    crate::process::ProcStat::read(format!("/proc/{pid}/stat")).map(|s| s.start_time)
}

fn alive(marker: &str) -> bool {
    let mut it = marker.split_whitespace().map(|w| w.parse::<u64>().ok());
    match (it.next().flatten(), it.next().flatten()) {
        (Some(pid), Some(start)) => start_time(pid as u32) == Some(start),
        _ => false,
    }
}

/// Finishes the run directories in `parent` whose run was killed: their
/// cells' `result.json` files become `results.json` and `report.html`.
/// Returns each directory and its number of cells.
pub fn finish_killed_runs(parent: &Path) -> Vec<(PathBuf, usize)> {
    let mut done = Vec::new();
    for entry in std::fs::read_dir(parent).into_iter().flatten().flatten() {
        let dir = entry.path();
        let Ok(marker) = std::fs::read_to_string(dir.join(MARKER)) else {
            continue;
        };
        if alive(&marker) {
            continue;
        }
        // No results.json yet: the cells' own result.json files (none
        // when the run was killed before its first cell ended).
        let mut results = crate::report::load_run(&dir).unwrap_or_default();
        results.sort_by_key(|r| r.started_at);
        if write_results(&dir, &results).is_ok() {
            let _ = std::fs::remove_file(dir.join(MARKER));
            done.push((dir, results.len()));
        }
    }
    done
}

/// Disk space a run needs before it starts: a cell leaves about 200 KiB
/// (console, logs, results) and a VM's directory about 2 MiB; this asks
/// for five times that, so a run that starts can finish.
const BASE_FREE: u64 = 16 << 20;
const FREE_PER_CELL: u64 = 1 << 20;

/// Creates the run directory for `cells` cells: `out`, which must not
/// exist (results are never overwritten), or else a new
/// `scx-runs/DEFAULT_NAME` (with a suffix if a run started in the same
/// second). An unwritable place, or a file system without room for the
/// run, is reported here, before any VM boots.
fn create(out: Option<PathBuf>, default_name: &str, cells: usize) -> Result<PathBuf> {
    let unwritable = |dir: &Path, e: std::io::Error| {
        fail(
            Failure::BadInput,
            format!(
                "cannot create the run directory {}: {e}\n  fix: pass a writable --out",
                dir.display()
            ),
        )
    };
    let dir = match out {
        Some(dir) => {
            if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent).map_err(|e| unwritable(&dir, e))?;
            }
            // create_dir, not a look first: two runs given the same --out
            // cannot both get it.
            match std::fs::create_dir(&dir) {
                Ok(()) => dir,
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    return Err(fail(
                        Failure::BadInput,
                        format!(
                            "run directory {} already exists; results are never overwritten\n  fix: pass another --out, or leave it out for a new one",
                            dir.display()
                        ),
                    ))
                }
                Err(e) => return Err(unwritable(&dir, e)),
            }
        }
        None => {
            let base = PathBuf::from("scx-runs");
            new_dir_in(&base, default_name).map_err(|e| unwritable(&base, e))?
        }
    };
    let need = BASE_FREE + FREE_PER_CELL * cells as u64;
    if let Some(free) = free_bytes(&dir).filter(|f| *f < need) {
        let _ = std::fs::remove_dir(&dir);
        return Err(fail(
            Failure::BadInput,
            format!(
                "the file system of {} has {} MiB free; {cells} cell(s) need about {} MiB for their results and logs\n  fix: free some space, or pass an --out on another file system",
                dir.display(),
                free >> 20,
                need >> 20
            ),
        ));
    }
    Ok(std::fs::canonicalize(&dir)?)
}

/// A directory `base/NAME`, or `base/NAME-2`, `-3`... when another run
/// has that name: created, not looked for, so no two runs share one.
fn new_dir_in(base: &Path, name: &str) -> std::io::Result<PathBuf> {
    std::fs::create_dir_all(base)?;
    for n in 1..=1000 {
        let dir = match n {
            1 => base.join(name),
            n => base.join(format!("{name}-{n}")),
        };
        match std::fs::create_dir(&dir) {
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            r => return r.map(|()| dir),
        }
    }
    Err(std::io::Error::other(format!(
        "1000 runs named {name} already"
    )))
}

/// Bytes an unprivileged process may still write on `path`'s file system.
fn free_bytes(path: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    // SAFETY: statvfs fills the struct it is given; `c` is a valid C string.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return None;
    }
    Some(st.f_bavail as u64 * st.f_frsize as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_started_in_the_same_second_get_their_own_directories() {
        let base = tempfile::tempdir().unwrap();
        let a = new_dir_in(base.path(), "2026-11-26-09-00-00").unwrap();
        let b = new_dir_in(base.path(), "2026-11-26-09-00-00").unwrap();
        let c = new_dir_in(base.path(), "2026-11-26-09-00-00").unwrap();
        assert_eq!(a, base.path().join("2026-11-26-09-00-00"));
        assert_eq!(b, base.path().join("2026-11-26-09-00-00-2"));
        assert_eq!(c, base.path().join("2026-11-26-09-00-00-3"));
    }

    fn default_class() -> crate::scheduler::build::Built {
        use crate::scheduler::registry::Registry;
        let reg = Registry::load(&Registry::default_path()).unwrap();
        crate::scheduler::build::Built {
            def: reg.get("default").unwrap().clone(),
            artifact: crate::scheduler::build::Artifact::Nothing,
            version: String::new(),
        }
    }

    #[test]
    fn a_killed_runs_directory_is_finished_by_the_next_run() {
        let parent = tempfile::tempdir().unwrap();
        let killed = parent.path().join("killed");
        std::fs::create_dir_all(killed.join("default/idle")).unwrap();
        let cell = crate::report::not_run(
            &crate::scenario::resolve("idle-baseline").unwrap(),
            &default_class(),
            &killed.join("default/idle"),
            "test",
        );
        std::fs::write(
            killed.join("default/idle/result.json"),
            serde_json::to_vec(&cell).unwrap(),
        )
        .unwrap();
        // pid 1's start time is not 12345 (and no such pid as 4000000000).
        std::fs::write(killed.join(MARKER), "1 12345").unwrap();
        let live = parent.path().join("live");
        std::fs::create_dir(&live).unwrap();
        std::fs::write(live.join(MARKER), me()).unwrap();
        let done = finish_killed_runs(parent.path());
        assert_eq!(done, vec![(killed.clone(), 1)]);
        assert!(!killed.join(MARKER).exists());
        let results: Vec<CellResult> =
            serde_json::from_slice(&std::fs::read(killed.join("results.json")).unwrap()).unwrap();
        assert_eq!(results.len(), 1);
        assert!(killed.join("report.html").is_file());
        // A live run is left alone.
        assert!(live.join(MARKER).exists());
        assert!(!live.join("results.json").exists());
    }

    #[test]
    fn free_space_is_read() {
        let dir = tempfile::tempdir().unwrap();
        assert!(free_bytes(dir.path()).is_some_and(|b| b > 0));
        assert_eq!(free_bytes(Path::new("/no/such/dir")), None);
    }
}
