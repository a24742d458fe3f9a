//! A writable guest for existing test suites: an overlay over the read-only 9p root
//! (`--overlay-root`, upper on tmpfs or on a scratch disk), and host directories shared
//! read-write over their own 9p exports (`--rwdir HOST[:GUEST]`).
//!
//! Everything written to the overlay lives in the VM (its tmpfs, or a memfd QEMU holds as the
//! scratch disk), so it goes with the VM, even when labgrade is killed: there is no upper dir on
//! the host to clean up. Overlay's upper cannot live on 9p, hence tmpfs or a disk.

use std::fmt;
use std::path::{Component, Path, PathBuf};
use std::str::FromStr;

/// Where the root overlay's upper layer lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OverlayUpper {
    /// A tmpfs in the guest: fast, bounded by the guest's memory.
    Tmpfs,
    /// An ext4 scratch disk of this many bytes (sparse on the host: only what is written costs).
    Disk {
        /// The disk's size.
        bytes: u64,
    },
}

/// Smallest scratch disk upper: ext4 needs room for its journal.
pub const MIN_UPPER_DISK_BYTES: u64 = 64 << 20;
/// Largest scratch disk upper (the memfd is sparse, but the guest may fill it).
pub const MAX_UPPER_DISK_BYTES: u64 = 64 << 30;

impl FromStr for OverlayUpper {
    type Err = String;

    /// `tmpfs`, or `disk:SIZE` with SIZE in bytes or with a K, M, G suffix (`disk:2G`).
    fn from_str(s: &str) -> Result<OverlayUpper, String> {
        if s == "tmpfs" {
            return Ok(OverlayUpper::Tmpfs);
        }
        let Some(size) = s.strip_prefix("disk:") else {
            return Err(format!(
                "`{s}` is not an overlay upper: use --overlay-root (tmpfs) or --overlay-root=disk:SIZE, e.g. disk:2G"
            ));
        };
        let bytes = parse_size(size).ok_or_else(|| {
            format!(
                "`{size}` is not a size: write bytes or a number with K, M or G, e.g. disk:512M"
            )
        })?;
        if !(MIN_UPPER_DISK_BYTES..=MAX_UPPER_DISK_BYTES).contains(&bytes) {
            return Err(format!(
                "disk:{size} is out of range: the upper disk must be between 64M and 64G"
            ));
        }
        Ok(OverlayUpper::Disk { bytes })
    }
}

impl fmt::Display for OverlayUpper {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OverlayUpper::Tmpfs => f.write_str("tmpfs"),
            OverlayUpper::Disk { bytes } => write!(f, "disk:{}M", bytes >> 20),
        }
    }
}

/// `512M`, `2G`, `1048576`: bytes.
fn parse_size(s: &str) -> Option<u64> {
    let (digits, shift) = match s.as_bytes().last()? {
        b'K' | b'k' => (&s[..s.len() - 1], 10),
        b'M' | b'm' => (&s[..s.len() - 1], 20),
        b'G' | b'g' => (&s[..s.len() - 1], 30),
        _ => (s, 0),
    };
    let n: u64 = digits.parse().ok()?;
    n.checked_mul(1u64 << shift)
}

/// One host directory shared read-write with the guest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RwDir {
    /// The host directory (absolute, existing).
    pub host: PathBuf,
    /// Where the guest sees it (absolute); the host path when not given.
    pub guest: PathBuf,
}

impl FromStr for RwDir {
    type Err = String;

    /// `HOST_PATH[:GUEST_PATH]`. The host directory must exist; the guest path must be
    /// absolute, outside `/tmp` (each session's private tmpfs would hide it) and free of
    /// whitespace and commas (it travels on the kernel command line).
    fn from_str(s: &str) -> Result<RwDir, String> {
        let (host, guest) = match s.split_once(':') {
            Some((h, g)) => (h, Some(g)),
            None => (s, None),
        };
        let host = std::path::absolute(host)
            .map_err(|e| format!("--rwdir {s}: cannot make `{host}` absolute: {e}"))?;
        if !host.is_dir() {
            return Err(format!(
                "--rwdir {s}: {} is not a directory on this machine; create it first",
                host.display()
            ));
        }
        let guest = guest.map_or_else(|| host.clone(), PathBuf::from);
        check_guest_path(&guest).map_err(|why| format!("--rwdir {s}: {why}"))?;
        Ok(RwDir { host, guest })
    }
}

fn check_guest_path(guest: &Path) -> Result<(), String> {
    let text = guest.to_string_lossy();
    if !guest.is_absolute() {
        return Err(format!(
            "the guest path `{text}` must be absolute, e.g. HOST:/results"
        ));
    }
    if guest
        .components()
        .any(|c| matches!(c, Component::ParentDir | Component::CurDir))
    {
        return Err(format!(
            "the guest path `{text}` must not contain `.` or `..`"
        ));
    }
    if guest.parent().is_none() {
        return Err("the guest path cannot be `/`; name a directory, e.g. HOST:/results".into());
    }
    if guest.starts_with("/tmp") {
        return Err(format!(
            "the guest path `{text}` is under /tmp, which is each session's private tmpfs in the guest and would hide it; \
             choose another, e.g. HOST:/results"
        ));
    }
    if text
        .chars()
        .any(|c| c.is_whitespace() || c == ',' || c == ':')
    {
        return Err(format!(
            "the guest path `{text}` must not contain whitespace, `,` or `:`"
        ));
    }
    Ok(())
}

/// How writable the guest is beyond the per-session tmpfs: none of it by default.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WritableRoot {
    /// An overlay over the read-only root, and where its upper lives.
    pub overlay: Option<OverlayUpper>,
    /// Host directories shared read-write.
    pub rwdirs: Vec<RwDir>,
}

/// Kernel command-line word asking init for the root overlay: `tmpfs` or `disk`.
pub(crate) const OVERLAY_PARAM: &str = "labgrade.overlay";
/// Kernel command-line word, once per rwdir: `TAG:GUEST_PATH`.
pub(crate) const RWDIR_PARAM: &str = "labgrade.rwdir";
/// The serial of the upper's scratch disk, by which init finds it.
pub(crate) const UPPER_DISK_SERIAL: &str = "labgrade-upper";

impl WritableRoot {
    /// The 9p mount tag of the `i`-th rwdir.
    pub(crate) fn rwdir_tag(i: usize) -> String {
        format!("rwdir{i}")
    }

    /// The words init reads from the kernel command line (each starting with a space).
    pub(crate) fn kernel_params(&self) -> String {
        let mut words = String::new();
        match self.overlay {
            Some(OverlayUpper::Tmpfs) => words += &format!(" {OVERLAY_PARAM}=tmpfs"),
            Some(OverlayUpper::Disk { .. }) => words += &format!(" {OVERLAY_PARAM}=disk"),
            None => {}
        }
        for (i, d) in self.rwdirs.iter().enumerate() {
            words += &format!(
                " {RWDIR_PARAM}={}:{}",
                Self::rwdir_tag(i),
                d.guest.display()
            );
        }
        words
    }

    /// Without the overlay the root is read-only: an rwdir's guest path must already exist.
    pub fn check(&self) -> Result<(), String> {
        if self.overlay.is_none() {
            for d in &self.rwdirs {
                if !d.guest.is_dir() {
                    return Err(format!(
                        "--rwdir {}:{}: {} does not exist in the guest's read-only root; add --overlay-root so it can be made, or pick an existing directory",
                        d.host.display(),
                        d.guest.display(),
                        d.guest.display()
                    ));
                }
            }
        }
        Ok(())
    }
}

/// QEMU's option syntax doubles a comma inside a value.
pub(crate) fn qemu_escape(path: &Path) -> String {
    path.to_string_lossy().replace(',', ",,")
}

/// QEMU arguments for the rwdirs' 9p exports and the upper disk (whose read-write and
/// read-only fds QEMU inherits at `first_fd` and `first_fd + 1`, added as fd set `fdset`).
pub(crate) fn qemu_args(w: &WritableRoot, first_fd: usize, fdset: usize) -> Vec<String> {
    let mut a = Vec::new();
    for (i, d) in w.rwdirs.iter().enumerate() {
        let tag = WritableRoot::rwdir_tag(i);
        a.push("-fsdev".to_owned());
        a.push(format!(
            "local,id={tag},path={},security_model=none,multidevs=remap",
            qemu_escape(&d.host)
        ));
        a.push("-device".to_owned());
        a.push(format!("virtio-9p-pci,fsdev={tag},mount_tag={tag}"));
    }
    if let Some(OverlayUpper::Disk { .. }) = w.overlay {
        a.extend([
            "-add-fd".to_owned(),
            format!("fd={first_fd},set={fdset}"),
            "-add-fd".to_owned(),
            format!("fd={},set={fdset}", first_fd + 1),
            "-drive".to_owned(),
            format!("if=none,id=upper,format=raw,file=/dev/fdset/{fdset},cache=unsafe"),
            "-device".to_owned(),
            format!("virtio-blk-pci,drive=upper,serial={UPPER_DISK_SERIAL}"),
        ]);
    }
    a
}

/// The init script's part: after the host root is mounted on /newroot (read-only 9p), put the
/// overlay over it and mount the rwdirs. Runs in busybox sh with `$B` the busybox binary.
pub(crate) const INIT_SNIPPET: &str = r#"
OVERLAY=
RWDIRS=
for word in $($B cat /proc/cmdline); do
  case "$word" in
    labgrade.overlay=*) OVERLAY="${word#labgrade.overlay=}" ;;
    labgrade.rwdir=*) RWDIRS="$RWDIRS ${word#labgrade.rwdir=}" ;;
  esac
done
if [ -n "$OVERLAY" ]; then
  # The modprobe shim reads modules from the host root: load them while it is on /newroot
  # (ext4 asks the kernel for crc32c, which calls the shim too).
  echo /bin/modprobe > /proc/sys/kernel/modprobe
  /bin/modprobe overlay
  $B mkdir -p /lower /upper
  if [ "$OVERLAY" = disk ]; then
    /bin/modprobe ext4
    upper_dev=
    for s in /sys/block/*/serial; do
      [ "$($B cat "$s" 2>/dev/null)" = labgrade-upper ] && upper_dev=/dev/${s#/sys/block/} && upper_dev=${upper_dev%/serial}
    done
    $B mount -t ext4 "$upper_dev" /upper || { echo "labgrade-init: FAILED to mount the upper disk $upper_dev"; $B poweroff -f; }
  else
    $B mount -t tmpfs -o mode=0755 upper /upper
  fi
  $B mkdir -p /upper/upper /upper/work
  $B mount -o move /newroot /lower
  if ! $B mount -t overlay -o lowerdir=/lower,upperdir=/upper/upper,workdir=/upper/work root /newroot; then
    echo "labgrade-init: FAILED to mount the overlay root"
    $B poweroff -f
  fi
fi
for rw in $RWDIRS; do
  tag=${rw%%:*}
  at=/newroot${rw#*:}
  [ -d "$at" ] || $B mkdir -p "$at"
  $B mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144 "$tag" "$at" ||
    echo "labgrade-init: FAILED to mount the shared directory $tag on ${rw#*:}"
done
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uppers_parse_from_the_command_line() {
        assert_eq!("tmpfs".parse(), Ok(OverlayUpper::Tmpfs));
        assert_eq!(
            "disk:512M".parse(),
            Ok(OverlayUpper::Disk { bytes: 512 << 20 })
        );
        assert_eq!("disk:2g".parse(), Ok(OverlayUpper::Disk { bytes: 2 << 30 }));
        assert_eq!(
            "disk:1073741824".parse(),
            Ok(OverlayUpper::Disk { bytes: 1 << 30 })
        );
        for bad in [
            "disk:",
            "disk:12X",
            "disk:1M",
            "disk:100G",
            "ramfs",
            "disk:-1G",
        ] {
            let e = bad.parse::<OverlayUpper>().err();
            assert!(e.is_some(), "{bad} should be refused");
        }
        assert!(
            "disk:99999999999999999999G"
                .parse::<OverlayUpper>()
                .is_err()
        );
    }

    #[test]
    fn rwdirs_take_a_guest_path_outside_tmp() -> Result<(), String> {
        let host = tempfile::tempdir().map_err(|e| e.to_string())?;
        let h = host.path().display().to_string();
        let d: RwDir = format!("{h}:/results").parse()?;
        assert_eq!(d.guest, PathBuf::from("/results"));
        assert_eq!(d.host, host.path());
        // The default guest path is the host's, and a temp dir is under /tmp: refused, saying why.
        let e = h.parse::<RwDir>().err().unwrap_or_default();
        assert!(e.contains("private tmpfs"), "{e}");
        for bad in ["results", "/", "/a b", "/a,b", "/x/../y"] {
            assert!(format!("{h}:{bad}").parse::<RwDir>().is_err(), "{bad}");
        }
        let e = "/no/such/dir:/r".parse::<RwDir>().err().unwrap_or_default();
        assert!(e.contains("create it first"), "{e}");
        Ok(())
    }

    #[test]
    fn a_read_only_root_needs_the_guest_path_to_exist() -> Result<(), String> {
        let host = tempfile::tempdir().map_err(|e| e.to_string())?;
        let d: RwDir = format!("{}:/no-such-labgrade-dir", host.path().display()).parse()?;
        let mut w = WritableRoot {
            overlay: None,
            rwdirs: vec![d],
        };
        assert!(w.check().is_err_and(|e| e.contains("--overlay-root")));
        w.overlay = Some(OverlayUpper::Tmpfs);
        assert_eq!(w.check(), Ok(()));
        assert_eq!(
            w.kernel_params(),
            " labgrade.overlay=tmpfs labgrade.rwdir=rwdir0:/no-such-labgrade-dir"
        );
        Ok(())
    }

    #[test]
    fn commas_in_qemu_values_are_doubled() {
        assert_eq!(qemu_escape(Path::new("/a,b")), "/a,,b");
    }

    #[test]
    fn each_rwdir_is_an_export_and_a_disk_upper_is_a_drive() {
        let w = WritableRoot {
            overlay: Some(OverlayUpper::Disk { bytes: 1 << 30 }),
            rwdirs: vec![RwDir {
                host: PathBuf::from("/srv/a,b"),
                guest: PathBuf::from("/results"),
            }],
        };
        let args = qemu_args(&w, 7, 3).join(" ");
        assert_eq!(
            args,
            "-fsdev local,id=rwdir0,path=/srv/a,,b,security_model=none,multidevs=remap \
             -device virtio-9p-pci,fsdev=rwdir0,mount_tag=rwdir0 \
             -add-fd fd=7,set=3 -add-fd fd=8,set=3 \
             -drive if=none,id=upper,format=raw,file=/dev/fdset/3,cache=unsafe \
             -device virtio-blk-pci,drive=upper,serial=labgrade-upper"
        );
        assert_eq!(
            qemu_args(&WritableRoot::default(), 3, 1),
            Vec::<String>::new()
        );
    }
}
