//! What a run is, typed once: the [`RunSpec`] (command, working directory,
//! environment, settings, breaker, preflight) that a front end builds from
//! its own input (clap flags, MCP tool parameters, a batch plan), the core
//! validates ([`RunSpec::validate`]) and a detached wrapper receives, whole,
//! as JSON on its stdin ([`Handover`]): no setting is ever rendered as a
//! flag again, and nothing of the environment appears in any argv.
//!
//! Also here: the values both front ends parse the same way (durations,
//! with errors that say what was wrong and what would be right), `run`'s
//! defaults, and [`StoreSpec`], which names where state lives so that
//! another process (the wrapper) opens the same store.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::breaker::BreakerSpec;
use crate::model::{JobName, LivenessMode, Settings};
use crate::store::Store;

/// The longest duration any flag or MCP argument accepts: 100 years (of
/// 365.25 days, as `100y` reads). Far inside every representation jobwatch
/// puts a duration in (milliseconds in a u64 in the record, seconds in an
/// i64 in the clocks, a four-digit year in a timestamp), so no deadline or
/// sum of durations can overflow; a longer one is refused rather than cut
/// to something short.
pub const MAX_DURATION: Duration = Duration::from_secs(100 * 31_557_600);

/// `run`'s default stale threshold (`--stale`).
pub const DEFAULT_STALE: Duration = Duration::from_secs(60);
/// `run`'s default heartbeat interval (`--heartbeat`).
pub const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(10);
/// `run`'s default grace between SIGTERM and SIGKILL (`--grace`).
pub const DEFAULT_GRACE: Duration = Duration::from_secs(5);
/// `run`'s default delay before the first retry (`--backoff`).
pub const DEFAULT_BACKOFF: Duration = Duration::from_secs(1);
/// `run`'s default longest delay between attempts (`--backoff-max`).
pub const DEFAULT_BACKOFF_MAX: Duration = Duration::from_secs(300);

/// A duration like `500ms`, `10s`, `5m`, `1h 30m`; zero allowed, at most
/// [`MAX_DURATION`].
pub fn duration(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s.trim())
        .map_err(|e| format!("invalid duration {s:?}: {e} (use e.g. 500ms, 10s, 5m)"))?;
    if d > MAX_DURATION {
        return Err(format!(
            "invalid duration {s:?}: too long (at most 100 years)"
        ));
    }
    Ok(d)
}

/// A duration that must be longer than zero.
pub fn positive_duration(s: &str) -> Result<Duration, String> {
    match duration(s)? {
        d if d.is_zero() => Err(format!("invalid duration {s:?}: must be longer than zero")),
        d => Ok(d),
    }
}

/// A duration as whole milliseconds, for the record. Durations from
/// [`duration`] always fit; anything longer saturates rather than wraps.
pub fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The settings a run gets for everything it was not told, as `jobwatch
/// run` documents them. The heartbeat never exceeds the stale threshold:
/// a front end that lets its caller set only `stale` passes it through
/// [`Settings::with_stale`].
pub fn default_settings() -> Settings {
    Settings {
        heartbeat_ms: ms(DEFAULT_HEARTBEAT),
        stale_ms: ms(DEFAULT_STALE),
        timeout_ms: None,
        grace_ms: ms(DEFAULT_GRACE),
        liveness: LivenessMode::Auto,
        retries: 0,
        backoff_ms: ms(DEFAULT_BACKOFF),
        backoff_max_ms: ms(DEFAULT_BACKOFF_MAX),
    }
}

impl Settings {
    /// These settings with stale threshold `stale`, the heartbeat shrunk to
    /// fit within it (for a caller that cannot set the heartbeat).
    pub fn with_stale(self, stale: Duration) -> Settings {
        Settings {
            stale_ms: ms(stale),
            heartbeat_ms: self.heartbeat_ms.min(ms(stale)),
            ..self
        }
    }
}

/// What to run, and how: built once by a front end, validated by
/// [`RunSpec::validate`], handed to the wrapper as it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunSpec {
    /// The job's name.
    pub name: JobName,
    /// The command and its arguments (any bytes but NUL).
    #[serde(with = "os::many")]
    pub command: Vec<OsString>,
    /// The working directory of the command (absolute).
    #[serde(with = "os::path")]
    pub cwd: PathBuf,
    /// Variables added to the command's environment (over the wrapper's
    /// own, which is its starter's).
    #[serde(default, with = "os::pairs", skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<(OsString, OsString)>,
    /// Supervision policy.
    pub settings: Settings,
    /// The circuit breaker that admits this job and counts its outcome.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub breaker: Option<BreakerSpec>,
    /// The preflight checks to pass before anything starts (a config file,
    /// relative to `cwd`). Run by whoever starts the job, before a wrapper
    /// exists: a wrapper never runs them.
    #[serde(
        default,
        with = "os::opt_path",
        skip_serializing_if = "Option::is_none"
    )]
    pub preflight: Option<PathBuf>,
    /// Copy the command's output to stdout as well (a foreground run's; a
    /// detached wrapper has no terminal, so it is never handed over).
    #[serde(skip)]
    pub echo_output: bool,
    /// A queued job's admission (`run --after`/`--slot`): the run it is,
    /// and the queue that granted it its turn. The wrapper checks it under
    /// the name's claim before anything else ([`crate::queue`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ticket: Option<Ticket>,
}

/// What a queued job starts with: its run's `job_id`, fixed when it was
/// queued (waiters are bound to it meanwhile), and the queue (a slot group,
/// or [`crate::queue::AFTER_ONLY`]) whose turn it holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ticket {
    /// The run's `job_id`.
    pub job_id: String,
    /// The queue's key.
    pub queue: String,
}

impl RunSpec {
    /// A spec of `command` as job `name` in `cwd` with the default settings,
    /// no extra environment, no breaker and no preflight.
    pub fn new(name: JobName, command: Vec<OsString>, cwd: PathBuf) -> Self {
        Self {
            name,
            command,
            cwd,
            env: Vec::new(),
            settings: default_settings(),
            breaker: None,
            preflight: None,
            echo_output: false,
            ticket: None,
        }
    }

    /// Checks everything that can be checked without touching the system:
    /// a command, no NUL byte anywhere a process would be given it,
    /// environment names a process can take, an absolute working
    /// directory, and settings in range (positive stale and heartbeat, the
    /// heartbeat within the stale threshold, no duration past
    /// [`MAX_DURATION`]). The one place these rules live: the CLI, the MCP
    /// server, a batch and the wrapper all call it.
    pub fn validate(&self) -> Result<(), SpecError> {
        if self.command.is_empty() {
            return Err(SpecError::EmptyCommand);
        }
        for (i, arg) in self.command.iter().enumerate() {
            no_nul(arg, || format!("command[{i}]"))?;
        }
        no_nul(self.cwd.as_os_str(), || "cwd".to_owned())?;
        if !self.cwd.is_absolute() {
            return Err(SpecError::RelativeCwd(self.cwd.clone()));
        }
        if let Some(p) = &self.preflight {
            no_nul(p.as_os_str(), || "preflight config".to_owned())?;
        }
        for (key, value) in &self.env {
            env_entry(key, value)?;
        }
        if let Some(t) = &self.ticket {
            crate::queue::check_ticket(t)?;
        }
        check_settings(&self.settings)
    }

    /// The preflight config file, if any, as seen from `cwd`.
    pub fn preflight_config(&self) -> Option<PathBuf> {
        self.preflight.as_ref().map(|p| self.cwd.join(p))
    }
}

/// Settings a wrapper can run with: positive heartbeat and stale, the
/// heartbeat within the stale threshold, nothing past [`MAX_DURATION`].
pub fn check_settings(s: &Settings) -> Result<(), SpecError> {
    let max = ms(MAX_DURATION);
    let named = [
        ("heartbeat", Some(s.heartbeat_ms)),
        ("stale", Some(s.stale_ms)),
        ("timeout", s.timeout_ms),
        ("grace", Some(s.grace_ms)),
        ("backoff", Some(s.backoff_ms)),
        ("backoff_max", Some(s.backoff_max_ms)),
    ];
    for (what, value) in named {
        match value {
            Some(v) if v > max => return Err(SpecError::TooLong { what }),
            Some(0) if matches!(what, "heartbeat" | "stale" | "timeout") => {
                return Err(SpecError::Zero { what });
            }
            _ => {}
        }
    }
    if s.heartbeat_ms > s.stale_ms {
        return Err(SpecError::HeartbeatOverStale {
            heartbeat: s.heartbeat(),
            stale: s.stale(),
        });
    }
    Ok(())
}

fn no_nul(s: &OsStr, what: impl FnOnce() -> String) -> Result<(), SpecError> {
    use std::os::unix::ffi::OsStrExt;
    if s.as_bytes().contains(&0) {
        return Err(SpecError::Nul(what()));
    }
    Ok(())
}

/// Why `key=value` cannot be put in a process's environment, if it cannot.
fn env_entry(key: &OsStr, value: &OsStr) -> Result<(), SpecError> {
    use std::os::unix::ffi::OsStrExt;
    let problem = if key.is_empty() {
        EnvProblem::EmptyName
    } else if key.as_bytes().contains(&b'=') {
        EnvProblem::EqualsInName
    } else if key.as_bytes().contains(&0) {
        EnvProblem::NulInName
    } else if value.as_bytes().contains(&0) {
        EnvProblem::NulInValue
    } else {
        return Ok(());
    };
    Err(SpecError::Env {
        key: key.to_string_lossy().into_owned(),
        problem,
    })
}

/// A run spec that no wrapper may run; nothing was started.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    /// No command was given.
    #[error("command is empty: give the program and its arguments")]
    EmptyCommand,
    /// An argument, path or variable holds a NUL byte (it names which).
    #[error("{0} holds a NUL byte, which no process can be given; remove it")]
    Nul(String),
    /// An environment entry no process can take.
    #[error("env key {key:?} {problem}")]
    Env {
        /// The variable's name (lossy).
        key: String,
        /// What is wrong with it.
        problem: EnvProblem,
    },
    /// The working directory is relative (a front end makes it absolute
    /// where its caller stands).
    #[error("cwd {} is not an absolute path", .0.display())]
    RelativeCwd(PathBuf),
    /// The heartbeat is longer than the stale threshold: the wrapper would
    /// call its job hung between two looks.
    #[error(
        "heartbeat ({}) must not be longer than stale ({})",
        humantime::format_duration(*heartbeat),
        humantime::format_duration(*stale)
    )]
    HeartbeatOverStale {
        /// The heartbeat interval.
        heartbeat: Duration,
        /// The stale threshold.
        stale: Duration,
    },
    /// A duration past [`MAX_DURATION`].
    #[error("{what} is too long (at most 100 years)")]
    TooLong {
        /// Which setting.
        what: &'static str,
    },
    /// A duration that must be longer than zero is zero.
    #[error("{what} must be longer than zero")]
    Zero {
        /// Which setting.
        what: &'static str,
    },
    /// A queued job's ticket is malformed (a wrapper was handed a spec no
    /// jobwatch writes).
    #[error("malformed queue ticket: {0}")]
    Ticket(String),
}

/// What is wrong with an environment entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EnvProblem {
    /// The name is empty.
    #[error("is empty: give the variable a name")]
    EmptyName,
    /// The name holds `=`.
    #[error("holds '=', which would end the name there: use a name without '='")]
    EqualsInName,
    /// The name holds a NUL byte.
    #[error("holds a NUL byte, which no variable name can: remove it")]
    NulInName,
    /// The value holds a NUL byte.
    #[error("has a value holding a NUL byte, which no variable can: remove it")]
    NulInValue,
}

/// Where state lives, as another process is told to open it: the jobs
/// directory (`--dir`), or an etcd cluster (`--store etcd://…`,
/// docs/multi-host.md). The whole spec travels on a pipe (the handover),
/// never in an argv: what it holds is safe from `ps`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum StoreSpec {
    /// The jobs directory at `dir` (absolute, as opened).
    File {
        /// The directory.
        #[serde(with = "os::path")]
        dir: PathBuf,
    },
    /// An etcd cluster (a store of the `jobwatch-etcd` crate, opened by the
    /// binary that links it).
    Etcd(EtcdSpec),
}

impl StoreSpec {
    /// Opens the store this names, when the core alone can: the jobs
    /// directory. A store of another crate (etcd) is opened by the binary
    /// that links it (`src/wrapper.rs`); here it is one line saying so.
    pub fn open(&self) -> Result<Box<dyn Store>, String> {
        match self {
            StoreSpec::File { dir } => match crate::store::file::FileStore::open(Some(dir)) {
                Ok(store) => Ok(Box::new(store)),
                Err(e) => Err(e.to_string()),
            },
            StoreSpec::Etcd(e) => Err(format!(
                "--store {}: this jobwatch was built without etcd support",
                e.url
            )),
        }
    }
}

/// An etcd store as a wrapper opens it: everything its starter resolved
/// from flags and the environment, so that the wrapper reads nothing of
/// its own environment to find its store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EtcdSpec {
    /// The cluster and the namespace, as `--store` takes them (never with
    /// credentials): `etcd://HOST:PORT[,HOST:PORT…]/NAMESPACE`, or
    /// `etcds://…` for TLS.
    pub url: String,
    /// This host's jobs directory: its jobs' logs are under
    /// `DIR/etcd/NAMESPACE/` (absolute).
    #[serde(with = "os::path")]
    pub dir: PathBuf,
    /// `etcds://`: the CA certificate that signed the members' (absolute).
    #[serde(
        default,
        with = "os::opt_path",
        skip_serializing_if = "Option::is_none"
    )]
    pub ca: Option<PathBuf>,
    /// `etcds://`: a client certificate (absolute).
    #[serde(
        default,
        with = "os::opt_path",
        skip_serializing_if = "Option::is_none"
    )]
    pub cert: Option<PathBuf>,
    /// `etcds://`: its private key (absolute).
    #[serde(
        default,
        with = "os::opt_path",
        skip_serializing_if = "Option::is_none"
    )]
    pub key: Option<PathBuf>,
    /// The user, for clusters with auth enabled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// The user's password. It travels in the handover on the wrapper's
    /// stdin (a pipe: never an argv, never the environment of the wrapper
    /// or its job); `Debug` never shows it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<Secret>,
    /// A wrapper cut off from the cluster kills its job before its lease
    /// can expire (`false`: `--no-self-fence`, the job runs on).
    pub self_fence: bool,
}

/// A secret (a password): serialized as the plain string it is (it only
/// ever travels on a pipe), never shown by `Debug`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// A secret holding `s`.
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }

    /// The secret itself, for the one place that uses it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<hidden>")
    }
}

/// The version of [`Handover`] this build writes and reads.
pub const HANDOVER_VERSION: u32 = 1;

/// What a detached wrapper receives on its stdin, once: where state lives
/// and what to run. Its argv carries no setting.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Handover {
    /// [`HANDOVER_VERSION`].
    pub version: u32,
    /// The store to open.
    pub store: StoreSpec,
    /// The run.
    pub spec: RunSpec,
}

/// `Option<Duration>` as whole milliseconds (`cooldown_ms`).
pub(crate) mod opt_ms {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_some(&super::ms(*d)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        Ok(Option::<u64>::deserialize(d)?.map(Duration::from_millis))
    }
}

/// `OsString`s (arguments, paths, variables may be any bytes but NUL) in
/// JSON: a string when they are UTF-8, else `{"bytes": [...]}`. Hand-made
/// rather than serde's own `OsString` form (`{"Unix": [...]}` for every
/// value) so that the usual case reads as what it is.
pub(crate) mod os {
    use std::ffi::OsString;
    use std::fmt;
    use std::os::unix::ffi::{OsStrExt, OsStringExt};
    use std::path::PathBuf;

    use serde::de::{self, MapAccess, Visitor};
    use serde::ser::SerializeMap;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    /// One value on the wire.
    pub struct Wire(pub OsString);

    impl Serialize for Wire {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            match self.0.to_str() {
                Some(text) => s.serialize_str(text),
                None => {
                    let mut m = s.serialize_map(Some(1))?;
                    m.serialize_entry("bytes", self.0.as_bytes())?;
                    m.end()
                }
            }
        }
    }

    impl<'de> Deserialize<'de> for Wire {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl<'de> Visitor<'de> for V {
                type Value = Wire;
                fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                    f.write_str("a string, or {\"bytes\": [...]}")
                }
                fn visit_str<E: de::Error>(self, s: &str) -> Result<Wire, E> {
                    Ok(Wire(OsString::from(s)))
                }
                fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Wire, A::Error> {
                    let mut bytes: Option<Vec<u8>> = None;
                    while let Some(key) = m.next_key::<String>()? {
                        if key != "bytes" || bytes.is_some() {
                            return Err(de::Error::unknown_field(&key, &["bytes"]));
                        }
                        bytes = Some(m.next_value()?);
                    }
                    let bytes = bytes.ok_or_else(|| de::Error::missing_field("bytes"))?;
                    Ok(Wire(OsString::from_vec(bytes)))
                }
            }
            d.deserialize_any(V)
        }
    }

    pub mod many {
        use super::*;

        pub fn serialize<S: Serializer>(v: &[OsString], s: S) -> Result<S::Ok, S::Error> {
            s.collect_seq(v.iter().map(|o| Wire(o.clone())))
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<OsString>, D::Error> {
            Ok(Vec::<Wire>::deserialize(d)?
                .into_iter()
                .map(|w| w.0)
                .collect())
        }
    }

    pub mod pairs {
        use super::*;

        pub fn serialize<S: Serializer>(
            v: &[(OsString, OsString)],
            s: S,
        ) -> Result<S::Ok, S::Error> {
            s.collect_seq(v.iter().map(|(k, v)| (Wire(k.clone()), Wire(v.clone()))))
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(
            d: D,
        ) -> Result<Vec<(OsString, OsString)>, D::Error> {
            Ok(Vec::<(Wire, Wire)>::deserialize(d)?
                .into_iter()
                .map(|(k, v)| (k.0, v.0))
                .collect())
        }
    }

    pub mod path {
        use super::*;

        pub fn serialize<S: Serializer>(p: &std::path::Path, s: S) -> Result<S::Ok, S::Error> {
            Wire(p.as_os_str().to_owned()).serialize(s)
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<PathBuf, D::Error> {
            Ok(PathBuf::from(Wire::deserialize(d)?.0))
        }
    }

    pub mod opt_path {
        use super::*;

        pub fn serialize<S: Serializer>(p: &Option<PathBuf>, s: S) -> Result<S::Ok, S::Error> {
            match p {
                Some(p) => s.serialize_some(&Wire(p.as_os_str().to_owned())),
                None => s.serialize_none(),
            }
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<PathBuf>, D::Error> {
            Ok(Option::<Wire>::deserialize(d)?.map(|w| PathBuf::from(w.0)))
        }
    }
}

/// The working directory a front end's caller stands in, for a spec's
/// `cwd`; `.` (still usable) when it was removed meanwhile.
pub fn current_dir() -> PathBuf {
    std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."))
}

/// `dir` as an absolute path, taken from where this process stands.
pub fn absolute(dir: &Path) -> PathBuf {
    std::path::absolute(dir).unwrap_or_else(|_| dir.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::breaker::{BreakerKey, PolicyUpdate};
    use std::os::unix::ffi::OsStringExt;

    #[test]
    fn durations_need_a_known_unit() {
        assert_eq!(duration("1500ms").unwrap(), Duration::from_millis(1500));
        assert_eq!(duration("1m 30s").unwrap(), Duration::from_secs(90));
        for bad in ["10x", "", "ten seconds", "-1s", "10"] {
            assert!(duration(bad).is_err(), "{bad}");
        }
        assert!(positive_duration("0s").is_err());
    }

    #[test]
    fn durations_stop_at_100_years() {
        assert_eq!(duration("100y").unwrap(), MAX_DURATION);
        for long in ["100y 1ms", "18446744073709552s", "9223372036854775807s"] {
            let e = duration(long).unwrap_err();
            assert!(e.contains("too long (at most 100 years)"), "{e}");
        }
        assert_eq!(ms(MAX_DURATION), 3_155_760_000_000);
        assert_eq!(ms(Duration::MAX), u64::MAX, "saturates, never wraps");
    }

    fn spec() -> RunSpec {
        RunSpec::new(
            JobName::parse("j").unwrap(),
            vec!["true".into()],
            PathBuf::from("/"),
        )
    }

    #[test]
    fn a_spec_survives_the_handover_whole() {
        let mut s = spec();
        s.command = vec!["printf".into(), OsString::from_vec(vec![0xff, b'x'])];
        s.env = vec![("TOKEN".into(), "s3cret".into())];
        s.settings.timeout_ms = Some(1_500);
        s.breaker = Some(BreakerSpec {
            key: BreakerKey::parse("k").unwrap(),
            policy: PolicyUpdate {
                max_failures: Some(2),
                cooldown: Some(Duration::from_secs(60)),
            },
        });
        s.preflight = Some("ci/jobwatch.toml".into());
        s.echo_output = true;
        let h = Handover {
            version: HANDOVER_VERSION,
            store: StoreSpec::File { dir: "/x".into() },
            spec: s.clone(),
        };
        let json = serde_json::to_string(&h).unwrap();
        assert!(
            json.contains(r#""command":["printf",{"bytes":[255,120]}]"#),
            "{json}"
        );
        assert!(json.contains(r#""cooldown_ms":60000"#), "{json}");
        assert!(json.contains(r#""store":{"file":{"dir":"/x"}}"#), "{json}");
        let back: Handover = serde_json::from_str(&json).unwrap();
        s.echo_output = false;
        assert_eq!(back.spec, s, "everything but the echo, which is never sent");
        assert_eq!(back.store, h.store);
    }

    #[test]
    fn an_etcd_store_survives_the_handover_with_its_password_which_debug_never_shows() {
        let store = StoreSpec::Etcd(EtcdSpec {
            url: "etcds://h1:2379,h2:2379/ci".into(),
            dir: "/jobs".into(),
            ca: Some("/tls/ca.pem".into()),
            cert: Some("/tls/c.pem".into()),
            key: Some("/tls/c.key".into()),
            user: Some("root".into()),
            password: Some(Secret::new("s3cret")),
            self_fence: false,
        });
        let h = Handover {
            version: HANDOVER_VERSION,
            store: store.clone(),
            spec: spec(),
        };
        let json = serde_json::to_string(&h).unwrap();
        let back: Handover = serde_json::from_str(&json).unwrap();
        assert_eq!(back.store, store);
        assert!(json.contains(r#""password":"s3cret""#), "{json}");
        assert!(!format!("{h:?}").contains("s3cret"), "Debug hides it");
        // No core-only opener: one line naming the URL, never the password.
        let e = store.open().unwrap_err();
        assert!(
            e.contains("etcds://h1:2379,h2:2379/ci") && !e.contains("s3cret"),
            "{e}"
        );
    }

    #[test]
    fn a_handed_over_name_or_key_is_validated_again() {
        let json = serde_json::to_string(&spec())
            .unwrap()
            .replace(r#""name":"j""#, r#""name":"../etc""#);
        let e = serde_json::from_str::<RunSpec>(&json).unwrap_err();
        assert!(e.to_string().contains("invalid job name"), "{e}");
    }

    #[test]
    fn the_spec_rules_name_what_to_fix() {
        assert_eq!(spec().validate(), Ok(()));
        let bad = |f: &dyn Fn(&mut RunSpec)| {
            let mut s = spec();
            f(&mut s);
            s.validate().unwrap_err().to_string()
        };
        assert_eq!(
            bad(&|s| s.command.clear()),
            "command is empty: give the program and its arguments"
        );
        assert!(bad(&|s| s.command.push("a\0b".into())).starts_with("command[1] holds a NUL"));
        assert!(bad(&|s| s.cwd = "rel".into()).contains("not an absolute path"));
        for (key, value, why) in [
            ("", "v", "is empty"),
            ("A=B", "v", "holds '='"),
            ("A\0B", "v", "holds a NUL byte"),
            ("OK", "a\0b", "has a value holding a NUL byte"),
        ] {
            let e = bad(&|s| s.env.push((key.into(), value.into())));
            assert!(e.starts_with(&format!("env key {key:?} {why}")), "{e}");
        }
        assert_eq!(
            bad(&|s| s.settings.heartbeat_ms = 120_000),
            "heartbeat (2m) must not be longer than stale (1m)"
        );
        assert_eq!(
            bad(&|s| s.settings.stale_ms = 0),
            "stale must be longer than zero"
        );
        assert!(bad(&|s| s.settings.grace_ms = u64::MAX).contains("grace is too long"));
    }

    /// (Moved with the rule from the MCP server's `start`.)
    #[test]
    fn env_entries_no_process_can_take_are_named() {
        let env_entry = |k: &str, v: &str| {
            super::env_entry(OsStr::new(k), OsStr::new(v)).map_err(|e| e.to_string())
        };
        assert!(env_entry("PATH", "/bin").is_ok());
        assert!(env_entry("EMPTY", "").is_ok());
        for (key, value) in [("", "v"), ("A=B", "v"), ("A\0B", "v"), ("OK", "a\0b")] {
            let e = env_entry(key, value).unwrap_err();
            assert!(e.starts_with(&format!("env key {key:?} ")), "{e}");
        }
    }

    #[test]
    fn a_short_stale_shrinks_the_default_heartbeat() {
        let s = default_settings().with_stale(Duration::from_secs(2));
        assert_eq!((s.stale_ms, s.heartbeat_ms), (2_000, 2_000));
        let s = default_settings().with_stale(Duration::from_secs(120));
        assert_eq!((s.stale_ms, s.heartbeat_ms), (120_000, 10_000));
    }
}
