//! `scx-harness record` on this machine's own kernel (BPF and BTF, no
//! sched_ext): a program with a known duty cycle (5 ms of CPU time, then
//! 20 ms asleep) recorded by its PID becomes a scenario whose replay group
//! carries that cycle, and which `check` accepts; replayed in a VM of the
//! test kernel, `replay-check` scores it within its marks, and a recorded
//! figure doubled is caught; bad selections are refused before
//! anything is loaded, and a selection that does nothing writes no file.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};

/// A Python program named `duty` (its comm) that burns 5 ms of its own
/// CPU time, sleeps 20 ms, and again, for a minute at most.
const DUTY: &str = r#"
import ctypes, time
ctypes.CDLL(None).prctl(15, b"duty", 0, 0, 0)
end = time.monotonic() + 60
while time.monotonic() < end:
    t = time.thread_time()
    while time.thread_time() - t < 0.005:
        pass
    time.sleep(0.02)
"#;

/// Kills the child when dropped (a failed assertion leaves nothing).
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn micros(v: &serde_yaml::Value) -> u128 {
    scx_harness::units::parse_duration(v.as_str().unwrap())
        .unwrap()
        .as_micros()
}

/// Records the duty program for 3 s into `out`; the scenario's text.
fn record_duty(dir: &Path, out: &Path) -> String {
    let duty = Killed(
        // Debian's own interpreter: a wrapper (pyenv's shims are bash
        // scripts) would be recorded too.
        Command::new("/usr/bin/python3")
            .args(["-c", DUTY])
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let (code, stdout, stderr) = common::run(
        common::harness(&dir.join("cache"))
            .args(["record", "--duration", "3s", "-o"])
            .arg(out)
            .args(["--pid", &duty.0.id().to_string()]),
    );
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    assert!(stdout.contains("0 event(s) lost"), "{stdout}");
    std::fs::read_to_string(out).unwrap()
}

#[test]
fn a_recorded_duty_cycle_becomes_a_replay_scenario_that_check_accepts() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("duty-capture.yaml");
    let text = record_duty(dir.path(), &out);
    let y: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
    assert_eq!(y["name"].as_str(), Some("duty-capture"));
    let groups = y["groups"].as_sequence().unwrap();
    assert_eq!(groups.len(), 1, "{text}");
    let g = &groups[0];
    assert_eq!(g["name"].as_str(), Some("duty"), "{text}");
    assert_eq!(g["work"]["kind"].as_str(), Some("replay"), "{text}");
    let run = g["work"]["run"].as_sequence().unwrap();
    let sleep = g["work"]["sleep"].as_sequence().unwrap();
    assert_eq!((run.len(), sleep.len()), (21, 21), "{text}");
    // The medians are the program's cycle: a burst is the CPU time it
    // asked for (plus the interpreter's loop), a sleep what it slept
    // (plus timer slack and the wakeup's delay).
    let (burst, slept) = (micros(&run[10]), micros(&sleep[10]));
    assert!(
        (4_500..8_000).contains(&burst),
        "median burst {burst} us\n{text}"
    );
    assert!(
        (19_000..26_000).contains(&slept),
        "median sleep {slept} us\n{text}"
    );
    let rec = &y["recorded"][0];
    assert_eq!(rec["group"].as_str(), Some("duty"), "{text}");
    // 5 ms of each 25 ms cycle: a fifth of a CPU, 40 bursts a second
    // (less the interpreter's overhead and the wakeups' delays).
    let busy = rec["cpus_busy"].as_f64().unwrap();
    let rate = rec["bursts_per_s"].as_f64().unwrap();
    assert!((0.15..0.3).contains(&busy), "{text}");
    assert!((30.0..42.0).contains(&rate), "{text}");
    let (code, stdout, stderr) = common::run(
        common::harness(&dir.path().join("cache"))
            .arg("check")
            .arg(&out),
    );
    assert_eq!(code, Some(0), "check: {stdout}\n{stderr}");
}

#[test]
fn record_refuses_a_selection_it_cannot_record_and_writes_nothing_for_one_that_does_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let never = dir.path().join("never.yaml");
    let cases: &[(&[&str], &str)] = &[
        (&["--pid", "999999999"], "--pid 999999999: no such process"),
        (&["--cgroup", "/no/such/cgroup"], "is not a cgroup v2"),
        (&["--comm", "(unclosed"], "not a regular expression"),
    ];
    for (args, says) in cases {
        common::assert_refused(
            common::harness(&dir.path().join("cache"))
                .args(["record", "--duration", "1s", "-o"])
                .arg(&never)
                .args(*args),
            says,
            &never,
        );
    }
    // A process that sleeps the whole time: nothing to replay.
    let asleep = Killed(Command::new("sleep").arg("60").spawn().unwrap());
    common::assert_refused(
        common::harness(&dir.path().join("cache"))
            .args(["record", "--duration", "1s", "-o"])
            .arg(&never)
            .args(["--pid", &asleep.0.id().to_string()]),
        "nothing recorded",
        &never,
    );
    // Not root: no BPF, said before anything is loaded (69).
    let mut cmd = Command::new("setpriv");
    cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(env!("CARGO_BIN_EXE_scx-harness"))
        .args(["record", "--all", "--duration", "1s", "-o"])
        .arg(&never);
    let (code, _, stderr) = common::run(&mut cmd);
    assert_eq!(code, Some(69), "{stderr}");
    assert!(stderr.contains("needs root"), "{stderr}");
    // No selection at all: clap's usage error.
    let (code, _, stderr) = common::run(
        common::harness(&dir.path().join("cache"))
            .args(["record", "-o"])
            .arg(&never),
    );
    assert_eq!(code, Some(2), "{stderr}");
    assert!(!Path::new(&never).exists());
}

/// The fidelity of `out`'s replay, and replay-check's exit code.
fn replay_check(dir: &Path, scenario: &Path, name: &str) -> (Option<i32>, serde_json::Value) {
    let rc = dir.join(name);
    let (code, stdout, stderr) = common::run(
        common::harness(&dir.join("cache"))
            .arg("replay-check")
            .arg(scenario)
            .arg("--kernel")
            .arg(common::test_kernel())
            .arg("--out")
            .arg(&rc),
    );
    eprintln!("{stdout}\n{stderr}");
    let json = std::fs::read(rc.join("fidelity.json"))
        .unwrap_or_else(|e| panic!("{e}: {stdout}\n{stderr}"));
    (code, serde_json::from_slice(&json).unwrap())
}

/// Recorded here, replayed in a VM of the test kernel under the fair
/// class: the duty cycle's CPU use and burst rate are reproduced within
/// their marks; the same file with its recorded burst rate doubled (a
/// replay that made half the bursts it should) is caught.
#[test]
fn vm_a_recorded_duty_cycle_replays_within_its_marks_and_a_wrong_figure_is_caught() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("duty-capture.yaml");
    let text = record_duty(dir.path(), &out);
    let (code, f) = replay_check(dir.path(), &out, "replay");
    assert_eq!(code, Some(0), "{f:#}");
    let figures = f["groups"][0]["figures"].as_array().unwrap();
    for name in ["cpus_busy", "bursts_per_s"] {
        let x = figures.iter().find(|x| x["name"] == name).unwrap();
        assert!(x["score"].as_f64().unwrap() >= 0.75, "{f:#}");
    }
    // The same recording, its burst rate doubled.
    let mut y: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
    let rate = y["recorded"][0]["bursts_per_s"].as_f64().unwrap();
    y["recorded"][0]["bursts_per_s"] = serde_yaml::Value::from(rate * 2.0);
    let wrong = dir.path().join("duty-wrong.yaml");
    std::fs::write(&wrong, serde_yaml::to_string(&y).unwrap()).unwrap();
    let (code, f) = replay_check(dir.path(), &wrong, "wrong");
    assert_eq!(code, Some(1), "{f:#}");
    let bursts = f["groups"][0]["figures"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["name"] == "bursts_per_s")
        .unwrap()
        .clone();
    assert_eq!(bursts["pass"], false, "{f:#}");
    assert!(bursts["score"].as_f64().unwrap() < 0.6, "{f:#}");
}
