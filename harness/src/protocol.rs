//! The protocol between the host side and the guest side of a session:
//! the shared directory's layout, its file names, the kernel-log markers
//! around each cell and each scheduler's turn, and how a guest-side path argument names the shared
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

impl Mark {
    fn word(self) -> &'static str {
        match self {
            Mark::Begins => "begins",
            Mark::Ends => "ends",
        }
    }
}

/// The kernel-log line around cell `i` (the agent writes it to /dev/kmsg,
/// so the host can cut each cell's part out of the console or kernel log).
pub fn marker(i: usize, id: &str, mark: Mark) -> String {
    format!("scx-harness: cell {i} {id} {}", mark.word())
}

/// The kernel-log line around turn `i` of a guest-side `run-scheduler`
/// given several schedulers (`scheduler::lifecycle::run_each_in_vm`), the
/// turn of scheduler `name`: the host cuts each turn's part out of the
/// console with it, as a cell's with [`marker`].
pub fn turn_marker(i: usize, name: &str, mark: Mark) -> String {
    format!("scx-harness: turn {i} {name} {}", mark.word())
}

/// The lines of `text` from the first holding `begin` to the next holding
/// `end`, both included, or to the last line when none holds `end` (the
/// VM ended in that part): 0-based line indices. None when no line holds
/// `begin` (that part never began).
pub fn marked_lines(text: &str, begin: &str, end: &str) -> Option<std::ops::Range<usize>> {
    let mut lines = text.lines().enumerate();
    let start = lines.find(|(_, l)| l.contains(begin))?.0;
    let stop = lines
        .find(|(_, l)| l.contains(end))
        .map_or(text.lines().count(), |(i, _)| i + 1);
    Some(start..stop)
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
        assert!(!turn_marker(11, "x", Mark::Begins).contains(&turn_marker(1, "x", Mark::Begins)));
        assert!(!b1.contains(&turn_marker(1, "a/b", Mark::Begins)));
    }

    #[test]
    fn a_marked_part_runs_from_its_begin_line_to_its_end_line_or_the_last() {
        let (b, e) = (marker(2, "s", Mark::Begins), marker(2, "s", Mark::Ends));
        let text = format!("boot\n[ 1.0] {b}\nin it\n[ 2.0] {e}\nafter\n");
        assert_eq!(marked_lines(&text, &b, &e), Some(1..4));
        // The VM ended inside it: to the last line.
        let text = format!("boot\n[ 1.0] {b}\nin it\nKernel panic\n");
        assert_eq!(marked_lines(&text, &b, &e), Some(1..4));
        assert_eq!(marked_lines("boot\n", &b, &e), None);
        // An end marker before the begin is not the end.
        let text = format!("{e}\n{b}\nx\n");
        assert_eq!(marked_lines(&text, &b, &e), Some(1..3));
    }

    #[test]
    fn a_plain_path_argument_is_left_alone() {
        assert_eq!(guest_path("/tmp/x.json"), PathBuf::from("/tmp/x.json"));
        assert_eq!(shared_arg("r.json"), "@shared/r.json");
    }
}
