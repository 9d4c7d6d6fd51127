//! The crates.io side of `bisect` without `--tree`: a scheduler crate's
//! published versions between a good and a bad one. They come from
//! crates.io's sparse index (one HTTPS GET with curl of
//! `https://index.crates.io/PREFIX/NAME`: a JSON object per line, each
//! with `vers` and `yanked`; the layout is cargo's, "Index format" in
//! <https://doc.rust-lang.org/cargo/reference/registry-index.html>).
//!
//! Knows crates.io and semver; nothing about builds or VMs (`cli::bisect`
//! installs each version the way the registry's `crate` sources are).

use std::process::Command;

use anyhow::Result;
use semver::Version;

use super::git::Rev;
use crate::error::{fail, Failure};

/// Where crates.io's sparse index keeps `name`'s file: `1/a`, `2/ab`,
/// `3/a/abc`, else the first two and next two letters (`sc/x_/scx_lavd`),
/// lower-cased.
pub fn index_path(name: &str) -> String {
    let n = name.to_lowercase();
    match n.len() {
        1 => format!("1/{n}"),
        2 => format!("2/{n}"),
        3 => format!("3/{}/{n}", &n[..1]),
        _ => format!("{}/{}/{n}", &n[..2], &n[2..4]),
    }
}

/// One published version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    pub version: Version,
    /// Withdrawn by its authors (`cargo yank`): `cargo install` refuses it
    /// even at an exact version, so it is no step and no end.
    pub yanked: bool,
}

/// Whether `name` can be a crate's name (ASCII letters, digits, `_`, `-`;
/// at most 64: crates.io's rule), and so a path of the index.
pub fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// The versions an index file lists, in semver order (not the order they
/// were published in: a 1.0.21 published after 1.1.0 sorts before it).
/// A line whose version semver cannot read (crates.io took a few before
/// it checked) is left out; anything else that is not a version entry is
/// an error naming the line (the body is not an index file).
pub fn parse_index(text: &str) -> Result<Vec<Published>, String> {
    #[derive(serde::Deserialize)]
    struct Line {
        vers: String,
        #[serde(default)]
        yanked: bool,
    }
    let mut out = Vec::new();
    for (i, l) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let line: Line = serde_json::from_str(l).map_err(|e| format!("line {}: {e}", i + 1))?;
        let Ok(version) = Version::parse(&line.vers) else {
            tracing::debug!(
                "index line {}: {:?} is not semver; left out",
                i + 1,
                line.vers
            );
            continue;
        };
        out.push(Published {
            version,
            yanked: line.yanked,
        });
    }
    out.sort_by(|a, b| a.version.cmp(&b.version));
    Ok(out)
}

/// `name`'s published versions, read from crates.io (curl, 60 s at most).
/// Errors: curl missing or failing (no network), no such crate.
pub fn fetch(name: &str) -> Result<Vec<Published>> {
    if !valid_name(name) {
        return Err(fail(
            Failure::BadInput,
            format!("{name:?} cannot be a crate's name (ASCII letters, digits, _ and -, at most 64)\n  fix: name a scheduler published on crates.io, such as scx_lavd"),
        ));
    }
    let url = format!("https://index.crates.io/{}", index_path(name));
    let mut c = Command::new("curl");
    c.args(["--silent", "--show-error", "--location", "--max-time", "60"])
        .args(["--write-out", "\n%{http_code}"])
        .arg(&url);
    crate::process::die_with_parent(&mut c);
    let out = c.output().map_err(|e| {
        fail(
            Failure::HostTool,
            format!("curl (to read {url}): {e}\n  fix: `cargo ci setup` installs it"),
        )
    })?;
    if crate::process::interrupted() {
        return Err(fail(Failure::Interrupted, "interrupted"));
    }
    let body = String::from_utf8_lossy(&out.stdout);
    let (text, code) = body.rsplit_once('\n').unwrap_or(("", &body));
    if !out.status.success() {
        return Err(fail(
            Failure::Infrastructure,
            format!(
                "reading {url}: {}\n  fix: check the network, then run it again",
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        ));
    }
    match code.trim() {
        "200" => parse_index(text).map_err(|e| {
            fail(
                Failure::Infrastructure,
                format!("{url} is not a crates.io index file: {e}\n  fix: run it again; if it stays so, bisect the scheduler's git tree with --tree"),
            )
        }),
        "404" => Err(fail(
            Failure::BadInput,
            format!(
                "{name}: crates.io has no crate of that name ({url}: 404)\n  fix: name a scheduler published on crates.io (scx_lavd, scx_bpfland, ...; `_` and `-` differ), or bisect its git tree with --tree"
            ),
        )),
        other => Err(fail(
            Failure::Infrastructure,
            format!("reading {url}: HTTP {other}\n  fix: run it again later"),
        )),
    }
}

/// The versions after `good` up to and including `bad`, oldest first,
/// yanked ones left out, each as a [`Rev`] (id: the version; line: "NAME
/// VERSION"); and `good` as a Rev. Bad input, naming the published
/// versions, when either end is not one of them, is yanked, or `good` is
/// not older.
pub fn between(
    name: &str,
    published: &[Published],
    good: &str,
    bad: &str,
) -> Result<(Rev, Vec<Rev>)> {
    let rev = |v: &Version| Rev {
        id: v.to_string(),
        line: format!("{name} {v}"),
    };
    let listed = || {
        let all: Vec<String> = published
            .iter()
            .filter(|p| !p.yanked)
            .map(|p| p.version.to_string())
            .collect();
        match all.len() {
            0 => "none".to_string(),
            n if n <= 12 => all.join(", "),
            n => format!(
                "{} ... {} ({n} in all)",
                all[..4].join(", "),
                all[n - 4..].join(", ")
            ),
        }
    };
    let find = |flag: &str, v: &str| -> Result<Version> {
        let version = Version::parse(v.trim_start_matches('v')).map_err(|e| {
            fail(
                Failure::BadInput,
                format!("{flag} {v}: not a version ({e})\n  fix: a version as crates.io lists it, such as 1.0.11"),
            )
        })?;
        match published.iter().find(|p| p.version == version) {
            None => Err(fail(
                Failure::BadInput,
                format!(
                    "{flag} {v}: {name} has no published version {version}; crates.io lists {}\n  fix: name one of those",
                    listed()
                ),
            )),
            Some(p) if p.yanked => Err(fail(
                Failure::BadInput,
                format!(
                    "{flag} {v}: {name} {version} was yanked, and cargo installs no yanked version; crates.io lists {}\n  fix: name one of those",
                    listed()
                ),
            )),
            Some(_) => Ok(version),
        }
    };
    let (g, b) = (find("--good", good)?, find("--bad", bad)?);
    if g == b {
        return Err(fail(
            Failure::BadInput,
            format!("--good and --bad are the same version ({g})\n  fix: name a newer --bad"),
        ));
    }
    if g > b {
        return Err(fail(
            Failure::BadInput,
            format!(
                "--good {g} is not older than --bad {b}: the search goes from an older good version to a newer bad one\n  fix: swap them, or name an older --good"
            ),
        ));
    }
    let steps = published
        .iter()
        .filter(|p| p.version > g && p.version <= b && !p.yanked)
        .map(|p| rev(&p.version))
        .collect();
    Ok((rev(&g), steps))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_paths_follow_cargos_layout() {
        assert_eq!(index_path("scx_lavd"), "sc/x_/scx_lavd");
        assert_eq!(index_path("Serde"), "se/rd/serde");
        assert_eq!(index_path("a"), "1/a");
        assert_eq!(index_path("ab"), "2/ab");
        assert_eq!(index_path("abc"), "3/a/abc");
    }

    fn index() -> Vec<Published> {
        // Out of order, with a yanked one and a pre-release, as the index
        // may list them.
        parse_index(concat!(
            r#"{"name":"x","vers":"1.0.10","deps":[],"cksum":"0","features":{},"yanked":false}"#,
            "\n",
            r#"{"name":"x","vers":"1.0.9","deps":[],"cksum":"0","features":{},"yanked":false}"#,
            "\n",
            r#"{"name":"x","vers":"1.0.11","deps":[],"cksum":"0","features":{},"yanked":true}"#,
            "\n",
            r#"{"name":"x","vers":"1.1.0-rc.1","deps":[],"cksum":"0","features":{}}"#,
            "\n",
            r#"{"name":"x","vers":"1.1.0","deps":[],"cksum":"0","features":{},"yanked":false}"#,
            "\n",
        ))
        .unwrap()
    }

    #[test]
    fn the_index_is_read_in_semver_order() {
        let v: Vec<String> = index().iter().map(|p| p.version.to_string()).collect();
        assert_eq!(v, ["1.0.9", "1.0.10", "1.0.11", "1.1.0-rc.1", "1.1.0"]);
        assert!(index()[2].yanked);
        assert!(parse_index("not json\n").unwrap_err().contains("line 1"));
        // A version semver cannot read is left out, not the whole crate.
        let odd = parse_index(
            r#"{"vers":"0.1.01"}
{"vers":"0.1.2"}"#,
        )
        .unwrap();
        assert_eq!(odd.len(), 1);
        assert!(valid_name("scx_lavd") && valid_name("scx-lavd"));
        assert!(!valid_name("añxx") && !valid_name("../x") && !valid_name(""));
    }

    #[test]
    fn the_steps_are_the_versions_after_good_up_to_bad_without_yanked_ones() {
        let (good, steps) = between("x", &index(), "1.0.9", "1.1.0").unwrap();
        assert_eq!(good.line, "x 1.0.9");
        let ids: Vec<&str> = steps.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids, ["1.0.10", "1.1.0-rc.1", "1.1.0"]);
    }

    #[test]
    fn an_end_that_was_never_published_is_named_with_the_published_ones() {
        let e = format!(
            "{:#}",
            between("x", &index(), "1.0.5", "1.1.0").unwrap_err()
        );
        assert!(
            e.contains("--good 1.0.5") && e.contains("1.0.9, 1.0.10"),
            "{e}"
        );
        let e = format!(
            "{:#}",
            between("x", &index(), "1.1.0", "1.0.9").unwrap_err()
        );
        assert!(e.contains("not older"), "{e}");
        let e = format!("{:#}", between("x", &index(), "one", "1.0.9").unwrap_err());
        assert!(e.contains("not a version"), "{e}");
        // cargo installs no yanked version, so it cannot be an end.
        let e = format!(
            "{:#}",
            between("x", &index(), "1.0.10", "1.0.11").unwrap_err()
        );
        assert!(
            e.contains("was yanked") && e.contains("lists 1.0.9, 1.0.10, 1.1.0-rc.1, 1.1.0"),
            "{e}"
        );
        let e = format!(
            "{:#}",
            between("x", &index(), "1.0.9", "1.0.9").unwrap_err()
        );
        assert!(e.contains("the same version"), "{e}");
    }
}
