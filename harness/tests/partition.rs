//! Scale-out with nextest's own mechanism: the matrix is archived once
//! (`cargo nextest archive`) and run as partitions from the archive, as
//! several CI runners would. The partitions cover the matrix exactly once;
//! two of them run a small matrix for real from the archive.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

/// `cargo nextest ARGS` in the workspace. Each call builds what `cargo ci
/// test` builds, every test target of the whole workspace, and picks the
/// matrix with a filterset: `-p scx-harness` alone unifies features
/// differently and rebuilt 28 crates (108 s from a fresh clone), and so
/// did `--test matrix` (19 crates here, bindgen, clap, serde and
/// libbpf-cargo among them: the other members' dev-dependencies' features
/// left out; 73 to 82 s in each fresh-clone CI).
fn nextest(args: &[&str], env: &[(&str, &str)]) -> (bool, String, String) {
    let root = scx_harness::paths::workspace_root();
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(&root).arg("nextest").args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("cargo nextest");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The matrix tests a partition of the archive holds.
fn listed(archive: &Path, partition: Option<&str>, env: &[(&str, &str)]) -> BTreeSet<String> {
    let a = archive.display().to_string();
    let root = scx_harness::paths::workspace_root().display().to_string();
    let mut args = vec![
        "list",
        "--archive-file",
        &a,
        "--workspace-remap",
        &root,
        "-E",
        "binary(matrix)",
        "--message-format",
        "oneline",
    ];
    if let Some(p) = partition {
        args.extend(["--partition", p]);
    }
    let (ok, out, err) = nextest(&args, env);
    assert!(ok, "{err}");
    out.lines()
        .filter_map(|l| l.split_whitespace().last())
        .filter(|n| n.starts_with("matrix::"))
        .map(str::to_string)
        .collect()
}

#[test]
fn vm_partitions_of_an_archive_cover_the_matrix_once() {
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("matrix.tar.zst");
    let a = archive.display().to_string();
    let (ok, _, err) = nextest(
        &[
            "archive",
            "--workspace",
            "-E",
            "binary(matrix)",
            "--archive-file",
            &a,
        ],
        &[],
    );
    assert!(ok, "cargo nextest archive failed:\n{err}");

    // The default suite, in three partitions: each test in exactly one.
    let all = listed(&archive, None, &[]);
    assert!(all.len() > 10, "{all:?}");
    let parts: Vec<BTreeSet<String>> = (1..=3)
        .map(|k| listed(&archive, Some(&format!("hash:{k}/3")), &[]))
        .collect();
    let union: BTreeSet<String> = parts.iter().flatten().cloned().collect();
    assert_eq!(union, all, "the partitions do not cover the matrix");
    assert_eq!(
        parts.iter().map(|p| p.len()).sum::<usize>(),
        all.len(),
        "a test is in two partitions"
    );

    // Two runners, each running its half of a two-cell matrix from the
    // archive, booting VMs for real.
    let small = [
        ("SCX_HARNESS_SCHEDULERS", "default,scx_simple"),
        ("SCX_HARNESS_SCENARIOS", "idle-baseline"),
    ];
    let root = scx_harness::paths::workspace_root().display().to_string();
    let mut ran = BTreeSet::new();
    for k in 1..=2 {
        let part = format!("count:{k}/2");
        let (ok, out, err) = nextest(
            &[
                "run",
                "--archive-file",
                &a,
                "--workspace-remap",
                &root,
                "-E",
                "binary(matrix)",
                "--partition",
                &part,
                "--no-fail-fast",
            ],
            &small,
        );
        assert!(ok, "partition {part} failed:\n{out}\n{err}");
        for l in err.lines().chain(out.lines()) {
            if l.trim_start().starts_with("PASS") {
                if let Some(name) = l.split_whitespace().last() {
                    assert!(ran.insert(name.to_string()), "{name} ran twice");
                }
            }
        }
    }
    assert_eq!(
        ran,
        [
            "matrix::lts::default::idle_baseline",
            "matrix::lts::scx_simple::idle_baseline"
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    );
}

/// A matrix naming a scheduler the registry does not know fails the
/// listing itself (what nextest shows first), naming the file, the line
/// and the known schedulers; nothing is built or booted.
#[test]
fn a_matrix_with_an_unknown_scheduler_fails_the_listing() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("matrix.yaml");
    std::fs::write(
        &bad,
        "suites:\n  default:\n    description: d\n    schedulers: [scx_nope]\n    scenarios: all\n",
    )
    .unwrap();
    let bad_s = bad.display().to_string();
    let (ok, out, err) = nextest(
        &["list", "--workspace", "-E", "binary(matrix)"],
        &[("SCX_HARNESS_MATRIX", &bad_s)],
    );
    assert!(!ok, "listing succeeded:\n{out}");
    assert!(err.contains(&format!("{bad_s}:2:")), "{err}");
    assert!(err.contains("unknown scheduler \"scx_nope\""), "{err}");
    assert!(err.contains("scx_simple"), "the known ones: {err}");
}
