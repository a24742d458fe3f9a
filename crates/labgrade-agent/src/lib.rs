//! The checker that runs inside a guest.
//!
//! Like youki's `runtimetest`, it is a small program run *inside* the environment under test: it
//! enters private namespaces, keeps the lab's shell session, probes capabilities by trying them
//! and reads facts about paths, and speaks a line-based JSON protocol ([`proto`]) to the runner on
//! the host. It decides nothing about pass or fail; that is the runner's job, so the logic that
//! judges stays testable without root.

mod cgroup;
mod disks;
mod engine;
mod facts;
mod kmsg;
pub mod layers;
mod loopdev;
mod namespaces;
mod probe;
mod reader;
mod sandbox;
mod session;

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use labgrade_snap::DigestCache;

use labgrade_proto as proto;
pub use namespaces::{NamespaceError, enter_private_namespaces};
use proto::{Hello, Request, Response};
pub use sandbox::{SANDBOX_UID_BASE, mounts_under};
pub use session::SessionError;

/// `$LAB` inside every session: a directory on the session's private tmpfs.
pub const LAB_DIR: &str = "/tmp/lab";
/// The agent's own files (step scripts and outputs), beside `$LAB` on the same private tmpfs.
const CTL_DIR: &str = "/tmp/.labgrade";

/// Why the agent stopped before serving.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// Namespaces could not be entered.
    #[error(transparent)]
    Namespace(#[from] NamespaceError),
    /// The shell session could not start.
    #[error(transparent)]
    Session(#[from] SessionError),
    /// The runner's channel broke.
    #[error("the channel to the runner broke: {0}")]
    Channel(#[from] std::io::Error),
}

/// Enters private namespaces, starts the session and serves requests until `Shutdown` or EOF.
///
/// Must be called while the process is still single-threaded.
pub fn serve(input: impl BufRead, mut output: impl Write) -> Result<(), AgentError> {
    let host = disks::HostFiles::before_namespaces();
    if std::env::var_os(proto::REAP_SANDBOX_CGROUPS_ENV).is_some() {
        cgroup::start_reaper();
    }
    // Before the pid namespace: the session's /proc has no entry for the agent itself.
    let exe = std::env::current_exe().ok();
    let privilege = match enter_private_namespaces() {
        Ok(p) => p,
        Err(e) => {
            send(
                &mut output,
                &Response::Error {
                    message: e.to_string(),
                },
            )?;
            return Err(e.into());
        }
    };
    let lab = PathBuf::from(LAB_DIR);
    let ctl = PathBuf::from(CTL_DIR);
    std::fs::create_dir_all(&lab)?;
    std::fs::create_dir_all(&ctl)?;
    let mut kmsg = kmsg::KernelLog::open();
    let mut digests = DigestCache::default();
    // Held for the session: a loop device lives while the agent holds it or a mount uses it.
    let mut attached: Vec<disks::AttachedDisk> = Vec::new();
    // The last sandbox run, kept so checks read the state it left in its mount namespace.
    let mut sandbox: Option<sandbox::HeldSandbox> = None;
    // A container engine started for the lab: stopped at `Shutdown`, killed with the session
    // (its processes are in the session's pid namespace) on every other path out.
    let mut engine: Option<engine::RunningEngine> = None;
    let mut session = match session::ShellSession::start(&lab, &ctl) {
        Ok(s) => s,
        Err(e) => {
            send(
                &mut output,
                &Response::Error {
                    message: e.to_string(),
                },
            )?;
            return Err(e.into());
        }
    };
    send(
        &mut output,
        &Response::Hello(Hello {
            lab_dir: LAB_DIR.to_owned(),
            privilege,
            kmsg_unavailable: kmsg.unavailable.clone(),
        }),
    )?;
    for line in input.lines() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let request: Request = match serde_json::from_str(&line) {
            Ok(r) => r,
            Err(e) => {
                send(
                    &mut output,
                    &Response::Error {
                        message: format!("bad request: {e}"),
                    },
                )?;
                continue;
            }
        };
        let response = match request {
            Request::Probe { caps, images } => Response::Probed {
                results: caps
                    .into_iter()
                    .map(|c| {
                        let image = images
                            .iter()
                            .find(|i| i.cap == c)
                            .map(|i| host.open(&i.path).map_err(|e| (i.path.clone(), e)));
                        match image {
                            Some(Err((path, e))) => proto::ProbeResult {
                                cap: c,
                                available: false,
                                detail: format!("cannot read the probe image {path}: {e}"),
                            },
                            Some(Ok(f)) => probe::probe(c, Some(&f), &ctl.join("probe"), &mut kmsg),
                            None => probe::probe(c, None, &ctl.join("probe"), &mut kmsg),
                        }
                    })
                    .collect(),
            },
            Request::Attach { disks } => {
                let mut done = Vec::new();
                let mut failed = None;
                for d in &disks {
                    let copy_to = ctl.join(format!("disk-{}.img", attached.len()));
                    match disks::attach(&d.source, &host, &copy_to) {
                        Ok(a) => {
                            let device = a.device.display().to_string();
                            attached.push(a);
                            if let Err(e) = session.export(&d.env, &device) {
                                failed = Some(format!("cannot set ${}: {e}", d.env));
                                break;
                            }
                            done.push(proto::AttachedDisk {
                                env: d.env.clone(),
                                device,
                            });
                        }
                        Err(e) => {
                            failed = Some(format!("cannot attach ${}: {e}", d.env));
                            break;
                        }
                    }
                }
                match failed {
                    Some(message) => Response::Error { message },
                    None => Response::Attached { disks: done },
                }
            }
            Request::Run {
                step,
                script,
                timeout_ms,
                stream,
            } => {
                let timeout = Duration::from_millis(timeout_ms);
                let mut send_piece = |name: &str, bytes: &[u8]| {
                    let piece = Response::Output {
                        stream: name.to_owned(),
                        data: String::from_utf8_lossy(bytes).into_owned(),
                    };
                    let _ = send(&mut output, &piece);
                };
                let sink: Option<&mut session::OutputSink<'_>> =
                    if stream { Some(&mut send_piece) } else { None };
                Response::Ran(session.run(step, &script, timeout, &mut kmsg, sink))
            }
            Request::Inspect { paths, text_of } => match sandbox.as_ref().map(|s| s.view()) {
                // A sandbox's state was made by untrusted code: read as its student could.
                Some(Ok(view)) => Response::Inspected {
                    facts: reader::read_facts(&view, &paths, &text_of),
                },
                Some(Err(message)) => Response::Error { message },
                None => Response::Inspected {
                    facts: paths
                        .iter()
                        .map(|p| facts::inspect(&lab, p, text_of.contains(p), &mut digests))
                        .collect(),
                },
            },
            Request::RunSandboxed(req) => {
                // One sandbox at a time: the previous one's state is let go first.
                sandbox = None;
                match sandbox::run(&req, privilege) {
                    Ok((outcome, held)) => {
                        sandbox = Some(held);
                        Response::Sandboxed(outcome)
                    }
                    Err(message) => Response::Error { message },
                }
            }
            Request::Mounts { layers } => {
                // Pid 1 of the proc this agent sees is its session, in the agent's mount namespace.
                let table = match sandbox.as_ref() {
                    Some(s) => s.mountinfo(),
                    None => reader::read_mountinfo(1),
                };
                match table {
                    Ok(text) => {
                        let mut mounts = sandbox::mounts_under(&text, LAB_DIR);
                        if !layers.is_empty()
                            && let Some(Ok(view)) = sandbox.as_ref().map(|s| s.view())
                        {
                            mounts = reader::name_layers(&view, mounts, &layers);
                        }
                        Response::Mounted { mounts }
                    }
                    Err(e) => Response::Error {
                        message: format!("cannot read the mount table: {e}"),
                    },
                }
            }
            Request::Snapshot { dir } => Response::Snapshotted {
                tree: labgrade_snap::take_cached(&Path::new(&lab).join(&dir), &mut digests)
                    .map_err(|e| e.to_string()),
            },
            Request::StartEngine(req) => match engine.as_ref() {
                Some(_) => Response::Error {
                    message: "an engine is already running in this session".into(),
                },
                None => match start_engine(&req, &host, &ctl, exe.as_deref(), &mut session) {
                    Ok((running, started)) => {
                        engine = Some(running);
                        Response::EngineStarted(started)
                    }
                    Err(message) => Response::Error { message },
                },
            },
            Request::Shutdown => {
                drop(sandbox.take());
                if let Some(e) = engine.take() {
                    e.stop(&ctl);
                }
                session.kill();
                send(&mut output, &Response::Bye)?;
                return Ok(());
            }
        };
        send(&mut output, &response)?;
    }
    if let Some(e) = engine.take() {
        e.stop(&ctl);
    }
    session.kill();
    Ok(())
}

/// Copies the image's rootfs tar (if it is imported) onto the session's tmpfs, starts the engine
/// and exports its variables to the steps.
fn start_engine(
    req: &proto::EngineRequest,
    host: &disks::HostFiles,
    ctl: &Path,
    exe: Option<&Path>,
    session: &mut session::ShellSession,
) -> Result<(engine::RunningEngine, proto::EngineStarted), String> {
    let rootfs = match &req.source {
        proto::ImageSource::Import { rootfs_tar } => Some(copy_from_host(
            host,
            rootfs_tar,
            &ctl.join("rootfs.tar"),
            "the image's rootfs",
            0o644,
        )?),
        proto::ImageSource::Pull => None,
    };
    // The steps run `"$LABGRADE" __container-layers`. A labgrade kept under the host's /tmp (a
    // checkout in /tmp) is hidden there by the session's own tmpfs: they get a copy on it.
    let exe = match exe {
        Some(me) if !me.exists() => Some(copy_from_host(
            host,
            &me.to_string_lossy(),
            &ctl.join("labgrade"),
            "labgrade's own binary",
            0o755,
        )?),
        other => other.map(Path::to_path_buf),
    };
    let (running, started) =
        engine::RunningEngine::start(req, ctl, rootfs.as_deref(), exe.as_deref())?;
    for (k, v) in &started.env {
        session
            .export(k, v)
            .map_err(|e| format!("cannot set ${k}: {e}"))?;
    }
    Ok((running, started))
}

/// Copies `what` at the host path `from` (under the host's /tmp too, which the session's tmpfs
/// hides) to `to` on the session's tmpfs, with `mode`.
fn copy_from_host(
    host: &disks::HostFiles,
    from: &str,
    to: &Path,
    what: &str,
    mode: u32,
) -> Result<PathBuf, String> {
    use std::os::unix::fs::PermissionsExt;
    let mut source = host
        .open(from)
        .map_err(|e| format!("cannot read {what} {from}: {e}"))?;
    std::fs::File::create(to)
        .and_then(|mut copy| std::io::copy(&mut source, &mut copy))
        .and_then(|_| std::fs::set_permissions(to, std::fs::Permissions::from_mode(mode)))
        .map_err(|e| format!("cannot copy {what}: {e}"))?;
    Ok(to.to_path_buf())
}

fn send(out: &mut impl Write, response: &Response) -> std::io::Result<()> {
    serde_json::to_writer(&mut *out, response)?;
    out.write_all(b"\n")?;
    out.flush()
}
