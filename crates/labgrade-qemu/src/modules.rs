//! Kernel modules for the initramfs: found by walking the kernel's module tree, ordered by the
//! dependencies each module declares in its own `.modinfo` (`depends=`), decompressed on the host.
//!
//! Debian's kernel packages ship no `modules.dep` (depmod writes it at install time), and the host
//! may have no `depmod`, so the dependency graph is read from the modules themselves.

use crate::elf::modinfo_values;
use std::collections::{HashMap, HashSet};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Why modules could not be gathered.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ModuleError {
    /// The module tree could not be read.
    #[error("cannot read the kernel modules at {path}: {source}")]
    Read {
        /// Where.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// A module the guest cannot work without is neither a module nor built in.
    #[error("kernel module {name} is needed but is neither in {dir} nor built in")]
    Missing {
        /// The module.
        name: String,
        /// The modules directory.
        dir: PathBuf,
    },
    /// A compressed module could not be decompressed.
    #[error("cannot decompress {path}: {why}")]
    Decompress {
        /// The module file.
        path: PathBuf,
        /// What the decompressor said.
        why: String,
    },
}

/// Every module file of one kernel, by normalised name (`-` as `_`), and the built-in ones.
#[derive(Debug)]
pub(crate) struct ModuleIndex {
    dir: PathBuf,
    by_name: HashMap<String, PathBuf>,
    builtin: HashSet<String>,
}

fn normalise(name: &str) -> String {
    name.replace('-', "_")
}

fn module_name(file: &Path) -> Option<String> {
    let name = file.file_name()?.to_str()?;
    let stem = name
        .strip_suffix(".ko")
        .or_else(|| name.strip_suffix(".ko.xz"))
        .or_else(|| name.strip_suffix(".ko.zst"))
        .or_else(|| name.strip_suffix(".ko.gz"))?;
    Some(normalise(stem))
}

impl ModuleIndex {
    /// Walks `modules_dir/kernel` and reads `modules.builtin`.
    pub(crate) fn scan(modules_dir: &Path) -> Result<ModuleIndex, ModuleError> {
        let read_err = |path: &Path| {
            let path = path.to_path_buf();
            move |source| ModuleError::Read { path, source }
        };
        let mut by_name = HashMap::new();
        let mut stack = vec![modules_dir.join("kernel")];
        while let Some(dir) = stack.pop() {
            for entry in fs::read_dir(&dir).map_err(read_err(&dir))? {
                let path = entry.map_err(read_err(&dir))?.path();
                if path.is_dir() {
                    stack.push(path);
                } else if let Some(name) = module_name(&path) {
                    by_name.insert(name, path);
                }
            }
        }
        let builtin = fs::read_to_string(modules_dir.join("modules.builtin"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| module_name(Path::new(l.trim())))
            .collect();
        Ok(ModuleIndex {
            dir: modules_dir.to_path_buf(),
            by_name,
            builtin,
        })
    }

    /// Is this module available at all (as a file or built in)?
    pub(crate) fn has(&self, name: &str) -> bool {
        let n = normalise(name);
        self.by_name.contains_key(&n) || self.builtin.contains(&n)
    }

    /// The modules to load for `wanted` (and their dependencies), dependencies first, each as
    /// (file name to use in the initramfs, decompressed bytes). Built-in modules are skipped.
    pub(crate) fn closure(&self, wanted: &[&str]) -> Result<Vec<(String, Vec<u8>)>, ModuleError> {
        self.closure_after(wanted, &HashSet::new())
    }

    /// Like [`ModuleIndex::closure`], leaving out modules in `loaded` (and what they pulled in).
    pub(crate) fn closure_after(
        &self,
        wanted: &[&str],
        loaded: &HashSet<String>,
    ) -> Result<Vec<(String, Vec<u8>)>, ModuleError> {
        let mut order = Vec::new();
        let mut seen = loaded.clone();
        for w in wanted {
            self.visit(&normalise(w), &mut seen, &mut order)?;
        }
        Ok(order)
    }

    fn visit(
        &self,
        name: &str,
        seen: &mut HashSet<String>,
        order: &mut Vec<(String, Vec<u8>)>,
    ) -> Result<(), ModuleError> {
        if !seen.insert(name.to_owned()) || self.builtin.contains(name) {
            return Ok(());
        }
        let Some(path) = self.by_name.get(name) else {
            return Err(ModuleError::Missing {
                name: name.to_owned(),
                dir: self.dir.clone(),
            });
        };
        let bytes = decompress(path)?;
        for dep in modinfo_depends(&bytes) {
            self.visit(&normalise(&dep), seen, order)?;
        }
        order.push((format!("{name}.ko"), bytes));
        Ok(())
    }
}

/// A module file's ELF bytes, decompressed by its suffix.
fn decompress(path: &Path) -> Result<Vec<u8>, ModuleError> {
    let name = path.to_string_lossy();
    let tool = if name.ends_with(".xz") {
        Some("xz")
    } else if name.ends_with(".zst") {
        Some("zstd")
    } else if name.ends_with(".gz") {
        Some("gzip")
    } else {
        None
    };
    let Some(tool) = tool else {
        return fs::read(path).map_err(|source| ModuleError::Read {
            path: path.to_path_buf(),
            source,
        });
    };
    let out = Command::new(tool)
        .args(["-d", "-c"])
        .arg(path)
        .output()
        .map_err(|e| ModuleError::Decompress {
            path: path.to_path_buf(),
            why: format!("{tool}: {e} (install {tool})"),
        })?;
    if !out.status.success() {
        return Err(ModuleError::Decompress {
            path: path.to_path_buf(),
            why: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    Ok(out.stdout)
}

/// The `depends=a,b` entry of a module's `.modinfo` section: NUL-separated `key=value` strings.
pub(crate) fn modinfo_depends(elf: &[u8]) -> Vec<String> {
    modinfo_values(elf, "depends")
        .first()
        .map(|v| {
            v.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

/// Every `alias=` of a module (`fs-xfs`, `crypto-crc32c`, ...): the names the kernel asks
/// modprobe for when it needs the module.
pub(crate) fn modinfo_aliases(elf: &[u8]) -> Vec<String> {
    modinfo_values(elf, "alias")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::elf::module_elf;

    #[test]
    fn depends_is_read_from_modinfo_strings() {
        let elf = module_elf(b"license=GPL\0depends=libcrc32c,crc16\0retpoline=Y\0name=xfs\0");
        assert_eq!(modinfo_depends(&elf), vec!["libcrc32c", "crc16"]);
        assert!(modinfo_depends(&module_elf(b"depends=\0name=overlay\0")).is_empty());
        assert!(modinfo_depends(b"no modinfo here").is_empty());
        let xfs = module_elf(b"alias=fs-xfs\0depends=libcrc32c\0alias=xfs\0");
        assert_eq!(modinfo_aliases(&xfs), vec!["fs-xfs", "xfs"]);
    }

    #[test]
    fn closure_orders_dependencies_first_and_skips_builtins()
    -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let k = dir.path().join("kernel/fs");
        fs::create_dir_all(&k)?;
        fs::write(k.join("9p.ko"), module_elf(b"depends=9pnet,netfs\0"))?;
        fs::write(k.join("9pnet.ko"), module_elf(b"depends=\0"))?;
        fs::write(k.join("netfs.ko"), module_elf(b"depends=fscache\0"))?;
        fs::write(
            dir.path().join("modules.builtin"),
            "kernel/fs/fscache/fscache.ko\n",
        )?;
        let index = ModuleIndex::scan(dir.path())?;
        let names: Vec<String> = index
            .closure(&["9p"])?
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        assert_eq!(names, vec!["9pnet.ko", "netfs.ko", "9p.ko"]);
        assert!(index.has("fscache") && !index.has("xfs"));
        assert!(matches!(
            index.closure(&["xfs"]),
            Err(ModuleError::Missing { .. })
        ));
        Ok(())
    }
}
