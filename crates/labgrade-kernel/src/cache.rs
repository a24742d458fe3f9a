//! The kernel cache. Layout under the root:
//!
//! ```text
//! index.toml            source name -> release ("debian:6.1" = "6.1.0-50-amd64")
//! <release>/            the unpacked packages (boot/, lib/ or usr/)
//! <release>/kernel.toml where vmlinuz and the modules are, and where they came from
//! .apt/<suite>/         the private apt state of one suite
//! .tmp-*                fetches in progress (renamed to <release>/ when complete)
//! ```
//!
//! A kernel directory appears only by rename, complete, so an interrupted fetch never leaves half
//! a kernel. `index.toml` is replaced by rename too; two fetches racing may each lose the other's
//! entry, which costs the loser one package-list download next time, never a wrong kernel.

use std::collections::{BTreeMap, HashSet};
use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::apt::{self, Apt};
use crate::debian::{self, field, first_stanza};
use crate::layout;
use crate::mirror;
use crate::source::DebianSelector;
use crate::{Kernel, KernelError, KernelSource};

const INDEX: &str = "index.toml";
const RECORD: &str = "kernel.toml";
const APT_STATE: &str = ".apt";
const SCRATCH_PREFIXES: &[&str] = &[".tmp-", ".old-"];
/// Scratch directories older than this belong to a fetch that died.
const STALE_AFTER: Duration = Duration::from_secs(3600);

/// How a fetch may get a kernel that is not cached yet.
#[derive(Debug, Clone, Default)]
pub struct FetchOptions {
    /// The Debian archive to use instead of the one this machine's apt is configured with.
    pub mirror: Option<String>,
    /// Never touch the network: answer from the cache or fail with [`KernelError::NotCached`].
    pub offline: bool,
}

/// Unpacked kernels on disk, keyed by release, with an index from source names to releases.
#[derive(Debug)]
pub struct KernelCache {
    root: PathBuf,
    /// Suites (`MIRROR SUITE`) whose package lists this process has already refreshed.
    updated: Mutex<HashSet<String>>,
}

/// What `kernel.toml` records; paths relative to the kernel's directory so the cache can move.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Record {
    name: String,
    release: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    package_version: Option<String>,
    vmlinuz: PathBuf,
    modules_dir: PathBuf,
    /// `NAME=VERSION` of every package unpacked here.
    #[serde(default)]
    packages: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    suite: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    mirror: Option<String>,
    /// For `deb:` kernels: size and mtime of the package files, to notice a rebuilt package.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    deb_stamp: Option<String>,
}

/// `index.toml`: which release each source name resolved to.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Index {
    #[serde(default)]
    names: BTreeMap<String, String>,
}

/// What to download for a Debian kernel, as resolved in one suite.
#[derive(Debug)]
struct Plan {
    release: String,
    version: String,
    /// (package, exact version): the image, and on 7.x its binary, modules and base packages.
    packages: Vec<(String, String)>,
}

impl KernelCache {
    /// A cache rooted at `root` (created on first fetch).
    pub fn new(root: PathBuf) -> Self {
        KernelCache {
            root,
            updated: Mutex::new(HashSet::new()),
        }
    }

    /// The cache every labgrade command shares: `$LABGRADE_CACHE_DIR/kernels`, else
    /// `$XDG_CACHE_HOME/labgrade/kernels`, else `~/.cache/labgrade/kernels`.
    pub fn default_location() -> Self {
        Self::new(location(|k| std::env::var_os(k)))
    }

    /// The cache's root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// A directory beside the kernels in the same cache, for what labgrade derives from them
    /// (initramfs images, unpacked vmlinux, lab timings).
    pub fn beside(&self, name: &str) -> PathBuf {
        self.root
            .parent()
            .map_or_else(|| self.root.join(name), |p| p.join(name))
    }

    /// Like [`KernelCache::beside`], but a directory this user can write: the cache's own, or,
    /// when that cannot be written (an unprivileged run that kept root's HOME), one under a
    /// private per-user directory in the temp dir. What is kept there gets mounted and booted,
    /// so that directory must be this user's alone (mode 0700); any other is refused.
    pub fn writable_beside(&self, name: &str) -> std::io::Result<PathBuf> {
        let dir = self.beside(name);
        if fs::create_dir_all(&dir).is_ok()
            && nix::unistd::access(&dir, nix::unistd::AccessFlags::W_OK).is_ok()
        {
            return Ok(dir);
        }
        let private = private_dir(&std::env::temp_dir())?;
        tracing::debug!(cache = %dir.display(), instead = %private.display(), "cache not writable");
        let dir = private.join(name);
        fs::create_dir_all(&dir)?;
        Ok(dir)
    }

    /// A bootable kernel for `source`. Idempotent: a second fetch of a cached kernel does no
    /// network work at all (no package-list download), so it takes milliseconds.
    pub fn fetch(&self, source: &KernelSource, opts: &FetchOptions) -> Result<Kernel, KernelError> {
        let name = source.to_string();
        match source {
            KernelSource::Local { vmlinuz, modules } => local(&name, vmlinuz, modules),
            KernelSource::Deb { path } => self.fetch_deb(&name, path),
            KernelSource::Debian { selector } => {
                let sel = DebianSelector::parse(selector).map_err(|why| KernelError::Selector {
                    given: name.clone(),
                    why,
                })?;
                self.fetch_debian(&name, &sel, opts)
            }
        }
    }

    /// Every cached kernel, once per source name it was fetched as (and once for a kernel no
    /// name points at any more), sorted by name and release.
    pub fn list(&self) -> Result<Vec<Kernel>, KernelError> {
        let mut kernels = Vec::new();
        let mut named = HashSet::new();
        for (name, release) in self.read_index()?.names {
            if let Some((_, kernel)) = self.load(&release) {
                named.insert(release);
                kernels.push(Kernel { name, ..kernel });
            }
        }
        for release in self.releases() {
            if !named.contains(&release)
                && let Some((_, kernel)) = self.load(&release)
            {
                kernels.push(kernel);
            }
        }
        kernels.sort_by(|a, b| (&a.name, &a.release).cmp(&(&b.name, &b.release)));
        Ok(kernels)
    }

    fn fetch_debian(
        &self,
        name: &str,
        sel: &DebianSelector,
        opts: &FetchOptions,
    ) -> Result<Kernel, KernelError> {
        if let Some(kernel) = self.cached(name, sel)? {
            tracing::debug!(name, release = %kernel.release, "kernel cache hit");
            return Ok(kernel);
        }
        let suites = debian::suites_for(sel).map_err(|version| KernelError::UnknownVersion {
            version,
            known: debian::known_versions(),
        })?;
        if opts.offline {
            return Err(KernelError::NotCached {
                name: name.to_owned(),
                root: self.root.clone(),
            });
        }
        let mirror = match &opts.mirror {
            Some(m) => m.trim().trim_end_matches('/').to_owned(),
            None => mirror::system_mirror()?,
        };
        let mut searched = Vec::new();
        let result = self.search(name, sel, &mirror, &suites, &mut searched);
        for apt in &searched {
            apt.tidy();
        }
        result
    }

    /// Looks for the kernel in each suite in turn; fetches it from the first that has it.
    fn search(
        &self,
        name: &str,
        sel: &DebianSelector,
        mirror: &str,
        suites: &[String],
        searched: &mut Vec<Apt>,
    ) -> Result<Kernel, KernelError> {
        for suite in suites {
            searched.push(self.apt(mirror, suite)?);
            let Some(apt) = searched.last() else {
                break;
            };
            if let Some(plan) = resolve(apt, name, sel)? {
                let kernel = self.install_plan(name, apt, &plan)?;
                self.index_set(name, &kernel.release)?;
                return Ok(kernel);
            }
        }
        Err(not_found(sel, searched, mirror, suites))
    }

    /// A private apt for `suite`, its lists refreshed once per process.
    fn apt(&self, mirror: &str, suite: &str) -> Result<Apt, KernelError> {
        let apt = Apt::prepare(&self.root.join(APT_STATE), mirror, suite)?;
        let key = format!("{mirror} {suite}");
        let fresh = self
            .updated
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(&key);
        if !fresh {
            let started = std::time::Instant::now();
            apt.update()?;
            tracing::debug!(suite, mirror, elapsed = ?started.elapsed(), "package lists updated");
            self.updated
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(key);
        }
        Ok(apt)
    }

    /// Downloads and unpacks a resolved kernel, unless that very package version is cached.
    fn install_plan(&self, name: &str, apt: &Apt, plan: &Plan) -> Result<Kernel, KernelError> {
        let specs: Vec<String> = plan
            .packages
            .iter()
            .map(|(p, v)| format!("{p}={v}"))
            .collect();
        if let Some((record, kernel)) = self.load(&plan.release)
            && record.package_version.as_deref() == Some(plan.version.as_str())
            && sorted(&record.packages) == sorted(&specs)
        {
            tracing::debug!(name, release = %plan.release, "resolved to a cached kernel");
            return Ok(Kernel {
                name: name.to_owned(),
                ..kernel
            });
        }
        self.sweep_scratch();
        let unpack = self.scratch("tmp-unpack", &plan.release)?;
        let download = self.scratch("tmp-download", &plan.release)?;
        let started = std::time::Instant::now();
        apt.download(&specs, download.path())?;
        let debs = deb_files(download.path())?;
        tracing::debug!(?debs, elapsed = ?started.elapsed(), "downloaded");
        if debs.len() != specs.len() {
            return Err(KernelError::Layout {
                dir: download.path().to_path_buf(),
                why: format!(
                    "apt-get download {} left {} package files, not {}",
                    specs.join(" "),
                    debs.len(),
                    specs.len()
                ),
            });
        }
        for deb in &debs {
            unpack_deb(deb, unpack.path())?;
        }
        drop(download);
        let record = Record {
            name: name.to_owned(),
            release: plan.release.clone(),
            package_version: Some(plan.version.clone()),
            vmlinuz: PathBuf::new(),
            modules_dir: PathBuf::new(),
            packages: specs,
            suite: Some(apt.suite.clone()),
            mirror: Some(apt.mirror.clone()),
            deb_stamp: None,
        };
        self.commit(unpack, record, Some(&plan.release))
    }

    fn fetch_deb(&self, name: &str, path: &Path) -> Result<Kernel, KernelError> {
        let deb_err = |why: String| KernelError::Deb {
            path: path.to_path_buf(),
            why,
        };
        if !path.is_file() {
            let mut why = "no such file".to_owned();
            if path.to_string_lossy().contains(',') {
                why.push_str("; give one .deb: its companion packages are taken from beside it");
            }
            return Err(deb_err(why));
        }
        let control = deb_control(path)?;
        let stanza = first_stanza(&control);
        let package = field(&stanza, "Package").unwrap_or_default().to_owned();
        let version = field(&stanza, "Version").unwrap_or_default().to_owned();
        let Some(release) = debian::release_of_package(&package).map(str::to_owned) else {
            return Err(deb_err(format!(
                "`{package}` is not a Linux kernel package; give a linux-image-RELEASE package \
                 (or, from 7.x, linux-binary-RELEASE with linux-modules-RELEASE and \
                 linux-base-RELEASE beside it)"
            )));
        };
        let mut wanted =
            debian::parts_of_image(field(&stanza, "Depends").unwrap_or_default(), &release);
        if package.starts_with("linux-binary-") || package.starts_with("linux-modules-") {
            for part in ["linux-binary", "linux-modules", "linux-base"] {
                let p = format!("{part}-{release}");
                if !wanted.iter().any(|(w, _)| *w == p) {
                    wanted.push((p, version.clone()));
                }
            }
        }
        wanted.retain(|(p, _)| *p != package);
        let dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let mut files = vec![path.to_path_buf()];
        let mut missing = Vec::new();
        for (p, v) in &wanted {
            match sibling_deb(dir, p, v) {
                Some(f) => files.push(f),
                None => missing.push(format!("{p}={v}")),
            }
        }
        if !missing.is_empty() {
            return Err(deb_err(format!(
                "{package} {version} needs its companion packages beside it in {}: {}; get \
                 them with `apt-get download {}`, or fetch debian:{release} instead",
                dir.display(),
                missing.join(", "),
                missing.join(" ")
            )));
        }
        let stamp = stamp(&files);
        let mut specs = vec![format!("{package}={version}")];
        specs.extend(wanted.iter().map(|(p, v)| format!("{p}={v}")));
        if let Some((record, kernel)) = self.load(&release)
            && record.deb_stamp.as_deref() == Some(stamp.as_str())
            && sorted(&record.packages) == sorted(&specs)
        {
            return Ok(Kernel {
                name: name.to_owned(),
                ..kernel
            });
        }
        self.sweep_scratch();
        let unpack = self.scratch("tmp-unpack", &release)?;
        for f in &files {
            unpack_deb(f, unpack.path())?;
        }
        let record = Record {
            name: name.to_owned(),
            release: release.clone(),
            package_version: Some(version),
            vmlinuz: PathBuf::new(),
            modules_dir: PathBuf::new(),
            packages: specs,
            suite: None,
            mirror: None,
            deb_stamp: Some(stamp),
        };
        // The package name may not carry the exact `uname -r` (custom builds): take the tree's.
        self.commit(unpack, record, None)
    }

    /// Finds the kernel in an unpacked tree, records it and renames the tree into place.
    fn commit(
        &self,
        tree: Scratch,
        mut record: Record,
        release: Option<&str>,
    ) -> Result<Kernel, KernelError> {
        let found = layout::find(tree.path(), release).map_err(|why| KernelError::Layout {
            dir: tree.path().to_path_buf(),
            why,
        })?;
        if found.release.contains('/') || found.release.starts_with('.') {
            return Err(KernelError::Layout {
                dir: tree.path().to_path_buf(),
                why: format!("`{}` cannot be a kernel release", found.release),
            });
        }
        record.release = found.release;
        record.vmlinuz = found.vmlinuz;
        record.modules_dir = found.modules_dir;
        let text = toml::to_string(&record).map_err(|e| KernelError::Corrupt {
            path: tree.path().join(RECORD),
            why: e.to_string(),
        })?;
        let record_path = tree.path().join(RECORD);
        std::fs::write(&record_path, text).map_err(KernelError::io("write", &record_path))?;
        let dest = self.root.join(&record.release);
        if let Err(e) = std::fs::rename(tree.path(), &dest) {
            if !dest.exists() {
                return Err(KernelError::io("move the unpacked kernel to", &dest)(e));
            }
            // Already there: a concurrent fetch of the same kernel (keep it), or another
            // package version of the same release (replace it).
            let same = self.load(&record.release).is_some_and(|(r, _)| {
                r.package_version == record.package_version && r.deb_stamp == record.deb_stamp
            });
            if !same {
                let old = self.scratch_path("old", &record.release);
                std::fs::rename(&dest, &old).map_err(KernelError::io("move aside", &dest))?;
                std::fs::rename(tree.path(), &dest)
                    .map_err(KernelError::io("move the unpacked kernel to", &dest))?;
                let _ = std::fs::remove_dir_all(&old);
            }
        }
        tree.disarm_if_moved();
        let (_, kernel) = self
            .load(&record.release)
            .ok_or_else(|| KernelError::Layout {
                dir: dest.clone(),
                why: format!("{RECORD} could not be read back"),
            })?;
        tracing::debug!(name = %record.name, release = %kernel.release, "kernel cached");
        Ok(Kernel {
            name: record.name,
            ..kernel
        })
    }

    /// The cached kernel for a Debian selector, found without any network access.
    fn cached(&self, name: &str, sel: &DebianSelector) -> Result<Option<Kernel>, KernelError> {
        let with_name = |(_, k): (Record, Kernel)| Kernel {
            name: name.to_owned(),
            ..k
        };
        if let Some(release) = self.read_index()?.names.get(name)
            && let Some(found) = self.load(release)
        {
            return Ok(Some(with_name(found)));
        }
        Ok(match sel {
            DebianSelector::Release(release) => self.load(release).map(with_name),
            DebianSelector::PackageVersion(version) => self
                .releases()
                .into_iter()
                .filter_map(|r| self.load(&r))
                .find(|(r, _)| {
                    r.suite.is_some() && r.package_version.as_deref() == Some(version.as_str())
                })
                .map(with_name),
            _ => None,
        })
    }

    /// The cached kernel of `release`, if complete (its record readable, its files there).
    fn load(&self, release: &str) -> Option<(Record, Kernel)> {
        let dir = self.root.join(release);
        let path = dir.join(RECORD);
        let text = std::fs::read_to_string(&path).ok()?;
        let record: Record = match toml::from_str(&text) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "ignoring a damaged kernel record");
                return None;
            }
        };
        let kernel = Kernel {
            name: record.name.clone(),
            release: record.release.clone(),
            package_version: record.package_version.clone(),
            vmlinuz: dir.join(&record.vmlinuz),
            modules_dir: dir.join(&record.modules_dir),
        };
        if record.release != release || !kernel.vmlinuz.is_file() || !kernel.modules_dir.is_dir() {
            tracing::warn!(dir = %dir.display(), "ignoring an incomplete cached kernel");
            return None;
        }
        Some((record, kernel))
    }

    /// Names of the kernel directories (not the scratch or apt ones).
    fn releases(&self) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(&self.root) else {
            return Vec::new();
        };
        let mut releases: Vec<String> = entries
            .filter_map(|e| e.ok())
            .filter(|e| e.path().is_dir())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| !n.starts_with('.'))
            .collect();
        releases.sort();
        releases
    }

    fn read_index(&self) -> Result<Index, KernelError> {
        let path = self.root.join(INDEX);
        match std::fs::read_to_string(&path) {
            Ok(text) => toml::from_str(&text).map_err(|e| KernelError::Corrupt {
                path,
                why: e.to_string(),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Index::default()),
            Err(e) => Err(KernelError::io("read", &path)(e)),
        }
    }

    /// Points `name` at `release` in the index, replacing the file atomically.
    fn index_set(&self, name: &str, release: &str) -> Result<(), KernelError> {
        let mut index = self.read_index()?;
        if index.names.get(name).map(String::as_str) == Some(release) {
            return Ok(());
        }
        index.names.insert(name.to_owned(), release.to_owned());
        let path = self.root.join(INDEX);
        let text = toml::to_string(&index).map_err(|e| KernelError::Corrupt {
            path: path.clone(),
            why: e.to_string(),
        })?;
        write_atomically(&path, &text)
    }

    /// `.KIND-RELEASE-PID-N` in the cache root: on the same filesystem, so rename works.
    fn scratch_path(&self, kind: &str, release: &str) -> PathBuf {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        self.root
            .join(format!(".{kind}-{release}-{}-{n}", std::process::id()))
    }

    /// A fresh scratch directory, removed when dropped unless it was renamed away.
    fn scratch(&self, kind: &str, release: &str) -> Result<Scratch, KernelError> {
        let path = self.scratch_path(kind, release);
        std::fs::create_dir_all(&path).map_err(KernelError::io("create", &path))?;
        Ok(Scratch { path })
    }

    /// Removes scratch directories left by fetches that died (older than an hour).
    fn sweep_scratch(&self) {
        let Ok(entries) = std::fs::read_dir(&self.root) else {
            return;
        };
        for entry in entries.filter_map(|e| e.ok()) {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !SCRATCH_PREFIXES.iter().any(|p| name.starts_with(p)) {
                continue;
            }
            let old = entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age > STALE_AFTER);
            if old || owner_is_gone(&name) {
                tracing::debug!(dir = %entry.path().display(), "removing a stale scratch dir");
                let path = entry.path();
                if path.is_dir() {
                    let _ = std::fs::remove_dir_all(&path);
                } else {
                    let _ = std::fs::remove_file(&path);
                }
            }
        }
    }
}

/// Was the scratch directory `.KIND-RELEASE-PID-N` made by a process that has since died?
fn owner_is_gone(name: &str) -> bool {
    let mut fields = name.rsplitn(3, '-');
    let (Some(_n), Some(pid), Some(_)) = (fields.next(), fields.next(), fields.next()) else {
        return false;
    };
    match pid.parse::<u32>() {
        Ok(pid) => pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists(),
        Err(_) => false,
    }
}

/// Finds what a selector names in one suite's package lists; `None` if the suite has no such
/// kernel at all.
fn resolve(apt: &Apt, name: &str, sel: &DebianSelector) -> Result<Option<Plan>, KernelError> {
    let meta = |spec: &str| -> Result<Option<(String, String)>, KernelError> {
        let Some(text) = apt.show(spec)? else {
            return Ok(None);
        };
        let depends = field(&first_stanza(&text), "Depends")
            .unwrap_or_default()
            .to_owned();
        debian::image_from_depends(&depends)
            .map(Some)
            .ok_or_else(|| KernelError::NotInArchive {
                what: format!("a kernel image in the Depends of {spec} ({depends})"),
                suite: apt.suite.clone(),
                mirror: apt.mirror.clone(),
                hint: "the metapackage no longer names a versioned linux-image; name an exact \
                       release instead (debian:6.1.0-50-amd64)"
                    .into(),
            })
    };
    let found = match sel {
        DebianSelector::Upstream { .. } | DebianSelector::Suite(_) => meta("linux-image-amd64")?,
        DebianSelector::PackageVersion(v) => meta(&format!("linux-image-amd64={v}"))?,
        DebianSelector::Release(r) => {
            let package = format!("linux-image-{r}");
            apt.show(&package)?.and_then(|text| {
                let version = field(&first_stanza(&text), "Version")?.to_owned();
                Some((package, version))
            })
        }
    };
    let Some((image, version)) = found else {
        return Ok(None);
    };
    if let DebianSelector::Upstream { major, minor } = sel {
        let have = debian::major_minor(debian::upstream(&version));
        let ok = have.is_some_and(|(ma, mi)| ma == *major && minor.is_none_or(|m| m == mi));
        if !ok {
            let wanted = match minor {
                Some(m) => format!("{major}.{m}"),
                None => format!("{major}.x"),
            };
            return Err(KernelError::VersionMismatch {
                selector: name.trim_start_matches("debian:").to_owned(),
                wanted,
                suite: apt.suite.clone(),
                found: format!("{image} {version} (at {})", apt.mirror),
            });
        }
    }
    let Some(release) = debian::release_of_package(&image).map(str::to_owned) else {
        return Err(KernelError::NotInArchive {
            what: format!("a kernel release in the package name {image}"),
            suite: apt.suite.clone(),
            mirror: apt.mirror.clone(),
            hint: "name an exact release instead (debian:6.1.0-50-amd64)".into(),
        });
    };
    let spec = format!("{image}={version}");
    let text = apt.show(&spec)?.ok_or_else(|| KernelError::NotInArchive {
        what: spec.clone(),
        suite: apt.suite.clone(),
        mirror: apt.mirror.clone(),
        hint: "the package lists name it but do not have it; fetch again later".into(),
    })?;
    let depends = field(&first_stanza(&text), "Depends")
        .unwrap_or_default()
        .to_owned();
    let mut packages = vec![(image, version.clone())];
    packages.extend(debian::parts_of_image(&depends, &release));
    tracing::debug!(suite = %apt.suite, release, version, ?packages, "resolved");
    Ok(Some(Plan {
        release,
        version,
        packages,
    }))
}

/// The error for a selector no searched suite has, with what the first suite has instead.
fn not_found(
    sel: &DebianSelector,
    searched: &[Apt],
    mirror: &str,
    suites: &[String],
) -> KernelError {
    let current = searched
        .first()
        .and_then(|apt| apt.show("linux-image-amd64").ok().flatten())
        .and_then(|text| {
            let depends = field(&first_stanza(&text), "Depends")?.to_owned();
            debian::image_from_depends(&depends)
        });
    let (what, hint) = match sel {
        DebianSelector::PackageVersion(v) => (
            format!("linux-image-amd64 {v}"),
            "Debian keeps only the current kernel of each suite",
        ),
        DebianSelector::Release(r) => (
            format!("linux-image-{r}"),
            "Debian keeps only the current kernel of each suite",
        ),
        _ => (
            "linux-image-amd64".to_owned(),
            "is the suite name right, and does this mirror carry it",
        ),
    };
    let hint = match current {
        Some((image, version)) => format!(
            "{hint}; {} has {image} {version} now (debian:{}); or point --mirror at an archive \
             snapshot that has what you asked for",
            suites.first().map(String::as_str).unwrap_or_default(),
            debian::release_of_package(&image).unwrap_or(&version),
        ),
        None => format!("{hint}?"),
    };
    KernelError::NotInArchive {
        what,
        suite: suites.join(", "),
        mirror: mirror.to_owned(),
        hint,
    }
}

/// A local kernel: checked, never copied.
fn local(name: &str, vmlinuz: &Path, modules: &Path) -> Result<Kernel, KernelError> {
    let bad = |path: &Path, why: &str| KernelError::Local {
        path: path.to_path_buf(),
        why: why.to_owned(),
    };
    if !vmlinuz.is_file() {
        return Err(bad(
            vmlinuz,
            "no such file; give the kernel image, e.g. /boot/vmlinuz-RELEASE",
        ));
    }
    let mut head = Vec::with_capacity(crate::image::HEAD_LEN);
    let len = std::fs::File::open(vmlinuz)
        .and_then(|f| {
            let len = f.metadata()?.len();
            std::io::Read::read_to_end(
                &mut std::io::Read::take(f, crate::image::HEAD_LEN as u64),
                &mut head,
            )?;
            Ok(len)
        })
        .map_err(KernelError::io("read", vmlinuz))?;
    if let Err(why) = crate::image::image_kind(&head, len) {
        return Err(bad(
            vmlinuz,
            &format!(
                "not a kernel image: {why}; give the kernel image, e.g. /boot/vmlinuz-RELEASE"
            ),
        ));
    }
    if !modules.is_dir() {
        return Err(bad(
            modules,
            "no such directory; give the modules directory, e.g. /lib/modules/RELEASE",
        ));
    }
    let is_modules_dir = ["modules.dep", "modules.builtin", "modules.order"]
        .iter()
        .any(|f| modules.join(f).is_file());
    if !is_modules_dir {
        return Err(bad(
            modules,
            "not a kernel's modules directory: it has no modules.dep or modules.builtin \
             (give lib/modules/RELEASE itself, not lib/modules)",
        ));
    }
    let absolute = |p: &Path| std::fs::canonicalize(p).map_err(KernelError::io("resolve", p));
    let modules_dir = absolute(modules)?;
    let release = modules_dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    Ok(Kernel {
        name: name.to_owned(),
        release,
        package_version: None,
        vmlinuz: absolute(vmlinuz)?,
        modules_dir,
    })
}

/// The cache root from environment lookups (see [`KernelCache::default_location`]).
/// `labgrade-UID` in `tmp`, made with mode 0700; refused unless it is this user's and private,
/// since another local user could have made it first.
fn private_dir(tmp: &Path) -> std::io::Result<PathBuf> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt};
    let uid = nix::unistd::geteuid().as_raw();
    let dir = tmp.join(format!("labgrade-{uid}"));
    match fs::DirBuilder::new().mode(0o700).create(&dir) {
        Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => return Err(e),
        _ => {}
    }
    let meta = fs::symlink_metadata(&dir)?;
    if !meta.is_dir() || meta.uid() != uid || meta.mode() & 0o077 != 0 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            format!(
                "{} is not a private directory of uid {uid}; remove it or set LABGRADE_CACHE_DIR",
                dir.display()
            ),
        ));
    }
    Ok(dir)
}

fn location(var: impl Fn(&str) -> Option<OsString>) -> PathBuf {
    let set = |k: &str| var(k).filter(|v| !v.is_empty()).map(PathBuf::from);
    if let Some(dir) = set("LABGRADE_CACHE_DIR") {
        return dir.join("kernels");
    }
    if let Some(dir) = set("XDG_CACHE_HOME").filter(|d| d.is_absolute()) {
        return dir.join("labgrade").join("kernels");
    }
    if let Some(home) = set("HOME") {
        return home.join(".cache").join("labgrade").join("kernels");
    }
    std::env::temp_dir().join("labgrade").join("kernels")
}

fn sorted(v: &[String]) -> Vec<String> {
    let mut v = v.to_vec();
    v.sort();
    v
}

fn deb_control(path: &Path) -> Result<String, KernelError> {
    let mut cmd = Command::new("dpkg-deb");
    cmd.arg("-f").arg(path);
    apt::run(
        &mut cmd,
        &format!("reading the control fields of {}", path.display()),
        "is it a .deb package file?",
    )
    .map_err(|e| match e {
        KernelError::Command { stderr, .. } => KernelError::Deb {
            path: path.to_path_buf(),
            why: format!("not a package file dpkg-deb can read: {stderr}"),
        },
        other => other,
    })
}

fn unpack_deb(deb: &Path, into: &Path) -> Result<(), KernelError> {
    let mut cmd = Command::new("dpkg-deb");
    cmd.arg("-x").arg(deb).arg(into);
    apt::run(
        &mut cmd,
        &format!("unpacking {}", deb.display()),
        "the package may be truncated (fetch again) or the disk full",
    )?;
    Ok(())
}

fn deb_files(dir: &Path) -> Result<Vec<PathBuf>, KernelError> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(KernelError::io("read", dir))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "deb"))
        .collect();
    files.sort();
    Ok(files)
}

/// `NAME_VERSION_ARCH.deb` in `dir` (the name apt-get download gives; epochs are dropped).
fn sibling_deb(dir: &Path, package: &str, version: &str) -> Option<PathBuf> {
    let version = version.split_once(':').map_or(version, |(_, v)| v);
    let prefix = format!("{package}_{version}_");
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .map(|n| n.to_string_lossy())
                .is_some_and(|n| n.starts_with(&prefix) && n.ends_with(".deb"))
        })
        .collect();
    found.sort();
    found.into_iter().next()
}

/// Size and modification time of package files, to notice a rebuilt package at the same path.
fn stamp(files: &[PathBuf]) -> String {
    files
        .iter()
        .map(|f| {
            let meta = std::fs::metadata(f).ok();
            let size = meta.as_ref().map(|m| m.len()).unwrap_or_default();
            let mtime = meta
                .and_then(|m| m.modified().ok())
                .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                .map(|d| d.as_nanos())
                .unwrap_or_default();
            let name = f.file_name().unwrap_or_default().to_string_lossy();
            format!("{name}:{size}:{mtime}")
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn write_atomically(path: &Path, text: &str) -> Result<(), KernelError> {
    labgrade_fs::write_atomically(path, text.as_bytes()).map_err(KernelError::io("replace", path))
}

/// A scratch directory, removed on drop unless it has been renamed away.
#[derive(Debug)]
struct Scratch {
    path: PathBuf,
}

impl Scratch {
    fn path(&self) -> &Path {
        &self.path
    }

    /// After a rename the path is gone (or someone else's): removing it would be wrong.
    fn disarm_if_moved(self) {
        if self.path.exists() {
            drop(self);
        } else {
            std::mem::forget(self);
        }
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsString;

    use crate::test_support::touch;

    #[test]
    fn the_fallback_cache_dir_is_private_or_refused() -> std::io::Result<()> {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir()?;
        let dir = private_dir(tmp.path())?;
        assert_eq!(fs::metadata(&dir)?.permissions().mode() & 0o777, 0o700);
        assert_eq!(private_dir(tmp.path())?, dir, "found again");
        // Someone else's (here: one anybody can write) is never used.
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o777))?;
        let err = private_dir(tmp.path()).err().map(|e| e.kind());
        assert_eq!(err, Some(std::io::ErrorKind::PermissionDenied));
        Ok(())
    }

    /// Puts a fake unpacked kernel into the cache the way a fetch does.
    fn install_fake(cache: &KernelCache, name: &str, release: &str, version: &str) -> Kernel {
        let tree = cache.scratch("tmp-unpack", release).expect("scratch");
        touch(tree.path(), &format!("boot/vmlinuz-{release}"));
        touch(
            tree.path(),
            &format!("lib/modules/{release}/modules.builtin"),
        );
        touch(
            tree.path(),
            &format!("lib/modules/{release}/kernel/overlay.ko"),
        );
        let record = Record {
            name: name.to_owned(),
            release: release.to_owned(),
            package_version: Some(version.to_owned()),
            vmlinuz: PathBuf::new(),
            modules_dir: PathBuf::new(),
            packages: vec![format!("linux-image-{release}={version}")],
            suite: Some("bookworm".into()),
            mirror: Some("http://mirror.example/debian".into()),
            deb_stamp: None,
        };
        let kernel = cache.commit(tree, record, Some(release)).expect("commit");
        cache.index_set(name, release).expect("index");
        kernel
    }

    fn offline() -> FetchOptions {
        FetchOptions {
            mirror: None,
            offline: true,
        }
    }

    fn source(s: &str) -> KernelSource {
        s.parse().expect("source")
    }

    #[test]
    fn index_round_trip() {
        let t = tempfile::tempdir().expect("tempdir");
        let cache = KernelCache::new(t.path().join("kernels"));
        assert_eq!(cache.read_index().expect("empty"), Index::default());
        std::fs::create_dir_all(cache.root()).expect("mkdir");
        cache
            .index_set("debian:6.1", "6.1.0-50-amd64")
            .expect("set");
        cache
            .index_set("debian:7", "7.2.13+deb14-amd64")
            .expect("set");
        cache
            .index_set("debian:6.1", "6.1.0-51-amd64")
            .expect("set");
        let index = cache.read_index().expect("read");
        assert_eq!(
            index.names.into_iter().collect::<Vec<_>>(),
            vec![
                ("debian:6.1".to_owned(), "6.1.0-51-amd64".to_owned()),
                ("debian:7".to_owned(), "7.2.13+deb14-amd64".to_owned()),
            ]
        );
        // No temporary files left behind.
        let names: Vec<String> = std::fs::read_dir(cache.root())
            .expect("ls")
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, vec![INDEX.to_owned()]);
        std::fs::write(cache.root().join(INDEX), "names = 3").expect("write");
        assert!(matches!(
            cache.read_index(),
            Err(KernelError::Corrupt { .. })
        ));
    }

    #[test]
    fn cached_kernels_are_found_offline_by_name_release_and_version() {
        let t = tempfile::tempdir().expect("tempdir");
        let cache = KernelCache::new(t.path().join("kernels"));
        std::fs::create_dir_all(cache.root()).expect("mkdir");
        let fetched = install_fake(&cache, "debian:6.1", "6.1.0-50-amd64", "6.1.176-1");
        assert_eq!(fetched.name, "debian:6.1");
        assert_eq!(
            fetched.vmlinuz,
            cache
                .root()
                .join("6.1.0-50-amd64/boot/vmlinuz-6.1.0-50-amd64")
        );
        assert_eq!(
            fetched.modules_dir,
            cache
                .root()
                .join("6.1.0-50-amd64/lib/modules/6.1.0-50-amd64")
        );
        for name in ["debian:6.1", "debian:6.1.0-50-amd64", "debian:6.1.176-1"] {
            let k = cache.fetch(&source(name), &offline()).expect(name);
            assert_eq!(k.name, name);
            assert_eq!(k.release, "6.1.0-50-amd64");
            assert_eq!(k.package_version.as_deref(), Some("6.1.176-1"));
            assert_eq!(k.vmlinuz, fetched.vmlinuz);
        }
        let e = cache
            .fetch(&source("debian:bookworm"), &offline())
            .expect_err("not cached");
        assert!(matches!(e, KernelError::NotCached { .. }), "{e}");
        assert!(
            e.to_string()
                .contains("labgrade kernel fetch debian:bookworm")
        );

        // A kernel whose files went missing is not a cache hit.
        std::fs::remove_file(&fetched.vmlinuz).expect("rm");
        assert!(cache.fetch(&source("debian:6.1"), &offline()).is_err());
        assert!(cache.list().expect("list").is_empty());
    }

    #[test]
    fn list_is_sorted_and_names_every_alias() {
        let t = tempfile::tempdir().expect("tempdir");
        let cache = KernelCache::new(t.path().join("kernels"));
        assert!(cache.list().expect("no root yet").is_empty());
        std::fs::create_dir_all(cache.root()).expect("mkdir");
        install_fake(&cache, "debian:7", "7.2.13+deb14-amd64", "7.2.13-1");
        install_fake(&cache, "debian:6.1", "6.1.0-50-amd64", "6.1.176-1");
        cache
            .index_set("debian:bookworm", "6.1.0-50-amd64")
            .expect("alias");
        let names: Vec<(String, String)> = cache
            .list()
            .expect("list")
            .into_iter()
            .map(|k| (k.name, k.release))
            .collect();
        assert_eq!(
            names,
            vec![
                ("debian:6.1".into(), "6.1.0-50-amd64".into()),
                ("debian:7".into(), "7.2.13+deb14-amd64".into()),
                ("debian:bookworm".into(), "6.1.0-50-amd64".into()),
            ]
        );
    }

    #[test]
    fn a_new_package_version_of_a_cached_release_replaces_it() {
        let t = tempfile::tempdir().expect("tempdir");
        let cache = KernelCache::new(t.path().join("kernels"));
        std::fs::create_dir_all(cache.root()).expect("mkdir");
        install_fake(&cache, "debian:6.1", "6.1.0-50-amd64", "6.1.176-1");
        let k = install_fake(&cache, "debian:6.1", "6.1.0-50-amd64", "6.1.176-2");
        assert_eq!(k.package_version.as_deref(), Some("6.1.176-2"));
        let left: Vec<String> = std::fs::read_dir(cache.root())
            .expect("ls")
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with('.'))
            .collect();
        assert!(left.is_empty(), "{left:?}");
    }

    #[test]
    fn local_kernels_are_checked() {
        let t = tempfile::tempdir().expect("tempdir");
        let cache = KernelCache::new(t.path().join("kernels"));
        touch(t.path(), "boot/vmlinuz-6.1.0-50-amd64");
        touch(t.path(), "lib/modules/6.1.0-50-amd64/modules.dep");
        let vmlinuz = t.path().join("boot/vmlinuz-6.1.0-50-amd64");
        // The smallest file that is a whole bzImage: its boot header and no kernel after it.
        let mut image = vec![0u8; 5 * 512];
        image[0x1fe..0x200].copy_from_slice(&[0x55, 0xaa]);
        image[0x202..0x206].copy_from_slice(b"HdrS");
        std::fs::write(&vmlinuz, image).expect("write vmlinuz");
        let modules = t.path().join("lib/modules/6.1.0-50-amd64");
        let src = KernelSource::Local {
            vmlinuz: vmlinuz.clone(),
            modules: modules.clone(),
        };
        let k = cache.fetch(&src, &offline()).expect("local");
        assert_eq!(k.release, "6.1.0-50-amd64");
        assert_eq!(k.package_version, None);
        assert_eq!(k.name, src.to_string());
        let src = KernelSource::Local {
            vmlinuz: vmlinuz.clone(),
            modules: t.path().join("lib/modules"),
        };
        let e = cache
            .fetch(&src, &offline())
            .expect_err("not a modules dir");
        assert!(e.to_string().contains("not lib/modules"), "{e}");
        assert!(e.is_usage());
        let src = KernelSource::Local {
            vmlinuz: t.path().join("nope"),
            modules,
        };
        assert!(cache.fetch(&src, &offline()).is_err());
    }

    #[test]
    fn missing_deb_files_are_usage_errors() {
        let t = tempfile::tempdir().expect("tempdir");
        let cache = KernelCache::new(t.path().join("kernels"));
        let e = cache
            .fetch(&source("deb:/nonexistent/a.deb,b.deb"), &offline())
            .expect_err("missing");
        assert!(e.is_usage());
        assert!(e.to_string().contains("companion packages"), "{e}");
    }

    #[test]
    fn scratch_dirs_of_dead_fetches_are_swept() {
        let t = tempfile::tempdir().expect("tempdir");
        let cache = KernelCache::new(t.path().to_path_buf());
        let mine = cache
            .scratch("tmp-unpack", "6.1.0-50-amd64")
            .expect("scratch");
        // No process has pid 4294967295.
        let dead = t.path().join(".tmp-unpack-6.1.0-50-amd64-4294967295-0");
        std::fs::create_dir_all(dead.join("boot")).expect("mkdir");
        cache.sweep_scratch();
        assert!(mine.path().is_dir());
        assert!(!dead.exists());
        assert!(!owner_is_gone(".tmp-index.toml.12"));
    }

    #[test]
    fn cache_location_follows_the_environment() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| OsString::from(v))
            }
        };
        assert_eq!(
            location(env(&[("LABGRADE_CACHE_DIR", "/c"), ("HOME", "/h")])),
            PathBuf::from("/c/kernels")
        );
        assert_eq!(
            location(env(&[("XDG_CACHE_HOME", "/x"), ("HOME", "/h")])),
            PathBuf::from("/x/labgrade/kernels")
        );
        assert_eq!(
            location(env(&[
                ("LABGRADE_CACHE_DIR", ""),
                ("XDG_CACHE_HOME", "rel"),
                ("HOME", "/h")
            ])),
            PathBuf::from("/h/.cache/labgrade/kernels")
        );
    }
}
