//! `scx-harness bisect` end to end: a git repository made here holds
//! scx_local's BPF source over nine commits; the fifth after the good end
//! adds a 1 ms spin to `ops.running` (every run delay grows by it), the
//! sixth does not compile and the seventh mends it. bisect names the fifth,
//! in one VM, skipping the sixth as `git bisect skip` would, and leaves the
//! repository as it was. Bad ends are said so before anything is searched.

mod common;

use std::path::Path;
use std::process::Command;

#[test]
fn vm_bisect_names_the_commit_that_added_a_dispatch_delay() {
    let kernel = common::test_kernel();
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("tree");
    std::fs::create_dir(&tree).unwrap();
    let ids = common::bisect_repo(&tree);
    let scenario = dir.path().join("quick.yaml");
    std::fs::write(&scenario, common::BISECT_QUICK).unwrap();
    let out = dir.path().join("run");
    let (code, stdout, stderr) = common::run(
        Command::new(env!("CARGO_BIN_EXE_scx-harness"))
            .args(["bisect", "scx_local"])
            .arg(&scenario)
            .arg("--tree")
            .arg(&tree)
            .args(["--good", &ids[0], "--bad", "main", "--out"])
            .arg(&out)
            .arg("--kernel")
            .arg(&kernel),
    );
    let all = format!("{stdout}\n{stderr}");
    assert_eq!(code, Some(0), "{all}");
    assert!(
        stdout.contains(&format!("first bad commit: {}", ids[5])),
        "{all}"
    );
    assert!(stdout.contains("spin in running"), "{all}");
    // The commit that does not build was skipped, and said so.
    assert!(
        stdout.lines().any(|l| l.starts_with("skip ")
            && l.contains("break the build")
            && l.contains("did not build")),
        "{all}"
    );
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("bisect.json")).unwrap()).unwrap();
    assert_eq!(report["result"], "found", "{report:#}");
    assert_eq!(report["first_bad"]["id"], ids[5].as_str(), "{report:#}");
    let steps = report["steps"].as_array().unwrap();
    // The ends, then at most log2(8) = 3 steps and the one skipped.
    let between: Vec<&serde_json::Value> = steps
        .iter()
        .filter(|s| s["step"] != 0 && s["step"] != 8)
        .collect();
    assert!(between.len() <= 4, "{report:#}");
    assert_eq!(
        between.iter().filter(|s| s["mark"] == "skip").count(),
        1,
        "{report:#}"
    );
    let bad = steps.iter().find(|s| s["step"] == 5).unwrap();
    assert_eq!(bad["mark"], "bad", "{report:#}");
    let why = bad["why"][0][1]["why"].as_str().unwrap();
    assert!(why.contains("run_delay"), "the failing check: {why}");
    // One VM for the whole search.
    let vms: Vec<_> = std::fs::read_dir(out.join("sessions"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .collect();
    assert_eq!(vms, ["vm-1"], "{all}");
    // The repository is as it was: on main, clean, one worktree.
    assert_eq!(common::git(&tree, &["rev-parse", "HEAD"]), ids[8]);
    assert_eq!(common::git(&tree, &["status", "--porcelain"]), "");
    assert_eq!(
        common::git(&tree, &["worktree", "list", "--porcelain"])
            .matches("worktree ")
            .count(),
        1
    );
    assert!(common::qemus_mentioning(dir.path()).is_empty());

    // A good end that is in fact bad: said so, nothing searched, exit 1.
    let out2 = dir.path().join("run2");
    let (code, stdout, stderr) = common::run(
        Command::new(env!("CARGO_BIN_EXE_scx-harness"))
            .args(["bisect", "scx_local"])
            .arg(&scenario)
            .arg("--tree")
            .arg(&tree)
            .args(["--good", &ids[5], "--bad", &ids[8], "--out"])
            .arg(&out2)
            .arg("--kernel")
            .arg(&kernel),
    );
    assert_eq!(code, Some(1), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("is in fact bad") && stdout.contains("spin in running"),
        "{stdout}\n{stderr}"
    );
    // Its build was cached by the first search.
    assert!(stdout.contains("built before (cached)"), "{stdout}");
}

#[test]
fn revisions_that_are_not_commits_or_out_of_order_are_refused_before_anything_runs() {
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("tree");
    std::fs::create_dir(&tree).unwrap();
    common::git(&tree, &["init", "-q", "-b", "main"]);
    for i in 0..3 {
        std::fs::write(tree.join("f"), i.to_string()).unwrap();
        common::git(&tree, &["add", "f"]);
        common::git(&tree, &["commit", "-q", "-m", &format!("c{i}")]);
    }
    let cases: &[(&[&str], &str)] = &[
        (
            &["--good", "nosuch", "--bad", "main"],
            "--good nosuch: not a commit",
        ),
        (
            &["--good", "main", "--bad", "main~2"],
            "is not an ancestor of --bad",
        ),
        (&["--good", "main", "--bad", "main"], "the same commit"),
        (
            &["--good", "main~2", "--bad", "main", "--metric", "x"],
            "--metric decides only with --bad-if worse",
        ),
        (
            &[
                "--good", "main~2", "--bad", "main", "--bad-if", "worse", "--runs", "2",
            ],
            "cannot reach p < 0.05",
        ),
    ];
    for (args, says) in cases {
        let never = dir.path().join("never");
        common::assert_refused(
            common::harness(&dir.path().join("cache"))
                .args(["bisect", "scx_local", "--tree"])
                .arg(&tree)
                .args(*args)
                .arg("--out")
                .arg(&never),
            says,
            &never,
        );
    }
}

/// Over a kernel tree each step boots its own kernel: the host target and
/// a --kernel of its own are refused, and so is a directory that is not a
/// git repository, before anything is built or booted.
#[test]
fn a_kernel_tree_search_refuses_what_it_cannot_do_before_anything_runs() {
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("linux");
    std::fs::create_dir(&tree).unwrap();
    common::git(&tree, &["init", "-q", "-b", "main"]);
    for i in 0..3 {
        std::fs::write(tree.join("Makefile"), i.to_string()).unwrap();
        common::git(&tree, &["add", "Makefile"]);
        common::git(&tree, &["commit", "-q", "-m", &format!("c{i}")]);
    }
    let plain = dir.path().join("plain");
    std::fs::create_dir(&plain).unwrap();
    let cases: &[(&Path, &[&str], &str)] = &[
        (
            &tree,
            &["--target", "host"],
            "the host target runs on the kernel it has",
        ),
        (&tree, &["--kernel", "lts"], "--kernel would name another"),
        (&plain, &[], "--good main~2: not a commit of"),
    ];
    for (t, args, says) in cases {
        let never = dir.path().join("never");
        common::assert_refused(
            common::harness(&dir.path().join("cache"))
                .args(["bisect", "scx_simple", "--kernel-tree"])
                .arg(t)
                .args(["--good", "main~2", "--bad", "main"])
                .args(*args)
                .arg("--out")
                .arg(&never),
            says,
            &never,
        );
    }
    assert!(
        !dir.path().join("cache/kernels").exists(),
        "nothing was built"
    );
}

/// Without --tree the steps are crates.io's published versions (read from
/// its index: this test needs the network, as `cargo ci setup` does). A
/// version never published, ends out of order, and a scheduler that is not
/// a crate are refused before anything is installed or booted.
#[test]
fn versions_that_were_never_published_or_out_of_order_are_refused_before_anything_runs() {
    let dir = tempfile::tempdir().unwrap();
    let cases: &[(&str, &[&str], &str)] = &[
        (
            "scx_bpfland",
            &["--good", "1.0.999", "--bad", "1.1.4"],
            "--good 1.0.999: scx_bpfland has no published version 1.0.999; crates.io lists 1.0.0, 1.0.1",
        ),
        (
            "scx_bpfland",
            &["--good", "1.1.4", "--bad", "1.1.0"],
            "--good 1.1.4 is not older than --bad 1.1.0",
        ),
        (
            "scx_bpfland",
            &["--good", "latest", "--bad", "1.1.0"],
            "--good latest: not a version",
        ),
        (
            "scx_harness_no_such_crate",
            &["--good", "1.0.0", "--bad", "1.0.1"],
            "crates.io has no crate of that name",
        ),
        (
            "scx_fifo",
            &["--good", "0.1.0", "--bad", "0.2.0"],
            "is not a crates.io scheduler",
        ),
    ];
    for (scheduler, args, says) in cases {
        let never = dir.path().join("never");
        common::assert_refused(
            common::harness(&dir.path().join("cache"))
                .args(["bisect", scheduler])
                .args(*args)
                .arg("--out")
                .arg(&never),
            says,
            &never,
        );
        // Nothing was installed.
        assert!(!dir.path().join("cache/schedulers/crates").exists());
    }
}
