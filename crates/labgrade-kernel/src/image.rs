//! Is this file a kernel at all? A `local:` kernel is whatever path the user typed: a truncated
//! download, an initrd or a text file must be refused as *their* input error (exit 2, naming the
//! file), not booted into an infrastructure error.

/// What kind of bootable image a file's first bytes show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageKind {
    /// An x86 bzImage (boot protocol `HdrS` header), as distributions ship `vmlinuz`.
    BzImage,
    /// An uncompressed 64-bit ELF `vmlinux`.
    Elf64,
}

/// Bytes of a file's head [`image_kind`] reads.
pub const HEAD_LEN: usize = 0x400;

/// The kind of kernel image `head` (the first [`HEAD_LEN`] bytes, or fewer for a short file)
/// begins, or what is wrong with it, in words for the error message.
pub fn image_kind(head: &[u8], file_len: u64) -> Result<ImageKind, &'static str> {
    if head.is_empty() {
        return Err("the file is empty");
    }
    if head.starts_with(b"\x7fELF") {
        // ELFCLASS64, little endian, and the x86-64 machine type at offset 18.
        return match (head.get(4), head.get(5), head.get(18..20)) {
            (Some(2), Some(1), Some([0x3e, 0])) => Ok(ImageKind::Elf64),
            _ => Err("an ELF file, but not a 64-bit x86 one"),
        };
    }
    if head.get(0x202..0x206) != Some(b"HdrS") || head.get(0x1fe..0x200) != Some(&[0x55, 0xaa]) {
        return Err("neither an x86 bzImage (no `HdrS` boot header) nor an ELF vmlinux");
    }
    let setup_sects = u64::from(head.get(0x1f1).copied().unwrap_or(0)).max(4);
    let syssize = head.get(0x1f4..0x1f8).map_or(0, |b| {
        u64::from(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    });
    // The setup sectors and the protected-mode kernel (syssize counts 16-byte units) must be in
    // the file: a shorter one is a truncated copy.
    let needed = (setup_sects + 1) * 512 + syssize.saturating_mul(16);
    if file_len < needed {
        return Err("a bzImage, but truncated: shorter than its own header says");
    }
    Ok(ImageKind::BzImage)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn bzimage_head(setup_sects: u8, syssize: u32) -> Vec<u8> {
        let mut h = vec![0u8; HEAD_LEN];
        h[0x1f1] = setup_sects;
        h[0x1f4..0x1f8].copy_from_slice(&syssize.to_le_bytes());
        h[0x1fe] = 0x55;
        h[0x1ff] = 0xaa;
        h[0x202..0x206].copy_from_slice(b"HdrS");
        h
    }

    #[test]
    fn a_whole_bzimage_is_a_kernel_and_a_truncated_one_is_not() {
        let head = bzimage_head(27, 0x1000);
        let whole = 28 * 512 + 0x1000 * 16;
        assert_eq!(image_kind(&head, whole), Ok(ImageKind::BzImage));
        assert!(image_kind(&head, whole - 1).is_err_and(|e| e.contains("truncated")));
    }

    #[test]
    fn elf_text_and_empty_files_are_told_apart() {
        let mut elf = vec![0u8; 64];
        elf[..4].copy_from_slice(b"\x7fELF");
        elf[4] = 2;
        elf[5] = 1;
        elf[18] = 0x3e;
        assert_eq!(image_kind(&elf, 64), Ok(ImageKind::Elf64));
        elf[18] = 0xb7; // aarch64
        assert!(image_kind(&elf, 64).is_err());
        assert!(image_kind(b"#!/bin/sh\n", 10).is_err());
        assert_eq!(image_kind(b"", 0), Err("the file is empty"));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4000))]

        #[test]
        fn random_bytes_never_panic(head in proptest::collection::vec(any::<u8>(), 0..HEAD_LEN), len in any::<u64>()) {
            let _ = image_kind(&head, len);
        }

        #[test]
        fn hostile_headers_never_panic(setup in any::<u8>(), syssize in any::<u32>(), cut in 0..HEAD_LEN, len in any::<u64>()) {
            let head = bzimage_head(setup, syssize);
            let _ = image_kind(&head[..cut], len);
            let _ = image_kind(&head, len);
        }
    }
}
