//! The few facts labgrade reads from ELF files it did not make (a kernel's modules, the host's
//! busybox), through the `object` crate: a hostile or truncated file is an answer of
//! "no", never a panic or an out-of-bounds read.

use object::Endianness;
use object::elf::{FileHeader64, PT_INTERP};
use object::read::elf::{FileHeader, ProgramHeader, SectionHeader};

fn header(elf: &[u8]) -> Option<(&FileHeader64<Endianness>, Endianness)> {
    let header = FileHeader64::<Endianness>::parse(elf).ok()?;
    let endian = header.endian().ok()?;
    Some((header, endian))
}

/// Does this file need a dynamic loader (a `PT_INTERP` program header)? A file that is not a
/// readable ELF64 counts as needing one: it is certainly not a static binary we can run.
pub(crate) fn has_interpreter(elf: &[u8]) -> bool {
    let Some((header, endian)) = header(elf) else {
        return true;
    };
    header
        .program_headers(endian, elf)
        .map_or(true, |segments| {
            segments.iter().any(|s| s.p_type(endian) == PT_INTERP)
        })
}

/// The values of `key` in a kernel module's `.modinfo` section (NUL-separated `key=value`
/// strings): `depends`, `alias`... Nothing where the file has no readable `.modinfo`.
pub(crate) fn modinfo_values(elf: &[u8], key: &str) -> Vec<String> {
    let Some((header, endian)) = header(elf) else {
        return Vec::new();
    };
    let Some(data) = header
        .sections(endian, elf)
        .ok()
        .and_then(|sections| {
            sections
                .section_by_name(endian, b".modinfo")
                .map(|(_, s)| s.data(endian, elf))
        })
        .and_then(Result::ok)
    else {
        return Vec::new();
    };
    data.split(|b| *b == 0)
        .filter_map(|entry| {
            let (k, v) = entry.split_at(entry.iter().position(|b| *b == b'=')?);
            (k == key.as_bytes()).then(|| String::from_utf8_lossy(&v[1..]).into_owned())
        })
        .collect()
}

/// A relocatable x86-64 ELF file with a `.modinfo` section holding `modinfo`: a kernel module as
/// far as labgrade reads one.
#[cfg(test)]
pub(crate) fn module_elf(modinfo: &[u8]) -> Vec<u8> {
    use object::write::Object;
    use object::{Architecture, BinaryFormat, SectionKind};
    let mut obj = Object::new(BinaryFormat::Elf, Architecture::X86_64, Endianness::Little);
    let id = obj.add_section(Vec::new(), b".modinfo".to_vec(), SectionKind::ReadOnlyData);
    obj.append_section_data(id, modinfo, 1);
    obj.write()
        .unwrap_or_else(|e| panic!("cannot write a test ELF: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The host's own binaries, as real ELF input.
    fn host_elf(path: &str) -> Vec<u8> {
        std::fs::read(path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    #[test]
    fn modinfo_values_come_from_the_modinfo_section_only() {
        let elf = module_elf(b"license=GPL\0depends=libcrc32c,crc16\0alias=fs-xfs\0alias=xfs\0");
        assert_eq!(modinfo_values(&elf, "depends"), vec!["libcrc32c,crc16"]);
        assert_eq!(modinfo_values(&elf, "alias"), vec!["fs-xfs", "xfs"]);
        // The same strings outside a .modinfo section are not module info.
        assert!(modinfo_values(b"\0depends=libcrc32c\0", "depends").is_empty());
    }

    #[test]
    fn a_dynamic_binary_has_an_interpreter_and_garbage_counts_as_one() {
        assert!(has_interpreter(&host_elf("/bin/sh")));
        assert!(has_interpreter(b"not an elf"));
        assert!(modinfo_values(&host_elf("/bin/sh"), "depends").is_empty());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(3000))]

        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = has_interpreter(&bytes);
            let _ = modinfo_values(&bytes, "depends");
        }

        #[test]
        fn a_real_elf_with_hostile_header_fields_never_panics(
            at in 0usize..64,
            value in any::<u64>(),
            cut in 0usize..4096,
        ) {
            // /bin/true's header with one field overwritten (phoff, phnum, shoff ... can point
            // anywhere), then truncated.
            let mut elf = std::fs::read("/bin/true").unwrap_or_default();
            let end = (at + 8).min(elf.len());
            if at < end {
                let bytes = value.to_le_bytes();
                elf[at..end].copy_from_slice(&bytes[..end - at]);
            }
            let whole = elf.clone();
            elf.truncate(cut.min(elf.len()));
            for e in [&whole, &elf] {
                let _ = has_interpreter(e);
                let _ = modinfo_values(e, "alias");
            }
        }
    }
}
