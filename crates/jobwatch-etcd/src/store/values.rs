//! What the store's own keys hold (the record and kill request are
//! jobwatch's model types, stored as their protocol-v1 JSON). Every value
//! a writer puts carries something unique to it (a claim token), so that
//! a write whose reply was lost can be recognised as its own.

use serde::{Deserialize, Serialize};

use jobwatch_core::model::{Outcome, StatusWord};

/// `jobs/NAME/claim`: who holds the name. The key is attached to the
/// holder's lease, so it vanishes when the holder (or its host) dies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClaimValue {
    /// Unique to this claim: every write the holder makes compares the
    /// claim key still holds exactly this value (fencing a stale holder).
    pub token: String,
    /// What the holder does with the name.
    pub role: Role,
    /// The holder's host name, for messages.
    pub host: String,
    /// The holder's PID on that host, for messages.
    pub pid: i32,
    /// Whether the holder kills its job when it loses touch with the
    /// cluster (wrappers only).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub self_fence: bool,
}

/// What a claim's holder does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "role")]
pub enum Role {
    /// A wrapper running the run `job_id`: while this key exists, that
    /// wrapper is alive.
    Wrapper {
        /// The run.
        job_id: String,
    },
    /// A short holder: a run starting (before its record), a finisher, gc.
    Holder,
}

impl ClaimValue {
    /// The run this claim's holder is the live wrapper of, if it is one.
    pub fn wrapper_of(&self) -> Option<&str> {
        match &self.role {
            Role::Wrapper { job_id } => Some(job_id),
            Role::Holder => None,
        }
    }

    /// The JSON stored in the key.
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a claim value serializes")
    }
}

/// `jobs/NAME/status`: the outcome of the run `job_id`, created once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusValue {
    /// `SUCCESS` or `FAILED` (protocol v1's status word).
    pub word: String,
    /// The outcome.
    pub outcome: Outcome,
    /// The run it is the outcome of.
    pub job_id: String,
    /// The claim token of the committer.
    pub token: String,
}

impl StatusValue {
    /// The status word, if it is one.
    pub fn status_word(&self) -> Option<StatusWord> {
        match self.word.as_str() {
            "SUCCESS" => Some(StatusWord::Success),
            "FAILED" => Some(StatusWord::Failed),
            _ => None,
        }
    }
}

/// `jobs/NAME/beat`: the progress mark. Its *revision* is what matters to
/// an observer on another host, who dates it by when it saw it change (its
/// own clock); the times in it are the writer's clock, for display only.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BeatValue {
    /// The writer's claim token (`None`: an explicit `jobwatch beat` from
    /// another host).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// Progress time on the writer's clock, ms since the epoch.
    pub at_ms: u64,
    /// The last lines of the job's output when the beat was written
    /// (bounded: [`crate::store::policy::TAIL_LINES`] lines,
    /// [`crate::store::policy::TAIL_BYTES`] bytes).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tail: Vec<String>,
    /// Where the run's log is on its host, so that another host can say
    /// where to read it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log: Option<String>,
}

/// Parses stored JSON, naming the key in the error.
pub fn parse<T: serde::de::DeserializeOwned>(key: &[u8], value: &[u8]) -> Result<T, String> {
    serde_json::from_slice(value).map_err(|e| {
        format!(
            "cannot use etcd key {}: {}",
            crate::store::keys::show(key),
            one_line(&e.to_string())
        )
    })
}

/// One line, at most 200 characters, without control characters: stored
/// bytes may be hostile and end up on a terminal.
pub fn one_line(s: &str) -> String {
    let mut out: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(200)
        .collect();
    if s.chars().count() > 200 {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_claim_value_round_trips_and_says_whose_wrapper_it_is() {
        let v = ClaimValue {
            token: "t".into(),
            role: Role::Wrapper {
                job_id: "j1".into(),
            },
            host: "h".into(),
            pid: 7,
            self_fence: true,
        };
        let back: ClaimValue = parse(b"k", &v.to_bytes()).unwrap();
        assert_eq!(back, v);
        assert_eq!(back.wrapper_of(), Some("j1"));
        let holder = ClaimValue {
            role: Role::Holder,
            ..v
        };
        assert_eq!(holder.wrapper_of(), None);
    }

    #[test]
    fn hostile_json_is_one_line_naming_the_key() {
        let e = parse::<ClaimValue>(b"jobs/a/claim", b"{\"token\":\x1b[2J").unwrap_err();
        assert!(e.starts_with("cannot use etcd key jobs/a/claim: "), "{e}");
        assert!(!e.contains('\n') && !e.contains('\x1b'), "{e}");
    }
}
