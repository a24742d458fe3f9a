//! Filesystem images for scratch disks and capability probes.
//!
//! `mkfs.xfs` zeroes a 64 MiB log: a few milliseconds on the host, more than half a second of
//! CPU inside a TCG guest. So images are made here, once, by the host's own mkfs (the very
//! binary the guest would run, since guests share the host's root), with their zero blocks
//! punched out: an image is a few hundred KiB of data in a sparse file. Guests copy only the
//! data ([`copy_sparse`]) onto a virtio disk or a loop device before a lab starts.

use std::fs::{self, File};
use std::os::fd::AsFd;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use labgrade_spec::DiskFormat;

use labgrade_fs::{remove_stale_scratch, scratch_path};
use nix::fcntl::{FallocateFlags, fallocate};
use nix::unistd::{Whence, lseek};
use sha2::{Digest, Sha256};

mod rootfs;
pub use rootfs::{RootfsError, busybox_rootfs};

/// Why an image could not be made.
#[derive(Debug, thiserror::Error)]
pub enum DiskError {
    /// The mkfs program is not installed on the host.
    #[error("mkfs.{fs} is not installed; install {package}")]
    NoMkfs {
        /// The filesystem.
        fs: String,
        /// The Debian package that has it.
        package: &'static str,
    },
    /// mkfs refused the options.
    #[error("{command} failed: {stderr}")]
    Mkfs {
        /// The command line.
        command: String,
        /// What it said.
        stderr: String,
    },
    /// The cache could not be written.
    #[error("cannot write the disk image {path}: {source}")]
    Io {
        /// Where.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// Images by format, kept in one directory of the cache.
#[derive(Debug, Clone)]
pub struct ImageCache {
    dir: PathBuf,
}

impl ImageCache {
    /// Images live in `dir` (created on first use).
    pub fn new(dir: PathBuf) -> ImageCache {
        ImageCache { dir }
    }

    /// The image for `format`, made now if it is not cached. Safe to call from many threads
    /// and processes at once: each writes its own file and renames it into place.
    pub fn image(&self, format: &DiskFormat) -> Result<PathBuf, DiskError> {
        let mkfs = format!("mkfs.{}", format.fs);
        let package = match format.fs {
            labgrade_spec::Filesystem::Ext4 => "e2fsprogs",
            labgrade_spec::Filesystem::Xfs => "xfsprogs",
        };
        let program = find_program(&mkfs).ok_or_else(|| DiskError::NoMkfs {
            fs: format.fs.to_string(),
            package,
        })?;
        let name = format!("{}-{}.img", format.fs, key(format, &program));
        image_in(&self.dir, &name, format, &program)
    }
}

/// The image `name` in `dir`, made there now if it is not there yet.
fn image_in(
    dir: &Path,
    name: &str,
    format: &DiskFormat,
    program: &Path,
) -> Result<PathBuf, DiskError> {
    let path = dir.join(name);
    if path.is_file() {
        return Ok(path);
    }
    let io = |source| DiskError::Io {
        path: path.clone(),
        source,
    };
    fs::create_dir_all(dir).map_err(io)?;
    remove_stale_scratch(dir);
    let tmp = scratch_path(dir, format.fs.as_str());
    let made = make(format, program, &tmp).and_then(|()| {
        fs::rename(&tmp, &path).map_err(|source| DiskError::Io {
            path: path.clone(),
            source,
        })
    });
    if made.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    made.map(|()| {
        tracing::debug!(image = %path.display(), format = %format.describe(), "disk image made");
        path
    })
}

fn make(format: &DiskFormat, program: &Path, tmp: &Path) -> Result<(), DiskError> {
    let io = |source| DiskError::Io {
        path: tmp.to_path_buf(),
        source,
    };
    File::create(tmp)
        .and_then(|f| f.set_len(format.size_mib << 20))
        .map_err(io)?;
    let force = match format.fs {
        labgrade_spec::Filesystem::Ext4 => "-F",
        labgrade_spec::Filesystem::Xfs => "-f",
    };
    let mut cmd = Command::new(program);
    cmd.args(["-q", force]).args(&format.mkfs).arg(tmp);
    let shown = format!("mkfs.{} {}", format.fs, format.mkfs.join(" "));
    let out = cmd.output().map_err(io)?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        return Err(DiskError::Mkfs {
            command: shown.trim_end().to_owned(),
            stderr: stderr
                .lines()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("")
                .trim()
                .to_owned(),
        });
    }
    punch_zeros(tmp).map_err(io)
}

/// Replaces every all-zero 64 KiB block of `path`'s data by a hole.
fn punch_zeros(path: &Path) -> std::io::Result<()> {
    const BLOCK: u64 = 64 << 10;
    let file = fs::OpenOptions::new().read(true).write(true).open(path)?;
    let punch = |at: u64, len: u64| {
        fallocate(
            file.as_fd(),
            FallocateFlags::FALLOC_FL_PUNCH_HOLE | FallocateFlags::FALLOC_FL_KEEP_SIZE,
            i64::try_from(at).unwrap_or(i64::MAX),
            i64::try_from(len).unwrap_or(i64::MAX),
        )
    };
    // mkfs preallocates (its log, as unwritten extents): allocated, yet no data to SEEK_DATA.
    let regions = data_regions(&file)?;
    let mut gap_start = 0;
    for &(start, end) in regions.iter().chain([&(file.metadata()?.size(), 0)]) {
        if start > gap_start {
            punch(gap_start, start - gap_start)?;
        }
        gap_start = end;
    }
    let mut buf = vec![0u8; BLOCK as usize];
    for (start, end) in regions {
        let mut at = start;
        while at < end {
            let want = (end - at).min(BLOCK);
            let n = file.read_at(&mut buf[..want as usize], at)?;
            if n == 0 {
                break;
            }
            if buf[..n].iter().all(|b| *b == 0) {
                punch(at, n as u64)?;
            }
            at += n as u64;
        }
    }
    Ok(())
}

/// The `[start, end)` byte ranges of `file` that hold data, by `SEEK_DATA` / `SEEK_HOLE`.
fn data_regions(file: &File) -> std::io::Result<Vec<(u64, u64)>> {
    let len = i64::try_from(file.metadata()?.size()).unwrap_or(i64::MAX);
    let mut regions = Vec::new();
    let mut pos: i64 = 0;
    while pos < len {
        let data = match lseek(file.as_fd(), pos, Whence::SeekData) {
            Ok(d) => d,
            Err(nix::errno::Errno::ENXIO) => break, // nothing but hole after pos
            Err(e) => return Err(e.into()),
        };
        let hole = lseek(file.as_fd(), data, Whence::SeekHole)?;
        regions.push((
            u64::try_from(data).unwrap_or(0),
            u64::try_from(hole).unwrap_or(0),
        ));
        pos = hole;
    }
    Ok(regions)
}

/// Copies `from` onto `to` (a file or a block device) from offset 0, writing only the data
/// regions of `from`: `to` must read as zeros elsewhere already, as a freshly truncated file
/// does. Returns the bytes written.
pub fn copy_sparse(from: &File, to: &File) -> std::io::Result<u64> {
    let mut buf = vec![0u8; 1 << 20];
    let mut written = 0u64;
    for (start, end) in data_regions(from)? {
        let mut at = start;
        while at < end {
            let want = usize::try_from(end - at)
                .unwrap_or(usize::MAX)
                .min(buf.len());
            let n = from.read_at(&mut buf[..want], at)?;
            if n == 0 {
                break;
            }
            to.write_all_at(&buf[..n], at)?;
            written += n as u64;
            at += n as u64;
        }
    }
    Ok(written)
}

/// A key that changes with anything that changes the image: the format and the mkfs binary.
fn key(format: &DiskFormat, program: &Path) -> String {
    let mut h = Sha256::new();
    h.update(format.fs.as_str());
    for word in &format.mkfs {
        h.update([0]);
        h.update(word);
    }
    h.update(format.size_mib.to_le_bytes());
    if let Ok(meta) = fs::metadata(program) {
        h.update(meta.size().to_le_bytes());
        h.update(meta.mtime().to_le_bytes());
        h.update(meta.ino().to_le_bytes());
    }
    h.finalize()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/sbin:/usr/bin:/sbin:/bin".into());
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/sbin".into()])
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;
    use labgrade_spec::Filesystem;

    /// The size of `file` in bytes that hold data (not holes).
    fn allocated_bytes(file: &File) -> std::io::Result<u64> {
        Ok(file.metadata()?.blocks() * 512)
    }

    fn xfs_v4() -> DiskFormat {
        DiskFormat {
            fs: Filesystem::Xfs,
            mkfs: ["-m", "crc=0", "-n", "ftype=0"].map(String::from).to_vec(),
            size_mib: 300,
        }
    }

    #[test]
    fn an_image_is_made_once_sparse_and_copies_byte_for_byte()
    -> Result<(), Box<dyn std::error::Error>> {
        if find_program("mkfs.xfs").is_none() {
            eprintln!("SKIPPED: mkfs.xfs is not installed (apt-get install xfsprogs)");
            return Ok(());
        }
        let dir = tempfile::tempdir()?;
        let cache = ImageCache::new(dir.path().join("disks"));
        let image = cache.image(&xfs_v4())?;
        let made = fs::metadata(&image)?.modified()?;
        assert_eq!(
            cache.image(&xfs_v4())?,
            image,
            "the same format, the same file"
        );
        assert_eq!(fs::metadata(&image)?.modified()?, made, "not made twice");

        let file = File::open(&image)?;
        assert_eq!(file.metadata()?.len(), 300 << 20);
        let allocated = allocated_bytes(&file)?;
        assert!(
            allocated < 8 << 20,
            "the 64 MiB log is punched out: {allocated} bytes"
        );

        let copy_path = dir.path().join("copy.img");
        let copy = fs::OpenOptions::new()
            .create(true)
            .truncate(true)
            .read(true)
            .write(true)
            .open(&copy_path)?;
        copy.set_len(300 << 20)?;
        let written = copy_sparse(&file, &copy)?;
        assert!(
            written > 0 && written <= allocated,
            "{written} of {allocated}"
        );
        assert_eq!(
            digest(&image)?,
            digest(&copy_path)?,
            "the copy reads as the image"
        );

        let other = DiskFormat {
            mkfs: vec![],
            ..xfs_v4()
        };
        assert_ne!(cache.image(&other)?, image, "other options, another image");
        Ok(())
    }

    fn digest(path: &Path) -> std::io::Result<Vec<u8>> {
        let mut h = Sha256::new();
        std::io::copy(&mut File::open(path)?, &mut h)?;
        Ok(h.finalize().to_vec())
    }

    #[test]
    fn options_mkfs_refuses_are_an_error_that_quotes_it() -> Result<(), Box<dyn std::error::Error>>
    {
        if find_program("mkfs.xfs").is_none() {
            eprintln!("SKIPPED: mkfs.xfs is not installed (apt-get install xfsprogs)");
            return Ok(());
        }
        let dir = tempfile::tempdir()?;
        let cache = ImageCache::new(dir.path().to_path_buf());
        let bad = DiskFormat {
            mkfs: vec!["-n".into(), "ftype=7".into()],
            ..xfs_v4()
        };
        match cache.image(&bad) {
            Err(DiskError::Mkfs { command, stderr }) => {
                assert_eq!(command, "mkfs.xfs -n ftype=7");
                assert!(!stderr.is_empty());
            }
            other => panic!("expected a mkfs error, got {other:?}"),
        }
        let leftovers: Vec<_> = fs::read_dir(dir.path())?.collect();
        assert!(
            leftovers.is_empty(),
            "no half-made image left: {leftovers:?}"
        );
        Ok(())
    }
}
