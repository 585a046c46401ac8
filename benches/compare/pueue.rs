//! A private pueue daemon: its own config, socket and state directories in
//! the bench's scratch area (never the user's), stopped when dropped.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::util::{note, poll};

/// A running `pueued` and the paths its client needs.
pub struct Pueue {
    client: PathBuf,
    config: PathBuf,
    daemon: Child,
}

impl Pueue {
    /// Writes a config pointing every path into `root` and starts `pueued`.
    pub fn start(bin: &Path, root: &Path) -> Self {
        let data = root.join("data");
        let runtime = root.join("run");
        for d in [&data, &runtime] {
            std::fs::create_dir_all(d).expect("pueue dirs");
        }
        let config = root.join("pueue.yml");
        std::fs::write(
            &config,
            format!(
                "shared:\n  pueue_directory: {}\n  runtime_directory: {}\n  use_unix_socket: true\n  unix_socket_path: {}\n  pid_path: {}\n",
                data.display(),
                runtime.display(),
                runtime.join("pueue.sock").display(),
                runtime.join("pueue.pid").display(),
            ),
        )
        .expect("pueue config");
        let daemon = Command::new(bin.join("pueued"))
            .arg("--config")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start pueued");
        let p = Self {
            client: bin.join("pueue"),
            config,
            daemon,
        };
        let up = poll(Duration::from_secs(20), || {
            p.cmd(&["status"]).status().ok()?.success().then_some(())
        });
        assert!(up.is_some(), "pueued did not come up");
        note(&format!("pueued running (pid {})", p.daemon.id()));
        p
    }

    /// `pueue --config CONFIG ARGS...`, output discarded.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.client);
        c.arg("--config").arg(&self.config).args(args);
        c.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        c
    }

    /// Queues `sh -c SCRIPT`; returns the task id.
    pub fn add(&self, script: &str) -> String {
        let out = self
            .cmd(&["add", "--print-task-id", "--", script])
            .stdout(Stdio::piped())
            .output()
            .expect("pueue add");
        assert!(out.status.success(), "pueue add failed");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// The daemon's PID (for its memory figure).
    pub fn daemon_pid(&self) -> i32 {
        self.daemon.id() as i32
    }
}

impl Drop for Pueue {
    fn drop(&mut self) {
        let _ = self.cmd(&["shutdown"]).status();
        let gone = poll(Duration::from_secs(5), || {
            self.daemon.try_wait().ok().flatten()
        });
        if gone.is_none() {
            let _ = self.daemon.kill();
            let _ = self.daemon.wait();
        }
    }
}
