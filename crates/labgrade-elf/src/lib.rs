//! What a binary needs of the system it is copied into. labgrade ships itself to places it was
//! not built on (Gradescope's Ubuntu 22.04 image, a RHEL 9 Vagrant box), and a binary linked
//! against a newer glibc than the target's fails there with a loader error nobody can act on.
//! The check reads the binary's version needs (`.gnu.version_r`, what `objdump -T` shows),
//! through the `object` crate: a truncated or hostile file is an error, never a panic.

use std::fmt;
use std::str::FromStr;

use object::Endianness;
use object::elf::FileHeader64;
use object::read::elf::FileHeader;

/// A glibc version, `major.minor` (the symbol versions are `GLIBC_2.34` and the like).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GlibcVersion {
    /// Always 2 in practice; kept so the order is right if it ever is not.
    pub major: u32,
    /// The number that moves.
    pub minor: u32,
}

impl GlibcVersion {
    /// Ubuntu 22.04's glibc: Gradescope's autograder image.
    pub const UBUNTU_22_04: GlibcVersion = GlibcVersion::new(2, 35);
    /// RHEL 9's (and AlmaLinux / Rocky 9's) glibc.
    pub const RHEL_9: GlibcVersion = GlibcVersion::new(2, 34);

    /// A version from its parts.
    pub const fn new(major: u32, minor: u32) -> GlibcVersion {
        GlibcVersion { major, minor }
    }
}

impl fmt::Display for GlibcVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

impl FromStr for GlibcVersion {
    type Err = String;

    /// Parses `2.34`, `GLIBC_2.34` or the first line of `ldd --version` / `getconf
    /// GNU_LIBC_VERSION` output (`glibc 2.34`); a patch level (`2.3.4`) is dropped.
    fn from_str(s: &str) -> Result<GlibcVersion, String> {
        let word = s
            .split_whitespace()
            .rev()
            .find(|w| {
                w.chars().next().is_some_and(|c| c.is_ascii_digit()) || w.starts_with("GLIBC_")
            })
            .unwrap_or(s);
        let v = word.strip_prefix("GLIBC_").unwrap_or(word);
        let mut parts = v.split('.');
        let num = |p: Option<&str>| p.and_then(|p| p.parse::<u32>().ok());
        match (num(parts.next()), num(parts.next())) {
            (Some(major), Some(minor)) => Ok(GlibcVersion { major, minor }),
            _ => Err(format!("`{s}` is not a glibc version (like 2.35)")),
        }
    }
}

/// Why a file's needs could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ElfError {
    /// Not a 64-bit ELF file, or one whose headers do not hold together.
    NotElf(String),
}

impl fmt::Display for ElfError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ElfError::NotElf(why) => write!(f, "not a readable 64-bit ELF file: {why}"),
        }
    }
}

impl std::error::Error for ElfError {}

/// The highest `GLIBC_x.y` symbol version the file needs: the oldest glibc it runs on. `None`
/// for a file that needs no glibc versions (static, or musl).
pub fn glibc_needed(elf: &[u8]) -> Result<Option<GlibcVersion>, ElfError> {
    let bad = |e: object::read::Error| ElfError::NotElf(e.to_string());
    let header = FileHeader64::<Endianness>::parse(elf).map_err(bad)?;
    let endian = header.endian().map_err(bad)?;
    let sections = header.sections(endian, elf).map_err(bad)?;
    // The index beside the needs is the section's link: the string table their names are in.
    let Some((mut needs, strtab)) = sections.gnu_verneed(endian, elf).map_err(bad)? else {
        return Ok(None);
    };
    let strings = sections.strings(endian, elf, strtab).map_err(bad)?;
    let mut highest = None;
    while let Some((_, mut aux)) = needs.next().map_err(bad)? {
        while let Some(a) = aux.next().map_err(bad)? {
            let name = a.name(endian, strings).map_err(bad)?;
            let Some(v) = std::str::from_utf8(name)
                .ok()
                .filter(|n| n.starts_with("GLIBC_"))
                .and_then(|n| n.parse::<GlibcVersion>().ok())
            else {
                continue;
            };
            highest = highest.max(Some(v));
        }
    }
    Ok(highest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn versions_parse_from_symbols_ldd_and_getconf() {
        let v = |s: &str| s.parse::<GlibcVersion>();
        assert_eq!(v("GLIBC_2.34"), Ok(GlibcVersion::new(2, 34)));
        assert_eq!(v("glibc 2.35"), Ok(GlibcVersion::new(2, 35)));
        assert_eq!(
            v("ldd (Debian GLIBC 2.36-9+deb12u13) 2.36"),
            Ok(GlibcVersion::new(2, 36))
        );
        assert_eq!(v("2.3.4"), Ok(GlibcVersion::new(2, 3)));
        assert!(v("GLIBC_PRIVATE").is_err());
        assert!(GlibcVersion::new(2, 9) < GlibcVersion::new(2, 34));
    }

    #[test]
    fn this_test_binary_needs_a_glibc_no_newer_than_the_one_running_it() {
        let me = std::fs::read("/proc/self/exe").unwrap_or_else(|e| panic!("{e}"));
        let needed = glibc_needed(&me).unwrap_or_else(|e| panic!("{e}"));
        let needed = needed.unwrap_or_else(|| panic!("a test binary links glibc"));
        let running = std::process::Command::new("getconf")
            .arg("GNU_LIBC_VERSION")
            .output()
            .unwrap_or_else(|e| panic!("getconf: {e}"));
        let running: GlibcVersion = String::from_utf8_lossy(&running.stdout)
            .parse()
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(needed <= running, "{needed} > {running}");
        assert!(needed >= GlibcVersion::new(2, 2), "{needed}");
    }

    #[test]
    fn a_file_that_is_not_elf_is_an_error() {
        assert!(glibc_needed(b"#!/bin/sh\necho hi\n").is_err());
        assert!(glibc_needed(&[]).is_err());
    }

    proptest! {
        #[test]
        fn no_bytes_make_it_panic(bytes in proptest::collection::vec(any::<u8>(), 0..4096)) {
            let _ = glibc_needed(&bytes);
        }

        #[test]
        fn a_real_binary_cut_short_or_flipped_never_panics(cut in 0usize..200_000, at in 0usize..200_000, byte in any::<u8>()) {
            let mut me = std::fs::read("/proc/self/exe").unwrap_or_default();
            me.truncate(cut.max(64));
            if let Some(b) = me.get_mut(at) {
                *b = byte;
            }
            let _ = glibc_needed(&me);
        }
    }

    #[test]
    fn versions_show_as_glibc_writes_them() {
        assert_eq!(GlibcVersion::UBUNTU_22_04.to_string(), "2.35");
    }
}
