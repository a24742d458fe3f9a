//! The container image labs run: a root filesystem of one static busybox, as a tar any engine
//! imports (`docker import`, `podman import`), made once and kept, keyed by busybox's digest.
//! No registry is needed; a second call for the same busybox does no work but the digest.

use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::Command;

use labgrade_fs::{remove_stale_scratch, scratch_path};
use sha2::{Digest, Sha256};

/// Bumped when the rootfs's layout changes, so an old tar is not reused.
const LAYOUT: &[u8] = b"labgrade-busybox-rootfs-1";

/// Why the image's rootfs could not be made.
#[derive(Debug, thiserror::Error)]
pub enum RootfsError {
    /// No busybox on PATH.
    #[error(
        "busybox is not installed (apt-get install busybox-static): the container image is made from it"
    )]
    NoBusybox,
    /// Busybox needs a dynamic loader the image would not have.
    #[error("{0} is dynamically linked: the image has no libc (apt-get install busybox-static)")]
    Dynamic(PathBuf),
    /// A file could not be read or written.
    #[error("cannot make the image rootfs at {path}: {source}")]
    Io {
        /// Where.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// `tar` or `busybox --list` failed.
    #[error("{command} failed: {stderr}")]
    Tool {
        /// The command.
        command: String,
        /// What it said.
        stderr: String,
    },
}

/// The rootfs tar of the busybox found on PATH, in `dir` (made now if it is not there).
pub fn busybox_rootfs(dir: &Path) -> Result<PathBuf, RootfsError> {
    let busybox = crate::find_program("busybox").ok_or(RootfsError::NoBusybox)?;
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| RootfsError::Io { path, source }
    };
    let bytes = fs::read(&busybox).map_err(io(&busybox))?;
    if is_dynamic(&bytes) {
        return Err(RootfsError::Dynamic(busybox));
    }
    let mut h = Sha256::new();
    h.update(LAYOUT);
    h.update(&bytes);
    let digest = h.finalize();
    let hex: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
    let path = dir.join(format!("busybox-{hex}.tar"));
    if path.is_file() {
        return Ok(path);
    }
    fs::create_dir_all(dir).map_err(io(dir))?;
    remove_stale_scratch(dir);
    let tree = scratch_path(dir, "rootfs");
    let tar = scratch_path(dir, "rootfs-tar");
    let made = make_tree(&tree, &busybox, &bytes)
        .and_then(|()| pack(&tree, &tar))
        .and_then(|()| fs::rename(&tar, &path).map_err(io(&path)));
    let _ = fs::remove_dir_all(&tree);
    let _ = fs::remove_file(&tar);
    made.map(|()| path)
}

/// An ELF with a program interpreter (`PT_INTERP`) needs a loader: look for its usual names.
fn is_dynamic(elf: &[u8]) -> bool {
    let head = &elf[..elf.len().min(4096)];
    [
        b"/lib64/ld-linux".as_slice(),
        b"/lib/ld-linux",
        b"/lib/ld-musl",
    ]
    .iter()
    .any(|needle| head.windows(needle.len()).any(|w| w == *needle))
}

fn make_tree(tree: &Path, busybox: &Path, bytes: &[u8]) -> Result<(), RootfsError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| RootfsError::Io { path, source }
    };
    for d in [
        "bin", "etc", "tmp", "proc", "sys", "dev", "root", "data", "var",
    ] {
        fs::create_dir_all(tree.join(d)).map_err(io(&tree.join(d)))?;
    }
    fs::set_permissions(tree.join("tmp"), fs::Permissions::from_mode(0o1777))
        .map_err(io(&tree.join("tmp")))?;
    let bin = tree.join("bin/busybox");
    fs::write(&bin, bytes).map_err(io(&bin))?;
    fs::set_permissions(&bin, fs::Permissions::from_mode(0o755)).map_err(io(&bin))?;
    let list = Command::new(busybox)
        .arg("--list")
        .output()
        .map_err(io(busybox))?;
    if !list.status.success() {
        return Err(RootfsError::Tool {
            command: format!("{} --list", busybox.display()),
            stderr: String::from_utf8_lossy(&list.stderr).into_owned(),
        });
    }
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        let applet = applet.trim();
        if applet.is_empty() || applet == "busybox" || applet.contains('/') {
            continue;
        }
        let link = tree.join("bin").join(applet);
        symlink("busybox", &link).map_err(io(&link))?;
    }
    for (file, text) in [
        ("etc/passwd", "root:x:0:0:root:/root:/bin/sh\n"),
        ("etc/group", "root:x:0:\n"),
        (
            "etc/os-release",
            "NAME=\"labgrade busybox\"\nID=labgrade-busybox\n",
        ),
    ] {
        fs::write(tree.join(file), text).map_err(io(&tree.join(file)))?;
    }
    Ok(())
}

/// Packs the tree with owners 0:0 and fixed times, so the same busybox makes the same tar.
fn pack(tree: &Path, tar: &Path) -> Result<(), RootfsError> {
    let mut cmd = Command::new("tar");
    cmd.args([
        "--numeric-owner",
        "--owner=0",
        "--group=0",
        "--mtime=@0",
        "--sort=name",
        "-C",
    ])
    .arg(tree)
    .arg("-cf")
    .arg(tar)
    .arg(".");
    let out = cmd.output().map_err(|source| RootfsError::Io {
        path: tar.to_path_buf(),
        source,
    })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(RootfsError::Tool {
            command: format!("tar -cf {} .", tar.display()),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rootfs_is_made_once_per_busybox() -> Result<(), Box<dyn std::error::Error>> {
        if crate::find_program("busybox").is_none() {
            println!("busybox is not installed: nothing to pack");
            return Ok(());
        }
        let dir = tempfile::tempdir()?;
        let first = busybox_rootfs(dir.path())?;
        let made = fs::metadata(&first)?.modified()?;
        let second = busybox_rootfs(dir.path())?;
        assert_eq!(first, second);
        assert_eq!(fs::metadata(&second)?.modified()?, made, "no second build");
        let list = Command::new("tar").arg("-tvf").arg(&first).output()?;
        let list = String::from_utf8_lossy(&list.stdout);
        assert!(list.contains("./bin/sh -> busybox"), "{list}");
        assert!(list.contains("./etc/os-release"), "{list}");
        let left: Vec<_> = fs::read_dir(dir.path())?
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(left.len(), 1, "only the tar is kept: {left:?}");
        Ok(())
    }

    #[test]
    fn a_loader_path_means_dynamic() {
        assert!(is_dynamic(b"\x7fELF....../lib64/ld-linux-x86-64.so.2...."));
        assert!(!is_dynamic(b"\x7fELF static"));
    }
}
