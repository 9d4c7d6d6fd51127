//! What every input to a parser must get, as functions of arbitrary bytes:
//! the bodies of the fuzz targets (`harness/fuzz`, `cargo ci fuzz`) and of
//! the test that replays their saved corpus on stable Rust.
//!
//! Each function panics exactly when the parser breaks a promise: a panic
//! inside the parser, a rejection that is not one classified error naming
//! the file, the place and the fix, or a result that contradicts itself.
//! Hangs and memory blow-ups are caught by the fuzzer's own limits.

use std::path::Path;

use crate::error::{classify, Failure};

/// The longest first line an error may have: a message that echoes a huge
/// input back is not a clear one.
pub const MAX_ERROR_LINE: usize = 400;

/// The path the fuzzed inputs pretend to come from.
const FILE: &str = "fuzzed.yaml";

/// A scenario file's bytes through what `scenario::load` does after reading
/// them: UTF-8 check, YAML and schema, validation.
pub fn scenario(data: &[u8]) {
    let path = Path::new(FILE);
    let res = crate::datafile::decode(path, "scenario", data.to_vec())
        .and_then(|text| crate::scenario::parse(path, &text));
    match res {
        Ok(loaded) => {
            let s = &loaded.scenario;
            assert_eq!(loaded.hash, s.hash(), "the hash is of the scenario");
            assert!(!s.groups.is_empty() && s.groups.len() <= crate::scenario::MAX_GROUPS);
            assert!(s.warmup < s.duration, "validated: warm-up inside the run");
            for g in &s.groups {
                assert!(s.group(&g.name).is_some());
            }
        }
        Err(e) => clear_rejection(&e),
    }
}

/// A registry file's bytes through `Registry::parse`: the same promise.
pub fn registry(data: &[u8]) {
    let path = Path::new(FILE);
    let res = crate::datafile::decode(path, "scheduler registry", data.to_vec())
        .and_then(|text| crate::scheduler::registry::Registry::parse(path, &text));
    if let Err(e) = res {
        clear_rejection(&e);
    }
}

fn clear_rejection(e: &anyhow::Error) {
    let msg = format!("{e:#}");
    assert_eq!(classify(e), Some(Failure::BadInput), "not bad input: {msg}");
    assert!(msg.starts_with(FILE), "does not name the file: {msg}");
    assert!(msg.contains("\n  fix: "), "no fix: {msg}");
    let first = msg.lines().next().unwrap_or("");
    assert!(
        first.chars().count() <= MAX_ERROR_LINE,
        "first line of {} characters: {first:.200}...",
        first.chars().count()
    );
}

/// A guest console log (or kernel log) through every parser that reads
/// one: crash patterns and their excerpt, sched_ext events, and a
/// `/dev/kmsg` record.
pub fn console(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let lines = text.lines().count();
    for c in crate::vm::console::scan(&text) {
        assert!(c.line_no >= 1 && c.line_no <= lines, "line {}", c.line_no);
        let excerpt = crate::vm::console::excerpt(&text, &c, 20);
        assert!(excerpt.starts_with(&c.text), "excerpt starts elsewhere");
        assert!(excerpt.lines().count() <= 21);
    }
    for ev in crate::scheduler::exit::kernel_events(&text) {
        use crate::scheduler::exit::KernelEvent;
        match ev {
            KernelEvent::Enabled { ops, .. } | KernelEvent::Disabled { ops, .. } => {
                assert!(text.contains(&format!("\"{ops}\"")))
            }
            KernelEvent::Message { ops, .. } => {
                assert!(!ops.is_empty() && !ops.contains(' '))
            }
        }
    }
    if let Some(msg) = crate::kmsg::parse_record(data) {
        // Unescaping \xNN only ever shortens the text.
        assert!(msg.chars().count() <= String::from_utf8_lossy(data).chars().count());
    }
}

/// The saved corpus of each target replays through these functions: what
/// the fuzzer found once stays fixed.
#[cfg(test)]
mod tests {
    fn replay(target: &str, f: fn(&[u8])) {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fuzz/corpus")
            .join(target);
        let mut n = 0;
        for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.unwrap().path();
            f(&std::fs::read(&path).unwrap());
            n += 1;
        }
        assert!(n > 0, "empty corpus in {}", dir.display());
    }

    #[test]
    fn scenario_corpus_replays() {
        replay("scenario", super::scenario);
    }

    #[test]
    fn registry_corpus_replays() {
        replay("registry", super::registry);
    }

    #[test]
    fn console_corpus_replays() {
        replay("console", super::console);
    }
}
