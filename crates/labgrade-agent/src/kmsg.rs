//! The kernel log, read through `/dev/kmsg` from the position it had when the session began, so a
//! step's report carries exactly what the kernel said while it ran (overlayfs writes its reasons
//! for refusing a mount there).

use std::fs::File;
use std::io::{ErrorKind, Read, Seek, SeekFrom};
use std::os::unix::fs::OpenOptionsExt;

/// A reader positioned at the end of the kernel log, or the reason there is none.
#[derive(Debug)]
pub(crate) struct KernelLog {
    file: Option<File>,
    /// Why the log cannot be read (no CAP_SYSLOG in a user namespace, say).
    pub(crate) unavailable: Option<String>,
}

impl KernelLog {
    /// Opens `/dev/kmsg` and skips what is already there.
    pub(crate) fn open() -> KernelLog {
        let opened = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open("/dev/kmsg")
            .and_then(|mut f| f.seek(SeekFrom::End(0)).map(|_| f));
        match opened {
            Ok(file) => KernelLog {
                file: Some(file),
                unavailable: None,
            },
            Err(e) => KernelLog {
                file: None,
                unavailable: Some(format!("/dev/kmsg cannot be read here: {e}")),
            },
        }
    }

    /// The messages logged since the last call, without their priority and timestamp prefix.
    pub(crate) fn read_new(&mut self) -> Vec<String> {
        let Some(file) = self.file.as_mut() else {
            return Vec::new();
        };
        let mut out = Vec::new();
        let mut buf = vec![0u8; 8192];
        loop {
            match file.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => out.extend(parse_record(&buf[..n])),
                // EPIPE: older records were overwritten while we were away; keep reading.
                Err(e) if e.raw_os_error() == Some(libc::EPIPE) => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(_) => break,
            }
        }
        out
    }
}

/// `PRI,SEQ,TS,FLAGS;message\n key=value...` -> `message`.
fn parse_record(raw: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(raw);
    let first = text.lines().next()?;
    let (_, message) = first.split_once(';')?;
    Some(message.to_owned())
}

#[cfg(test)]
mod tests {
    use super::parse_record;

    #[test]
    fn records_lose_their_prefix_and_dictionary() {
        let raw = b"3,1234,2081409741,-;overlayfs: workdir and upperdir must reside under the same mount\n SUBSYSTEM=x\n";
        assert_eq!(
            parse_record(raw).as_deref(),
            Some("overlayfs: workdir and upperdir must reside under the same mount")
        );
        assert_eq!(parse_record(b"garbage"), None);
    }
}
