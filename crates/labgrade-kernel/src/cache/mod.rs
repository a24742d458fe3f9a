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
//!
//! By where a kernel comes from: [`archive`] (the Debian archive), [`deb_file`] (a local
//! `.deb`), [`local`] (files); and what every fetch shares: [`entries`] (what the cache records)
//! and [`scratch`] (fetches in progress, and the sweep of dead ones).

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, UNIX_EPOCH};

use labgrade_fs::{CacheDir, CacheDirs};
use serde::{Deserialize, Serialize};

use crate::apt::{self, Apt};
use crate::debian::{self, field, first_stanza};
use crate::layout;
use crate::mirror;
use crate::source::DebianSelector;
use crate::{Kernel, KernelError, KernelSource};

mod archive;
mod deb_file;
mod entries;
mod local;
mod scratch;

use deb_file::{deb_files, unpack_deb};
use entries::{Record, sorted};
use local::local;
use scratch::Scratch;

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

impl KernelCache {
    /// A cache rooted at `root` (created on first fetch).
    pub fn new(root: PathBuf) -> Self {
        KernelCache {
            root,
            updated: Mutex::new(HashSet::new()),
        }
    }

    /// The kernels of the cache every labgrade command shares (see [`CacheDirs`]).
    pub fn default_location() -> Self {
        Self::new(CacheDirs::default_location().dir(CacheDir::Kernels))
    }

    /// The cache's root directory.
    pub fn root(&self) -> &Path {
        &self.root
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
}

#[cfg(test)]
mod tests {
    use super::entries::Index;
    use super::scratch::owner_is_gone;
    use super::*;

    use crate::test_support::touch;

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
        // A small whole bzImage: its boot header and a (pretend) xz payload with its size.
        let image = crate::image::synthetic::bzimage(b"\xfd7zXZ\0 stream\x00\x04\0\0");
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
}
