//! Recognising kernel trouble in a guest's console log.
//!
//! Pure text matching; knows nothing about QEMU. The patterns are those in
//! shared/docs/sched-ext-6.12.md ("Kernel crash patterns worth catching").

/// What kind of trouble a console line announces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum CrashKind {
    Panic,
    Oops,
    Bug,
    Warning,
    GeneralProtectionFault,
    InvalidOpcode,
    RcuStall,
    HungTask,
    SoftLockup,
    Ubsan,
    /// "NOHZ tick-stop error": a CPU stopped its tick with softirq work
    /// pending (kernel/time/tick-sched.c), which strands timers there.
    TickStop,
}

impl CrashKind {
    /// A panic ends the guest; the other kinds leave it running, tainted.
    pub fn is_fatal(self) -> bool {
        matches!(self, CrashKind::Panic)
    }
}

/// Ordered most specific first: "watchdog: BUG: soft lockup" must not be
/// classified as a plain BUG.
const PATTERNS: &[(&str, CrashKind)] = &[
    ("Kernel panic - not syncing", CrashKind::Panic),
    ("watchdog: BUG: soft lockup", CrashKind::SoftLockup),
    ("kernel BUG at", CrashKind::Bug),
    ("BUG:", CrashKind::Bug),
    ("Oops:", CrashKind::Oops),
    (
        "general protection fault",
        CrashKind::GeneralProtectionFault,
    ),
    ("invalid opcode:", CrashKind::InvalidOpcode),
    ("UBSAN:", CrashKind::Ubsan),
    ("NOHZ tick-stop error", CrashKind::TickStop),
    ("WARNING:", CrashKind::Warning),
];

/// One line of the console that matched, 1-based.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CrashLine {
    pub line_no: usize,
    pub kind: CrashKind,
    pub text: String,
}

fn classify_line(line: &str) -> Option<CrashKind> {
    // The SRSO mitigation advisory is printed as a WARNING on many CPUs.
    if line.contains("WARNING: See https://") {
        return None;
    }
    if line.contains("INFO: rcu_") && line.contains("detected stall") {
        return Some(CrashKind::RcuStall);
    }
    if line.contains("INFO: task ") && line.contains("blocked for more than") {
        return Some(CrashKind::HungTask);
    }
    PATTERNS
        .iter()
        .find(|(p, _)| line.contains(p))
        .map(|(_, k)| *k)
}

/// The console log at `path` as text, bytes that are not UTF-8 replaced
/// (a guest program's binary output or serial noise must not make the
/// whole log unreadable, and with it every crash line); empty when it
/// cannot be read.
pub fn read(path: &std::path::Path) -> String {
    std::fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

/// Every line of `console` that announces kernel trouble.
pub fn scan(console: &str) -> Vec<CrashLine> {
    console
        .lines()
        .enumerate()
        .filter_map(|(i, l)| {
            classify_line(l).map(|kind| CrashLine {
                line_no: i + 1,
                kind,
                text: l.trim_end().to_string(),
            })
        })
        .collect()
}

/// The first match and the `after` lines that follow it: the excerpt a
/// person needs to see first (the panic message and its backtrace).
pub fn excerpt(console: &str, first: &CrashLine, after: usize) -> String {
    console
        .lines()
        .skip(first.line_no - 1)
        .take(after + 1)
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(line: &str, expected: Option<CrashKind>) {
        assert_eq!(classify_line(line), expected, "{line}");
    }

    #[test]
    fn recognises_each_pattern() {
        check(
            "[    3.1] Kernel panic - not syncing: sysrq triggered crash",
            Some(CrashKind::Panic),
        );
        check(
            "[    1.0] BUG: kernel NULL pointer dereference, address: 0",
            Some(CrashKind::Bug),
        );
        check(
            "[    1.0] kernel BUG at mm/slub.c:123!",
            Some(CrashKind::Bug),
        );
        check(
            "[    1.0] Oops: 0002 [#1] PREEMPT SMP NOPTI",
            Some(CrashKind::Oops),
        );
        check(
            "[    1.0] WARNING: CPU: 0 PID: 1 at kernel/sched/ext.c:10",
            Some(CrashKind::Warning),
        );
        check(
            "[    1.0] general protection fault, probably for non-canonical address",
            Some(CrashKind::GeneralProtectionFault),
        );
        check(
            "[    1.0] invalid opcode: 0000 [#1] SMP",
            Some(CrashKind::InvalidOpcode),
        );
        check(
            "[   30.0] INFO: rcu_preempt detected stalls on CPUs/tasks:",
            Some(CrashKind::RcuStall),
        );
        check(
            "[  120.0] INFO: task kworker/0:1:12 blocked for more than 120 seconds.",
            Some(CrashKind::HungTask),
        );
        check(
            "[   26.0] watchdog: BUG: soft lockup - CPU#0 stuck for 22s! [spin:99]",
            Some(CrashKind::SoftLockup),
        );
        check(
            "[    1.0] UBSAN: array-index-out-of-bounds in kernel/x.c:1:2",
            Some(CrashKind::Ubsan),
        );
        check(
            "[    9.0] NOHZ tick-stop error: local softirq work is pending, handler #08!!!",
            Some(CrashKind::TickStop),
        );
    }

    #[test]
    fn ignores_benign_lines() {
        check("[    0.1] WARNING: See https://kernel.org/doc/html/latest/admin-guide/hw-vuln/srso.html for mitigation options.", None);
        check(
            "[    2.0] sched_ext: BPF scheduler \"simple\" enabled",
            None,
        );
        check(
            "[    2.0] sched_ext: BPF scheduler \"simple\" disabled (unregistered from user space)",
            None,
        );
        check("hello from the guest", None);
    }

    #[test]
    fn a_byte_that_is_not_utf8_hides_no_crash_line() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("console.log");
        std::fs::write(
            &log,
            b"boot \xff\xfe noise\n[ 3.1] Kernel panic - not syncing: x\n",
        )
        .unwrap();
        let found = scan(&read(&log));
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].line_no, 2);
        assert_eq!(read(&dir.path().join("none")), "");
    }

    #[test]
    fn scan_numbers_lines_and_excerpt_follows_first() {
        let console = "boot\nok\nKernel panic - not syncing: sysrq triggered crash\nCPU: 0 PID: 1\nCall Trace:\nend\n";
        let found = scan(console);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].line_no, 3);
        assert!(found[0].kind.is_fatal());
        assert_eq!(
            excerpt(console, &found[0], 2),
            "Kernel panic - not syncing: sysrq triggered crash\nCPU: 0 PID: 1\nCall Trace:"
        );
    }
}
