//! Capabilities are found by trying them in the lab's own namespaces: mount the overlay, set the
//! xattr, mount the XFS image. A kernel version says nothing reliable about any of these
//! (distributions backport and configure away), so it is never consulted.

use std::fs::{self, File};
use std::path::Path;

use labgrade_proto::Capability;
use nix::mount::{MntFlags, MsFlags, mount, umount2};

use crate::kmsg::KernelLog;
use crate::loopdev;
use labgrade_proto::ProbeResult;

/// Tries one capability under `scratch` (a private tmpfs directory it may fill and leave);
/// `image` is the filesystem image the XFS probes mount, made by labgrade on the host.
pub(crate) fn probe(
    cap: Capability,
    image: Option<&File>,
    scratch: &Path,
    kmsg: &mut KernelLog,
) -> ProbeResult {
    let dir = scratch.join(cap.as_str());
    let result = fs::create_dir_all(&dir)
        .map_err(|e| format!("cannot make a scratch dir: {e}"))
        .and_then(|()| match cap {
            Capability::Overlay => overlay_mount(&dir, "", kmsg),
            Capability::Metacopy => overlay_mount(&dir, ",metacopy=on", kmsg),
            Capability::TrustedXattr => trusted_xattr(&dir),
            Capability::Xfs | Capability::XfsV4 => mount_image(image, "xfs", kmsg, &dir),
            Capability::Ext4 => mount_image(image, "ext4", kmsg, &dir),
            Capability::Docker => crate::engine::probe(labgrade_proto::Engine::Docker),
            Capability::Podman => crate::engine::probe(labgrade_proto::Engine::Podman),
        });
    let _ = fs::remove_dir_all(&dir);
    match result {
        Ok(detail) => ProbeResult {
            cap,
            available: true,
            detail,
        },
        Err(detail) => ProbeResult {
            cap,
            available: false,
            detail,
        },
    }
}

fn with_kernel_words(mut msg: String, kmsg: &mut KernelLog) -> String {
    let lines = kmsg.read_new();
    if !lines.is_empty() {
        msg.push_str("; kernel: ");
        msg.push_str(&lines.join(" / "));
    }
    msg
}

fn overlay_mount(dir: &Path, extra: &str, kmsg: &mut KernelLog) -> Result<String, String> {
    for d in ["lower", "upper", "work", "merged"] {
        fs::create_dir_all(dir.join(d)).map_err(|e| format!("mkdir {d}: {e}"))?;
    }
    let opts = format!(
        "lowerdir={0}/lower,upperdir={0}/upper,workdir={0}/work{extra}",
        dir.display()
    );
    kmsg.read_new();
    let merged = dir.join("merged");
    match mount(
        Some("overlay"),
        &merged,
        Some("overlay"),
        MsFlags::empty(),
        Some(opts.as_str()),
    ) {
        Ok(()) => {
            let _ = umount2(&merged, MntFlags::MNT_DETACH);
            kmsg.read_new();
            Ok(format!("mount -t overlay -o ...{extra} succeeded"))
        }
        Err(e) => Err(with_kernel_words(
            format!(
                "mount -t overlay -o lowerdir=...,upperdir=...,workdir=...{extra} failed: {}",
                e.desc()
            ),
            kmsg,
        )),
    }
}

fn trusted_xattr(dir: &Path) -> Result<String, String> {
    let f = dir.join("file");
    fs::write(&f, "").map_err(|e| format!("cannot create a file: {e}"))?;
    xattr::set(&f, "trusted.labgrade.probe", b"1")
        .map(|()| "setting trusted.labgrade.probe succeeded".to_owned())
        .map_err(|e| format!("setting a trusted.* xattr failed: {e} (it needs real root; a user namespace has only user.* xattrs)"))
}

fn mount_image(
    image: Option<&File>,
    fstype: &str,
    kmsg: &mut KernelLog,
    dir: &Path,
) -> Result<String, String> {
    let image = image.ok_or_else(|| {
        format!("no image to mount was given (labgrade makes one with mkfs.{fstype})")
    })?;
    let mnt = dir.join("mnt");
    fs::create_dir_all(&mnt).map_err(|e| format!("mkdir: {e}"))?;
    let device =
        loopdev::attach(image, true).map_err(|e| format!("cannot attach a loop device: {e}"))?;
    kmsg.read_new();
    match mount(
        Some(&device.path),
        &mnt,
        Some(fstype),
        MsFlags::MS_RDONLY,
        None::<&str>,
    ) {
        Ok(()) => {
            let _ = umount2(&mnt, MntFlags::empty());
            kmsg.read_new();
            Ok("a read-only mount of the image succeeded".into())
        }
        Err(e) => Err(with_kernel_words(
            format!("mount -t {fstype} -o ro of the image failed: {}", e.desc()),
            kmsg,
        )),
    }
}
