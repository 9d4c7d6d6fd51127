//! Kernel `.config` files and configuration fragments: parsing, and checking
//! that what a fragment asked for survived Kconfig.
//!
//! Knows the Kconfig text formats; knows nothing about building or caching.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::error::{fail, Failure};

/// The value of one option as written in a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// `# CONFIG_X is not set`
    NotSet,
    /// `CONFIG_X=y`, `=m`, `="string"`, `=123`: the raw text after `=`.
    Set(String),
}

impl Value {
    fn is_enabled(&self) -> bool {
        matches!(self, Value::Set(v) if v == "y" || v == "m")
    }
}

/// `CONFIG_NAME=VALUE` or `CONFIG_NAME is not set`, for messages.
fn show(name: &str, value: &Value) -> String {
    match value {
        Value::NotSet => format!("CONFIG_{name} is not set"),
        Value::Set(v) => format!("CONFIG_{name}={v}"),
    }
}

/// One `CONFIG_` line of a fragment, with where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting {
    /// Without the `CONFIG_` prefix.
    pub name: String,
    pub value: Value,
    pub line: usize,
}

/// A configuration fragment: a name for messages, its text, and its settings.
#[derive(Debug, Clone)]
pub struct Fragment {
    /// The file it was read from, or `<embedded ...>` for the built-in one.
    pub origin: String,
    pub text: String,
    pub settings: Vec<Setting>,
}

impl Fragment {
    /// Reads and parses a fragment file. A missing file or a line that is
    /// neither a setting, a comment nor blank is bad input.
    pub fn read(path: &Path) -> Result<Fragment> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            fail(
                Failure::BadInput,
                format!(
                    "cannot read kernel config fragment {}: {e}\n  \
                     fix: pass an existing file of CONFIG_X=y lines to --config",
                    path.display()
                ),
            )
        })?;
        Fragment::parse(&path.display().to_string(), &text)
    }

    pub fn parse(origin: &str, text: &str) -> Result<Fragment> {
        let mut settings = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim();
            match parse_line(line) {
                Some(Ok((name, value))) => settings.push(Setting {
                    name,
                    value,
                    line: i + 1,
                }),
                Some(Err(())) => {
                    return Err(fail(
                        Failure::BadInput,
                        format!(
                            "{origin}:{}: not a kernel config line: {line:?}\n  \
                             expected CONFIG_NAME=VALUE, `# CONFIG_NAME is not set`, \
                             a # comment, or a blank line",
                            i + 1
                        ),
                    ))
                }
                None => {}
            }
        }
        Ok(Fragment {
            origin: origin.to_string(),
            text: text.to_string(),
            settings,
        })
    }
}

/// `None` for blank and comment lines, `Some(Err)` for garbage.
fn parse_line(line: &str) -> Option<Result<(String, Value), ()>> {
    if line.is_empty() {
        return None;
    }
    if let Some(rest) = line.strip_prefix('#') {
        let rest = rest.trim();
        if let Some(name) = rest
            .strip_prefix("CONFIG_")
            .and_then(|r| r.strip_suffix(" is not set"))
        {
            if is_symbol(name) {
                return Some(Ok((name.to_string(), Value::NotSet)));
            }
        }
        return None;
    }
    let Some((lhs, rhs)) = line.split_once('=') else {
        return Some(Err(()));
    };
    match lhs.trim().strip_prefix("CONFIG_") {
        Some(name) if is_symbol(name) && !rhs.trim().is_empty() => {
            Some(Ok((name.to_string(), Value::Set(rhs.trim().to_string()))))
        }
        _ => Some(Err(())),
    }
}

fn is_symbol(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
}

/// A complete `.config`, as Kconfig wrote it.
#[derive(Debug, Clone, Default)]
pub struct DotConfig {
    values: BTreeMap<String, Value>,
}

impl DotConfig {
    pub fn read(path: &Path) -> Result<DotConfig> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        Ok(DotConfig::parse(&text))
    }

    pub fn parse(text: &str) -> DotConfig {
        let values = text
            .lines()
            .filter_map(|l| parse_line(l.trim()).and_then(Result::ok))
            .collect();
        DotConfig { values }
    }

    /// The value of `name` (without `CONFIG_`); absent options are not set.
    pub fn get(&self, name: &str) -> Value {
        self.values.get(name).cloned().unwrap_or(Value::NotSet)
    }

    pub fn enabled(&self, name: &str) -> bool {
        self.get(name).is_enabled()
    }
}

/// Options the harness cannot work without, whatever the fragments say.
pub const REQUIRED: &[&str] = &["SCHED_CLASS_EXT", "DEBUG_INFO_BTF", "BPF_SYSCALL"];

/// A setting a fragment asked for that the final `.config` does not have.
#[derive(Debug, Clone)]
pub struct Dropped {
    pub origin: String,
    pub setting: Setting,
    pub actual: Value,
}

/// Compares what the fragments asked for with the final `.config`. Returns
/// every setting that did not survive, plus the [`REQUIRED`] options when no
/// fragment mentions them.
pub fn dropped_settings(fragments: &[Fragment], config: &DotConfig) -> Vec<Dropped> {
    let mut out = Vec::new();
    // A later fragment overrides an earlier one, as in Kconfig.
    let mut wanted: BTreeMap<&str, (&Fragment, &Setting)> = BTreeMap::new();
    for f in fragments {
        for s in &f.settings {
            wanted.insert(&s.name, (f, s));
        }
    }
    for (f, s) in wanted.values() {
        let actual = config.get(&s.name);
        let ok = match &s.value {
            Value::NotSet => !actual.is_enabled(),
            Value::Set(v) => matches!(&actual, Value::Set(a) if a == v),
        };
        if !ok {
            out.push(Dropped {
                origin: f.origin.clone(),
                setting: (*s).clone(),
                actual,
            });
        }
    }
    for name in REQUIRED {
        if !wanted.contains_key(name) && !config.enabled(name) {
            out.push(Dropped {
                origin: "scx-harness (required)".into(),
                setting: Setting {
                    name: name.to_string(),
                    value: Value::Set("y".into()),
                    line: 0,
                },
                actual: config.get(name),
            });
        }
    }
    out
}

/// The `depends on` conditions of one Kconfig symbol, found in a source tree.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Definition {
    /// Where `config NAME` is defined (file:line).
    pub location: String,
    /// Each `depends on` expression, including enclosing `if` blocks.
    pub depends: Vec<String>,
}

/// Finds `config NAME` in the tree's Kconfig files.
pub fn find_definition(tree: &Path, name: &str) -> Option<Definition> {
    let mut stack = vec![tree.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            let path = e.path();
            let Ok(ft) = e.file_type() else { continue };
            let fname = e.file_name();
            let fname = fname.to_string_lossy();
            if ft.is_dir() {
                if !fname.starts_with('.') {
                    stack.push(path);
                }
            } else if fname.starts_with("Kconfig") {
                if let Ok(text) = std::fs::read_to_string(&path) {
                    let rel = path.strip_prefix(tree).unwrap_or(&path).to_path_buf();
                    if let Some(d) = definition_in(&rel, &text, name) {
                        return Some(d);
                    }
                }
            }
        }
    }
    None
}

/// Scans one Kconfig file for `config NAME` and collects its dependencies.
pub fn definition_in(file: &Path, text: &str, name: &str) -> Option<Definition> {
    let mut ifs: Vec<String> = Vec::new();
    let mut current: Option<Definition> = None;
    let mut lines = text.lines().enumerate().peekable();
    while let Some((i, raw)) = lines.next() {
        let mut line = raw.trim().to_string();
        while line.ends_with('\\') {
            line.pop();
            match lines.next() {
                Some((_, next)) => line.push_str(next.trim()),
                None => break,
            }
        }
        let mut words = line.split_whitespace();
        let first = words.next().unwrap_or("");
        match first {
            "config" | "menuconfig" | "choice" | "endchoice" | "menu" | "endmenu" | "comment"
            | "source" | "mainmenu" => {
                if current.is_some() {
                    return current;
                }
                if (first == "config" || first == "menuconfig") && words.next() == Some(name) {
                    current = Some(Definition {
                        location: format!("{}:{}", file.display(), i + 1),
                        depends: ifs.clone(),
                    });
                }
            }
            "if" => ifs.push(line[2..].trim().to_string()),
            "endif" => {
                if current.is_some() {
                    return current;
                }
                ifs.pop();
            }
            "depends" => {
                if let (Some(def), Some(expr)) = (current.as_mut(), line.strip_prefix("depends on"))
                {
                    def.depends.push(expr.trim().to_string());
                }
            }
            _ => {}
        }
    }
    current
}

/// The symbols named in a Kconfig expression.
pub fn symbols_in(expr: &str) -> Vec<String> {
    expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|t| is_symbol(t) && !t.chars().all(|c| c.is_ascii_digit()))
        .filter(|t| !matches!(*t, "y" | "n" | "m"))
        .map(str::to_string)
        .collect()
}

/// Explains dropped settings for a person: what was asked, what came out,
/// what it depends on in this tree and which of those are off.
pub fn explain(dropped: &[Dropped], tree: &Path, config: &DotConfig) -> String {
    let mut msg = String::new();
    for d in dropped {
        let at = if d.setting.line > 0 {
            format!("{}:{}", d.origin, d.setting.line)
        } else {
            d.origin.clone()
        };
        let _ = writeln!(
            msg,
            "{at}: {} was asked for, but the final .config has {}",
            show(&d.setting.name, &d.setting.value),
            show(&d.setting.name, &d.actual)
        );
        match find_definition(tree, &d.setting.name) {
            None => {
                let _ = writeln!(
                    msg,
                    "  no `config {}` exists in this kernel's Kconfig files: \
                     a typo, or an option this kernel version does not have",
                    d.setting.name
                );
            }
            Some(def) => {
                let unmet: Vec<String> = def
                    .depends
                    .iter()
                    .flat_map(|e| symbols_in(e))
                    .filter(|s| !config.enabled(s))
                    .collect();
                if def.depends.is_empty() {
                    let _ = writeln!(
                        msg,
                        "  defined at {} with no `depends on`; it may be selected \
                         or limited by a choice",
                        def.location
                    );
                } else {
                    let _ = writeln!(
                        msg,
                        "  defined at {}: depends on {}",
                        def.location,
                        def.depends.join(" && ")
                    );
                }
                if !unmet.is_empty() {
                    let _ = writeln!(
                        msg,
                        "  missing dependency: {} (add CONFIG_{}=y to a fragment)",
                        unmet.join(", "),
                        unmet[0]
                    );
                }
            }
        }
    }
    msg
}

/// Resolves the path of a fragment given on the command line.
pub fn fragment_path(p: &Path) -> PathBuf {
    std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_parse(text: &str, expected: &[(&str, Value, usize)]) {
        let f = Fragment::parse("frag", text).unwrap();
        let got: Vec<(&str, Value, usize)> = f
            .settings
            .iter()
            .map(|s| (s.name.as_str(), s.value.clone(), s.line))
            .collect();
        assert_eq!(got, expected);
    }

    #[test]
    fn parses_settings_comments_and_not_set() {
        check_parse(
            "# a comment\n\nCONFIG_A=y\n# CONFIG_B is not set\nCONFIG_C=\"x y\"\n  CONFIG_D=64 \n",
            &[
                ("A", Value::Set("y".into()), 3),
                ("B", Value::NotSet, 4),
                ("C", Value::Set("\"x y\"".into()), 5),
                ("D", Value::Set("64".into()), 6),
            ],
        );
    }

    #[test]
    fn garbage_names_file_and_line() {
        for bad in ["SCHED_CLASS_EXT=y", "CONFIG_A", "CONFIG_a=y", "CONFIG_A="] {
            let err = Fragment::parse("frag.config", &format!("# ok\n{bad}\n")).unwrap_err();
            let msg = format!("{err:#}");
            assert!(msg.contains("frag.config:2"), "{bad}: {msg}");
            assert_eq!(crate::classify(&err), Some(Failure::BadInput));
        }
    }

    #[test]
    fn embedded_fragment_parses_and_asks_for_sched_ext() {
        let common = crate::kernel::catalog::COMMON_FRAGMENT;
        let f = Fragment::parse(
            "embedded",
            crate::kernel::catalog::fragment_text(common).unwrap(),
        )
        .unwrap();
        for name in REQUIRED.iter().chain(&["IKCONFIG_PROC", "EXT_GROUP_SCHED"]) {
            assert!(
                f.settings
                    .iter()
                    .any(|s| s.name == *name && s.value == Value::Set("y".into())),
                "{name} missing from the default fragment"
            );
        }
    }

    #[test]
    fn dropped_detects_lost_and_required() {
        let frag = Fragment::parse("f", "CONFIG_A=y\n# CONFIG_B is not set\nCONFIG_C=m\n").unwrap();
        let config = DotConfig::parse(
            "CONFIG_A=y\nCONFIG_B=y\n# CONFIG_C is not set\nCONFIG_SCHED_CLASS_EXT=y\nCONFIG_BPF_SYSCALL=y\n",
        );
        let names: Vec<String> = dropped_settings(&[frag], &config)
            .into_iter()
            .map(|d| d.setting.name)
            .collect();
        assert_eq!(names, ["B", "C", "DEBUG_INFO_BTF"]);
    }

    #[test]
    fn later_fragment_overrides_earlier() {
        let a = Fragment::parse("a", "CONFIG_X=y\n").unwrap();
        let b = Fragment::parse("b", "# CONFIG_X is not set\n").unwrap();
        let config = DotConfig::parse(
            "CONFIG_SCHED_CLASS_EXT=y\nCONFIG_DEBUG_INFO_BTF=y\nCONFIG_BPF_SYSCALL=y\n",
        );
        assert!(dropped_settings(&[a, b], &config).is_empty());
    }

    #[test]
    fn definition_collects_depends_and_enclosing_ifs() {
        let kconfig = "\
if BPF
config OTHER
\tbool
config SCHED_CLASS_EXT
\tbool \"Extensible Scheduling Class\"
\tdepends on BPF_SYSCALL && BPF_JIT && \\
\t\tDEBUG_INFO_BTF
\thelp
\t  text
config NEXT
\tbool
endif
";
        let d = definition_in(Path::new("kernel/Kconfig"), kconfig, "SCHED_CLASS_EXT").unwrap();
        assert_eq!(d.location, "kernel/Kconfig:4");
        assert_eq!(
            d.depends,
            ["BPF", "BPF_SYSCALL && BPF_JIT && DEBUG_INFO_BTF"]
        );
        assert_eq!(
            symbols_in(&d.depends.join(" && ")),
            ["BPF", "BPF_SYSCALL", "BPF_JIT", "DEBUG_INFO_BTF"]
        );
        assert!(definition_in(Path::new("k"), kconfig, "MISSING").is_none());
    }

    #[test]
    fn explain_names_the_unmet_dependency() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("kernel")).unwrap();
        std::fs::write(
            dir.path().join("kernel/Kconfig.ext"),
            "config SCHED_CLASS_EXT\n\tbool\n\tdepends on BPF_SYSCALL && DEBUG_INFO_BTF\n",
        )
        .unwrap();
        let frag = Fragment::parse(
            "sched-ext.config",
            "CONFIG_SCHED_CLASS_EXT=y\nCONFIG_NOPE=y\n",
        )
        .unwrap();
        let config = DotConfig::parse("CONFIG_BPF_SYSCALL=y\n");
        let dropped = dropped_settings(&[frag], &config);
        let msg = explain(&dropped, dir.path(), &config);
        assert!(
            msg.contains("sched-ext.config:1: CONFIG_SCHED_CLASS_EXT=y was asked for"),
            "{msg}"
        );
        assert!(msg.contains("missing dependency: DEBUG_INFO_BTF"), "{msg}");
        assert!(msg.contains("no `config NOPE` exists"), "{msg}");
    }
}
