//! The verification log (`VerifyLogName` in `LogDir`): one line per difference found,
//! with its path and what differs, between a line that opens a verification and one
//! that sums it up.
//!
//! # Invariants
//!
//! The file never grows past `VerifyLogLimit`: a line that would take it past the limit
//! is not written, and one last line says that the limit was reached. With
//! `VerifyLogAppend = 0` each verification starts the file anew.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::Path;

/// The line written once when the limit stops the log, kept short so that it fits in
/// the room the limit leaves for it.
const LIMIT_LINE: &str = "(VerifyLogLimit reached: later lines are not written)\n";

/// An open verification log.
pub struct VerifyLog {
    file: File,
    size: u64,
    limit: u64,
    full: bool,
}

impl VerifyLog {
    /// Opens (or starts anew, without `append`) the log at `path`.
    pub fn open(path: &Path, append: bool, limit: u64) -> io::Result<VerifyLog> {
        let file = OpenOptions::new()
            .create(true)
            .append(append)
            .write(true)
            .truncate(!append)
            .open(path)?;
        let size = file.metadata()?.len();
        Ok(VerifyLog {
            file,
            size,
            limit,
            full: false,
        })
    }

    /// Writes one line (a newline is added), unless it would take the file past the
    /// limit; a failed write is reported in the daemon's log, not to the verification.
    pub fn line(&mut self, text: &str) {
        if self.full {
            return;
        }
        let line = format!(
            "{} {text}\n",
            crate::mgmt::utc_time(std::time::SystemTime::now())
        );
        let room = self.limit.saturating_sub(LIMIT_LINE.len() as u64);
        let (bytes, full) = if self.size + line.len() as u64 <= room {
            (line.as_bytes(), false)
        } else {
            (LIMIT_LINE.as_bytes(), true)
        };
        self.full = full;
        if self.size + bytes.len() as u64 > self.limit {
            return;
        }
        match self.file.write_all(bytes) {
            Ok(()) => self.size += bytes.len() as u64,
            Err(e) => log::warn!("writing the verification log: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::VerifyLog;

    #[test]
    fn the_log_stays_within_its_limit_and_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v.log");
        let mut log = VerifyLog::open(&path, true, 4096).unwrap();
        for i in 0..1000 {
            log.line(&format!("DIFFERENT file{i}: mode 644 (replica 600)"));
        }
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.len() <= 4096, "{}", text.len());
        assert!(text.ends_with(super::LIMIT_LINE), "{text}");
        let mut again = VerifyLog::open(&path, false, 4096).unwrap();
        again.line("new");
        assert!(std::fs::read_to_string(&path).unwrap().ends_with(" new\n"));
    }
}
