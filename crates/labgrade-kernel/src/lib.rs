//! Bootable kernels for the qemu guest: a vmlinuz and its modules directory, ready for QEMU direct
//! kernel boot.
//!
//! A kernel comes from the Debian archive (`debian:6.1`, `debian:trixie`, `debian:6.1.0-50-amd64`),
//! from local files (`local:VMLINUZ:MODULES_DIR`) or from package files (`deb:PATH.deb`). Archive
//! and package kernels are unpacked once into a cache ([`KernelCache`]); every later fetch of the
//! same source is answered from the cache without touching the network. Archive access goes
//! through a private apt state under the cache, so the machine's apt is never changed.

mod apt;
mod cache;
mod debian;
mod error;
mod image;
mod layout;
mod mirror;
mod source;
#[cfg(test)]
mod test_support;
mod unpack;

use std::path::PathBuf;

pub use cache::{FetchOptions, KernelCache};
pub use error::KernelError;
pub use image::{Compression, ImageError, KernelImage, inspect, inspect_file};
pub use source::KernelSource;
pub use unpack::{BootImage, boot_image};

/// A kernel ready to boot: what the qemu guest needs to start it and build its initramfs.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Kernel {
    /// The source as given, e.g. `debian:6.1`; the guest is called `qemu:<name>`.
    pub name: String,
    /// `uname -r` of this kernel, e.g. `6.1.0-50-amd64` (the name of its modules directory).
    pub release: String,
    /// The Debian package version it came from, e.g. `6.1.176-1` (`None` for local kernels).
    pub package_version: Option<String>,
    /// The kernel image.
    pub vmlinuz: PathBuf,
    /// Its `lib/modules/<release>` directory: `kernel/` with the modules (`.ko`, `.ko.xz` or
    /// `.ko.zst`, as packaged), `modules.builtin` and `modules.order`. Debian packages ship no
    /// `modules.dep` (depmod writes it on install), so archive kernels have none.
    pub modules_dir: PathBuf,
}
