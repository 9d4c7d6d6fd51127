//! `scx-harness dev` end to end, in one real VM: a copy of scx_local's BPF
//! source is edited three times while `dev` watches it (a good change, a
//! change that does not compile, a change that adds a dispatch delay), and
//! the loop is driven through its stdin and read from its stdout, as a
//! person at a terminal would.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

/// idle-baseline's three nappers in 3 s (a 500 ms warm-up), with what
/// every scheduler owes the whole guest.
/// Runs per build: 4 against the previous build's 8 are the fewest with
/// which the scenario's three key metrics, tested together, can be called
/// worse at 0.05 (3 against 6 give p = 3 x 2/84 at best).
const RUNS: usize = 4;

const QUICK: &str = "name: dev-quick
description: three tasks wake every 2 to 10 ms for 200 us of work
duration: 3s
warmup: 500ms
seed: 1
groups:
  - name: nappers
    threads: 3
    work: { kind: sleepy, run: 200us, min_sleep: 2ms, max_sleep: 10ms }
checks:
  - stall: { max_runnable: 2s, tasks: guest }
  - scheduler_healthy: {}
";

/// `dev`'s stdout, line by line, with everything read so far kept for
/// failure messages.
struct Out {
    rx: Receiver<String>,
    seen: Vec<String>,
    /// Where dev's stderr goes, shown when a line never comes.
    stderr: std::path::PathBuf,
}

impl Out {
    /// Lines up to and including build `n`'s verdict (`build N: pass`,
    /// `FAIL ...`, `ERROR ...`, or `FAILED` to build).
    fn verdict(&mut self, n: usize, within: Duration, child: &mut Child) -> Vec<String> {
        let at = format!("build {n}: ");
        let mut got = Vec::new();
        loop {
            let mut more = self.until(&at, within, child);
            let last = more.last().unwrap()[at.len()..].to_string();
            got.append(&mut more);
            if !last.starts_with("built in") {
                return got;
            }
        }
    }

    /// Lines up to and including the first that starts with `prefix`.
    fn until(&mut self, prefix: &str, within: Duration, child: &mut Child) -> Vec<String> {
        let deadline = Instant::now() + within;
        let mut got = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(l) => {
                    self.seen.push(l.clone());
                    let done = l.starts_with(prefix);
                    got.push(l);
                    if done {
                        return got;
                    }
                }
                Err(RecvTimeoutError::Timeout) | Err(RecvTimeoutError::Disconnected) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!(
                        "no line starting {prefix:?} within {within:?}; dev said:\n{}\nstderr:\n{}",
                        self.seen.join("\n"),
                        std::fs::read_to_string(&self.stderr).unwrap_or_default()
                    );
                }
            }
        }
    }
}

fn edit(file: &Path, f: impl FnOnce(String) -> String) {
    let text = std::fs::read_to_string(file).unwrap();
    std::fs::write(file, f(text)).unwrap();
}

#[test]
fn vm_dev_rebuilds_on_each_save_keeps_the_vm_and_calls_a_delay_worse() {
    let kernel = common::test_kernel();
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    std::fs::create_dir(&src).unwrap();
    let file = src.join("scx_local.bpf.c");
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../schedulers/bpf/scx_local.bpf.c"),
        &file,
    )
    .unwrap();
    let scenario = dir.path().join("quick.yaml");
    std::fs::write(&scenario, QUICK).unwrap();
    let run = dir.path().join("run");
    let stderr = std::fs::File::create(dir.path().join("stderr")).unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_scx-harness"))
        .args(["dev", "scx_local", "--tree"])
        .arg(&src)
        .arg(&scenario)
        .args(["--runs", &RUNS.to_string(), "--out"])
        .arg(&run)
        .arg("--kernel")
        .arg(&kernel)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for l in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(l).is_err() {
                return;
            }
        }
    });
    let mut out = Out {
        rx,
        seen: Vec::new(),
        stderr: dir.path().join("stderr"),
    };
    let long = Duration::from_secs(240);

    // The first build, as the sources are.
    let first = out.verdict(1, long, &mut child);
    assert!(
        first.last().unwrap().starts_with("build 1: pass"),
        "{}",
        out.seen.join("\n")
    );

    // A good change: half the default slice.
    edit(&file, |t| {
        t.replace(
            "local_insert(p, SCX_DSQ_LOCAL, SCX_SLICE_DFL, enq_flags);",
            "local_insert(p, SCX_DSQ_LOCAL, SCX_SLICE_DFL / 2, enq_flags);",
        )
    });
    let good = out.verdict(2, long, &mut child);
    assert!(
        good.last().unwrap().starts_with("build 2: pass"),
        "{}",
        out.seen.join("\n")
    );
    assert!(
        good.iter()
            .any(|l| l.starts_with("build 2 vs build 1 (previous)")),
        "no delta against build 1:\n{}",
        out.seen.join("\n")
    );

    // A change that does not compile: the error with its file and line,
    // and the VM and build 2 kept.
    edit(&file, |t| t + "\nthis_is_not_c;\n");
    let mut broken = out.verdict(3, long, &mut child);
    broken.extend(out.until("  full log: ", long, &mut child));
    let at = format!("{}:", file.display());
    assert!(
        broken
            .iter()
            .any(|l| l.trim_start().starts_with(&at) && l.contains(": error: ")),
        "no compiler error with {at}LINE:COL:\n{}",
        out.seen.join("\n")
    );
    assert!(
        broken[0].contains("the VM and build 2 stay"),
        "{}",
        broken[0]
    );

    // A change that adds a dispatch delay: reported worse on run delay
    // than the previous build, in the same VM.
    edit(&file, |t| {
        // Every task spins 200 us in ops.running before it runs.
        common::scx_local_with_spin(&t.replace("\nthis_is_not_c;\n", ""), 200_000)
    });
    let delayed = out.verdict(4, long, &mut child);
    let verdict = delayed.last().unwrap().clone();
    let from = delayed
        .iter()
        .position(|l| l.starts_with("build 4 vs build 2 (previous)"))
        .unwrap_or_else(|| panic!("no delta against build 2:\n{}", out.seen.join("\n")));
    let p50 = delayed[from..]
        .iter()
        .find(|l| l.trim_start().starts_with("run_delay.nappers.p50"))
        .unwrap_or_else(|| panic!("no run_delay.nappers.p50:\n{}", out.seen.join("\n")));
    assert!(
        p50.ends_with("WORSE"),
        "the delay is not called worse:\n{}",
        out.seen.join("\n")
    );

    assert!(verdict.starts_with("build 4: pass"), "{verdict}");
    // One VM booted for all four builds.
    let vms = || -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(run.join("sessions"))
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };
    assert_eq!(vms(), ["vm-1"], "{}", out.seen.join("\n"));
    let console = std::fs::read_to_string(run.join("sessions/vm-1/console.log")).unwrap();
    assert_eq!(
        console.matches("Linux version").count(),
        1,
        "the guest booted more than once"
    );

    // A guest kernel crash: said, the VM booted again, and the loop
    // goes on there (the scenario crashes the first VM only: its marker
    // is in that VM's writable shared directory, which the second VM sees
    // read-only).
    let marker = run.join("sessions/vm-1/shared/crashed-once");
    let crash = dir.path().join("crash.yaml");
    std::fs::write(
        &crash,
        format!(
            "name: dev-crash\ndescription: panics the first VM on purpose\nduration: 3s\nwarmup: 500ms\n\
             groups:\n  - name: sysrq\n    work: {{ kind: command, argv: [sh, -c, 'test -e {m} || {{ touch {m}; echo c > /proc/sysrq-trigger; }}'] }}\n",
            m = marker.display()
        ),
    )
    .unwrap();
    writeln!(child.stdin.as_mut().unwrap(), "s {}", crash.display()).unwrap();
    writeln!(child.stdin.as_mut().unwrap(), "r").unwrap();
    let crashed = out.verdict(4, long, &mut child);
    assert!(
        crashed.iter().any(
            |l| l.starts_with("dev: the VM ended (the guest kernel crashed")
                && l.ends_with("booting it again")
        ),
        "{}",
        out.seen.join("\n")
    );
    assert!(
        crashed
            .last()
            .unwrap()
            .starts_with(&format!("build 4: ERROR (1 of {RUNS} run(s))")),
        "{}",
        out.seen.join("\n")
    );
    assert_eq!(vms(), ["vm-1", "vm-2"], "{}", out.seen.join("\n"));

    // Quit: the session ends, and nothing is left running.
    writeln!(child.stdin.as_mut().unwrap(), "q").unwrap();
    let tail = out.until("report: ", long, &mut child);
    let status = child.wait().unwrap();
    assert!(
        tail.iter()
            // Build 1 alone, then builds 2 and 4 and the rerun each
            // beside as many of the previous build's.
            .any(|l| l.starts_with(&format!("dev: 4 build(s), {} run(s)", 7 * RUNS))),
        "{}",
        out.seen.join("\n")
    );
    assert_eq!(status.code(), Some(0), "{}", out.seen.join("\n"));
    assert!(common::qemus_mentioning(dir.path()).is_empty());
    // The session's record: a line per build, the results document.
    let jsonl = std::fs::read_to_string(run.join("session.jsonl")).unwrap();
    assert_eq!(
        jsonl.lines().count(),
        5,
        "a line per build and the rerun:\n{jsonl}"
    );
    assert!(run.join("results.json").is_file());
    // The session replayed as a compare of builds 2 and 4, nothing booted:
    // the delay is worse there too.
    let (code, table, err) = common::run(
        std::process::Command::new(env!("CARGO_BIN_EXE_scx-harness"))
            .args(["dev", "--replay"])
            .arg(&run)
            .args(["--baseline-build", "2", "--candidate-build", "4"]),
    );
    assert_eq!(code, Some(1), "a worse candidate exits 1:\n{table}\n{err}");
    assert!(
        table
            .lines()
            .any(|l| l.trim_start().starts_with("run_delay.nappers.p50") && l.contains("WORSE")),
        "{table}"
    );
    assert!(run.join("replay-2-4.json").is_file());
    eprintln!("{}", out.seen.join("\n"));
}
