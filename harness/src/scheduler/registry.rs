//! The scheduler registry (`schedulers/registry.yaml`): every scheduler the
//! harness knows, as data. Each entry says what the scheduler is called, how
//! it is built, how it is started and the sched_ext ops name it registers,
//! so that a scheduler author adds theirs without writing Rust.
//!
//! Parsing and validation only; building is `scheduler::build`, running is
//! `scheduler::lifecycle`. The format is documented in
//! `schedulers/README.md`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Result;
use serde::{Deserialize, Serialize};

use crate::datafile::{line_of, parse_yaml, read_text};
use crate::error::{fail, Failure};
use crate::units::duration_str;

/// How a scheduler runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// A process that loads and attaches its BPF side and stays until SIGINT.
    Binary,
    /// A BPF object file with a `struct_ops` map, which the harness opens,
    /// loads and attaches itself (no user-space side of its own).
    BpfObject,
    /// No sched_ext scheduler: the kernel's fair class, the baseline.
    Default,
}

impl Kind {
    /// The name the registry uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Binary => "binary",
            Kind::BpfObject => "bpf_object",
            Kind::Default => "default",
        }
    }
}

/// Where a scheduler comes from. Written in YAML as a map with exactly one
/// key: `{ workspace: scx_fifo }`, `{ crate: { name: .., version: .. } }`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "SourceFields", into = "SourceFields")]
pub enum Source {
    /// A package of this workspace (`schedulers/NAME`), built with cargo.
    Workspace(String),
    /// An example of the kernel tree's `tools/sched_ext`, built from the
    /// same tree as the kernel that runs it.
    KernelExample(String),
    /// A crate from crates.io, installed with `cargo install --locked` at
    /// exactly this version.
    Crate(CrateSource),
    /// A BPF C file (relative to the registry file), compiled with clang-19
    /// against the running kernel's headers and BTF.
    BpfC(PathBuf),
    /// A prebuilt binary or BPF object (relative to the registry file).
    Path(PathBuf),
}

/// The YAML form of [`Source`]: one of these keys.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SourceFields {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    workspace: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    kernel_example: Option<String>,
    #[serde(default, rename = "crate", skip_serializing_if = "Option::is_none")]
    krate: Option<CrateSource>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    bpf_c: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    path: Option<PathBuf>,
}

impl TryFrom<SourceFields> for Source {
    type Error = String;

    fn try_from(f: SourceFields) -> std::result::Result<Source, String> {
        let mut found = Vec::new();
        if let Some(v) = f.workspace {
            found.push(Source::Workspace(v));
        }
        if let Some(v) = f.kernel_example {
            found.push(Source::KernelExample(v));
        }
        if let Some(v) = f.krate {
            found.push(Source::Crate(v));
        }
        if let Some(v) = f.bpf_c {
            found.push(Source::BpfC(v));
        }
        if let Some(v) = f.path {
            found.push(Source::Path(v));
        }
        match found.len() {
            1 => Ok(found.remove(0)),
            n => Err(format!(
                "a source has exactly one of workspace, kernel_example, crate, bpf_c, path (found {n})"
            )),
        }
    }
}

impl From<Source> for SourceFields {
    fn from(s: Source) -> SourceFields {
        let mut f = SourceFields::default();
        match s {
            Source::Workspace(v) => f.workspace = Some(v),
            Source::KernelExample(v) => f.kernel_example = Some(v),
            Source::Crate(v) => f.krate = Some(v),
            Source::BpfC(v) => f.bpf_c = Some(v),
            Source::Path(v) => f.path = Some(v),
        }
        f
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CrateSource {
    pub name: String,
    pub version: String,
}

fn default_attach_timeout() -> Duration {
    Duration::from_secs(30)
}

/// One scheduler.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Def {
    /// Unique; used on the command line and in test names.
    pub name: String,
    pub kind: Kind,
    /// One line for `scx-harness schedulers list`. Default: empty.
    #[serde(default)]
    pub description: String,
    /// Required for `binary` and `bpf_object`; absent for `default`.
    #[serde(default)]
    pub source: Option<Source>,
    /// The ops name it registers, as `/sys/kernel/sched_ext/root/ops` shows
    /// it; a trailing `*` matches any suffix (scx_utils appends a version).
    /// Required for `binary` and `bpf_object`.
    #[serde(default)]
    pub ops: Option<String>,
    /// Arguments it is always started with (`binary` only). Default: none.
    #[serde(default)]
    pub args: Vec<String>,
    /// From start to attached, at most. Default: 30s (loading a large BPF
    /// program under TCG takes seconds).
    #[serde(default = "default_attach_timeout", with = "duration_str")]
    pub attach_timeout: Duration,
    /// A test fixture, not a scheduler under test: left out of "every
    /// scheduler" sets such as the default matrix. Default: false.
    #[serde(default)]
    pub fixture: bool,
    /// Why this version is the one pinned, and other facts a reader needs.
    #[serde(default)]
    pub note: Option<String>,
    /// Set when it is known not to run, or not reliably, on the bundled
    /// kernel. It is still listed and still tried where asked; the default
    /// matrix leaves it out, and tests expect its failure, when it fails,
    /// to be the one described here.
    #[serde(default)]
    pub unsupported: Option<Unsupported>,
    /// Set when it runs on the bundled kernel but is known to fail now and
    /// then in one particular way (a bug of its own). It stays in every
    /// matrix, where such a failure is reported as usual; its lifecycle
    /// test accepts exactly this failure and no other.
    #[serde(default)]
    pub known_issue: Option<KnownIssue>,
    /// The scheduling properties it claims to have (`nice_weights`,
    /// `cgroup_weights`; scenario::Property). A scenario's
    /// bound on a property it does not claim is reported "not claimed"
    /// rather than failed. Absent: it claims every property, so it is held
    /// to every bound (an honest narrowing names what it lacks, in `note`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claims: Option<Vec<crate::scenario::Property>>,
    /// It switches only SCHED_EXT tasks (partial mode: its ops set
    /// `SCX_OPS_SWITCH_PARTIAL`, e.g. scx_qmap started with `-p`); tasks
    /// of every other policy stay in the fair class. Such a scheduler
    /// measures nothing on a scenario without a `policy: ext` group, so it
    /// is left out of "every scheduler" sets, and a cell pairing it with
    /// such a scenario is refused before anything boots. The cell checks
    /// the kernel agrees (`/sys/kernel/sched_ext/switch_all` reads 0 while
    /// it is attached) and that each group ran where its policy puts it.
    /// Default: false (it switches every task, as most do).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub partial: bool,
    /// The kernels (names of kernel-config/kernels.yaml) it exists for, e.g.
    /// a kernel example only the 7.3 tree has. Default: every kernel.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernels: Option<Vec<String>>,
    /// What holds on one kernel only: another source (a crate version that
    /// loads there), `unsupported`, `known_issue`, `note`. Each field given
    /// replaces the top-level one on that kernel. Default: none.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub on: BTreeMap<String, OnKernel>,
}

/// The fields of a [`Def`] that can differ on one kernel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OnKernel {
    #[serde(default)]
    pub source: Option<Source>,
    #[serde(default)]
    pub unsupported: Option<Unsupported>,
    #[serde(default)]
    pub known_issue: Option<KnownIssue>,
    #[serde(default)]
    pub note: Option<String>,
}

/// An intermittent failure of a scheduler's own, written down.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KnownIssue {
    /// What goes wrong and the evidence, for people.
    pub reason: String,
    /// Text the failure's verdict shows (the kernel's exit kind and reason).
    pub says: String,
}

/// Why a scheduler does not run on the bundled kernel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Unsupported {
    /// The explanation, for people.
    pub reason: String,
    /// Text its failure to attach shows (the loader's or the kernel's).
    pub loader_says: String,
}

impl Def {
    /// A scheduler the registry does not list (`dev --tree`): any ops
    /// name, the default attach timeout, no source yet, claiming every
    /// property.
    pub fn named(name: &str, kind: Kind) -> Def {
        Def {
            name: name.into(),
            kind,
            description: String::new(),
            source: None,
            ops: Some("*".into()),
            args: Vec::new(),
            attach_timeout: default_attach_timeout(),
            fixture: false,
            note: None,
            unsupported: None,
            known_issue: None,
            claims: None,
            partial: false,
            kernels: None,
            on: BTreeMap::new(),
        }
    }

    /// This scheduler as it is on `kernel` (a catalog name; `None` for a
    /// kernel that has none, such as a developer's tree): the `on:` fields
    /// of that kernel replace the top-level ones.
    pub fn on_kernel(&self, kernel: Option<&str>) -> Def {
        let mut d = self.clone();
        if let Some(o) = kernel.and_then(|k| self.on.get(k)) {
            if let Some(s) = &o.source {
                d.source = Some(s.clone());
            }
            if o.unsupported.is_some() {
                d.unsupported = o.unsupported.clone();
            }
            if o.known_issue.is_some() {
                d.known_issue = o.known_issue.clone();
            }
            if o.note.is_some() {
                d.note = o.note.clone();
            }
        }
        d.on.clear();
        d
    }

    /// Whether it exists on `kernel` (`None`: a kernel without a catalog
    /// name, where every scheduler is tried).
    pub fn exists_on(&self, kernel: Option<&str>) -> bool {
        match (&self.kernels, kernel) {
            (Some(list), Some(k)) => list.iter().any(|n| n == k),
            _ => true,
        }
    }

    /// True if `ops` (as read from sysfs) is this scheduler's.
    pub fn ops_matches(&self, ops: &str) -> bool {
        self.ops.as_deref().is_some_and(|p| ops_matches(p, ops))
    }
}

/// `pattern` with an optional trailing `*` against an ops name.
pub fn ops_matches(pattern: &str, ops: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => ops.starts_with(prefix),
        None => ops == pattern,
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    schedulers: Vec<Def>,
}

/// A parsed and validated registry.
#[derive(Debug, Clone)]
pub struct Registry {
    /// The file it was read from; relative paths in it are relative to its
    /// directory.
    pub path: PathBuf,
    pub schedulers: Vec<Def>,
    /// After [`Registry::for_kernel`]: the kernel it was resolved for and
    /// the schedulers that do not exist there (`kernels:`).
    pub kernel: Option<String>,
    pub absent: Vec<Def>,
}

const HINT: &str = "see schedulers/README.md for the registry format";

impl Registry {
    /// `$SCX_HARNESS_REGISTRY`, else the checkout's
    /// `schedulers/registry.yaml`.
    pub fn default_path() -> PathBuf {
        std::env::var_os("SCX_HARNESS_REGISTRY")
            .map(PathBuf::from)
            .unwrap_or_else(|| crate::paths::workspace_root().join("schedulers/registry.yaml"))
    }

    pub fn load(path: &Path) -> Result<Registry> {
        let text = read_text(path, "scheduler registry")?;
        Self::parse(path, &text)
    }

    pub fn parse(path: &Path, text: &str) -> Result<Registry> {
        let file: File = parse_yaml(path, text, HINT)?;
        let registry = Registry {
            path: path.to_path_buf(),
            schedulers: file.schedulers,
            kernel: None,
            absent: Vec::new(),
        };
        registry.validate(text)?;
        Ok(registry)
    }

    /// Directory relative paths are resolved against.
    pub fn dir(&self) -> &Path {
        self.path.parent().unwrap_or(Path::new("."))
    }

    /// The registry as it is on `kernel` (a catalog name, or `None` for a
    /// kernel without one): each scheduler with that kernel's `on:` fields,
    /// and those whose `kernels:` leave it out moved to `absent`.
    pub fn for_kernel(&self, kernel: Option<&str>) -> Registry {
        let (here, absent): (Vec<Def>, Vec<Def>) = self
            .schedulers
            .iter()
            .map(|d| d.on_kernel(kernel))
            .partition(|d| d.exists_on(kernel));
        Registry {
            path: self.path.clone(),
            schedulers: here,
            kernel: kernel.map(str::to_string),
            absent,
        }
    }

    /// The scheduler called `name`, or an error listing the known ones.
    pub fn get(&self, name: &str) -> Result<&Def> {
        if let Some(d) = self.absent.iter().find(|d| d.name == name) {
            return Err(fail(
                Failure::BadInput,
                format!(
                    "scheduler {name:?} does not exist on kernel {} ({}: kernels: [{}])\n  fix: pass --kernel with one of those kernels",
                    self.kernel.as_deref().unwrap_or("?"),
                    self.path.display(),
                    d.kernels.as_deref().unwrap_or_default().join(", ")
                ),
            ));
        }
        self.schedulers
            .iter()
            .find(|d| d.name == name)
            .ok_or_else(|| {
                fail(
                    Failure::BadInput,
                    format!(
                        "unknown scheduler {name:?}; {} knows: {}\n  fix: use one of those names, or add an entry ({HINT})",
                        self.path.display(),
                        self.names().join(", ")
                    ),
                )
            })
    }

    pub fn names(&self) -> Vec<&str> {
        self.schedulers.iter().map(|d| d.name.as_str()).collect()
    }

    /// Schedulers under test: every entry but fixtures.
    pub fn under_test(&self) -> impl Iterator<Item = &Def> {
        self.schedulers.iter().filter(|d| !d.fixture)
    }

    /// What "every scheduler" means in a matrix suite: those under test
    /// that are supported here and switch every task (not `partial`).
    pub fn every(&self) -> impl Iterator<Item = &Def> {
        self.under_test()
            .filter(|d| d.unsupported.is_none() && !d.partial)
    }

    fn validate(&self, text: &str) -> Result<()> {
        let mut seen = std::collections::HashSet::new();
        if self.schedulers.is_empty() {
            return Err(self.error(text, None, "the registry lists no schedulers"));
        }
        let catalog = crate::kernel::Catalog::embedded();
        for d in &self.schedulers {
            if !seen.insert(d.name.as_str()) {
                return Err(self.error(
                    text,
                    Some(&d.name),
                    &format!("scheduler {:?} is listed twice", d.name),
                ));
            }
            let named = d
                .kernels
                .iter()
                .flatten()
                .chain(d.on.keys())
                .find(|k| catalog.get(k).is_none());
            if let Some(k) = named {
                return Err(self.error(
                    text,
                    Some(&d.name),
                    &format!(
                        "{}: no kernel is named {k:?} ({} knows {})",
                        d.name,
                        crate::kernel::catalog::FILE,
                        catalog.names().join(", ")
                    ),
                ));
            }
            if let Some(list) = &d.kernels {
                let off = d.on.keys().find(|k| !list.contains(k));
                if list.is_empty() || off.is_some() {
                    return Err(self.error(
                        text,
                        Some(&d.name),
                        &match off {
                            Some(k) => format!(
                                "{}: on: {k} describes a kernel its `kernels:` leaves out",
                                d.name
                            ),
                            None => format!("{}: `kernels: []` leaves it on no kernel", d.name),
                        },
                    ));
                }
            }
            if d.kind == Kind::Default {
                let wrong = if d.partial {
                    Some("switches nothing; partial: true is for a sched_ext scheduler")
                } else if d.kernels.is_some() || !d.on.is_empty() {
                    Some("exists on every kernel")
                } else {
                    None
                };
                if let Some(w) = wrong {
                    return Err(self.error(
                        text,
                        Some(&d.name),
                        &format!("{}: kind default (the fair class) {w}", d.name),
                    ));
                }
            }
            self.check_def(text, &d.on_kernel(None))?;
            for k in d.on.keys() {
                self.check_def(text, &d.on_kernel(Some(k)))?;
            }
        }
        Ok(())
    }

    /// One scheduler's fields, as they are on one kernel.
    fn check_def(&self, text: &str, d: &Def) -> Result<()> {
        let bad = |msg: String| Err(self.error(text, Some(&d.name), &msg));
        if d.name.is_empty()
            || !d
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c))
        {
            return bad(format!(
                "scheduler name {:?}: use letters, digits, '_', '-' and '.'",
                d.name
            ));
        }
        match (d.kind, &d.source) {
            (Kind::Default, Some(_)) => {
                return bad(format!(
                    "{}: kind default (the fair class) has no source",
                    d.name
                ))
            }
            (Kind::Default, None) => {
                if d.ops.is_some() || !d.args.is_empty() {
                    return bad(format!(
                        "{}: kind default (the fair class) has no ops and no args",
                        d.name
                    ));
                }
                return Ok(());
            }
            (_, None) => {
                return bad(format!(
                "{}: kind {:?} needs a source (workspace, kernel_example, crate, bpf_c or path)",
                d.name, d.kind
            ))
            }
            (Kind::Binary, Some(Source::BpfC(_))) => {
                return bad(format!(
                    "{}: a bpf_c source builds a BPF object: use kind bpf_object",
                    d.name
                ))
            }
            (
                Kind::BpfObject,
                Some(Source::Workspace(_) | Source::KernelExample(_) | Source::Crate(_)),
            ) => {
                return bad(format!(
                    "{}: kind bpf_object takes a bpf_c or path source",
                    d.name
                ))
            }
            (Kind::BpfObject, _) if !d.args.is_empty() => {
                return bad(format!(
                    "{}: kind bpf_object has no process to pass args to",
                    d.name
                ))
            }
            _ => {}
        }
        if let Some(Source::KernelExample(ex)) = &d.source {
            if !super::kernel_examples::NAMES.contains(&ex.as_str()) {
                return bad(format!(
                    "{}: kernel_example {ex:?} is not one of {}",
                    d.name,
                    super::kernel_examples::NAMES.join(", ")
                ));
            }
        }
        if let Some(Source::Crate(c)) = &d.source {
            let plain = |s: &str| {
                !s.is_empty()
                    && s.chars()
                        .all(|ch| ch.is_ascii_alphanumeric() || "_-.+".contains(ch))
            };
            if !plain(&c.name) || !plain(&c.version) || !c.version.starts_with(char::is_numeric) {
                return bad(format!(
                    "{}: crate needs a name and an exact version such as \"1.1.4\"",
                    d.name
                ));
            }
        }
        if let Some(u) = &d.unsupported {
            if u.reason.trim().is_empty() || u.loader_says.trim().is_empty() {
                return bad(format!(
                    "{}: unsupported needs a reason and the text its failure shows (loader_says)",
                    d.name
                ));
            }
        }
        if let Some(k) = &d.known_issue {
            if k.reason.trim().is_empty() || k.says.trim().is_empty() {
                return bad(format!(
                    "{}: known_issue needs a reason and the text its failure shows (says)",
                    d.name
                ));
            }
        }
        match d.ops.as_deref() {
            None | Some("") => {
                return bad(format!(
                    "{}: ops (the name the scheduler registers) is required",
                    d.name
                ))
            }
            Some(p) if p.trim_end_matches('*').contains('*') || p == "*" => {
                return bad(format!(
                    "{}: ops {p:?}: only a single trailing '*' after a prefix is allowed",
                    d.name
                ))
            }
            _ => {}
        }
        Ok(())
    }

    fn error(&self, text: &str, name: Option<&str>, msg: &str) -> anyhow::Error {
        let place = match name.and_then(|n| line_of(text, "name", n)) {
            Some(line) => format!("{}:{line}", self.path.display()),
            None => self.path.display().to_string(),
        };
        crate::datafile::error_at(&place, msg, HINT)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Registry> {
        Registry::parse(Path::new("reg.yaml"), text)
    }

    fn err(text: &str) -> String {
        let e = parse(text).unwrap_err();
        assert_eq!(crate::classify(&e), Some(Failure::BadInput));
        format!("{e:#}")
    }

    const GOOD: &str = r#"
schedulers:
  - name: default
    kind: default
  - name: scx_simple
    kind: binary
    source: { kernel_example: scx_simple }
    ops: simple
  - name: scx_bpfland
    kind: binary
    source: { crate: { name: scx_bpfland, version: "1.1.4" } }
    ops: "bpfland_*"
    attach_timeout: 45s
  - name: minimal
    kind: bpf_object
    source: { bpf_c: bpf/minimal.bpf.c }
    ops: minimal
  - name: scx_fault
    kind: binary
    source: { workspace: scx_fault }
    ops: "fault_*"
    fixture: true
"#;

    #[test]
    fn parses_every_kind_and_source() {
        let r = parse(GOOD).unwrap();
        assert_eq!(
            r.names(),
            [
                "default",
                "scx_simple",
                "scx_bpfland",
                "minimal",
                "scx_fault"
            ]
        );
        let b = r.get("scx_bpfland").unwrap();
        assert_eq!(
            b.source,
            Some(Source::Crate(CrateSource {
                name: "scx_bpfland".into(),
                version: "1.1.4".into()
            }))
        );
        assert_eq!(b.attach_timeout, Duration::from_secs(45));
        assert_eq!(
            r.get("scx_simple").unwrap().attach_timeout,
            default_attach_timeout()
        );
        assert!(b.ops_matches("bpfland_1.1.4_x86_64_unknown_linux_gnu"));
        assert!(!b.ops_matches("lavd_1.0"));
        assert_eq!(r.under_test().count(), 4);
        assert_eq!(r.dir(), Path::new(""));
    }

    #[test]
    fn claims_are_properties_and_absent_claims_claim_everything() {
        use crate::scenario::Property;
        let r = parse(
            "schedulers:\n  - name: default\n    kind: default\n  - name: a\n    kind: default\n    claims: [cgroup_weights]\n  - name: b\n    kind: default\n    claims: []\n",
        )
        .unwrap();
        assert_eq!(r.get("default").unwrap().claims, None);
        assert_eq!(
            r.get("a").unwrap().claims,
            Some(vec![Property::CgroupWeights])
        );
        assert_eq!(r.get("b").unwrap().claims, Some(vec![]));
        let e = err("schedulers:\n  - name: a\n    kind: default\n    claims: [speed]\n");
        assert!(
            e.contains("unknown variant `speed`, expected one of `nice_weights`, `cgroup_weights`, `interactive`"),
            "{e}"
        );
        // Every bundled scheduler states its claims.
        let bundled = Registry::load(&Registry::default_path()).unwrap();
        for d in bundled
            .schedulers
            .iter()
            .filter(|d| !d.fixture && d.name != "default")
        {
            assert!(d.claims.is_some(), "{} states no claims", d.name);
        }
    }

    #[test]
    fn a_partial_scheduler_is_named_only_and_never_the_fair_class() {
        let r = parse(&format!(
            "{GOOD}  - name: scx_simple_partial\n    kind: binary\n    source: {{ kernel_example: scx_simple }}\n    ops: simple\n    partial: true\n"
        ))
        .unwrap();
        assert!(r.get("scx_simple_partial").unwrap().partial);
        assert!(!r.get("scx_simple").unwrap().partial);
        // Under test, but not in "every scheduler".
        assert_eq!(r.under_test().count(), 5);
        assert!(r.every().all(|d| d.name != "scx_simple_partial"));
        assert_eq!(r.every().count(), 4);
        let e = err("schedulers:\n  - name: default\n    kind: default\n    partial: true\n");
        assert!(
            e.contains("partial: true is for a sched_ext scheduler"),
            "{e}"
        );
        // The bundled one the partial-mode scenario runs.
        let bundled = Registry::load(&Registry::default_path()).unwrap();
        let q = bundled.get("scx_qmap_partial").unwrap();
        assert!(q.partial && q.args == ["-p"], "{q:?}");
    }

    #[test]
    fn unknown_name_lists_the_known_ones() {
        let r = parse(GOOD).unwrap();
        let e = format!("{:#}", r.get("scx_nope").unwrap_err());
        assert!(e.contains("unknown scheduler \"scx_nope\""), "{e}");
        assert!(
            e.contains("default, scx_simple, scx_bpfland, minimal, scx_fault"),
            "{e}"
        );
    }

    #[test]
    fn mistakes_are_named_with_their_line() {
        let e = err("schedulers:\n  - name: a\n    kind: binary\n    ops: a\n");
        assert!(
            e.starts_with("reg.yaml:2: a: kind Binary needs a source"),
            "{e}"
        );
        let e = err("schedulers:\n  - name: a\n    kind: quantum\n");
        assert!(
            e.starts_with("reg.yaml:3:11: schedulers[0].kind: unknown variant `quantum`"),
            "{e}"
        );
        assert!(e.contains("`binary`, `bpf_object`, `default`"), "{e}");
        let e = err("schedulers:\n  - name: a\n    kind: default\n    colour: red\n");
        assert!(
            e.contains("reg.yaml:4:5") && e.contains("unknown field `colour`"),
            "{e}"
        );
        let e =
            err("schedulers:\n  - name: a\n    kind: default\n  - name: a\n    kind: default\n");
        assert!(e.contains("listed twice"), "{e}");
        let e = err("schedulers:\n  - name: x\n    kind: binary\n    source: { kernel_example: scx_nest }\n    ops: nest\n");
        assert!(
            e.contains("scx_simple, scx_qmap, scx_central, scx_flatcg"),
            "{e}"
        );
        let e = err("schedulers:\n  - name: x\n    kind: binary\n    source: { workspace: x }\n    ops: \"a*b*\"\n");
        assert!(e.contains("single trailing '*'"), "{e}");
        let e = err("schedulers:\n  - name: x\n    kind: binary\n    source: { crate: { name: x, version: latest } }\n    ops: x\n");
        assert!(e.contains("exact version"), "{e}");
        let e = err("schedulers:\n  - name: x\n    kind: bpf_object\n    source: { workspace: x }\n    ops: x\n");
        assert!(e.contains("takes a bpf_c or path source"), "{e}");
        let e = err("schedulers:\n  - name: x\n    kind: binary\n    source: { workspace: x }\n");
        assert!(
            e.contains("ops (the name the scheduler registers) is required"),
            "{e}"
        );
        let e = err("schedulers:\n  - name: x\n    kind: binary\n    source: { workspace: x, path: /x }\n    ops: x\n");
        assert!(
            e.contains("reg.yaml:2:5") && e.contains("exactly one of"),
            "{e}"
        );
        let e = err("schedulers: []\n");
        assert!(e.contains("lists no schedulers"), "{e}");
        let e = err("schedulers:\n  - name: x\n    kind: binary\n    source: { workspace: x }\n    ops: x\n    attach_timeout: soon\n");
        assert!(
            e.contains("reg.yaml:6:21") && e.contains("not a duration"),
            "{e}"
        );
        let e = err("schedulers:\n  - name: x\n    kind: binary\n    source: { workspace: x }\n    ops: x\n    known_issue: { reason: stalls, says: \" \" }\n");
        assert!(
            e.starts_with(
                "reg.yaml:2: x: known_issue needs a reason and the text its failure shows"
            ),
            "{e}"
        );
    }

    #[test]
    fn the_bundled_registry_is_valid() {
        let r = Registry::load(&crate::paths::workspace_root().join("schedulers/registry.yaml"))
            .unwrap();
        assert!(r.get("default").is_ok());
        for d in &r.schedulers {
            if let Some(Source::Workspace(pkg)) = &d.source {
                assert!(
                    crate::paths::workspace_root()
                        .join("schedulers")
                        .join(pkg)
                        .join("Cargo.toml")
                        .is_file(),
                    "{pkg}"
                );
            }
        }
    }

    const PER_KERNEL: &str = r#"
schedulers:
  - name: scx_lavd
    kind: binary
    source: { crate: { name: scx_lavd, version: "1.0.11" } }
    ops: "lavd*"
    known_issue: { reason: everywhere, says: stall }
    on:
      stable:
        source: { crate: { name: scx_lavd, version: "1.1.4" } }
        unsupported: { reason: newer verifier, loader_says: invalid }
  - name: scx_cpu0
    kind: binary
    source: { kernel_example: scx_cpu0 }
    ops: cpu0
    kernels: [stable, debian]
"#;

    #[test]
    fn on_and_kernels_give_each_kernel_its_own_registry() {
        let r = parse(PER_KERNEL).unwrap();
        let version = |r: &Registry| match &r.get("scx_lavd").unwrap().source {
            Some(Source::Crate(c)) => c.version.clone(),
            s => panic!("{s:?}"),
        };
        // No kernel name (a developer's tree): the top-level fields, and
        // every scheduler is tried.
        let none = r.for_kernel(None);
        assert_eq!(version(&none), "1.0.11");
        assert!(none.get("scx_cpu0").is_ok());
        // lts: not named under `on:`, so the top-level fields hold; scx_cpu0
        // does not exist there, and asking for it says where it does.
        let lts = r.for_kernel(Some("lts"));
        assert_eq!(version(&lts), "1.0.11");
        assert!(lts.get("scx_lavd").unwrap().unsupported.is_none());
        assert_eq!(lts.names(), ["scx_lavd"]);
        let e = format!("{:#}", lts.get("scx_cpu0").unwrap_err());
        assert!(
            e.contains("does not exist on kernel lts") && e.contains("stable, debian"),
            "{e}"
        );
        // stable: its own source and unsupported; the known issue it does
        // not replace still holds.
        let stable = r.for_kernel(Some("stable"));
        let lavd = stable.get("scx_lavd").unwrap();
        assert_eq!(version(&stable), "1.1.4");
        assert_eq!(lavd.unsupported.as_ref().unwrap().loader_says, "invalid");
        assert_eq!(lavd.known_issue.as_ref().unwrap().says, "stall");
        assert!(lavd.on.is_empty());
        assert!(stable.get("scx_cpu0").is_ok());
    }

    #[test]
    fn kernel_names_in_the_registry_must_be_known_kernels() {
        let e = err(&PER_KERNEL.replace("kernels: [stable, debian]", "kernels: [stabel]"));
        assert!(e.starts_with("reg.yaml:12:"), "{e}");
        assert!(
            e.contains("no kernel is named \"stabel\"") && e.contains("lts, stable, debian"),
            "{e}"
        );
        let e = err(&PER_KERNEL.replace("      stable:\n", "      newest:\n"));
        assert!(e.contains("no kernel is named \"newest\""), "{e}");
        let e = err(&PER_KERNEL.replace("kernels: [stable, debian]", "kernels: []"));
        assert!(e.contains("leaves it on no kernel"), "{e}");
        let e = err(&PER_KERNEL.replace(
            "kernels: [stable, debian]",
            "kernels: [debian]\n    on: { stable: { note: x } }",
        ));
        assert!(e.contains("on: stable describes a kernel"), "{e}");
        // A field given under `on:` is checked as the top-level one is.
        let e = err(&PER_KERNEL.replace("loader_says: invalid", "loader_says: \" \""));
        assert!(e.contains("unsupported needs a reason"), "{e}");
    }
}
