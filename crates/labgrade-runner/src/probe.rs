//! Finding out what the guest can do, by trying, once per run and only as labs need it.
//!
//! The first lab that needs a capability probes it in its own session before its first step
//! (probes work in a scratch dir and leave nothing behind); labs that need it meanwhile wait for
//! that result, and later labs reuse it. So no session is spent on probing alone, and the slow
//! probes (making XFS images) overlap with labs that do not need them.

use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use labgrade_disk::ImageCache;
use labgrade_guest::{AgentSession, GuestError};
use labgrade_proto::Capability;
use labgrade_proto::{Hello, ProbeImage, ProbeResult};
use labgrade_spec::{DiskFormat, Filesystem};

/// The capabilities of one guest, filled in as labs need them; shared by the labs of a run.
#[derive(Debug)]
pub struct GuestCapabilities {
    state: Mutex<State>,
    changed: Condvar,
    images: ImageCache,
    /// The container image's rootfs tar, made on first use (engine labs only).
    rootfs: std::sync::OnceLock<Result<std::path::PathBuf, String>>,
    /// An image engine labs pull instead (`--image NAME`).
    pull: Option<String>,
}

#[derive(Debug, Default)]
struct State {
    known: Vec<ProbeResult>,
    probing: Vec<Capability>,
    hello: Option<Hello>,
    spent: Duration,
}

impl GuestCapabilities {
    /// Nothing known yet; XFS probes mount images made in `images`.
    pub fn new(images: ImageCache) -> GuestCapabilities {
        GuestCapabilities {
            state: Mutex::default(),
            changed: Condvar::new(),
            images,
            rootfs: std::sync::OnceLock::new(),
            pull: None,
        }
    }

    /// Engine labs pull `image` from its registry instead of importing labgrade's busybox
    /// image (`--image NAME`; `None` keeps the import, which needs no network).
    pub fn pulling(mut self, image: Option<String>) -> GuestCapabilities {
        self.pull = image;
        self
    }

    /// The image engine labs pull, if they do not import labgrade's.
    pub(crate) fn pulled_image(&self) -> Option<&str> {
        self.pull.as_deref()
    }

    /// The busybox rootfs tar engine labs import as `$IMAGE` (cached by busybox's digest).
    pub(crate) fn rootfs(&self) -> Result<std::path::PathBuf, String> {
        self.rootfs
            .get_or_init(|| {
                crate::writable_cache_dir(labgrade_fs::CacheDir::Images)
                    .map_err(|e| e.to_string())
                    .and_then(|dir| {
                        labgrade_disk::busybox_rootfs(&dir)
                            .map_err(|e| format!("cannot make the container image: {e}"))
                    })
            })
            .clone()
    }

    /// Where images for disks and probes come from.
    pub(crate) fn images(&self) -> &ImageCache {
        &self.images
    }

    /// The first session's hello: how labs run on this guest (root or a user namespace).
    pub fn hello(&self) -> Option<Hello> {
        self.state.lock().ok().and_then(|s| s.hello.clone())
    }

    /// Every capability probed so far, with its evidence.
    fn results(&self) -> Vec<ProbeResult> {
        self.state
            .lock()
            .map(|s| s.known.clone())
            .unwrap_or_default()
    }

    /// Wall time spent in probes, summed over sessions.
    pub fn probe_time(&self) -> Duration {
        self.state.lock().map(|s| s.spent).unwrap_or_default()
    }

    pub(crate) fn note_hello(&self, hello: &Hello) {
        if let Ok(mut s) = self.state.lock() {
            s.hello.get_or_insert_with(|| hello.clone());
        }
    }

    /// The reason a lab needing `needs` must be skipped here: the capabilities among them already
    /// probed and found missing. `None` when none is known to be missing (some may be unprobed).
    pub fn missing(&self, needs: &[Capability]) -> Option<String> {
        let known = self.results();
        let missing: Vec<String> = needs
            .iter()
            .filter_map(|cap| known.iter().find(|r| r.cap == *cap && !r.available))
            .map(|r| format!("needs {} ({}): {}", r.cap, r.cap.meaning(), r.detail))
            .collect();
        (!missing.is_empty()).then(|| missing.join("; "))
    }

    /// Makes sure every one of `needs` is known, probing in `session` those no other session is
    /// probing, and waiting for the rest.
    pub(crate) fn ensure(
        &self,
        session: &mut AgentSession,
        needs: &[Capability],
    ) -> Result<(), GuestError> {
        let lock_err = || GuestError::Agent {
            message: "the capability table's lock is poisoned".into(),
            stderr: String::new(),
        };
        let mut state = self.state.lock().map_err(|_| lock_err())?;
        loop {
            let unknown: Vec<Capability> = needs
                .iter()
                .copied()
                .filter(|c| !state.known.iter().any(|r| r.cap == *c))
                .collect();
            if unknown.is_empty() {
                return Ok(());
            }
            let mine: Vec<Capability> = unknown
                .iter()
                .copied()
                .filter(|c| !state.probing.contains(c))
                .collect();
            if mine.is_empty() {
                state = self.changed.wait(state).map_err(|_| lock_err())?;
                continue;
            }
            state.probing.extend(mine.iter().copied());
            drop(state);
            let started = Instant::now();
            let outcome = probe(session, &mine, &self.images);
            state = self.state.lock().map_err(|_| lock_err())?;
            state.probing.retain(|c| !mine.contains(c));
            state.spent += started.elapsed();
            self.changed.notify_all();
            state.known.extend(outcome?);
        }
    }
}

/// The image a filesystem probe mounts: what mkfs makes by default, and XFS's V4 format.
fn probe_format(cap: Capability) -> Option<DiskFormat> {
    let (fs, mkfs): (Filesystem, &[&str]) = match cap {
        Capability::Xfs => (Filesystem::Xfs, &[]),
        Capability::XfsV4 => (Filesystem::Xfs, &["-m", "crc=0", "-n", "ftype=0"]),
        Capability::Ext4 => (Filesystem::Ext4, &[]),
        _ => return None,
    };
    Some(DiskFormat {
        fs,
        mkfs: mkfs.iter().map(|s| (*s).to_owned()).collect(),
        size_mib: labgrade_spec::DEFAULT_DISK_MIB,
    })
}

fn probe(
    session: &mut AgentSession,
    caps: &[Capability],
    cache: &ImageCache,
) -> Result<Vec<ProbeResult>, GuestError> {
    // An image the host cannot make settles its probe here; the rest go to the guest.
    let mut settled = Vec::new();
    let mut images = Vec::new();
    for &cap in caps {
        let Some(format) = probe_format(cap) else {
            continue;
        };
        match cache.image(&format) {
            Ok(path) => images.push(ProbeImage {
                cap,
                path: path.display().to_string(),
            }),
            Err(e) => settled.push(ProbeResult {
                cap,
                available: false,
                detail: format!("cannot make the probe image ({}): {e}", format.describe()),
            }),
        }
    }
    let ask: Vec<Capability> = caps
        .iter()
        .copied()
        .filter(|c| !settled.iter().any(|r| r.cap == *c))
        .collect();
    if ask.is_empty() {
        return Ok(settled);
    }
    let mut results = session.probe(ask, images)?;
    results.extend(settled);
    Ok(results)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_capabilities_probed_and_found_missing_skip_a_lab() {
        let caps = GuestCapabilities::new(ImageCache::new("/nonexistent".into()));
        let needs = [Capability::Overlay, Capability::XfsV4];
        assert_eq!(
            caps.missing(&needs),
            None,
            "nothing probed yet: nothing known missing"
        );
        if let Ok(mut s) = caps.state.lock() {
            s.known.push(ProbeResult {
                cap: Capability::Overlay,
                available: true,
                detail: "mounted".into(),
            });
            s.known.push(ProbeResult {
                cap: Capability::XfsV4,
                available: false,
                detail: "V4 refused".into(),
            });
        }
        assert_eq!(
            caps.missing(&needs).as_deref(),
            Some("needs xfs-v4 (the kernel mounts XFS V4 (crc=0, ftype=0) images): V4 refused")
        );
        assert_eq!(caps.missing(&[Capability::Overlay, Capability::Xfs]), None);
    }
}
