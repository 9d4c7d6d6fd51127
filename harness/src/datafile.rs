//! Reading the project's YAML data files (the scheduler registry, scenarios,
//! the matrix): one error per mistake, naming the file, the line and the
//! column, and what was expected. Knows nothing about what the files mean.

use std::path::Path;

use anyhow::Result;
use serde::de::DeserializeOwned;

use crate::error::{fail, Failure};

/// Largest data file accepted: a registry or scenario is a few KiB; a file
/// this big is a mistake (a log passed by accident), and reading it whole
/// would cost memory for nothing.
pub const MAX_BYTES: u64 = 1 << 20;

/// Reads `path` as UTF-8 text, bounded by [`MAX_BYTES`].
pub fn read_text(path: &Path, what: &str) -> Result<String> {
    let meta = std::fs::metadata(path)
        .map_err(|e| fail(Failure::BadInput, format!("{what} {}: {e}", path.display())))?;
    if meta.len() > MAX_BYTES {
        return Err(fail(
            Failure::BadInput,
            format!(
                "{what} {} is {} bytes; data files are at most {MAX_BYTES} bytes\n  fix: pass the YAML file itself",
                path.display(),
                meta.len()
            ),
        ));
    }
    let bytes = std::fs::read(path)
        .map_err(|e| fail(Failure::BadInput, format!("{what} {}: {e}", path.display())))?;
    decode(path, what, bytes)
}

/// `bytes` read from `path` as UTF-8 text, or an error naming the line
/// and column of the first byte that is not.
pub fn decode(path: &Path, what: &str, bytes: Vec<u8>) -> Result<String> {
    String::from_utf8(bytes).map_err(|e| {
        let at = e.utf8_error().valid_up_to();
        let (line, col) = line_col(&String::from_utf8_lossy(&e.into_bytes()[..at]), at);
        fail(
            Failure::BadInput,
            format!(
                "{}:{line}:{col}: not UTF-8 text\n  fix: save the {what} as UTF-8",
                path.display()
            ),
        )
    })
}

fn line_col(text: &str, byte: usize) -> (usize, usize) {
    let before = &text[..byte.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

/// Parses YAML text into `T`; a syntax or schema error becomes one
/// classified error `FILE:LINE:COL: message` followed by `hint`.
pub fn parse_yaml<T: DeserializeOwned>(path: &Path, text: &str, hint: &str) -> Result<T> {
    serde_yaml::from_str(text).map_err(|e| {
        // serde_yaml appends " at line L column C" to its message; the
        // place says it instead.
        let msg = e.to_string();
        let msg = msg
            .split(" at line ")
            .next()
            .unwrap_or(&msg)
            .trim_end()
            .to_string();
        let place = match e.location() {
            Some(l) => {
                let (line, col) =
                    value_position(text, &msg, l.line()).unwrap_or((l.line(), l.column()));
                format!("{}:{line}:{col}", path.display())
            }
            None => path.display().to_string(),
        };
        error_at(&place, &msg, hint)
    })
}

/// The one error of a data file: `PLACE: MESSAGE` and a `fix:` line. A
/// message that quotes a long value back (serde's "invalid type: string
/// ...", a 5,000-character name) is shortened: the place says where the
/// value is; the message need only say what is wrong with it.
pub fn error_at(place: &str, msg: &str, hint: &str) -> anyhow::Error {
    fail(
        Failure::BadInput,
        format!("{place}: {}\n  fix: {hint}", shorten(msg)),
    )
}

/// Longest quoted value kept whole in a message.
const MAX_QUOTED: usize = 60;
/// Longest message kept whole.
const MAX_MESSAGE: usize = 300;

fn shorten(msg: &str) -> String {
    let mut out = String::with_capacity(msg.len().min(MAX_MESSAGE + 8));
    let mut chars = msg.chars().peekable();
    while let Some(c) = chars.next() {
        out.push(c);
        if c != '"' {
            continue;
        }
        // A quoted value, with \" and \\ escapes: keep its first
        // MAX_QUOTED characters.
        let mut kept = 0;
        let mut cut = false;
        while let Some(c) = chars.next() {
            if c == '"' {
                if cut {
                    out.push_str("...");
                }
                out.push('"');
                break;
            }
            let escaped = if c == '\\' { chars.next() } else { None };
            if kept < MAX_QUOTED {
                out.push(c);
                out.extend(escaped);
                kept += 1;
            } else {
                cut = true;
            }
        }
    }
    if out.chars().count() > MAX_MESSAGE {
        out = out.chars().take(MAX_MESSAGE).collect::<String>() + "...";
    }
    out
}

/// serde_yaml places errors raised by a value's own parser (a duration
/// that is not one) at the start of the enclosing map. Such messages quote
/// the bad value first (`"soon" is not a duration`): find that value at or
/// after `from_line` and point at it instead.
fn value_position(text: &str, msg: &str, from_line: usize) -> Option<(usize, usize)> {
    // "groups[1].work: \"x\" is ..." or, at the top level, "\"x\" is ...".
    let after_path = if msg.starts_with('"') {
        msg
    } else {
        msg.split_once(": ").map_or(msg, |(_, m)| m)
    };
    let quoted = after_path.strip_prefix('"')?.split_once('"')?.0;
    if quoted.is_empty() {
        return None;
    }
    text.lines()
        .enumerate()
        .skip(from_line.saturating_sub(1))
        .find_map(|(i, l)| {
            l.match_indices(quoted).find_map(|(at, _)| {
                let before = l[..at].trim_end();
                let token_start = before.ends_with(':')
                    || before.ends_with('-')
                    || before.ends_with('[')
                    || before.ends_with(',')
                    || before.ends_with('"')
                    || before.ends_with('\'');
                // The opening quote (ASCII) is the last character of
                // `before`, which whitespace may separate from the value:
                // trim_end() also takes U+2028, three bytes long.
                let start = if before.ends_with('"') || before.ends_with('\'') {
                    before.len() - 1
                } else {
                    at
                };
                token_start.then(|| (i + 1, l[..start].chars().count() + 1))
            })
        })
}

/// The 1-based line of the first line of `text` that reads `key: value`
/// (the usual way a list entry is named), for errors found after parsing.
pub fn line_of(text: &str, key: &str, value: &str) -> Option<usize> {
    let pattern = format!("{key}:");
    text.lines()
        .position(|l| {
            l.match_indices(&pattern).any(|(at, _)| {
                let before = l[..at].trim_end();
                let starts_token = before.is_empty()
                    || before.ends_with('-')
                    || before.ends_with('{')
                    || before.ends_with(',');
                let v = l[at + pattern.len()..]
                    .split([',', '}'])
                    .next()
                    .unwrap_or("")
                    .trim()
                    .trim_matches(|c| c == '"' || c == '\'');
                starts_token && v == value
            })
        })
        .map(|i| i + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct T {
        name: String,
        n: u32,
    }

    #[test]
    fn errors_name_file_line_and_column() {
        let err =
            parse_yaml::<T>(Path::new("x.yaml"), "name: a\nn: many\n", "see the docs").unwrap_err();
        let msg = format!("{err:#}");
        assert!(msg.starts_with("x.yaml:2:4: n: invalid type"), "{msg}");
        assert!(msg.contains("fix: see the docs"), "{msg}");
        assert_eq!(crate::classify(&err), Some(Failure::BadInput));
        let err =
            parse_yaml::<T>(Path::new("x.yaml"), "name: a\nn: 1\nextra: 2\n", "h").unwrap_err();
        assert!(
            format!("{err}").contains("x.yaml:3:1: unknown field `extra`"),
            "{err}"
        );
    }

    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct D {
        name: String,
        #[serde(with = "crate::units::duration_str")]
        t: std::time::Duration,
    }

    #[test]
    fn a_bad_value_is_located_at_the_value() {
        let text = "items:\n  - name: a\n    t: 5s\n  - name: b\n    t: soon\n";
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        struct L {
            items: Vec<D>,
        }
        let err = parse_yaml::<L>(Path::new("x.yaml"), text, "h").unwrap_err();
        assert!(
            format!("{err}").starts_with("x.yaml:5:8: items[1]: \"soon\" is not a duration"),
            "{err}"
        );
    }

    #[test]
    fn line_of_finds_list_entries() {
        let text = "schedulers:\n  - name: a\n    kind: x\n  - name: \"b\"\n";
        assert_eq!(line_of(text, "name", "b"), Some(4));
        assert_eq!(line_of(text, "kind", "x"), Some(3));
        assert_eq!(line_of(text, "name", "c"), None);
        let flow = "groups:\n  - { name: a, threads: 2 }\n  - {name: b}\n";
        assert_eq!(line_of(flow, "name", "b"), Some(3));
        assert_eq!(line_of(flow, "threads", "2"), Some(2));
        assert_eq!(line_of("  - nickname: a\n", "name", "a"), None);
    }

    #[test]
    fn long_quoted_values_are_shortened_in_messages() {
        let long = "x".repeat(5000);
        let msg = shorten(&format!("invalid type: string \"{long}\", expected a map"));
        assert_eq!(
            msg,
            format!(
                "invalid type: string \"{}...\", expected a map",
                "x".repeat(MAX_QUOTED)
            )
        );
        let escaped = shorten(r#"name "a\"b" is bad"#);
        assert_eq!(escaped, r#"name "a\"b" is bad"#);
        let unquoted = shorten(&"y".repeat(1000));
        assert_eq!(unquoted.chars().count(), MAX_MESSAGE + 3);
        let err = parse_yaml::<std::collections::BTreeMap<String, u32>>(
            Path::new("f.yaml"),
            &format!("a: \"{long}\"\n"),
            "write numbers",
        )
        .unwrap_err();
        let first = format!("{err:#}");
        let first = first.lines().next().unwrap();
        assert!(first.starts_with("f.yaml:1:"), "{first}");
        assert!(first.len() < 200, "{first}");
    }

    #[test]
    fn non_utf8_and_huge_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let bad = dir.path().join("bad.yaml");
        std::fs::write(&bad, b"name: ok\nn: \xff\n").unwrap();
        let err = read_text(&bad, "scenario").unwrap_err();
        assert!(
            format!("{err}").contains("bad.yaml:2:4: not UTF-8"),
            "{err}"
        );
        let huge = dir.path().join("huge.yaml");
        std::fs::write(&huge, vec![b'#'; MAX_BYTES as usize + 1]).unwrap();
        let err = read_text(&huge, "scenario").unwrap_err();
        assert!(format!("{err}").contains("at most"), "{err}");
    }
}
