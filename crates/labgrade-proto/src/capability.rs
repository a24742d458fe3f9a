//! What a lab may need from a guest. Each is probed on the guest itself (by trying it), never
//! guessed from a kernel version.

use std::fmt;
use std::str::FromStr;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A guest feature a lab can declare in `needs = [...]`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum Capability {
    /// An overlay mount with lowerdir, upperdir and workdir succeeds.
    Overlay,
    /// `trusted.*` xattrs can be set: real root, as the lesson assumes. Overlay keeps opaque and
    /// metacopy marks there; in a user namespace it cannot without the `userxattr` option.
    TrustedXattr,
    /// The overlay mount option `metacopy=on` is accepted.
    Metacopy,
    /// An XFS image made with `mkfs.xfs` mounts on a loop device.
    Xfs,
    /// An ext4 image made with `mkfs.ext4` mounts on a loop device.
    Ext4,
    /// An XFS V4 image (`-m crc=0 -n ftype=0`) mounts: the kernel was built with XFS V4 support.
    XfsV4,
    /// Docker's daemon and client are installed (dockerd, docker, containerd, runc): labgrade
    /// starts its own dockerd in the lab's session. Added by `engines = ["docker"]`.
    Docker,
    /// Podman and runc are installed: labgrade runs podman with its own storage root in the lab's
    /// session. Added by `engines = ["podman"]`.
    Podman,
}

impl Capability {
    /// Every capability, in the order probes run.
    pub const ALL: [Capability; 8] = [
        Capability::Overlay,
        Capability::TrustedXattr,
        Capability::Metacopy,
        Capability::Xfs,
        Capability::XfsV4,
        Capability::Ext4,
        Capability::Docker,
        Capability::Podman,
    ];

    /// The word used in lab files.
    pub fn as_str(self) -> &'static str {
        match self {
            Capability::Overlay => "overlay",
            Capability::TrustedXattr => "trusted-xattr",
            Capability::Metacopy => "metacopy",
            Capability::Xfs => "xfs",
            Capability::XfsV4 => "xfs-v4",
            Capability::Ext4 => "ext4",
            Capability::Docker => "docker",
            Capability::Podman => "podman",
        }
    }

    /// What the capability means, for `labgrade list` and error help.
    pub fn meaning(self) -> &'static str {
        match self {
            Capability::Overlay => "overlay mounts work",
            Capability::TrustedXattr => "trusted.* xattrs can be set (real root)",
            Capability::Metacopy => "overlay accepts metacopy=on",
            Capability::Xfs => "mkfs.xfs works and an XFS image mounts on a loop device",
            Capability::XfsV4 => "the kernel mounts XFS V4 (crc=0, ftype=0) images",
            Capability::Ext4 => "an ext4 image mounts on a loop device",
            Capability::Docker => "dockerd, docker, containerd and runc are installed",
            Capability::Podman => "podman and runc are installed",
        }
    }
}

impl fmt::Display for Capability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The word in a lab file is not a known capability.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownCapability;

impl FromStr for Capability {
    type Err = UnknownCapability;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Capability::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or(UnknownCapability)
    }
}
