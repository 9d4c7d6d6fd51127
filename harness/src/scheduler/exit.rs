//! How a sched_ext scheduler ended, as the kernel tells it: the exit kinds
//! of `enum scx_exit_kind` and the `sched_ext:` lines of the kernel log.
//!
//! Pure text and numbers (kernel/sched/ext.c of 6.12: `scx_exit_reason()`,
//! `scx_ops_disable_workfn()`, `scx_ops_enable()`).

/// `enum scx_exit_kind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ExitKind {
    None,
    Done,
    Unreg,
    UnregBpf,
    UnregKern,
    Sysrq,
    Error,
    ErrorBpf,
    ErrorStall,
}

/// (kind, value, reason string the kernel prints)
const KINDS: &[(ExitKind, u32, &str)] = &[
    (ExitKind::None, 0, ""),
    (ExitKind::Done, 1, ""),
    (ExitKind::Unreg, 64, "unregistered from user space"),
    (ExitKind::UnregBpf, 65, "unregistered from BPF"),
    (ExitKind::UnregKern, 66, "unregistered from the main kernel"),
    (ExitKind::Sysrq, 67, "disabled by sysrq-S"),
    (ExitKind::Error, 1024, "runtime error"),
    (ExitKind::ErrorBpf, 1025, "scx_bpf_error"),
    (ExitKind::ErrorStall, 1026, "runnable task stall"),
];

impl ExitKind {
    pub fn from_value(v: u32) -> Option<ExitKind> {
        KINDS.iter().find(|(_, n, _)| *n == v).map(|(k, _, _)| *k)
    }

    /// The kind whose reason string the kernel prints as `reason`.
    pub fn from_reason(reason: &str) -> Option<ExitKind> {
        KINDS
            .iter()
            .find(|(_, _, r)| !r.is_empty() && *r == reason)
            .map(|(k, _, _)| *k)
    }

    pub fn value(self) -> u32 {
        KINDS
            .iter()
            .find(|(k, _, _)| *k == self)
            .map_or(0, |(_, v, _)| *v)
    }

    /// Kinds of 1024 and above are failures; below are orderly exits.
    pub fn is_error(self) -> bool {
        self.value() >= 1024
    }
}

/// One `sched_ext:` line of the kernel log.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum KernelEvent {
    /// `sched_ext: BPF scheduler "NAME" enabled[ (partial)]`
    Enabled { ops: String, partial: bool },
    /// `sched_ext: BPF scheduler "NAME" disabled (REASON)`, or the older
    /// `sched_ext: BPF scheduler "NAME" errored, disabling`.
    Disabled {
        ops: String,
        reason: String,
        kind: Option<ExitKind>,
    },
    /// `sched_ext: NAME: MESSAGE` (printed after an error exit).
    Message { ops: String, message: String },
}

/// Parses one kernel log line (with or without the `[ time]` prefix).
pub fn parse_kernel_line(line: &str) -> Option<KernelEvent> {
    let at = line.find("sched_ext: ")?;
    let rest = &line[at + "sched_ext: ".len()..];
    if let Some(r) = rest.strip_prefix("BPF scheduler \"") {
        let (ops, tail) = r.split_once('"')?;
        let ops = ops.to_string();
        let tail = tail.trim_end();
        if let Some(t) = tail.strip_prefix(" enabled") {
            return Some(KernelEvent::Enabled {
                ops,
                partial: t.contains("(partial)"),
            });
        }
        if let Some(reason) = tail
            .strip_prefix(" disabled (")
            .and_then(|t| t.strip_suffix(')'))
        {
            return Some(KernelEvent::Disabled {
                ops,
                kind: ExitKind::from_reason(reason),
                reason: reason.to_string(),
            });
        }
        if tail.starts_with(" errored, disabling") {
            return Some(KernelEvent::Disabled {
                ops,
                reason: "errored".into(),
                kind: Some(ExitKind::Error),
            });
        }
        return None;
    }
    let (ops, message) = rest.split_once(": ")?;
    if ops.is_empty() || ops.contains(' ') {
        return None;
    }
    Some(KernelEvent::Message {
        ops: ops.to_string(),
        message: message.trim_end().to_string(),
    })
}

/// Every sched_ext event in a kernel log, in order.
pub fn kernel_events(log: &str) -> Vec<KernelEvent> {
    log.lines().filter_map(parse_kernel_line).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip_values_and_reasons() {
        for (k, v, r) in KINDS {
            assert_eq!(ExitKind::from_value(*v), Some(*k));
            assert_eq!(k.value(), *v);
            if !r.is_empty() {
                assert_eq!(ExitKind::from_reason(r), Some(*k));
            }
        }
        assert!(ExitKind::ErrorStall.is_error() && ExitKind::Error.is_error());
        assert!(!ExitKind::Unreg.is_error() && !ExitKind::Sysrq.is_error());
        assert_eq!(ExitKind::from_value(2), None);
        assert_eq!(ExitKind::from_reason("<UNKNOWN>"), None);
    }

    #[test]
    fn parses_the_kernels_lines() {
        let log = "\
[    5.44] sched_ext: BPF scheduler \"simple\" enabled
[    6.00] sched_ext: BPF scheduler \"flatcg\" enabled (partial)
[    7.08] sched_ext: BPF scheduler \"simple\" disabled (unregistered from user space)
[    8.10] sched_ext: BPF scheduler \"bpfland_1.1.4_x86_64_unknown_linux_gnu\" disabled (runnable task stall)
[    8.10] sched_ext: bpfland_1.1.4_x86_64_unknown_linux_gnu: kworker/0:1[12] failed to run for 5.004s
[    9.00] sched_ext: BPF scheduler \"old\" errored, disabling
[    9.10] sched_ext: BPF scheduler not yet used
";
        assert_eq!(
            kernel_events(log),
            vec![
                KernelEvent::Enabled {
                    ops: "simple".into(),
                    partial: false
                },
                KernelEvent::Enabled {
                    ops: "flatcg".into(),
                    partial: true
                },
                KernelEvent::Disabled {
                    ops: "simple".into(),
                    reason: "unregistered from user space".into(),
                    kind: Some(ExitKind::Unreg)
                },
                KernelEvent::Disabled {
                    ops: "bpfland_1.1.4_x86_64_unknown_linux_gnu".into(),
                    reason: "runnable task stall".into(),
                    kind: Some(ExitKind::ErrorStall)
                },
                KernelEvent::Message {
                    ops: "bpfland_1.1.4_x86_64_unknown_linux_gnu".into(),
                    message: "kworker/0:1[12] failed to run for 5.004s".into()
                },
                KernelEvent::Disabled {
                    ops: "old".into(),
                    reason: "errored".into(),
                    kind: Some(ExitKind::Error)
                },
            ]
        );
    }
}
