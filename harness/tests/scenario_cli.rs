//! `scx-harness check` and `run` on bad input: one clear error, the right
//! exit code, and no VM booted.

mod common;

use common::{fake_bzimage, harness, run};

const BAD_INPUT: Option<i32> = Some(65);

fn write(dir: &std::path::Path, name: &str, text: &str) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn check_accepts_every_bundled_scenario() {
    let dir = tempfile::tempdir().unwrap();
    let (code, out, err) = run(harness(dir.path()).arg("check"));
    assert_eq!(code, Some(0), "{err}");
    let names = scx_harness::scenario::bundled_names();
    assert!(names.len() >= 8, "{names:?}");
    for n in &names {
        assert!(out.contains(&format!("({n}:")), "{n} missing:\n{out}");
    }
}

/// `check scenarios/*.yaml` takes in the matrix file too: it is checked
/// as a matrix (every suite against the registry and the scenarios).
#[test]
fn check_checks_a_matrix_file_as_a_matrix() {
    let dir = tempfile::tempdir().unwrap();
    let bundled = scx_harness::matrix::Matrix::default_path();
    let (code, out, err) = run(harness(dir.path()).arg("check").arg(&bundled));
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("(matrix: default "), "{out}");
    let bad = write(
        dir.path(),
        "matrix.yaml",
        "suites:\n  x:\n    description: d\n    schedulers: [no_such_sched]\n    scenarios: all\n",
    );
    let (code, _, err) = run(harness(dir.path()).arg("check").arg(&bad));
    assert_eq!(code, BAD_INPUT, "{err}");
    assert!(err.contains(&format!("{}:2:", bad.display())), "{err}");
    assert!(err.contains("unknown scheduler \"no_such_sched\""), "{err}");
}

#[test]
fn check_names_file_line_and_column_and_lists_the_work_kinds() {
    let dir = tempfile::tempdir().unwrap();
    let f = write(
        dir.path(),
        "bad.yaml",
        "name: bad\ndescription: d\nduration: 5s\ngroups:\n  - { name: a, work: { kind: spinning } }\n",
    );
    let (code, _, err) = run(harness(dir.path()).arg("check").arg(&f));
    assert_eq!(code, BAD_INPUT, "{err}");
    assert!(err.contains(&format!("{}:5:", f.display())), "{err}");
    assert!(err.contains("unknown variant `spinning`"), "{err}");
    assert!(
        err.contains("`pingpong`") && err.contains("`fork_exit`"),
        "{err}"
    );
}

#[test]
fn check_rejects_a_command_that_is_not_installed_before_any_vm() {
    let dir = tempfile::tempdir().unwrap();
    let f = write(
        dir.path(),
        "cmd.yaml",
        "name: cmd\ndescription: d\nduration: 5s\ngroups:\n  - name: ext\n    work: { kind: command, argv: [schbench-not-here, -t, 2] }\n",
    );
    let (code, _, err) = run(harness(dir.path()).arg("check").arg(&f));
    assert_eq!(code, BAD_INPUT, "{err}");
    assert!(err.contains(&format!("{}:5", f.display())), "{err}");
    assert!(
        err.contains("\"schbench-not-here\" is not installed"),
        "{err}"
    );
    // run refuses it the same way, before building or booting anything.
    let kernel = fake_bzimage(dir.path());
    let (code, _, err) = run(harness(dir.path())
        .args(["run", "-s", "default", "--kernel"])
        .arg(&kernel)
        .arg("--out")
        .arg(dir.path().join("runs"))
        .arg(&f));
    assert_eq!(code, BAD_INPUT, "{err}");
    assert!(
        !dir.path().join("runs").exists(),
        "a run directory was created"
    );
}

#[test]
fn run_refuses_an_existing_or_unwritable_run_directory_before_booting() {
    let dir = tempfile::tempdir().unwrap();
    let kernel = fake_bzimage(dir.path());
    let existing = dir.path().join("old-run");
    std::fs::create_dir(&existing).unwrap();
    let (code, _, err) = run(harness(dir.path())
        .args(["run", "-s", "default", "idle-baseline", "--kernel"])
        .arg(&kernel)
        .arg("--out")
        .arg(&existing));
    assert_eq!(code, BAD_INPUT, "{err}");
    assert!(
        err.contains("already exists; results are never overwritten"),
        "{err}"
    );
    let (code, _, err) = run(harness(dir.path())
        .args(["run", "-s", "default", "idle-baseline", "--kernel"])
        .arg(&kernel)
        .args(["--out", "/proc/scx-harness-cannot-write-here"]));
    assert_eq!(code, BAD_INPUT, "{err}");
    assert!(err.contains("cannot create the run directory"), "{err}");
    assert!(!err.contains("booting"), "{err}");
}

#[test]
fn an_unknown_scenario_name_lists_the_bundled_ones() {
    let dir = tempfile::tempdir().unwrap();
    let (code, _, err) = run(harness(dir.path()).args(["check", "no-such-scenario"]));
    assert_eq!(code, BAD_INPUT, "{err}");
    assert!(
        err.contains("idle-baseline") && err.contains("wake-pingpong"),
        "{err}"
    );
}
