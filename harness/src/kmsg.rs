//! The kernel log from a moment on, through `/dev/kmsg` (guest side).
//!
//! A [`Cursor`] opened at the end of the log returns exactly the records the
//! kernel printed after it was opened: what happened during one scheduler's
//! run, not what an earlier run in the same VM left behind.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::OpenOptionsExt;

/// Appends `line` to the kernel log (`/dev/kmsg`), as a marker the host
/// finds in the console; nothing happens where it cannot be opened (not
/// root: on a host without a VM).
pub fn write(line: &str) {
    use std::io::Write;
    if let Ok(mut f) = std::fs::OpenOptions::new().write(true).open("/dev/kmsg") {
        // One write, one record: writeln! would write the newline apart,
        // a second (empty) record.
        let _ = f.write_all(format!("{line}\n").as_bytes());
    }
}

/// A position in the kernel log.
pub struct Cursor {
    file: Option<File>,
}

impl Cursor {
    /// At the end of the log. Without `/dev/kmsg` (not root, no devtmpfs)
    /// the cursor reads nothing; callers fall back to `dmesg`.
    pub fn at_end() -> Cursor {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open("/dev/kmsg")
            .ok()
            .and_then(|mut f| f.seek(SeekFrom::End(0)).ok().map(|_| f));
        Cursor { file }
    }

    /// The message text of every record printed since the last call (or
    /// since the cursor was opened).
    pub fn read_new(&mut self) -> Vec<String> {
        let mut out = Vec::new();
        let Some(f) = self.file.as_mut() else {
            return out;
        };
        // One record per read; a record is at most 8 KiB (PRINTK_MESSAGE_MAX
        // is 2 KiB in 6.12, with room for dictionary lines).
        let mut buf = vec![0u8; 8192];
        loop {
            match f.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    if let Some(msg) = parse_record(&buf[..n]) {
                        out.push(msg);
                    }
                }
                // EPIPE: records were overwritten before we read them; the
                // next read continues with the oldest one still there.
                Err(e) if e.raw_os_error() == Some(libc::EPIPE) => continue,
                Err(_) => break, // EAGAIN: nothing more for now
            }
        }
        out
    }
}

/// "PRIO,SEQ,USEC,FLAGS;MESSAGE\n KEY=VALUE\n..." -> "MESSAGE".
pub fn parse_record(rec: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(rec);
    let (_, rest) = text.split_once(';')?;
    let msg = rest.split('\n').next().unwrap_or("");
    Some(unescape(msg))
}

/// /dev/kmsg escapes non-printable bytes as `\xNN`.
fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find("\\x") {
        out.push_str(&rest[..i]);
        let hex = rest.get(i + 2..i + 4);
        match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
            Some(b) => {
                out.push(b as char);
                rest = &rest[i + 4..];
            }
            None => {
                out.push_str("\\x");
                rest = &rest[i + 2..];
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_parsed() {
        assert_eq!(
            parse_record(
                b"6,812,4674852,-;sched_ext: BPF scheduler \"fifo\" enabled\n SUBSYSTEM=x\n"
            )
            .as_deref(),
            Some("sched_ext: BPF scheduler \"fifo\" enabled")
        );
        assert_eq!(parse_record(b"garbage"), None);
        assert_eq!(unescape("a\\x0ab\\xzz"), "a\nb\\xzz");
    }
}
