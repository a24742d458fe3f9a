//! Is this file a bootable kernel, and which kind? A `local:` kernel is whatever path the user
//! typed: a truncated download, an initrd, a text file or a hostile ELF must be refused as *their*
//! input error (exit 2, naming the file) before QEMU starts, not handed to QEMU to fail on after a
//! long wait. Every offset and size the file claims is checked against the file before it is used.

use std::fmt;
use std::ops::Range;
use std::path::Path;

use object::LittleEndian as LE;
use object::ReadRef;
use object::elf::{self, FileHeader64, ProgramHeader64};
use object::read::elf::NoteIterator;

/// The largest kernel image taken: distribution bzImages are about 10 MiB.
pub const MAX_IMAGE_LEN: u64 = 256 << 20;
/// The largest unpacked vmlinux a bzImage may declare (real ones are 50 to 70 MiB).
pub const MAX_UNPACKED_LEN: u64 = 512 << 20;
/// The largest memory image of one `PT_LOAD` segment.
const MAX_SEGMENT_MEM: u64 = 1 << 30;
/// The largest `PT_NOTE` segment read (a kernel's are about 1 KiB).
const MAX_NOTE_LEN: u64 = 1 << 20;
/// Bytes of the head read to tell the kind and the bzImage header apart.
const HEAD_LEN: u64 = 0x400;
/// `XEN_ELFNOTE_PHYS32_ENTRY`: the note QEMU boots an ELF kernel by (PVH).
const XEN_ELFNOTE_PHYS32_ENTRY: elf::NoteType = elf::NoteType(18);
/// Size of an ELF64 program header.
const PHENTSIZE: u16 = 56;
/// Size of an ELF64 section header.
const SHENTSIZE: u16 = 64;

/// How a bzImage's payload is compressed, told by its magic bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// `1f 8b`.
    Gzip,
    /// `fd 37 7a 58 5a 00`.
    Xz,
    /// `28 b5 2f fd`.
    Zstd,
    /// `BZh`.
    Bzip2,
    /// `5d 00 00`.
    Lzma,
    /// `89 4c 5a 4f`.
    Lzo,
    /// `02 21 4c 18` (the legacy lz4 frame the kernel uses).
    Lz4,
}

impl Compression {
    fn from_magic(m: &[u8]) -> Option<Compression> {
        const MAGICS: &[(&[u8], Compression)] = &[
            (b"\x1f\x8b", Compression::Gzip),
            (b"\xfd7zXZ\0", Compression::Xz),
            (b"\x28\xb5\x2f\xfd", Compression::Zstd),
            (b"BZh", Compression::Bzip2),
            (b"\x5d\0\0", Compression::Lzma),
            (b"\x89LZO", Compression::Lzo),
            (b"\x02\x21\x4c\x18", Compression::Lz4),
        ];
        MAGICS
            .iter()
            .find(|(magic, _)| m.starts_with(magic))
            .map(|(_, c)| *c)
    }

    /// The host program that decompresses it (`-d -c` reads stdin, writes stdout).
    pub fn tool(self) -> &'static str {
        match self {
            Compression::Gzip => "gzip",
            Compression::Xz => "xz",
            Compression::Zstd => "zstd",
            Compression::Bzip2 => "bzip2",
            Compression::Lzma => "lzma",
            Compression::Lzo => "lzop",
            Compression::Lz4 => "lz4",
        }
    }

    /// Does the stream itself end with the unpacked size (gzip's ISIZE)? The kernel build
    /// appends the size to every other compressor's stream, where the tool would read it as
    /// trailing garbage.
    pub fn size_is_in_stream(self) -> bool {
        self == Compression::Gzip
    }
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.tool())
    }
}

/// What a validated kernel image is: everything a boot needs from it, already checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KernelImage {
    /// An x86 bzImage (`vmlinuz`), as distributions ship it.
    BzImage {
        /// Boot protocol version, e.g. `0x020f` for 2.15.
        protocol: u16,
        /// Where the compressed payload lies in the file (its unpacked size is its last 4 bytes).
        payload: Range<u64>,
        /// How the payload is compressed.
        compression: Compression,
        /// The unpacked size the payload declares.
        unpacked_len: u64,
    },
    /// An uncompressed ELF `vmlinux` QEMU can boot directly (PVH).
    Vmlinux {
        /// The physical address of its 32-bit PVH entry point.
        pvh_entry: u64,
    },
}

/// Why a file is not a bootable kernel image, in words for the user who gave it.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// Zero bytes.
    #[error("the file is empty")]
    Empty,
    /// Bigger than any kernel.
    #[error("{len} bytes, more than any kernel image ({MAX_IMAGE_LEN} at most)")]
    TooLarge {
        /// Its size.
        len: u64,
    },
    /// Neither magic.
    #[error("neither an x86 bzImage (no `HdrS` boot header) nor an ELF vmlinux")]
    Unrecognised,
    /// A bytes range the checks said was there could not be read.
    #[error("cannot read {what} of it")]
    Unreadable {
        /// Which part.
        what: &'static str,
    },
    /// The file could not be opened.
    #[error("cannot read it: {0}")]
    Io(#[source] std::io::Error),
    /// An ELF file for another machine, class or byte order.
    #[error("an ELF file, but not a 64-bit little-endian x86-64 one")]
    ElfNotX86_64,
    /// A shared object, relocatable or core file.
    #[error("an ELF file of type {e_type}, not an executable vmlinux (ET_EXEC)")]
    ElfNotExecutable {
        /// Its `e_type`.
        e_type: u16,
    },
    /// A header table entry size other than the ELF64 one.
    #[error("an ELF file whose {table} entries are {size} bytes, not {expected}")]
    ElfEntrySize {
        /// Program or section header.
        table: &'static str,
        /// What it says.
        size: u16,
        /// What ELF64 has.
        expected: u16,
    },
    /// A header table that lies (partly) outside the file.
    #[error(
        "an ELF file whose {table} table ({count} entries at offset {offset:#x}) lies outside \
         the file ({len} bytes)"
    )]
    ElfTableOutside {
        /// Program or section header.
        table: &'static str,
        /// `e_phoff` or `e_shoff`.
        offset: u64,
        /// Entries.
        count: u64,
        /// File size.
        len: u64,
    },
    /// A segment whose bytes lie outside the file.
    #[error(
        "an ELF file whose segment {index} ({size:#x} bytes at offset {offset:#x}) lies outside \
         the file ({len} bytes)"
    )]
    SegmentOutside {
        /// Program header index.
        index: usize,
        /// `p_offset`.
        offset: u64,
        /// `p_filesz`.
        size: u64,
        /// File size.
        len: u64,
    },
    /// A loadable segment with more file bytes than memory, or absurdly large.
    #[error(
        "an ELF file whose loadable segment {index} is impossible ({filesz:#x} bytes in the \
         file, {memsz:#x} in memory; at most {MAX_SEGMENT_MEM:#x})"
    )]
    SegmentSize {
        /// Program header index.
        index: usize,
        /// `p_filesz`.
        filesz: u64,
        /// `p_memsz`.
        memsz: u64,
    },
    /// A note segment too big to be a kernel's.
    #[error(
        "an ELF file whose note segment {index} is {size:#x} bytes ({MAX_NOTE_LEN:#x} at most)"
    )]
    NoteTooLarge {
        /// Program header index.
        index: usize,
        /// `p_filesz`.
        size: u64,
    },
    /// A note segment whose notes do not parse.
    #[error("an ELF file whose note segment {index} is malformed ({why})")]
    BadNotes {
        /// Program header index.
        index: usize,
        /// What the note reader said.
        why: String,
    },
    /// A vmlinux QEMU cannot boot.
    #[error(
        "an ELF vmlinux without a PVH entry note; QEMU cannot boot it, give the bzImage (vmlinuz)"
    )]
    NoPvhNote,
    /// A PVH entry that points at no loaded memory.
    #[error("an ELF vmlinux whose PVH entry {entry:#x} lies in none of its loadable segments")]
    PvhEntryOutside {
        /// The entry address.
        entry: u64,
    },
    /// A boot protocol too old to say where the payload is.
    #[error(
        "a bzImage of boot protocol {}.{:02}; labgrade needs 2.08 or later",
        protocol >> 8,
        protocol & 0xff
    )]
    OldProtocol {
        /// The version, major in the high byte.
        protocol: u16,
    },
    /// Shorter than the header says.
    #[error("a bzImage, but truncated: its header says {needed} bytes, the file has {len}")]
    Truncated {
        /// What the setup sectors and `syssize` add up to.
        needed: u64,
        /// File size.
        len: u64,
    },
    /// A payload that lies outside the protected-mode kernel.
    #[error(
        "a bzImage whose payload ({length:#x} bytes at {offset:#x}) lies outside its \
         protected-mode kernel ({kernel_len:#x} bytes)"
    )]
    PayloadOutside {
        /// `payload_offset`.
        offset: u64,
        /// `payload_length`.
        length: u64,
        /// `syssize` in bytes.
        kernel_len: u64,
    },
    /// A payload no known compressor made.
    #[error("a bzImage whose payload is compressed in no known format (it begins {magic})")]
    UnknownCompression {
        /// Its first bytes, in hex.
        magic: String,
    },
    /// An unpacked size that is zero or absurd.
    #[error(
        "a bzImage whose payload declares an unpacked size of {size} bytes (1 to \
         {MAX_UNPACKED_LEN})"
    )]
    UnpackedSize {
        /// The declared size.
        size: u64,
    },
    /// A payload that does not decompress to what it declares.
    #[error("a bzImage whose {compression} payload is corrupt: {why}")]
    CorruptPayload {
        /// Its compressor.
        compression: Compression,
        /// What went wrong.
        why: String,
    },
    /// A payload that unpacks to something that is not a valid vmlinux.
    #[error("a bzImage whose {compression} payload unpacks to a bad vmlinux: {inner}")]
    BadUnpacked {
        /// Its compressor.
        compression: Compression,
        /// What is wrong with the vmlinux.
        inner: Box<ImageError>,
    },
}

/// Validates the image in `data` (`len` bytes): reads only headers, notes and a few payload
/// bytes, so `data` can be a [`object::read::ReadCache`] over a file.
pub fn inspect<'a, R: ReadRef<'a>>(data: R, len: u64) -> Result<KernelImage, ImageError> {
    if len == 0 {
        return Err(ImageError::Empty);
    }
    if len > MAX_IMAGE_LEN {
        return Err(ImageError::TooLarge { len });
    }
    let head = read(data, 0, len.min(HEAD_LEN), "its first bytes")?;
    if head.starts_with(b"\x7fELF") {
        return vmlinux(data, len).map(|pvh_entry| KernelImage::Vmlinux { pvh_entry });
    }
    if head.get(0x202..0x206) == Some(b"HdrS") && head.get(0x1fe..0x200) == Some(&[0x55, 0xaa]) {
        return bzimage(data, len, head);
    }
    Err(ImageError::Unrecognised)
}

/// [`inspect`] of a file, read in bounded pieces (never whole).
pub fn inspect_file(path: &Path) -> Result<KernelImage, ImageError> {
    let file = std::fs::File::open(path).map_err(ImageError::Io)?;
    let len = file.metadata().map_err(ImageError::Io)?.len();
    let cache = object::read::ReadCache::new(file);
    inspect(&cache, len)
}

fn read<'a, R: ReadRef<'a>>(
    data: R,
    offset: u64,
    size: u64,
    what: &'static str,
) -> Result<&'a [u8], ImageError> {
    data.read_bytes_at(offset, size)
        .map_err(|()| ImageError::Unreadable { what })
}

fn le16(b: &[u8], at: usize) -> u16 {
    b.get(at..at + 2)
        .map_or(0, |s| u16::from_le_bytes([s[0], s[1]]))
}

fn le32(b: &[u8], at: usize) -> u32 {
    b.get(at..at + 4)
        .map_or(0, |s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

/// Does `offset..offset+size` lie within `len` bytes (no overflow)?
fn within(offset: u64, size: u64, len: u64) -> bool {
    offset.checked_add(size).is_some_and(|end| end <= len)
}

/// Checks an ELF vmlinux; its PVH entry.
fn vmlinux<'a, R: ReadRef<'a>>(data: R, len: u64) -> Result<u64, ImageError> {
    let h: &FileHeader64<LE> = data.read_at(0).map_err(|()| ImageError::Unreadable {
        what: "the ELF header",
    })?;
    if h.e_ident.class != elf::ELFCLASS64
        || h.e_ident.data != elf::ELFDATA2LSB
        || h.e_machine.get(LE) != elf::EM_X86_64
    {
        return Err(ImageError::ElfNotX86_64);
    }
    let e_type = h.e_type.get(LE);
    if e_type != elf::ET_EXEC {
        return Err(ImageError::ElfNotExecutable { e_type: e_type.0 });
    }
    let table = |name, offset: u64, count: u16, size: u16, expected: u16| {
        if size != expected {
            return Err(ImageError::ElfEntrySize {
                table: name,
                size,
                expected,
            });
        }
        let count = u64::from(count);
        if !within(offset, count * u64::from(size), len) {
            return Err(ImageError::ElfTableOutside {
                table: name,
                offset,
                count,
                len,
            });
        }
        Ok(())
    };
    let (phoff, phnum) = (h.e_phoff.get(LE), h.e_phnum.get(LE));
    table(
        "program header",
        phoff,
        phnum,
        h.e_phentsize.get(LE),
        PHENTSIZE,
    )?;
    let (shoff, shnum) = (h.e_shoff.get(LE), h.e_shnum.get(LE));
    if shoff != 0 || shnum != 0 {
        // shnum 0 with a table means the count is in section 0: that one entry must be there.
        table(
            "section header",
            shoff,
            shnum.max(1),
            h.e_shentsize.get(LE),
            SHENTSIZE,
        )?;
    }
    let phdrs: &[ProgramHeader64<LE>] =
        data.read_slice_at(phoff, usize::from(phnum))
            .map_err(|()| ImageError::Unreadable {
                what: "the program headers",
            })?;
    let mut entry = None;
    for (index, ph) in phdrs.iter().enumerate() {
        let (offset, filesz, memsz) =
            (ph.p_offset.get(LE), ph.p_filesz.get(LE), ph.p_memsz.get(LE));
        if filesz > 0 && !within(offset, filesz, len) {
            return Err(ImageError::SegmentOutside {
                index,
                offset,
                size: filesz,
                len,
            });
        }
        match ph.p_type.get(LE) {
            elf::PT_LOAD if filesz > memsz || memsz > MAX_SEGMENT_MEM => {
                return Err(ImageError::SegmentSize {
                    index,
                    filesz,
                    memsz,
                });
            }
            elf::PT_NOTE => {
                if filesz > MAX_NOTE_LEN {
                    return Err(ImageError::NoteTooLarge {
                        index,
                        size: filesz,
                    });
                }
                let bytes = read(data, offset, filesz, "a note segment")?;
                let bad = |e: object::read::Error| ImageError::BadNotes {
                    index,
                    why: e.to_string(),
                };
                let mut notes =
                    NoteIterator::<FileHeader64<LE>>::new(LE, ph.p_align.get(LE), bytes)
                        .map_err(bad)?;
                while let Some(note) = notes.next().map_err(bad)? {
                    if note.name() == b"Xen" && note.n_type(LE) == XEN_ELFNOTE_PHYS32_ENTRY {
                        let desc = note.desc();
                        entry = Some(match desc.len() {
                            8 => u64::from_le_bytes(
                                desc.try_into().unwrap_or([0; 8]), // length checked above
                            ),
                            4 => u64::from(le32(desc, 0)),
                            _ => {
                                return Err(ImageError::BadNotes {
                                    index,
                                    why: format!(
                                        "its PVH entry note holds {} bytes, not 4 or 8",
                                        desc.len()
                                    ),
                                });
                            }
                        });
                    }
                }
            }
            _ => {}
        }
    }
    let entry = entry.ok_or(ImageError::NoPvhNote)?;
    let loaded = phdrs.iter().any(|ph| {
        let start = ph.p_paddr.get(LE);
        ph.p_type.get(LE) == elf::PT_LOAD && entry >= start && entry - start < ph.p_memsz.get(LE)
    });
    if !loaded {
        return Err(ImageError::PvhEntryOutside { entry });
    }
    Ok(entry)
}

/// Checks an x86 bzImage's boot header and payload; `head` is its first bytes.
fn bzimage<'a, R: ReadRef<'a>>(data: R, len: u64, head: &[u8]) -> Result<KernelImage, ImageError> {
    let setup_sects = match head.get(0x1f1).copied().unwrap_or(0) {
        0 => 4,
        n => u64::from(n),
    };
    let setup_len = (setup_sects + 1) * 512;
    let kernel_len = u64::from(le32(head, 0x1f4)) * 16;
    let needed = setup_len + kernel_len;
    if len < needed {
        return Err(ImageError::Truncated { needed, len });
    }
    // Protocol 2.08 added the payload fields read next.
    let protocol = le16(head, 0x206);
    if protocol < 0x0208 || head.len() < 0x250 {
        return Err(ImageError::OldProtocol { protocol });
    }
    let (offset, length) = (u64::from(le32(head, 0x248)), u64::from(le32(head, 0x24c)));
    // At least a magic and the 4-byte unpacked size.
    if length < 8 || offset + length > kernel_len {
        return Err(ImageError::PayloadOutside {
            offset,
            length,
            kernel_len,
        });
    }
    let start = setup_len + offset;
    let end = start + length;
    let magic = read(data, start, 6, "the payload")?;
    let compression =
        Compression::from_magic(magic).ok_or_else(|| ImageError::UnknownCompression {
            magic: magic.iter().map(|b| format!("{b:02x}")).collect(),
        })?;
    let size = u64::from(le32(read(data, end - 4, 4, "the payload's size")?, 0));
    if size == 0 || size > MAX_UNPACKED_LEN {
        return Err(ImageError::UnpackedSize { size });
    }
    Ok(KernelImage::BzImage {
        protocol,
        payload: start..end,
        compression,
        unpacked_len: size,
    })
}

/// Small valid images for tests, built byte by byte.
#[cfg(test)]
pub(crate) mod synthetic {
    /// Physical load address of the synthetic vmlinux.
    pub(crate) const LOAD: u64 = 0x100_0000;

    /// A minimal ELF64 x86-64 executable: one PT_LOAD over the whole file and a PT_NOTE holding
    /// a `Xen` note (of type `note_type`; 18 is the PVH entry) pointing into it.
    pub(crate) fn vmlinux(note_type: u32) -> Vec<u8> {
        let mut f = vec![0u8; 64 + 2 * 56];
        f[..4].copy_from_slice(b"\x7fELF");
        f[4] = 2; // ELFCLASS64
        f[5] = 1; // little endian
        f[6] = 1;
        f[16..18].copy_from_slice(&2u16.to_le_bytes()); // ET_EXEC
        f[18..20].copy_from_slice(&0x3eu16.to_le_bytes());
        f[20..24].copy_from_slice(&1u32.to_le_bytes());
        f[24..32].copy_from_slice(&(LOAD + 0x200).to_le_bytes());
        f[32..40].copy_from_slice(&64u64.to_le_bytes()); // phoff
        f[52..54].copy_from_slice(&64u16.to_le_bytes());
        f[54..56].copy_from_slice(&56u16.to_le_bytes());
        f[56..58].copy_from_slice(&2u16.to_le_bytes());
        f[58..60].copy_from_slice(&64u16.to_le_bytes());
        // The note: namesz 4 ("Xen\0"), descsz 8, type, then the entry.
        let note_at = f.len() as u64;
        let mut note = Vec::new();
        note.extend_from_slice(&4u32.to_le_bytes());
        note.extend_from_slice(&8u32.to_le_bytes());
        note.extend_from_slice(&note_type.to_le_bytes());
        note.extend_from_slice(b"Xen\0");
        note.extend_from_slice(&(LOAD + 0x200).to_le_bytes());
        f.extend_from_slice(&note);
        f.resize(0x400, 0x90);
        let len = f.len() as u64;
        let phdr = |f: &mut Vec<u8>, at: usize, p_type: u32, off: u64, size: u64, align: u64| {
            let mut p = Vec::new();
            p.extend_from_slice(&p_type.to_le_bytes());
            p.extend_from_slice(&5u32.to_le_bytes());
            p.extend_from_slice(&off.to_le_bytes());
            p.extend_from_slice(&(LOAD + off).to_le_bytes()); // vaddr
            p.extend_from_slice(&(LOAD + off).to_le_bytes()); // paddr
            p.extend_from_slice(&size.to_le_bytes());
            p.extend_from_slice(&size.to_le_bytes());
            p.extend_from_slice(&align.to_le_bytes());
            f[at..at + 56].copy_from_slice(&p);
        };
        phdr(&mut f, 64, 1, 0, len, 0x1000);
        phdr(&mut f, 120, 4, note_at, note.len() as u64, 4);
        f
    }

    /// A bzImage (protocol 2.15) around `payload` (a compressed stream already ending in its
    /// unpacked size).
    pub(crate) fn bzimage(payload: &[u8]) -> Vec<u8> {
        let setup_sects = 4u8;
        let setup_len = (usize::from(setup_sects) + 1) * 512;
        let mut f = vec![0u8; setup_len];
        f[0x1f1] = setup_sects;
        f[0x1fe..0x200].copy_from_slice(&[0x55, 0xaa]);
        f[0x202..0x206].copy_from_slice(b"HdrS");
        f[0x206..0x208].copy_from_slice(&0x020fu16.to_le_bytes());
        let offset = 0x100u32; // decompressor code before the payload
        f.resize(setup_len + offset as usize, 0xcc);
        f.extend_from_slice(payload);
        f.resize(f.len().next_multiple_of(16), 0);
        let syssize = u32::try_from((f.len() - setup_len) / 16).unwrap_or(0);
        f[0x1f4..0x1f8].copy_from_slice(&syssize.to_le_bytes());
        f[0x248..0x24c].copy_from_slice(&offset.to_le_bytes());
        let length = u32::try_from(payload.len()).unwrap_or(0);
        f[0x24c..0x250].copy_from_slice(&length.to_le_bytes());
        f
    }

    /// `data` compressed by `tool` the way the kernel build does it: the unpacked size appended
    /// (gzip's stream ends with it already).
    pub(crate) fn compress(tool: &str, data: &[u8]) -> Vec<u8> {
        use std::io::Write;
        let mut child = std::process::Command::new(tool)
            .arg("-c")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {tool}: {e}"));
        child
            .stdin
            .take()
            .unwrap_or_else(|| panic!("no stdin"))
            .write_all(data)
            .unwrap_or_else(|e| panic!("{tool}: {e}"));
        let mut out = child
            .wait_with_output()
            .unwrap_or_else(|e| panic!("{tool}: {e}"))
            .stdout;
        if tool != "gzip" {
            out.extend_from_slice(&u32::try_from(data.len()).unwrap_or(0).to_le_bytes());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::synthetic::{LOAD, bzimage, compress, vmlinux};
    use super::{Compression, ImageError, KernelImage, inspect, inspect_file};
    use proptest::prelude::*;

    fn check(image: &[u8]) -> Result<KernelImage, ImageError> {
        inspect(image, image.len() as u64)
    }

    fn xz_bzimage() -> Vec<u8> {
        bzimage(&compress("xz", &vmlinux(18)))
    }

    #[test]
    fn a_synthetic_vmlinux_and_bzimage_are_kernels() {
        assert_eq!(
            check(&vmlinux(18)).ok(),
            Some(KernelImage::Vmlinux {
                pvh_entry: LOAD + 0x200
            })
        );
        let image = xz_bzimage();
        assert!(
            matches!(
                check(&image),
                Ok(KernelImage::BzImage {
                    protocol: 0x020f,
                    compression: Compression::Xz,
                    unpacked_len: 0x400,
                    ..
                })
            ),
            "{:?}",
            check(&image)
        );
    }

    #[test]
    fn each_fault_is_named() {
        let faults: Vec<(Vec<u8>, &str)> = vec![
            (Vec::new(), "empty"),
            (b"#!/bin/sh\n".to_vec(), "neither"),
            (vmlinux(17), "without a PVH entry note"),
            (
                {
                    let mut e = vmlinux(18);
                    e[32..40].copy_from_slice(&(u64::MAX - 8).to_le_bytes());
                    e
                },
                "program header table",
            ),
            (
                {
                    let mut e = vmlinux(18);
                    // PT_NOTE's p_offset + p_filesz overflows u64.
                    e[120 + 8..120 + 16].copy_from_slice(&(u64::MAX - 3).to_le_bytes());
                    e
                },
                "segment 1",
            ),
            (
                {
                    let mut e = vmlinux(18);
                    e[18] = 0xb7; // aarch64
                    e
                },
                "not a 64-bit",
            ),
            (
                {
                    let mut b = xz_bzimage();
                    b.truncate(b.len() - 17);
                    b
                },
                "truncated",
            ),
            (
                {
                    let mut b = xz_bzimage();
                    b[0x206] = 0x04;
                    b
                },
                "boot protocol 2.04",
            ),
            (bzimage(b"not compressed at all"), "no known format"),
            (bzimage(b"\xfd7zXZ\0\0\0\0\0"), "unpacked size of 0"),
            (
                {
                    let mut b = xz_bzimage();
                    b[0x248..0x24c].copy_from_slice(&u32::MAX.to_le_bytes());
                    b
                },
                "lies outside its protected-mode kernel",
            ),
        ];
        for (image, words) in faults {
            let e = check(&image).map(|k| panic!("{words}: accepted as {k:?}"));
            let e = e.err().map(|e| e.to_string()).unwrap_or_default();
            assert!(e.contains(words), "{words}: {e}");
        }
    }

    #[test]
    fn files_are_read_in_pieces_and_give_the_same_answer() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("vmlinuz");
        std::fs::write(&path, xz_bzimage()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(inspect_file(&path).ok(), check(&xz_bzimage()).ok());
        assert!(matches!(
            inspect_file(&dir.path().join("none")),
            Err(ImageError::Io(_))
        ));
    }

    /// Writes `value`'s low `width` bytes at `at` (where it fits).
    fn poke(image: &mut [u8], at: usize, width: usize, value: u64) {
        let end = (at + width).min(image.len());
        if at < end {
            image[at..end].copy_from_slice(&value.to_le_bytes()[..end - at]);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4000))]

        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048), len in any::<u64>()) {
            let _ = check(&bytes);
            let _ = inspect(&bytes[..], len);
        }

        #[test]
        fn mutated_elf_headers_never_panic(at in 0usize..0x200, width in 1usize..=8, value in any::<u64>(), cut in 0usize..0x400) {
            let mut image = vmlinux(18);
            poke(&mut image, at, width, value);
            let _ = check(&image);
            let _ = check(&image[..cut.min(image.len())]);
        }

        #[test]
        fn mutated_bzimage_headers_never_panic(at in 0x1f0usize..0x270, width in 1usize..=4, value in any::<u64>(), cut in 0usize..0x1000) {
            let mut image = bzimage(b"\xfd7zXZ\0 pretend stream \x00\x04\0\0");
            poke(&mut image, at, width, value);
            let _ = check(&image);
            let _ = check(&image[..cut.min(image.len())]);
        }
    }
}
