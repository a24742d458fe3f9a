//! Which glibc a binary needs, and which a box has: an agent copied into a box must not need
//! newer symbol versions than the box's glibc offers, or it dies at load with a message nobody
//! connects to labgrade.

use object::Endianness;
use object::elf::FileHeader64;
use object::read::elf::FileHeader;

/// A glibc version, e.g. 2.34 as `(2, 34)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct GlibcVersion(pub u32, pub u32);

impl std::fmt::Display for GlibcVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.0, self.1)
    }
}

impl GlibcVersion {
    /// Parses `2.34`, `2.35.1` or `GLIBC_2.34` (the minor part's leading digits).
    pub fn parse(text: &str) -> Option<GlibcVersion> {
        let text = text.trim();
        let text = text.strip_prefix("GLIBC_").unwrap_or(text);
        let (major, rest) = text.split_once('.')?;
        let minor: String = rest.chars().take_while(char::is_ascii_digit).collect();
        Some(GlibcVersion(major.parse().ok()?, minor.parse().ok()?))
    }

    /// The version in `getconf GNU_LIBC_VERSION` output (`glibc 2.36`).
    pub fn from_getconf(output: &str) -> Option<GlibcVersion> {
        output
            .split_whitespace()
            .find_map(|w| GlibcVersion::parse(w).filter(|_| w.contains('.')))
    }
}

/// The highest `GLIBC_x.y` version an ELF64 binary needs (its `.gnu.version_r`), `None` for a
/// static binary or a file that is not a readable ELF64.
pub fn highest_needed(elf: &[u8]) -> Option<GlibcVersion> {
    let header = FileHeader64::<Endianness>::parse(elf).ok()?;
    let endian = header.endian().ok()?;
    let sections = header.sections(endian, elf).ok()?;
    let (mut needs, link) = sections.gnu_verneed(endian, elf).ok()??;
    let strings = sections.strings(endian, elf, link).ok()?;
    let mut highest = None;
    while let Ok(Some((_, mut aux))) = needs.next() {
        while let Ok(Some(entry)) = aux.next() {
            let version = entry
                .name(endian, strings)
                .ok()
                .and_then(|n| std::str::from_utf8(n).ok())
                .filter(|n| n.starts_with("GLIBC_"))
                .and_then(GlibcVersion::parse);
            highest = highest.max(version);
        }
    }
    highest
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_parse_from_symbols_and_getconf() {
        assert_eq!(GlibcVersion::parse("GLIBC_2.34"), Some(GlibcVersion(2, 34)));
        assert_eq!(GlibcVersion::parse("2.3.4"), Some(GlibcVersion(2, 3)));
        assert_eq!(
            GlibcVersion::from_getconf("glibc 2.36\n"),
            Some(GlibcVersion(2, 36))
        );
        assert_eq!(GlibcVersion::from_getconf("musl"), None);
        assert!(GlibcVersion(2, 34) < GlibcVersion(2, 36));
        assert!(GlibcVersion(2, 9) < GlibcVersion(2, 10));
    }

    #[test]
    fn this_test_binary_needs_a_glibc_no_newer_than_the_one_it_runs_on()
    -> Result<(), Box<dyn std::error::Error>> {
        let exe = std::fs::read(std::env::current_exe()?)?;
        let needed = highest_needed(&exe).ok_or("no GLIBC_ version needed by a dynamic binary")?;
        let out = std::process::Command::new("getconf")
            .arg("GNU_LIBC_VERSION")
            .output()?;
        let here = GlibcVersion::from_getconf(&String::from_utf8_lossy(&out.stdout))
            .ok_or("getconf gave no glibc version")?;
        assert!(
            needed >= GlibcVersion(2, 2) && needed <= here,
            "{needed} vs {here}"
        );
        Ok(())
    }

    #[test]
    fn garbage_needs_nothing() {
        assert_eq!(highest_needed(b"not an elf"), None);
        assert_eq!(highest_needed(&[]), None);
    }
}
