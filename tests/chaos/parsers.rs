//! Random bytes in every file jobwatch parses: never a panic, and valid
//! content always reads back as written.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jobwatch_core::classify::classify;
use jobwatch_core::model::{Finalizer, KillRequest, RECORD_VERSION, StatusWord};
use jobwatch_core::model::{JobName, JobRecord, LivenessMode, Outcome, Settings};
use jobwatch_core::store::file::observe;
use jobwatch_core::store::file::protocol::record::{
    read_json, read_record, write_kill_request, write_record,
};
use jobwatch_core::store::file::protocol::status_file::{read_status, status_content};
use jobwatch_core::store::file::protocol::{FileKind, JobPaths};
use jobwatch_core::sys::proc::hostname;
use proptest::prelude::*;

const NAME_PATTERN: &str = "[A-Za-z0-9][A-Za-z0-9._-]{0,63}";

fn outcome() -> impl Strategy<Value = Outcome> {
    prop_oneof![
        Just(Outcome::Success),
        Just(Outcome::Failed),
        Just(Outcome::Timeout),
        Just(Outcome::Hung),
        Just(Outcome::Killed),
        Just(Outcome::Lost),
    ]
}

fn liveness() -> impl Strategy<Value = LivenessMode> {
    prop_oneof![
        Just(LivenessMode::Auto),
        Just(LivenessMode::Output),
        Just(LivenessMode::Cpu),
        Just(LivenessMode::Beat),
        Just(LivenessMode::Timer),
    ]
}

prop_compose! {
    fn settings()(
        heartbeat_ms in 1..100_000u64,
        stale_ms in 1..1_000_000u64,
        timeout_ms in proptest::option::of(1..u64::MAX / 2),
        grace_ms in 0..100_000u64,
        liveness in liveness(),
        retry in (0..10u32, 0..100_000u64, 0..1_000_000u64),
    ) -> Settings {
        let (retries, backoff_ms, backoff_max_ms) = retry;
        Settings { heartbeat_ms, stale_ms, timeout_ms, grace_ms, liveness, retries, backoff_ms, backoff_max_ms }
    }
}

prop_compose! {
    fn record()(
        name in NAME_PATTERN,
        job_id in "\\PC{0,40}",
        command in proptest::collection::vec("\\PC{0,20}", 1..4),
        cwd in "\\PC{0,30}",
        host in "\\PC{0,20}",
        pids in (any::<i32>(), any::<u64>(), proptest::option::of(any::<i32>()), proptest::option::of(any::<u64>())),
        settings in settings(),
        breaker in proptest::option::of(NAME_PATTERN),
        started_unix_ms in 0..4_000_000_000_000u64,
        end in proptest::option::of((outcome(), proptest::option::of(any::<i32>()), proptest::option::of(1..64i32), proptest::option::of("\\PC{0,40}"))),
    ) -> JobRecord {
        let (wrapper_pid, wrapper_start_time, child_pid, child_start_time) = pids;
        let started = UNIX_EPOCH + Duration::from_millis(started_unix_ms);
        let mut r = JobRecord {
            version: RECORD_VERSION,
            name,
            job_id,
            command,
            cwd,
            host,
            boot_id: "boot".into(),
            wrapper_pid,
            wrapper_start_time,
            child_pid,
            child_start_time,
            pgid: child_pid,
            settings,
            started_at: humantime::format_rfc3339_millis(started).to_string(),
            started_unix_ms,
            ended_at: None,
            exit_code: None,
            signal: None,
            outcome: None,
            duration_ms: None,
            reason: None,
            finalized_by: None,
            breaker,
            attempt: settings.max_attempts(),
            max_attempts: settings.max_attempts(),
            attempts: Vec::new(),
            pid_ns: None,
        };
        if let Some((outcome, exit_code, signal, reason)) = end {
            let end = jobwatch_core::model::JobEnd { outcome, exit_code, signal, reason };
            r.finish(&end, Finalizer::Wrapper, started + Duration::from_secs(5));
        }
        r
    }
}

fn scratch() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("jobwatch-prop-")
        .tempdir()
        .expect("tempdir")
}

fn write(path: &Path, bytes: &[u8]) {
    std::fs::write(path, bytes).expect("write");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn any_string_is_a_valid_name_or_a_clean_error(s in "\\PC{0,80}|[A-Za-z0-9._/ -]{0,70}") {
        match JobName::parse(&s) {
            Ok(name) => {
                prop_assert_eq!(name.as_str(), s.as_str());
                prop_assert!(s.len() <= 64 && !s.starts_with(['.', '-', '_']) && !s.contains('/'));
            }
            Err(e) => prop_assert!(!e.to_string().is_empty()),
        }
    }

    #[test]
    fn valid_names_and_file_names_round_trip(s in NAME_PATTERN) {
        let name = JobName::parse(&s).expect("valid by construction");
        prop_assert_eq!(name.as_str(), s.as_str());
        for kind in FileKind::ALL {
            let file = format!("{s}{}", kind.suffix());
            prop_assert_eq!(FileKind::parse_file_name(&file), Some((name.clone(), kind)));
        }
    }

    #[test]
    fn any_file_name_parses_to_a_job_file_or_nothing(s in "\\PC{0,80}|[a-z.]{0,12}(\\.job\\.json|\\.status|\\.log|\\.lock)") {
        if let Some((name, kind)) = FileKind::parse_file_name(&s) {
            prop_assert_eq!(format!("{name}{}", kind.suffix()), s);
        }
    }

    #[test]
    fn random_bytes_in_a_status_file_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
        let dir = scratch();
        let path = dir.path().join("x.status");
        write(&path, &bytes);
        if let Ok(Some(word)) = read_status(&path) {
            let text = String::from_utf8_lossy(&bytes);
            prop_assert_eq!(text.lines().next().unwrap_or("").trim(), word.as_str());
        }
    }

    #[test]
    fn random_bytes_in_a_record_or_kill_request_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let dir = scratch();
        let path = dir.path().join("x.job.json");
        write(&path, &bytes);
        let _ = read_record(&path);
        let _ = read_json::<KillRequest>(&path);
    }

    #[test]
    fn records_round_trip_and_any_truncation_is_an_error(r in record(), cut in any::<prop::sample::Index>()) {
        let dir = scratch();
        let path = dir.path().join("x.job.json");
        write_record(&path, &r).expect("write record");
        prop_assert_eq!(read_record(&path).expect("readable"), Some(r.clone()));
        if let Some(outcome) = r.outcome {
            let status = dir.path().join("x.status");
            write(&status, status_content(&r, outcome).as_bytes());
            let word = if outcome == Outcome::Success { StatusWord::Success } else { StatusWord::Failed };
            prop_assert_eq!(read_status(&status).expect("readable"), Some(word));
        }
        let full = std::fs::read(&path).unwrap();
        let at = cut.index(full.len() - 1);
        // A record cut short (what a non-atomic writer could leave) is
        // refused, never half-read.
        write(&path, &full[..at]);
        prop_assert!(read_record(&path).is_err());
    }

    #[test]
    fn kill_requests_round_trip(job_id in "\\PC{0,40}", outcome in outcome(), reason in "\\PC{0,60}") {
        let dir = scratch();
        let path = dir.path().join("x.kill");
        let req = KillRequest { job_id, outcome, reason, at: "2026-11-24T09:00:00.000Z".into(), grace_ms: None, command_exited: false };
        write_kill_request(&path, &req).expect("write");
        prop_assert_eq!(read_json::<KillRequest>(&path).expect("readable"), Some(req));
    }

    #[test]
    fn any_job_files_classify_as_the_protocol_table_says(
        record in record_file(),
        status in status_file(),
        others in proptest::collection::vec(proptest::option::of(proptest::collection::vec(any::<u8>(), 0..128)), 4),
    ) {
        let dir = scratch();
        let name = JobName::parse("j").unwrap();
        let paths = JobPaths::new(dir.path(), &name);
        match &record {
            RecordFile::Absent => {}
            RecordFile::Garbage(bytes) => write(&paths.record(), bytes),
            RecordFile::Valid(r) => write_record(&paths.record(), r).expect("write record"),
        }
        if let Some(bytes) = &status {
            write(&paths.status(), bytes);
        }
        let others_paths = [paths.pid(), paths.heartbeat(), paths.log(), paths.kill_request()];
        for (path, content) in others_paths.iter().zip(&others) {
            if let Some(bytes) = content {
                write(path, bytes);
            }
        }
        let before = SystemTime::now();
        let state = classify(observe(&paths), SystemTime::now(), None);
        let after = SystemTime::now();
        let expect = |now| expected_state(&record, status.as_deref(), &paths, now);
        let (early, late) = (expect(before), expect(after));
        // Only a run that turns overdue during the call can differ.
        prop_assume!(early == late);
        let word = state.word();
        match &record {
            // Item 1 of issue 9 decides whether a recorded outcome without a
            // status is that outcome or still an unfinished run: either is
            // what these files say, nothing else is.
            RecordFile::Valid(r) if status.is_none() && r.outcome.is_some() => prop_assert!(
                word == early || word == r.outcome.unwrap().as_str(),
                "{word}, expected {early} or {}", r.outcome.unwrap().as_str()
            ),
            _ => prop_assert_eq!(word, early),
        }
    }
}

/// What `NAME.job.json` holds in a generated case.
#[derive(Debug, Clone)]
enum RecordFile {
    Absent,
    /// Random bytes: never a complete record.
    Garbage(Vec<u8>),
    /// A well-formed record.
    Valid(Box<JobRecord>),
}

fn record_file() -> impl Strategy<Value = RecordFile> {
    prop_oneof![
        Just(RecordFile::Absent),
        proptest::collection::vec(any::<u8>(), 0..128).prop_map(RecordFile::Garbage),
        // Half of them on this host (a wrapper that is dead: the boot id
        // is not this boot's), half on another host.
        (record(), any::<bool>()).prop_map(|(mut r, here)| {
            r.host = if here {
                hostname().to_owned()
            } else {
                format!("elsewhere-{}", r.host)
            };
            RecordFile::Valid(Box::new(r))
        }),
    ]
}

/// Random bytes, or one of the contents that the protocol accepts or that
/// look close to it.
fn status_file() -> impl Strategy<Value = Option<Vec<u8>>> {
    proptest::option::of(prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..64),
        prop_oneof![
            Just("SUCCESS\n"),
            Just("FAILED\noutcome=timeout\nsignal=15\n"),
            Just("  SUCCESS \r\nignored"),
            Just("FAILED"),
            Just("success\n"),
            Just("SUCC"),
            Just("\nSUCCESS\n"),
            Just(""),
        ]
        .prop_map(|s| s.as_bytes().to_vec()),
    ])
}

/// The state docs/protocol.md §8 gives these files at `now`.
fn expected_state(
    record: &RecordFile,
    status: Option<&[u8]>,
    paths: &JobPaths,
    now: SystemTime,
) -> &'static str {
    let record = match record {
        RecordFile::Garbage(_) => return "invalid",
        RecordFile::Absent => None,
        RecordFile::Valid(r) => Some(r),
    };
    let word = match status {
        None => None,
        Some(bytes) => {
            // §5: the text before the first newline, trimmed.
            let first = bytes.split(|b| *b == b'\n').next().unwrap_or_default();
            match String::from_utf8_lossy(first).trim() {
                "SUCCESS" => Some(StatusWord::Success),
                "FAILED" => Some(StatusWord::Failed),
                _ => return "invalid",
            }
        }
    };
    match (word, record) {
        (Some(w), Some(r)) => match r.outcome {
            Some(o) if o.status_word() != w => "invalid",
            Some(o) => o.as_str(),
            None => word_outcome(w),
        },
        (Some(w), None) => word_outcome(w),
        (None, None) => {
            let any = [paths.pid(), paths.heartbeat(), paths.log()]
                .iter()
                .any(|p| p.exists());
            if any { "invalid" } else { "missing" }
        }
        (None, Some(r)) if r.host == hostname() => "lost", // its boot id is not this boot's
        (None, Some(r)) => {
            // Another host: lost once overdue by the observer rule (§7).
            let counts_log = matches!(
                r.settings.liveness,
                LivenessMode::Auto | LivenessMode::Output
            );
            let progress = [Some(paths.heartbeat()), counts_log.then(|| paths.log())]
                .into_iter()
                .flatten()
                .filter_map(|p| std::fs::metadata(p).ok()?.modified().ok())
                .max()
                .unwrap_or(UNIX_EPOCH + Duration::from_millis(r.started_unix_ms));
            let threshold =
                Duration::from_millis(r.settings.stale_ms + r.settings.heartbeat_ms + 1000);
            if now >= progress + threshold {
                "lost"
            } else {
                "running"
            }
        }
    }
}

fn word_outcome(w: StatusWord) -> &'static str {
    match w {
        StatusWord::Success => "success",
        StatusWord::Failed => "failed",
    }
}
