//! The kernel's own sched_ext selftests
//! (`tools/testing/selftests/sched_ext`): built in a cached kernel's tree,
//! run in a VM of that kernel as one suite, and read back per test.
//!
//! The runner (`runner`, one static binary with every test in it) prints
//! per test a block `===== START =====` / `TEST: NAME` / ... / `ok N NAME #`
//! (`# SKIP` for a skipped one, `not ok` for a failure) / `=====  END  =====`
//! (`runner.c`'s print_test_preamble and print_test_result). Test names are
//! listed from the tree's sources (`.name = "..."` beside
//! `REGISTER_SCX_TEST`), so listing needs no build and no VM.
//!
//! Cached under `selftests/kernel-KEY/runner` (atomic). Known failures of a
//! kernel's own tests are data: `kernel-config/selftests.yaml`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::error::{fail, Failure};
use crate::kernel::cache::install_dir;
use crate::kernel::{run_logged, Cache, Entry};
use crate::process::{SupervisedCommand, Terminal};
use crate::progress::Progress;
use crate::vm::{self, GuestCommand, VmResult, VmSpec};

const DIR: &str = "tools/testing/selftests/sched_ext";

/// How one selftest ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Pass,
    Skip,
    Fail,
}

/// One selftest's result: its status and the lines it printed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outcome {
    pub status: Status,
    pub output: Vec<String>,
}

/// The names of the selftests in `tree`, in file order, without building.
pub fn names(tree: &Path) -> Result<Vec<String>> {
    let dir = tree.join(DIR);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.extension().is_some_and(|e| e == "c") && !p.to_string_lossy().ends_with(".bpf.c")
        })
        .collect();
    files.sort();
    let mut out = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap_or_default();
        if !text.contains("REGISTER_SCX_TEST") {
            continue;
        }
        for line in text.lines() {
            if let Some(rest) = line.trim().strip_prefix(".name") {
                let name = rest.trim_start().trim_start_matches('=').trim();
                if let Some(n) = name.strip_prefix('"').and_then(|n| n.split('"').next()) {
                    out.push(n.to_string());
                }
            }
        }
    }
    Ok(out)
}

/// Reads the runner's output into an outcome per test.
pub fn parse(stdout: &str) -> BTreeMap<String, Outcome> {
    let mut out = BTreeMap::new();
    let mut current: Option<(String, Vec<String>)> = None;
    for line in stdout.lines() {
        if let Some(name) = line.strip_prefix("TEST: ") {
            current = Some((name.trim().to_string(), Vec::new()));
            continue;
        }
        let result = line
            .strip_prefix("not ok ")
            .map(|r| (Status::Fail, r))
            .or_else(|| line.strip_prefix("ok ").map(|r| (Status::Pass, r)));
        if let (Some((status, rest)), Some((name, output))) = (result, current.as_ref()) {
            // "N NAME # [SKIP ]"
            let mut words = rest.split_whitespace();
            let _number = words.next();
            if words.next() == Some(name.as_str()) {
                let status = if status == Status::Pass && rest.contains("# SKIP") {
                    Status::Skip
                } else {
                    status
                };
                out.insert(
                    name.clone(),
                    Outcome {
                        status,
                        output: output.clone(),
                    },
                );
                current = None;
                continue;
            }
        }
        if let Some((_, output)) = current.as_mut() {
            if line != "===== START ====="
                && line != "OUTPUT:"
                && !line.starts_with("DESCRIPTION: ")
            {
                output.push(line.to_string());
            }
        }
    }
    out
}

fn dir_for(cache: &Cache, entry: &Entry) -> PathBuf {
    cache
        .root()
        .join("selftests")
        .join(format!("kernel-{}", entry.meta.key))
}

/// The runner built in `entry`'s tree, built first if needed (about a
/// minute on 2 cores: it builds its own bpftool and libbpf).
pub fn build(cache: &Cache, entry: &Entry, progress: &mut Progress) -> Result<PathBuf> {
    let dest = dir_for(cache, entry);
    let runner = dest.join("runner");
    if runner.is_file() {
        return Ok(runner);
    }
    let tree = crate::kernel::source_tree(entry, cache)?;
    let src = tree.join(DIR);
    if !src.join("Makefile").is_file() {
        return Err(fail(
            Failure::BadInput,
            format!(
                "kernel {} has no {DIR} in its tree {}\n  fix: {}",
                entry.meta.key,
                tree.display(),
                crate::kernel::rebuild_hint(entry)
            ),
        ));
    }
    // Per tree: a prebuilt kernel builds in its `tree_from` kernel's tree.
    let _lock = crate::kernel::lock(
        &cache.locks_dir(),
        &crate::kernel::tree_lock_name("selftests", &tree),
    )?;
    if runner.is_file() {
        return Ok(runner);
    }
    let log_path = cache.log_path(&format!("selftests-{}", entry.meta.key));
    std::fs::create_dir_all(log_path.parent().expect("logs dir"))?;
    let mut log = std::fs::File::create(&log_path)
        .with_context(|| format!("creating {}", log_path.display()))?;
    progress.stage(&format!("building {DIR} of kernel {}", entry.meta.key));
    let mut make = SupervisedCommand::new("make", Terminal::Detached);
    make.arg("-C")
        .arg(&src)
        .args(["CC=gcc", "CLANG=clang-19", "LLVM_STRIP=llvm-strip-19"])
        .arg(format!(
            "-j{}",
            std::thread::available_parallelism().map_or(2, |n| n.get())
        ));
    run_logged(
        make,
        &format!("make -C {DIR}"),
        &mut log,
        &log_path,
        progress,
    )?;
    drop(log);
    install_dir(&dest, |staging| {
        std::fs::copy(src.join("runner"), staging.join("runner")).with_context(|| {
            format!("copying {}/runner (did the build make it?)", src.display())
        })?;
        std::fs::copy(&log_path, staging.join("build.log"))?;
        Ok(())
    })?;
    Ok(runner)
}

/// The failures of a kernel's own selftests that are known, written down
/// with their evidence (`kernel-config/selftests.yaml`, embedded).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Known {
    #[serde(default)]
    pub known: Vec<KnownFailure>,
}

/// One known failure: a test of a kernel that fails there, and why.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KnownFailure {
    pub kernel: String,
    pub test: String,
    /// What fails and the evidence, for people.
    pub reason: String,
}

/// Where the known failures come from, for messages.
pub const KNOWN_FILE: &str = "kernel-config/selftests.yaml";
const KNOWN_TEXT: &str = include_str!("../../kernel-config/selftests.yaml");

impl Known {
    pub fn load() -> Result<Known> {
        Self::parse(KNOWN_FILE, KNOWN_TEXT)
    }

    pub fn parse(origin: &str, text: &str) -> Result<Known> {
        let k: Known = crate::datafile::parse_yaml(
            Path::new(origin),
            text,
            "see kernel-config/README.md (the selftests)",
        )?;
        let catalog = crate::kernel::Catalog::embedded();
        for f in &k.known {
            catalog.require(&f.kernel)?;
            if f.reason.trim().is_empty() {
                return Err(fail(
                    Failure::BadInput,
                    format!("{origin}: the known failure of {} on {} has no reason\n  fix: write what fails and the evidence", f.test, f.kernel),
                ));
            }
        }
        Ok(k)
    }

    /// The known failure of `test` on kernel `kernel`, if written down.
    pub fn get(&self, kernel: &str, test: &str) -> Option<&KnownFailure> {
        self.known
            .iter()
            .find(|k| k.kernel == kernel && k.test == test)
    }
}

/// What one VM running the whole suite gave back.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SuiteRun {
    pub outcomes: BTreeMap<String, Outcome>,
    /// How the VM ended (`vm::Outcome`, for people) and where its console is.
    pub vm_outcome: String,
    pub console_log: PathBuf,
    /// The runner's last lines, for a test the suite never reached.
    pub tail: Vec<String>,
}

/// Boots `entry` and runs the whole suite in it (`runner -q`), each test's
/// outcome read from the output. A test missing from the result was not
/// reached (the VM crashed or ran out of time before it): `SuiteRun` says
/// how the VM ended.
///
/// `shape` sets the VM's accelerator, vCPUs and memory (`VmSpec::new`'s
/// defaults otherwise); its kernel, work directory, command and timeout are
/// replaced.
pub fn run_suite(
    entry: &Entry,
    runner: &Path,
    work: &Path,
    timeout: Duration,
    shape: Option<&VmSpec>,
) -> Result<SuiteRun> {
    let command = GuestCommand::Exec(vec![runner.display().to_string(), "-q".into()]);
    let mut spec = match shape {
        Some(s) => {
            let mut s = s.clone();
            s.kernel = entry.bzimage();
            s.work_dir = work.to_path_buf();
            s.command = command;
            s
        }
        None => VmSpec::new(entry.bzimage(), work.to_path_buf(), command),
    };
    spec.timeout = Some(timeout);
    let r: VmResult = vm::run(&spec)?;
    let outcomes = parse(&r.stdout);
    let lines: Vec<&str> = r.stdout.lines().collect();
    Ok(SuiteRun {
        outcomes,
        vm_outcome: format!("{:?}", r.outcome),
        console_log: r.console_log.clone(),
        tail: lines[lines.len().saturating_sub(20)..]
            .iter()
            .map(|s| s.to_string())
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_runners_blocks_are_read_per_test() {
        let out = "===== START =====\nTEST: minimal\nOUTPUT:\n=====  END  =====\n\
ok 1 minimal # \n=====  END  =====\n\
===== START =====\nTEST: select_cpu_dfl\nOUTPUT:\nERR: select_cpu_dfl.c:42\nExpected skel (0)\nnot ok 2 select_cpu_dfl # \n=====  END  =====\n\
===== START =====\nTEST: numa\nOUTPUT:\nok 3 numa # SKIP \n=====  END  =====\n\n\n=============================\n\nRESULTS:\n\nPASSED:  1\n";
        let r = parse(out);
        assert_eq!(r.len(), 3, "{r:?}");
        assert_eq!(r["minimal"].status, Status::Pass);
        assert_eq!(r["numa"].status, Status::Skip);
        assert_eq!(r["select_cpu_dfl"].status, Status::Fail);
        assert!(r["select_cpu_dfl"]
            .output
            .iter()
            .any(|l| l.contains("select_cpu_dfl.c:42")));
        // A test that never printed its result is not in the map.
        assert!(!parse("===== START =====\nTEST: hung\nOUTPUT:\n").contains_key("hung"));
    }

    #[test]
    fn names_come_from_the_sources() {
        let dir = tempfile::tempdir().unwrap();
        let sx = dir.path().join(DIR);
        std::fs::create_dir_all(&sx).unwrap();
        std::fs::write(
            sx.join("minimal.c"),
            "struct scx_test minimal = {\n\t.name = \"minimal\",\n\t.description = \"d\",\n};\nREGISTER_SCX_TEST(&minimal)\n",
        )
        .unwrap();
        std::fs::write(sx.join("minimal.bpf.c"), ".name = \"not a test\"\n").unwrap();
        std::fs::write(sx.join("util.c"), ".name = \"no register\"\n").unwrap();
        assert_eq!(names(dir.path()).unwrap(), ["minimal"]);
    }
}
