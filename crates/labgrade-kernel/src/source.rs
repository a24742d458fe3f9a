//! Kernel sources as written on the command line, and the forms a `debian:` selector takes.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use crate::KernelError;

/// Where a kernel comes from, as written on the command line (`--guest qemu:<source>`,
/// `labgrade kernel fetch <source>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KernelSource {
    /// `debian:5.10` | `debian:6.1` | `debian:6.12` | `debian:7` (major[.minor] of the upstream
    /// version), `debian:SUITE` (bullseye, bookworm, trixie, sid, bookworm-backports, ...), or an
    /// exact Debian package version / kernel release (`debian:6.1.176-1` or
    /// `debian:6.1.0-50-amd64`).
    Debian {
        /// What follows `debian:`; validated when parsed.
        selector: String,
    },
    /// `local:VMLINUZ:MODULES_DIR` (MODULES_DIR is the lib/modules/RELEASE directory).
    Local {
        /// The kernel image.
        vmlinuz: PathBuf,
        /// Its `lib/modules/<release>` directory.
        modules: PathBuf,
    },
    /// `deb:PATH.deb` or any argument ending in `.deb`: a linux-image package file, or a
    /// linux-binary / linux-image metapackage whose companion packages (linux-binary-RELEASE,
    /// linux-modules-RELEASE, linux-base-RELEASE) lie beside it.
    Deb {
        /// The package file.
        path: PathBuf,
    },
}

impl FromStr for KernelSource {
    type Err = KernelError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |why: &str| KernelError::Selector {
            given: s.to_owned(),
            why: why.to_owned(),
        };
        if let Some(rest) = s.strip_prefix("debian:") {
            DebianSelector::parse(rest).map_err(|why| bad(&why))?;
            return Ok(KernelSource::Debian {
                selector: rest.to_owned(),
            });
        }
        if let Some(rest) = s.strip_prefix("local:") {
            return match rest.split_once(':') {
                Some((vmlinuz, modules)) if !vmlinuz.is_empty() && !modules.is_empty() => {
                    Ok(KernelSource::Local {
                        vmlinuz: vmlinuz.into(),
                        modules: modules.into(),
                    })
                }
                _ => Err(bad("a local kernel is local:VMLINUZ:MODULES_DIR, e.g. \
                     local:/boot/vmlinuz-6.1.0-50-amd64:/lib/modules/6.1.0-50-amd64")),
            };
        }
        if let Some(rest) = s.strip_prefix("deb:") {
            if rest.is_empty() {
                return Err(bad("nothing after `deb:`; give the path of a .deb file"));
            }
            return Ok(KernelSource::Deb { path: rest.into() });
        }
        if s.ends_with(".deb") {
            return Ok(KernelSource::Deb { path: s.into() });
        }
        Err(bad(&match s.split_once(':') {
            Some((kind, _)) => format!("unknown kind `{kind}:`"),
            None if s.is_empty() => "it is empty".to_owned(),
            None => "it has no kind; did you mean debian:...?".to_owned(),
        }))
    }
}

impl fmt::Display for KernelSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KernelSource::Debian { selector } => write!(f, "debian:{selector}"),
            KernelSource::Local { vmlinuz, modules } => {
                write!(f, "local:{}:{}", vmlinuz.display(), modules.display())
            }
            KernelSource::Deb { path } => write!(f, "deb:{}", path.display()),
        }
    }
}

/// What a `debian:` selector asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum DebianSelector {
    /// `debian:6.1`, `debian:7`: the current kernel of the suite that ships this Linux.
    Upstream {
        /// Linux major version.
        major: u32,
        /// Linux minor version, if given.
        minor: Option<u32>,
    },
    /// `debian:bookworm-backports`: that suite's current kernel.
    Suite(String),
    /// `debian:6.1.176-1`: that exact version of `linux-image-amd64`.
    PackageVersion(String),
    /// `debian:6.1.0-50-amd64`: the kernel whose `uname -r` this is.
    Release(String),
}

impl DebianSelector {
    /// Parses what follows `debian:`; the error says why it is not a selector.
    pub(crate) fn parse(s: &str) -> Result<DebianSelector, String> {
        let Some(first) = s.chars().next() else {
            return Err("nothing after `debian:`".to_owned());
        };
        if first.is_ascii_digit() {
            if s.chars().all(|c| c.is_ascii_digit() || c == '.') {
                let parts = s
                    .split('.')
                    .map(|p| p.parse::<u32>())
                    .collect::<Result<Vec<u32>, _>>()
                    .map_err(|_| format!("`{s}` is not a version"))?;
                return match parts[..] {
                    [major] => Ok(DebianSelector::Upstream { major, minor: None }),
                    [major, minor] => Ok(DebianSelector::Upstream {
                        major,
                        minor: Some(minor),
                    }),
                    [major, minor, ..] => Err(format!(
                        "`{s}` names a Linux point release; give major.minor \
                         (debian:{major}.{minor}) or the Debian package version (debian:{s}-1)"
                    )),
                    [] => Err(format!("`{s}` is not a version")),
                };
            }
            let version_chars = |c: char| c.is_ascii_alphanumeric() || ".+~-".contains(c);
            if !s.chars().all(version_chars) || !s.contains('-') {
                return Err(format!(
                    "`{s}` is neither a Linux version (6.1), a Debian package version \
                     (6.1.176-1) nor a kernel release (6.1.0-50-amd64)"
                ));
            }
            if s.ends_with("amd64") {
                return Ok(DebianSelector::Release(s.to_owned()));
            }
            return Ok(DebianSelector::PackageVersion(s.to_owned()));
        }
        if first.is_ascii_lowercase()
            && s.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        {
            return Ok(DebianSelector::Suite(s.to_owned()));
        }
        Err(format!(
            "`{s}` is neither a Linux version (6.1), a suite (bookworm), a package version \
             (6.1.176-1) nor a kernel release (6.1.0-50-amd64)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> KernelSource {
        match s.parse() {
            Ok(k) => k,
            Err(e) => panic!("{s}: {e}"),
        }
    }

    fn parse_err(s: &str) -> String {
        match s.parse::<KernelSource>() {
            Ok(k) => panic!("{s} parsed as {k:?}"),
            Err(e) => e.to_string(),
        }
    }

    fn debian(s: &str) -> DebianSelector {
        match DebianSelector::parse(s) {
            Ok(d) => d,
            Err(e) => panic!("{s}: {e}"),
        }
    }

    #[test]
    fn debian_upstream_versions() {
        for (s, major, minor) in [
            ("5.10", 5, Some(10)),
            ("6.1", 6, Some(1)),
            ("6.12", 6, Some(12)),
            ("7", 7, None),
            ("7.2", 7, Some(2)),
        ] {
            assert_eq!(debian(s), DebianSelector::Upstream { major, minor }, "{s}");
            assert_eq!(
                parse(&format!("debian:{s}")),
                KernelSource::Debian {
                    selector: s.to_owned()
                }
            );
        }
    }

    #[test]
    fn debian_suites() {
        for s in [
            "bullseye",
            "bookworm",
            "trixie",
            "sid",
            "bookworm-backports",
        ] {
            assert_eq!(debian(s), DebianSelector::Suite(s.to_owned()));
        }
    }

    #[test]
    fn debian_exact_versions_and_releases() {
        for s in ["6.1.176-1", "6.12.38-1~bpo12+1"] {
            assert_eq!(debian(s), DebianSelector::PackageVersion(s.to_owned()));
        }
        for s in [
            "6.1.0-50-amd64",
            "7.2.13+deb14-amd64",
            "6.12.38+deb13-cloud-amd64",
        ] {
            assert_eq!(debian(s), DebianSelector::Release(s.to_owned()));
        }
    }

    #[test]
    fn local_and_deb() {
        assert_eq!(
            parse("local:/boot/vmlinuz-6.1.0-50-amd64:/lib/modules/6.1.0-50-amd64"),
            KernelSource::Local {
                vmlinuz: "/boot/vmlinuz-6.1.0-50-amd64".into(),
                modules: "/lib/modules/6.1.0-50-amd64".into(),
            }
        );
        assert_eq!(
            parse("deb:/tmp/k.deb"),
            KernelSource::Deb {
                path: "/tmp/k.deb".into()
            }
        );
        assert_eq!(
            parse("linux-image-6.1.0-50-amd64_6.1.176-1_amd64.deb"),
            KernelSource::Deb {
                path: "linux-image-6.1.0-50-amd64_6.1.176-1_amd64.deb".into()
            }
        );
    }

    #[test]
    fn display_round_trips() {
        for s in [
            "debian:6.1",
            "debian:7",
            "debian:bookworm-backports",
            "debian:6.1.176-1",
            "debian:6.1.0-50-amd64",
            "local:/k/vmlinuz:/k/lib/modules/6.1.0-50-amd64",
            "deb:/tmp/k.deb",
        ] {
            assert_eq!(parse(s).to_string(), s);
            assert_eq!(parse(&parse(s).to_string()), parse(s));
        }
        assert_eq!(parse("k.deb").to_string(), "deb:k.deb");
    }

    #[test]
    fn errors_say_why_and_show_valid_forms() {
        for (s, why) in [
            ("debian:", "nothing after `debian:`"),
            ("debian:6.1.176", "give major.minor (debian:6.1)"),
            ("debian:6.1.", "not a version"),
            ("debian:6..1", "not a version"),
            ("debian:6.1_x", "neither a Linux version"),
            ("debian:Bookworm", "neither a Linux version"),
            ("debian:book worm", "neither a Linux version"),
            ("local:/boot/vmlinuz", "local:VMLINUZ:MODULES_DIR"),
            ("local::/lib/modules/x", "local:VMLINUZ:MODULES_DIR"),
            ("deb:", "nothing after `deb:`"),
            ("ubuntu:24.04", "unknown kind `ubuntu:`"),
            ("6.1", "did you mean debian:"),
            ("", "empty"),
        ] {
            let e = parse_err(s);
            assert!(e.contains(why), "{s}: {e}");
            assert!(e.contains("valid forms: debian:6.1"), "{s}: {e}");
        }
    }
}
