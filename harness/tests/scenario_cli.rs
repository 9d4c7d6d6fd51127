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
    assert!(
        out.contains("(matrix: ") && out.contains(" default ") && out.contains(" apps "),
        "{out}"
    );
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

/// A file system without room for the run's results is reported before
/// anything boots, and leaves no empty run directory behind. (An 8 MiB
/// tmpfs, mounted in a private user and mount namespace: no root needed.)
#[test]
fn run_refuses_a_full_file_system_before_booting() {
    let dir = tempfile::tempdir().unwrap();
    let kernel = fake_bzimage(dir.path());
    let small = dir.path().join("small");
    std::fs::create_dir(&small).unwrap();
    let script = "d=$1; mount -t tmpfs -o size=8m tmpfs \"$d\" && shift && \"$@\"; rc=$?; \
                  if [ -e \"$d/run\" ]; then echo 'run directory left behind' >&2; fi; exit $rc";
    let (code, _, err) = run(std::process::Command::new("unshare")
        .args([
            "--user",
            "--map-root-user",
            "--mount",
            "sh",
            "-c",
            script,
            "sh",
        ])
        .arg(&small)
        .arg(env!("CARGO_BIN_EXE_scx-harness"))
        .args(["run", "-s", "default", "idle-baseline", "--kernel"])
        .arg(&kernel)
        .arg("--out")
        .arg(small.join("run"))
        .env("SCX_HARNESS_CACHE", dir.path()));
    assert_eq!(code, BAD_INPUT, "{err}");
    assert!(
        err.contains("MiB free; 1 cell(s) need about 17 MiB") && err.contains("fix:"),
        "{err}"
    );
    assert!(!err.contains("booting"), "{err}");
    assert!(!err.contains("left behind"), "{err}");
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

/// Peak resident memory of the children reaped so far, in bytes.
fn children_max_rss() -> u64 {
    // SAFETY: getrusage fills the struct it is given.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut u) };
    u.ru_maxrss as u64 * 1024
}

/// Input built to be expensive: 10,000 groups, a file past the size limit,
/// bytes that are not UTF-8, a YAML "billion laughs". Each is one clear
/// error, quickly, and the harness's memory stays bounded.
#[test]
fn hostile_scenarios_and_matrices_are_refused_in_bounded_memory() {
    let dir = tempfile::tempdir().unwrap();
    let mut groups = String::from("name: many\ndescription: d\nduration: 5s\ngroups:\n");
    for i in 0..10_000 {
        groups.push_str(&format!("  - {{ name: g{i}, work: {{ kind: spin }} }}\n"));
    }
    let many = write(dir.path(), "many.yaml", &groups);
    let huge = write(dir.path(), "huge.yaml", &"#".repeat(3 << 20));
    let binary = dir.path().join("binary.yaml");
    std::fs::write(&binary, b"name: caf\xe9\ndescription: d\n").unwrap();
    // Nine levels of nine aliases, where the parser keeps any YAML value
    // (a command's argv): 387 million strings if expanded.
    let mut bomb = String::from(
        "name: bomb\ndescription: d\nduration: 5s\ngroups:\n  - { name: g0, work: { kind: command, argv: &a0 [lol] } }\n",
    );
    for i in 1..10 {
        let prev = format!("*a{}", i - 1);
        bomb.push_str(&format!(
            "  - {{ name: g{i}, work: {{ kind: command, argv: &a{i} [{}] }} }}\n",
            vec![prev; 9].join(", ")
        ));
    }
    let bomb = write(dir.path(), "bomb.yaml", &bomb);
    let bad_matrix = dir.path().join("matrix.yaml");
    std::fs::write(&bad_matrix, b"suites:\n  x:\n    description: \xff\xfe\n").unwrap();

    let cases: [(&std::path::Path, &str); 5] = [
        (&many, "10000 groups: at most 32"),
        (&huge, "data files are at most 1048576 bytes"),
        (&binary, ":1:10: not UTF-8 text"),
        (&bomb, "an argument must be a string or a number"),
        (&bad_matrix, ":3:18: not UTF-8 text"),
    ];
    for (file, says) in cases {
        let began = std::time::Instant::now();
        let (code, _, err) = run(harness(dir.path()).arg("check").arg(file));
        assert_eq!(code, BAD_INPUT, "{}: {err}", file.display());
        assert!(
            err.contains(&file.display().to_string()) && err.contains(says),
            "{}: expected {says:?} in:\n{err}",
            file.display()
        );
        assert!(err.contains("fix:"), "{err}");
        assert!(err.lines().count() <= 4, "more than one error:\n{err}");
        assert!(
            began.elapsed() < std::time::Duration::from_secs(10),
            "{}: took {:?}",
            file.display(),
            began.elapsed()
        );
    }
    let peak = children_max_rss();
    assert!(peak < 200 << 20, "peak RSS {} MiB", peak >> 20);
}
