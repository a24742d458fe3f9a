//! The `qemu:<kernel>` guest.
//!
//! One VM per guest, booted on first use: the kernel under test boots directly (no bootloader, no
//! disk image) with an initramfs labgrade builds from the kernel's own modules. By default the
//! host root is shared read-only over 9p, so the guest runs this very labgrade binary as its
//! agent, and bash, mount, mkfs.xfs and the rest from the host (and a lab or an existing test
//! suite finds its files where they are on the host). A guest for untrusted code
//! ([`RootExport::Minimal`], what grading uses) gets a root staged for it instead: the host's
//! programs and libraries, a made /etc and the agent, nothing else (see `staging.rs`). Each
//! virtio-serial port carries one agent session at a time; the guest restarts the agent after
//! each, so every lab gets fresh namespaces and a fresh `$LAB` while the VM boots only once. A
//! VM that shut itself down (a poweroff, a panic) is booted afresh for the next session.

mod accel;
mod cpio;
mod elf;
mod initramfs;
mod locale;
mod modules;
mod staging;
mod upper_disk;
mod vm;
mod writable;

use std::io::{BufRead, BufReader, Read};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use labgrade_guest::{AgentSession, Guest, GuestError, ScratchDisk};
use labgrade_proto::{AttachDisk, DiskSource, Request};

pub use accel::Accel;
use initramfs::initramfs_for;
pub use writable::{OverlayUpper, RwDir, WritableRoot};

/// The kernel to boot: its image, validated and prepared before any QEMU process starts (a bad
/// image is refused here, not by QEMU after a boot timeout), and its modules directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootKernel {
    /// How the user named it, e.g. `debian:6.1`; the guest is called `qemu:<name>`.
    pub name: String,
    /// Its `uname -r`.
    pub release: String,
    /// What QEMU is given: the unpacked PVH vmlinux, or the bzImage.
    pub image: labgrade_kernel::BootImage,
    /// `lib/modules/<release>` of that kernel.
    pub modules_dir: PathBuf,
}

impl BootKernel {
    /// Validates `k`'s image and prepares what QEMU boots (unpacking it into `cache_dir` once).
    pub fn prepare(
        k: labgrade_kernel::Kernel,
        cache_dir: &std::path::Path,
    ) -> Result<BootKernel, labgrade_kernel::ImageError> {
        let image = labgrade_kernel::boot_image(&k.vmlinuz, &k.release, cache_dir)?;
        Ok(BootKernel {
            name: k.name,
            release: k.release,
            image,
            modules_dir: k.modules_dir,
        })
    }
}

/// How to run the VM.
#[derive(Debug, Clone)]
pub struct QemuConfig {
    /// What to boot.
    pub kernel: BootKernel,
    /// The labgrade binary the guest runs as its agent (a host path: visible through 9p with
    /// the host's root, copied into a staged one).
    pub agent_exe: PathBuf,
    /// KVM, TCG, or probe.
    pub accel: Accel,
    /// Virtual CPUs.
    pub cpus: u32,
    /// Guest memory in MiB (labs keep their files on tmpfs).
    pub memory_mib: u32,
    /// Agent sessions that can run at once (one virtio-serial port each).
    pub sessions: usize,
    /// Scratch disks a session can have: virtio disk slots per port. Each costs boot time (about
    /// 0.15 s under TCG), so it is as many as the labs to run need, and none by default.
    pub disks_per_session: usize,
    /// Where built initramfs images are kept.
    pub cache_dir: PathBuf,
    /// Longest wait from starting QEMU to the first agent's hello.
    pub boot_timeout: Duration,
    /// A writable overlay root and shared read-write directories, for existing test suites.
    pub writable: WritableRoot,
    /// What of the host the guest sees.
    pub root: RootExport,
}

/// What of the host a VM's 9p exports show it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum RootExport {
    /// The host's whole root, read-only: labs and existing test suites find their tools and
    /// files where they are on the host.
    #[default]
    WholeHost,
    /// Only what running the agent and the host's programs needs, read-only: /usr (and the
    /// other program directories of a layout without merged /usr), a made /etc, the agent, the
    /// kernel's on-demand modules and the locale archive. For code that must not read the host
    /// (a submission: root in the VM can mount every export). No writable root or rwdirs.
    Minimal,
}

impl QemuConfig {
    /// Defaults for a kernel: 2 sessions, 2 vCPUs, 2 GiB, a 120 s boot limit.
    pub fn new(kernel: BootKernel, agent_exe: PathBuf, cache_dir: PathBuf) -> QemuConfig {
        QemuConfig {
            kernel,
            agent_exe,
            accel: Accel::Auto,
            cpus: 2,
            memory_mib: 2048,
            sessions: 2,
            disks_per_session: 0,
            cache_dir,
            boot_timeout: Duration::from_secs(120),
            writable: WritableRoot::default(),
            root: RootExport::WholeHost,
        }
    }
}

#[derive(Debug)]
enum State {
    NotBooted,
    Running(Box<Running>),
    Failed(String),
}

#[derive(Debug)]
struct Running {
    vm: vm::Vm,
    /// The staged root the VM exports, if it has one: dropped (removed) after the VM is.
    _staged: Option<staging::Staged>,
    ports: Vec<Port>,
    free: Vec<usize>,
    dead: usize,
    /// Which boot of this guest this is: a session's lease of a port applies only to the VM it
    /// was lent from, never to one booted after that VM stopped.
    generation: u64,
    /// An agent of this VM has said hello: the VM booted (and may be booted again if it stops).
    booted: bool,
}

/// One virtio-serial port and what goes with it across the sessions it carries.
#[derive(Debug)]
struct Port {
    /// The port's socket, for writing and for setting its read timeout.
    stream: UnixStream,
    /// The one reader the port ever has, lent to each session in turn: a read that ends one
    /// session may already hold the next agent's hello, which a fresh reader would lose.
    /// `None` while a session has it.
    reader: Option<BufReader<UnixStream>>,
    /// This port's scratch disk slots.
    slots: Arc<[std::fs::File]>,
    /// Its agent has said hello once: later hellos come fast (no boot to wait for).
    greeted: bool,
}

#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    changed: Condvar,
    /// Boots so far, for [`Running::generation`].
    boots: std::sync::atomic::AtomicU64,
}

/// A QEMU VM running one kernel; labs run in it one session (fresh namespaces) each.
#[derive(Debug)]
pub struct QemuGuest {
    config: QemuConfig,
    shared: Arc<Shared>,
    /// Which accelerator was chosen, and why: logged at boot, and part of every boot error.
    accel_choice: (Accel, String),
}

impl QemuGuest {
    /// Prepares the guest; nothing boots until the first session.
    pub fn new(config: QemuConfig) -> QemuGuest {
        let accel_choice = config.accel.resolve();
        QemuGuest {
            config,
            shared: Arc::new(Shared {
                state: Mutex::new(State::NotBooted),
                changed: Condvar::new(),
                boots: std::sync::atomic::AtomicU64::new(0),
            }),
            accel_choice,
        }
    }

    /// What the VM exports, and where its agent, modules and locale archive are inside it.
    fn layout(&self, initramfs: &initramfs::Initramfs) -> Result<Layout, String> {
        let locale = locale::locale_dir(&self.config.cache_dir);
        match self.config.root {
            RootExport::WholeHost => Ok(Layout {
                root: PathBuf::from("/"),
                read_only: Vec::new(),
                agent: self.config.agent_exe.display().to_string(),
                modules: initramfs.modules.display().to_string(),
                locale: locale.map(|d| d.display().to_string()),
                staged: None,
            }),
            RootExport::Minimal => {
                if self.config.writable != WritableRoot::default() {
                    return Err(
                        "a guest for untrusted code has no writable root and no shared directories"
                            .into(),
                    );
                }
                let staged = staging::stage(
                    &staging::StageInputs {
                        host_root: std::path::Path::new("/"),
                        agent: &self.config.agent_exe,
                        modules: &initramfs.modules,
                        locale: locale.as_deref(),
                    },
                    &self.config.cache_dir,
                )
                .map_err(|e| format!("cannot stage the guest's root: {e}"))?;
                Ok(Layout {
                    root: staged.dir.clone(),
                    read_only: staged.exports.clone(),
                    agent: staging::AGENT.to_owned(),
                    modules: staging::MODULES.to_owned(),
                    locale: staged.has_locale.then(|| staging::LOCALE.to_owned()),
                    staged: Some(staged),
                })
            }
        }
    }

    fn boot(&self) -> Result<Running, String> {
        let k = &self.config.kernel;
        let initramfs = initramfs_for(k, &self.config.cache_dir).map_err(|e| e.to_string())?;
        let layout = self.layout(&initramfs)?;
        let append = format!(
            // cryptomgr.notests: the crypto self-tests are the longest initcall under TCG
            // (0.15 to 0.7 s by kernel), and labs test filesystems, not crypto.
            // acpi=noirq: routing each virtio device's legacy interrupt through ACPI's AML took
            // 0.1 to 0.15 s per device under TCG; the devices use MSI-X anyway.
            "console=ttyS0 quiet loglevel=4 panic=-1 rdinit=/init i8042.noaux i8042.nokbd \
             cryptomgr.notests acpi=noirq {}={} {}={}",
            initramfs::AGENT_PARAM,
            layout.agent,
            initramfs::MODULES_PARAM,
            layout.modules,
        ) + &layout
            .locale
            .as_ref()
            .map(|d| format!(" {}={d}", initramfs::LOCALE_PARAM))
            .unwrap_or_default()
            + &layout
                .read_only
                .iter()
                .map(|e| format!(" {}={}:{}", initramfs::READ_ONLY_PARAM, e.tag, e.guest))
                .collect::<String>()
            + tcg_only_params(self.accel_choice.0)
            + &self.config.writable.kernel_params();
        let spec = vm::VmSpec {
            vmlinuz: k.image.path().to_path_buf(),
            initramfs: initramfs.image,
            append,
            accel: self.accel_choice.0,
            memory_mib: self.config.memory_mib,
            cpus: self.config.cpus,
            ports: self.config.sessions.max(1),
            disks_per_port: self.config.disks_per_session,
            writable: self.config.writable.clone(),
            root: layout.root,
            read_only: layout.read_only,
        };
        tracing::info!(guest = %self.name(), accel = %self.accel_choice.0, why = %self.accel_choice.1, "booting");
        let vm = vm::Vm::start(&spec).map_err(|e| {
            format!("cannot start qemu-system-x86_64: {e} (install qemu-system-x86)")
        })?;
        let mut vm = vm;
        let per = self.config.disks_per_session;
        let mut slots = std::mem::take(&mut vm.disks).into_iter();
        let ports = std::mem::take(&mut vm.ports)
            .into_iter()
            .map(|stream| {
                Ok(Port {
                    reader: Some(BufReader::new(stream.try_clone()?)),
                    stream,
                    slots: slots.by_ref().take(per).collect(),
                    greeted: false,
                })
            })
            .collect::<std::io::Result<Vec<Port>>>()
            .map_err(|e| format!("cannot share a port of the VM: {e}"))?;
        Ok(Running {
            vm,
            _staged: layout.staged,
            free: (0..ports.len()).rev().collect(),
            ports,
            dead: 0,
            generation: self.shared.boots.fetch_add(1, Ordering::SeqCst),
            booted: false,
        })
    }

    fn boot_error(&self, message: String, console: String) -> GuestError {
        let (accel, why) = &self.accel_choice;
        GuestError::Boot {
            guest: self.name(),
            message: format!("{message} (accelerator {accel}: {why})"),
            console,
        }
    }
}

/// Where a VM's root comes from and where the agent, modules and locale archive are in it.
struct Layout {
    root: PathBuf,
    read_only: Vec<staging::Export>,
    agent: String,
    modules: String,
    locale: Option<String>,
    staged: Option<staging::Staged>,
}

impl Drop for QemuGuest {
    /// Stops the VM now (and removes its staged root), even while a lease of one of its ports
    /// outlives the guest: a grader that drops a submission's guest means that machine to go.
    fn drop(&mut self) {
        if let Ok(mut state) = self.shared.state.lock() {
            *state = State::Failed("the guest was dropped".into());
        }
        self.shared.changed.notify_all();
    }
}

/// Kernel parameters that only pay under TCG.
///
/// `norandmaps`: QEMU 7.2's TCG keys translated code by virtual address, so with address-space
/// randomisation every process maps libc somewhere new and QEMU translates it all again:
/// `/bin/true` took 40 ms, 13 ms without. Labs test filesystems; a VM that lives for one run
/// loses nothing by it. Under KVM the guest keeps its default.
fn tcg_only_params(accel: Accel) -> &'static str {
    match accel {
        Accel::Kvm => "",
        Accel::Tcg | Accel::Auto => " norandmaps",
    }
}

/// Did QEMU exit by itself with success? That is the guest's own doing: with `-no-reboot` and
/// `panic=-1`, a poweroff, a reboot and a kernel panic all end QEMU with status 0, while QEMU
/// killed on the host (by labgrade, or by the OOM killer) ends by a signal. The transport's
/// end can come a moment before the process has been reaped: wait a little for it.
fn stopped_by_itself(exit: &vm::Exit) -> bool {
    exit.wait(Duration::from_secs(2))
        .is_some_and(|status| status.success())
}

/// Writes each disk's image onto one of the port's slots. The agent on this port has said hello,
/// so the port's previous agent has exited and its mounts of the slots are gone: the slots are
/// ours to rewrite.
fn provide_disks(
    port: usize,
    slots: &[std::fs::File],
    disks: &[ScratchDisk],
) -> Result<Vec<AttachDisk>, GuestError> {
    if disks.len() > slots.len() {
        return Err(GuestError::Agent {
            message: format!(
                "a lab in a VM can have at most {} scratch disks, not {}",
                slots.len(),
                disks.len()
            ),
            stderr: String::new(),
        });
    }
    let mut attach = Vec::new();
    for (slot, (disk, file)) in disks.iter().zip(slots).enumerate() {
        write_slot(file, &disk.image).map_err(|e| GuestError::Agent {
            message: format!(
                "cannot write the disk image {} for ${}: {e}",
                disk.image.display(),
                disk.env
            ),
            stderr: String::new(),
        })?;
        attach.push(AttachDisk {
            env: disk.env.clone(),
            source: DiskSource::Block {
                serial: vm::disk_serial(port, slot),
            },
        });
    }
    Ok(attach)
}

/// Empties a disk slot and writes `image` onto it (only the image's data; the rest reads as
/// zeros).
fn write_slot(slot: &std::fs::File, image: &std::path::Path) -> std::io::Result<()> {
    let image = std::fs::File::open(image)?;
    slot.set_len(0)?;
    slot.set_len(vm::SLOT_BYTES)?;
    labgrade_disk::copy_sparse(&image, slot)?;
    Ok(())
}

/// A port's reader, lent to one session and given back to the port when the session ends.
struct LentReader {
    reader: Option<BufReader<UnixStream>>,
    shared: Arc<Shared>,
    index: usize,
    generation: u64,
}

impl LentReader {
    fn inner(&mut self) -> std::io::Result<&mut BufReader<UnixStream>> {
        self.reader
            .as_mut()
            .ok_or_else(|| std::io::Error::other("the port's reader was given back"))
    }
}

impl Read for LentReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.inner()?.read(buf)
    }
}

impl BufRead for LentReader {
    fn fill_buf(&mut self) -> std::io::Result<&[u8]> {
        self.inner()?.fill_buf()
    }

    fn consume(&mut self, amount: usize) {
        if let Ok(r) = self.inner() {
            r.consume(amount);
        }
    }
}

impl Drop for LentReader {
    fn drop(&mut self) {
        if let Ok(mut state) = self.shared.state.lock()
            && let State::Running(r) = &mut *state
            && r.generation == self.generation
        {
            r.ports[self.index].reader = self.reader.take();
        }
    }
}

/// Returns a port to the pool when its session ended cleanly; retires it otherwise.
struct PortLease {
    shared: Arc<Shared>,
    index: usize,
    generation: u64,
    ended_cleanly: Arc<AtomicBool>,
}

impl Drop for PortLease {
    fn drop(&mut self) {
        if let Ok(mut state) = self.shared.state.lock()
            && let State::Running(r) = &mut *state
            && r.generation == self.generation
        {
            if self.ended_cleanly.load(Ordering::SeqCst) {
                r.free.push(self.index);
            } else {
                r.dead += 1;
            }
        }
        self.shared.changed.notify_all();
    }
}

impl Guest for QemuGuest {
    fn name(&self) -> String {
        format!("qemu:{}", self.config.kernel.name)
    }

    fn is_machine_boundary(&self) -> bool {
        true
    }

    fn start_session(&self) -> Result<AgentSession, GuestError> {
        let poisoned = || GuestError::Agent {
            message: "the guest's state lock is poisoned".into(),
            stderr: String::new(),
        };
        let mut state = self.shared.state.lock().map_err(|_| poisoned())?;
        // A VM that booted and then stopped by itself (what ran in it powered it off, or its
        // kernel panicked) is booted afresh: that session's failure was its own, the next one
        // deserves a machine. One that never booted stays failed.
        if let State::Running(r) = &*state
            && r.booted
            && r.vm.exit.exited()
        {
            tracing::info!(guest = %self.name(), "the VM stopped; booting a fresh one");
            *state = State::NotBooted;
        }
        if matches!(*state, State::NotBooted) {
            *state = match self.boot() {
                Ok(r) => State::Running(Box::new(r)),
                Err(e) => State::Failed(e),
            };
        }
        let (index, generation, first, reader, writer, timeouts, console, exit, slots) = loop {
            match &mut *state {
                State::Failed(e) => return Err(self.boot_error(e.clone(), String::new())),
                State::NotBooted => return Err(poisoned()),
                State::Running(r) => {
                    if let Some(&i) = r.free.last() {
                        // Everything that can fail comes before the port leaves the pool.
                        let port = &mut r.ports[i];
                        let clone = |s: &UnixStream| {
                            s.try_clone()
                                .map_err(|e| self.boot_error(e.to_string(), String::new()))
                        };
                        let (writer, timeouts) = (clone(&port.stream)?, clone(&port.stream)?);
                        let Some(reader) = port.reader.take() else {
                            return Err(poisoned());
                        };
                        let first = !std::mem::replace(&mut port.greeted, true);
                        let slots = Arc::clone(&port.slots);
                        r.free.pop();
                        let console = Arc::clone(&r.vm.console);
                        let exit = Arc::clone(&r.vm.exit);
                        break (
                            i,
                            r.generation,
                            first,
                            reader,
                            writer,
                            timeouts,
                            console,
                            exit,
                            slots,
                        );
                    }
                    if r.dead == r.ports.len() {
                        let tail = r.vm.console.lock().map(|c| c.tail()).unwrap_or_default();
                        return Err(self
                            .boot_error("every agent port of the guest has failed".into(), tail));
                    }
                }
            }
            state = self.shared.changed.wait(state).map_err(|_| poisoned())?;
        };
        drop(state);

        let wait = if first {
            self.config.boot_timeout
        } else {
            Request::Shutdown.reply_within()
        };
        let _ = timeouts.set_read_timeout(Some(wait));
        let ended_cleanly = Arc::new(AtomicBool::new(false));
        let lease = PortLease {
            shared: Arc::clone(&self.shared),
            index,
            generation,
            ended_cleanly: Arc::clone(&ended_cleanly),
        };
        let reader = LentReader {
            reader: Some(reader),
            shared: Arc::clone(&self.shared),
            index,
            generation,
        };
        let mut session = AgentSession::establish(
            Box::new(reader),
            Box::new(writer),
            Arc::default(),
            ended_cleanly,
            Box::new(lease),
        )
        .map_err(|e| {
            let tail = console.lock().map(|c| c.tail()).unwrap_or_default();
            let what = if first {
                format!(
                    "no agent answered within {:?} of starting the VM: {e}",
                    wait
                )
            } else {
                format!("the agent did not restart: {e}")
            };
            self.boot_error(what, tail)
        })?;
        // Each reply may take as long as its request allows (a step, its own timeout).
        session.set_reply_timeout(Box::new(move |limit| {
            let _ = timeouts.set_read_timeout(Some(limit));
        }));
        session.set_disk_provider(Box::new(move |disks| provide_disks(index, &slots, disks)));
        if let Ok(mut state) = self.shared.state.lock()
            && let State::Running(r) = &mut *state
            && r.generation == generation
        {
            r.booted = true;
        }
        let guest = self.name();
        session.set_stop_check(Box::new(move |what| {
            stopped_by_itself(&exit).then(|| GuestError::Stopped {
                guest: guest.clone(),
                message: format!(
                    "QEMU exited on its own (a poweroff, a reboot or a kernel panic in the guest) with a request in flight ({what})"
                ),
                console: console.lock().map(|c| c.tail()).unwrap_or_default(),
            })
        }));
        Ok(session)
    }
}
