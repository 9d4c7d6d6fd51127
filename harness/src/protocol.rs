//! The protocol between the host side and the guest side of a session:
//! the shared directory's layout, its file names, the kernel-log markers
//! around each cell, and how a guest-side path argument names the shared
//! directory. Both sides use this module and no other spelling of these
//! names; the guest side is a VM's guest, or the machine itself with
//! `--target host`, which runs the same guest-side commands.
//!
//! Layout of a session's shared directory:
//! ```text
//! SHARED/started                 the guest command began (the VM wrapper)
//! SHARED/cells/I/started         cell I began
//! SHARED/cells/I/agent.json      cell I's `agent::AgentOutput`, once it ended
//! SHARED/cells/I/NAME.stdout     a scheduler's output, a group's stderr ...
//! SHARED/queue/I.json            a serving session's (`dev`) cell I, queued
//!                                by the host once the guest started
//! SHARED/queue/quit              a serving session's guest side ends
//! ```
//! and beside it (not shared) `batch.json`, the `agent::BatchSpec`.

use std::path::{Path, PathBuf};

/// The environment variable through which the guest side learns where the
/// shared directory is (set by the VM's wrapper script, or by the host
/// target for its agent).
pub const SHARED_ENV: &str = "SCX_HARNESS_SHARED";

/// The serial number of a VM's scratch disk, for `block_io` work: the
/// virtio-blk device the VM runner adds with this serial (QEMU keeps 20
/// bytes of it), which the guest reads in /sys/block/vdX/serial.
pub const SCRATCH_SERIAL: &str = "scx-scratch";

/// The size of a VM's scratch disk, or of `block_io`'s scratch file on the
/// host target: 256 MiB, sparse (only what is written takes space, at most
/// this much).
pub const SCRATCH_BYTES: u64 = 256 << 20;

/// Written when the guest command (VM) or a cell (agent) begins.
pub const STARTED: &str = "started";

/// A cell's measurements, written by the agent when the cell ends.
pub const AGENT_OUTPUT: &str = "agent.json";

/// An application scenario's warm-up pass (agent::PassKind::WarmUp),
/// written by the agent in the first cell of the scenario in a VM, kept
/// beside the result as evidence, never judged.
pub const WARM_UP_PASS: &str = "warm-up.json";

/// The batch a session runs, written by the host side for the agent.
pub const BATCH_SPEC: &str = "batch.json";

/// `schedulers run`'s lifecycle report, written by the guest side.
pub const SCHEDULER_REPORT: &str = "report.json";

/// The lifecycle report of the `i`th scheduler of several run in turn in
/// one VM (`scheduler::lifecycle::run_each_in_vm`), written by the guest
/// side.
pub fn scheduler_report(i: usize) -> String {
    format!("report-{i}.json")
}

/// A serving session's queued cell `i` (an `agent::BatchCell`) in its
/// queue directory, written atomically by the host side, read by the
/// guest side once cell `i - 1` has ended.
pub fn queued_cell(queue: &Path, i: usize) -> PathBuf {
    queue.join(format!("{i}.json"))
}

/// Written by the host side when a serving session's guest side is to end
/// (after the cell it is running, if any).
pub fn quit_file(queue: &Path) -> PathBuf {
    queue.join("quit")
}

/// Where cell `i` of a batch keeps its files in the shared directory.
pub fn cell_dir(shared: &Path, i: usize) -> PathBuf {
    shared.join("cells").join(i.to_string())
}

/// When a cell marker is written: before the cell or after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mark {
    Begins,
    Ends,
}

/// The kernel-log line around cell `i` (the agent writes it to /dev/kmsg,
/// so the host can cut each cell's part out of the console or kernel log).
pub fn marker(i: usize, id: &str, mark: Mark) -> String {
    let what = match mark {
        Mark::Begins => "begins",
        Mark::Ends => "ends",
    };
    format!("scx-harness: cell {i} {id} {what}")
}

/// The argument that names `name` inside the shared directory, for a
/// guest-side command line (`@shared/NAME`).
pub fn shared_arg(name: &str) -> String {
    format!("@shared/{name}")
}

/// Guest side: `@shared/NAME` in a path argument means the shared
/// directory ([`SHARED_ENV`]); any other argument is a path as it is.
pub fn guest_path(arg: &str) -> PathBuf {
    match (arg.strip_prefix("@shared/"), std::env::var_os(SHARED_ENV)) {
        (Some(rest), Some(dir)) => PathBuf::from(dir).join(rest),
        _ => PathBuf::from(arg),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_of_two_cells_never_match_each_other() {
        let b1 = marker(1, "a/b", Mark::Begins);
        assert!(!marker(11, "a/b", Mark::Begins).contains(&b1));
        assert_ne!(b1, marker(1, "a/b", Mark::Ends));
    }

    #[test]
    fn a_plain_path_argument_is_left_alone() {
        assert_eq!(guest_path("/tmp/x.json"), PathBuf::from("/tmp/x.json"));
        assert_eq!(shared_arg("r.json"), "@shared/r.json");
    }
}
