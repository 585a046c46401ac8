//! Where the cluster is and how to authenticate: parsed from a store URL
//! (`etcd://HOST:PORT[,HOST:PORT…][/NAMESPACE]`, `etcds://…` for TLS) plus
//! explicit values or the environment.
//!
//! Parsing is pure: [`EtcdConfig::parse`] reads nothing, and
//! [`EtcdConfig::with_env_from`] takes the environment as a lookup function
//! so that tests need not touch the process environment.
//!
//! Environment variables (each one is overridden by an explicit value):
//!
//! | variable | meaning |
//! |---|---|
//! | `JOBWATCH_ETCD_CA` | PEM file of the CA that signed the members' certificates (`etcds://` only) |
//! | `JOBWATCH_ETCD_CERT` | PEM client certificate, for clusters run with `--client-cert-auth` (`etcds://` only) |
//! | `JOBWATCH_ETCD_KEY` | PEM private key of that certificate (`etcds://` only) |
//! | `JOBWATCH_ETCD_USER` | user name, for clusters with auth enabled |
//! | `JOBWATCH_ETCD_PASSWORD` | that user's password |

use std::path::PathBuf;
use std::time::Duration;

/// The etcd client port used when a host in the URL has none.
pub const DEFAULT_PORT: u16 = 2379;

/// The namespace used when the URL names none.
pub const DEFAULT_NAMESPACE: &str = "default";

/// Every key this layer touches starts with this, then the namespace and `/`,
/// so jobwatch's keys never mix with another application's on a shared cluster.
pub const KEY_ROOT: &str = "jobwatch/";

/// Environment variable: CA certificate file (PEM).
pub const ENV_CA: &str = "JOBWATCH_ETCD_CA";
/// Environment variable: client certificate file (PEM).
pub const ENV_CERT: &str = "JOBWATCH_ETCD_CERT";
/// Environment variable: client private key file (PEM).
pub const ENV_KEY: &str = "JOBWATCH_ETCD_KEY";
/// Environment variable: user name for etcd auth.
pub const ENV_USER: &str = "JOBWATCH_ETCD_USER";
/// Environment variable: password for etcd auth.
pub const ENV_PASSWORD: &str = "JOBWATCH_ETCD_PASSWORD";

/// A configuration problem, each with a one-line message that says how to fix it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// The store URL does not have the expected shape.
    #[error(
        "invalid etcd store URL {url:?}: {reason} (expected etcd://HOST:PORT[,HOST:PORT...][/NAMESPACE] or etcds://...)"
    )]
    BadUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// TLS files were given for a plain-text URL.
    #[error(
        "{what} is set but the store URL uses etcd:// (plain text); use etcds:// to connect with TLS, or unset {what}"
    )]
    TlsFileWithoutTls {
        /// Which setting (flag or environment variable name).
        what: &'static str,
    },
    /// A client certificate without its key, or the reverse.
    #[error(
        "a client certificate and its key go together: set both {ENV_CERT} and {ENV_KEY} (or neither)"
    )]
    CertWithoutKey,
    /// A user without a password, or the reverse.
    #[error(
        "etcd auth needs both a user and a password: set both {ENV_USER} and {ENV_PASSWORD} (or neither)"
    )]
    UserWithoutPassword,
    /// An explicit timeout of zero.
    #[error("the etcd {what} timeout must be greater than zero")]
    ZeroTimeout {
        /// Which timeout.
        what: &'static str,
    },
}

/// TLS material, as file paths (read when connecting, so that a missing file
/// is reported with its name).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsFiles {
    /// CA certificate (PEM) that signed the members' certificates; the
    /// system's roots are not consulted, so this is needed for a private CA.
    pub ca: Option<PathBuf>,
    /// Client certificate (PEM), for `--client-cert-auth` clusters.
    pub cert: Option<PathBuf>,
    /// Private key (PEM) of the client certificate.
    pub key: Option<PathBuf>,
}

/// User and password for a cluster with auth enabled.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// etcd user name.
    pub user: String,
    /// Its password (never printed: `Debug` hides it).
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("user", &self.user)
            .field("password", &"<hidden>")
            .finish()
    }
}

/// Everything needed to reach one namespace on one etcd cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdConfig {
    /// `HOST:PORT` of each member, in the order given (tried in that order).
    pub endpoints: Vec<String>,
    /// Whether to connect with TLS (`etcds://`).
    pub tls: bool,
    /// TLS files (only with `tls`).
    pub tls_files: TlsFiles,
    /// Credentials for clusters with auth enabled.
    pub credentials: Option<Credentials>,
    /// The namespace; keys live under `jobwatch/NAMESPACE/`.
    pub namespace: String,
    /// Bound on opening a TCP (and TLS) connection to one member.
    pub connect_timeout: Duration,
    /// Bound on one attempt of one request at one member.
    pub request_timeout: Duration,
    /// Bound on one operation across all its retries and members.
    pub operation_timeout: Duration,
}

impl EtcdConfig {
    /// Default bound on connecting to one member: long enough for a loaded
    /// machine, short enough that a dead cluster is reported quickly.
    pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
    /// Default bound on one attempt at one member (retries get a quarter of
    /// it). A member without a leader answers at once (we require a leader),
    /// so this only waits out a member that accepted the connection but does
    /// not answer (stopped, overloaded), or a request forwarded to a leader
    /// that just died.
    pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(3);
    /// Default bound on one operation with its retries: covers a leader
    /// election (about 1–2 s with etcd's defaults) several times over.
    pub const DEFAULT_OPERATION_TIMEOUT: Duration = Duration::from_secs(15);

    /// Parses a store URL; TLS files and credentials are left empty.
    ///
    /// `etcd://h1:2379,h2:2379/team-a` gives endpoints `h1:2379` and
    /// `h2:2379` in namespace `team-a`. A host without a port gets 2379; IPv6
    /// hosts are written in brackets (`[::1]:2379`). The namespace is one or
    /// more `/`-separated segments of letters, digits, `.`, `_` and `-`.
    pub fn parse(url: &str) -> Result<Self, ConfigError> {
        let bad = |reason: &str| ConfigError::BadUrl {
            url: url.to_string(),
            reason: reason.to_string(),
        };
        let (tls, rest) = if let Some(rest) = url.strip_prefix("etcd://") {
            (false, rest)
        } else if let Some(rest) = url.strip_prefix("etcds://") {
            (true, rest)
        } else {
            return Err(bad("the scheme must be etcd:// or etcds://"));
        };
        let (hosts, namespace) = match rest.split_once('/') {
            Some((hosts, ns)) => (hosts, ns.trim_end_matches('/')),
            None => (rest, ""),
        };
        if hosts.is_empty() {
            return Err(bad("no HOST:PORT after the scheme"));
        }
        let endpoints = hosts
            .split(',')
            .map(parse_endpoint)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|reason| bad(&reason))?;
        let namespace = if namespace.is_empty() {
            DEFAULT_NAMESPACE.to_string()
        } else {
            validate_namespace(namespace).map_err(|reason| bad(&reason))?;
            namespace.to_string()
        };
        Ok(EtcdConfig {
            endpoints,
            tls,
            tls_files: TlsFiles::default(),
            credentials: None,
            namespace,
            connect_timeout: Self::DEFAULT_CONNECT_TIMEOUT,
            request_timeout: Self::DEFAULT_REQUEST_TIMEOUT,
            operation_timeout: Self::DEFAULT_OPERATION_TIMEOUT,
        })
    }

    /// Fills TLS files and credentials that are still unset from the
    /// `JOBWATCH_ETCD_*` variables of this process, then validates.
    pub fn with_env(self) -> Result<Self, ConfigError> {
        self.with_env_from(|name| std::env::var(name).ok())
    }

    /// Like [`with_env`](Self::with_env) with the environment given as a
    /// lookup function; an empty value counts as unset.
    pub fn with_env_from(
        mut self,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let get = |name: &str| lookup(name).filter(|v| !v.is_empty());
        let files = &mut self.tls_files;
        files.ca = files.ca.take().or_else(|| get(ENV_CA).map(PathBuf::from));
        files.cert = files
            .cert
            .take()
            .or_else(|| get(ENV_CERT).map(PathBuf::from));
        files.key = files.key.take().or_else(|| get(ENV_KEY).map(PathBuf::from));
        if self.credentials.is_none() {
            self.credentials = match (get(ENV_USER), get(ENV_PASSWORD)) {
                (Some(user), Some(password)) => Some(Credentials { user, password }),
                (None, None) => None,
                _ => return Err(ConfigError::UserWithoutPassword),
            };
        }
        self.validate()?;
        Ok(self)
    }

    /// Checks the combination of settings (TLS files only with `etcds://`,
    /// certificate and key together, non-zero timeouts).
    pub fn validate(&self) -> Result<(), ConfigError> {
        let files = &self.tls_files;
        if !self.tls {
            for (set, what) in [
                (files.ca.is_some(), ENV_CA),
                (files.cert.is_some(), ENV_CERT),
                (files.key.is_some(), ENV_KEY),
            ] {
                if set {
                    return Err(ConfigError::TlsFileWithoutTls { what });
                }
            }
        }
        if files.cert.is_some() != files.key.is_some() {
            return Err(ConfigError::CertWithoutKey);
        }
        for (t, what) in [
            (self.connect_timeout, "connect"),
            (self.request_timeout, "request"),
            (self.operation_timeout, "operation"),
        ] {
            if t.is_zero() {
                return Err(ConfigError::ZeroTimeout { what });
            }
        }
        Ok(())
    }

    /// The prefix of every key in this namespace: `jobwatch/NAMESPACE/`.
    pub fn key_prefix(&self) -> Vec<u8> {
        format!("{KEY_ROOT}{}/", self.namespace).into_bytes()
    }

    /// The gRPC URL of each member (`http://` or `https://`).
    pub fn endpoint_urls(&self) -> Vec<String> {
        let scheme = if self.tls { "https" } else { "http" };
        self.endpoints
            .iter()
            .map(|e| format!("{scheme}://{e}"))
            .collect()
    }

    /// The endpoints as one comma-separated string, for error messages.
    pub fn endpoints_display(&self) -> String {
        self.endpoint_urls().join(",")
    }
}

/// Validates one `HOST[:PORT]` and returns it with the port made explicit.
fn parse_endpoint(text: &str) -> Result<String, String> {
    if text.is_empty() {
        return Err("an empty host between commas".to_string());
    }
    let (host, port) = if let Some(rest) = text.strip_prefix('[') {
        let (addr, after) = rest
            .split_once(']')
            .ok_or_else(|| format!("{text:?} opens '[' without ']'"))?;
        if addr.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(format!("{addr:?} in brackets is not an IPv6 address"));
        }
        let port = match after {
            "" => None,
            p => Some(
                p.strip_prefix(':')
                    .ok_or_else(|| format!("unexpected {p:?} after ']' in {text:?}"))?,
            ),
        };
        (format!("[{addr}]"), port)
    } else {
        match text.split_once(':') {
            Some((h, p)) => (h.to_string(), Some(p)),
            None => (text.to_string(), None),
        }
    };
    if !host.starts_with('[')
        && (host.is_empty()
            || !host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-'))
    {
        return Err(format!("{host:?} is not a host name or IP address"));
    }
    let port = match port {
        None => DEFAULT_PORT,
        Some(p) => match p.parse::<u16>() {
            Ok(n) if n > 0 => n,
            _ => {
                return Err(format!(
                    "port {p:?} of {text:?} is not a number from 1 to 65535"
                ));
            }
        },
    };
    Ok(format!("{host}:{port}"))
}

/// Checks a namespace: `/`-separated segments of `[A-Za-z0-9._-]`, none
/// empty, `.` or `..` (they would make keys that read like paths).
fn validate_namespace(ns: &str) -> Result<(), String> {
    for segment in ns.split('/') {
        if segment.is_empty() || segment == "." || segment == ".." {
            return Err(format!(
                "namespace {ns:?} has an empty, '.' or '..' segment"
            ));
        }
        if let Some(c) = segment
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
        {
            return Err(format!(
                "namespace {ns:?} contains {c:?}; use letters, digits, '.', '_', '-' and '/'"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn parses_endpoints_and_namespace() {
        let c = EtcdConfig::parse("etcd://a:1,b.example:2/team-a").unwrap();
        assert_eq!(c.endpoints, ["a:1", "b.example:2"]);
        assert!(!c.tls);
        assert_eq!(c.namespace, "team-a");
        assert_eq!(c.key_prefix(), b"jobwatch/team-a/");
        assert_eq!(c.endpoint_urls(), ["http://a:1", "http://b.example:2"]);
    }

    #[test]
    fn tls_scheme_gives_https_urls() {
        let c = EtcdConfig::parse("etcds://127.0.0.1:2379").unwrap();
        assert!(c.tls);
        assert_eq!(c.endpoint_urls(), ["https://127.0.0.1:2379"]);
    }

    #[test]
    fn missing_namespace_and_port_get_defaults() {
        let c = EtcdConfig::parse("etcd://host/").unwrap();
        assert_eq!(c.endpoints, ["host:2379"]);
        assert_eq!(c.namespace, DEFAULT_NAMESPACE);
        let c = EtcdConfig::parse("etcd://[::1]:2380,[::1]").unwrap();
        assert_eq!(c.endpoints, ["[::1]:2380", "[::1]:2379"]);
    }

    #[test]
    fn nested_namespaces_are_allowed() {
        let c = EtcdConfig::parse("etcd://h:1/org/team_1.x").unwrap();
        assert_eq!(c.key_prefix(), b"jobwatch/org/team_1.x/");
    }

    #[test]
    fn malformed_urls_give_one_line_errors_naming_the_problem() {
        for (url, needle) in [
            ("http://h:1", "scheme"),
            ("etcd://", "no HOST:PORT"),
            ("etcd:///ns", "no HOST:PORT"),
            ("etcd://h:1,,h:2", "empty host"),
            ("etcd://h:x", "port \"x\""),
            ("etcd://h:0", "port \"0\""),
            ("etcd://h:70000", "port \"70000\""),
            ("etcd://h_h:1", "not a host"),
            ("etcd://[::1:1", "without ']'"),
            ("etcd://[zz]:1", "not an IPv6"),
            ("etcd://h:1/a//b", "empty"),
            ("etcd://h:1/a/../b", "'..'"),
            ("etcd://h:1/a b", "contains ' '"),
        ] {
            let err = EtcdConfig::parse(url).unwrap_err().to_string();
            assert!(err.contains(needle), "{url}: {err}");
            assert!(err.contains(url), "{url}: {err}");
            assert!(!err.contains('\n'), "{url}: {err}");
        }
    }

    #[test]
    fn environment_fills_unset_values() {
        let env = |name: &str| match name {
            ENV_CA => Some("/ca.pem".to_string()),
            ENV_CERT => Some("/c.pem".to_string()),
            ENV_KEY => Some("/k.pem".to_string()),
            ENV_USER => Some("root".to_string()),
            ENV_PASSWORD => Some("pw".to_string()),
            _ => None,
        };
        let c = EtcdConfig::parse("etcds://h:1")
            .unwrap()
            .with_env_from(env)
            .unwrap();
        assert_eq!(c.tls_files.ca, Some(PathBuf::from("/ca.pem")));
        assert_eq!(c.tls_files.key, Some(PathBuf::from("/k.pem")));
        assert_eq!(c.credentials.as_ref().unwrap().user, "root");
        assert!(
            !format!("{c:?}").contains("pw"),
            "password must not be printed"
        );
    }

    #[test]
    fn explicit_values_win_over_the_environment() {
        let mut c = EtcdConfig::parse("etcds://h:1").unwrap();
        c.tls_files.ca = Some("/mine.pem".into());
        c.credentials = Some(Credentials {
            user: "me".into(),
            password: "x".into(),
        });
        let c = c
            .with_env_from(|n| (n == ENV_CA || n == ENV_USER).then(|| "env".to_string()))
            .unwrap();
        assert_eq!(c.tls_files.ca, Some(PathBuf::from("/mine.pem")));
        assert_eq!(c.credentials.unwrap().user, "me");
    }

    #[test]
    fn inconsistent_settings_are_refused() {
        let plain = EtcdConfig::parse("etcd://h:1").unwrap();
        let err = plain
            .clone()
            .with_env_from(|n| (n == ENV_CA).then(|| "/ca".to_string()))
            .unwrap_err();
        assert_eq!(err, ConfigError::TlsFileWithoutTls { what: ENV_CA });
        assert!(err.to_string().contains("etcds://"));
        let tls = EtcdConfig::parse("etcds://h:1").unwrap();
        let err = tls
            .clone()
            .with_env_from(|n| (n == ENV_CERT).then(|| "/c".to_string()))
            .unwrap_err();
        assert_eq!(err, ConfigError::CertWithoutKey);
        let err = tls
            .with_env_from(|n| (n == ENV_USER).then(|| "u".to_string()))
            .unwrap_err();
        assert_eq!(err, ConfigError::UserWithoutPassword);
        assert!(plain.with_env_from(no_env).is_ok());
    }
}
