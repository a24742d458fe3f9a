//! A writer for the `newc` cpio format, the one format the kernel unpacks as an initramfs.

/// Builds an archive in memory; entries keep the order they are added in (parents first).
#[derive(Debug, Default)]
pub(crate) struct CpioWriter {
    out: Vec<u8>,
    ino: u32,
}

const S_IFDIR: u32 = 0o040_000;
const S_IFREG: u32 = 0o100_000;
const S_IFLNK: u32 = 0o120_000;

impl CpioWriter {
    /// A directory with permissions `mode`.
    pub(crate) fn dir(&mut self, path: &str, mode: u32) {
        self.entry(path, S_IFDIR | mode, &[]);
    }

    /// A regular file.
    pub(crate) fn file(&mut self, path: &str, mode: u32, data: &[u8]) {
        self.entry(path, S_IFREG | mode, data);
    }

    /// A symlink to `target`.
    pub(crate) fn symlink(&mut self, path: &str, target: &str) {
        self.entry(path, S_IFLNK | 0o777, target.as_bytes());
    }

    fn entry(&mut self, path: &str, mode: u32, data: &[u8]) {
        self.ino += 1;
        let name_len = u32::try_from(path.len() + 1).unwrap_or(u32::MAX);
        let size = u32::try_from(data.len()).unwrap_or(u32::MAX);
        let nlink = if mode & S_IFDIR == S_IFDIR { 2 } else { 1 };
        // magic, ino, mode, uid, gid, nlink, mtime, filesize, devmajor, devminor, rdevmajor,
        // rdevminor, namesize, check: 13 fields of 8 hex digits.
        let header = format!(
            "070701{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}",
            self.ino, mode, 0, 0, nlink, 0, size, 0, 0, 0, 0, name_len, 0
        );
        self.out.extend_from_slice(header.as_bytes());
        self.out.extend_from_slice(path.as_bytes());
        self.out.push(0);
        self.pad();
        self.out.extend_from_slice(data);
        self.pad();
    }

    fn pad(&mut self) {
        while !self.out.len().is_multiple_of(4) {
            self.out.push(0);
        }
    }

    /// Closes the archive with the `TRAILER!!!` entry.
    pub(crate) fn finish(mut self) -> Vec<u8> {
        self.entry("TRAILER!!!", 0, &[]);
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::CpioWriter;
    use std::process::Command;

    #[test]
    fn cpio_lists_what_was_written() -> Result<(), Box<dyn std::error::Error>> {
        let mut w = CpioWriter::default();
        w.dir("bin", 0o755);
        w.file("bin/hello", 0o755, b"#!/bin/sh\necho hi\n");
        w.symlink("bin/sh", "busybox");
        let bytes = w.finish();
        assert_eq!(&bytes[..6], b"070701");
        assert!(bytes.len().is_multiple_of(4));
        // Cross-check with an independent reader where one is installed.
        let dir = tempfile::tempdir()?;
        let archive = dir.path().join("a.cpio");
        std::fs::write(&archive, &bytes)?;
        let Ok(out) = Command::new("busybox")
            .args(["cpio", "-t", "-F"])
            .arg(&archive)
            .output()
        else {
            eprintln!("SKIPPED cross-check: busybox not installed");
            return Ok(());
        };
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "bin\nbin/hello\nbin/sh\n"
        );
        Ok(())
    }
}
