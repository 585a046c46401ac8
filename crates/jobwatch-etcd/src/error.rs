//! Errors of this layer, and the pure decision of which etcd failures are
//! worth another attempt and which may have been applied already.

use std::time::Duration;

use crate::config::ConfigError;

/// Result of this layer.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong, with one-line messages that name the endpoints or the
/// setting to fix.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A TLS file could not be read.
    #[error("cannot read the etcd {what} file {path}: {reason}")]
    TlsFile {
        /// Which file (CA, client certificate, client key).
        what: &'static str,
        /// Its path.
        path: String,
        /// The I/O error.
        reason: String,
    },
    /// No member answered within the operation's bound.
    #[error(
        "etcd cluster unreachable at {endpoints}: {last_error} (gave up after {attempts} attempts in {elapsed:.1?}); check that etcd runs there and the store URL is right"
    )]
    Unavailable {
        /// The endpoints that were tried.
        endpoints: String,
        /// The last failure, one line.
        last_error: String,
        /// How many attempts were made.
        attempts: u32,
        /// How long they took.
        elapsed: Duration,
    },
    /// The user name or password was refused.
    #[error(
        "etcd authentication failed at {endpoints} for user {user:?}: {message}; check JOBWATCH_ETCD_USER and JOBWATCH_ETCD_PASSWORD"
    )]
    AuthFailed {
        /// The endpoints.
        endpoints: String,
        /// The user name that was refused.
        user: String,
        /// etcd's message.
        message: String,
    },
    /// The cluster has auth enabled and no credentials were given, or the
    /// user lacks a permission.
    #[error(
        "etcd at {endpoints} refused the request: {message}; give a user with access to this namespace (JOBWATCH_ETCD_USER, JOBWATCH_ETCD_PASSWORD)"
    )]
    PermissionDenied {
        /// The endpoints.
        endpoints: String,
        /// etcd's message.
        message: String,
    },
    /// The revision asked for has been compacted away: re-read the current
    /// state and continue from there.
    #[error(
        "etcd revision {requested} has been compacted (oldest kept is {compact_revision}); re-read the current state"
    )]
    Compacted {
        /// The revision asked for.
        requested: i64,
        /// The oldest revision still available (0 when etcd did not say).
        compact_revision: i64,
    },
    /// The lease does not exist (expired or revoked).
    #[error("etcd lease {id:x} not found: it expired or was revoked")]
    LeaseNotFound {
        /// The lease id.
        id: i64,
    },
    /// etcd refused the request itself (too large, invalid); retrying would
    /// not help.
    #[error("etcd rejected the request: {0}")]
    Rejected(String),
    /// The background runtime is gone (the client was dropped while a call
    /// was in flight).
    #[error("the etcd client's background runtime stopped")]
    RuntimeGone,
}

/// How a failed attempt is handled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Disposition {
    /// Try again (another member, after a backoff). `maybe_applied` says
    /// whether the request may have reached raft: a write whose reply was
    /// lost, a timeout, a leader change during the proposal.
    Retry { maybe_applied: bool },
    /// Retrying cannot help.
    Fatal(FatalKind),
}

/// The kinds of failure that end an operation at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum FatalKind {
    AuthFailed,
    PermissionDenied,
    Compacted { compact_revision: i64 },
    LeaseNotFound,
    Rejected,
}

/// A failed attempt: its disposition and a one-line description.
#[derive(Debug, Clone)]
pub(crate) struct Failure {
    pub disposition: Disposition,
    pub message: String,
}

impl Failure {
    /// Our own per-attempt timeout fired: the request may have been applied.
    pub fn attempt_timed_out(after: Duration) -> Self {
        Failure {
            disposition: Disposition::Retry {
                maybe_applied: true,
            },
            message: format!("no answer within {after:?}"),
        }
    }
}

/// Decides what to do about an etcd-client error. Pure: the mapping from
/// gRPC codes and etcd's messages is the whole of it.
pub(crate) fn classify(err: &etcd_client::Error) -> Failure {
    use etcd_client::Error as E;
    let message = one_line(err);
    let disposition = match err {
        E::GRpcStatus(status) => classify_status(status.code(), status.message()),
        // Failed to set up a connection: nothing was sent.
        E::TransportError(_) | E::EndpointError(_) => Disposition::Retry {
            maybe_applied: false,
        },
        E::InvalidArgs(_) | E::InvalidUri(_) | E::InvalidMetadataValue(_) | E::Utf8Error(_) => {
            Disposition::Fatal(FatalKind::Rejected)
        }
        E::LeaseKeepAliveError(m) if m.contains("lease not found") => {
            Disposition::Fatal(FatalKind::LeaseNotFound)
        }
        // Stream ended, I/O error, ...: the request may have gone out.
        _ => Disposition::Retry {
            maybe_applied: true,
        },
    };
    Failure {
        disposition,
        message,
    }
}

/// The gRPC part of [`classify`].
pub(crate) fn classify_status(code: tonic::Code, message: &str) -> Disposition {
    use tonic::Code;
    let not_sent = Disposition::Retry {
        maybe_applied: false,
    };
    let maybe_sent = Disposition::Retry {
        maybe_applied: true,
    };
    match code {
        // "no leader" is refused by the member before it proposes anything
        // (we send `hasleader`); a connect error never left this host.
        Code::Unavailable
            if message.contains("no leader")
                || message.contains("connect error")
                || message.contains("error trying to connect")
                || message.contains("not capable") =>
        {
            not_sent
        }
        // "too many requests": refused before proposing.
        Code::ResourceExhausted if message.contains("too many requests") => not_sent,
        Code::Unavailable
        | Code::DeadlineExceeded
        | Code::Cancelled
        | Code::Unknown
        | Code::Internal
        | Code::Aborted => maybe_sent,
        Code::InvalidArgument if message.contains("authentication failed") => {
            Disposition::Fatal(FatalKind::AuthFailed)
        }
        Code::Unauthenticated | Code::PermissionDenied => {
            Disposition::Fatal(FatalKind::PermissionDenied)
        }
        // "user name is empty" and "invalid auth token" arrive as these when
        // auth is enabled and no (valid) credentials were given.
        Code::InvalidArgument if message.contains("user name is empty") => {
            Disposition::Fatal(FatalKind::PermissionDenied)
        }
        Code::OutOfRange if message.contains("compacted") => {
            Disposition::Fatal(FatalKind::Compacted {
                compact_revision: 0,
            })
        }
        Code::NotFound if message.contains("lease not found") => {
            Disposition::Fatal(FatalKind::LeaseNotFound)
        }
        _ => Disposition::Fatal(FatalKind::Rejected),
    }
}

/// Renders an error and its sources on one line, without repeats (tonic's
/// messages nest the same text several times).
pub(crate) fn one_line(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut push = |text: String| {
        let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
        if !text.is_empty() && !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
    };
    // etcd-client's error reports no source of its own: start from the
    // error it wraps so that the root cause ("Connection refused", a TLS
    // complaint) reaches the message.
    let mut source: Option<&(dyn std::error::Error + 'static)> =
        match err.downcast_ref::<etcd_client::Error>() {
            Some(etcd_client::Error::GRpcStatus(status)) => {
                push(format!("{:?}: {}", status.code(), status.message()));
                std::error::Error::source(status)
            }
            Some(etcd_client::Error::TransportError(e)) => {
                push(e.to_string());
                std::error::Error::source(e)
            }
            Some(etcd_client::Error::IoError(e)) => {
                push(format!("io error: {e}"));
                std::error::Error::source(e)
            }
            _ => {
                push(err.to_string());
                err.source()
            }
        };
    while let Some(s) = source {
        push(s.to_string());
        source = s.source();
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Code;

    #[test]
    fn refusals_before_proposing_are_safe_to_retry() {
        for (code, msg) in [
            (Code::Unavailable, "etcdserver: no leader"),
            (Code::Unavailable, "tcp connect error"),
            (Code::ResourceExhausted, "etcdserver: too many requests"),
        ] {
            assert_eq!(
                classify_status(code, msg),
                Disposition::Retry {
                    maybe_applied: false
                },
                "{msg}"
            );
        }
    }

    #[test]
    fn timeouts_and_broken_streams_may_have_been_applied() {
        for (code, msg) in [
            (Code::Unavailable, "etcdserver: request timed out"),
            (Code::Unavailable, "etcdserver: leader changed"),
            (Code::Unknown, "h2 protocol error: connection reset"),
            (Code::DeadlineExceeded, "deadline"),
            (Code::Cancelled, "operation was canceled"),
        ] {
            assert_eq!(
                classify_status(code, msg),
                Disposition::Retry {
                    maybe_applied: true
                },
                "{msg}"
            );
        }
    }

    #[test]
    fn refusals_of_the_request_itself_are_final() {
        assert_eq!(
            classify_status(
                Code::InvalidArgument,
                "etcdserver: authentication failed, invalid user ID or password"
            ),
            Disposition::Fatal(FatalKind::AuthFailed)
        );
        assert_eq!(
            classify_status(Code::PermissionDenied, "etcdserver: permission denied"),
            Disposition::Fatal(FatalKind::PermissionDenied)
        );
        assert_eq!(
            classify_status(Code::InvalidArgument, "etcdserver: user name is empty"),
            Disposition::Fatal(FatalKind::PermissionDenied)
        );
        assert!(matches!(
            classify_status(
                Code::OutOfRange,
                "etcdserver: mvcc: required revision has been compacted"
            ),
            Disposition::Fatal(FatalKind::Compacted { .. })
        ));
        assert_eq!(
            classify_status(Code::NotFound, "etcdserver: requested lease not found"),
            Disposition::Fatal(FatalKind::LeaseNotFound)
        );
        assert_eq!(
            classify_status(Code::InvalidArgument, "etcdserver: request is too large"),
            Disposition::Fatal(FatalKind::Rejected)
        );
    }

    #[test]
    fn one_line_joins_sources_without_repeats_or_newlines() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused\nnow");
        let err = etcd_client::Error::IoError(io);
        let line = one_line(&err);
        assert_eq!(line, "io error: refused now");
    }
}
