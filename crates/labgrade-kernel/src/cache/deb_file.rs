//! Kernels from a local `.deb` (and the companion packages beside it).

use super::*;

impl KernelCache {
    pub(super) fn fetch_deb(&self, name: &str, path: &Path) -> Result<Kernel, KernelError> {
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
}

pub(super) fn deb_control(path: &Path) -> Result<String, KernelError> {
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

pub(super) fn unpack_deb(deb: &Path, into: &Path) -> Result<(), KernelError> {
    let mut cmd = Command::new("dpkg-deb");
    cmd.arg("-x").arg(deb).arg(into);
    apt::run(
        &mut cmd,
        &format!("unpacking {}", deb.display()),
        "the package may be truncated (fetch again) or the disk full",
    )?;
    Ok(())
}

pub(super) fn deb_files(dir: &Path) -> Result<Vec<PathBuf>, KernelError> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(KernelError::io("read", dir))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "deb"))
        .collect();
    files.sort();
    Ok(files)
}

/// `NAME_VERSION_ARCH.deb` in `dir` (the name apt-get download gives; epochs are dropped).
pub(super) fn sibling_deb(dir: &Path, package: &str, version: &str) -> Option<PathBuf> {
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
pub(super) fn stamp(files: &[PathBuf]) -> String {
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
