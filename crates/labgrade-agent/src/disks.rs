//! Scratch disks and probe images: finding a virtio disk by its serial, or putting a private
//! copy of an image on a loop device, and reaching host files the lab's tmpfs hides.

use std::fs::{self, File, OpenOptions};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use nix::fcntl::{OFlag, open, openat};
use nix::sys::stat::Mode;

use crate::loopdev::{self, LoopDevice};
use labgrade_proto::DiskSource;

/// `BLKFLSBUF`: drop the block device's cached pages.
const BLKFLSBUF: libc::c_ulong = 0x1261;

/// Host files, as the agent found them before its tmpfs covered `/tmp`.
#[derive(Debug)]
pub(crate) struct HostFiles {
    tmp: Option<OwnedFd>,
}

impl HostFiles {
    /// Must be called before the private tmpfs goes onto `/tmp`.
    pub(crate) fn before_namespaces() -> HostFiles {
        HostFiles {
            tmp: open(
                "/tmp",
                OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
                Mode::empty(),
            )
            .ok(),
        }
    }

    /// Opens a host file read-only; paths under `/tmp` go through the host's `/tmp`.
    pub(crate) fn open(&self, path: &str) -> std::io::Result<File> {
        if let (Some(rest), Some(tmp)) = (path.strip_prefix("/tmp/"), &self.tmp) {
            let fd = openat(tmp, rest, OFlag::O_RDONLY | OFlag::O_CLOEXEC, Mode::empty())?;
            return Ok(File::from(fd));
        }
        File::open(path)
    }
}

/// A disk handed to the lab; dropping it releases what the agent holds (a loop device).
#[derive(Debug)]
pub(crate) struct AttachedDisk {
    pub(crate) device: PathBuf,
    _loop: Option<LoopDevice>,
}

/// Makes the disk `source` ready: a virtio disk by serial, or a private copy of an image on a
/// loop device. An image is copied to `copy_to` (on the lab's tmpfs).
pub(crate) fn attach(
    source: &DiskSource,
    host: &HostFiles,
    copy_to: &Path,
) -> Result<AttachedDisk, String> {
    match source {
        DiskSource::Block { serial } => {
            let device = find_by_serial(serial)?;
            // The VM's host rewrote the disk since its last user: drop any page the guest kernel
            // still caches from before.
            let f = OpenOptions::new()
                .read(true)
                .open(&device)
                .map_err(|e| format!("cannot open {}: {e}", device.display()))?;
            // SAFETY: BLKFLSBUF takes no argument.
            if unsafe { libc::ioctl(f.as_raw_fd(), BLKFLSBUF, 0) } < 0 {
                return Err(format!(
                    "cannot flush {}: {}",
                    device.display(),
                    std::io::Error::last_os_error()
                ));
            }
            Ok(AttachedDisk {
                device,
                _loop: None,
            })
        }
        DiskSource::Image { path } => {
            let image = host
                .open(path)
                .map_err(|e| format!("cannot read the disk image {path}: {e}"))?;
            let len = image
                .metadata()
                .map_err(|e| format!("cannot stat {path}: {e}"))?
                .size();
            let copy_path = copy_to;
            let copy = OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .open(copy_path)
                .and_then(|c| c.set_len(len).map(|()| c))
                .and_then(|c| labgrade_disk::copy_sparse(&image, &c).map(|_| c))
                .map_err(|e| format!("cannot copy {path} to {}: {e}", copy_path.display()))?;
            let dev = loopdev::attach(&copy, false)
                .map_err(|e| format!("cannot attach a loop device: {e}"))?;
            Ok(AttachedDisk {
                device: dev.path.clone(),
                _loop: Some(dev),
            })
        }
    }
}

fn find_by_serial(serial: &str) -> Result<PathBuf, String> {
    let entries = fs::read_dir("/sys/block").map_err(|e| format!("cannot list /sys/block: {e}"))?;
    for entry in entries.flatten() {
        let found = fs::read_to_string(entry.path().join("serial")).unwrap_or_default();
        if found.trim() == serial {
            return Ok(Path::new("/dev").join(entry.file_name()));
        }
    }
    Err(format!("no block device has the serial {serial}"))
}
