//! Where the harness keeps things on the host (XDG base directories).
//!
//! Knows nothing about what is stored there; `kernel::cache` and `vng` decide.

use std::path::PathBuf;

fn home() -> PathBuf {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/tmp"))
}

fn xdg(var: &str, fallback: &str) -> PathBuf {
    match std::env::var_os(var) {
        Some(v) if !v.is_empty() && PathBuf::from(&v).is_absolute() => PathBuf::from(v),
        _ => home().join(fallback),
    }
}

/// `$SCX_HARNESS_CACHE`, else `$XDG_CACHE_HOME/scx-harness`, else
/// `~/.cache/scx-harness`. Kernel builds and KVM probe results live here.
pub fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("SCX_HARNESS_CACHE") {
        return PathBuf::from(dir);
    }
    xdg("XDG_CACHE_HOME", ".cache").join("scx-harness")
}

/// `$XDG_DATA_HOME/scx-harness`, else `~/.local/share/scx-harness`. The
/// virtme-ng virtualenv that `cargo ci setup` creates lives here.
pub fn data_dir() -> PathBuf {
    xdg("XDG_DATA_HOME", ".local/share").join("scx-harness")
}

/// What `cargo ci setup` prepares for the bundled application scenarios
/// (`linux-tools-6.12/`: the kernel tree's `tools/`, a C project to build),
/// which `command` groups see as `$SCX_HARNESS_APPS`.
pub fn apps_dir() -> PathBuf {
    data_dir().join("apps")
}

/// The virtualenv holding the pinned virtme-ng.
pub fn vng_venv() -> PathBuf {
    data_dir().join("venv")
}

/// The checkout this harness was built from (the workspace root). Scheduler
/// sources, the registry and scenarios live there.
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("harness/ is inside the workspace")
        .to_path_buf()
}
