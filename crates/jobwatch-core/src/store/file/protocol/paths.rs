//! The file names of one job, and the reverse mapping from a file name in
//! the jobs directory back to its job.

use std::path::{Path, PathBuf};

use crate::model::JobName;

/// Every per-job file kind, by its suffix after `NAME`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// `NAME.pid`: the command's PID (its process-group leader).
    Pid,
    /// `NAME.heartbeat`: its mtime is the last proof of progress.
    Heartbeat,
    /// `NAME.log`: the command's stdout and stderr.
    Log,
    /// `NAME.result`: the command's own structured output, if it writes one.
    Result,
    /// `NAME.job.json`: jobwatch's record of the job.
    Record,
    /// `NAME.status`: `SUCCESS` or `FAILED`, written once, last.
    Status,
    /// `NAME.lock`: held (flock) by the live wrapper.
    Lock,
    /// `NAME.kill`: why someone other than the wrapper killed the job.
    KillRequest,
}

impl FileKind {
    /// All kinds, longest suffix first so that parsing is unambiguous.
    pub const ALL: [FileKind; 8] = [
        FileKind::Heartbeat,
        FileKind::Record,
        FileKind::Result,
        FileKind::Status,
        FileKind::Lock,
        FileKind::KillRequest,
        FileKind::Pid,
        FileKind::Log,
    ];

    /// The file-name suffix, with its leading dot.
    pub fn suffix(self) -> &'static str {
        match self {
            FileKind::Pid => ".pid",
            FileKind::Heartbeat => ".heartbeat",
            FileKind::Log => ".log",
            FileKind::Result => ".result",
            FileKind::Record => ".job.json",
            FileKind::Status => ".status",
            FileKind::Lock => ".lock",
            FileKind::KillRequest => ".kill",
        }
    }

    /// Splits a file name in the jobs directory into its job and kind;
    /// `None` for anything that is not a job file (temp files, history).
    pub fn parse_file_name(file_name: &str) -> Option<(JobName, FileKind)> {
        FileKind::ALL.iter().find_map(|kind| {
            let stem = file_name.strip_suffix(kind.suffix())?;
            JobName::parse(stem).ok().map(|name| (name, *kind))
        })
    }
}

/// The paths of one job's files.
#[derive(Debug, Clone)]
pub struct JobPaths {
    dir: PathBuf,
    name: JobName,
}

impl JobPaths {
    /// The files of `name` inside `dir`.
    pub fn new(dir: &Path, name: &JobName) -> Self {
        Self {
            dir: dir.to_owned(),
            name: name.clone(),
        }
    }

    /// The job's name.
    pub fn name(&self) -> &JobName {
        &self.name
    }

    /// The jobs directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The path of one of the job's files.
    pub fn file(&self, kind: FileKind) -> PathBuf {
        self.dir
            .join(format!("{}{}", self.name.as_str(), kind.suffix()))
    }

    /// `NAME.pid`.
    pub fn pid(&self) -> PathBuf {
        self.file(FileKind::Pid)
    }
    /// `NAME.heartbeat`.
    pub fn heartbeat(&self) -> PathBuf {
        self.file(FileKind::Heartbeat)
    }
    /// `NAME.log`.
    pub fn log(&self) -> PathBuf {
        self.file(FileKind::Log)
    }
    /// `NAME.result`.
    pub fn result(&self) -> PathBuf {
        self.file(FileKind::Result)
    }
    /// `NAME.job.json`.
    pub fn record(&self) -> PathBuf {
        self.file(FileKind::Record)
    }
    /// `NAME.status`.
    pub fn status(&self) -> PathBuf {
        self.file(FileKind::Status)
    }
    /// `NAME.lock`.
    pub fn lock(&self) -> PathBuf {
        self.file(FileKind::Lock)
    }
    /// `NAME.kill`.
    pub fn kill_request(&self) -> PathBuf {
        self.file(FileKind::KillRequest)
    }
    /// `attempts/NAME/`: the logs of the current run's earlier attempts.
    pub fn attempts(&self) -> PathBuf {
        self.dir.join(ATTEMPTS_DIR).join(self.name.as_str())
    }
    /// `attempts/NAME/K.log`: the log of attempt `k` (1-based) once a later
    /// attempt has taken over `NAME.log`.
    pub fn attempt_log(&self, k: u32) -> PathBuf {
        self.attempts().join(attempt_log_name(k))
    }
}

/// The folder, inside the jobs directory, that holds earlier attempts' logs.
pub const ATTEMPTS_DIR: &str = "attempts";

/// The file name of attempt `k`'s log inside an attempts folder.
pub fn attempt_log_name(k: u32) -> String {
    format!("{k}.log")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_map_back_to_their_job() {
        let cases = [
            ("a.status", "a", FileKind::Status),
            ("a.status.status", "a.status", FileKind::Status),
            ("x.job.json", "x", FileKind::Record),
            ("x.job.log", "x.job", FileKind::Log),
            ("b.heartbeat", "b", FileKind::Heartbeat),
        ];
        for (file, name, kind) in cases {
            let (n, k) = FileKind::parse_file_name(file).unwrap();
            assert_eq!((n.as_str(), k), (name, kind), "{file}");
        }
        for junk in [".tmpabc", "history", "x.json", ".status", "a b.log"] {
            assert!(FileKind::parse_file_name(junk).is_none(), "{junk}");
        }
    }
}
