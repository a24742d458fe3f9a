//! One QEMU process: direct kernel boot, the guest's root read-only over 9p, a serial console
//! captured for error reports, and N virtio-serial ports, each a socketpair whose other end QEMU
//! inherits (no socket files, nothing left on disk).

use std::collections::VecDeque;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use nix::sys::memfd::{MFdFlags, memfd_create};
use nix::sys::signal::Signal;

use crate::Accel;

/// What to boot and how.
#[derive(Debug, Clone)]
pub(crate) struct VmSpec {
    pub(crate) vmlinuz: PathBuf,
    pub(crate) initramfs: PathBuf,
    pub(crate) append: String,
    pub(crate) accel: Accel,
    pub(crate) memory_mib: u32,
    pub(crate) cpus: u32,
    pub(crate) ports: usize,
    /// Scratch disks per port: virtio disks whose content the host rewrites for each session.
    pub(crate) disks_per_port: usize,
    /// The root overlay's upper and the shared read-write directories.
    pub(crate) writable: crate::WritableRoot,
    /// The host directory exported (read-only) as the guest's root: `/`, or a staged root.
    pub(crate) root: PathBuf,
    /// More read-only exports, each on its own tag (a staged root's /usr).
    pub(crate) read_only: Vec<crate::staging::Export>,
}

/// A scratch disk slot's size as the guest sees it. The backing memfd is sparse: only what is
/// written costs memory.
pub(crate) const SLOT_BYTES: u64 = (labgrade_spec::MAX_DISK_MIB) << 20;

/// The last lines the guest's serial console printed.
#[derive(Debug, Default)]
pub(crate) struct Console {
    lines: VecDeque<String>,
}

impl Console {
    const KEEP: usize = 60;

    fn push(&mut self, line: String) {
        if self.lines.len() == Self::KEEP {
            self.lines.pop_front();
        }
        self.lines.push_back(line);
    }

    pub(crate) fn tail(&self) -> String {
        self.lines.iter().cloned().collect::<Vec<_>>().join("\n")
    }
}

/// A running VM. Dropping it kills QEMU (by its pid, through the thread that started it) and
/// waits for it.
#[derive(Debug)]
pub(crate) struct Vm {
    pub(crate) ports: Vec<UnixStream>,
    /// Scratch disk slots, `disks_per_port` for each port in order: memfds QEMU shares.
    pub(crate) disks: Vec<File>,
    pub(crate) console: Arc<Mutex<Console>>,
    /// How QEMU exited, once it has.
    pub(crate) exit: Arc<Exit>,
    stop: Option<mpsc::Sender<()>>,
    keeper: Option<JoinHandle<()>>,
}

/// How a QEMU process ended, set by the thread that waits for it.
#[derive(Debug, Default)]
pub(crate) struct Exit {
    status: Mutex<Option<std::process::ExitStatus>>,
    changed: std::sync::Condvar,
}

impl Exit {
    fn set(&self, status: std::process::ExitStatus) {
        if let Ok(mut s) = self.status.lock() {
            *s = Some(status);
        }
        self.changed.notify_all();
    }

    /// QEMU's exit status, waiting up to `within` for it to exit.
    pub(crate) fn wait(&self, within: Duration) -> Option<std::process::ExitStatus> {
        let guard = self.status.lock().ok()?;
        let (guard, _) = self
            .changed
            .wait_timeout_while(guard, within, |s| s.is_none())
            .ok()?;
        *guard
    }

    /// Has QEMU exited?
    pub(crate) fn exited(&self) -> bool {
        self.status.lock().is_ok_and(|s| s.is_some())
    }
}

impl Vm {
    /// Starts QEMU. Returns once the process runs; the guest boots in the background.
    pub(crate) fn start(spec: &VmSpec) -> std::io::Result<Vm> {
        let mut ours = Vec::new();
        let mut theirs: Vec<OwnedFd> = Vec::new();
        for _ in 0..spec.ports {
            let (a, b) = UnixStream::pair()?;
            ours.push(a);
            theirs.push(OwnedFd::from(b));
        }
        let mut disks = Vec::new();
        for i in 0..spec.ports * spec.disks_per_port {
            let fd = memfd_create(format!("labgrade-disk-{i}").as_str(), MFdFlags::MFD_CLOEXEC)
                .map_err(std::io::Error::from)?;
            let file = File::from(fd);
            file.set_len(SLOT_BYTES)?;
            // QEMU picks from an fd set by access mode, and opens read-only as well as
            // read-write: give it both.
            let read_only = File::open(format!("/proc/self/fd/{}", file.as_raw_fd()))?;
            theirs.push(OwnedFd::from(file.try_clone()?));
            theirs.push(OwnedFd::from(read_only));
            disks.push(file);
        }
        if let Some(crate::OverlayUpper::Disk { bytes }) = spec.writable.overlay {
            let upper = crate::upper_disk::make(bytes)?;
            let read_only = File::open(format!("/proc/self/fd/{}", upper.as_raw_fd()))?;
            theirs.push(OwnedFd::from(upper));
            theirs.push(OwnedFd::from(read_only));
        }
        let mut cmd = Command::new("qemu-system-x86_64");
        cmd.args(qemu_args(spec))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // QEMU finds them at 3, 4, ... Move them above that range first, so no dup2 below
        // overwrites a source it has yet to copy, or lands on its own source (which would keep
        // that fd close-on-exec).
        let above = 3 + i32::try_from(theirs.len()).unwrap_or(i32::MAX - 3);
        let theirs: Vec<OwnedFd> = theirs
            .iter()
            .map(|fd| {
                nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_DUPFD_CLOEXEC(above))
                    .map(|raw| {
                        // SAFETY: F_DUPFD_CLOEXEC returned a new fd that nothing else owns.
                        unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(raw) }
                    })
                    .map_err(std::io::Error::from)
            })
            .collect::<std::io::Result<_>>()?;
        let raw: Vec<i32> = theirs.iter().map(AsRawFd::as_raw_fd).collect();
        // SAFETY: only async-signal-safe calls (prctl, dup2) between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                nix::sys::prctl::set_pdeathsig(Signal::SIGKILL)?;
                for (i, fd) in raw.iter().enumerate() {
                    let target = 3 + i32::try_from(i).unwrap_or(0);
                    if libc::dup2(*fd, target) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
        let console = Arc::new(Mutex::new(Console::default()));
        let (stop_tx, stop_rx) = mpsc::channel::<()>();
        let (started_tx, started_rx) = mpsc::channel::<std::io::Result<()>>();
        let sink = Arc::clone(&console);
        let exit = Arc::new(Exit::default());
        let exit_status = Arc::clone(&exit);
        // The keeper thread starts QEMU and outlives every session: QEMU's parent-death signal
        // fires when the *thread* that forked it exits.
        let keeper = std::thread::spawn(move || {
            let mut child = match cmd.spawn() {
                Ok(c) => c,
                Err(e) => {
                    let _ = started_tx.send(Err(e));
                    return;
                }
            };
            drop(theirs);
            tracing::debug!(pid = child.id(), "started qemu");
            for pipe in [
                child
                    .stdout
                    .take()
                    .map(|p| Box::new(p) as Box<dyn std::io::Read + Send>),
                child
                    .stderr
                    .take()
                    .map(|p| Box::new(p) as Box<dyn std::io::Read + Send>),
            ]
            .into_iter()
            .flatten()
            {
                let sink = Arc::clone(&sink);
                std::thread::spawn(move || {
                    for line in BufReader::new(pipe).lines() {
                        let Ok(line) = line else { break };
                        tracing::trace!(target: "labgrade::console", "{line}");
                        if let Ok(mut c) = sink.lock() {
                            c.push(line.trim_end_matches('\r').to_owned());
                        }
                    }
                });
            }
            let _ = started_tx.send(Ok(()));
            loop {
                match stop_rx.recv_timeout(Duration::from_millis(100)) {
                    Ok(()) | Err(mpsc::RecvTimeoutError::Disconnected) => break,
                    Err(mpsc::RecvTimeoutError::Timeout) => {
                        if let Ok(Some(status)) = child.try_wait() {
                            if let Ok(mut c) = sink.lock() {
                                c.push(format!("[qemu exited: {status}]"));
                            }
                            exit_status.set(status);
                            return;
                        }
                    }
                }
            }
            let _ = child.kill();
            if let Ok(status) = child.wait() {
                exit_status.set(status);
            }
        });
        match started_rx.recv() {
            Ok(Ok(())) => Ok(Vm {
                ports: ours,
                disks,
                console,
                exit,
                stop: Some(stop_tx),
                keeper: Some(keeper),
            }),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(std::io::Error::other("the qemu keeper thread died")),
        }
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(keeper) = self.keeper.take() {
            let _ = keeper.join();
        }
    }
}

/// A minimal firmware for direct kernel boot.
const QBOOT: &str = "/usr/share/qemu/qboot.rom";

fn qemu_args(spec: &VmSpec) -> Vec<String> {
    let mut a: Vec<String> = Vec::new();
    let mut push = |items: &[&str]| a.extend(items.iter().map(|s| (*s).to_owned()));
    push(&[
        "-nodefaults",
        "-no-user-config",
        "-display",
        "none",
        "-no-reboot",
    ]);
    match spec.accel {
        Accel::Kvm => push(&["-accel", "kvm", "-cpu", "host"]),
        Accel::Tcg | Accel::Auto => push(&["-accel", "tcg,thread=multi", "-cpu", "max"]),
    }
    // qboot starts a Linux kernel sooner than SeaBIOS (about 0.1 s under TCG); it ships with
    // qemu-system-data, but is optional.
    if Path::new(QBOOT).is_file() {
        push(&["-bios", QBOOT]);
    }
    let mem = spec.memory_mib.to_string();
    let cpus = spec.cpus.to_string();
    push(&["-m", &mem, "-smp", &cpus]);
    let kernel = spec.vmlinuz.display().to_string();
    let initrd = spec.initramfs.display().to_string();
    push(&[
        "-kernel",
        &kernel,
        "-initrd",
        &initrd,
        "-append",
        &spec.append,
    ]);
    push(&[
        "-chardev",
        "stdio,id=console,signal=off",
        "-serial",
        "chardev:console",
    ]);
    // Read-only exports: QEMU refuses every write through them, whatever the guest's root
    // mounts them as.
    let root = format!(
        "local,id=root,path={},security_model=none,readonly=on,multidevs=remap",
        crate::writable::qemu_escape(&spec.root)
    );
    push(&[
        "-fsdev",
        &root,
        "-device",
        "virtio-9p-pci,fsdev=root,mount_tag=root",
    ]);
    for e in &spec.read_only {
        let fsdev = format!(
            "local,id={},path={},security_model=none,readonly=on,multidevs=remap",
            e.tag,
            crate::writable::qemu_escape(&e.host)
        );
        let device = format!("virtio-9p-pci,fsdev={},mount_tag={}", e.tag, e.tag);
        push(&["-fsdev", &fsdev, "-device", &device]);
    }
    push(&["-device", "virtio-serial-pci,id=ports"]);
    for i in 0..spec.ports {
        let chardev = format!("socket,id=port{i},fd={}", 3 + i);
        let device = format!("virtserialport,bus=ports.0,chardev=port{i},name=labgrade.{i}");
        push(&["-chardev", &chardev, "-device", &device]);
    }
    // Disk slots follow the ports in the inherited fds; QEMU opens each through an fd set.
    for i in 0..spec.ports * spec.disks_per_port {
        let (port, slot) = (i / spec.disks_per_port, i % spec.disks_per_port);
        let first = 3 + spec.ports + 2 * i;
        let add_fd = format!("fd={first},set={}", i + 1);
        let add_fd_ro = format!("fd={},set={}", first + 1, i + 1);
        let drive = format!(
            "if=none,id=disk{i},format=raw,file=/dev/fdset/{},cache=unsafe",
            i + 1
        );
        let device = format!(
            "virtio-blk-pci,drive=disk{i},serial={}",
            disk_serial(port, slot)
        );
        push(&["-add-fd", &add_fd, "-add-fd", &add_fd_ro]);
        push(&["-drive", &drive, "-device", &device]);
    }
    let slots = spec.ports * spec.disks_per_port;
    a.extend(crate::writable::qemu_args(
        &spec.writable,
        3 + spec.ports + 2 * slots,
        slots + 1,
    ));
    a
}

/// The serial the guest finds a port's scratch disk slot by.
pub(crate) fn disk_serial(port: usize, slot: usize) -> String {
    format!("labgrade-{port}-{slot}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_staged_root_is_the_only_root_exported_and_every_export_is_read_only() {
        let spec = VmSpec {
            vmlinuz: PathBuf::from("/k"),
            initramfs: PathBuf::from("/i"),
            append: String::new(),
            accel: Accel::Tcg,
            memory_mib: 512,
            cpus: 1,
            ports: 1,
            disks_per_port: 0,
            writable: crate::WritableRoot::default(),
            root: PathBuf::from("/cache/.guest-root.1.0.tmp"),
            read_only: vec![crate::staging::Export {
                tag: "usr".into(),
                host: PathBuf::from("/usr"),
                guest: "/usr".into(),
            }],
        };
        let args = qemu_args(&spec);
        let fsdevs: Vec<&String> = args
            .iter()
            .zip(args.iter().skip(1))
            .filter(|(flag, _)| *flag == "-fsdev")
            .map(|(_, value)| value)
            .collect();
        assert_eq!(
            fsdevs,
            [
                "local,id=root,path=/cache/.guest-root.1.0.tmp,security_model=none,readonly=on,multidevs=remap",
                "local,id=usr,path=/usr,security_model=none,readonly=on,multidevs=remap",
            ]
        );
        assert!(
            args.iter()
                .any(|a| a == "virtio-9p-pci,fsdev=usr,mount_tag=usr")
        );
    }
}
