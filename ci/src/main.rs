//! Project automation in the cargo-xtask pattern: `cargo ci TASK`.
//!
//! - `setup`  installs every host dependency (Debian packages, virtme-ng
//!   from PyPI into a virtualenv, cargo-nextest, and for `fuzz` nightly
//!   Rust and cargo-fuzz), idempotently.
//! - `kernel` builds (or reuses) the default sched_ext kernel.
//! - `run`    setup + the main job (`scx-harness run`).
//! - `test`   setup + kernel + every scheduler in the registry + the test
//!   suite (`cargo nextest run`); this is what `.ci/run` calls.
//! - `soak [RUNS] [ARGS...]` runs `scx-harness run ARGS` RUNS times (default
//!   10) and prints the tally of verdicts per cell: the false-failure check
//!   of the bundled scenarios.
//! - `fuzz [SECONDS] [--save] [TARGET...]` runs each fuzz target
//!   (harness/fuzz: scenario, registry, console) for SECONDS (default 600)
//!   on nightly Rust with cargo-fuzz, starting from the saved corpus; with
//!   `--save`, inputs that reach new code are merged into that corpus.
//!   The nightly workflow (ci/nightly.yml) runs it; `test` replays the
//!   saved corpus on stable Rust instead (the unit tests of
//!   harness/src/fuzz.rs).
//! - `nightly [ARGS...]` runs the tests CI's nextest profile leaves out
//!   (`NIGHTLY_TESTS`), then the full matrix (suite `nightly`) five times
//!   per cell, records it in the results database ($SCX_HARNESS_DB or the
//!   default) and checks every cell against its recent history: non-zero,
//!   naming the cells that regressed or failed, with the evidence.
//!
//! Tasks are written with xshell: arguments are interpolated without a shell
//! and a failing command fails the task.

use anyhow::{bail, Context, Result};
use xshell::{cmd, Shell};

/// Debian packages the project needs, and why.
const PACKAGES: &[(&str, &str)] = &[
    ("qemu-system-x86", "runs the guests"),
    (
        "udev",
        "without it virtme-ng silently loses the guest command's output",
    ),
    ("clang-19", "builds BPF programs"),
    ("llvm-19", "llvm-strip for BPF objects"),
    ("libelf-dev", "libbpf and the kernel's BTF tooling"),
    ("zlib1g-dev", "libbpf"),
    ("zstd", "kernel build compression"),
    ("dwarves", "pahole: generates the kernel's BTF"),
    ("bc", "kernel build"),
    ("bison", "kernel build (Kconfig parser)"),
    ("flex", "kernel build (Kconfig lexer)"),
    ("libssl-dev", "kernel build (certificate tools)"),
    ("cpio", "virtme-ng initramfs"),
    ("busybox-static", "virtme-ng initramfs"),
    (
        "linux-source-6.12",
        "the default kernel source (has CONFIG_SCHED_CLASS_EXT)",
    ),
    ("python3-venv", "the virtualenv that holds virtme-ng"),
    (
        "chromium",
        "renders the HTML report in a test (headless), to check its plots",
    ),
    (
        "stress-ng",
        "external load for scenarios' `command` work, and app-stress-ng (runs in the guest)",
    ),
    ("rt-tests", "hackbench and cyclictest: app-hackbench, app-cyclictest"),
    ("redis-server", "the server of app-redis"),
    ("redis-tools", "redis-benchmark: app-redis's load"),
    (
        "postgresql-15",
        "PostgreSQL (initdb, postgres) and pgbench: app-pgbench",
    ),
    ("make", "kernel build"),
    ("gcc", "kernel build"),
    ("xz-utils", "unpacks the kernel source tarball"),
    (
        "util-linux",
        "unshare: VM process trees die with the harness",
    ),
    (
        "kmod",
        "depmod indexes the modules of Debian's prebuilt kernel (`debian` in kernel-config/kernels.yaml); the guest's modprobe",
    ),
    (
        "libzstd-dev",
        "links the runner of each kernel's sched_ext selftests (tools/testing/selftests/sched_ext)",
    ),
    (
        "curl",
        "reads crates.io's index: the published versions `bisect` steps through without --tree",
    ),
    (
        "debian-archive-keyring",
        "apt checks the packages the harness fetches for the `stable` and `debian` kernels",
    ),
];

/// virtme-ng from PyPI, pinned: its command line is what the harness drives.
const VNG_VERSION: &str = "1.42";

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let sh = Shell::new()?;
    let root = project_root();
    sh.change_dir(&root);
    match args.first().map(String::as_str) {
        Some("setup") => {
            setup(&sh)?;
            setup_fuzz(&sh)
        }
        Some("kernel") => {
            setup(&sh)?;
            kernel(&sh)
        }
        Some("run") => {
            setup(&sh)?;
            let rest = &args[1..];
            cmd!(
                sh,
                "cargo run --quiet --release -p scx-harness -- run {rest...}"
            )
            .run()?;
            Ok(())
        }
        Some("test") => {
            setup(&sh)?;
            prepare_tests(&sh, &root)?;
            // The saved fuzz corpus is replayed by the unit tests (stable
            // Rust); fuzzing itself is `cargo ci fuzz` (the nightly job):
            // its nightly build alone took minutes of CI's 90.
            test(&sh, &args[1..])
        }
        Some("soak") => soak(&sh, &root, &args[1..]),
        Some("fuzz") => {
            setup_fuzz(&sh)?;
            fuzz(&sh, &root, &args[1..])
        }
        Some("nightly") => {
            setup(&sh)?;
            prepare_tests(&sh, &root)?;
            nightly(&sh, &root, &args[1..])
        }
        _ => {
            eprintln!("usage: cargo ci setup|kernel|run|test|soak|fuzz|nightly [ARGS...]");
            bail!("unknown task {:?}", args.first())
        }
    }
}

fn project_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("ci/ is inside the workspace")
        .to_path_buf()
}

fn step(msg: &str) {
    eprintln!("==> {msg}");
}

fn setup(sh: &Shell) -> Result<()> {
    step("setup: Debian packages");
    let missing: Vec<&str> = PACKAGES
        .iter()
        .map(|(p, _)| *p)
        .filter(|p| !installed(sh, p))
        .collect();
    if missing.is_empty() {
        eprintln!("    all {} packages present", PACKAGES.len());
    } else {
        for (p, why) in PACKAGES.iter().filter(|(p, _)| missing.contains(p)) {
            eprintln!("    installing {p}: {why}");
        }
        let root = cmd!(sh, "id -u").read()?.trim() == "0";
        if !root {
            bail!(
                "missing packages and not root: run `sudo apt-get install -y {}` then `cargo ci setup` again",
                missing.join(" ")
            );
        }
        let _env = sh.push_env("DEBIAN_FRONTEND", "noninteractive");
        cmd!(sh, "apt-get update -qq").run()?;
        cmd!(
            sh,
            "apt-get install -y -q --no-install-recommends {missing...}"
        )
        .run()?;
    }

    step(&format!(
        "setup: virtme-ng {VNG_VERSION} (PyPI, in a virtualenv)"
    ));
    let venv = data_dir().join("venv");
    let vng = venv.join("bin/vng");
    let current = cmd!(sh, "{vng} --version")
        .quiet()
        .ignore_stderr()
        .read()
        .unwrap_or_default();
    if current.split_whitespace().any(|w| w == VNG_VERSION) {
        eprintln!("    present: {}", current.trim());
    } else {
        eprintln!("    installing into {}", venv.display());
        std::fs::create_dir_all(data_dir()).context("creating the data directory")?;
        // Debian's python3, whatever python3 comes first on PATH: the venv
        // must not depend on a user's pyenv or conda.
        cmd!(sh, "/usr/bin/python3 -m venv --clear {venv}").run()?;
        let pip = venv.join("bin/pip");
        cmd!(
            sh,
            "{pip} install --quiet --disable-pip-version-check virtme-ng=={VNG_VERSION}"
        )
        .run()?;
        let now = cmd!(sh, "{vng} --version").read()?;
        eprintln!("    installed: {}", now.trim());
    }

    step("setup: cargo-nextest");
    if cmd!(sh, "cargo nextest --version")
        .quiet()
        .ignore_stdout()
        .ignore_stderr()
        .run()
        .is_ok()
    {
        eprintln!("    present");
    } else {
        eprintln!("    installing with cargo install --locked");
        cmd!(sh, "cargo install --locked cargo-nextest").run()?;
    }

    apps()
}

/// What only `fuzz` needs beyond [`setup`]: nightly Rust and cargo-fuzz
/// (`cargo ci setup` installs them too; `test` does not need them).
fn setup_fuzz(sh: &Shell) -> Result<()> {
    step(&format!(
        "setup: nightly Rust and cargo-fuzz {CARGO_FUZZ_VERSION} (the fuzz targets)"
    ));
    if cmd!(sh, "cargo +nightly --version")
        .quiet()
        .ignore_stdout()
        .ignore_stderr()
        .run()
        .is_ok()
    {
        eprintln!("    nightly present");
    } else {
        cmd!(sh, "rustup --version").quiet().ignore_stdout().ignore_stderr().run().context(
            "no rustup: install Rust with rustup (https://rustup.rs), then `cargo ci setup` again",
        )?;
        cmd!(sh, "rustup toolchain install nightly --profile minimal").run()?;
    }
    let fuzz_version = cmd!(sh, "cargo fuzz --version")
        .quiet()
        .ignore_stderr()
        .read()
        .unwrap_or_default();
    if fuzz_version
        .split_whitespace()
        .any(|w| w == CARGO_FUZZ_VERSION)
    {
        eprintln!("    {}", fuzz_version.trim());
    } else {
        cmd!(
            sh,
            "cargo install --locked cargo-fuzz --version {CARGO_FUZZ_VERSION}"
        )
        .run()?;
    }
    Ok(())
}

/// Where app-build's sources go: the data directory's `apps/`, which
/// `command` groups see as `$SCX_HARNESS_APPS` (harness/src/paths.rs
/// `apps_dir`).
const APPS_TOOLS: &str = "linux-tools-6.12";

/// The inputs of the bundled application scenarios: app-build compiles
/// libsubcmd from the kernel tree's `tools/` (and `scripts/bpf_doc.py`, for
/// tools/lib/bpf if a scenario builds that: about 140 s under TCG),
/// extracted once from Debian's linux-source-6.12 (about 30 s: the whole
/// xz stream is read).
fn apps() -> Result<()> {
    step("setup: app-build's C project (tools/ of linux-source-6.12)");
    let apps = data_dir().join("apps");
    let dest = apps.join(APPS_TOOLS);
    if dest.join("tools/lib/bpf/Makefile").is_file() {
        eprintln!("    present: {}", dest.display());
        return Ok(());
    }
    std::fs::create_dir_all(&apps).with_context(|| format!("creating {}", apps.display()))?;
    // Extracted beside its destination, then renamed: an interrupted
    // extraction never looks finished, and its directory is removed.
    let tmp = tempfile::Builder::new()
        .prefix(".extract-")
        .tempdir_in(&apps)
        .context("making a directory to extract into")?;
    let tmp_path = tmp.path();
    let sh = Shell::new()?;
    let tarball = "/usr/src/linux-source-6.12.tar.xz";
    cmd!(
        sh,
        "tar -xJf {tarball} -C {tmp_path} linux-source-6.12/tools linux-source-6.12/scripts/bpf_doc.py"
    )
    .run()
    .with_context(|| format!("extracting tools/ from {tarball}"))?;
    if dest.exists() {
        std::fs::remove_dir_all(&dest)?;
    }
    std::fs::rename(tmp_path.join("linux-source-6.12"), &dest)
        .with_context(|| format!("moving the extracted tree to {}", dest.display()))?;
    eprintln!("    extracted to {}", dest.display());
    Ok(())
}

/// cargo-fuzz, pinned: its command line is what `fuzz` drives.
const CARGO_FUZZ_VERSION: &str = "0.13.2";

/// The fuzz targets of harness/fuzz; what each checks is in
/// harness/src/fuzz.rs.
const FUZZ_TARGETS: &[&str] = &["scenario", "registry", "console"];

/// Runs fuzz targets for a fixed time each, from the saved corpus, writing
/// new inputs to a scratch directory (the checkout stays clean) and, with
/// `--save`, merging those that reach new code edges into the saved corpus
/// (edges only, not hit counts: a corpus of hundreds of files, not
/// thousands). A
/// crash, a hang (10 s per input) or 2 GB of memory fails the task; the
/// input is left in harness/fuzz/artifacts/TARGET/.
fn fuzz(sh: &Shell, root: &std::path::Path, args: &[String]) -> Result<()> {
    let mut seconds = 600u64;
    let mut save = false;
    let mut targets = Vec::new();
    for a in args {
        match a.as_str() {
            "--save" => save = true,
            a if a.parse::<u64>().is_ok() => seconds = a.parse()?,
            a if FUZZ_TARGETS.contains(&a) => targets.push(a.to_string()),
            a => bail!("fuzz: {a:?} is neither seconds, --save nor one of {FUZZ_TARGETS:?}"),
        }
    }
    if targets.is_empty() {
        targets = FUZZ_TARGETS.iter().map(|t| t.to_string()).collect();
    }
    let dir = root.join("harness");
    let _cd = sh.push_dir(&dir);
    // Optimised, without a sanitizer: the code under test is safe Rust, so
    // ASan finds nothing there and would cost half the executions. Debug
    // assertions (overflow checks) stay on.
    let opts = ["-O", "--sanitizer=none", "--debug-assertions"];
    step("fuzz: build the targets (nightly)");
    cmd!(sh, "cargo +nightly fuzz build {opts...}").run()?;
    let scratch = tempfile::Builder::new().prefix("scx-fuzz").tempdir()?;
    for t in &targets {
        step(&format!("fuzz: {t} for {seconds} s"));
        let corpus = dir.join("fuzz/corpus").join(t);
        let new = scratch.path().join(t);
        std::fs::create_dir_all(&new)?;
        let time = format!("-max_total_time={seconds}");
        let out = cmd!(
            sh,
            "cargo +nightly fuzz run {opts...} {t} {new} {corpus} -- {time} -max_len=16384 -timeout=10 -rss_limit_mb=2048 -print_final_stats=1"
        )
        .ignore_status()
        .output()?;
        let err = String::from_utf8_lossy(&out.stderr);
        let stat = |k: &str| {
            err.lines()
                .find_map(|l| l.strip_prefix(k).map(|v| v.trim().to_string()))
                .unwrap_or_else(|| "?".into())
        };
        if !out.status.success() {
            let tail: Vec<&str> = err.lines().rev().take(40).collect();
            eprintln!("{}", tail.into_iter().rev().collect::<Vec<_>>().join("\n"));
            bail!("fuzz target {t} failed; the input is in harness/fuzz/artifacts/{t}/ (replay: cd harness && cargo +nightly fuzz run {} {t} FILE)", opts.join(" "));
        }
        println!(
            "fuzz {t}: {seconds} s, {} runs, 0 crashes; corpus {} saved + {} new inputs",
            stat("stat::number_of_executed_units:"),
            std::fs::read_dir(&corpus)?.count(),
            std::fs::read_dir(&new)?.count(),
        );
        if save {
            cmd!(
                sh,
                "cargo +nightly fuzz run {opts...} {t} {corpus} {new} -- -merge=1 -use_counters=0"
            )
            .quiet()
            .ignore_stderr()
            .run()?;
            println!(
                "fuzz {t}: merged; the saved corpus has {} inputs",
                std::fs::read_dir(&corpus)?.count()
            );
        }
    }
    Ok(())
}

fn installed(sh: &Shell, package: &str) -> bool {
    let format = "-f=${Status}";
    cmd!(sh, "dpkg-query -W {format} {package}")
        .quiet()
        .ignore_stderr()
        .read()
        .map(|s| s.contains("install ok installed"))
        .unwrap_or(false)
}

/// Same rule as the harness's `paths::data_dir`.
fn data_dir() -> std::path::PathBuf {
    let base = match std::env::var_os("XDG_DATA_HOME") {
        Some(v) if std::path::Path::new(&v).is_absolute() => std::path::PathBuf::from(v),
        _ => std::path::PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/tmp".into()))
            .join(".local/share"),
    };
    base.join("scx-harness")
}

fn kernel(sh: &Shell) -> Result<()> {
    step("kernel: build or reuse the default sched_ext kernel");
    cmd!(
        sh,
        "cargo run --quiet --release -p scx-harness -- kernel build"
    )
    .run()?;
    Ok(())
}

fn test(sh: &Shell, extra: &[String]) -> Result<()> {
    step("test: cargo nextest run");
    let profile = if std::env::var("CI").is_ok_and(|v| v == "true") {
        "ci"
    } else {
        "default"
    };
    // The whole suite on one machine: the matrix's cells of a kernel share
    // one hot-swapped run (harness/tests/matrix.rs). With arguments (a
    // partition, a filter) each matrix cell that runs boots its own VM, so
    // only the cells asked for run.
    let _sessions = extra
        .is_empty()
        .then(|| sh.push_env("SCX_HARNESS_SHARED_SESSIONS", "1"));
    cmd!(
        sh,
        "cargo nextest run --workspace --profile {profile} {extra...}"
    )
    .run()?;
    Ok(())
}

/// What the test suite needs before nextest: the debug build, every
/// kernel of the catalog and every scheduler on each (`test`, `nightly`).
fn prepare_tests(sh: &Shell, root: &std::path::Path) -> Result<()> {
    // The debug build is the one nextest tests; building the kernel and the
    // schedulers with it compiles nothing twice.
    step("test: cargo build --workspace");
    cmd!(sh, "cargo build --workspace").run()?;
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let harness = target.join("debug/scx-harness");
    // Every kernel of kernel-config/kernels.yaml: the LTS and the newest
    // stable built (about 9 minutes each cold), Debian's own prebuilt
    // kernel fetched (seconds).
    step("test: build or fetch every kernel (kernel-config/kernels.yaml)");
    cmd!(sh, "{harness} kernel build all").run()?;
    // Every kernel's schedulers (its own examples, our BPF objects, the
    // crate versions the registry names there) before the tests, not
    // inside a test's deadline: crates take minutes, once.
    step("test: build or reuse every scheduler on every kernel");
    cmd!(sh, "{harness} schedulers build --kernel all").run()?;
    Ok(())
}

/// The tests the CI profile leaves to the nightly job (its
/// `default-filter` in .config/nextest.toml is `not` this).
const NIGHTLY_TESTS: &str = "test(/^vm_host_target_(sweep|bisect)_/) | test(/^selftest::stable::/)";

/// The nightly job on one machine: the tests CI leaves out, then the full matrix, five samples per
/// cell (the fewest with which `history check` can judge a cell of many
/// key metrics tested together), recorded and checked against history. (On several runners, the
/// matrix tests run partitioned by nextest instead; see ci/nightly.yml.)
fn nightly(sh: &Shell, root: &std::path::Path, args: &[String]) -> Result<()> {
    step("nightly: the tests CI leaves out (.config/nextest.toml, profile ci)");
    // A failure here is reported with the matrix's, after it.
    let left_out = cmd!(
        sh,
        "cargo nextest run --workspace --profile default -E {NIGHTLY_TESTS}"
    )
    .run();
    step("nightly: the full matrix, 5 runs per cell, recorded");
    cmd!(sh, "cargo build --release -p scx-harness").run()?;
    let harness = root.join("target/release/scx-harness");
    let stamp = cmd!(sh, "date -u +%Y%m%d-%H%M%S").read()?;
    let dir = root
        .join("scx-runs")
        .join(format!("nightly-{}", stamp.trim()));
    let db = std::env::var("SCX_HARNESS_DB")
        .unwrap_or_else(|_| data_dir().join("history.sqlite").display().to_string());
    // Failing cells still get recorded and checked; the verdict comes last.
    let ran = cmd!(
        sh,
        "{harness} run --suite nightly --repeat 5 --out {dir} --record {db} {args...}"
    )
    .run();
    step("nightly: each cell against its history");
    let checked = cmd!(sh, "{harness} history check {dir} --db {db}").run();
    match (left_out, ran, checked) {
        (Ok(()), Ok(()), Ok(())) => Ok(()),
        (left_out, ran, checked) => bail!(
            "nightly: {}{}{}; results in {}",
            if left_out.is_err() {
                "tests CI leaves out failed (see nextest's summary above); "
            } else {
                ""
            },
            if ran.is_err() {
                "cells failed or could not be measured"
            } else {
                "every cell ran"
            },
            if checked.is_err() {
                ", and cells regressed against their history"
            } else {
                ""
            },
            dir.display()
        ),
    }
}

/// Runs the matrix `runs` times in a row and tallies the verdicts per cell.
/// Fails if any cell was ever not a pass.
fn soak(sh: &Shell, root: &std::path::Path, args: &[String]) -> Result<()> {
    let (runs, rest) = match args.first().and_then(|a| a.parse::<usize>().ok()) {
        Some(n) => (n, &args[1..]),
        None => (10, args),
    };
    step(&format!("soak: scx-harness run {runs} times"));
    cmd!(sh, "cargo build --release -p scx-harness").run()?;
    let harness = root.join("target/release/scx-harness");
    let stamp = cmd!(sh, "date -u +%Y%m%d-%H%M%S").read()?;
    let dir = root.join("scx-runs").join(format!("soak-{}", stamp.trim()));
    // cell -> (pass, fail, error)
    let mut tally: std::collections::BTreeMap<String, [u32; 3]> = Default::default();
    for i in 1..=runs {
        let out = dir.join(format!("run{i:02}"));
        // A failing run is tallied, not fatal: the point is the count.
        let _ = cmd!(sh, "{harness} run --out {out} {rest...}")
            .quiet()
            .run();
        let text = std::fs::read_to_string(out.join("results.json")).unwrap_or_default();
        let results: Vec<serde_json::Value> = serde_json::from_str(&text).unwrap_or_default();
        if results.is_empty() {
            eprintln!("    run {i}: no results.json in {}", out.display());
        }
        for r in results {
            let cell = format!(
                "{} / {}",
                r["scheduler"].as_str().unwrap_or("?"),
                r["scenario"].as_str().unwrap_or("?")
            );
            let slot = match r["verdict"].as_str() {
                Some("pass") => 0,
                Some("fail") => 1,
                _ => 2,
            };
            tally.entry(cell).or_default()[slot] += 1;
        }
        eprintln!("    run {i}/{runs} done: {}", out.display());
    }
    println!("{:<44} {:>5} {:>5} {:>5}", "CELL", "PASS", "FAIL", "ERROR");
    let mut bad = 0;
    for (cell, [p, f, e]) in &tally {
        println!("{cell:<44} {p:>5} {f:>5} {e:>5}");
        bad += f + e;
    }
    println!(
        "{} cells x {runs} runs: {bad} not passed; results in {}",
        tally.len(),
        dir.display()
    );
    if bad > 0 {
        bail!("{bad} cell run(s) did not pass");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    /// The CI profile leaves out exactly what the nightly job runs.
    #[test]
    fn the_ci_profile_leaves_out_what_the_nightly_job_runs() {
        let config = include_str!("../../.config/nextest.toml");
        let want = format!("default-filter = 'not ({})'", super::NIGHTLY_TESTS);
        assert!(
            config.lines().any(|l| l == want),
            "the ci profile's default-filter is not `not (NIGHTLY_TESTS)`:\n  want: {want}"
        );
        let workflow = include_str!("../nightly.yml");
        let run = format!("-E '{}'", super::NIGHTLY_TESTS);
        assert!(
            workflow.contains(&run),
            "ci/nightly.yml's left-out job does not run NIGHTLY_TESTS:\n  want: {run}"
        );
    }
}
