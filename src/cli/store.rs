//! Where job state lives, as every command is told: the jobs directory
//! (`--dir`, the default store) or an etcd cluster (`--store etcd://…`,
//! docs/multi-host.md), built into one `Arc<dyn Store>`; and what a child
//! jobwatch (a detached wrapper, the MCP server's `run`) needs to open the
//! same store. Secrets never go in argv: a password is only read from
//! `JOBWATCH_ETCD_PASSWORD`, which children inherit.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::Args;

use super::CliError;
use jobwatch_core::exit_code;
use jobwatch_core::store::Store;
use jobwatch_core::store::file::FileStore;

/// The options that select the store, on every command.
#[derive(Debug, Clone, Args)]
pub struct StoreArgs {
    /// Jobs directory (default: $JOBWATCH_DIR, $XDG_STATE_HOME/jobwatch or
    /// ~/.local/state/jobwatch). With --store, where this host keeps its
    /// jobs' logs.
    #[arg(long, global = true, value_name = "DIR")]
    pub dir: Option<PathBuf>,

    /// Keep job state in an etcd cluster, shared by every host that uses
    /// it: etcd://HOST:PORT[,HOST:PORT...][/NAMESPACE], or etcds://... for
    /// TLS (see docs/multi-host.md).
    #[arg(long, global = true, value_name = "URL", env = "JOBWATCH_STORE")]
    pub store: Option<String>,

    /// etcds://: the CA certificate (PEM) that signed the members'.
    #[arg(long, global = true, value_name = "FILE", env = "JOBWATCH_ETCD_CA")]
    pub etcd_ca: Option<PathBuf>,

    /// etcds://: a client certificate (PEM), for clusters that require one.
    #[arg(long, global = true, value_name = "FILE", env = "JOBWATCH_ETCD_CERT")]
    pub etcd_cert: Option<PathBuf>,

    /// etcds://: the client certificate's private key (PEM).
    #[arg(long, global = true, value_name = "FILE", env = "JOBWATCH_ETCD_KEY")]
    pub etcd_key: Option<PathBuf>,

    /// The etcd user, for clusters with auth enabled; its password is read
    /// from $JOBWATCH_ETCD_PASSWORD only (never from the command line).
    #[arg(long, global = true, value_name = "USER", env = "JOBWATCH_ETCD_USER")]
    pub etcd_user: Option<String>,

    /// With --store: a wrapper cut off from the cluster lets its job run on
    /// instead of killing it before the cluster reports it lost (the job
    /// may then run while other hosts see it lost).
    #[arg(long, global = true, env = "JOBWATCH_NO_SELF_FENCE")]
    pub no_self_fence: bool,
}

/// An opened store, with what a child jobwatch needs to open it too.
#[derive(Debug, Clone)]
pub struct Opened {
    /// The store.
    pub store: Arc<dyn Store>,
    /// The jobs directory (`--dir` for a child): the store itself, or this
    /// host's logs of an etcd store.
    pub dir: PathBuf,
    /// Variables a child needs besides `--dir` (`JOBWATCH_STORE`, the TLS
    /// files made absolute, the user); never a password.
    pub env: Vec<(String, String)>,
}

impl StoreArgs {
    /// Opens the store the options name. An etcd cluster that refuses or
    /// cannot be reached is one line naming its endpoints, exit 2, within
    /// the connect bound (a few seconds), never a hang.
    pub fn open(&self) -> Result<Opened, CliError> {
        // The jobs directory is opened (made private, checked) either way:
        // with etcd it holds this host's logs.
        let files = FileStore::open(self.dir.as_deref())?;
        let dir = files.path().to_owned();
        let Some(url) = self.store.as_deref().filter(|u| !u.is_empty()) else {
            return Ok(Opened {
                store: Arc::new(files),
                dir,
                env: Vec::new(),
            });
        };
        let store = open_etcd(self, url, &dir)?;
        Ok(Opened {
            store,
            env: self.child_env(url),
            dir,
        })
    }

    /// Whether the jobs directory is the store (no `--store`).
    pub fn is_files(&self) -> bool {
        self.store.as_deref().is_none_or(str::is_empty)
    }

    /// What a child jobwatch needs, besides `--dir`, to open this store.
    fn child_env(&self, url: &str) -> Vec<(String, String)> {
        let mut env = vec![("JOBWATCH_STORE".to_owned(), url.to_owned())];
        for (var, file) in [
            ("JOBWATCH_ETCD_CA", &self.etcd_ca),
            ("JOBWATCH_ETCD_CERT", &self.etcd_cert),
            ("JOBWATCH_ETCD_KEY", &self.etcd_key),
        ] {
            if let Some(f) = file {
                env.push((var.to_owned(), absolute(f).display().to_string()));
            }
        }
        if let Some(user) = &self.etcd_user {
            env.push(("JOBWATCH_ETCD_USER".to_owned(), user.clone()));
        }
        if self.no_self_fence {
            env.push(("JOBWATCH_NO_SELF_FENCE".to_owned(), "true".to_owned()));
        }
        env
    }
}

/// A path as seen from anywhere (a detached wrapper may run elsewhere).
fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_owned())
}

fn usage(message: String) -> CliError {
    CliError {
        code: exit_code::USAGE,
        message,
    }
}

#[cfg(feature = "etcd")]
fn open_etcd(a: &StoreArgs, url: &str, dir: &Path) -> Result<Arc<dyn Store>, CliError> {
    use jobwatch_etcd::{Credentials, EtcdConfig, EtcdStore, StoreOptions};
    let mut config = EtcdConfig::parse(url).map_err(|e| usage(e.to_string()))?;
    config.tls_files.ca = a.etcd_ca.clone();
    config.tls_files.cert = a.etcd_cert.clone();
    config.tls_files.key = a.etcd_key.clone();
    if let Some(user) = &a.etcd_user {
        let password = std::env::var("JOBWATCH_ETCD_PASSWORD").unwrap_or_default();
        if password.is_empty() {
            return Err(usage(format!(
                "--etcd-user {user} needs its password in $JOBWATCH_ETCD_PASSWORD"
            )));
        }
        config.credentials = Some(Credentials {
            user: user.clone(),
            password,
        });
    }
    let config = config.with_env().map_err(|e| usage(e.to_string()))?;
    let options = StoreOptions {
        self_fence: !a.no_self_fence,
    };
    let store = EtcdStore::open(config, dir, options).map_err(|e| usage(e.to_string()))?;
    Ok(Arc::new(store))
}

#[cfg(not(feature = "etcd"))]
fn open_etcd(_a: &StoreArgs, url: &str, _dir: &Path) -> Result<Arc<dyn Store>, CliError> {
    Err(usage(format!(
        "--store {url}: this jobwatch was built without etcd support; build it with `cargo build --release --features etcd` (needs protoc: apt-get install -y protobuf-compiler)"
    )))
}
