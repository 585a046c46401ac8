//! The key layout of a jobwatch namespace (docs/multi-host.md, "Key
//! layout"). Every key is relative to the namespace prefix
//! `jobwatch/NAMESPACE/`, which the access layer adds.
//!
//! ```text
//! jobs/NAME/claim     who holds the name (attached to the holder's lease)
//! jobs/NAME/record    the current run's record (JobRecord JSON)
//! jobs/NAME/status    its outcome, created once (StatusValue JSON)
//! jobs/NAME/beat      the progress mark with a bounded output tail (BeatValue JSON)
//! jobs/NAME/kill      a kill request (KillRequest JSON)
//! jobs/NAME/tail      the final output tail, written with the status
//! history/NAME/LABEL/{record,status,tail}   an archived run
//! docs/breaker/KEY    a circuit breaker (the breaker's JSON document)
//! docs/session/ID     an agent session's tracked jobs (`jobwatch hook`)
//! events/JOB_ID/started, events/JOB_ID/ended   the event journal (JobEvent JSON;
//!                     a key's create revision is its cursor)
//! ```
//!
//! Names and breaker keys are validated before they get here
//! (`[A-Za-z0-9._-]`), so a `/` can only be a separator.

use jobwatch_core::model::JobName;
use jobwatch_core::store::DocKind;

/// Where the current runs are.
pub const JOBS: &str = "jobs/";
/// Where archived runs are.
pub const HISTORY: &str = "history/";
/// Where documents are.
pub const DOCS: &str = "docs/";
/// Where the event journal is.
pub const EVENTS: &str = "events/";

/// `events/JOB_ID/started` or `events/JOB_ID/ended`: one run's event
/// (a `job_id` is `[A-Za-z0-9._-]`, checked where it is read).
pub fn event(job_id: &str, kind: jobwatch_core::model::EventKind) -> Vec<u8> {
    format!("{EVENTS}{job_id}/{}", kind.as_str()).into_bytes()
}

/// One piece of a name's current run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Part {
    /// The claim (lock) on the name.
    Claim,
    /// The run's record.
    Record,
    /// Its status.
    Status,
    /// Its progress mark and running tail.
    Beat,
    /// A kill request.
    Kill,
    /// The final tail.
    Tail,
}

impl Part {
    /// Every part, in no particular order.
    pub const ALL: [Part; 6] = [
        Part::Claim,
        Part::Record,
        Part::Status,
        Part::Beat,
        Part::Kill,
        Part::Tail,
    ];

    /// The last segment of the key.
    pub fn as_str(self) -> &'static str {
        match self {
            Part::Claim => "claim",
            Part::Record => "record",
            Part::Status => "status",
            Part::Beat => "beat",
            Part::Kill => "kill",
            Part::Tail => "tail",
        }
    }

    fn parse(s: &str) -> Option<Part> {
        Part::ALL.into_iter().find(|p| p.as_str() == s)
    }
}

/// `jobs/NAME/`: everything of a name's current run.
pub fn job_prefix(name: &JobName) -> Vec<u8> {
    format!("{JOBS}{name}/").into_bytes()
}

/// `jobs/NAME/PART`.
pub fn job(name: &JobName, part: Part) -> Vec<u8> {
    format!("{JOBS}{name}/{}", part.as_str()).into_bytes()
}

/// `history/NAME/`: a name's archived runs.
pub fn history_prefix(name: &JobName) -> Vec<u8> {
    format!("{HISTORY}{name}/").into_bytes()
}

/// `history/NAME/LABEL/`: one archived run.
pub fn history_run(name: &JobName, label: &str) -> Vec<u8> {
    format!("{HISTORY}{name}/{label}/").into_bytes()
}

/// `history/NAME/LABEL/PART` (record, status or tail).
pub fn history(name: &JobName, label: &str, part: Part) -> Vec<u8> {
    format!("{HISTORY}{name}/{label}/{}", part.as_str()).into_bytes()
}

fn kind_dir(kind: DocKind) -> &'static str {
    match kind {
        DocKind::Breaker => "breaker",
        DocKind::Session => "session",
        DocKind::QueuedJob => "queued",
        DocKind::Queue => "queue",
    }
}

/// `docs/KIND/`: every document of a kind.
pub fn docs_prefix(kind: DocKind) -> Vec<u8> {
    format!("{DOCS}{}/", kind_dir(kind)).into_bytes()
}

/// `docs/KIND/KEY`.
pub fn doc(kind: DocKind, key: &str) -> Vec<u8> {
    format!("{DOCS}{}/{key}", kind_dir(kind)).into_bytes()
}

/// The name and part of a `jobs/NAME/PART` key; `None` for anything else
/// (including a name that is not valid: hostile keys are skipped).
pub fn parse_job_key(key: &[u8]) -> Option<(JobName, Part)> {
    let rest = std::str::from_utf8(key).ok()?.strip_prefix(JOBS)?;
    let (name, part) = rest.split_once('/')?;
    Some((JobName::parse(name).ok()?, Part::parse(part)?))
}

/// The name and label of a `history/NAME/LABEL/PART` key, with its part.
pub fn parse_history_key(key: &[u8]) -> Option<(JobName, String, Part)> {
    let rest = std::str::from_utf8(key).ok()?.strip_prefix(HISTORY)?;
    let mut it = rest.splitn(3, '/');
    let name = JobName::parse(it.next()?).ok()?;
    let label = it.next()?;
    let part = Part::parse(it.next()?)?;
    if label.is_empty() || label.starts_with('.') {
        return None;
    }
    Some((name, label.to_owned(), part))
}

/// The document key of a `docs/KIND/KEY` key of `kind`.
pub fn parse_doc_key(kind: DocKind, key: &[u8]) -> Option<String> {
    let prefix = docs_prefix(kind);
    let rest = key.strip_prefix(prefix.as_slice())?;
    let s = std::str::from_utf8(rest).ok()?;
    (!s.is_empty() && !s.contains('/')).then(|| s.to_owned())
}

/// Text of a key for messages (`jobs/a/record`).
pub fn show(key: &[u8]) -> String {
    String::from_utf8_lossy(key).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> JobName {
        JobName::parse(s).unwrap()
    }

    #[test]
    fn job_keys_map_back_to_their_name_and_part() {
        for part in Part::ALL {
            let key = job(&n("a.b-c_1"), part);
            assert_eq!(parse_job_key(&key), Some((n("a.b-c_1"), part)));
        }
        assert_eq!(parse_job_key(b"jobs/a/other"), None);
        assert_eq!(parse_job_key(b"jobs/../record"), None);
        assert_eq!(parse_job_key(b"history/a/l/record"), None);
    }

    #[test]
    fn a_name_prefix_never_covers_another_name() {
        let a = job_prefix(&n("a"));
        assert!(!job(&n("ab"), Part::Record).starts_with(&a));
        assert!(job(&n("a"), Part::Record).starts_with(&a));
    }

    #[test]
    fn history_keys_map_back_to_name_label_and_part() {
        let key = history(&n("a"), "20260101T000000.000Z", Part::Status);
        assert_eq!(
            parse_history_key(&key),
            Some((n("a"), "20260101T000000.000Z".to_owned(), Part::Status))
        );
        assert_eq!(parse_history_key(b"history/a//record"), None);
        assert_eq!(
            parse_history_key(b"history/a/l/claim"),
            Some((n("a"), "l".into(), Part::Claim))
        );
    }

    #[test]
    fn doc_keys_map_back() {
        let key = doc(DocKind::Breaker, "deploy");
        assert_eq!(
            parse_doc_key(DocKind::Breaker, &key).as_deref(),
            Some("deploy")
        );
        assert_eq!(parse_doc_key(DocKind::Breaker, b"docs/breaker/"), None);
    }
}
