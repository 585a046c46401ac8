//! A gate many jobs can block on without polling: the test holds an
//! exclusive `flock` on a file and each job takes a shared one (`flock -s`),
//! so every job is released at once when the test lets go.

use std::fs::File;
use std::os::fd::AsFd;
use std::path::PathBuf;

use rustix::fs::{FlockOperation, flock};

use crate::support::Env;

/// A closed gate; dropping it (or [`Gate::open`]) releases every job.
pub struct Gate {
    path: PathBuf,
    held: Option<File>,
}

impl Gate {
    /// Creates the gate file in the test's scratch dir and closes the gate.
    pub fn closed(env: &Env, name: &str) -> Self {
        let path = env.scratch(&format!("{name}.gate"));
        let file = File::create(&path).expect("create gate");
        flock(file.as_fd(), FlockOperation::LockExclusive).expect("close gate");
        Self {
            path,
            held: Some(file),
        }
    }

    /// A job command that waits at the gate, prints `through`, then exits
    /// with `code`.
    pub fn job(&self, code: i32) -> Vec<String> {
        crate::support::sh(&format!(
            "flock -s '{}' true && echo through; exit {code}",
            self.path.display()
        ))
    }

    /// Releases every job waiting at the gate.
    pub fn open(&mut self) {
        self.held = None;
    }
}
