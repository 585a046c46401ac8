//! `NAME.heartbeat`: only its mtime matters. It is created atomically and
//! then moved in place, never through a symlink (§3, §7).

use std::io;
use std::path::Path;
use std::time::SystemTime;

use super::atomic::write_atomic;
use super::open::touch;

/// Sets the heartbeat's mtime to `t`, creating it if it is missing. A
/// symlink or anything else that is not a regular file at its place cannot
/// be the heartbeat the wrapper created: it is replaced by a fresh empty
/// file (an atomic rename replaces the entry, never what a symlink points
/// at), so its target is never touched and the job's liveness is still
/// judged from a heartbeat of its own.
pub fn beat(path: &Path, t: SystemTime) -> io::Result<()> {
    match touch(path, t, true) {
        Err(e) if e.kind() == io::ErrorKind::InvalidData => {
            write_atomic(path, b"").map_err(|e| e.source)?;
            touch(path, t, false)
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_symlinked_heartbeat_is_replaced_and_its_target_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("target");
        std::fs::write(&target, b"").unwrap();
        let before = std::fs::metadata(&target).unwrap().modified().unwrap();
        let hb = dir.path().join("x.heartbeat");
        std::os::unix::fs::symlink(&target, &hb).unwrap();
        let t = SystemTime::now() + Duration::from_secs(60);
        beat(&hb, t).unwrap();
        let meta = std::fs::symlink_metadata(&hb).unwrap();
        assert!(meta.is_file());
        assert_eq!(meta.modified().unwrap(), t);
        assert_eq!(
            std::fs::metadata(&target).unwrap().modified().unwrap(),
            before
        );
    }
}
