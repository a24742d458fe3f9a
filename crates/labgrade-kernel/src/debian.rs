//! What the Debian archive says about kernels: which suite ships which Linux, and how to read the
//! `linux-image-amd64` metapackage and the kernel packages' control fields. Pure functions; the
//! apt calls are in `apt.rs`.

use crate::source::DebianSelector;

/// Which suite ships which Linux (major, minor or any minor, suite). Checked against the archive
/// on every fetch: the suite's `linux-image-amd64` must depend on a kernel of that version.
const LINUX_IN_SUITE: &[(u32, Option<u32>, &str)] = &[
    (5, Some(10), "bullseye"),
    (6, Some(1), "bookworm"),
    (6, Some(12), "trixie"),
    (7, None, "sid"),
];

/// Debian release numbers (as in `~bpo12`) and their codenames, for backports versions.
const RELEASE_NUMBERS: &[(u32, &str)] = &[
    (11, "bullseye"),
    (12, "bookworm"),
    (13, "trixie"),
    (14, "forky"),
];

/// The Linux versions labgrade maps to a suite, for error messages.
pub(crate) fn known_versions() -> String {
    LINUX_IN_SUITE
        .iter()
        .map(|(major, minor, suite)| match minor {
            Some(minor) => format!("{major}.{minor} ({suite})"),
            None => format!("{major}.x ({suite})"),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The suite that ships Linux `major[.minor]`, or `None` if no known suite does (or, for a bare
/// major, if several do).
pub(crate) fn suite_for_linux(major: u32, minor: Option<u32>) -> Option<&'static str> {
    let mut matching = LINUX_IN_SUITE
        .iter()
        .filter(|(m, n, _)| *m == major && (minor.is_none() || n.is_none() || minor == *n));
    let (_, _, suite) = matching.next()?;
    if matching.next().is_some() {
        return None;
    }
    Some(suite)
}

/// Leading `major.minor` of a version or release string: `6.1.176-1` and `6.1.0-50-amd64` give
/// (6, 1), `7.2.13+deb14-amd64` gives (7, 2).
pub(crate) fn major_minor(version: &str) -> Option<(u32, u32)> {
    let mut numbers = version
        .split(|c: char| !c.is_ascii_digit())
        .map(|n| n.parse::<u32>().ok());
    let major = numbers.next()??;
    if version.as_bytes().get(major.to_string().len()) != Some(&b'.') {
        return None;
    }
    let minor = numbers.next()??;
    Some((major, minor))
}

/// The suites to search for a selector, most likely first.
pub(crate) fn suites_for(selector: &DebianSelector) -> Result<Vec<String>, String> {
    let by_linux = |v: &str| {
        major_minor(v)
            .and_then(|(major, minor)| suite_for_linux(major, Some(minor)))
            .map(str::to_owned)
    };
    let backports = |v: &str, marker: &str| {
        let number: String = v
            .split_once(marker)?
            .1
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        let number: u32 = number.parse().ok()?;
        RELEASE_NUMBERS
            .iter()
            .find(|(n, _)| *n == number)
            .map(|(_, name)| format!("{name}-backports"))
    };
    match selector {
        DebianSelector::Upstream { major, minor } => suite_for_linux(*major, *minor)
            .map(|s| vec![s.to_owned()])
            .ok_or_else(|| match minor {
                Some(minor) => format!("{major}.{minor}"),
                None => major.to_string(),
            }),
        DebianSelector::Suite(suite) => Ok(vec![suite.clone()]),
        DebianSelector::PackageVersion(v) => backports(v, "~bpo")
            .or_else(|| by_linux(v))
            .map(|s| vec![s])
            .ok_or_else(|| v.clone()),
        DebianSelector::Release(r) if r.contains("+bpo") => {
            // Backports releases do not say which Debian release they are for: newest first.
            Ok(LINUX_IN_SUITE
                .iter()
                .rev()
                .filter(|(_, _, suite)| *suite != "sid")
                .map(|(_, _, suite)| format!("{suite}-backports"))
                .collect())
        }
        DebianSelector::Release(r) => {
            // `6.12.95+deb12-amd64` is trixie's Linux built for bookworm: bookworm-backports.
            let built_for = RELEASE_NUMBERS.iter().find_map(|(n, name)| {
                let tag = format!("+deb{n}-");
                r.contains(&tag).then_some(*name)
            });
            match (by_linux(r), built_for) {
                (Some(suite), Some(other)) if suite != other && suite != "sid" => {
                    Ok(vec![format!("{other}-backports"), suite])
                }
                (Some(suite), _) => Ok(vec![suite]),
                (None, Some(other)) => Ok(vec![format!("{other}-backports"), other.to_owned()]),
                (None, None) => Err(r.clone()),
            }
        }
    }
}

/// One package relation of a `Depends` field: a name and, if pinned with `(= V)`, the version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Relation {
    pub(crate) name: String,
    pub(crate) exact: Option<String>,
}

/// The relations of a `Depends` field that have no alternatives (`a | b` groups are dropped:
/// kernel packages pin their parts without alternatives).
pub(crate) fn depends(field: &str) -> Vec<Relation> {
    field
        .split(',')
        .filter(|group| !group.contains('|'))
        .filter_map(|rel| {
            let rel = rel.trim();
            let (name, constraint) = match rel.split_once('(') {
                Some((name, rest)) => (name.trim(), Some(rest.trim_end_matches(')').trim())),
                None => (rel, None),
            };
            let name = name.split(':').next().unwrap_or(name).trim();
            if name.is_empty() {
                return None;
            }
            let exact = constraint
                .and_then(|c| c.strip_prefix('='))
                .map(|v| v.trim().to_owned());
            Some(Relation {
                name: name.to_owned(),
                exact,
            })
        })
        .collect()
}

/// From the `Depends` of `linux-image-amd64` (or a flavour's metapackage): the versioned kernel
/// image package and its exact version, e.g. `linux-image-6.1.0-50-amd64`, `6.1.176-1`.
pub(crate) fn image_from_depends(field: &str) -> Option<(String, String)> {
    depends(field).into_iter().find_map(|r| {
        let release = r.name.strip_prefix("linux-image-")?;
        // A versioned image starts with its Linux version; `linux-image-amd64` does not.
        if !release.starts_with(|c: char| c.is_ascii_digit()) {
            return None;
        }
        Some((r.name, r.exact?))
    })
}

/// The packages a kernel image package pins to its own release: on 7.x `linux-image-RELEASE` is
/// a metapackage for `linux-binary-RELEASE` (vmlinuz), `linux-modules-RELEASE` and
/// `linux-base-RELEASE` (modules.builtin, modules.order, config). Empty for 6.x and older.
pub(crate) fn parts_of_image(field: &str, release: &str) -> Vec<(String, String)> {
    let suffix = format!("-{release}");
    depends(field)
        .into_iter()
        .filter(|r| r.name.ends_with(&suffix) && r.name.starts_with("linux-"))
        .filter_map(|r| Some((r.name, r.exact?)))
        .collect()
}

/// The upstream part of a Debian version: `6.1.176-1` gives `6.1.176`.
pub(crate) fn upstream(version: &str) -> &str {
    let no_epoch = version.split_once(':').map_or(version, |(_, v)| v);
    no_epoch.rsplit_once('-').map_or(no_epoch, |(u, _)| u)
}

/// The kernel release a kernel package is for: `linux-image-6.1.0-50-amd64` gives
/// `6.1.0-50-amd64`; also `linux-binary-`, `linux-modules-`, `linux-base-` and `-unsigned`.
pub(crate) fn release_of_package(package: &str) -> Option<&str> {
    let rest = [
        "linux-image-",
        "linux-binary-",
        "linux-modules-",
        "linux-base-",
    ]
    .iter()
    .find_map(|p| package.strip_prefix(p))?;
    let rest = rest.strip_suffix("-unsigned").unwrap_or(rest);
    rest.starts_with(|c: char| c.is_ascii_digit())
        .then_some(rest)
}

/// Fields of the first stanza of control text (`apt-cache show`, `dpkg-deb -f`), continuation
/// lines folded in.
pub(crate) fn first_stanza(text: &str) -> Vec<(String, String)> {
    let mut fields: Vec<(String, String)> = Vec::new();
    for line in text.lines() {
        if line.trim().is_empty() {
            if fields.is_empty() {
                continue;
            }
            break;
        }
        if line.starts_with([' ', '\t']) {
            if let Some((_, value)) = fields.last_mut() {
                value.push('\n');
                value.push_str(line.trim());
            }
        } else if let Some((key, value)) = line.split_once(':') {
            fields.push((key.trim().to_owned(), value.trim().to_owned()));
        }
    }
    fields
}

/// One field of a stanza from [`first_stanza`], by case-insensitive name.
pub(crate) fn field<'a>(stanza: &'a [(String, String)], name: &str) -> Option<&'a str> {
    stanza
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suites_for_versions() {
        assert_eq!(suite_for_linux(5, Some(10)), Some("bullseye"));
        assert_eq!(suite_for_linux(6, Some(1)), Some("bookworm"));
        assert_eq!(suite_for_linux(6, Some(12)), Some("trixie"));
        assert_eq!(suite_for_linux(7, None), Some("sid"));
        assert_eq!(suite_for_linux(7, Some(2)), Some("sid"));
        assert_eq!(suite_for_linux(5, None), Some("bullseye"));
        // Two suites ship a 6.x: a bare 6 is ambiguous.
        assert_eq!(suite_for_linux(6, None), None);
        assert_eq!(suite_for_linux(6, Some(6)), None);
        assert_eq!(suite_for_linux(4, Some(19)), None);
        assert!(known_versions().contains("6.12 (trixie)"));
    }

    #[test]
    fn major_minor_of_versions_and_releases() {
        assert_eq!(major_minor("6.1.176-1"), Some((6, 1)));
        assert_eq!(major_minor("6.1.0-50-amd64"), Some((6, 1)));
        assert_eq!(major_minor("7.2.13+deb14-amd64"), Some((7, 2)));
        assert_eq!(major_minor("6.12.38-1~bpo12+1"), Some((6, 12)));
        assert_eq!(major_minor("7-1"), None);
        assert_eq!(major_minor("x"), None);
    }

    #[test]
    fn suites_for_selectors() {
        let s = |sel: DebianSelector| suites_for(&sel);
        assert_eq!(
            s(DebianSelector::Upstream {
                major: 6,
                minor: Some(12)
            }),
            Ok(vec!["trixie".to_owned()])
        );
        assert_eq!(
            s(DebianSelector::Upstream {
                major: 6,
                minor: None
            }),
            Err("6".to_owned())
        );
        assert_eq!(
            s(DebianSelector::Suite("bookworm-backports".into())),
            Ok(vec!["bookworm-backports".to_owned()])
        );
        assert_eq!(
            s(DebianSelector::PackageVersion("6.1.176-1".into())),
            Ok(vec!["bookworm".to_owned()])
        );
        assert_eq!(
            s(DebianSelector::PackageVersion("6.12.38-1~bpo12+1".into())),
            Ok(vec!["bookworm-backports".to_owned()])
        );
        assert_eq!(
            s(DebianSelector::Release("7.2.13+deb14-amd64".into())),
            Ok(vec!["sid".to_owned()])
        );
        assert_eq!(
            s(DebianSelector::Release("6.12.12+bpo-amd64".into())),
            Ok(vec![
                "trixie-backports".to_owned(),
                "bookworm-backports".to_owned(),
                "bullseye-backports".to_owned()
            ])
        );
        assert_eq!(
            s(DebianSelector::Release("6.12.117+deb13-amd64".into())),
            Ok(vec!["trixie".to_owned()])
        );
        assert_eq!(
            s(DebianSelector::Release("6.12.95+deb12-amd64".into())),
            Ok(vec!["bookworm-backports".to_owned(), "trixie".to_owned()])
        );
        assert!(s(DebianSelector::Release("4.19.0-27-amd64".into())).is_err());
    }

    #[test]
    fn image_from_metapackage_depends() {
        // bookworm
        assert_eq!(
            image_from_depends("linux-image-6.1.0-50-amd64 (= 6.1.176-1)"),
            Some(("linux-image-6.1.0-50-amd64".into(), "6.1.176-1".into()))
        );
        // sid: the versioned image comes after linux-base-amd64
        assert_eq!(
            image_from_depends(
                "linux-base-amd64 (= 7.2.13-1), linux-image-7.2.13+deb14-amd64 (= 7.2.13-1)"
            ),
            Some(("linux-image-7.2.13+deb14-amd64".into(), "7.2.13-1".into()))
        );
        // an unpinned or missing image is no answer
        assert_eq!(image_from_depends("linux-image-6.1.0-50-amd64"), None);
        assert_eq!(image_from_depends("linux-image-amd64 (= 1-1), kmod"), None);
        assert_eq!(image_from_depends(""), None);
    }

    #[test]
    fn parts_of_a_split_image() {
        let depends = "dracut | initramfs-tools (>= 0.120+deb8u2) | linux-initramfs-tool, \
            linux-base-7.2.13+deb14-amd64 (= 7.2.13-1), linux-binary-7.2.13+deb14-amd64 \
            (= 7.2.13-1), linux-modules-7.2.13+deb14-amd64 (= 7.2.13-1)";
        assert_eq!(
            parts_of_image(depends, "7.2.13+deb14-amd64"),
            vec![
                ("linux-base-7.2.13+deb14-amd64".into(), "7.2.13-1".into()),
                ("linux-binary-7.2.13+deb14-amd64".into(), "7.2.13-1".into()),
                ("linux-modules-7.2.13+deb14-amd64".into(), "7.2.13-1".into()),
            ]
        );
        let bookworm = "kmod, linux-base (>= 4.3~), initramfs-tools (>= 0.120+deb8u2) | \
            linux-initramfs-tool";
        assert!(parts_of_image(bookworm, "6.1.0-50-amd64").is_empty());
    }

    #[test]
    fn versions_and_releases() {
        assert_eq!(upstream("6.1.176-1"), "6.1.176");
        assert_eq!(upstream("6.12.38-1~bpo12+1"), "6.12.38");
        assert_eq!(upstream("1:2.3-4"), "2.3");
        assert_eq!(upstream("5"), "5");
        assert_eq!(
            release_of_package("linux-image-6.1.0-50-amd64"),
            Some("6.1.0-50-amd64")
        );
        assert_eq!(
            release_of_package("linux-image-6.1.0-50-amd64-unsigned"),
            Some("6.1.0-50-amd64")
        );
        assert_eq!(
            release_of_package("linux-binary-7.2.13+deb14-amd64"),
            Some("7.2.13+deb14-amd64")
        );
        assert_eq!(release_of_package("linux-image-amd64"), None);
        assert_eq!(release_of_package("bash"), None);
    }

    #[test]
    fn control_stanzas() {
        let text = "Package: linux-image-amd64\nVersion: 7.2.13-1\nDepends: a (= 1),\n b (= 2)\n\
                    \nPackage: second\n";
        let stanza = first_stanza(text);
        assert_eq!(field(&stanza, "version"), Some("7.2.13-1"));
        assert_eq!(field(&stanza, "Depends"), Some("a (= 1),\nb (= 2)"));
        assert_eq!(depends("a (= 1),\nb (= 2)")[1].exact.as_deref(), Some("2"));
        assert_eq!(field(&stanza, "Package"), Some("linux-image-amd64"));
        assert_eq!(
            field(&first_stanza("\n\nPackage: x\n"), "package"),
            Some("x")
        );
    }
}

/// Control stanzas and relation fields come from the archive (and `apt-cache show` of a mirror
/// the user picks): outside bytes, property-tested so none can panic the readers.
#[cfg(test)]
mod prop_tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(3000))]

        #[test]
        fn control_text_never_panics(text in "\\PC{0,400}") {
            let stanza = first_stanza(&text);
            let _ = field(&stanza, "Depends");
            let _ = depends(&text);
            let _ = image_from_depends(&text);
            let _ = parts_of_image(&text, "6.1.0-50-amd64");
            let _ = upstream(&text);
            let _ = release_of_package(&text);
            let _ = major_minor(&text);
        }

        #[test]
        fn stanza_shaped_text_never_panics(
            lines in proptest::collection::vec(
                ("[A-Za-z-]{0,12}", prop_oneof![Just(":"), Just(": "), Just("")], "[ -~]{0,40}", prop_oneof![Just("\n"), Just("\n "), Just("\n\n")]),
                0..20,
            )
        ) {
            let text: String = lines.iter().map(|(k, sep, v, nl)| format!("{k}{sep}{v}{nl}")).collect();
            let stanza = first_stanza(&text);
            if let Some(d) = field(&stanza, "Depends") {
                let _ = depends(d);
                let _ = image_from_depends(d);
            }
            let _ = crate::mirror::mirror_from_deb822(&text);
        }
    }
}
