//! The matrix: which schedulers run which scenarios on which kernels, as
//! data (`scenarios/matrix.yaml`), in named suites. `default` is what
//! `cargo nextest run` and `.ci/run` run; `nightly` is everything.
//!
//! Resolving a suite needs the registry (as it is on each kernel), the
//! kernel catalog's names and the bundled scenarios' names, and nothing
//! else: listing the matrix (`--list`) never builds or boots anything.
//! Environment variables override the file for one run:
//! `SCX_HARNESS_MATRIX` (another file), `SCX_HARNESS_SUITE` (a suite name),
//! `SCX_HARNESS_KERNELS`, `SCX_HARNESS_SCHEDULERS` and
//! `SCX_HARNESS_SCENARIOS` (comma-separated lists, or `all`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Result;
use serde::{Deserialize, Serialize};

use crate::datafile::{line_of, parse_yaml, read_text};
use crate::error::{fail, Failure};
use crate::kernel::Catalog;
use crate::scheduler::registry::Registry;

const HINT: &str = "see scenarios/README.md (\"The matrix\") for the matrix format";

/// A list of names, or every one there is (the word `all`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum Selection {
    /// Every scheduler under test (not fixtures, not unsupported), or every
    /// bundled scenario.
    All,
    Names(Vec<String>),
}

impl<'de> Deserialize<'de> for Selection {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Selection, D::Error> {
        match serde_yaml::Value::deserialize(d)? {
            serde_yaml::Value::String(s) if s == "all" => Ok(Selection::All),
            serde_yaml::Value::Sequence(items) => items
                .into_iter()
                .map(|v| match v {
                    serde_yaml::Value::String(s) => Ok(s),
                    other => Err(serde::de::Error::custom(format!(
                        "a name must be a string, not {other:?}"
                    ))),
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Selection::Names),
            other => Err(serde::de::Error::custom(format!(
                "expected `all` or a list of names, got {other:?}"
            ))),
        }
    }
}

/// One suite: the schedulers, and the scenarios each runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Suite {
    /// What the suite is for, for people.
    #[serde(default)]
    pub description: String,
    /// The kernels (names of kernel-config/kernels.yaml, or `all`) the
    /// suite's cells run on, under nextest and `scx-harness run --suite`
    /// (unless `--kernel` names others); absent: the default kernel.
    #[serde(default)]
    pub kernels: Option<Selection>,
    pub schedulers: Selection,
    pub scenarios: Selection,
    /// Cells left out of the suite, as `scheduler/scenario` (on every
    /// kernel) or `scheduler/scenario@kernel` (on that kernel only), each
    /// with the reason (a known failure is written down here, not hidden).
    #[serde(default)]
    pub skip: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    suites: BTreeMap<String, Suite>,
}

/// A parsed matrix file.
#[derive(Debug, Clone)]
pub struct Matrix {
    pub path: PathBuf,
    pub suites: BTreeMap<String, Suite>,
    text: String,
}

/// One cell of a suite.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Cell {
    /// The catalog name of the kernel it runs on; `None` for a kernel
    /// without one (a bzImage or tree given by path).
    pub kernel: Option<String>,
    pub scheduler: String,
    pub scenario: String,
}

impl Cell {
    /// The nextest name: `matrix::KERNEL::SCHEDULER::SCENARIO`, with `-`
    /// as `_` (`custom` for a kernel without a name).
    pub fn test_name(&self) -> String {
        format!(
            "matrix::{}::{}::{}",
            self.kernel.as_deref().unwrap_or("custom").replace('-', "_"),
            self.scheduler.replace('-', "_"),
            self.scenario.replace('-', "_")
        )
    }
}

/// Whether `path` is a matrix file rather than a scenario: named
/// `matrix.yaml`, or a YAML document whose top level has `suites`.
pub fn is_matrix_file(path: &Path) -> bool {
    path.file_name().is_some_and(|n| n == "matrix.yaml")
        || std::fs::read_to_string(path).is_ok_and(|t| t.lines().any(|l| l.starts_with("suites:")))
}

impl Matrix {
    /// `$SCX_HARNESS_MATRIX`, else the checkout's `scenarios/matrix.yaml`.
    pub fn default_path() -> PathBuf {
        std::env::var_os("SCX_HARNESS_MATRIX")
            .map(PathBuf::from)
            .unwrap_or_else(|| crate::scenario::bundled_dir().join("matrix.yaml"))
    }

    pub fn load(path: &Path) -> Result<Matrix> {
        let text = read_text(path, "matrix")?;
        let file: File = parse_yaml(path, &text, HINT)?;
        Ok(Matrix {
            path: path.to_path_buf(),
            suites: file.suites,
            text,
        })
    }

    fn error(&self, key: &str, msg: String) -> anyhow::Error {
        let line = self
            .text
            .lines()
            .position(|l| l.trim_start().starts_with(&format!("{key}:")))
            .map(|i| i + 1)
            .or_else(|| line_of(&self.text, key, ""));
        let place = match line {
            Some(l) => format!("{}:{l}", self.path.display()),
            None => self.path.display().to_string(),
        };
        crate::datafile::error_at(&place, &msg, HINT)
    }

    fn suite(&self, name: &str) -> Result<&Suite> {
        self.suites.get(name).ok_or_else(|| {
            fail(
                Failure::BadInput,
                format!(
                    "{}: no suite {name:?}; the suites are {}\n  fix: {HINT}",
                    self.path.display(),
                    self.suites.keys().cloned().collect::<Vec<_>>().join(", ")
                ),
            )
        })
    }

    /// The kernels suite `name` runs on, under nextest and `run --suite`
    /// (its `kernels:`, or `SCX_HARNESS_KERNELS`), checked against
    /// `catalog` (unknown, repeated or no names are errors); without
    /// either, the catalog's default kernel.
    pub fn kernels(
        &self,
        name: &str,
        catalog: &Catalog,
        overrides: &Overrides,
    ) -> Result<Vec<String>> {
        let suite = self.suite(name)?;
        let names: Vec<String> = match overrides.kernels.as_ref().or(suite.kernels.as_ref()) {
            None => vec![catalog.default.clone()],
            Some(Selection::All) => catalog.names().iter().map(|n| n.to_string()).collect(),
            Some(Selection::Names(n)) => n.clone(),
        };
        if names.is_empty() {
            return Err(self.error(
                name,
                format!(
                    "suite {name}: no kernels; name at least one of {} (or `all`)",
                    catalog.names().join(", ")
                ),
            ));
        }
        for (i, k) in names.iter().enumerate() {
            if names[..i].contains(k) {
                return Err(self.error(name, format!("suite {name}: kernel {k:?} is named twice")));
            }
            if catalog.get(k).is_none() {
                return Err(self.error(
                    name,
                    format!(
                        "suite {name}: unknown kernel {k:?}; kernel-config/kernels.yaml names {}",
                        catalog.names().join(", ")
                    ),
                ));
            }
        }
        Ok(names)
    }

    /// The cells of suite `name` on `kernel` (a catalog name; `None` for a
    /// kernel without one), checked against the registry as it is on that
    /// kernel and the scenarios: an unknown name is an error naming the
    /// known ones.
    pub fn cells(
        &self,
        name: &str,
        kernel: Option<&str>,
        registry: &Registry,
        scenarios: &[String],
        overrides: &Overrides,
    ) -> Result<Vec<Cell>> {
        let suite = self.suite(name)?;
        let catalog = Catalog::embedded();
        let scheds = overrides.schedulers.as_ref().unwrap_or(&suite.schedulers);
        let scens = overrides.scenarios.as_ref().unwrap_or(&suite.scenarios);
        let sched_names: Vec<String> = match scheds {
            Selection::All => registry.every().map(|d| d.name.clone()).collect(),
            Selection::Names(n) => n.clone(),
        };
        for s in &sched_names {
            if registry.get(s).is_err() {
                return Err(self.error(
                    name,
                    format!(
                        "suite {name}: unknown scheduler {s:?}; the registry ({}) knows {}",
                        registry.path.display(),
                        registry.names().join(", ")
                    ),
                ));
            }
        }
        let scen_names: Vec<String> = match scens {
            Selection::All => scenarios.to_vec(),
            Selection::Names(n) => n.clone(),
        };
        for s in &scen_names {
            if !scenarios.contains(s) {
                return Err(self.error(
                    name,
                    format!(
                        "suite {name}: unknown scenario {s:?}; the bundled ones are {}",
                        scenarios.join(", ")
                    ),
                ));
            }
        }
        for key in suite.skip.keys() {
            // A scheduler that exists on other kernels only (`kernels:` in
            // the registry) may be skipped too: the entry is for them.
            let known =
                |a: &str| registry.get(a).is_ok() || registry.absent.iter().any(|d| d.name == a);
            let (cell, on) = match key.split_once('@') {
                Some((c, k)) => (c, Some(k)),
                None => (key.as_str(), None),
            };
            let ok = cell
                .split_once('/')
                .is_some_and(|(a, b)| known(a) && scenarios.iter().any(|s| s == b))
                && on.is_none_or(|k| catalog.get(k).is_some());
            if !ok {
                return Err(self.error(
                    name,
                    format!(
                        "suite {name}: skip entry {key:?} is not SCHEDULER/SCENARIO or \
                         SCHEDULER/SCENARIO@KERNEL of known names (kernels: {})",
                        catalog.names().join(", ")
                    ),
                ));
            }
        }
        let skipped = |sc: &str, sn: &str| {
            suite.skip.contains_key(&format!("{sc}/{sn}"))
                || kernel.is_some_and(|k| suite.skip.contains_key(&format!("{sc}/{sn}@{k}")))
        };
        let mut cells = Vec::new();
        for sc in &sched_names {
            for sn in &scen_names {
                if !skipped(sc, sn) {
                    cells.push(Cell {
                        kernel: kernel.map(str::to_string),
                        scheduler: sc.clone(),
                        scenario: sn.clone(),
                    });
                }
            }
        }
        Ok(cells)
    }
}

/// What the environment overrides for one run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Overrides {
    pub suite: Option<String>,
    pub kernels: Option<Selection>,
    pub schedulers: Option<Selection>,
    pub scenarios: Option<Selection>,
}

fn selection(v: &str) -> Selection {
    if v.trim() == "all" {
        Selection::All
    } else {
        Selection::Names(
            v.split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect(),
        )
    }
}

impl Overrides {
    /// From `SCX_HARNESS_SUITE`, `SCX_HARNESS_KERNELS`,
    /// `SCX_HARNESS_SCHEDULERS`, `SCX_HARNESS_SCENARIOS`.
    pub fn from_env() -> Overrides {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
        Overrides {
            suite: var("SCX_HARNESS_SUITE"),
            kernels: var("SCX_HARNESS_KERNELS").map(|v| selection(&v)),
            schedulers: var("SCX_HARNESS_SCHEDULERS").map(|v| selection(&v)),
            scenarios: var("SCX_HARNESS_SCENARIOS").map(|v| selection(&v)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bundled registry as it is on the `lts` kernel.
    fn registry() -> Registry {
        Registry::load(&crate::paths::workspace_root().join("schedulers/registry.yaml"))
            .unwrap()
            .for_kernel(Some("lts"))
    }

    fn matrix(text: &str) -> Matrix {
        Matrix {
            path: "m.yaml".into(),
            suites: serde_yaml::from_str::<File>(text).unwrap().suites,
            text: text.to_string(),
        }
    }

    /// The error of resolving suite `name` on lts, as text.
    fn cells_err(m: &Matrix, name: &str) -> String {
        let o = Overrides::default();
        format!(
            "{:#}",
            m.cells(name, Some("lts"), &registry(), &scenarios(), &o)
                .unwrap_err()
        )
    }

    fn scenarios() -> Vec<String> {
        vec!["idle-baseline".into(), "wake-pingpong".into()]
    }

    #[test]
    fn cells_and_their_test_names() {
        let m = matrix(
            "suites:\n  small:\n    schedulers: [scx_simple, default]\n    scenarios: all\n    skip:\n      default/idle-baseline: just because\n",
        );
        let cells = m
            .cells(
                "small",
                Some("lts"),
                &registry(),
                &scenarios(),
                &Overrides::default(),
            )
            .unwrap();
        let names: Vec<String> = cells.iter().map(Cell::test_name).collect();
        assert_eq!(
            names,
            [
                "matrix::lts::scx_simple::idle_baseline",
                "matrix::lts::scx_simple::wake_pingpong",
                "matrix::lts::default::wake_pingpong"
            ]
        );
    }

    #[test]
    fn all_means_every_scheduler_under_test_that_is_supported() {
        let m = matrix("suites:\n  n:\n    schedulers: all\n    scenarios: [idle-baseline]\n");
        let cells = m
            .cells(
                "n",
                Some("lts"),
                &registry(),
                &scenarios(),
                &Overrides::default(),
            )
            .unwrap();
        let names: Vec<&str> = cells.iter().map(|c| c.scheduler.as_str()).collect();
        assert!(
            names.contains(&"scx_vtime") && names.contains(&"default"),
            "{names:?}"
        );
        assert!(!names.contains(&"scx_fault"), "a fixture is not under test");
        assert!(
            !names.contains(&"scx_central"),
            "an unsupported one is left out"
        );
        // scx_central is unsupported on lts only: on stable it is tried.
        let stable =
            Registry::load(&crate::paths::workspace_root().join("schedulers/registry.yaml"))
                .unwrap()
                .for_kernel(Some("stable"));
        let cells = m
            .cells(
                "n",
                Some("stable"),
                &stable,
                &scenarios(),
                &Overrides::default(),
            )
            .unwrap();
        assert!(cells.iter().any(|c| c.scheduler == "scx_central"));
    }

    #[test]
    fn unknown_names_are_errors_that_list_the_known_ones() {
        let m = matrix("suites:\n  s:\n    schedulers: [scx_nope]\n    scenarios: all\n");
        let e = cells_err(&m, "s");
        assert!(
            e.contains("m.yaml:2: suite s: unknown scheduler \"scx_nope\""),
            "{e}"
        );
        assert!(e.contains("scx_vtime"), "{e}");
        let m = matrix("suites:\n  s:\n    schedulers: all\n    scenarios: [nope]\n");
        let e = cells_err(&m, "s");
        assert!(
            e.contains(
                "unknown scenario \"nope\"; the bundled ones are idle-baseline, wake-pingpong"
            ),
            "{e}"
        );
        let e = cells_err(&m, "other");
        assert!(e.contains("no suite \"other\"; the suites are s"), "{e}");
    }

    #[test]
    fn the_environment_overrides_the_file() {
        let m = matrix("suites:\n  s:\n    schedulers: all\n    scenarios: all\n");
        let o = Overrides {
            suite: None,
            kernels: None,
            schedulers: Some(selection("scx_fifo, default")),
            scenarios: Some(selection("wake-pingpong")),
        };
        let cells = m
            .cells("s", Some("lts"), &registry(), &scenarios(), &o)
            .unwrap();
        assert_eq!(cells.len(), 2);
        assert_eq!(selection("all"), Selection::All);
    }

    #[test]
    fn the_bundled_matrix_is_valid() {
        let m = Matrix::load(&crate::scenario::bundled_dir().join("matrix.yaml")).unwrap();
        let names = crate::scenario::bundled_names();
        for suite in m.suites.keys() {
            let cells = m
                .cells(
                    suite,
                    Some("lts"),
                    &registry(),
                    &names,
                    &Overrides::default(),
                )
                .unwrap();
            assert!(!cells.is_empty(), "{suite}");
        }
        assert!(m.suites.contains_key("default") && m.suites.contains_key("nightly"));
        let catalog = Catalog::embedded();
        for suite in m.suites.keys() {
            m.kernels(suite, &catalog, &Overrides::default()).unwrap();
        }
    }

    #[test]
    fn a_suite_names_its_kernels_and_skips_cells_on_one_of_them() {
        let catalog = Catalog::embedded();
        let m = matrix(
            "suites:\n  s:\n    kernels: [lts, stable]\n    schedulers: [scx_simple]\n    scenarios: all\n    skip:\n      scx_simple/idle-baseline@lts: slow there\n",
        );
        let o = Overrides::default();
        assert_eq!(m.kernels("s", &catalog, &o).unwrap(), ["lts", "stable"]);
        let names = |k: &str| -> Vec<String> {
            m.cells("s", Some(k), &registry(), &scenarios(), &o)
                .unwrap()
                .iter()
                .map(Cell::test_name)
                .collect()
        };
        assert_eq!(names("lts"), ["matrix::lts::scx_simple::wake_pingpong"]);
        assert_eq!(
            names("stable"),
            [
                "matrix::stable::scx_simple::idle_baseline",
                "matrix::stable::scx_simple::wake_pingpong"
            ]
        );
        // Without `kernels:`, the default kernel; `all` is every one; the
        // environment overrides the file.
        let d = matrix("suites:\n  s:\n    schedulers: all\n    scenarios: all\n");
        assert_eq!(
            d.kernels("s", &catalog, &o).unwrap(),
            vec![Catalog::embedded().default]
        );
        let all = Overrides {
            kernels: Some(Selection::All),
            ..Overrides::default()
        };
        let n = Catalog::embedded().names().len();
        assert_eq!(d.kernels("s", &catalog, &all).unwrap().len(), n);
        // Unknown kernels, in `kernels:` or a skip entry, name the known ones.
        let bad = matrix(
            "suites:\n  s:\n    kernels: [lts, nope]\n    schedulers: all\n    scenarios: all\n",
        );
        let e = format!("{:#}", bad.kernels("s", &catalog, &o).unwrap_err());
        for (list, says) in [("[]", "no kernels"), ("[lts, lts]", "named twice")] {
            let m = matrix(&format!(
                "suites:\n  s:\n    kernels: {list}\n    schedulers: all\n    scenarios: all\n"
            ));
            let e = format!("{:#}", m.kernels("s", &catalog, &o).unwrap_err());
            assert!(e.contains(says), "{e}");
        }
        assert!(
            e.contains("m.yaml:2: suite s: unknown kernel \"nope\"") && e.contains("stable"),
            "{e}"
        );
        let bad = matrix("suites:\n  s:\n    schedulers: all\n    scenarios: all\n    skip:\n      scx_simple/idle-baseline@nope: why\n");
        let e = format!(
            "{:#}",
            bad.cells("s", Some("lts"), &registry(), &scenarios(), &o)
                .unwrap_err()
        );
        assert!(
            e.contains("SCHEDULER/SCENARIO@KERNEL") && e.contains("lts"),
            "{e}"
        );
    }
}
