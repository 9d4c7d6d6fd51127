//! The git side of `bisect --tree`: the revisions between a good and a bad
//! end, their log lines, and a worktree per revision (detached, outside the
//! user's checkout, removed when dropped), so the user's working tree and
//! branch are never touched.
//!
//! Knows git; nothing about schedulers or VMs.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};

use crate::error::{fail, Failure};

/// One step of a search: a commit, or a published version
/// (`bisect::crates`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Rev {
    /// The full commit id, or the version.
    pub id: String,
    /// `git log --oneline`'s line (short id and subject), or "CRATE
    /// VERSION".
    pub line: String,
}

/// git on `tree`, the repository the user named.
fn git(tree: &Path) -> Command {
    git_at(tree, tree)
}

/// git on `dir`, `tree` itself or a worktree of it. Run as root (sudo, the
/// host target) on a checkout another user owns, git refuses the
/// repository as of "dubious ownership" (`safe.directory`): the tree the
/// user named, and `dir`, are trusted for these commands only (git
/// compares the worktree's real path, so both are named). The tree's
/// hooks are not run: a checkout under sudo would run them as root.
fn git_at(dir: &Path, tree: &Path) -> Command {
    let mut c = Command::new("git");
    for trusted in [tree, dir] {
        c.arg("-c")
            .arg(format!("safe.directory={}", trusted.display()));
    }
    c.args(["-c", "core.hooksPath=/dev/null", "-C"]).arg(dir);
    c
}

/// Runs git; its stdout trimmed, or `Err` with its stderr.
fn output(mut c: Command) -> Result<std::result::Result<String, String>> {
    let out = c.output().context("running git")?;
    Ok(if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    })
}

/// The commit `rev` names in `tree`. Bad input when it names none.
pub fn resolve(tree: &Path, rev: &str, flag: &str) -> Result<Rev> {
    let mut c = git(tree);
    c.args(["rev-parse", "--verify", "--end-of-options"])
        .arg(format!("{rev}^{{commit}}"));
    let id = output(c)?.map_err(|e| {
        fail(
            Failure::BadInput,
            format!(
                "{flag} {rev}: not a commit of {}: {e}\n  fix: name a commit, branch or tag of that repository (`git -C {} log --oneline`)",
                tree.display(),
                tree.display()
            ),
        )
    })?;
    log_line(tree, &id)
}

fn log_line(tree: &Path, id: &str) -> Result<Rev> {
    let mut c = git(tree);
    c.args(["log", "-1", "--format=%h %s", id]);
    let line = output(c)?.map_err(|e| anyhow::anyhow!("git log {id}: {e}"))?;
    Ok(Rev {
        id: id.to_string(),
        line,
    })
}

/// The commits after `good` up to and including `bad`, oldest first, along
/// the first-parent line from `good` to `bad` (a merge is one step). Bad
/// input when `good` is not an ancestor of `bad` or they are the same.
pub fn between(tree: &Path, good: &Rev, bad: &Rev) -> Result<Vec<Rev>> {
    let mut c = git(tree);
    c.args(["merge-base", "--is-ancestor", &good.id, &bad.id]);
    if output(c)?.is_err() {
        return Err(fail(
            Failure::BadInput,
            format!(
                "--good {} is not an ancestor of --bad {}: there is no line of commits from one to the other\n  fix: swap them, or name a good commit the bad one descends from",
                good.line, bad.line
            ),
        ));
    }
    let mut c = git(tree);
    c.args([
        "rev-list",
        "--reverse",
        "--first-parent",
        "--ancestry-path",
        &format!("{}..{}", good.id, bad.id),
    ]);
    let ids = output(c)?.map_err(|e| anyhow::anyhow!("git rev-list: {e}"))?;
    let revs = ids
        .lines()
        .map(|id| log_line(tree, id))
        .collect::<Result<Vec<_>>>()?;
    if revs.is_empty() {
        return Err(fail(
            Failure::BadInput,
            format!(
                "--good and --bad are the same commit ({})\n  fix: name a bad commit after the good one",
                good.line
            ),
        ));
    }
    Ok(revs)
}

/// A detached worktree of one commit, removed (with `git worktree prune`)
/// when dropped.
pub struct Worktree {
    tree: PathBuf,
    pub path: PathBuf,
}

impl Worktree {
    /// Checks `rev` out at `path` (which must not exist).
    pub fn add(tree: &Path, rev: &Rev, path: &Path) -> Result<Worktree> {
        let mut c = git(tree);
        c.args(["worktree", "add", "--detach", "--quiet"])
            .arg(path)
            .arg(&rev.id);
        output(c)?.map_err(|e| {
            anyhow::anyhow!("git worktree add {} {}: {e}", path.display(), rev.line)
        })?;
        Ok(Worktree {
            tree: tree.to_path_buf(),
            path: path.to_path_buf(),
        })
    }
}

impl Worktree {
    /// Moves the worktree to `rev`: its tracked files only, so what git
    /// ignores (a kernel's build products) stays for an incremental build,
    /// and make sees the changed files by their new times.
    pub fn checkout(&self, rev: &Rev) -> Result<()> {
        let mut c = git_at(&self.path, &self.tree);
        c.args(["checkout", "--detach", "--quiet", "--force"])
            .arg(&rev.id);
        output(c)?.map_err(|e| {
            anyhow::anyhow!("git checkout {} in {}: {e}", rev.line, self.path.display())
        })?;
        Ok(())
    }
}

impl Drop for Worktree {
    fn drop(&mut self) {
        let mut c = git(&self.tree);
        c.args(["worktree", "remove", "--force"]).arg(&self.path);
        if !matches!(output(c), Ok(Ok(_))) {
            let _ = std::fs::remove_dir_all(&self.path);
            let mut c = git(&self.tree);
            c.args(["worktree", "prune"]);
            let _ = output(c);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(dir: &Path, args: &[&str]) {
        let ok = Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(["-c", "user.name=t", "-c", "user.email=t@t"])
            .args(args)
            .status()
            .unwrap()
            .success();
        assert!(ok, "git {args:?}");
    }

    fn repo(n: usize) -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        sh(d.path(), &["init", "-q", "-b", "main"]);
        for i in 0..n {
            std::fs::write(d.path().join("f"), format!("{i}\n")).unwrap();
            sh(d.path(), &["add", "f"]);
            sh(d.path(), &["commit", "-q", "-m", &format!("commit {i}")]);
        }
        d
    }

    #[test]
    fn the_commits_between_the_ends_come_oldest_first_with_their_lines() {
        let d = repo(5);
        let good = resolve(d.path(), "main~4", "--good").unwrap();
        let bad = resolve(d.path(), "main", "--bad").unwrap();
        let revs = between(d.path(), &good, &bad).unwrap();
        let subjects: Vec<_> = revs
            .iter()
            .map(|r| r.line.split_once(' ').unwrap().1)
            .collect();
        assert_eq!(subjects, ["commit 1", "commit 2", "commit 3", "commit 4"]);
        assert_eq!(revs[3].id, bad.id);
    }

    #[test]
    fn ends_in_the_wrong_order_or_unknown_are_bad_input_with_the_fix() {
        let d = repo(3);
        let e = resolve(d.path(), "nosuch", "--good").unwrap_err();
        assert!(
            format!("{e:#}").contains("--good nosuch: not a commit"),
            "{e:#}"
        );
        let good = resolve(d.path(), "main", "--good").unwrap();
        let bad = resolve(d.path(), "main~2", "--bad").unwrap();
        let e = between(d.path(), &good, &bad).unwrap_err();
        assert_eq!(crate::error::classify(&e), Some(Failure::BadInput));
        assert!(format!("{e:#}").contains("not an ancestor"), "{e:#}");
        let e = between(d.path(), &good, &good).unwrap_err();
        assert!(format!("{e:#}").contains("the same commit"), "{e:#}");
    }

    #[test]
    fn a_worktree_holds_its_commit_and_goes_away_leaving_the_checkout_alone() {
        let d = repo(3);
        let rev = resolve(d.path(), "main~2", "--good").unwrap();
        let place = tempfile::tempdir().unwrap();
        let path = place.path().join("wt");
        {
            let wt = Worktree::add(d.path(), &rev, &path).unwrap();
            assert_eq!(std::fs::read_to_string(wt.path.join("f")).unwrap(), "0\n");
        }
        assert!(!path.exists());
        assert_eq!(std::fs::read_to_string(d.path().join("f")).unwrap(), "2\n");
        let mut c = git(d.path());
        c.args(["worktree", "list", "--porcelain"]);
        let list = output(c).unwrap().unwrap();
        assert_eq!(list.matches("worktree ").count(), 1, "{list}");
    }
}
