//! The etcd store's decisions, as pure functions of what it read and the
//! time, so that they are tested without a cluster: the lease TTL and the
//! self-fencing deadline, whether a held name is "already running", a
//! wrapper's liveness, how a remote beat is dated, the bounded tail, and
//! how a commit's transaction is read.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use jobwatch_core::model::{JobName, JobRecord, Settings, StatusWord};
use jobwatch_core::store::{Hold, Holder, Invalid, Snapshot};

use crate::kv::KeyValue;
use crate::store::keys::{self, Part};
use crate::store::values::{ClaimValue, StatusValue, parse};

/// The shortest wrapper lease. A wrapper that hears nothing from the
/// cluster for most of a TTL fences itself; a healthy cluster can leave a
/// keepalive unanswered for one renewal interval (TTL/3) plus one bounded
/// attempt ([`crate::lease::RENEWAL_BOUND`], 2 s) plus an election (about
/// 2 s), which must stay below the fencing deadline while leaving the kill
/// its margin: 10 s is the smallest TTL with room for both (see
/// [`fence_after`]).
pub const MIN_TTL: Duration = Duration::from_secs(10);

/// The longest wrapper lease: a dead host is reported `lost` within about
/// twice this (plus an election), whatever `--stale` says.
pub const MAX_TTL: Duration = Duration::from_secs(30);

/// The lease of a short holder (a run starting, a finisher, gc): kept
/// alive while held, so it only matters when the holder dies.
pub const HOLDER_TTL: Duration = Duration::from_secs(10);

/// About how long an etcd leader election takes on default settings
/// (measured: writes resume about 1.5 s after a leader is killed).
pub const ELECTION: Duration = Duration::from_secs(3);

/// Lines of output a beat and a final status carry.
pub const TAIL_LINES: usize = 20;

/// Bytes of output a beat and a final status carry at most (each line is
/// also cut at jobwatch's tail line limit).
pub const TAIL_BYTES: usize = 4096;

/// The TTL of a wrapper's lease for a job with these settings:
/// `(stale − heartbeat) / 3`, clamped to [`MIN_TTL`, `MAX_TTL`] and
/// rounded up to whole seconds (etcd's unit). A third of the time a
/// healthy wrapper may stay silent keeps `lost` (at most about 2×TTL +
/// an election after a host dies) ahead of `hung` (stale + heartbeat after
/// the last beat) for every setting where that is possible.
pub fn lease_ttl(settings: &Settings) -> Duration {
    let room = settings.stale().saturating_sub(settings.heartbeat()) / 3;
    let ttl = room.clamp(MIN_TTL, MAX_TTL);
    Duration::from_secs(ttl.as_secs() + u64::from(ttl.subsec_nanos() > 0))
}

/// The latest a dead host's lease expires after its last keepalive: a
/// leader change restarts every lease's countdown, so up to about two
/// TTLs plus an election.
pub fn lost_bound(ttl: Duration) -> Duration {
    2 * ttl + ELECTION
}

/// How long before its lease could expire a fenced wrapper has to stop its
/// job: TTL/5, at least 2 s, at most 5 s (room for a loaded machine to
/// schedule the wrapper, and for SIGTERM, SIGKILL and their effect).
pub fn kill_margin(ttl: Duration) -> Duration {
    (ttl / 5).clamp(Duration::from_secs(2), Duration::from_secs(5))
}

/// A wrapper that has had no successful keepalive for this long (counted
/// from when the last successful one was *sent*: the lease cannot expire
/// sooner than a TTL after that) fences itself.
pub fn fence_after(ttl: Duration) -> Duration {
    ttl.saturating_sub(kill_margin(ttl))
}

/// Kept from the kill window, for the kill's own latency.
const FENCE_SLACK: Duration = Duration::from_millis(250);

/// Whether a wrapper still safely holds its claim, `since_ok` after its
/// last successful keepalive was sent.
pub fn hold_verdict(since_ok: Duration, expired: bool, ttl: Duration) -> Hold {
    if expired {
        return Hold::Losing {
            reason: "its etcd lease expired: the cluster no longer knows this wrapper".to_owned(),
            within: Duration::ZERO,
        };
    }
    if since_ok < fence_after(ttl) {
        return Hold::Held;
    }
    Hold::Losing {
        reason: format!(
            "cut off from the etcd cluster: no lease keepalive succeeded for {:.1}s (lease TTL {}s)",
            since_ok.as_secs_f64(),
            ttl.as_secs()
        ),
        within: ttl.saturating_sub(since_ok).saturating_sub(FENCE_SLACK),
    }
}

/// Why a name cannot be claimed now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Conflict {
    /// A live wrapper runs its current run (refused at once).
    AlreadyRunning {
        /// The wrapper's PID on its host.
        pid: Option<i32>,
    },
    /// A short holder (or a wrapper committing) has it: worth a brief wait.
    Held,
}

/// What a claim key that exists means to someone who wants the name.
pub fn conflict(
    claim: Option<&ClaimValue>,
    record: Option<&JobRecord>,
    finished: bool,
) -> Conflict {
    match (claim.and_then(ClaimValue::wrapper_of), record) {
        (Some(job_id), Some(r)) if job_id == r.job_id && r.outcome.is_none() && !finished => {
            Conflict::AlreadyRunning {
                pid: Some(r.wrapper_pid),
            }
        }
        _ => Conflict::Held,
    }
}

/// The liveness of `record`'s wrapper, from the name's claim key: alive
/// exactly while the key exists and names that run as a wrapper's. The key
/// is attached to the wrapper's lease, so a dead wrapper (or host) loses it
/// when the lease expires.
pub fn holder_of(claim: Option<&KeyValue>, record: &JobRecord) -> Holder {
    let Some(kv) = claim else {
        return Holder::Dead;
    };
    match parse::<ClaimValue>(&kv.key, &kv.value) {
        Ok(c) if c.wrapper_of() == Some(record.job_id.as_str()) => Holder::Alive,
        Ok(_) => Holder::Dead,
        // Some lease holds a key we cannot read: no verdict from here.
        Err(_) => Holder::Unknown,
    }
}

/// When this process first saw each name's progress mark at its current
/// revision: an observer dates a remote beat on its own clock, never by
/// the writer's.
#[derive(Debug, Default)]
pub struct BeatClock {
    seen: HashMap<JobName, (i64, SystemTime)>,
}

impl BeatClock {
    /// The time (on this host's clock) of the mark at `revision`: `now` if
    /// this is the first look at that revision, else when it was first seen.
    pub fn date(&mut self, name: &JobName, revision: i64, now: SystemTime) -> SystemTime {
        match self.seen.get(name) {
            Some(&(rev, at)) if rev == revision => at,
            _ => {
                self.seen.insert(name.clone(), (revision, now));
                now
            }
        }
    }
}

/// A name's keys, read at one revision.
#[derive(Debug, Clone, Default)]
pub struct JobKeys {
    /// `claim`.
    pub claim: Option<KeyValue>,
    /// `record`.
    pub record: Option<KeyValue>,
    /// `status`.
    pub status: Option<KeyValue>,
    /// `beat`.
    pub beat: Option<KeyValue>,
    /// `kill`.
    pub kill: Option<KeyValue>,
    /// `tail`.
    pub tail: Option<KeyValue>,
}

impl JobKeys {
    /// Sorts the keys of a `jobs/NAME/` range by part.
    pub fn from_kvs(kvs: Vec<KeyValue>) -> Self {
        let mut keys = JobKeys::default();
        for kv in kvs {
            let Some((_, part)) = keys::parse_job_key(&kv.key) else {
                continue;
            };
            let slot = match part {
                Part::Claim => &mut keys.claim,
                Part::Record => &mut keys.record,
                Part::Status => &mut keys.status,
                Part::Beat => &mut keys.beat,
                Part::Kill => &mut keys.kill,
                Part::Tail => &mut keys.tail,
            };
            *slot = Some(kv);
        }
        keys
    }

    /// The record, parsed.
    pub fn record(&self) -> Result<Option<JobRecord>, Invalid> {
        self.record
            .as_ref()
            .map(|kv| parse::<JobRecord>(&kv.key, &kv.value).map_err(Invalid))
            .transpose()
    }

    /// The status, parsed.
    pub fn status(&self) -> Result<Option<StatusValue>, Invalid> {
        self.status
            .as_ref()
            .map(|kv| parse::<StatusValue>(&kv.key, &kv.value).map_err(Invalid))
            .transpose()
    }

    /// The claim, parsed (`None` also when it cannot be read).
    pub fn claim(&self) -> Option<ClaimValue> {
        let kv = self.claim.as_ref()?;
        parse(&kv.key, &kv.value).ok()
    }

    /// Whether anything of a run is stored (a claim alone is a run
    /// starting or a finisher: no state yet).
    pub fn any_state(&self) -> bool {
        self.record.is_some()
            || self.status.is_some()
            || self.beat.is_some()
            || self.kill.is_some()
            || self.tail.is_some()
    }
}

/// The status word of a stored status, checked against its record: a
/// status of another run, or with an unknown word, is not this run's.
pub fn status_word(
    status: &StatusValue,
    record: Option<&JobRecord>,
    key: &[u8],
) -> Result<StatusWord, Invalid> {
    let word = status.status_word().ok_or_else(|| {
        Invalid(format!(
            "cannot use etcd key {}: unknown status word {:?}",
            keys::show(key),
            crate::store::values::one_line(&status.word)
        ))
    })?;
    if let Some(r) = record
        && r.job_id != status.job_id
    {
        return Err(Invalid(format!(
            "cannot use etcd key {}: it is the status of run {} but the record is run {}",
            keys::show(key),
            crate::store::values::one_line(&status.job_id),
            r.job_id
        )));
    }
    Ok(word)
}

/// A snapshot of a name from its keys. `beat_seen` dates the progress mark
/// (see [`BeatClock`]); `last_output` is the local log's last change when
/// the run is on this host.
pub fn snapshot(
    keys: &JobKeys,
    beat_seen: impl FnOnce(i64) -> SystemTime,
    last_output: Option<SystemTime>,
) -> Snapshot {
    let record = keys.record();
    let record_ok = record.as_ref().ok().and_then(Option::as_ref);
    let status = keys.status().and_then(|s| match (s, &keys.status) {
        (Some(s), Some(kv)) => status_word(&s, record_ok, &kv.key).map(Some),
        _ => Ok(None),
    });
    let over = !matches!(status, Ok(None));
    let holder = match (record_ok, over) {
        (Some(r), false) => holder_of(keys.claim.as_ref(), r),
        _ => Holder::Unknown,
    };
    // The mark is dated when this process first saw its revision; a run
    // that has not beaten yet is dated by its record's revision, never by
    // the start time its (remote) wrapper wrote.
    let mark = keys
        .beat
        .as_ref()
        .or(keys.record.as_ref())
        .map(|kv| kv.mod_revision);
    let last_beat = match (over, mark) {
        (false, Some(rev)) => Some(beat_seen(rev)),
        _ => None,
    };
    Snapshot {
        any_state: keys.any_state(),
        record,
        holder,
        status,
        last_beat,
        last_output: last_output.filter(|_| !over),
        command_exited: false,
    }
}

/// At most [`TAIL_LINES`] lines and [`TAIL_BYTES`] bytes, the newest kept.
pub fn bounded_tail(mut lines: Vec<String>) -> Vec<String> {
    if lines.len() > TAIL_LINES {
        lines.drain(..lines.len() - TAIL_LINES);
    }
    let mut total: usize = lines.iter().map(|l| l.len() + 1).sum();
    let mut drop = 0;
    while total > TAIL_BYTES && drop < lines.len() {
        total -= lines[drop].len() + 1;
        drop += 1;
    }
    lines.drain(..drop);
    lines
}

/// How a commit's transaction ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommitVerdict {
    /// Our status is there.
    Committed,
    /// Someone else's status was there first.
    AlreadyFinished,
    /// No status, and our claim is gone or replaced: we may no longer write.
    ClaimLost,
    /// No status, our claim holds, but the record is not the final record
    /// we wrote (commit before write_record).
    RecordNotFinal,
}

/// Reads a commit transaction's failure: `status` is the status read in
/// its `otherwise` branch, `claim_holds` whether our claim value was still
/// there. A lost reply of our own success looks like "exists": it is ours
/// if it carries our token.
pub fn commit_verdict(
    succeeded: bool,
    status: Option<&StatusValue>,
    our_token: &str,
    claim_holds: bool,
) -> CommitVerdict {
    match (succeeded, status) {
        (true, _) => CommitVerdict::Committed,
        (false, Some(s)) if s.token == our_token => CommitVerdict::Committed,
        (false, Some(_)) => CommitVerdict::AlreadyFinished,
        (false, None) if !claim_holds => CommitVerdict::ClaimLost,
        (false, None) => CommitVerdict::RecordNotFinal,
    }
}

/// A label not yet used among `taken`: `label`, else `label.1`, `label.2`…
pub fn unique_label(label: &str, taken: &[String]) -> String {
    let mut unique = label.to_owned();
    let mut n = 0;
    while taken.contains(&unique) {
        n += 1;
        unique = format!("{label}.{n}");
    }
    unique
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::values::Role;
    use jobwatch_core::model::{LivenessMode, Outcome};

    fn settings(stale: u64, heartbeat: u64) -> Settings {
        Settings {
            heartbeat_ms: heartbeat * 1000,
            stale_ms: stale * 1000,
            timeout_ms: None,
            grace_ms: 5000,
            liveness: LivenessMode::Auto,
            retries: 0,
            backoff_ms: 0,
            backoff_max_ms: 0,
        }
    }

    #[test]
    fn the_lease_ttl_is_a_third_of_the_silence_allowed_clamped_to_whole_seconds() {
        assert_eq!(lease_ttl(&settings(60, 10)), Duration::from_secs(17));
        assert_eq!(lease_ttl(&settings(5, 1)), MIN_TTL);
        assert_eq!(lease_ttl(&settings(3600, 10)), MAX_TTL);
        // A heartbeat longer than stale is refused upstream; no underflow.
        assert_eq!(lease_ttl(&settings(1, 10)), MIN_TTL);
    }

    #[test]
    fn a_dead_host_is_lost_before_it_could_look_hung_with_default_settings() {
        let s = settings(60, 10);
        let hung_after = s.stale() + s.heartbeat() + Duration::from_secs(1);
        assert!(lost_bound(lease_ttl(&s)) < hung_after);
    }

    #[test]
    fn fencing_leaves_room_for_a_slow_renewal_and_an_election_and_for_the_kill() {
        let election = Duration::from_secs(2);
        for secs in [10, 17, 30] {
            let ttl = Duration::from_secs(secs);
            let slow_renewal = ttl / 3 + crate::lease::RENEWAL_BOUND + election;
            assert!(slow_renewal < fence_after(ttl), "ttl {secs}s");
            assert!(
                ttl - fence_after(ttl) >= Duration::from_secs(2),
                "ttl {secs}s"
            );
        }
    }

    #[test]
    fn a_wrapper_holds_until_the_fence_deadline_then_must_stop_before_expiry() {
        let ttl = Duration::from_secs(10);
        assert_eq!(
            hold_verdict(Duration::from_millis(7_900), false, ttl),
            Hold::Held
        );
        match hold_verdict(Duration::from_millis(8_100), false, ttl) {
            Hold::Losing { within, reason } => {
                assert!(within < Duration::from_millis(1_900), "{within:?}");
                assert!(reason.contains("8.1s"), "{reason}");
            }
            held => panic!("{held:?}"),
        }
        assert!(matches!(
            hold_verdict(Duration::ZERO, true, ttl),
            Hold::Losing { within, .. } if within.is_zero()
        ));
    }

    fn record(job_id: &str, outcome: Option<Outcome>) -> JobRecord {
        serde_json::from_value(serde_json::json!({
            "version": 1, "name": "a", "job_id": job_id, "command": ["true"], "cwd": "/",
            "host": "h", "boot_id": "b", "wrapper_pid": 42, "wrapper_start_time": 1,
            "child_pid": null, "child_start_time": null, "pgid": null,
            "settings": {"heartbeat_ms": 1000, "stale_ms": 5000, "timeout_ms": null,
                         "grace_ms": 100, "liveness": "auto"},
            "started_at": "2026-01-01T00:00:00.000Z", "started_unix_ms": 0,
            "ended_at": null, "exit_code": null, "signal": null, "outcome": outcome,
            "duration_ms": null, "reason": null, "finalized_by": null
        }))
        .unwrap()
    }

    fn claim(role: Role) -> ClaimValue {
        ClaimValue {
            token: "t".into(),
            role,
            host: "h".into(),
            pid: 1,
            self_fence: true,
        }
    }

    fn kv(key: &[u8], value: Vec<u8>, rev: i64) -> KeyValue {
        KeyValue {
            key: key.to_vec(),
            value,
            create_revision: rev,
            mod_revision: rev,
            version: 1,
            lease: 0,
        }
    }

    #[test]
    fn only_the_live_wrapper_of_the_current_unfinished_run_is_already_running() {
        let wrapper = claim(Role::Wrapper {
            job_id: "j1".into(),
        });
        let running = record("j1", None);
        assert_eq!(
            conflict(Some(&wrapper), Some(&running), false),
            Conflict::AlreadyRunning { pid: Some(42) }
        );
        // Committing (status there or final record written): wait for it.
        assert_eq!(
            conflict(Some(&wrapper), Some(&running), true),
            Conflict::Held
        );
        let done = record("j1", Some(Outcome::Failed));
        assert_eq!(conflict(Some(&wrapper), Some(&done), false), Conflict::Held);
        // A wrapper starting another run, a finisher, an unreadable claim.
        assert_eq!(
            conflict(Some(&claim(Role::Holder)), Some(&running), false),
            Conflict::Held
        );
        let other = claim(Role::Wrapper {
            job_id: "j2".into(),
        });
        assert_eq!(
            conflict(Some(&other), Some(&running), false),
            Conflict::Held
        );
        assert_eq!(conflict(None, Some(&running), false), Conflict::Held);
    }

    #[test]
    fn a_wrapper_is_alive_exactly_while_its_claim_key_names_its_run() {
        let r = record("j1", None);
        let key = keys::job(&JobName::parse("a").unwrap(), Part::Claim);
        let mine = kv(
            &key,
            claim(Role::Wrapper {
                job_id: "j1".into(),
            })
            .to_bytes(),
            5,
        );
        assert_eq!(holder_of(Some(&mine), &r), Holder::Alive);
        assert_eq!(holder_of(None, &r), Holder::Dead);
        let finisher = kv(&key, claim(Role::Holder).to_bytes(), 6);
        assert_eq!(holder_of(Some(&finisher), &r), Holder::Dead);
        let garbage = kv(&key, b"\xff".to_vec(), 7);
        assert_eq!(holder_of(Some(&garbage), &r), Holder::Unknown);
    }

    #[test]
    fn a_remote_beat_is_dated_when_this_process_first_saw_its_revision() {
        let name = JobName::parse("a").unwrap();
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1000);
        let mut clock = BeatClock::default();
        assert_eq!(clock.date(&name, 7, t0), t0);
        assert_eq!(clock.date(&name, 7, t0 + Duration::from_secs(30)), t0);
        let later = t0 + Duration::from_secs(31);
        assert_eq!(clock.date(&name, 9, later), later);
    }

    fn keys_of(parts: &[(Part, Vec<u8>, i64)]) -> JobKeys {
        let name = JobName::parse("a").unwrap();
        JobKeys::from_kvs(
            parts
                .iter()
                .map(|(p, v, rev)| kv(&keys::job(&name, *p), v.clone(), *rev))
                .collect(),
        )
    }

    #[test]
    fn a_snapshot_dates_progress_by_revision_and_never_by_the_writers_clock() {
        let r = serde_json::to_vec(&record("j1", None)).unwrap();
        let c = claim(Role::Wrapper {
            job_id: "j1".into(),
        })
        .to_bytes();
        let k = keys_of(&[(Part::Record, r.clone(), 3), (Part::Claim, c.clone(), 3)]);
        let seen = SystemTime::UNIX_EPOCH + Duration::from_secs(5_000);
        let s = snapshot(
            &k,
            |rev| {
                assert_eq!(rev, 3, "no beat yet: the record's revision");
                seen
            },
            None,
        );
        assert_eq!(s.holder, Holder::Alive);
        assert_eq!(s.last_beat, Some(seen));
        assert!(s.any_state);

        let k = keys_of(&[
            (Part::Record, r, 3),
            (Part::Claim, c, 3),
            (Part::Beat, b"{\"at_ms\":0}".to_vec(), 8),
        ]);
        let s = snapshot(
            &k,
            |rev| {
                assert_eq!(rev, 8);
                seen
            },
            None,
        );
        assert_eq!(s.last_beat, Some(seen));
    }

    #[test]
    fn a_snapshot_with_a_status_judges_no_liveness_and_checks_the_status_is_this_runs() {
        let r = serde_json::to_vec(&record("j1", Some(Outcome::Failed))).unwrap();
        let status = |job: &str| {
            serde_json::to_vec(&StatusValue {
                word: "FAILED".into(),
                outcome: Outcome::Failed,
                job_id: job.into(),
                token: "t".into(),
            })
            .unwrap()
        };
        let k = keys_of(&[
            (Part::Record, r.clone(), 3),
            (Part::Status, status("j1"), 4),
        ]);
        let s = snapshot(&k, |_| panic!("not dated once over"), None);
        assert_eq!(s.status.unwrap(), Some(StatusWord::Failed));
        assert_eq!(s.holder, Holder::Unknown);
        assert_eq!(s.last_beat, None);

        let k = keys_of(&[(Part::Record, r, 3), (Part::Status, status("j0"), 4)]);
        let s = snapshot(&k, |_| SystemTime::UNIX_EPOCH, None);
        let e = s.status.unwrap_err();
        assert!(
            e.0.contains("status of run j0 but the record is run j1"),
            "{e}"
        );
    }

    #[test]
    fn a_claim_alone_is_no_state() {
        let c = claim(Role::Holder).to_bytes();
        let k = keys_of(&[(Part::Claim, c, 3)]);
        assert!(!k.any_state());
        let s = snapshot(&k, |_| SystemTime::UNIX_EPOCH, None);
        assert!(matches!(s.record, Ok(None)));
        assert!(!s.any_state);
    }

    #[test]
    fn a_tail_keeps_the_newest_lines_within_both_bounds() {
        let lines: Vec<String> = (0..30).map(|i| format!("line {i}")).collect();
        let t = bounded_tail(lines);
        assert_eq!(t.len(), TAIL_LINES);
        assert_eq!(t.last().unwrap(), "line 29");
        let long: Vec<String> = (0..20).map(|i| format!("{i:0>400}")).collect();
        let t = bounded_tail(long);
        assert!(t.iter().map(|l| l.len() + 1).sum::<usize>() <= TAIL_BYTES);
        assert_eq!(t.last().unwrap(), &format!("{:0>400}", 19));
    }

    #[test]
    fn a_commit_is_ours_if_our_token_is_on_the_status_even_when_the_reply_was_lost() {
        let s = |token: &str| StatusValue {
            word: "SUCCESS".into(),
            outcome: Outcome::Success,
            job_id: "j".into(),
            token: token.into(),
        };
        assert_eq!(
            commit_verdict(true, None, "me", true),
            CommitVerdict::Committed
        );
        assert_eq!(
            commit_verdict(false, Some(&s("me")), "me", false),
            CommitVerdict::Committed
        );
        assert_eq!(
            commit_verdict(false, Some(&s("other")), "me", true),
            CommitVerdict::AlreadyFinished
        );
        assert_eq!(
            commit_verdict(false, None, "me", false),
            CommitVerdict::ClaimLost
        );
        assert_eq!(
            commit_verdict(false, None, "me", true),
            CommitVerdict::RecordNotFinal
        );
    }

    #[test]
    fn labels_are_made_unique() {
        let taken = vec!["l".to_owned(), "l.1".to_owned()];
        assert_eq!(unique_label("l", &taken), "l.2");
        assert_eq!(unique_label("m", &taken), "m");
    }
}
