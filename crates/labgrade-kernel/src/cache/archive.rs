//! Kernels from the Debian archive: resolve a selector in a suite's package lists, download
//! the packages with a private apt state, unpack and commit them.

use super::*;

/// What to download for a Debian kernel, as resolved in one suite.
#[derive(Debug)]
pub(super) struct Plan {
    release: String,
    version: String,
    /// (package, exact version): the image, and on 7.x its binary, modules and base packages.
    packages: Vec<(String, String)>,
}

impl KernelCache {
    pub(super) fn fetch_debian(
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
    pub(super) fn search(
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
    pub(super) fn apt(&self, mirror: &str, suite: &str) -> Result<Apt, KernelError> {
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
    pub(super) fn install_plan(
        &self,
        name: &str,
        apt: &Apt,
        plan: &Plan,
    ) -> Result<Kernel, KernelError> {
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
}

/// Finds what a selector names in one suite's package lists; `None` if the suite has no such
/// kernel at all.
pub(super) fn resolve(
    apt: &Apt,
    name: &str,
    sel: &DebianSelector,
) -> Result<Option<Plan>, KernelError> {
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
pub(super) fn not_found(
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
