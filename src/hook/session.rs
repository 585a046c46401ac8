//! Which jobs an agent session started, and which of their outcomes it has
//! been told: `sessions/SESSION_ID.json` in the jobs directory.
//!
//! The file is one small JSON object, replaced atomically (temp file,
//! fsync, rename; mode 0600) under an exclusive `flock` on
//! `sessions/SESSION_ID.lock`, held for one read-modify-write. Readers
//! that do not change it read it without the lock (a rename is atomic).
//! Marking an outcome reported happens under the lock and only once, so
//! two hooks waiting on the same job (a stop hook from an earlier turn and
//! one from the current turn) never both report it.
//!
//! The session's document lives in the store ([`DocKind::Session`]): the
//! file store keeps it as described above; this module knows its format.

use jobwatch_core::store::{DocKind, DocStore, Store, StoreError};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// The session file format this build writes; readers reject newer ones.
pub const SESSION_VERSION: u32 = 1;

/// Longest session id accepted, in bytes.
pub const MAX_SESSION_ID: usize = 128;

/// Most jobs one session file keeps; the oldest reported ones go first.
pub const MAX_TRACKED: usize = 200;

/// A validated session id: `[A-Za-z0-9][A-Za-z0-9_-]{0,127}`. It becomes a
/// file name, so nothing else (no `/`, no `.`) is accepted.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SessionId(String);

impl SessionId {
    /// Validates `s` as a session id.
    pub fn parse(s: &str) -> Result<Self, String> {
        let ok_first = s.chars().next().is_some_and(|c| c.is_ascii_alphanumeric());
        let ok_rest = s
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !ok_first || !ok_rest || s.len() > MAX_SESSION_ID {
            let shown: String = s.chars().take(40).collect();
            return Err(format!(
                "session_id {shown:?} is not a valid id (1-{MAX_SESSION_ID} of A-Z a-z 0-9 - _, starting with a letter or digit); ignored"
            ));
        }
        Ok(Self(s.to_owned()))
    }

    /// The id as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// One job a session started.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrackedJob {
    /// The job's name.
    pub name: String,
    /// The run (`job_id` of its record): a later run of the name is
    /// another job.
    pub job_id: String,
    /// The jobs directory it lives in (canonical).
    pub dir: PathBuf,
    /// When it started (from its record).
    #[serde(default)]
    pub started_at: String,
    /// How the session started it: `mcp` or `bash`.
    #[serde(default)]
    pub via: String,
    /// The outcome word once the session has been told how it ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reported: Option<String>,
}

/// `sessions/SESSION_ID.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionFile {
    /// Format version ([`SESSION_VERSION`]).
    pub version: u32,
    /// The session.
    pub session_id: String,
    /// Its jobs, oldest first.
    #[serde(default)]
    pub jobs: Vec<TrackedJob>,
}

impl SessionFile {
    /// A session that has started nothing yet.
    pub fn empty(id: &SessionId) -> Self {
        Self {
            version: SESSION_VERSION,
            session_id: id.as_str().to_owned(),
            jobs: Vec::new(),
        }
    }

    /// Adds a job, or refreshes it if this run is already tracked; returns
    /// whether the file changed. Past [`MAX_TRACKED`], the oldest reported
    /// jobs are forgotten.
    pub fn track(&mut self, job: TrackedJob) -> bool {
        if let Some(known) = self.jobs.iter_mut().find(|j| j.job_id == job.job_id) {
            if known.name == job.name && known.dir == job.dir {
                return false;
            }
            known.name = job.name;
            known.dir = job.dir;
            return true;
        }
        self.jobs.push(job);
        while self.jobs.len() > MAX_TRACKED {
            match self.jobs.iter().position(|j| j.reported.is_some()) {
                Some(i) => self.jobs.remove(i),
                None => self.jobs.remove(0),
            };
        }
        true
    }

    /// The jobs whose outcome the session has not been told, oldest first.
    pub fn unreported(&self) -> Vec<TrackedJob> {
        self.jobs
            .iter()
            .filter(|j| j.reported.is_none())
            .cloned()
            .collect()
    }

    /// Marks run `job_id` reported with `outcome`; `true` only for the
    /// caller that marks it first (the one that may report it).
    pub fn claim(&mut self, job_id: &str, outcome: &str) -> bool {
        match self.jobs.iter_mut().find(|j| j.job_id == job_id) {
            Some(j) if j.reported.is_none() => {
                j.reported = Some(outcome.to_owned());
                true
            }
            _ => false,
        }
    }
}

/// Reading or writing a session file failed.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The file exists but is not a session file this build understands.
    #[error("session file {path} is malformed: {why}")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// Why.
        why: String,
    },
    /// An I/O error.
    #[error("{0}")]
    Io(String),
}

/// The session documents of one store.
#[derive(Clone, Copy)]
pub struct SessionStore<'s> {
    docs: &'s dyn DocStore,
}

impl<'s> SessionStore<'s> {
    /// The sessions kept in `store` (the file store's `sessions/`).
    pub fn new(store: &'s dyn Store) -> Self {
        Self { docs: store.docs() }
    }

    /// Where session `id` is kept (the file store: its file).
    pub fn path(&self, id: &SessionId) -> PathBuf {
        PathBuf::from(self.docs.describe(DocKind::Session, id.as_str()))
    }

    /// The session's file as it is now; a session that started nothing has
    /// an empty one.
    pub fn load(&self, id: &SessionId) -> Result<SessionFile, SessionError> {
        let bytes = self
            .docs
            .read(DocKind::Session, id.as_str())
            .map_err(|e| self.unreadable(id, &e))?;
        self.parse(id, bytes.as_deref())
    }

    /// A session document's bytes as a session file (`None`: absent).
    fn parse(&self, id: &SessionId, bytes: Option<&[u8]>) -> Result<SessionFile, SessionError> {
        let Some(bytes) = bytes else {
            return Ok(SessionFile::empty(id));
        };
        let path = self.path(id);
        let malformed = |detail: String| SessionError::Malformed {
            path: path.clone(),
            why: format!("malformed {}: {detail}", path.display()),
        };
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Err(malformed("the file is empty".into()));
        }
        let f: SessionFile = serde_json::from_slice(bytes).map_err(|e| malformed(e.to_string()))?;
        check(f, &path, id)
    }

    /// A document the store could not read (an unusable file: a FIFO, a
    /// symlink, one over its cap) is a malformed session file.
    fn unreadable(&self, id: &SessionId, e: &StoreError) -> SessionError {
        SessionError::Malformed {
            path: self.path(id),
            why: e.to_string(),
        }
    }

    /// Applies `change` to the session's file under its lock and writes the
    /// file when `change` reports a change. A malformed file is replaced by
    /// an empty one first when `repair` is set (the hook that adds jobs),
    /// and is an error otherwise.
    pub fn update<T>(
        &self,
        id: &SessionId,
        repair: bool,
        mut change: impl FnMut(&mut SessionFile) -> (bool, T),
    ) -> Result<T, SessionError> {
        let mut outcome: Option<Result<T, SessionError>> = None;
        let mut f = |current: jobwatch_core::store::DocRead<'_>| -> Option<Vec<u8>> {
            let loaded = match current {
                Ok(bytes) => self.parse(id, bytes),
                Err(e) => Err(self.unreadable(id, e)),
            };
            let mut file = match loaded {
                Ok(f) => f,
                Err(SessionError::Malformed { .. }) if repair => SessionFile::empty(id),
                Err(e) => {
                    outcome = Some(Err(e));
                    return None;
                }
            };
            let (changed, answer) = change(&mut file);
            outcome = Some(Ok(answer));
            changed.then(|| serde_json::to_vec_pretty(&file).expect("a session file serializes"))
        };
        match self.docs.update(DocKind::Session, id.as_str(), &mut f) {
            Ok(()) => outcome.expect("a successful update ran its change"),
            // The change's own verdict (a malformed file) comes first.
            Err(_) if matches!(outcome, Some(Err(_))) => outcome.expect("checked"),
            Err(e @ StoreError::Lock { .. }) => Err(SessionError::Io(format!(
                "cannot lock session {}: {e}",
                id.as_str()
            ))),
            Err(e) => Err(SessionError::Io(e.to_string())),
        }
    }
}

fn check(
    f: SessionFile,
    path: &std::path::Path,
    id: &SessionId,
) -> Result<SessionFile, SessionError> {
    if f.version > SESSION_VERSION {
        return Err(SessionError::Malformed {
            path: path.to_owned(),
            why: format!(
                "version {} is newer than this jobwatch understands ({SESSION_VERSION})",
                f.version
            ),
        });
    }
    if f.session_id != id.as_str() {
        return Err(SessionError::Malformed {
            path: path.to_owned(),
            why: format!("it belongs to session {:?}", f.session_id),
        });
    }
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(name: &str, id: &str) -> TrackedJob {
        TrackedJob {
            name: name.into(),
            job_id: id.into(),
            dir: "/jobs".into(),
            started_at: String::new(),
            via: "mcp".into(),
            reported: None,
        }
    }

    #[test]
    fn session_ids_that_could_leave_the_folder_are_refused() {
        for ok in ["d61619d2-9d21-4d06-82e3-623ffb4fd86b", "a", "A_b-9"] {
            assert!(SessionId::parse(ok).is_ok(), "{ok}");
        }
        let long = "a".repeat(MAX_SESSION_ID + 1);
        for bad in [
            "", "..", "../x", "a/b", ".hidden", "-x", "a b", "a.json", &long, "é",
        ] {
            assert!(SessionId::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_run_is_tracked_once_and_claimed_once() {
        let mut f = SessionFile::empty(&SessionId::parse("s").unwrap());
        assert!(f.track(job("a", "1")));
        assert!(
            !f.track(job("a", "1")),
            "the same run again changes nothing"
        );
        assert!(
            f.track(job("a", "2")),
            "a new run of the name is another job"
        );
        assert_eq!(f.unreported().len(), 2);
        assert!(f.claim("1", "success"));
        assert!(!f.claim("1", "success"), "a second claim must lose");
        assert!(!f.claim("nope", "success"));
        assert_eq!(f.unreported(), vec![job("a", "2")]);
    }

    #[test]
    fn the_oldest_reported_jobs_are_forgotten_first() {
        let mut f = SessionFile::empty(&SessionId::parse("s").unwrap());
        for i in 0..MAX_TRACKED {
            f.track(job("a", &i.to_string()));
        }
        f.claim("5", "success");
        f.track(job("b", "new"));
        assert_eq!(f.jobs.len(), MAX_TRACKED);
        assert!(f.jobs.iter().all(|j| j.job_id != "5"));
        assert!(f.jobs.iter().any(|j| j.job_id == "0"));
    }

    #[test]
    fn the_store_writes_a_private_file_and_refuses_a_foreign_one() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let dir = jobwatch_core::store::file::FileStore::open(Some(tmp.path())).unwrap();
        let store = SessionStore::new(&dir);
        let id = SessionId::parse("s1").unwrap();
        assert_eq!(store.load(&id).unwrap().jobs.len(), 0);
        store
            .update(&id, false, |f| (f.track(job("a", "1")), ()))
            .unwrap();
        let mode = std::fs::metadata(store.path(&id))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "mode {mode:o}");
        assert_eq!(store.load(&id).unwrap().jobs, vec![job("a", "1")]);

        let other = SessionId::parse("s2").unwrap();
        std::fs::copy(store.path(&id), store.path(&other)).unwrap();
        assert!(matches!(
            store.load(&other),
            Err(SessionError::Malformed { .. })
        ));
        std::fs::write(store.path(&other), "{not json").unwrap();
        assert!(store.update(&other, false, |_| (false, ())).is_err());
        store
            .update(&other, true, |f| (f.track(job("b", "2")), ()))
            .unwrap();
        assert_eq!(store.load(&other).unwrap().jobs, vec![job("b", "2")]);
    }
}
