//! The probes: one function per kind, each bounded by the check's timeout
//! and each answering pass or fail with a short detail for the report.

use std::ffi::OsString;
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::path::Path;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::config::{CommandLine, Probe};
use crate::sys::exec::{Ending, is_executable, run_bounded};

/// Longest detail string of a check, in characters: the report goes to an
/// agent, so it must stay small whatever a command printed.
pub const MAX_DETAIL: usize = 240;

/// The result of one probe (or of a fix).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probed {
    /// Whether the probe passed.
    pub passed: bool,
    /// What was found, briefly.
    pub detail: String,
}

impl Probed {
    fn pass(detail: impl Into<String>) -> Self {
        Probed {
            passed: true,
            detail: detail.into(),
        }
    }

    fn fail(detail: impl Into<String>) -> Self {
        Probed {
            passed: false,
            detail: detail.into(),
        }
    }
}

/// Where commands run: a directory, and variables added to this process's
/// environment (a job's own, when its start runs the checks).
#[derive(Debug, Clone, Copy)]
pub struct Place<'a> {
    /// The directory (the config file's).
    pub dir: &'a Path,
    /// Variables added to the environment.
    pub env: &'a [(OsString, OsString)],
}

/// Runs one probe from `base_dir` with `timeout` (the tests' way in).
#[cfg(test)]
pub fn probe(p: &Probe, base_dir: &Path, timeout: Duration) -> Probed {
    probe_in(
        p,
        Place {
            dir: base_dir,
            env: &[],
        },
        timeout,
    )
}

/// Runs one probe from `place` with `timeout`.
pub fn probe_in(p: &Probe, place: Place<'_>, timeout: Duration) -> Probed {
    let base_dir = place.dir;
    match p {
        Probe::Command(cmd) => command(cmd, place, timeout),
        Probe::Tcp { address } => tcp(address, timeout),
        Probe::Http { url } => http(url, timeout),
        Probe::Path {
            path,
            executable,
            dir,
        } => path_probe(&base_dir.join(path), path, *executable, *dir, timeout),
    }
}

/// Runs a command from `place`: passes when it exits 0 within `timeout`;
/// on timeout its process group is killed. Used for fixes too.
pub fn command(cmd: &CommandLine, place: Place<'_>, timeout: Duration) -> Probed {
    let mut c = cmd.to_command();
    c.current_dir(place.dir)
        .envs(place.env.iter().map(|(k, v)| (k, v)));
    let bounded = match run_bounded(c, timeout) {
        Ok(b) => b,
        Err(e) => return Probed::fail(format!("cannot run `{}`: {e}", clip(&cmd.to_string(), 60))),
    };
    let tail = last_line(&bounded.output_tail);
    let with_tail = |head: String| match tail {
        Some(t) => format!("{head}: {t}"),
        None => head,
    };
    match bounded.ending {
        Ending::Exited(0) => Probed::pass(with_tail("exit 0".into())),
        Ending::Exited(code) => Probed::fail(with_tail(format!("exit {code}"))),
        Ending::Signalled(sig) => Probed::fail(with_tail(format!("killed by signal {sig}"))),
        Ending::TimedOut => Probed::fail(with_tail(format!(
            "timed out after {} (process group killed)",
            human(timeout)
        ))),
    }
}

/// Passes when `address` (`host:port`) accepts a TCP connection within
/// `timeout`, name resolution included; each resolved address is tried in
/// turn with what is left of the time.
pub fn tcp(address: &str, timeout: Duration) -> Probed {
    let deadline = Instant::now() + timeout;
    let owned = address.to_owned();
    // getaddrinfo cannot be cancelled: it runs on a helper thread so that a
    // hanging resolver costs the check its timeout, not more.
    let resolved = within(timeout, move || {
        owned
            .to_socket_addrs()
            .map(|a| a.collect::<Vec<SocketAddr>>())
    });
    let addrs = match resolved {
        None => {
            return Probed::fail(format!(
                "cannot resolve {address} within {}",
                human(timeout)
            ));
        }
        Some(Err(e)) => return Probed::fail(format!("cannot resolve {address}: {e}")),
        Some(Ok(a)) if a.is_empty() => {
            return Probed::fail(format!("{address} resolves to no address"));
        }
        Some(Ok(a)) => a,
    };
    let mut last_error = None;
    for addr in &addrs {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        match TcpStream::connect_timeout(addr, left) {
            Ok(_) => return Probed::pass(format!("connected to {addr}")),
            Err(e) => last_error = Some((addr, e)),
        }
    }
    match last_error {
        Some((addr, e)) if e.kind() != std::io::ErrorKind::TimedOut => {
            Probed::fail(format!("{addr}: {e}"))
        }
        _ => Probed::fail(format!(
            "no connection to {address} within {}",
            human(timeout)
        )),
    }
}

/// Passes when a GET of `url` answers 2xx within `timeout` (the whole
/// exchange, redirects included; the body is not read).
pub fn http(url: &str, timeout: Duration) -> Probed {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .http_status_as_error(false)
        .build()
        .into();
    match agent.get(url).call() {
        Ok(resp) => {
            let status = resp.status();
            let text = format!(
                "HTTP {}{}",
                status.as_u16(),
                status
                    .canonical_reason()
                    .map(|r| format!(" {r}"))
                    .unwrap_or_default()
            );
            if status.is_success() {
                Probed::pass(text)
            } else {
                Probed::fail(text)
            }
        }
        Err(ureq::Error::Timeout(_)) => {
            Probed::fail(format!("no answer within {}", human(timeout)))
        }
        Err(e) => Probed::fail(format!("GET {}: {e}", clip(url, 80))),
    }
}

/// Passes when `full` exists (and is a directory, or not, as `dir` asks;
/// and is executable by this user when `executable`). `shown` is the path
/// as written in the config.
fn path_probe(
    full: &Path,
    shown: &Path,
    executable: bool,
    dir: Option<bool>,
    timeout: Duration,
) -> Probed {
    let owned = full.to_owned();
    let shown = shown.display().to_string();
    // A stat on a dead network mount can block: bound it like the others.
    let Some(result) = within(timeout, move || {
        let meta = std::fs::metadata(&owned);
        meta.map(|m| (m.is_dir(), is_executable(&owned)))
    }) else {
        return Probed::fail(format!("{shown}: no answer within {}", human(timeout)));
    };
    let (is_dir, can_exec) = match result {
        Ok(v) => v,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Probed::fail(format!("{shown} does not exist"));
        }
        Err(e) => return Probed::fail(format!("{shown}: {e}")),
    };
    let what = if is_dir { "directory" } else { "file" };
    match dir {
        Some(true) if !is_dir => return Probed::fail(format!("{shown} is not a directory")),
        Some(false) if is_dir => return Probed::fail(format!("{shown} is a directory")),
        None if executable && is_dir => {
            return Probed::fail(format!("{shown} is a directory, not an executable"));
        }
        _ => {}
    }
    if executable && !can_exec {
        return Probed::fail(format!("{shown} is not executable"));
    }
    if executable {
        Probed::pass(format!("{shown}: executable {what}"))
    } else {
        Probed::pass(format!("{shown}: {what} exists"))
    }
}

/// Runs `f` on a helper thread and waits at most `timeout` for its answer.
/// For calls that cannot be cancelled (name resolution, stat): on timeout
/// the thread is left to finish on its own and its answer is dropped.
pub fn within<T: Send + 'static>(
    timeout: Duration,
    f: impl FnOnce() -> T + Send + 'static,
) -> Option<T> {
    let (tx, rx) = mpsc::sync_channel(1);
    let spawned = std::thread::Builder::new()
        .name("preflight-probe".into())
        .spawn(move || {
            let _ = tx.send(f());
        });
    if spawned.is_err() {
        return None;
    }
    rx.recv_timeout(timeout).ok()
}

/// The last non-empty line of some output, clipped.
fn last_line(output: &str) -> Option<String> {
    output
        .lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty())
        .map(|l| clip(l, MAX_DETAIL / 2))
}

/// `s` cut to at most `max` characters, marked with `…` when cut.
pub fn clip(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_owned();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// A duration for people: `2s`, `500ms`, `1m 30s`.
pub fn human(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn within_gives_up_on_a_call_that_does_not_answer_in_time() {
        let (release, blocked) = mpsc::channel::<()>();
        let answer = within(Duration::from_millis(50), move || blocked.recv().is_ok());
        assert_eq!(answer, None);
        drop(release);
        assert_eq!(within(Duration::from_secs(20), || 42), Some(42));
    }

    #[test]
    fn details_are_clipped_to_a_bound() {
        let long = "x".repeat(1000);
        assert_eq!(clip(&long, 10).chars().count(), 10);
        assert!(clip(&long, 10).ends_with('…'));
        assert_eq!(clip("short", 10), "short");
        let out = format!("first\n{long}\n\n");
        assert!(last_line(&out).unwrap().chars().count() <= MAX_DETAIL / 2);
        assert_eq!(last_line("\n \n"), None);
    }

    #[test]
    fn a_missing_path_fails_and_an_existing_one_passes() {
        let dir = tempfile::tempdir().unwrap();
        let t = Duration::from_secs(20);
        let p = |path: &str, exec: bool, d: Option<bool>| {
            probe(
                &Probe::Path {
                    path: path.into(),
                    executable: exec,
                    dir: d,
                },
                dir.path(),
                t,
            )
        };
        std::fs::write(dir.path().join("f"), "x").unwrap();
        assert!(!p("nope", false, None).passed);
        assert!(p("f", false, None).passed);
        assert!(!p("f", true, None).passed);
        assert!(!p("f", false, Some(true)).passed);
        assert!(p(".", false, Some(true)).passed);
        assert!(!p(".", false, Some(false)).passed);
        assert!(!p(".", true, None).passed);
        assert!(p(".", true, Some(true)).passed);
        assert!(p("/bin/sh", true, None).passed);
    }
}
