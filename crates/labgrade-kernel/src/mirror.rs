//! The Debian mirror to fetch kernels from: `--mirror`, else the one this machine's apt already
//! uses (deb822 `*.sources` or one-line `sources.list`). No mirror is ever built into labgrade.

use std::path::{Path, PathBuf};

use crate::KernelError;

/// Codenames and aliases of Debian suites (the part before any `-updates`/`-backports`).
const DEBIAN_SUITES: &[&str] = &[
    "buster",
    "bullseye",
    "bookworm",
    "trixie",
    "forky",
    "duke",
    "sid",
    "oldoldstable",
    "oldstable",
    "stable",
    "testing",
    "unstable",
    "experimental",
];

/// Suffixes of suites served by the main archive (security updates live in another archive).
const SUITE_SUFFIXES: &[&str] = &[
    "",
    "-updates",
    "-backports",
    "-backports-sloppy",
    "-proposed-updates",
];

/// Is `suite` one the main Debian archive serves (so its URI is a Debian mirror)?
pub(crate) fn is_debian_suite(suite: &str) -> bool {
    DEBIAN_SUITES.iter().any(|base| {
        suite
            .strip_prefix(base)
            .is_some_and(|rest| SUITE_SUFFIXES.contains(&rest))
    })
}

fn clean_uri(uri: &str) -> Option<String> {
    let uri = uri.trim().trim_end_matches('/');
    (!uri.is_empty() && !uri.starts_with("cdrom:")).then(|| uri.to_owned())
}

/// The first mirror in deb822 text (`*.sources`): the first URI of an enabled `deb` stanza
/// whose suites include a Debian suite.
pub(crate) fn mirror_from_deb822(text: &str) -> Option<String> {
    let mut stanza: Vec<(String, String)> = Vec::new();
    let mut stanzas = Vec::new();
    for line in text.lines().chain(std::iter::once("")) {
        if line.starts_with('#') {
            continue;
        }
        if line.trim().is_empty() {
            if !stanza.is_empty() {
                stanzas.push(std::mem::take(&mut stanza));
            }
            continue;
        }
        if line.starts_with([' ', '\t']) {
            if let Some((_, value)) = stanza.last_mut() {
                value.push(' ');
                value.push_str(line.trim());
            }
            continue;
        }
        if let Some((key, value)) = line.split_once(':') {
            stanza.push((key.trim().to_ascii_lowercase(), value.trim().to_owned()));
        }
    }
    stanzas.iter().find_map(|fields| {
        let get = |k: &str| {
            fields
                .iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.as_str())
        };
        let enabled = get("enabled").is_none_or(|v| !v.eq_ignore_ascii_case("no"));
        let deb = get("types").is_some_and(|t| t.split_whitespace().any(|t| t == "deb"));
        let debian = get("suites").is_some_and(|s| s.split_whitespace().any(is_debian_suite));
        if !(enabled && deb && debian) {
            return None;
        }
        get("uris")?.split_whitespace().find_map(clean_uri)
    })
}

/// The first mirror in one-line `sources.list` text: the URI of a `deb` line whose suite is a
/// Debian suite (`deb [options] URI SUITE COMPONENTS...`).
pub(crate) fn mirror_from_one_line(text: &str) -> Option<String> {
    text.lines().find_map(|line| {
        let line = line.split('#').next().unwrap_or_default();
        let mut words = line.split_whitespace();
        if words.next() != Some("deb") {
            return None;
        }
        let mut uri = words.next()?;
        if uri.starts_with('[') {
            // Options may contain spaces: skip to the word that closes them.
            let mut word = uri;
            while !word.ends_with(']') {
                word = words.next()?;
            }
            uri = words.next()?;
        }
        let suite = words.next()?;
        if is_debian_suite(suite) {
            clean_uri(uri)
        } else {
            None
        }
    })
}

fn files_in(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|e| e == ext))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

/// The Debian mirror this machine's apt is configured with, read from `/etc/apt`.
pub(crate) fn system_mirror() -> Result<String, KernelError> {
    let etc = Path::new("/etc/apt");
    let parts = etc.join("sources.list.d");
    let mut candidates: Vec<(PathBuf, bool)> = files_in(&parts, "sources")
        .into_iter()
        .map(|p| (p, true))
        .collect();
    candidates.push((etc.join("sources.list"), false));
    candidates.extend(files_in(&parts, "list").into_iter().map(|p| (p, false)));
    for (path, deb822) in &candidates {
        let Ok(text) = std::fs::read_to_string(path) else {
            continue;
        };
        let found = if *deb822 {
            mirror_from_deb822(&text)
        } else {
            mirror_from_one_line(&text)
        };
        if let Some(uri) = found {
            tracing::debug!(mirror = %uri, from = %path.display(), "Debian mirror from apt sources");
            return Ok(uri);
        }
    }
    Err(KernelError::NoMirror {
        looked: format!(
            "{}/*.sources, {}, {}/*.list",
            parts.display(),
            etc.join("sources.list").display(),
            parts.display()
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debian_suites_only() {
        for s in [
            "bookworm",
            "bookworm-updates",
            "bookworm-backports",
            "sid",
            "stable",
            "trixie-proposed-updates",
        ] {
            assert!(is_debian_suite(s), "{s}");
        }
        for s in [
            "bookworm-security",
            "jammy",
            "noble-updates",
            "stable-foo",
            "",
        ] {
            assert!(!is_debian_suite(s), "{s}");
        }
    }

    #[test]
    fn deb822_skips_security_comments_and_disabled_stanzas() {
        let text = "\
Types: deb
URIs: http://security.example/debian-security
Suites: bookworm-security
Components: main

Types: deb
# http://old.example/debian
URIs: http://off.example/debian
Suites: bookworm
Enabled: no

Types: deb-src deb
URIs: http://mirror.example/debian/
  http://second.example/debian
Suites: bookworm
  bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
";
        assert_eq!(
            mirror_from_deb822(text).as_deref(),
            Some("http://mirror.example/debian")
        );
    }

    #[test]
    fn deb822_like_this_machine() {
        let text = "\
Types: deb
# http://snapshot.example/archive/debian/20250520T000000Z
URIs: http://deb.example/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://deb.example/debian-security
Suites: bookworm-security
Components: main
";
        assert_eq!(
            mirror_from_deb822(text).as_deref(),
            Some("http://deb.example/debian")
        );
        assert_eq!(
            mirror_from_deb822("Types: deb-src\nURIs: http://x/\nSuites: sid\n"),
            None
        );
        assert_eq!(mirror_from_deb822(""), None);
    }

    #[test]
    fn one_line_sources() {
        let text = "\
# deb http://commented.example/debian bookworm main
deb-src http://src.example/debian bookworm main
deb http://security.example/debian-security bookworm-security main
deb [arch=amd64 signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://mirror.example/debian/ bookworm main contrib
deb http://later.example/debian trixie main
";
        assert_eq!(
            mirror_from_one_line(text).as_deref(),
            Some("http://mirror.example/debian")
        );
        assert_eq!(
            mirror_from_one_line("deb [ trusted=yes ] file:/srv/debian sid main\n").as_deref(),
            Some("file:/srv/debian")
        );
        assert_eq!(
            mirror_from_one_line("deb http://ubuntu.example/ubuntu noble main\n"),
            None
        );
        assert_eq!(mirror_from_one_line("deb [arch=amd64\n"), None);
    }
}
