//! Debian packages fetched without touching the host's apt: the harness
//! keeps a sources file and package lists of its own under the cache
//! (`debian/`), runs `apt-get download` against them (apt checks each
//! package against the archive's signed index) and unpacks with
//! `dpkg-deb -x`. Nothing is installed; the host's sources, lists and
//! package database are only read (for the mirror to use).
//!
//! Layout under `paths::cache_dir()/debian/`:
//! - `sources.list`, `lists/`, `apt-cache/`: apt's state, ours alone.
//! - `debs/PACKAGE_VERSION_ARCH.deb`: downloaded packages, kept, so that a
//!   fetched kernel never needs the network again.
//! - `unpacked/PACKAGE_VERSION_ARCH/`: a package's files (atomic).
//! - `apt.log`: the output of the latest apt run.
//!
//! Knows apt and dpkg-deb; nothing about kernels.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::cache::{install_dir, write_atomic, Cache};
use crate::error::{fail, Failure};
use crate::process::{SupervisedCommand, Terminal};
use crate::progress::Progress;

/// The keyring that signs Debian's archive (package `debian-archive-keyring`,
/// which has bookworm's and trixie's keys on Debian 12).
const KEYRING: &str = "/usr/share/keyrings/debian-archive-keyring.gpg";

/// The harness's own view of Debian's archive.
pub struct Archive {
    root: PathBuf,
}

impl Archive {
    pub fn new(cache: &Cache) -> Archive {
        Archive {
            root: cache.root().join("debian"),
        }
    }

    fn debs(&self) -> PathBuf {
        self.root.join("debs")
    }

    /// The newest downloaded `.deb` of `package`, if any (no network).
    pub fn cached(&self, package: &str) -> Option<PathBuf> {
        let prefix = format!("{package}_");
        let mut found: Vec<(std::time::SystemTime, PathBuf)> = std::fs::read_dir(self.debs())
            .ok()?
            .flatten()
            .filter(|e| {
                let n = e.file_name().to_string_lossy().to_string();
                n.starts_with(&prefix) && n.ends_with(".deb")
            })
            .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
            .collect();
        found.sort();
        found.pop().map(|(_, p)| p)
    }

    /// `package` from `suite`: the cached `.deb`, or downloaded now (the
    /// lists are updated first when they lack the suite, and once more when
    /// a download fails, e.g. because the archive moved to a newer
    /// version). Errors name the package and the command that retries.
    pub fn fetch(
        &self,
        suite: &str,
        package: &str,
        retry: &str,
        progress: &mut Progress,
    ) -> Result<PathBuf> {
        if let Some(deb) = self.cached(package) {
            return Ok(deb);
        }
        std::fs::create_dir_all(self.debs())
            .with_context(|| format!("creating {}", self.debs().display()))?;
        let _lock = super::lock(&self.root.join("locks"), "apt")?;
        if let Some(deb) = self.cached(package) {
            return Ok(deb); // fetched by someone else while we waited
        }
        let mut updated = false;
        if !self.has_suite(suite) {
            self.update(suite, progress, retry)
                .map_err(|e| self.cannot_fetch(package, suite, retry, e))?;
            updated = true;
        }
        progress.stage(&format!("downloading {package} ({suite})"));
        let first = self.download(suite, package, progress);
        match first {
            Ok(deb) => Ok(deb),
            Err(_) if !updated => {
                self.update(suite, progress, retry)
                    .map_err(|e| self.cannot_fetch(package, suite, retry, e))?;
                progress.stage(&format!("downloading {package} ({suite}), again"));
                self.download(suite, package, progress)
                    .map_err(|e| self.cannot_fetch(package, suite, retry, e))
            }
            Err(e) => Err(self.cannot_fetch(package, suite, retry, e)),
        }
    }

    fn cannot_fetch(
        &self,
        package: &str,
        suite: &str,
        retry: &str,
        e: anyhow::Error,
    ) -> anyhow::Error {
        fail(
            Failure::Infrastructure,
            format!(
                "cannot fetch Debian package {package} from {suite}: {e:#}\n  \
                 fix: check that Debian's archive is reachable (apt's output: {}), then retry: `{retry}`",
                self.root.join("apt.log").display()
            ),
        )
    }

    /// `package`'s files, unpacked once into `unpacked/` (atomic).
    pub fn unpack(&self, deb: &Path) -> Result<PathBuf> {
        let stem = deb
            .file_stem()
            .context("a .deb without a name")?
            .to_string_lossy()
            .to_string();
        let dest = self.root.join("unpacked").join(&stem);
        if dest.is_dir() {
            return Ok(dest);
        }
        install_dir(&dest, |staging| extract(deb, staging))?;
        Ok(dest)
    }

    /// Whether our lists hold the suite's package index.
    fn has_suite(&self, suite: &str) -> bool {
        let sources = std::fs::read_to_string(self.root.join("sources.list")).unwrap_or_default();
        let listed = sources
            .lines()
            .any(|l| l.split_whitespace().nth(3) == Some(suite));
        let marker = format!("_dists_{suite}_");
        listed
            && std::fs::read_dir(self.root.join("lists")).is_ok_and(|d| {
                d.flatten().any(|e| {
                    let n = e.file_name().to_string_lossy().to_string();
                    n.contains(&marker) && n.contains("_Packages")
                })
            })
    }

    /// Writes our sources file for every suite asked for so far and runs
    /// `apt-get update` on our lists.
    fn update(&self, suite: &str, progress: &mut Progress, retry: &str) -> Result<()> {
        let mirror = mirror()?;
        if !Path::new(KEYRING).is_file() {
            return Err(fail(
                Failure::HostTool,
                format!(
                    "{KEYRING} is missing: apt cannot check Debian's archive\n  fix: `apt-get install debian-archive-keyring`, then `{retry}`"
                ),
            ));
        }
        for d in ["lists/partial", "apt-cache/archives/partial"] {
            std::fs::create_dir_all(self.root.join(d))?;
        }
        let path = self.root.join("sources.list");
        let old = std::fs::read_to_string(&path).unwrap_or_default();
        let mut suites: Vec<String> = old
            .lines()
            .filter_map(|l| l.split_whitespace().nth(3).map(str::to_string))
            .collect();
        if !suites.iter().any(|s| s == suite) {
            suites.push(suite.to_string());
        }
        let text: String = suites
            .iter()
            .map(|s| format!("deb [signed-by={KEYRING}] {mirror} {s} main\n"))
            .collect();
        write_atomic(&path, text.as_bytes())?;
        progress.stage(&format!(
            "apt-get update (the harness's own lists: {suite})"
        ));
        self.apt("apt-get", &["update"], &self.root, progress)
    }

    fn download(&self, suite: &str, package: &str, progress: &mut Progress) -> Result<PathBuf> {
        // Into a staging directory, then renamed: a killed download never
        // leaves a partial .deb under debs/.
        let staging = tempfile::Builder::new()
            .prefix(".download-")
            .tempdir_in(self.debs())
            .context("creating a download directory")?;
        let spec = format!("{package}/{suite}");
        self.apt("apt-get", &["download", &spec], staging.path(), progress)?;
        let deb = std::fs::read_dir(staging.path())?
            .flatten()
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|e| e == "deb"))
            .with_context(|| format!("apt-get download {spec} wrote no .deb"))?;
        let dest = self.debs().join(deb.file_name().expect("a file"));
        std::fs::rename(&deb, &dest).with_context(|| format!("keeping {}", dest.display()))?;
        Ok(dest)
    }

    /// Runs apt with our state directories, never the host's.
    fn apt(&self, tool: &str, args: &[&str], cwd: &Path, progress: &mut Progress) -> Result<()> {
        let root = &self.root;
        let mut cmd = SupervisedCommand::new(tool, Terminal::Detached);
        cmd.arg("-q")
            .arg(format!(
                "-oDir::Etc::SourceList={}",
                root.join("sources.list").display()
            ))
            .arg("-oDir::Etc::SourceParts=/dev/null")
            .arg(format!(
                "-oDir::State::Lists={}",
                root.join("lists").display()
            ))
            .arg(format!("-oDir::Cache={}", root.join("apt-cache").display()))
            .arg("-oDir::State::status=/dev/null")
            // Our directories belong to the user running the harness; apt's
            // download sandbox user could not write them.
            .arg("-oAPT::Sandbox::User=root")
            .args(args)
            .current_dir(cwd);
        let log_path = root.join("apt.log");
        let mut log = std::fs::File::create(&log_path)
            .with_context(|| format!("creating {}", log_path.display()))?;
        super::run_logged(
            cmd,
            &format!("{tool} {}", args.join(" ")),
            &mut log,
            &log_path,
            progress,
        )
    }
}

/// `dpkg-deb -x DEB DIR`.
pub fn extract(deb: &Path, dir: &Path) -> Result<()> {
    let out = std::process::Command::new("dpkg-deb")
        .arg("-x")
        .arg(deb)
        .arg(dir)
        .output()
        .map_err(|e| {
            fail(
                Failure::HostTool,
                format!("cannot run dpkg-deb: {e}\n  fix: run the harness on Debian (dpkg is always there)"),
            )
        })?;
    if !out.status.success() {
        return Err(fail(
            Failure::HostTool,
            format!(
                "dpkg-deb -x {} failed: {}\n  fix: delete that file (it is fetched again by the next `scx-harness kernel build NAME`)",
                deb.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        ));
    }
    Ok(())
}

/// The Debian mirror to fetch from: `$SCX_HARNESS_DEBIAN_MIRROR`, else the
/// host's own (the first non-security archive in its apt sources that
/// serves the host's release), so a machine behind a local mirror uses it.
pub fn mirror() -> Result<String> {
    if let Ok(m) = std::env::var("SCX_HARNESS_DEBIAN_MIRROR") {
        if !m.trim().is_empty() {
            return Ok(m.trim().trim_end_matches('/').to_string());
        }
    }
    let codename = std::fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|t| {
            t.lines().find_map(|l| {
                l.strip_prefix("VERSION_CODENAME=")
                    .map(|v| v.trim_matches('"').to_string())
            })
        })
        .unwrap_or_default();
    let mut texts = Vec::new();
    if let Ok(t) = std::fs::read_to_string("/etc/apt/sources.list") {
        texts.push((false, t));
    }
    if let Ok(dir) = std::fs::read_dir("/etc/apt/sources.list.d") {
        let mut paths: Vec<PathBuf> = dir.flatten().map(|e| e.path()).collect();
        paths.sort();
        for p in paths {
            let deb822 = p.extension().is_some_and(|e| e == "sources");
            let one_line = p.extension().is_some_and(|e| e == "list");
            if deb822 || one_line {
                if let Ok(t) = std::fs::read_to_string(&p) {
                    texts.push((deb822, t));
                }
            }
        }
    }
    texts
        .iter()
        .flat_map(|(deb822, t)| sources_of(t, *deb822))
        .find(|(uri, suites)| {
            !uri.contains("security")
                && suites
                    .iter()
                    .any(|s| !s.ends_with("-security") && (codename.is_empty() || *s == codename))
        })
        .map(|(uri, _)| uri.trim_end_matches('/').to_string())
        .ok_or_else(|| {
            fail(
                Failure::HostTool,
                format!(
                    "no Debian archive for {codename:?} in /etc/apt/sources.list or /etc/apt/sources.list.d\n  \
                     fix: set SCX_HARNESS_DEBIAN_MIRROR to a Debian mirror's URI (the one apt uses)"
                ),
            )
        })
}

/// `(URI, suites)` of the `deb` entries of one apt sources file, one-line
/// (`deb [opts] URI SUITE COMPONENTS`) or deb822 (`Types:`, `URIs:`,
/// `Suites:` stanzas).
fn sources_of(text: &str, deb822: bool) -> Vec<(String, Vec<String>)> {
    let mut out = Vec::new();
    if deb822 {
        for stanza in text.split("\n\n") {
            let field = |name: &str| {
                stanza.lines().find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    (k.trim().eq_ignore_ascii_case(name) && !l.starts_with('#'))
                        .then(|| v.split_whitespace().map(str::to_string).collect::<Vec<_>>())
                })
            };
            let enabled = field("Enabled").is_none_or(|v| v.first().is_none_or(|e| e != "no"));
            let debs = field("Types").is_some_and(|t| t.iter().any(|t| t == "deb"));
            if let (true, true, Some(uris), Some(suites)) =
                (enabled, debs, field("URIs"), field("Suites"))
            {
                for u in uris {
                    out.push((u, suites.clone()));
                }
            }
        }
    } else {
        for line in text.lines() {
            let line = line.split('#').next().unwrap_or("").trim();
            let mut words = line.split_whitespace();
            if words.next() != Some("deb") {
                continue;
            }
            let mut rest: Vec<&str> = words.collect();
            if rest.first().is_some_and(|w| w.starts_with('[')) {
                let close = rest.iter().position(|w| w.ends_with(']')).unwrap_or(0);
                rest.drain(..=close);
            }
            if let [uri, suite, ..] = rest[..] {
                out.push((uri.to_string(), vec![suite.to_string()]));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_are_read_in_both_formats() {
        let deb822 = "Types: deb\n# a comment\nURIs: http://mirror.example/debian\nSuites: bookworm bookworm-updates\nComponents: main\n\n\
                      Types: deb\nURIs: http://mirror.example/debian-security\nSuites: bookworm-security\n\n\
                      Types: deb-src\nURIs: http://src.example/debian\nSuites: bookworm\n\n\
                      Enabled: no\nTypes: deb\nURIs: http://off.example/debian\nSuites: bookworm\n";
        assert_eq!(
            sources_of(deb822, true),
            [
                (
                    "http://mirror.example/debian".to_string(),
                    vec!["bookworm".to_string(), "bookworm-updates".to_string()]
                ),
                (
                    "http://mirror.example/debian-security".to_string(),
                    vec!["bookworm-security".to_string()]
                ),
            ]
        );
        let one_line = "# deb http://old.example/debian bookworm main\n\
                        deb [arch=amd64 signed-by=/k.gpg] http://m.example/debian/ bookworm main contrib\n\
                        deb-src http://m.example/debian bookworm main\n";
        assert_eq!(
            sources_of(one_line, false),
            [(
                "http://m.example/debian/".to_string(),
                vec!["bookworm".to_string()]
            )]
        );
    }
}
