//! Scratch disks: a block device the guest hands a lab, already formatted, so "upper on ext4" or
//! "upper on XFS with ftype=0" is a real filesystem on a real block device (a virtio disk in a
//! VM, a loop device on the host) and the lab's time goes to the lesson's commands, not to mkfs.

use std::fmt;

use serde::{Deserialize, Serialize};

use labgrade_proto::Capability;

/// The largest disk a lab may ask for: a VM's scratch slots are this big (sparse).
pub const MAX_DISK_MIB: u64 = 4096;
/// What a disk is unless the lab says otherwise: the smallest size `mkfs.xfs` accepts.
pub const DEFAULT_DISK_MIB: u64 = 300;

/// Filesystems a scratch disk can be formatted with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Filesystem {
    /// `mkfs.ext4`.
    Ext4,
    /// `mkfs.xfs`.
    Xfs,
}

impl Filesystem {
    /// Every filesystem, for error help.
    pub const ALL: [Filesystem; 2] = [Filesystem::Ext4, Filesystem::Xfs];

    /// The word in lab files and the `mkfs.<fs>` suffix.
    pub fn as_str(self) -> &'static str {
        match self {
            Filesystem::Ext4 => "ext4",
            Filesystem::Xfs => "xfs",
        }
    }

    /// What a guest must offer to mount it: probed by mounting such an image, which also
    /// shows the guest can hand a lab a block device at all.
    pub fn needs(self) -> Capability {
        match self {
            Filesystem::Ext4 => Capability::Ext4,
            Filesystem::Xfs => Capability::Xfs,
        }
    }
}

impl fmt::Display for Filesystem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How to make one filesystem image: which mkfs, with which options, how big.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct DiskFormat {
    /// The filesystem.
    pub fs: Filesystem,
    /// Extra `mkfs.<fs>` options, e.g. `["-m", "crc=0", "-n", "ftype=0"]`.
    pub mkfs: Vec<String>,
    /// Size in MiB.
    pub size_mib: u64,
}

impl DiskFormat {
    /// `mkfs.xfs -m crc=0 -n ftype=0, 300 MiB`: how reports name it.
    pub fn describe(&self) -> String {
        let mut s = format!("mkfs.{}", self.fs);
        for word in &self.mkfs {
            s.push(' ');
            s.push_str(word);
        }
        format!("{s}, {} MiB", self.size_mib)
    }
}

/// A scratch disk a lab asks for with `[[disk]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disk {
    /// Lower-case name; the lab finds the device in `$DISK_<NAME>` (see [`Disk::env_var`]).
    pub name: String,
    /// What is on it when the lab starts.
    pub format: DiskFormat,
}

impl Disk {
    /// The shell variable holding the device path, e.g. `DISK_XFS` for `name = "xfs"`.
    pub fn env_var(&self) -> String {
        format!("DISK_{}", self.name.to_ascii_uppercase())
    }
}

/// Parses `300M`, `1G` or a plain number of MiB.
pub(crate) fn parse_size_mib(text: &str) -> Option<u64> {
    let t = text.trim();
    let (digits, factor) = match t.as_bytes().last()? {
        b'M' | b'm' => (&t[..t.len() - 1], 1),
        b'G' | b'g' => (&t[..t.len() - 1], 1024),
        _ => (t, 1),
    };
    digits.parse::<u64>().ok()?.checked_mul(factor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_as_mib() {
        assert_eq!(parse_size_mib("300M"), Some(300));
        assert_eq!(parse_size_mib("2G"), Some(2048));
        assert_eq!(parse_size_mib("64"), Some(64));
        assert_eq!(parse_size_mib("big"), None);
        assert_eq!(parse_size_mib(""), None);
    }
}
