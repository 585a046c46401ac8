//! Random bytes in every file jobwatch parses: never a panic, and valid
//! content always reads back as written.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jobwatch::classify::{classify, observe};
use jobwatch::protocol::record::{
    Finalizer, KillRequest, RECORD_VERSION, StatusWord, read_json, read_record,
};
use jobwatch::protocol::status_file::{read_status, status_content};
use jobwatch::protocol::{FileKind, JobName, JobPaths, JobRecord, LivenessMode, Outcome, Settings};
use proptest::prelude::*;

const NAME_PATTERN: &str = "[A-Za-z0-9][A-Za-z0-9._-]{0,63}";
const STATES: [&str; 10] = [
    "running", "hung", "success", "failed", "timeout", "killed", "lost", "missing", "invalid",
    "hung",
];

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
        };
        if let Some((outcome, exit_code, signal, reason)) = end {
            let end = jobwatch::protocol::JobEnd { outcome, exit_code, signal, reason };
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
        r.write(&path).expect("write record");
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
        req.write(&path).expect("write");
        prop_assert_eq!(read_json::<KillRequest>(&path).expect("readable"), Some(req));
    }

    #[test]
    fn random_bytes_in_every_job_file_classify_without_panic(
        files in proptest::collection::vec(proptest::option::of(proptest::collection::vec(any::<u8>(), 0..128)), 6),
        valid_record in proptest::option::of(record()),
    ) {
        let dir = scratch();
        let name = JobName::parse("j").unwrap();
        let paths = JobPaths::new(dir.path(), &name);
        let targets = [paths.record(), paths.status(), paths.pid(), paths.heartbeat(), paths.log(), paths.kill_request()];
        for (path, content) in targets.iter().zip(&files) {
            if let Some(bytes) = content {
                write(path, bytes);
            }
        }
        if let Some(r) = valid_record {
            r.write(&paths.record()).expect("write record");
        }
        let state = classify(observe(&paths), SystemTime::now(), None);
        prop_assert!(STATES.contains(&state.word()), "{}", state.word());
    }
}
