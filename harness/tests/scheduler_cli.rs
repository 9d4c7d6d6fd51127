//! `scx-harness schedulers ...` and `dev` on bad input: one clear error, the right
//! exit code, and no VM booted (the kernel given is a fake bzImage that
//! could not boot anyway).

mod common;

use common::{fake_bzimage, harness, run};

const BAD_INPUT: Option<i32> = Some(65);

fn registry(dir: &std::path::Path, text: &str) -> std::path::PathBuf {
    let p = dir.join("registry.yaml");
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn unknown_scheduler_lists_the_known_ones() {
    let dir = tempfile::tempdir().unwrap();
    let kernel = fake_bzimage(dir.path());
    let (code, _, err) = run(harness(dir.path())
        .args(["schedulers", "run", "scx_nope", "--kernel"])
        .arg(&kernel));
    assert_eq!(code, BAD_INPUT, "{err}");
    assert!(err.contains("unknown scheduler \"scx_nope\""), "{err}");
    for known in [
        "scx_fifo",
        "scx_vtime",
        "scx_simple",
        "scx_bpfland",
        "default",
    ] {
        assert!(err.contains(known), "{known} missing from: {err}");
    }
    assert_eq!(err.matches("error:").count(), 1, "{err}");
}

#[test]
fn a_binary_that_does_not_exist_is_refused_before_booting() {
    let dir = tempfile::tempdir().unwrap();
    let kernel = fake_bzimage(dir.path());
    let reg = registry(
        dir.path(),
        "schedulers:\n  - name: ghost\n    kind: binary\n    source: { path: bin/ghost }\n    ops: ghost\n",
    );
    let (code, _, err) = run(harness(dir.path())
        .args(["schedulers", "run", "ghost", "--registry"])
        .arg(&reg)
        .arg("--kernel")
        .arg(&kernel));
    assert_eq!(code, BAD_INPUT, "{err}");
    assert!(
        err.contains(&format!(
            "{}/bin/ghost does not exist",
            dir.path().display()
        )),
        "{err}"
    );
    assert!(!err.contains("booting"), "a VM was started: {err}");
}

#[test]
fn a_bpf_object_without_struct_ops_is_refused_before_booting() {
    let dir = tempfile::tempdir().unwrap();
    let kernel = fake_bzimage(dir.path());
    // A valid BPF object with a socket filter and no struct_ops map.
    let src = dir.path().join("plain.bpf.c");
    std::fs::write(
        &src,
        "__attribute__((section(\"license\"), used)) char _license[] = \"GPL\";\n\
         __attribute__((section(\"socket\"), used)) int prog(void *ctx) { return 0; }\n",
    )
    .unwrap();
    let obj = dir.path().join("plain.bpf.o");
    let st = std::process::Command::new("clang-19")
        .args(["-target", "bpf", "-O2", "-g", "-c"])
        .arg(&src)
        .arg("-o")
        .arg(&obj)
        .status()
        .expect("clang-19 (installed by cargo ci setup)");
    assert!(st.success());
    let reg = registry(
        dir.path(),
        "schedulers:\n  - name: plain\n    kind: bpf_object\n    source: { path: plain.bpf.o }\n    ops: plain\n",
    );
    let (code, _, err) = run(harness(dir.path())
        .args(["schedulers", "run", "plain", "--registry"])
        .arg(&reg)
        .arg("--kernel")
        .arg(&kernel));
    assert_eq!(code, BAD_INPUT, "{err}");
    assert!(err.contains("has no struct_ops map"), "{err}");
    assert!(err.contains("SCX_OPS_DEFINE"), "the fix is named: {err}");
    assert!(!err.contains("booting"), "a VM was started: {err}");
}

#[test]
fn a_malformed_registry_names_file_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let reg = registry(
        dir.path(),
        "schedulers:\n  - name: a\n    kind: binary\n    sauce: { workspace: a }\n",
    );
    let (code, _, err) = run(harness(dir.path())
        .args(["schedulers", "list", "--registry"])
        .arg(&reg));
    assert_eq!(code, BAD_INPUT, "{err}");
    assert!(err.contains(&format!("{}:4:5", reg.display())), "{err}");
    assert!(err.contains("unknown field `sauce`"), "{err}");
    assert!(err.contains("schedulers/README.md"), "{err}");
}

#[test]
fn non_utf8_and_huge_registries_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let reg = dir.path().join("registry.yaml");
    std::fs::write(&reg, b"schedulers:\n  - name: \xff\n").unwrap();
    let (code, _, err) = run(harness(dir.path())
        .args(["schedulers", "list", "--registry"])
        .arg(&reg));
    assert_eq!(code, BAD_INPUT, "{err}");
    assert!(err.contains("not UTF-8"), "{err}");
    std::fs::write(&reg, vec![b'#'; 2 << 20]).unwrap();
    let (code, _, err) = run(harness(dir.path())
        .args(["schedulers", "list", "--registry"])
        .arg(&reg));
    assert_eq!(code, BAD_INPUT, "{err}");
    assert!(err.contains("at most"), "{err}");
}

#[test]
fn list_shows_every_scheduler_with_source_and_status() {
    let dir = tempfile::tempdir().unwrap();
    let kernel = fake_bzimage(dir.path());
    let (code, out, err) = run(harness(dir.path())
        .args(["schedulers", "list", "--kernel"])
        .arg(&kernel));
    assert_eq!(code, Some(0), "{err}");
    let registry = common::registry();
    for d in &registry.schedulers {
        let line = out
            .lines()
            .find(|l| l.split_whitespace().next() == Some(d.name.as_str()))
            .unwrap_or_else(|| panic!("{} missing:\n{out}", d.name));
        assert!(line.contains("never tried"), "{line}");
    }
    assert!(out.contains("crates.io scx_bpfland"), "{out}");
    assert!(out.contains("[fixture]"), "{out}");
}

/// `dev` refuses what it cannot edit, build or watch before it boots,
/// each with one error that says what to do.
#[test]
fn dev_refuses_what_it_cannot_rebuild_before_booting() {
    let dir = tempfile::tempdir().unwrap();
    let kernel = fake_bzimage(dir.path());
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let cases: [(&[&str], &str); 5] = [
        (&["dev", "scx_nope"], "unknown scheduler \"scx_nope\""),
        (
            &["dev", "default"],
            "the fair class: there is nothing to build",
        ),
        (&["dev", "scx_bpfland"], "fix: check out its sources"),
        (
            &["dev", "scx_vtime", "--no-build"],
            "--no-build does not apply",
        ),
        (
            &["dev", "my_sched", "--tree"],
            "no Cargo.toml, no my_sched.bpf.c",
        ),
    ];
    for (args, expect) in cases {
        let mut cmd = harness(dir.path());
        cmd.args(args);
        if args.last() == Some(&"--tree") {
            cmd.arg(&empty);
        }
        let (code, _, err) = run(cmd.arg("--kernel").arg(&kernel));
        assert_eq!(code, BAD_INPUT, "{args:?}: {err}");
        assert!(err.contains(expect), "{args:?}: {err}");
        assert_eq!(err.matches("error:").count(), 1, "{args:?}: {err}");
    }
    assert!(common::qemus_mentioning(dir.path()).is_empty());
}
