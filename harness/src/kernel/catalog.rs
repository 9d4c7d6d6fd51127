//! The kernels the harness knows by name (`kernel-config/kernels.yaml`):
//! an axis of everything, like the scheduler and the scenario.
//!
//! Each entry is a name (`lts`, `stable`, `debian`) with either a `build`
//! (a Debian source package and the config fragments it is built with) or
//! a `prebuilt` (Debian's own binary packages, booted as shipped). The file
//! and the fragments it names are embedded in the binary, so the default
//! kernel needs no checkout. Parsing and validation only; building and
//! fetching are `kernel::ensure`.

use serde::Deserialize;

use anyhow::Result;

use crate::datafile::{error_at, line_of, parse_yaml};
use crate::error::{fail, Failure};

/// Where the catalog comes from, for messages.
pub const FILE: &str = "kernel-config/kernels.yaml";
/// The catalog, as built into this binary.
pub const TEXT: &str = include_str!("../../../kernel-config/kernels.yaml");

/// The config fragments a catalog entry may name, embedded by file name.
pub const FRAGMENTS: &[(&str, &str)] = &[
    (
        "sched-ext.config",
        include_str!("../../../kernel-config/sched-ext.config"),
    ),
    (
        "sched-ext-6.12.config",
        include_str!("../../../kernel-config/sched-ext-6.12.config"),
    ),
];

/// The fragment every kernel of the axis is built with; a developer's
/// tree (`--source`) gets it and each other fragment whose options its
/// Kconfig defines (`kernel::tree_fragments`).
pub const COMMON_FRAGMENT: &str = "sched-ext.config";

/// The embedded text of fragment `name` (a file of `kernel-config/`).
pub fn fragment_text(name: &str) -> Option<&'static str> {
    FRAGMENTS.iter().find(|(n, _)| *n == name).map(|(_, t)| *t)
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileFields {
    default: String,
    kernels: Vec<DefFields>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
struct DefFields {
    name: String,
    description: String,
    #[serde(default)]
    build: Option<Build>,
    #[serde(default)]
    prebuilt: Option<Prebuilt>,
}

/// A kernel compiled from a Debian source package.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Build {
    /// The source package, e.g. `linux-source-7.3`; it holds
    /// `/usr/src/PACKAGE.tar.xz`.
    pub package: String,
    /// The archive suite to fetch it from into the harness's cache (e.g.
    /// `trixie-backports`); none: the host's apt installs it and the
    /// tarball is read from `/usr/src`.
    #[serde(default)]
    pub suite: Option<String>,
    /// Files of `kernel-config/`, applied in order.
    pub fragments: Vec<String>,
}

/// Debian's own kernel, as it ships.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Prebuilt {
    pub suite: String,
    /// `uname -r`: the directory under `/usr/lib/modules` the packages fill.
    pub release: String,
    /// Binary packages unpacked together: the one with `vmlinuz`, the
    /// modules, and the one with `config` and `modules.order`.
    pub packages: Vec<String>,
    /// A `build` kernel of the same version whose built tree the kernel's
    /// examples and our BPF C schedulers are compiled in (headers and
    /// `vmlinux.h`; CO-RE adapts them to this kernel's BTF when loaded).
    #[serde(default)]
    pub tree_from: Option<String>,
}

/// How a named kernel comes to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum How {
    Build(Build),
    Prebuilt(Prebuilt),
}

/// One named kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelDef {
    pub name: String,
    pub description: String,
    pub how: How,
}

/// Every named kernel, in the file's order, and the default.
#[derive(Debug, Clone)]
pub struct Catalog {
    pub kernels: Vec<KernelDef>,
    pub default: String,
}

impl Catalog {
    /// The catalog built into this binary.
    pub fn embedded() -> Catalog {
        Catalog::parse(FILE, TEXT).expect("the embedded kernels.yaml is checked by a unit test")
    }

    /// Parses and validates catalog text; errors are `FILE:LINE:COL` with a
    /// `fix:` line (exit 65).
    pub fn parse(origin: &str, text: &str) -> Result<Catalog> {
        let path = std::path::Path::new(origin);
        let hint = "see kernel-config/README.md for the format";
        let fields: FileFields = parse_yaml(path, text, hint)?;
        let at = |name: &str| match line_of(text, "name", name) {
            Some(l) => format!("{origin}:{l}"),
            None => origin.to_string(),
        };
        let mut kernels: Vec<KernelDef> = Vec::new();
        for d in fields.kernels {
            let place = at(&d.name);
            let valid_name = !d.name.is_empty()
                && d.name.len() <= 32
                && d.name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
                && !super::cache::looks_like_key(&d.name);
            if !valid_name {
                return Err(error_at(
                    &place,
                    &format!("kernel name {:?} is not a short lower-case word", d.name),
                    "use letters, digits, '-' and '.' (at most 32), not 16 hex digits (that is a cache key)",
                ));
            }
            if kernels.iter().any(|k| k.name == d.name) {
                return Err(error_at(
                    &place,
                    &format!("kernel {:?} is named twice", d.name),
                    "give each kernel its own name",
                ));
            }
            let how = match (d.build, d.prebuilt) {
                (Some(b), None) => {
                    if b.fragments.is_empty() {
                        return Err(error_at(
                            &place,
                            &format!("kernel {:?} names no config fragment", d.name),
                            &format!("list at least {COMMON_FRAGMENT} under build.fragments"),
                        ));
                    }
                    for f in &b.fragments {
                        if fragment_text(f).is_none() {
                            return Err(error_at(
                                &place,
                                &format!("kernel {:?}: no fragment {f:?} in kernel-config/", d.name),
                                &format!(
                                    "name one of {} (a new file must also be added to kernel::catalog::FRAGMENTS)",
                                    FRAGMENTS.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
                                ),
                            ));
                        }
                    }
                    How::Build(b)
                }
                (None, Some(p)) => {
                    if p.packages.is_empty() || p.release.is_empty() {
                        return Err(error_at(
                            &place,
                            &format!("prebuilt kernel {:?} needs a release and packages", d.name),
                            "list the binary packages (vmlinuz, modules, config) and their `uname -r`",
                        ));
                    }
                    How::Prebuilt(p)
                }
                _ => {
                    return Err(error_at(
                        &place,
                        &format!("kernel {:?} needs exactly one of build, prebuilt", d.name),
                        "a kernel is either built from a source package or Debian's own binary",
                    ))
                }
            };
            kernels.push(KernelDef {
                name: d.name,
                description: d.description,
                how,
            });
        }
        for k in &kernels {
            if let How::Prebuilt(Prebuilt {
                tree_from: Some(t), ..
            }) = &k.how
            {
                let builds = kernels
                    .iter()
                    .any(|b| &b.name == t && matches!(b.how, How::Build(_)));
                if !builds {
                    return Err(error_at(
                        &at(&k.name),
                        &format!(
                            "kernel {:?}: tree_from {t:?} is not a built kernel of this file",
                            k.name
                        ),
                        "name a kernel with `build:` of the same version",
                    ));
                }
            }
        }
        if !kernels.iter().any(|k| k.name == fields.default) {
            return Err(error_at(
                origin,
                &format!("the default kernel {:?} is not in the list", fields.default),
                "name one of the kernels below as `default`",
            ));
        }
        Ok(Catalog {
            kernels,
            default: fields.default,
        })
    }

    pub fn get(&self, name: &str) -> Option<&KernelDef> {
        self.kernels.iter().find(|k| k.name == name)
    }

    /// The default kernel's entry.
    pub fn default_kernel(&self) -> &KernelDef {
        self.get(&self.default).expect("validated in parse")
    }

    /// The entry named `name`, or a bad-input error listing the names.
    pub fn require(&self, name: &str) -> Result<&KernelDef> {
        self.get(name).ok_or_else(|| {
            fail(
                Failure::BadInput,
                format!(
                    "no kernel is named {name:?}; {FILE} knows {}\n  \
                     fix: pass one of those names, a cache key (`scx-harness kernel list`), or a bzImage path",
                    self.names().join(", ")
                ),
            )
        })
    }

    pub fn names(&self) -> Vec<&str> {
        self.kernels.iter().map(|k| k.name.as_str()).collect()
    }

    /// Kernel arguments as given, except that a lone `all` stands for every
    /// kernel of the catalog (`kernel build all`, `schedulers build
    /// --kernel all`).
    pub fn expand_all(&self, args: &[String]) -> Vec<String> {
        match args {
            [all] if all == "all" => self.names().iter().map(|n| n.to_string()).collect(),
            given => given.to_vec(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_stands_for_every_kernel_alone() {
        let c = Catalog::embedded();
        let v = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(c.expand_all(&v(&["all"])), v(&c.names()));
        assert_eq!(c.expand_all(&v(&["lts", "all"])), v(&["lts", "all"]));
        assert!(c.expand_all(&[]).is_empty());
    }

    #[test]
    fn the_embedded_catalog_names_the_three_kernels_of_the_axis() {
        let c = Catalog::parse(FILE, TEXT).unwrap();
        assert_eq!(c.names(), ["lts", "stable", "debian"]);
        assert_eq!(c.default_kernel().name, "lts");
        let How::Build(lts) = &c.get("lts").unwrap().how else {
            panic!("lts is built")
        };
        assert_eq!(lts.suite, None, "lts comes from the host's apt");
        assert!(lts.fragments.contains(&"sched-ext-6.12.config".to_string()));
        let How::Build(stable) = &c.get("stable").unwrap().how else {
            panic!("stable is built")
        };
        assert_eq!(stable.fragments, [COMMON_FRAGMENT]);
        assert!(matches!(c.get("debian").unwrap().how, How::Prebuilt(_)));
    }

    #[test]
    fn only_the_6_12_fragment_asks_for_sched_debug() {
        // 7.3's Kconfig has no SCHED_DEBUG: the common fragment must not
        // ask for it, or the stable build stops at the config check.
        assert!(!fragment_text(COMMON_FRAGMENT)
            .unwrap()
            .contains("CONFIG_SCHED_DEBUG=y"));
        assert!(fragment_text("sched-ext-6.12.config")
            .unwrap()
            .contains("CONFIG_SCHED_DEBUG=y"));
    }

    #[test]
    fn bad_catalogs_name_the_place_and_the_fix() {
        let cases = [
            ("default: x\nkernels: []\n", "default kernel \"x\""),
            (
                "default: a\nkernels:\n  - name: a\n    description: d\n",
                "exactly one of build, prebuilt",
            ),
            (
                "default: a\nkernels:\n  - name: a\n    description: d\n    build: { package: p, fragments: [nope.config] }\n",
                "no fragment \"nope.config\"",
            ),
            (
                "default: a\nkernels:\n  - name: a\n    description: d\n    build: { package: p, fragments: [sched-ext.config] }\n  - name: a\n    description: d\n    build: { package: p, fragments: [sched-ext.config] }\n",
                "named twice",
            ),
            (
                "default: 0123456789abcdef\nkernels:\n  - name: 0123456789abcdef\n    description: d\n    build: { package: p, fragments: [sched-ext.config] }\n",
                "not a short lower-case word",
            ),
            (
                "default: a\nkernels:\n  - name: a\n    descripton: d\n",
                "unknown field `descripton`",
            ),
        ];
        for (text, says) in cases {
            let err = Catalog::parse("k.yaml", text).unwrap_err();
            let msg = format!("{err:#}");
            assert_eq!(crate::classify(&err), Some(Failure::BadInput), "{msg}");
            assert!(msg.contains(says), "{msg}");
            assert!(msg.starts_with("k.yaml"), "{msg}");
            assert!(msg.contains("fix:"), "{msg}");
        }
    }

    #[test]
    fn an_unknown_name_lists_the_known_ones() {
        let c = Catalog::embedded();
        let err = c.require("sttable").unwrap_err();
        assert_eq!(crate::classify(&err), Some(Failure::BadInput));
        assert!(format!("{err}").contains("lts, stable, debian"), "{err}");
    }
}
