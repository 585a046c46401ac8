//! One git worktree per batch job: `git worktree add --detach DIR COMMIT`
//! from the plan's repository, removed after the job (unless kept).
//!
//! The ref is resolved to a commit once, when the batch starts, so every
//! job checks out the same commit even if the branch moves meanwhile. A
//! job runs in the directory of its worktree that matches the plan's
//! `repo` inside its repository: `repo: .` in `examples/x/plan.yaml` of a
//! repository runs the job in `WORKTREE/examples/x`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::plan::WorktreePlan;
use crate::model::JobName;

/// A worktree operation failed; the message is one line saying why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct WorktreeError(pub String);

/// The repository and commit every worktree of a batch is made from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    /// The repository's top-level directory.
    pub toplevel: PathBuf,
    /// The commit, as a full hash.
    pub commit: String,
    /// Where the plan's `repo` is inside the repository (may be empty).
    pub prefix: PathBuf,
    /// The ref as written, for messages.
    pub reference: String,
}

/// One job's worktree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Worktree {
    /// The private temporary folder that holds it.
    pub holder: PathBuf,
    /// The checkout.
    pub path: PathBuf,
    /// Where the job runs: the checkout's directory matching the plan's
    /// `repo`.
    pub cwd: PathBuf,
}

fn git(dir: &Path) -> Command {
    let mut cmd = Command::new("git");
    cmd.arg("-C").arg(dir);
    // A caller's repository settings must not redirect these commands.
    for var in [
        "GIT_DIR",
        "GIT_WORK_TREE",
        "GIT_INDEX_FILE",
        "GIT_COMMON_DIR",
    ] {
        cmd.env_remove(var);
    }
    cmd.stdin(Stdio::null());
    cmd
}

/// Runs a git command; its trimmed stdout, or git's first line of
/// complaint.
fn run(mut cmd: Command) -> Result<String, String> {
    let out = cmd.output().map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            "git is not installed (worktrees need it on PATH)".to_owned()
        } else {
            format!("cannot run git: {e}")
        }
    })?;
    if out.status.success() {
        return Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned());
    }
    let err = String::from_utf8_lossy(&out.stderr);
    let line = err
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("git failed without a message")
        .trim()
        .trim_start_matches("fatal: ")
        .trim_start_matches("error: ");
    Err(line.to_owned())
}

impl Source {
    /// Checks that `plan.repo` is in a git repository and resolves its ref
    /// to a commit.
    pub fn resolve(plan: &WorktreePlan) -> Result<Source, WorktreeError> {
        let repo = &plan.repo;
        if !repo.is_dir() {
            return Err(WorktreeError(format!(
                "worktree.repo {} is not a directory",
                repo.display()
            )));
        }
        let not_repo = |e: String| {
            WorktreeError(format!(
                "worktree.repo {} is not in a git repository ({e}); point it at a git checkout",
                repo.display()
            ))
        };
        let mut top = git(repo);
        top.args(["rev-parse", "--show-toplevel"]);
        let toplevel = PathBuf::from(run(top).map_err(not_repo)?);
        let mut prefix = git(repo);
        prefix.args(["rev-parse", "--show-prefix"]);
        let prefix = PathBuf::from(run(prefix).map_err(not_repo)?);
        let mut verify = git(repo);
        verify
            .args(["rev-parse", "--verify", "--quiet", "--end-of-options"])
            .arg(format!("{}^{{commit}}", plan.reference));
        let commit = run(verify).map_err(|_| {
            WorktreeError(format!(
                "worktree.ref {:?} is not a commit in {} (try HEAD, a branch, a tag or a hash)",
                plan.reference,
                toplevel.display()
            ))
        })?;
        Ok(Source {
            toplevel,
            commit,
            prefix,
            reference: plan.reference.clone(),
        })
    }

    /// Adds a detached worktree of the commit for `job`, in a new private
    /// folder under the system's temporary directory.
    pub fn add(&self, job: &JobName) -> Result<Worktree, WorktreeError> {
        let holder = tempfile::Builder::new()
            .prefix(&format!("jobwatch-wt-{job}-"))
            .tempdir()
            .map_err(|e| {
                WorktreeError(format!("cannot create a folder for {job}'s worktree: {e}"))
            })?
            .keep();
        let path = holder.join(job.as_str());
        let mut add = git(&self.toplevel);
        add.args(["worktree", "add", "--detach", "--quiet"])
            .arg(&path)
            .arg(&self.commit);
        if let Err(e) = run(add) {
            let _ = std::fs::remove_dir_all(&holder);
            return Err(WorktreeError(format!(
                "cannot add a worktree of {} for {job}: {e}",
                self.toplevel.display()
            )));
        }
        Ok(Worktree {
            cwd: path.join(&self.prefix),
            holder,
            path,
        })
    }

    /// Removes a worktree (with whatever the job changed in it) and its
    /// folder. If git cannot remove it, the folder is deleted and git's
    /// record of it pruned.
    pub fn remove(&self, wt: &Worktree) -> Result<(), WorktreeError> {
        let mut remove = git(&self.toplevel);
        remove
            .args(["worktree", "remove", "--force", "--force"])
            .arg(&wt.path);
        let removed = run(remove);
        let cleared = match std::fs::remove_dir_all(&wt.holder) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        };
        if removed.is_err() {
            let mut prune = git(&self.toplevel);
            prune.args(["worktree", "prune"]);
            let _ = run(prune);
        }
        cleared.map_err(|e| {
            WorktreeError(format!("cannot remove worktree {}: {e}", wt.path.display()))
        })
    }
}

/// The worktrees git lists for `repo` (its main checkout included).
pub fn list(repo: &Path) -> Result<Vec<PathBuf>, WorktreeError> {
    let mut cmd = git(repo);
    cmd.args(["worktree", "list", "--porcelain"]);
    let out = run(cmd).map_err(WorktreeError)?;
    Ok(out
        .lines()
        .filter_map(|l| l.strip_prefix("worktree "))
        .map(PathBuf::from)
        .collect())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::batch::plan::Keep;

    /// A temporary repository with `sub/file.txt` committed once.
    pub(crate) fn repo() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let sh = |script: &str| {
            let out = Command::new("sh")
                .arg("-c")
                .arg(script)
                .current_dir(dir.path())
                .env_remove("GIT_DIR")
                .output()
                .unwrap();
            assert!(out.status.success(), "{script}: {out:?}");
        };
        sh(
            "git init -q . && mkdir sub && echo one > sub/file.txt && git add -A && \
            git -c user.name=t -c user.email=t@example.com commit -qm one",
        );
        dir
    }

    fn plan(repo: &Path, reference: &str) -> WorktreePlan {
        WorktreePlan {
            repo: repo.to_owned(),
            reference: reference.into(),
            keep: Keep::None,
        }
    }

    fn name(s: &str) -> JobName {
        JobName::parse(s).unwrap()
    }

    #[test]
    fn a_worktree_is_added_at_the_commit_and_removed_with_its_changes() {
        let r = repo();
        let src = Source::resolve(&plan(&r.path().join("sub"), "HEAD")).unwrap();
        assert_eq!(src.prefix, Path::new("sub/"));
        assert_eq!(src.commit.len(), 40);
        let wt = src.add(&name("job-1")).unwrap();
        assert_eq!(
            std::fs::read_to_string(wt.cwd.join("file.txt")).unwrap(),
            "one\n"
        );
        assert_eq!(wt.cwd, wt.path.join("sub"));
        assert_eq!(list(r.path()).unwrap().len(), 2);
        // The job dirties it: a changed file and an untracked one.
        std::fs::write(wt.cwd.join("file.txt"), "changed").unwrap();
        std::fs::write(wt.cwd.join("new.txt"), "new").unwrap();
        src.remove(&wt).unwrap();
        assert!(!wt.holder.exists(), "the worktree's folder is gone");
        assert_eq!(list(r.path()).unwrap().len(), 1, "git forgot it too");
    }

    #[test]
    fn the_ref_is_pinned_when_the_batch_starts() {
        let r = repo();
        let src = Source::resolve(&plan(r.path(), "HEAD")).unwrap();
        let status = Command::new("sh")
            .arg("-c")
            .arg("echo two > sub/file.txt && git -c user.name=t -c user.email=t@example.com commit -qam two")
            .current_dir(r.path())
            .status()
            .unwrap();
        assert!(status.success());
        let wt = src.add(&name("later")).unwrap();
        let text = std::fs::read_to_string(wt.path.join("sub/file.txt")).unwrap();
        src.remove(&wt).unwrap();
        assert_eq!(text, "one\n");
    }

    #[test]
    fn a_folder_that_is_not_a_repository_is_a_clear_error() {
        let d = tempfile::tempdir().unwrap();
        let e = Source::resolve(&plan(d.path(), "HEAD")).unwrap_err().0;
        assert!(e.contains("is not in a git repository"), "{e}");
        assert!(e.contains(&d.path().display().to_string()), "{e}");
        let e = Source::resolve(&plan(&d.path().join("nope"), "HEAD"))
            .unwrap_err()
            .0;
        assert!(e.contains("is not a directory"), "{e}");
    }

    #[test]
    fn an_unknown_ref_is_a_clear_error() {
        let r = repo();
        let e = Source::resolve(&plan(r.path(), "no-such-branch"))
            .unwrap_err()
            .0;
        assert!(
            e.contains("worktree.ref \"no-such-branch\" is not a commit"),
            "{e}"
        );
        assert!(!e.contains('\n'));
    }

    #[test]
    fn removing_a_worktree_whose_folder_is_gone_still_forgets_it() {
        let r = repo();
        let src = Source::resolve(&plan(r.path(), "HEAD")).unwrap();
        let wt = src.add(&name("gone")).unwrap();
        std::fs::remove_dir_all(&wt.holder).unwrap();
        src.remove(&wt).unwrap();
        assert_eq!(list(r.path()).unwrap().len(), 1);
    }
}
