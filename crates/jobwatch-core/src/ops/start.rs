//! Starting a job: in the foreground ([`foreground`]: this process is the
//! wrapper), or detached ([`detached`]: a wrapper of its own, in a new
//! session, which survives its starter), and the detached wrapper's own
//! side ([`serve_wrapper`]).
//!
//! Before anything of the job exists, the same checks run for both: the
//! spec's rules ([`RunSpec::validate`]), its working directory, and its
//! preflight checks (refused: exit 7, no job file written).
//!
//! # The handover
//!
//! A detached wrapper is this executable run as `jobwatch __wrapper`: its
//! argv carries no setting, no name and no store (`ps` shows nothing of the
//! job, and nothing secret). Its starter writes one JSON document, the
//! [`Handover`] (store and run spec), to the wrapper's stdin and closes it;
//! the wrapper answers with one JSON line on its stdout, a
//! [`WrapperReply`]: `{"started":{…}}` once the job runs and its state
//! exists, or `{"error":{"kind":…,"message":…,"exit_code":N}}`, a typed
//! refusal the starter relays as it is. A wrapper that dies without
//! answering leaves its starter to finish whatever it had begun: a run it
//! had spawned is finished as `lost` with its processes killed (exit 4),
//! one it had not is reported as never started.

use std::ffi::OsString;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::Context;
use crate::kill::{DETACHED_WRAPPER_ENV, JOB_ID_ENV, find_members};
use crate::model::{JobName, JobRecord};
use crate::preflight::{PreflightError, PreflightReport};
use crate::recover;
use crate::report::Started;
use crate::spec::{HANDOVER_VERSION, Handover, RunSpec, SpecError, StoreSpec};
use crate::store::{Store, StoreError};
use crate::supervise;
use crate::sys::proc::{self, ProcessId};
use crate::sys::stdio::warn;

/// The argument that makes the `jobwatch` binary a detached wrapper.
pub const WRAPPER_ARG: &str = "__wrapper";

/// How long a foreground run, its job over and its status written, waits
/// for a reader that takes none of the rest of the echo before it exits
/// anyway: a caller that reads the output only after the process exited
/// must not wait forever.
pub const ECHO_STALL_LIMIT: Duration = Duration::from_secs(2);

/// The most of a handover a wrapper reads: a spec is a few KiB.
const MAX_HANDOVER: u64 = 16 << 20;
/// The most of a wrapper's reply (or of its stderr) its starter reads.
const MAX_REPLY: u64 = 1 << 20;

/// The lean wrapper's file name: a binary of its own that `cargo install`
/// puts beside `jobwatch` (`src/bin/jobwatch-wrapper.rs`).
pub const WRAPPER_BINARY: &str = "jobwatch-wrapper";

/// How to start a detached wrapper: a program and its arguments (no
/// setting among them: the spec goes over the wrapper's stdin).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wrapper {
    /// The program.
    pub program: PathBuf,
    /// Its arguments.
    pub args: Vec<OsString>,
    /// Why this is not the lean wrapper, when it is not: for the front end
    /// to say once (every job's wrapper then maps the whole front end).
    pub fallback: Option<String>,
}

impl Wrapper {
    /// The wrapper a detached job gets: [`WRAPPER_BINARY`] in this
    /// executable's directory (symlinks resolved, so a linked `jobwatch`
    /// finds the wrapper installed with it), or else this executable as
    /// `jobwatch __wrapper`, with the reason in [`Wrapper::fallback`].
    pub fn beside_this_executable() -> Result<Wrapper, StartError> {
        let exe = std::env::current_exe().map_err(|source| StartError::Wrapper {
            program: PathBuf::from("jobwatch"),
            source,
        })?;
        Ok(Wrapper::beside(&exe, is_executable))
    }

    /// The wrapper beside `exe`, given how to tell an executable file.
    fn beside(exe: &Path, executable: impl Fn(&Path) -> bool) -> Wrapper {
        let lean = exe.with_file_name(WRAPPER_BINARY);
        if executable(&lean) {
            return Wrapper {
                program: lean,
                args: Vec::new(),
                fallback: None,
            };
        }
        let fallback = format!(
            "no executable {} beside {}: detached jobs run in `{} {WRAPPER_ARG}`, \
             which costs more memory per job (install both with `cargo install --path .`)",
            lean.display(),
            exe.display(),
            exe.display(),
        );
        Wrapper {
            program: exe.to_path_buf(),
            args: vec![WRAPPER_ARG.into()],
            fallback: Some(fallback),
        }
    }
}

/// Whether `path` is a file this process may execute.
fn is_executable(path: &Path) -> bool {
    path.is_file() && rustix::fs::access(path, rustix::fs::Access::EXEC_OK).is_ok()
}

/// Starting a job failed; nothing of it is left running (a run that a
/// dying wrapper had begun is finished: [`StartError::Lost`]).
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The spec breaks a rule; nothing was touched.
    #[error(transparent)]
    Spec(#[from] SpecError),
    /// The working directory is not a directory.
    #[error("cwd {} is not a directory", .0.display())]
    Cwd(PathBuf),
    /// The preflight config could not be read or parsed.
    #[error(transparent)]
    PreflightConfig(#[from] PreflightError),
    /// A preflight check failed: nothing was started or written.
    #[error("{name} not started: preflight failed ({})", config.display())]
    PreflightFailed {
        /// The job.
        name: JobName,
        /// The config file.
        config: PathBuf,
        /// The checks, the failing ones among them.
        report: Box<PreflightReport>,
    },
    /// The wrapper (this process, in the foreground) could not start the
    /// job: already running, breaker open, command not found, …
    #[error(transparent)]
    Supervise(#[from] supervise::StartError),
    /// The foreground job ran, but its end could not be recorded.
    #[error(transparent)]
    Finish(StoreError),
    /// A detached wrapper refused, and said why.
    #[error("{}", .0.message)]
    Refused(WrapperFailure),
    /// A detached wrapper died after spawning the command, before it
    /// reported the start: the run was finished as `lost`.
    #[error("{message}")]
    Lost {
        /// What happened, and what became of the run.
        message: String,
    },
    /// A detached wrapper ended before the job started, without a reply.
    #[error("{message}")]
    NotStarted {
        /// What the wrapper said on its stderr, if anything.
        message: String,
    },
    /// The detached wrapper could not be started.
    #[error("cannot start the detached wrapper {}: {source}", program.display())]
    Wrapper {
        /// Its program.
        program: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The job could not be queued (`--after`, `--slot`).
    #[error(transparent)]
    Queue(#[from] crate::queue::QueueError),
    /// The store lives in this process only: no other process can run a
    /// job of it.
    #[error("{store} cannot be handed to a detached wrapper")]
    NotDetachable {
        /// The store.
        store: String,
    },
}

/// What kind of refusal a detached wrapper reports: its exit code follows
/// from it ([`crate::exit_code::for_failure`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    /// The handover could not be read, or its spec breaks a rule.
    Handover,
    /// The store could not be opened.
    Store,
    /// A live wrapper already runs the name.
    AlreadyRunning,
    /// Another jobwatch process held the name for too long.
    Busy,
    /// The command was not found (as a shell says: 127).
    NotFound,
    /// The command could not be executed (126).
    NotExecutable,
    /// The previous run could not be retired.
    Previous,
    /// The breaker is open.
    BreakerOpen,
    /// The breaker could not be read or updated.
    Breaker,
    /// The name's queue does not admit the run.
    Queue,
    /// Another failure (I/O, state).
    Io,
    /// A kind this build does not know (a newer wrapper): its
    /// `exit_code` says the rest.
    #[serde(other)]
    Other,
}

impl FailureKind {
    /// The kind of a wrapper's own start error.
    pub fn of(e: &supervise::StartError) -> FailureKind {
        use supervise::StartError as E;
        match e {
            E::AlreadyRunning { .. } => FailureKind::AlreadyRunning,
            E::Busy { .. } => FailureKind::Busy,
            E::Spawn { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
                FailureKind::NotFound
            }
            E::Spawn { .. } => FailureKind::NotExecutable,
            E::Previous { .. } => FailureKind::Previous,
            E::BreakerOpen(_) => FailureKind::BreakerOpen,
            E::Breaker(_) => FailureKind::Breaker,
            E::Queue(_) => FailureKind::Queue,
            E::Store(_) | E::Io { .. } => FailureKind::Io,
        }
    }
}

/// A detached wrapper's refusal, as it reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{message}")]
pub struct WrapperFailure {
    /// What kind of refusal.
    pub kind: FailureKind,
    /// One line saying why.
    pub message: String,
    /// The exit code it stands for (for a reader that does not know the
    /// kind).
    pub exit_code: u8,
}

impl WrapperFailure {
    fn new(kind: FailureKind, message: impl std::fmt::Display) -> Self {
        Self {
            kind,
            message: message.to_string(),
            exit_code: crate::exit_code::for_failure(kind),
        }
    }
}

/// A detached wrapper's one line to its starter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WrapperReply {
    /// The job runs and its state exists.
    Started(Started),
    /// Nothing was started (or what was, is finished: see the kind).
    Error(WrapperFailure),
}

/// What must hold before anything of the job exists: the spec's rules, a
/// working directory, and passing preflight checks.
fn admit(spec: &RunSpec) -> Result<(), StartError> {
    spec.validate()?;
    if !spec.cwd.is_dir() {
        return Err(StartError::Cwd(spec.cwd.clone()));
    }
    if let Some(config) = spec.preflight_config() {
        let report = super::preflight::run(&config, &spec.env)?;
        if !report.passed {
            return Err(StartError::PreflightFailed {
                name: spec.name.clone(),
                config: spec.preflight.clone().unwrap_or(config),
                report: Box::new(report),
            });
        }
    }
    Ok(())
}

/// A foreground job that has ended.
#[derive(Debug)]
pub struct Foreground {
    /// Its final record.
    pub record: JobRecord,
    /// Its log.
    pub log: PathBuf,
    /// Whether the echo of its output (if any) reached the reader in full
    /// within [`ECHO_STALL_LIMIT`] of the end.
    pub echo_complete: bool,
}

/// Runs `spec` in this process until it ends (retries included), copying
/// its output to stdout when `spec.echo_output`; returns with the status
/// written and the name's claim released.
pub fn foreground(store: &dyn Store, spec: RunSpec) -> Result<Foreground, StartError> {
    admit(&spec)?;
    let supervisor = supervise::start(store, spec)?;
    let log = supervisor.log_path();
    let echo = supervisor.echo();
    // Returns with the status written and the claim released: nothing
    // below can change or delay the job's result.
    let record = supervisor.run_to_end().map_err(StartError::Finish)?;
    // Whoever ends a run starts the queued jobs waiting for it.
    crate::queue::dispatch(store);
    let echo_complete = echo.is_none_or(|echo| echo.finish(ECHO_STALL_LIMIT));
    Ok(Foreground {
        record,
        log,
        echo_complete,
    })
}

/// A detached job that has started, and its wrapper's process (a child of
/// this one until it exits).
#[derive(Debug)]
pub struct DetachedStart {
    /// What started.
    pub started: Started,
    /// The wrapper.
    pub wrapper: Child,
}

impl DetachedStart {
    /// Reaps the wrapper on a small thread of its own once it exits, for a
    /// long-lived starter (the MCP server) that would otherwise collect a
    /// zombie per job.
    pub fn reap_in_background(self) -> Started {
        let mut wrapper = self.wrapper;
        let reaper = std::thread::Builder::new()
            .name("jobwatch-reaper".into())
            .stack_size(64 * 1024)
            .spawn(move || {
                let _ = wrapper.wait();
            });
        // No thread to spare: the wrapper is reaped when this process ends.
        drop(reaper);
        self.started
    }
}

/// Starts `spec` as a detached job: a wrapper ([`Context::wrapper`]) in a
/// new session, immune to this terminal's hangup, handed the spec on its
/// stdin. Returns once the wrapper reports the job started; or its typed
/// refusal; or, when it died without a word, what became of what it had
/// begun (see the module docs).
pub fn detached(ctx: &Context<'_>, spec: &RunSpec) -> Result<DetachedStart, StartError> {
    detached_in(ctx, spec, None)
}

/// [`detached`], the wrapper given environment `env` instead of this
/// process's (a queued job's: the environment of the process that queued
/// it, not of the one whose dispatch starts it).
pub fn detached_in(
    ctx: &Context<'_>,
    spec: &RunSpec,
    env: Option<&[(OsString, OsString)]>,
) -> Result<DetachedStart, StartError> {
    admit(spec)?;
    let store = ctx.store.spec().ok_or_else(|| StartError::NotDetachable {
        store: ctx.store.describe(),
    })?;
    let handover = Handover {
        version: HANDOVER_VERSION,
        store,
        spec: RunSpec {
            echo_output: false,
            ..spec.clone()
        },
    };
    let mut child = spawn_wrapper(ctx.wrapper, &spec.cwd, env)?;
    // Our unreaped child cannot change identity: this tells its record from
    // any other run's.
    let wrapper = proc::identify(child.id() as i32);
    if let Some(mut stdin) = child.stdin.take() {
        // One write: serde_json writes a token at a time, and each write to
        // the pipe would wake the wrapper for a few bytes. A wrapper that
        // died already cannot read it: its silence says so.
        if let Ok(bytes) = serde_json::to_vec(&handover) {
            let _ = stdin.write_all(&bytes);
        }
    }
    let reply = child.stdout.take().and_then(read_reply);
    if let Some(WrapperReply::Started(started)) = reply {
        // The wrapper sends later diagnostics to the job's log.
        drop(child.stderr.take());
        return Ok(DetachedStart {
            started,
            wrapper: child,
        });
    }
    let mut said = String::new();
    if let Some(e) = child.stderr.take() {
        let _ = e.take(MAX_REPLY).read_to_string(&mut said);
    }
    // It has answered (or died): it exits, and is reaped here.
    let _ = child.wait();
    let said = said.trim().trim_start_matches("jobwatch: ").to_owned();
    let failure = match reply {
        Some(WrapperReply::Error(f)) => Some(f),
        _ => None,
    };
    let wrapper_said = failure
        .as_ref()
        .map_or(said.as_str(), |f| f.message.as_str());
    if let Some(lost) = wrapper.and_then(|w| {
        settle_unreported_start(
            ctx.store,
            &spec.name,
            spec.settings.grace(),
            w,
            wrapper_said,
        )
    }) {
        return Err(lost);
    }
    Err(match failure {
        Some(f) => StartError::Refused(with_version_hint(f, &ctx.wrapper.program)),
        None => StartError::NotStarted {
            message: if said.is_empty() {
                "the detached wrapper exited before the job started".to_owned()
            } else {
                said
            },
        },
    })
}

/// A wrapper that could not read the handover is likely another build's
/// (a `jobwatch-wrapper` left from an older install beside a newer
/// `jobwatch`): its refusal says so, and how to fix it.
fn with_version_hint(mut f: WrapperFailure, program: &Path) -> WrapperFailure {
    if f.kind == FailureKind::Handover {
        f.message = format!(
            "{} (is {} from another jobwatch version? install both again with \
             `cargo install --path .`)",
            f.message,
            program.display()
        );
    }
    f
}

/// The wrapper process: in the job's working directory (it makes its own
/// session), with pipes for the handover, the reply and its early diagnostics.
fn spawn_wrapper(
    w: &Wrapper,
    cwd: &Path,
    env: Option<&[(OsString, OsString)]>,
) -> Result<Child, StartError> {
    let mut cmd = Command::new(&w.program);
    if let Some(env) = env {
        cmd.env_clear().envs(env.iter().map(|(k, v)| (k, v)));
    }
    cmd.args(&w.args)
        .current_dir(cwd)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // The wrapper runs a job of its own: started from inside another
        // job, it must not carry that job's id (which would make it a
        // member of it), and it is marked as a wrapper, which other runs'
        // kills leave alone with everything below it.
        .env_remove(JOB_ID_ENV)
        .env(DETACHED_WRAPPER_ENV, "1");
    // No `pre_exec` here: the wrapper makes its own session (see
    // `serve_wrapper`), so std spawns it with vfork instead of a fork.
    cmd.spawn().map_err(|source| StartError::Wrapper {
        program: w.program.clone(),
        source,
    })
}

/// The wrapper's one line, if it sent a well-formed one.
fn read_reply(out: std::process::ChildStdout) -> Option<WrapperReply> {
    let mut line = String::new();
    BufReader::new(out.take(MAX_REPLY))
        .read_line(&mut line)
        .ok()?;
    serde_json::from_str(line.trim()).ok()
}

/// The wrapper ended without reporting the start. If it got as far as
/// writing its own record, its run must not stay as it is: it is finished
/// (as `lost`, its processes killed) and, when the command had been
/// spawned, reported as the lost run it is (exit 4) rather than as a job
/// that never started. `None` when the wrapper left no unfinished run.
fn settle_unreported_start(
    store: &dyn Store,
    name: &JobName,
    grace: Duration,
    wrapper: ProcessId,
    wrapper_said: &str,
) -> Option<StartError> {
    let record = store.snapshot(name).record.ok().flatten()?;
    // Only a record of this host's PID namespace can name our child: another
    // host's wrapper may have the same PID and start time in its own.
    let ours = record.wrapper_pid == wrapper.pid
        && record.wrapper_start_time == wrapper.start_time
        && proc::place_of_record(&record) == proc::Place::Here;
    if !ours || record.outcome.is_some() {
        return None;
    }
    // The command may run without the record naming it yet: its processes
    // carry the run's id.
    let spawned =
        record.child_pid.is_some() || !find_members(&recover::target_of(&record)).is_empty();
    let why = if spawned {
        "the detached wrapper died after starting the command, before it reported the start"
    } else {
        "the detached wrapper died before it started the command"
    };
    let finished = recover::claim_and_finish_lost(store, name, grace, why);
    if !spawned {
        return None;
    }
    let said = if wrapper_said.is_empty() {
        String::new()
    } else {
        format!(" ({wrapper_said})")
    };
    let what = match finished {
        Ok(_) => "the run is lost and its processes were killed".to_owned(),
        Err(e) => format!("the run is lost; finishing it failed: {e}"),
    };
    Some(StartError::Lost {
        message: format!(
            "job {name}: the detached wrapper died after starting the command{said}; {what}"
        ),
    })
}

/// Opens the store a handover names (the binary's: it links every store),
/// or says in one line why not.
pub type OpenStore = dyn Fn(&StoreSpec) -> Result<Box<dyn Store>, String>;

/// The detached wrapper's side (`jobwatch __wrapper`): reads the
/// [`Handover`] from `input`, opens its store with `open`, starts the job
/// and answers on stdout with one [`WrapperReply`] line; then lets go of
/// its starter's pipes and supervises the job to its end. Returns the
/// process's exit code: the refusal's, or 0 once the job has ended.
pub fn serve_wrapper(input: &mut dyn Read, open: &OpenStore) -> u8 {
    // Its own session first, before anything else: no terminal's SIGHUP or
    // Ctrl-C reaches the job, and other runs' kills know it as a run of its
    // own. The spawner leaves this to the wrapper so that it can spawn
    // with vfork (a `pre_exec` step would make it fork a copy of itself).
    crate::sys::child::leave_spawners_session();
    let handover = match read_handover(input) {
        Ok(h) => h,
        Err(why) => return refuse(WrapperFailure::new(FailureKind::Handover, why)),
    };
    let store = match open(&handover.store) {
        Ok(store) => store,
        Err(why) => return refuse(WrapperFailure::new(FailureKind::Store, why)),
    };
    let supervisor = match supervise::start(store.as_ref(), handover.spec) {
        Ok(s) => s,
        Err(e) => return refuse(WrapperFailure::new(FailureKind::of(&e), &e)),
    };
    let record = supervisor.record();
    let log = supervisor.log_path();
    reply(&WrapperReply::Started(Started {
        name: record.name.clone(),
        pid: record.child_pid.unwrap_or_default(),
        wrapper_pid: record.wrapper_pid,
        log: log.display().to_string(),
    }));
    crate::sys::child::release_stdio(&log);
    let ended = supervisor.run_to_end();
    // Whoever ends a run starts the queued jobs waiting for it (after its
    // commit: the claim is released, waiters have their answer).
    crate::queue::dispatch(store.as_ref());
    match ended {
        Ok(_) => crate::exit_code::SUCCESS,
        Err(e) => {
            // stderr is the job's log now.
            warn(&e);
            crate::exit_code::of(&StartError::Finish(e))
        }
    }
}

/// The handover on `input`: one JSON document, a spec that keeps the rules.
fn read_handover(input: &mut dyn Read) -> Result<Handover, String> {
    let mut bytes = Vec::new();
    input
        .take(MAX_HANDOVER)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read the run spec on stdin: {e}"))?;
    let handover: Handover =
        serde_json::from_slice(&bytes).map_err(|e| format!("malformed run spec on stdin: {e}"))?;
    if handover.version != HANDOVER_VERSION {
        return Err(format!(
            "run spec version {} is not the {HANDOVER_VERSION} this jobwatch reads",
            handover.version
        ));
    }
    handover.spec.validate().map_err(|e| e.to_string())?;
    Ok(handover)
}

/// Sends the refusal and returns its exit code.
fn refuse(failure: WrapperFailure) -> u8 {
    let code = crate::exit_code::of(&failure);
    reply(&WrapperReply::Error(failure));
    code
}

/// Writes the one line to stdout (the starter's pipe). A starter that went
/// away cannot read it; nothing else is to be done about that.
fn reply(r: &WrapperReply) {
    let line = serde_json::to_string(r).expect("a reply serializes");
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lean_wrapper_beside_the_executable_is_preferred() {
        let w = Wrapper::beside(Path::new("/opt/jw/jobwatch"), |p| {
            p == Path::new("/opt/jw/jobwatch-wrapper")
        });
        assert_eq!(w.program, Path::new("/opt/jw/jobwatch-wrapper"));
        assert!(w.args.is_empty());
        assert_eq!(w.fallback, None);
    }

    #[test]
    fn without_the_lean_wrapper_the_executable_itself_wraps_and_says_why() {
        let w = Wrapper::beside(Path::new("/opt/jw/jobwatch"), |_| false);
        assert_eq!(w.program, Path::new("/opt/jw/jobwatch"));
        assert_eq!(w.args, [WRAPPER_ARG]);
        let why = w.fallback.expect("a reason");
        assert!(why.contains("/opt/jw/jobwatch-wrapper"), "{why}");
        assert!(why.contains("cargo install --path ."), "{why}");
    }

    #[test]
    fn replies_are_one_tagged_line_each() {
        let started = WrapperReply::Started(Started {
            name: "j".into(),
            pid: 2,
            wrapper_pid: 1,
            log: "/x/j.log".into(),
        });
        assert_eq!(
            serde_json::to_string(&started).unwrap(),
            r#"{"started":{"name":"j","pid":2,"wrapper_pid":1,"log":"/x/j.log"}}"#
        );
        let refused = WrapperReply::Error(WrapperFailure::new(FailureKind::BreakerOpen, "open"));
        assert_eq!(
            serde_json::to_string(&refused).unwrap(),
            r#"{"error":{"kind":"breaker_open","message":"open","exit_code":6}}"#
        );
        // A kind from a newer wrapper still reads, with its code.
        let newer: WrapperReply = serde_json::from_str(
            r#"{"error":{"kind":"quota","message":"over quota","exit_code":9}}"#,
        )
        .unwrap();
        let WrapperReply::Error(f) = newer else {
            panic!("{newer:?}")
        };
        assert_eq!((f.kind, crate::exit_code::of(&f)), (FailureKind::Other, 9));
    }

    #[test]
    fn a_bad_handover_is_refused_naming_the_problem() {
        let e = read_handover(&mut &b"{not json"[..]).unwrap_err();
        assert!(e.starts_with("malformed run spec on stdin"), "{e}");
        let mut spec = RunSpec::new(
            JobName::parse("j").unwrap(),
            vec!["true".into()],
            PathBuf::from("/"),
        );
        spec.settings.heartbeat_ms = spec.settings.stale_ms + 1;
        let h = Handover {
            version: HANDOVER_VERSION,
            store: StoreSpec::File { dir: "/x".into() },
            spec,
        };
        let json = serde_json::to_vec(&h).unwrap();
        let e = read_handover(&mut &json[..]).unwrap_err();
        assert!(e.contains("must not be longer than stale"), "{e}");
    }
}
