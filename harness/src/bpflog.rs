//! libbpf's own messages (the verifier's log among them) captured around a
//! load, so a refusal is reported with the lines that explain it. libbpf's
//! print callback is a plain function: the lines are gathered in a static.

use std::sync::Mutex;

use libbpf_rs::PrintLevel;

static LOG: Mutex<Vec<String>> = Mutex::new(Vec::new());
/// One capture at a time: libbpf's callback is process-wide.
static CAPTURE: Mutex<()> = Mutex::new(());

fn collect(_level: PrintLevel, msg: String) {
    if let Ok(mut log) = LOG.lock() {
        log.extend(msg.lines().map(str::to_string));
    }
}

/// Runs `f` with libbpf's messages (info and above) captured, and returns
/// its result with them.
pub fn capture<T>(f: impl FnOnce() -> T) -> (T, Vec<String>) {
    let _one = CAPTURE.lock().unwrap_or_else(|e| e.into_inner());
    if let Ok(mut log) = LOG.lock() {
        log.clear();
    }
    let previous = libbpf_rs::set_print(Some((PrintLevel::Info, collect)));
    let result = f();
    libbpf_rs::set_print(previous);
    let log = LOG
        .lock()
        .map(|mut l| std::mem::take(&mut *l))
        .unwrap_or_default();
    (result, log)
}

/// The last `n` non-empty lines, for error messages.
pub fn tail(log: &[String], n: usize) -> Vec<String> {
    let lines: Vec<&String> = log.iter().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(n)..]
        .iter()
        .map(|s| s.to_string())
        .collect()
}
