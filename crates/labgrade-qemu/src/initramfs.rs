//! The initramfs labgrade boots every kernel with: a static busybox, the kernel's own modules for
//! virtio, 9p and loop, and an init that mounts the host root read-only over 9p and starts one
//! labgrade agent per virtio-serial port, restarting it after each session.
//!
//! The modules labs use (overlay, XFS, ext4, crc32c) are not in the initramfs: unpacking and
//! linking them at boot costs seconds under TCG (xfs.ko alone is 9 MB on 7.x). They wait,
//! decompressed, in the host's cache, and the kernel loads them itself on first use through its
//! usual `request_module` call to modprobe, here a small shim that matches the module's own
//! `alias=` names (`fs-xfs`, `crypto-crc32c`) and insmods it and its dependencies over 9p.

use crate::elf::has_interpreter;
use std::collections::HashSet;
use std::fmt::Write as _;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::BootKernel;
use crate::cpio::CpioWriter;
use crate::modules::{ModuleError, ModuleIndex};

/// Modules the guest cannot work without: the console ports and the 9p root.
const ESSENTIAL: &[&str] = &["virtio_pci", "virtio_console", "9pnet_virtio", "9p"];
/// Loaded at boot too, where the kernel has them as modules: /dev/loop-control exists only once
/// loop is loaded, so opening it cannot trigger the load;
/// virtio_blk: the scratch disk slots.
const AT_BOOT: &[&str] = &["loop", "virtio_blk"];
/// Loaded on first use through the modprobe shim, where the kernel has them as modules.
/// crc32c is listed because xfs and ext4 ask for it at run time (`crypto-crc32c`), not by
/// `depends=`.
const ON_DEMAND: &[&str] = &["overlay", "crc32c_generic", "crc32c_intel", "xfs", "ext4"];

const MODPROBE: &str = r#"#!/bin/busybox sh
# labgrade's modprobe: the kernel runs `modprobe -q -- NAME`; NAME is one of a module's aliases.
# The modules wait in /lazy, which init binds from wherever the guest's root has them.
want=
for a in "$@"; do case "$a" in -*) ;; *) want=$a ;; esac; done
dir=/lazy
while read -r pattern mods; do
  case "$want" in
    $pattern)
      for m in $mods; do /bin/busybox insmod "$dir/$m" 2>/dev/null; done
      exit 0
      ;;
  esac
done < "$dir/aliases"
exit 1
"#;

/// Kernel command-line word carrying the agent's path (inside the shared host root).
pub(crate) const AGENT_PARAM: &str = "labgrade.agent";
/// Kernel command-line word carrying the locale archive's directory (inside the guest's root).
pub(crate) const LOCALE_PARAM: &str = "labgrade.locale";
/// Kernel command-line word carrying the on-demand modules' directory (inside the guest's root).
pub(crate) const MODULES_PARAM: &str = "labgrade.modules";
/// Kernel command-line word, once per extra read-only export: `TAG:GUEST_PATH`.
pub(crate) const READ_ONLY_PARAM: &str = "labgrade.ro";

const INIT: &str = r#"#!/bin/busybox sh
# labgrade guest init: modules, the guest's root read-only over 9p, one agent per virtio-serial port.
B=/bin/busybox
$B mount -t proc proc /proc
$B mount -t sysfs sysfs /sys
$B mount -t devtmpfs devtmpfs /dev
while read -r m; do
  $B insmod "/lib/modules/$m" || echo "labgrade-init: insmod $m failed"
done < /lib/modules/order
AGENT=
LOCALE=
MODULES=
RO=
for word in $($B cat /proc/cmdline); do
  case "$word" in
    labgrade.agent=*) AGENT="${word#labgrade.agent=}" ;;
    labgrade.locale=*) LOCALE="${word#labgrade.locale=}" ;;
    labgrade.modules=*) MODULES="${word#labgrade.modules=}" ;;
    labgrade.ro=*) RO="$RO ${word#labgrade.ro=}" ;;
  esac
done
[ -n "$AGENT" ] || echo "labgrade-init: no labgrade.agent= on the kernel command line"
if ! $B mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=262144,cache=loose root /newroot; then
  echo "labgrade-init: FAILED to mount the guest root over 9p"
  $B poweroff -f
fi
# A root staged for untrusted code has the host's program directories on tags of their own.
for ro in $RO; do
  if ! $B mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=262144,cache=loose "${ro%%:*}" "/newroot${ro#*:}"; then
    echo "labgrade-init: FAILED to mount ${ro%%:*} on ${ro#*:}"
    $B poweroff -f
  fi
done
# The modprobe shim reads the on-demand modules from /lazy, wherever the root keeps them.
[ -z "$MODULES" ] || $B mount -o bind "/newroot$MODULES" /lazy ||
  echo "labgrade-init: cannot bind the modules directory $MODULES"
@WRITABLE@
if [ ! -x "/newroot$AGENT" ]; then
  # Power off at once: the host sees QEMU exit and reports this line, instead of waiting out
  # its boot timeout.
  echo "labgrade-init: the agent $AGENT is not executable inside the guest"
  $B poweroff -f
fi
# One locale archive instead of a dozen files per program (see locale.rs in labgrade-qemu).
[ -z "$LOCALE" ] || $B mount -o bind "/newroot$LOCALE" /newroot/usr/lib/locale ||
  echo "labgrade-init: cannot bind the locale archive $LOCALE"
$B mount -t proc proc /newroot/proc
$B mount -t sysfs sysfs /newroot/sys
$B mount -t devtmpfs devtmpfs /newroot/dev
# What udev or systemd adds to a real system's /dev and devtmpfs lacks: the /proc/self/fd links.
# runc's init re-executes itself by execveat(fd, ""), which the kernel names /dev/fd/N; on
# Debian's 5.10 that name has to resolve or every container dies before it starts ("read
# init-p: connection reset by peer").
$B ln -s /proc/self/fd /newroot/dev/fd
$B ln -s /proc/self/fd/0 /newroot/dev/stdin
$B ln -s /proc/self/fd/1 /newroot/dev/stdout
$B ln -s /proc/self/fd/2 /newroot/dev/stderr
# /tmp and /run stay the host's (read-only): the agent may live there, and each agent puts a
# private tmpfs on /tmp in its own mount namespace anyway.
echo /bin/modprobe > /proc/sys/kernel/modprobe
started=0
for p in /sys/class/virtio-ports/*; do
  name=
  tries=0
  while [ -z "$name" ] && [ $tries -lt 100 ]; do
    name=$($B cat "$p/name" 2>/dev/null)
    [ -n "$name" ] || $B usleep 20000
    tries=$((tries + 1))
  done
  case "$name" in
    labgrade.*)
      dev=/dev/${p##*/}
      (
        while :; do
          $B chroot /newroot "$AGENT" __agent <>"$dev" >&0 2>/dev/console
          rc=$?
          # A clean session ends with 0; anything else is worth a line on the console (which
          # the host shows when a guest fails), and a pause rather than a busy loop.
          [ $rc -eq 0 ] || { echo "labgrade-init: agent $AGENT exited with $rc"; $B sleep 1; }
        done
      ) &
      started=$((started + 1))
      ;;
  esac
done
echo "labgrade-init: ready, $started agent ports"
wait
$B poweroff -f
"#;

/// Why the initramfs could not be built.
#[derive(Debug, thiserror::Error)]
pub(crate) enum InitramfsError {
    /// No static busybox on the host.
    #[error("no static busybox found ({0}); install it: apt-get install busybox-static")]
    Busybox(String),
    /// Modules could not be gathered.
    #[error(transparent)]
    Modules(#[from] ModuleError),
    /// The cache could not be written.
    #[error("cannot write the initramfs to {path}: {source}")]
    Write {
        /// Where.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// Where busybox is; `busybox-static` installs it as /bin/busybox.
fn busybox_path() -> Result<&'static Path, InitramfsError> {
    ["/bin/busybox", "/usr/bin/busybox"]
        .into_iter()
        .map(Path::new)
        .find(|p| p.is_file())
        .ok_or_else(|| InitramfsError::Busybox("/bin/busybox is missing".into()))
}

/// Busybox's bytes, which must be a static binary: a dynamically linked one cannot run in an
/// initramfs without a libc.
fn static_busybox(path: &Path) -> Result<Vec<u8>, InitramfsError> {
    let bytes = fs::read(path)
        .map_err(|e| InitramfsError::Busybox(format!("cannot read {}: {e}", path.display())))?;
    if has_interpreter(&bytes) {
        return Err(InitramfsError::Busybox(format!(
            "{} is dynamically linked",
            path.display()
        )));
    }
    Ok(bytes)
}

/// What boots a kernel: the initramfs and the on-demand modules it loads from the guest's root.
#[derive(Debug, Clone)]
pub(crate) struct Initramfs {
    /// The image.
    pub(crate) image: PathBuf,
    /// The host directory of decompressed on-demand modules and their `aliases`.
    pub(crate) modules: PathBuf,
}

/// The initramfs for `kernel`, built once and kept in `cache_dir` (written atomically).
pub(crate) fn initramfs_for(
    kernel: &BootKernel,
    cache_dir: &Path,
) -> Result<Initramfs, InitramfsError> {
    let busybox = busybox_path()?;
    // Everything that goes into the image is in its key: the scripts, the module lists, busybox
    // (by its metadata: a hit, every boot but the first, reads nothing) and the kernel's modules.
    let mut key =
        fnv1a(INIT.as_bytes()) ^ fnv1a(crate::writable::INIT_SNIPPET.as_bytes()).rotate_left(6);
    key ^= fnv1a(MODPROBE.as_bytes()).rotate_left(4);
    key ^= fnv1a(
        [ESSENTIAL, AT_BOOT, ON_DEMAND]
            .concat()
            .join(" ")
            .as_bytes(),
    )
    .rotate_left(5);
    let bb = fs::metadata(busybox)
        .map_err(|e| InitramfsError::Busybox(format!("cannot stat {}: {e}", busybox.display())))?;
    key ^=
        (bb.len() ^ (bb.mtime() as u64).rotate_left(17) ^ bb.ino().rotate_left(33)).rotate_left(1);
    key ^= fnv1a(kernel.modules_dir.to_string_lossy().as_bytes()).rotate_left(2);
    if let Ok(meta) = fs::metadata(&kernel.modules_dir) {
        key ^= (meta.mtime() as u64).rotate_left(3);
    }
    let path = cache_dir.join(format!("initramfs-{}-{key:016x}.cpio", kernel.release));
    let lazy_dir = cache_dir.join(format!("modules-{}-{key:016x}", kernel.release));
    if path.is_file() && lazy_dir.join("aliases").is_file() {
        return Ok(Initramfs {
            image: path,
            modules: lazy_dir,
        });
    }
    let bytes = build(kernel, &static_busybox(busybox)?, &lazy_dir)?;
    let write_err = |source| InitramfsError::Write {
        path: path.clone(),
        source,
    };
    fs::create_dir_all(cache_dir).map_err(write_err)?;
    // Only when building: what a killed labgrade left in the cache goes.
    labgrade_fs::remove_stale_scratch(cache_dir);
    labgrade_fs::write_atomically(&path, &bytes).map_err(write_err)?;
    Ok(Initramfs {
        image: path,
        modules: lazy_dir,
    })
}

fn build(kernel: &BootKernel, busybox: &[u8], lazy_dir: &Path) -> Result<Vec<u8>, InitramfsError> {
    let index = ModuleIndex::scan(&kernel.modules_dir)?;
    let mut wanted: Vec<&str> = ESSENTIAL.to_vec();
    wanted.extend(AT_BOOT.iter().copied().filter(|m| index.has(m)));
    let modules = index.closure(&wanted)?;
    let at_boot: HashSet<String> = modules
        .iter()
        .map(|(n, _)| n.trim_end_matches(".ko").to_owned())
        .collect();
    write_on_demand(&index, &at_boot, lazy_dir)?;

    let mut cpio = CpioWriter::default();
    for dir in [
        "bin",
        "dev",
        "proc",
        "sys",
        "newroot",
        "lazy",
        "lib",
        "lib/modules",
    ] {
        cpio.dir(dir, 0o755);
    }
    cpio.file("bin/busybox", 0o755, busybox);
    cpio.symlink("bin/sh", "busybox");
    let mut order = String::new();
    for (i, (name, bytes)) in modules.iter().enumerate() {
        let file = format!("{i:02}-{name}");
        cpio.file(&format!("lib/modules/{file}"), 0o644, bytes);
        let _ = writeln!(order, "{file}");
    }
    cpio.file("lib/modules/order", 0o644, order.as_bytes());
    let init = INIT.replace("@WRITABLE@", crate::writable::INIT_SNIPPET.trim());
    cpio.file("init", 0o755, init.as_bytes());
    cpio.file("bin/modprobe", 0o755, MODPROBE.as_bytes());
    Ok(cpio.finish())
}

/// Decompresses the on-demand modules into `dir` with an `aliases` table: one line per alias,
/// the modules to insmod for it in order (dependencies first). Written whole, then renamed.
fn write_on_demand(
    index: &ModuleIndex,
    at_boot: &HashSet<String>,
    dir: &Path,
) -> Result<(), InitramfsError> {
    if dir.join("aliases").is_file() {
        return Ok(());
    }
    let parent = dir.parent().unwrap_or(dir);
    let tmp = labgrade_fs::scratch_path(parent, "modules");
    let write_err = |source| InitramfsError::Write {
        path: dir.to_path_buf(),
        source,
    };
    let _ = fs::remove_dir_all(&tmp);
    fs::create_dir_all(&tmp).map_err(write_err)?;
    let mut aliases = String::new();
    for name in ON_DEMAND.iter().filter(|m| index.has(m)) {
        let chain = index.closure_after(&[name], at_boot)?;
        let Some((_, own)) = chain.last() else {
            continue;
        }; // built in: nothing to load
        let files: Vec<&str> = chain.iter().map(|(n, _)| n.as_str()).collect();
        for (file, bytes) in &chain {
            fs::write(tmp.join(file), bytes).map_err(write_err)?;
        }
        for alias in crate::modules::modinfo_aliases(own)
            .into_iter()
            .chain([(*name).to_owned()])
        {
            let _ = writeln!(aliases, "{alias} {}", files.join(" "));
        }
    }
    fs::write(tmp.join("aliases"), aliases).map_err(write_err)?;
    let renamed = fs::rename(&tmp, dir);
    if renamed.is_err() {
        let _ = fs::remove_dir_all(&tmp);
    }
    match renamed {
        // Another labgrade built the same directory meanwhile: theirs is as good as ours.
        Err(_) if dir.join("aliases").is_file() => Ok(()),
        other => other.map_err(write_err),
    }
}

pub(crate) fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use crate::elf::has_interpreter;

    #[test]
    fn a_dynamic_binary_has_an_interpreter_and_static_busybox_has_none() -> std::io::Result<()> {
        assert!(has_interpreter(&std::fs::read("/bin/sh")?));
        match std::fs::read("/bin/busybox") {
            Ok(b) if b.len() > 1_500_000 => {
                assert!(!has_interpreter(&b), "busybox-static is static")
            }
            _ => eprintln!("SKIPPED the static half: busybox-static is not installed"),
        }
        Ok(())
    }
}
