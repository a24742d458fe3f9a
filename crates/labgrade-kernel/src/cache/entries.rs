//! What the cache records: `kernel.toml` per kernel, `index.toml` from names to releases.

use super::*;

/// What `kernel.toml` records; paths relative to the kernel's directory so the cache can move.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Record {
    pub(super) name: String,
    pub(super) release: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) package_version: Option<String>,
    pub(super) vmlinuz: PathBuf,
    pub(super) modules_dir: PathBuf,
    /// `NAME=VERSION` of every package unpacked here.
    #[serde(default)]
    pub(super) packages: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) suite: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) mirror: Option<String>,
    /// For `deb:` kernels: size and mtime of the package files, to notice a rebuilt package.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) deb_stamp: Option<String>,
}

/// `index.toml`: which release each source name resolved to.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Index {
    #[serde(default)]
    pub(super) names: BTreeMap<String, String>,
}

impl KernelCache {
    /// Finds the kernel in an unpacked tree, records it and renames the tree into place.
    pub(super) fn commit(
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
    pub(super) fn cached(
        &self,
        name: &str,
        sel: &DebianSelector,
    ) -> Result<Option<Kernel>, KernelError> {
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
    pub(super) fn load(&self, release: &str) -> Option<(Record, Kernel)> {
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
    pub(super) fn releases(&self) -> Vec<String> {
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

    pub(super) fn read_index(&self) -> Result<Index, KernelError> {
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
    pub(super) fn index_set(&self, name: &str, release: &str) -> Result<(), KernelError> {
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
}

pub(super) fn sorted(v: &[String]) -> Vec<String> {
    let mut v = v.to_vec();
    v.sort();
    v
}

pub(super) fn write_atomically(path: &Path, text: &str) -> Result<(), KernelError> {
    labgrade_fs::write_atomically(path, text.as_bytes()).map_err(KernelError::io("replace", path))
}
