//! The scratch disk a root overlay's upper can live on (`--overlay-root=disk:SIZE`): a sparse
//! memfd formatted ext4 by the host's mkfs, so nothing is left on the host's disk, even when
//! labgrade is killed (the memfd goes with the last process holding it: labgrade and QEMU).

use std::fs::File;
use std::os::fd::AsRawFd;
use std::process::{Command, Stdio};

use nix::sys::memfd::{MFdFlags, memfd_create};

/// A memfd of `bytes`, formatted ext4 (lazy init: only metadata is written).
pub(crate) fn make(bytes: u64) -> std::io::Result<File> {
    let fd = memfd_create("labgrade-upper", MFdFlags::MFD_CLOEXEC).map_err(std::io::Error::from)?;
    let file = File::from(fd);
    file.set_len(bytes)?;
    let path = format!("/proc/{}/fd/{}", std::process::id(), file.as_raw_fd());
    let out = Command::new("mkfs.ext4")
        .args([
            "-q",
            "-F",
            "-E",
            "lazy_itable_init=1,lazy_journal_init=1,nodiscard",
            "-L",
            "labgrade-upper",
            &path,
        ])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| {
            std::io::Error::other(format!(
                "cannot run mkfs.ext4 (apt-get install e2fsprogs): {e}"
            ))
        })?;
    if !out.status.success() {
        return Err(std::io::Error::other(format!(
            "mkfs.ext4 for the overlay upper disk failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(file)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_upper_disk_is_ext4_and_sparse() -> std::io::Result<()> {
        use std::io::{Read, Seek, SeekFrom};
        use std::os::unix::fs::MetadataExt;
        let mut disk = super::make(256 << 20)?;
        let meta = disk.metadata()?;
        assert_eq!(meta.len(), 256 << 20);
        assert!(meta.blocks() * 512 < 64 << 20, "{} blocks", meta.blocks());
        // ext4's superblock magic 0xEF53 at byte 1024 + 0x38.
        disk.seek(SeekFrom::Start(1024 + 0x38))?;
        let mut magic = [0u8; 2];
        disk.read_exact(&mut magic)?;
        assert_eq!(magic, [0x53, 0xef]);
        Ok(())
    }
}
