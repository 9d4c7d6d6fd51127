//! Helpers shared by the integration tests: one place that knows how to run
//! the binary and where the test kernel comes from.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The `scx-harness` binary under test, with its cache redirected to `cache`.
pub fn harness(cache: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_scx-harness"));
    cmd.env("SCX_HARNESS_CACHE", cache);
    cmd
}

/// Runs and returns the output, with stderr as text for assertions.
pub fn run(cmd: &mut Command) -> (Option<i32>, String, String) {
    let Output {
        status,
        stdout,
        stderr,
    } = cmd.output().expect("running scx-harness");
    (
        status.code(),
        String::from_utf8_lossy(&stdout).into_owned(),
        String::from_utf8_lossy(&stderr).into_owned(),
    )
}

/// What a fake kernel tree's `make bzImage` does.
pub enum FakeBuild {
    /// Produces a tiny bzImage, vmlinux and kernel.release.
    Succeeds,
    /// Prints a compiler error and fails.
    FailsToCompile,
    /// Kconfig drops SCHED_CLASS_EXT and DEBUG_INFO_BTF from .config.
    DropsSchedExt,
    /// Blocks until killed, after touching `make-started`.
    Hangs,
}

/// A directory that virtme-ng's kconfig step and the harness's build accept
/// as a kernel tree: its Makefile implements the targets they call. Each
/// `make bzImage` appends a line to `make-count`.
pub fn fake_kernel_tree(dir: &Path, kind: FakeBuild) -> PathBuf {
    let tree = dir.join("linux");
    std::fs::create_dir_all(tree.join("kernel")).unwrap();
    std::fs::write(tree.join("Kconfig"), "source \"kernel/Kconfig.ext\"\n").unwrap();
    std::fs::write(
        tree.join("kernel/Kconfig.ext"),
        "config SCHED_CLASS_EXT\n\tbool \"sched_ext\"\n\tdepends on BPF_SYSCALL && BPF_JIT && DEBUG_INFO_BTF\n\n\
         config DEBUG_INFO_BTF\n\tbool \"BTF\"\n\tdepends on DEBUG_INFO && PAHOLE_VERSION_OK\n",
    )
    .unwrap();
    let olddefconfig = match kind {
        FakeBuild::DropsSchedExt => {
            "\tsed -i -e '/^CONFIG_SCHED_CLASS_EXT=/d' -e '/^CONFIG_DEBUG_INFO_BTF=/d' .config\n"
        }
        _ => "\t@true\n",
    };
    let bzimage = match kind {
        FakeBuild::Succeeds | FakeBuild::DropsSchedExt => {
            "\techo x >> make-count\n\
             \techo '  CC      kernel/sched/ext.o'\n\
             \tmkdir -p arch/x86/boot include/config\n\
             \tprintf '6.12.0-fake\\n' > include/config/kernel.release\n\
             \tpython3 -c \"import sys; b=bytearray(0x400); b[0x202:0x206]=b'HdrS'; open('arch/x86/boot/bzImage','wb').write(b)\"\n\
             \techo vmlinux > vmlinux\n"
        }
        FakeBuild::FailsToCompile => {
            "\techo x >> make-count\n\
             \techo '  CC      kernel/sched/ext.o'\n\
             \techo 'kernel/sched/ext.c:42:7: error: deliberate failure for the test' >&2\n\
             \texit 2\n"
        }
        FakeBuild::Hangs => "\techo x >> make-count\n\ttouch make-started\n\tsleep 1000\n",
    };
    std::fs::write(
        tree.join("Makefile"),
        format!(
            "x86_64_defconfig:\n\techo '# fake defconfig' > .config\n\n\
             olddefconfig:\n{olddefconfig}\n\
             bzImage:\n{bzimage}\n\
             .PHONY: x86_64_defconfig olddefconfig bzImage\n"
        ),
    )
    .unwrap();
    tree
}

/// The kernel the VM tests boot: `$SCX_HARNESS_TEST_KERNEL`, else the cached
/// default kernel. Never skips: without one the test fails and says how to
/// get one.
pub fn test_kernel() -> PathBuf {
    if let Some(k) = std::env::var_os("SCX_HARNESS_TEST_KERNEL") {
        return PathBuf::from(k);
    }
    let cache = scx_harness::kernel::Cache::user();
    match scx_harness::kernel::cached_default(&cache) {
        Ok(Some(entry)) => entry.bzimage(),
        Ok(None) => panic!(
            "no sched_ext kernel for the VM tests: the default kernel is not in {}\n  \
             fix: run `cargo ci kernel` (or `scx-harness kernel build`, ~15 min), \
             or set SCX_HARNESS_TEST_KERNEL=/path/to/bzImage",
            cache.root().display()
        ),
        Err(e) => panic!("cannot look up the default kernel: {e:#}\n  fix: run `cargo ci setup`"),
    }
}

/// The cache entry of the kernel the VM tests boot, when it is a cached one
/// (schedulers are built against its tree).
pub fn test_kernel_entry() -> scx_harness::kernel::Entry {
    let cache = scx_harness::kernel::Cache::user();
    let kernel = test_kernel();
    cache
        .list()
        .unwrap()
        .into_iter()
        .find(|e| e.bzimage() == kernel)
        .unwrap_or_else(|| {
            panic!(
                "{} is not a cached kernel; scheduler tests build against a cached kernel's tree\n  \
                 fix: run `cargo ci kernel`, or unset SCX_HARNESS_TEST_KERNEL",
                kernel.display()
            )
        })
}
