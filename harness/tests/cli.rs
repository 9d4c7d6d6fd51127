//! The binary's behaviour on bad input and on kernel builds, without
//! booting anything. Kernel builds run the real pipeline (virtme-ng's kconfig
//! step, the .config check, make, the cache) against small fake kernel trees.

mod common;

use std::time::{Duration, Instant};

use common::{fake_kernel_tree, harness, run, FakeBuild};

const BAD_INPUT: Option<i32> = Some(65);
const HOST_TOOL: Option<i32> = Some(71);

fn cache_entries(cache: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(cache.join("kernels"))
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn missing_fragment_is_one_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let (code, _, err) =
        run(harness(dir.path()).args(["kernel", "build", "--config", "/nonexistent/extra.config"]));
    assert_eq!(code, BAD_INPUT, "{err}");
    assert!(err.contains("/nonexistent/extra.config"), "{err}");
    assert!(err.contains("fix:"), "{err}");
    assert_eq!(
        err.matches("error:").count(),
        1,
        "one error, not a cascade:\n{err}"
    );
}

#[test]
fn malformed_fragment_names_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let frag = dir.path().join("bad.config");
    std::fs::write(&frag, "CONFIG_OK=y\nSCHED_CLASS_EXT=y\n").unwrap();
    let (code, _, err) = run(harness(dir.path())
        .arg("kernel")
        .arg("build")
        .arg("--config")
        .arg(&frag));
    assert_eq!(code, BAD_INPUT, "{err}");
    assert!(err.contains(&format!("{}:2", frag.display())), "{err}");
}

#[test]
fn missing_source_tree_is_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let (code, _, err) =
        run(harness(dir.path()).args(["kernel", "build", "--source", "/nonexistent/linux"]));
    assert_eq!(code, BAD_INPUT, "{err}");
    assert!(
        err.contains("/nonexistent/linux is not a readable Linux source tree"),
        "{err}"
    );
}

#[test]
fn kernel_that_is_not_a_bzimage_is_refused_before_booting() {
    let dir = tempfile::tempdir().unwrap();
    let fake = dir.path().join("vmlinux");
    std::fs::write(&fake, b"\x7fELF this is not a bzImage").unwrap();
    let (code, _, err) = run(harness(dir.path())
        .arg("vm")
        .arg("--kernel")
        .arg(&fake)
        .args(["--", "true"]));
    assert_eq!(code, BAD_INPUT, "{err}");
    assert!(err.contains("is not a bzImage"), "{err}");
    let (code, _, err) =
        run(harness(dir.path()).args(["vm", "--kernel", "/nonexistent/bzImage", "--", "true"]));
    assert_eq!(code, BAD_INPUT, "{err}");
    assert!(err.contains("kernel list"), "{err}");
}

#[test]
fn missing_virtme_ng_names_the_setup_command() {
    let dir = tempfile::tempdir().unwrap();
    let tree = fake_kernel_tree(dir.path(), FakeBuild::Succeeds);
    let (code, _, err) = run(harness(dir.path())
        .env_remove("SCX_HARNESS_VNG")
        .env("XDG_DATA_HOME", dir.path().join("empty-data"))
        .env("PATH", "/usr/bin:/bin")
        .arg("kernel")
        .arg("build")
        .arg("--source")
        .arg(&tree));
    assert_eq!(code, HOST_TOOL, "{err}");
    assert!(err.contains("virtme-ng (vng) is not installed"), "{err}");
    assert!(err.contains("cargo ci setup"), "{err}");
}

#[test]
fn failed_compile_shows_the_error_and_the_log_and_caches_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let tree = fake_kernel_tree(dir.path(), FakeBuild::FailsToCompile);
    let (code, _, err) = run(harness(&cache)
        .arg("kernel")
        .arg("build")
        .arg("--source")
        .arg(&tree));
    assert_eq!(code, HOST_TOOL, "{err}");
    assert!(err.contains("make bzImage failed"), "{err}");
    assert!(
        err.contains("kernel/sched/ext.c:42:7: error: deliberate failure"),
        "{err}"
    );
    let log = err
        .lines()
        .find_map(|l| l.trim().strip_prefix("full log: "))
        .unwrap_or_else(|| panic!("no log path in:\n{err}"));
    let log_text = std::fs::read_to_string(log).unwrap();
    assert!(log_text.contains("deliberate failure"), "{log_text}");
    assert!(
        cache_entries(&cache).is_empty(),
        "{:?}",
        cache_entries(&cache)
    );
}

#[test]
fn option_dropped_by_kconfig_names_the_missing_dependency() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let tree = fake_kernel_tree(dir.path(), FakeBuild::DropsSchedExt);
    let (code, _, err) = run(harness(&cache)
        .arg("kernel")
        .arg("build")
        .arg("--source")
        .arg(&tree));
    assert_eq!(code, BAD_INPUT, "{err}");
    assert!(
        err.contains("CONFIG_SCHED_CLASS_EXT=y was asked for"),
        "{err}"
    );
    assert!(
        err.contains("kernel/Kconfig.ext:1: depends on BPF_SYSCALL && BPF_JIT && DEBUG_INFO_BTF"),
        "{err}"
    );
    assert!(err.contains("missing dependency: DEBUG_INFO_BTF"), "{err}");
    // DEBUG_INFO_BTF itself needs something no fragment provides.
    assert!(
        err.contains("missing dependency: PAHOLE_VERSION_OK"),
        "{err}"
    );
    assert!(
        !tree.join("make-count").exists(),
        "compiled despite a bad .config"
    );
    assert!(cache_entries(&cache).is_empty());
}

#[test]
fn successful_build_is_cached_and_never_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let tree = fake_kernel_tree(dir.path(), FakeBuild::Succeeds);
    let build = || {
        run(harness(&cache)
            .arg("kernel")
            .arg("build")
            .arg("--source")
            .arg(&tree))
    };
    let (code, out, err) = build();
    assert_eq!(code, Some(0), "{err}");
    let bzimage = out.trim().to_string();
    assert!(bzimage.ends_with("/bzImage"), "{out}");
    let entries = cache_entries(&cache);
    assert_eq!(entries.len(), 1, "{entries:?}");
    let entry = cache.join("kernels").join(&entries[0]);
    for f in ["bzImage", "vmlinux", "config", "build.log", "meta.json"] {
        assert!(
            entry.join(f).is_file(),
            "{f} missing from {}",
            entry.display()
        );
    }
    let (code, out2, err) = build();
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(out2.trim(), bzimage);
    assert_eq!(
        std::fs::read_to_string(tree.join("make-count"))
            .unwrap()
            .lines()
            .count(),
        1
    );
    // `kernel list` and `kernel path KEY` see it.
    let (code, list, _) = run(harness(&cache).args(["kernel", "list"]));
    assert_eq!(code, Some(0));
    assert!(
        list.contains(&entries[0]) && list.contains("6.12.0-fake"),
        "{list}"
    );
    let (code, path, _) = run(harness(&cache).args(["kernel", "path", &entries[0]]));
    assert_eq!((code, path.trim()), (Some(0), bzimage.as_str()));
    // A source edit is a new key: make runs again.
    std::fs::write(tree.join("kernel/new.c"), "int x;").unwrap();
    assert_eq!(build().0, Some(0));
    assert_eq!(
        std::fs::read_to_string(tree.join("make-count"))
            .unwrap()
            .lines()
            .count(),
        2
    );
}

#[test]
fn interrupted_build_leaves_no_entry_and_no_make() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let tree = fake_kernel_tree(dir.path(), FakeBuild::Hangs);
    let mut child = harness(&cache)
        .arg("kernel")
        .arg("build")
        .arg("--source")
        .arg(&tree)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !tree.join("make-started").exists() {
        assert!(Instant::now() < deadline, "make never started");
        assert!(child.try_wait().unwrap().is_none(), "harness exited early");
        std::thread::sleep(Duration::from_millis(20));
    }
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130));
    assert!(cache_entries(&cache).is_empty());
    let sleepers = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|p| {
            std::fs::read(p.path().join("cwd").join("make-started"))
                .ok()
                .map(|_| p.path())
        })
        .filter(|p| std::fs::read_link(p.join("cwd")).is_ok_and(|c| c == tree))
        .collect::<Vec<_>>();
    assert!(
        sleepers.is_empty(),
        "processes still running in the tree: {sleepers:?}"
    );
}

#[test]
fn missing_qemu_names_the_setup_command() {
    let dir = tempfile::tempdir().unwrap();
    // A valid bzImage header: the check for QEMU comes after the kernel's.
    let kernel = common::fake_bzimage(dir.path());
    // PATH with vng (found through the set-up virtualenv) but no QEMU.
    let empty = dir.path().join("bin");
    std::fs::create_dir_all(&empty).unwrap();
    let (code, _, err) = run(harness(dir.path())
        .env("PATH", &empty)
        .arg("vm")
        .arg("--kernel")
        .arg(&kernel)
        .args(["--", "true"]));
    assert_eq!(code, HOST_TOOL, "{err}");
    assert!(err.contains("qemu-system-x86_64 is not installed"), "{err}");
    assert!(err.contains("cargo ci setup"), "{err}");
}

#[test]
fn an_unknown_kernel_name_lists_the_named_kernels() {
    let dir = tempfile::tempdir().unwrap();
    for args in [
        &["kernel", "build", "sttable"][..],
        &["vm", "--kernel", "sttable", "--", "true"][..],
    ] {
        let (code, _, err) = run(harness(dir.path()).args(args));
        assert_eq!(code, BAD_INPUT, "{args:?}: {err}");
        assert!(err.contains("sttable"), "{err}");
        assert!(err.contains("lts, stable, debian"), "{err}");
        assert_eq!(err.matches("error:").count(), 1, "{err}");
    }
}

/// Several kernels (or `all`) are checked before any is built: one unknown
/// name, or an option that applies to one kernel, stops the command at
/// once with nothing built.
#[test]
fn kernel_build_of_several_kernels_refuses_bad_input_before_building_any() {
    let dir = tempfile::tempdir().unwrap();
    for (args, says) in [
        (&["kernel", "build", "lts", "sttable"][..], "sttable"),
        (
            &["kernel", "build", "all", "--jobs", "2"][..],
            "--jobs apply to one kernel",
        ),
        (
            &["kernel", "build", "lts", "stable", "--config", "x.config"][..],
            "--config and --jobs apply to one kernel",
        ),
    ] {
        let (code, _, err) = run(harness(dir.path()).args(args));
        assert_eq!(code, BAD_INPUT, "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
    }
    assert!(cache_entries(dir.path()).is_empty());
}

#[test]
fn a_command_that_boots_one_kernel_refuses_two() {
    let dir = tempfile::tempdir().unwrap();
    let (code, _, err) = run(
        harness(dir.path()).args(["vm", "--kernel", "lts", "--kernel", "stable", "--", "true"])
    );
    assert_eq!(code, BAD_INPUT, "{err}");
    assert!(
        err.contains("boots one kernel") && err.contains("run"),
        "{err}"
    );
    // `run` takes several, each once.
    let (code, _, err) = run(harness(dir.path()).args([
        "run",
        "--kernel",
        "lts",
        "--kernel",
        "lts",
        "-s",
        "default",
        "idle-baseline",
    ]));
    assert_eq!(code, BAD_INPUT, "{err}");
    assert!(err.contains("--kernel lts is given twice"), "{err}");
}

#[test]
fn kernel_list_names_every_kernel_of_the_catalog_even_in_an_empty_cache() {
    let dir = tempfile::tempdir().unwrap();
    let (code, out, err) = run(harness(dir.path()).args(["kernel", "list"]));
    assert_eq!(code, Some(0), "{err}");
    for name in ["lts", "stable", "debian"] {
        assert!(
            out.lines()
                .any(|l| l.trim_start().starts_with(name) && l.contains("not here")),
            "{name}:\n{out}"
        );
    }
    assert!(out.contains("(default)"), "{out}");
}

#[test]
fn a_prebuilt_kernel_takes_no_fragments() {
    let dir = tempfile::tempdir().unwrap();
    let frag = dir.path().join("x.config");
    std::fs::write(&frag, "CONFIG_X=y\n").unwrap();
    let (code, _, err) = run(harness(dir.path())
        .args(["kernel", "build", "debian", "--config"])
        .arg(&frag));
    assert_eq!(code, BAD_INPUT, "{err}");
    assert!(
        err.contains("prebuilt") && err.contains("lts, stable"),
        "{err}"
    );
}

#[test]
fn a_package_that_cannot_be_fetched_is_named_with_the_retry_command_and_leaves_nothing() {
    // Nothing listens on the discard port of the loopback address: apt
    // fails at once, as with an unreachable archive.
    let dir = tempfile::tempdir().unwrap();
    let (code, _, err) = run(harness(dir.path())
        .env("SCX_HARNESS_DEBIAN_MIRROR", "http://127.0.0.1:9/debian")
        .args(["kernel", "build", "debian"]));
    assert_eq!(code, Some(69), "{err}");
    assert!(
        err.contains("cannot fetch Debian package linux-binary-7.3.4+deb13-amd64")
            && err.contains("`scx-harness kernel build debian`"),
        "{err}"
    );
    assert_eq!(err.matches("error:").count(), 1, "{err}");
    assert!(
        cache_entries(dir.path()).is_empty(),
        "a kernel was installed"
    );
    let debs: Vec<_> = std::fs::read_dir(dir.path().join("debian/debs"))
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(debs.is_empty(), "something half-fetched was kept: {debs:?}");
}
