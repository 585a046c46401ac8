//! The records every store keeps for a job, store-agnostic: the record of
//! a run (`NAME.job.json` in the file store), a kill request, the outcome
//! vocabulary and the supervision settings. Their JSON shapes are protocol
//! v1's (docs/protocol.md §4): flat, so shell scripts can read them with
//! `jq`; durations are integers in milliseconds, times RFC 3339 in UTC.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// The record format this build writes; readers accept this and older.
pub const RECORD_VERSION: u32 = 1;

/// How a job ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// The command exited 0.
    Success,
    /// The command exited non-zero or died of a signal nobody at jobwatch sent.
    Failed,
    /// It ran past its time limit and was killed.
    Timeout,
    /// It made no progress for longer than the stale threshold and was killed.
    Hung,
    /// A user (`jobwatch kill`) or a signal to the wrapper stopped it.
    Killed,
    /// The wrapper vanished without writing a status.
    Lost,
    /// It never started: a dependency (`run --after`) did not succeed, or it
    /// could not be started when its turn in a queue came (its breaker was
    /// open, its preflight failed).
    Skipped,
}

impl Outcome {
    /// The lowercase word used in files and output.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Failed => "failed",
            Outcome::Timeout => "timeout",
            Outcome::Hung => "hung",
            Outcome::Killed => "killed",
            Outcome::Lost => "lost",
            Outcome::Skipped => "skipped",
        }
    }

    /// The first line of `NAME.status` for this outcome.
    pub fn status_word(self) -> StatusWord {
        if self == Outcome::Success {
            StatusWord::Success
        } else {
            StatusWord::Failed
        }
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The first line of `NAME.status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusWord {
    /// `SUCCESS`
    Success,
    /// `FAILED`
    Failed,
}

impl StatusWord {
    /// The word as written in the file.
    pub fn as_str(self) -> &'static str {
        match self {
            StatusWord::Success => "SUCCESS",
            StatusWord::Failed => "FAILED",
        }
    }
}

/// What counts as progress for the heartbeat.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LivenessMode {
    /// New output, CPU use or an explicit beat, whichever shows progress.
    Auto,
    /// New output on stdout or stderr (explicit beats count in every mode:
    /// they are deliberate statements of progress).
    Output,
    /// CPU time used by the job's process tree (and explicit beats).
    Cpu,
    /// Only explicit beats (`jobwatch beat`, or touching `$JOBWATCH_HEARTBEAT`).
    Beat,
    /// The wrapper beats while it lives: the plain pattern, for compatibility.
    Timer,
}

impl LivenessMode {
    /// Every mode, in the order they are offered.
    pub const ALL: [LivenessMode; 5] = [
        LivenessMode::Auto,
        LivenessMode::Output,
        LivenessMode::Cpu,
        LivenessMode::Beat,
        LivenessMode::Timer,
    ];

    /// What the mode counts as progress, in one line (the front ends'
    /// help for each value).
    pub fn help(self) -> &'static str {
        match self {
            LivenessMode::Auto => {
                "New output, CPU use or an explicit beat, whichever shows progress"
            }
            LivenessMode::Output => "New output on stdout or stderr (and explicit beats)",
            LivenessMode::Cpu => "CPU time used by the job's process tree (and explicit beats)",
            LivenessMode::Beat => {
                "Only explicit beats (`jobwatch beat`, or touching `$JOBWATCH_HEARTBEAT`)"
            }
            LivenessMode::Timer => {
                "The wrapper beats while it lives: the plain pattern, for compatibility"
            }
        }
    }

    /// Whether new output counts as progress.
    pub fn counts_output(self) -> bool {
        matches!(self, LivenessMode::Auto | LivenessMode::Output)
    }
    /// Whether CPU use counts as progress.
    pub fn counts_cpu(self) -> bool {
        matches!(self, LivenessMode::Auto | LivenessMode::Cpu)
    }
    /// The lowercase word used in files and output.
    pub fn as_str(self) -> &'static str {
        match self {
            LivenessMode::Auto => "auto",
            LivenessMode::Output => "output",
            LivenessMode::Cpu => "cpu",
            LivenessMode::Beat => "beat",
            LivenessMode::Timer => "timer",
        }
    }
}

impl std::str::FromStr for LivenessMode {
    type Err = String;

    /// A mode from its word (`auto`, `output`, `cpu`, `beat`, `timer`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        LivenessMode::ALL
            .into_iter()
            .find(|m| m.as_str() == s)
            .ok_or_else(|| {
                format!("unknown liveness mode {s:?} (use auto, output, cpu, beat or timer)")
            })
    }
}

/// The supervision policy of one job, recorded so that any waiter applies
/// the same rules as the wrapper.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settings {
    /// How often the wrapper looks for progress and beats, in ms.
    pub heartbeat_ms: u64,
    /// No progress for this long means hung, in ms.
    pub stale_ms: u64,
    /// Wall-clock limit, in ms; `None` for none.
    pub timeout_ms: Option<u64>,
    /// Time between SIGTERM and SIGKILL, in ms.
    pub grace_ms: u64,
    /// What counts as progress.
    pub liveness: LivenessMode,
    /// How many times a failed, hung or timed-out attempt is run again.
    #[serde(default)]
    pub retries: u32,
    /// Delay before the first retry, in ms; it doubles for each further one.
    #[serde(default)]
    pub backoff_ms: u64,
    /// Longest delay between attempts, in ms.
    #[serde(default)]
    pub backoff_max_ms: u64,
}

impl Settings {
    /// The heartbeat interval.
    pub fn heartbeat(&self) -> Duration {
        Duration::from_millis(self.heartbeat_ms)
    }
    /// The stale threshold.
    pub fn stale(&self) -> Duration {
        Duration::from_millis(self.stale_ms)
    }
    /// The grace period.
    pub fn grace(&self) -> Duration {
        Duration::from_millis(self.grace_ms)
    }
    /// The time limit of one attempt, if any.
    pub fn timeout(&self) -> Option<Duration> {
        self.timeout_ms.map(Duration::from_millis)
    }
    /// How many attempts the job may take in all.
    pub fn max_attempts(&self) -> u32 {
        self.retries.saturating_add(1)
    }
}

/// One finished attempt of a job that may be retried.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Attempt {
    /// Its number, from 1.
    pub attempt: u32,
    /// When it started (RFC 3339, UTC).
    pub started_at: String,
    /// When it ended (RFC 3339, UTC).
    pub ended_at: String,
    /// Its run time in ms.
    pub duration_ms: u64,
    /// How it ended.
    pub outcome: Outcome,
    /// The command's exit code, when it exited by itself.
    pub exit_code: Option<i32>,
    /// The signal that ended the command, when one did.
    pub signal: Option<i32>,
    /// Why it ended this way, when jobwatch decided it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The delay before the next attempt, in ms, when there was one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backoff_ms: Option<u64>,
}

/// Who wrote a record's final outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Finalizer {
    /// The wrapper that ran the job.
    Wrapper,
    /// A waiter (or `kill`) that found the wrapper gone.
    Waiter,
}

/// `NAME.job.json`: written at start and once more at the end.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobRecord {
    /// Format version ([`RECORD_VERSION`]).
    pub version: u32,
    /// The job's name.
    pub name: String,
    /// Unique id of this run; also in the job's environment as
    /// `JOBWATCH_JOB_ID`, which is how escaped descendants are recognised.
    pub job_id: String,
    /// The command, as an argv list.
    pub command: Vec<String>,
    /// The command's working directory.
    pub cwd: String,
    /// Host name of the machine that runs the job.
    pub host: String,
    /// Kernel boot id at start: PIDs from another boot mean nothing.
    pub boot_id: String,
    /// PID of the wrapper (the supervising `jobwatch` process).
    pub wrapper_pid: i32,
    /// The wrapper's start time in clock ticks since boot (PID-reuse check).
    pub wrapper_start_time: u64,
    /// PID of the command, once spawned.
    pub child_pid: Option<i32>,
    /// The command's start time in clock ticks since boot (PID-reuse check).
    pub child_start_time: Option<u64>,
    /// The command's process group (equal to `child_pid`).
    pub pgid: Option<i32>,
    /// The supervision policy.
    pub settings: Settings,
    /// When the job started (RFC 3339, UTC).
    pub started_at: String,
    /// When the job started, in ms since the Unix epoch.
    pub started_unix_ms: u64,
    /// When the job ended (RFC 3339, UTC).
    pub ended_at: Option<String>,
    /// The command's exit code, when it exited by itself.
    pub exit_code: Option<i32>,
    /// The signal that ended the command, when one did.
    pub signal: Option<i32>,
    /// How it ended; `None` while running.
    pub outcome: Option<Outcome>,
    /// Run time in ms, at the end.
    pub duration_ms: Option<u64>,
    /// One line on why it ended this way, for hung, timeout, killed, lost.
    pub reason: Option<String>,
    /// Who wrote the final outcome.
    pub finalized_by: Option<Finalizer>,
    /// The circuit breaker this job reports its final outcome to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub breaker: Option<String>,
    /// The attempt running now (or the last one), from 1.
    #[serde(default = "first_attempt")]
    pub attempt: u32,
    /// How many attempts the job may take in all (`retries` + 1).
    #[serde(default = "first_attempt")]
    pub max_attempts: u32,
    /// The finished attempts, oldest first, when retries are allowed; the
    /// last one is added when the job ends. Earlier attempts' logs are in
    /// `attempts/NAME/K.log`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attempts: Vec<Attempt>,
    /// The wrapper's PID namespace (the inode of `/proc/self/ns/pid`):
    /// with `host` and `boot_id` it says where the recorded PIDs mean
    /// something. Two containers (or simulated hosts) may share a host name
    /// and a kernel, never a PID namespace. Absent in older records.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid_ns: Option<u64>,
}

fn first_attempt() -> u32 {
    1
}

impl JobRecord {
    /// The job's start as a `SystemTime`.
    pub fn started(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(self.started_unix_ms)
    }

    /// Fills in the end of the record.
    pub fn finish(&mut self, end: &JobEnd, by: Finalizer, now: SystemTime) {
        self.ended_at = Some(rfc3339(now));
        self.exit_code = end.exit_code;
        self.signal = end.signal;
        self.outcome = Some(end.outcome);
        self.reason = end.reason.clone();
        self.duration_ms = Some(
            now.duration_since(self.started())
                .unwrap_or_default()
                .as_millis() as u64,
        );
        self.finalized_by = Some(by);
    }
}

/// How a job ended, before it is written down.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobEnd {
    /// The verdict.
    pub outcome: Outcome,
    /// The exit code, if the command exited by itself.
    pub exit_code: Option<i32>,
    /// The terminating signal, if any.
    pub signal: Option<i32>,
    /// Why, in one line.
    pub reason: Option<String>,
}

/// `NAME.kill`: written by whoever kills a job other than its wrapper,
/// before the first signal, so the wrapper records the right outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KillRequest {
    /// The run it is meant for: a wrapper ignores a request for another run.
    pub job_id: String,
    /// The outcome to record: `killed`, `timeout` or `hung`.
    pub outcome: Outcome,
    /// One line on why.
    pub reason: String,
    /// When it was requested (RFC 3339, UTC).
    pub at: String,
    /// The requester's grace period, in ms: if the job still runs this long
    /// after its wrapper saw the request, the wrapper sends SIGKILL itself
    /// (the requester may be gone). Absent: the job's own `grace_ms`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grace_ms: Option<u64>,
    /// The requester found the command already exited (its wrapper had not
    /// recorded it yet): that exit came first, so the run keeps the exit's
    /// own outcome; the request only stops leftovers and further attempts.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub command_exited: bool,
}

impl KillRequest {
    /// The grace period the wrapper allows before it sends SIGKILL itself:
    /// the requester's, else the job's own (`default`).
    pub fn grace(&self, default: Duration) -> Duration {
        self.grace_ms.map_or(default, Duration::from_millis)
    }

    /// Whether the request decides the run's outcome: it was made while
    /// the command still ran.
    pub fn decides_outcome(&self) -> bool {
        !self.command_exited
    }
}

/// `now` as RFC 3339 with milliseconds, UTC.
pub fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

/// The label of a run archived at its start `t`, which sorts by start
/// time: `20261124T081500.123Z` (RFC 3339 with `-` and `:` removed).
pub fn archive_label(t: SystemTime) -> String {
    rfc3339(t).replace(['-', ':'], "")
}

/// Milliseconds since the Unix epoch.
pub fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).unwrap_or_default().as_millis() as u64
}
