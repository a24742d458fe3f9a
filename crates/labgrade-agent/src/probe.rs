//! Capabilities are found by trying them in the lab's own namespaces: mount the overlay, set the
//! xattr, make and mount the XFS image. A kernel version says nothing reliable about any of these
//! (distributions backport and configure away), so it is never consulted.

use std::fs;
use std::path::Path;
use std::process::Command;

use labgrade_spec::Capability;
use nix::mount::{MntFlags, MsFlags, mount, umount2};

use crate::kmsg::KernelLog;
use crate::proto::ProbeResult;

/// Tries one capability under `scratch` (a private tmpfs directory it may fill and leave).
pub(crate) fn probe(cap: Capability, scratch: &Path, kmsg: &mut KernelLog) -> ProbeResult {
    let dir = scratch.join(cap.as_str());
    let result = fs::create_dir_all(&dir)
        .map_err(|e| format!("cannot make a scratch dir: {e}"))
        .and_then(|()| match cap {
            Capability::Overlay => overlay_mount(&dir, "", kmsg),
            Capability::Metacopy => overlay_mount(&dir, ",metacopy=on", kmsg),
            Capability::TrustedXattr => trusted_xattr(&dir),
            Capability::Xfs => xfs(&dir, &[], kmsg),
            Capability::XfsV4 => xfs(&dir, &["-m", "crc=0", "-n", "ftype=0"], kmsg),
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

fn run(cmd: &mut Command) -> Result<(), String> {
    let shown = format!("{cmd:?}").replace('"', "");
    let out = cmd.output().map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => format!("{shown}: command not found (install xfsprogs)"),
        _ => format!("{shown}: {e}"),
    })?;
    if out.status.success() {
        Ok(())
    } else {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let first = stderr
            .lines()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("")
            .trim();
        Err(format!("{shown} failed ({}): {first}", out.status))
    }
}

fn xfs(dir: &Path, mkfs_args: &[&str], kmsg: &mut KernelLog) -> Result<String, String> {
    let image = dir.join("xfs.img");
    let mnt = dir.join("mnt");
    fs::create_dir_all(&mnt).map_err(|e| format!("mkdir: {e}"))?;
    // mkfs.xfs refuses filesystems under 300 MiB; the file is sparse, so this costs nothing.
    fs::File::create(&image)
        .and_then(|f| f.set_len(300 << 20))
        .map_err(|e| format!("cannot make the image file: {e}"))?;
    run(Command::new("mkfs.xfs")
        .args(["-q", "-f"])
        .args(mkfs_args)
        .arg(&image))?;
    run(Command::new("xfs_info").arg("-V"))?;
    kmsg.read_new();
    let mounted = run(Command::new("mount")
        .args(["-t", "xfs", "-o", "loop"])
        .arg(&image)
        .arg(&mnt));
    match mounted {
        Ok(()) => {
            // `mount -o loop` sets autoclear: the loop device goes with the unmount.
            let _ = umount2(&mnt, MntFlags::empty());
            kmsg.read_new();
            Ok(format!(
                "mkfs.xfs {} and a loop mount succeeded",
                mkfs_args.join(" ")
            ))
        }
        Err(e) => Err(with_kernel_words(e, kmsg)),
    }
}
