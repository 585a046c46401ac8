//! Where job state lives, as every command is told: the jobs directory
//! (`--dir`, the default store) or an etcd cluster (`--store etcd://…`,
//! docs/multi-host.md). The flags and their variables are resolved here,
//! once, into the core's [`StoreSpec`], which [`crate::store_open::open`]
//! opens, as it opens the one a detached wrapper is handed: the command and
//! its wrappers open their store the same way. Secrets never go in argv: a
//! password is only read from `JOBWATCH_ETCD_PASSWORD`, and a detached
//! wrapper gets it in its handover (its stdin).

use std::path::{Path, PathBuf};

use clap::Args;

use super::CliError;
use jobwatch_core::spec::{EtcdSpec, Secret, StoreSpec};
use jobwatch_core::store::Store;
use jobwatch_core::store::file::FileStore;

/// The variable that holds the etcd user's password (never a flag).
pub const PASSWORD_ENV: &str = "JOBWATCH_ETCD_PASSWORD";

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

impl StoreArgs {
    /// The etcd URL, when one is given (an empty `JOBWATCH_STORE` is none).
    fn url(&self) -> Option<&str> {
        self.store.as_deref().filter(|u| !u.is_empty())
    }

    /// Whether the jobs directory is the store (no `--store`).
    pub fn is_files(&self) -> bool {
        self.url().is_none()
    }

    /// Opens the store the options name. An etcd cluster that refuses or
    /// cannot be reached is one line naming its endpoints, exit 2, within
    /// the connect bound (a few seconds), never a hang.
    pub fn open(&self) -> Result<Box<dyn Store>, CliError> {
        // The jobs directory is opened (made private, checked) either way:
        // with etcd it holds this host's logs.
        let files = FileStore::open(self.dir.as_deref())?;
        let Some(url) = self.url() else {
            return Ok(Box::new(files));
        };
        let spec = self.etcd_spec(url, files.path(), |var| std::env::var(var).ok())?;
        crate::store_open::open(&StoreSpec::Etcd(spec)).map_err(CliError::usage)
    }

    /// The etcd store of `url` as a wrapper is handed it: the TLS files
    /// made absolute (a wrapper runs in its job's working directory), the
    /// password from `env` (`JOBWATCH_ETCD_PASSWORD`), which a user needs.
    fn etcd_spec(
        &self,
        url: &str,
        dir: &Path,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<EtcdSpec, CliError> {
        let password = env(PASSWORD_ENV).filter(|p| !p.is_empty()).map(Secret::new);
        if let Some(user) = &self.etcd_user
            && password.is_none()
        {
            return Err(CliError::usage(format!(
                "--etcd-user {user} needs its password in ${PASSWORD_ENV}"
            )));
        }
        Ok(EtcdSpec {
            url: url.to_owned(),
            dir: dir.to_owned(),
            ca: self.etcd_ca.as_deref().map(absolute),
            cert: self.etcd_cert.as_deref().map(absolute),
            key: self.etcd_key.as_deref().map(absolute),
            user: self.etcd_user.clone(),
            password,
            self_fence: !self.no_self_fence,
        })
    }
}

/// A path as seen from anywhere (a detached wrapper runs in its job's
/// working directory).
fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> StoreArgs {
        StoreArgs {
            dir: None,
            store: Some("etcds://h:1/ns".into()),
            etcd_ca: Some("ca.pem".into()),
            etcd_cert: None,
            etcd_key: None,
            etcd_user: None,
            no_self_fence: false,
        }
    }

    #[test]
    fn the_etcd_spec_has_absolute_files_and_the_password_from_the_environment_only() {
        let mut a = args();
        a.etcd_user = Some("root".into());
        let spec = a
            .etcd_spec("etcds://h:1/ns", Path::new("/jobs"), |v| {
                (v == PASSWORD_ENV).then(|| "s3cret".to_owned())
            })
            .unwrap();
        assert!(
            spec.ca.as_deref().is_some_and(Path::is_absolute),
            "{spec:?}"
        );
        assert_eq!(spec.password.as_ref().map(Secret::expose), Some("s3cret"));
        assert!(spec.self_fence);
        assert!(!format!("{spec:?}").contains("s3cret"), "Debug hides it");
    }

    #[test]
    fn a_user_without_a_password_is_refused_naming_the_variable() {
        let mut a = args();
        a.etcd_user = Some("root".into());
        let e = a
            .etcd_spec(
                "etcds://h:1/ns",
                Path::new("/jobs"),
                |_| Some(String::new()),
            )
            .unwrap_err();
        assert!(e.message.contains(PASSWORD_ENV), "{}", e.message);
        assert_eq!(e.code, jobwatch_core::exit_code::USAGE);
    }
}
