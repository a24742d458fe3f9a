//! An uncompressed kernel for PVH boot. QEMU starts an ELF `vmlinux` that carries a PVH entry note
//! directly in 64-bit mode, skipping the real-mode setup and, above all, the kernel's own
//! decompression, which under TCG costs seconds (Debian compresses 5.10 and 6.1 with xz). The
//! payload is taken from the bzImage as the boot protocol describes it and decompressed once on
//! the host, into the cache.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::elf::has_pvh_note;

/// The vmlinux for `vmlinuz`, cached under `cache_dir`; `None` when the image cannot be unpacked
/// or lacks a PVH entry (then the bzImage boots as it is).
pub(crate) fn vmlinux_for(vmlinuz: &Path, release: &str, cache_dir: &Path) -> Option<PathBuf> {
    // Keyed by the image's size and head, so a cache hit (every boot but the first) reads 64 KiB
    // of it, not all of it.
    let mut head = Vec::new();
    let len = fs::File::open(vmlinuz)
        .and_then(|f| {
            let len = f.metadata()?.len();
            f.take(1 << 16).read_to_end(&mut head)?;
            Ok(len)
        })
        .ok()?;
    let key = len ^ u64::from(crc_like(&head));
    let path = cache_dir.join(format!("vmlinux-{release}-{key:016x}"));
    // A kernel without a PVH entry is remembered as such: unpacking it costs seconds.
    let no_pvh = cache_dir.join(format!("vmlinux-{release}-{key:016x}.no-pvh"));
    if path.is_file() {
        return Some(path);
    }
    if no_pvh.exists() {
        return None;
    }
    let image = fs::read(vmlinuz).ok()?;
    let (tool, payload) = payload(&image)?;
    let elf = decompress(tool, payload)?;
    if !has_pvh_note(&elf) {
        tracing::debug!(%release, "vmlinux has no PVH note; booting the bzImage");
        let _ = fs::create_dir_all(cache_dir).and_then(|()| fs::write(&no_pvh, ""));
        return None;
    }
    fs::create_dir_all(cache_dir).ok()?;
    labgrade_fs::write_atomically(&path, &elf).ok()?;
    Some(path)
}

fn crc_like(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5u32, |h, b| {
        (h ^ u32::from(*b)).wrapping_mul(0x0100_0193)
    })
}

fn le32(b: &[u8], at: usize) -> Option<usize> {
    let s = b.get(at..at.checked_add(4)?)?;
    usize::try_from(u32::from_le_bytes([s[0], s[1], s[2], s[3]])).ok()
}

/// The compressed payload of a bzImage (boot protocol 2.08+): after the setup sectors, at
/// `payload_offset`, `payload_length` bytes long; its compressor told by its magic.
fn payload(image: &[u8]) -> Option<(&'static str, &[u8])> {
    if image.get(0x202..0x206) != Some(b"HdrS") {
        return None;
    }
    let setup_sects = usize::from(*image.get(0x1f1)?).max(4);
    let start = ((setup_sects + 1) * 512).checked_add(le32(image, 0x248)?)?;
    let payload = image.get(start..start.checked_add(le32(image, 0x24c)?)?)?;
    let tool = if payload.starts_with(b"\xfd7zXZ\0") {
        "xz"
    } else if payload.starts_with(b"\x28\xb5\x2f\xfd") {
        "zstd"
    } else if payload.starts_with(b"\x1f\x8b") {
        "gzip"
    } else {
        return None;
    };
    Some((tool, payload))
}

fn decompress(tool: &str, data: &[u8]) -> Option<Vec<u8>> {
    use std::io::Write;
    let mut child = Command::new(tool)
        .args(["-d", "-c"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let mut stdin = child.stdin.take()?;
    let input = data.to_vec();
    let writer = std::thread::spawn(move || {
        // The payload may carry trailing bytes (the appended size): decompressors stop at the
        // end of the stream, so a write error here is not a failure.
        let _ = stdin.write_all(&input);
    });
    let out = child.wait_with_output().ok()?;
    let _ = writer.join();
    (out.stdout.get(..4) == Some(b"\x7fELF")).then_some(out.stdout)
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(3000))]

        #[test]
        fn hostile_bzimage_headers_never_panic(
            setup in proptest::prelude::any::<u8>(),
            offset in proptest::prelude::any::<u32>(),
            len in proptest::prelude::any::<u32>(),
            size in 0usize..0x1000,
        ) {
            let mut image = vec![0u8; size.max(0x250)];
            image[0x202..0x206].copy_from_slice(b"HdrS");
            image[0x1f1] = setup;
            image[0x248..0x24c].copy_from_slice(&offset.to_le_bytes());
            image[0x24c..0x250].copy_from_slice(&len.to_le_bytes());
            let _ = payload(&image);
            let _ = payload(&image[..size.min(image.len())]);
        }
    }

    #[test]
    fn not_a_bzimage_is_left_alone() {
        assert!(payload(b"not a kernel").is_none());
        assert!(!has_pvh_note(b"\x7fELF"));
    }
}
