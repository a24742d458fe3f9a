//! The image QEMU is given. QEMU starts an ELF `vmlinux` that carries a PVH entry note directly in
//! 64-bit mode, skipping the real-mode setup and, above all, the kernel's own decompression,
//! which under TCG costs seconds (Debian compresses 5.10 and 6.1 with xz). The payload is taken
//! from the validated bzImage, decompressed once on the host (output bounded by the size the
//! payload declares), checked by the same validator, and cached.

use std::fs;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::image::{Compression, ImageError, KernelImage, inspect_file};

/// What QEMU boots, prepared and validated before any QEMU process starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BootImage {
    /// A validated ELF vmlinux with a PVH entry (the unpacked, cached payload, or the image
    /// itself when it was one).
    Pvh(PathBuf),
    /// The validated bzImage itself: its vmlinux has no PVH entry, or no tool here unpacks it.
    BzImage(PathBuf),
}

impl BootImage {
    /// The file to pass to QEMU's `-kernel`.
    pub fn path(&self) -> &Path {
        match self {
            BootImage::Pvh(p) | BootImage::BzImage(p) => p,
        }
    }
}

/// The image to boot for `vmlinuz` (of kernel `release`): an unpacked vmlinux is cached under
/// `cache_dir`, keyed by the image's size and head so a cache hit reads 64 KiB of it.
pub fn boot_image(
    vmlinuz: &Path,
    release: &str,
    cache_dir: &Path,
) -> Result<BootImage, ImageError> {
    let (payload, compression, unpacked_len) = match inspect_file(vmlinuz)? {
        KernelImage::Vmlinux { .. } => return Ok(BootImage::Pvh(vmlinuz.to_path_buf())),
        KernelImage::BzImage {
            payload,
            compression,
            unpacked_len,
            ..
        } => (payload, compression, unpacked_len),
    };
    let mut file = fs::File::open(vmlinuz).map_err(ImageError::Io)?;
    let len = file.metadata().map_err(ImageError::Io)?.len();
    let mut head = Vec::new();
    (&mut file)
        .take(1 << 16)
        .read_to_end(&mut head)
        .map_err(ImageError::Io)?;
    let key = len ^ u64::from(fnv1a(&head));
    let path = cache_dir.join(format!("vmlinux-{release}-{key:016x}"));
    // A kernel without a PVH entry is remembered as such: unpacking it costs seconds.
    let no_pvh = cache_dir.join(format!("vmlinux-{release}-{key:016x}.no-pvh"));
    if path.is_file() {
        if matches!(inspect_file(&path), Ok(KernelImage::Vmlinux { .. })) {
            return Ok(BootImage::Pvh(path));
        }
        tracing::warn!(path = %path.display(), "cached vmlinux is damaged; unpacking again");
        let _ = fs::remove_file(&path);
    }
    if no_pvh.exists() {
        return Ok(BootImage::BzImage(vmlinuz.to_path_buf()));
    }
    // Decompressors stop at the end of their stream; the size the build appended after it
    // would be trailing garbage to all but gzip, whose stream ends with it.
    let stream_len = (payload.end - payload.start)
        - if compression.size_is_in_stream() {
            0
        } else {
            4
        };
    file.seek(SeekFrom::Start(payload.start))
        .map_err(ImageError::Io)?;
    let Some(elf) = decompress(compression, file.take(stream_len), unpacked_len)? else {
        return Ok(BootImage::BzImage(vmlinuz.to_path_buf()));
    };
    let unpacked = |inner| ImageError::BadUnpacked {
        compression,
        inner: Box::new(inner),
    };
    match crate::image::inspect(&elf[..], elf.len() as u64) {
        Ok(KernelImage::Vmlinux { .. }) => {}
        Ok(KernelImage::BzImage { .. }) => return Err(unpacked(ImageError::Unrecognised)),
        Err(ImageError::NoPvhNote) => {
            tracing::debug!(%release, "vmlinux has no PVH note; booting the bzImage");
            let _ = fs::create_dir_all(cache_dir).and_then(|()| fs::write(&no_pvh, ""));
            return Ok(BootImage::BzImage(vmlinuz.to_path_buf()));
        }
        Err(e) => return Err(unpacked(e)),
    }
    // The vmlinux was valid: a cache that cannot be written costs this boot nothing.
    match fs::create_dir_all(cache_dir)
        .map_err(|e| e.to_string())
        .and_then(|()| labgrade_fs::write_atomically(&path, &elf).map_err(|e| e.to_string()))
    {
        Ok(()) => Ok(BootImage::Pvh(path)),
        Err(e) => {
            tracing::warn!(path = %path.display(), %e, "cannot cache the vmlinux; booting the bzImage");
            Ok(BootImage::BzImage(vmlinuz.to_path_buf()))
        }
    }
}

fn fnv1a(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5u32, |h, b| {
        (h ^ u32::from(*b)).wrapping_mul(0x0100_0193)
    })
}

/// `stream` decompressed, exactly `unpacked_len` bytes of it, or why not; `None` when the tool
/// is not installed (the bzImage then boots as it is, decompressing itself).
fn decompress(
    compression: Compression,
    mut stream: impl Read + Send + 'static,
    unpacked_len: u64,
) -> Result<Option<Vec<u8>>, ImageError> {
    let tool = compression.tool();
    let corrupt = |why: String| ImageError::CorruptPayload { compression, why };
    let mut child = match Command::new(tool)
        .args(["-d", "-c"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            tracing::warn!(
                %tool,
                "{tool} is not installed: the kernel boots compressed, which is slower"
            );
            return Ok(None);
        }
        Err(e) => return Err(corrupt(format!("cannot run {tool}: {e}"))),
    };
    let (Some(mut stdin), Some(stdout), Some(mut stderr)) =
        (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        return Err(corrupt(format!("cannot talk to {tool}")));
    };
    let writer = std::thread::spawn(move || {
        // A tool that stops reading (a corrupt stream) ends this copy with a broken pipe; its
        // exit status says what happened.
        let _ = std::io::copy(&mut stream, &mut stdin);
    });
    let errors = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = (&mut stderr).take(4096).read_to_string(&mut text);
        text
    });
    let mut out = Vec::new();
    let read = stdout.take(unpacked_len + 1).read_to_end(&mut out);
    let too_long = out.len() as u64 > unpacked_len;
    if too_long {
        let _ = child.kill();
    }
    let status = child.wait();
    let _ = writer.join();
    let stderr = errors.join().unwrap_or_default();
    read.map_err(|e| corrupt(format!("cannot read {tool}'s output: {e}")))?;
    if too_long {
        return Err(corrupt(format!(
            "it unpacks to more than the {unpacked_len} bytes it declares"
        )));
    }
    let status = status.map_err(|e| corrupt(format!("{tool} vanished: {e}")))?;
    if !status.success() {
        return Err(corrupt(format!("{tool} -d says: {}", stderr.trim())));
    }
    if out.len() as u64 != unpacked_len {
        return Err(corrupt(format!(
            "it unpacks to {} bytes, not the {unpacked_len} it declares",
            out.len()
        )));
    }
    Ok(Some(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::synthetic::{bzimage, compress, vmlinux};

    fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
        let path = dir.join(name);
        fs::write(&path, bytes).unwrap_or_else(|e| panic!("{e}"));
        path
    }

    #[test]
    fn a_bzimage_unpacks_once_into_a_cached_vmlinux() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let cache = dir.path().join("cache");
        for tool in ["gzip", "xz"] {
            let image = write(dir.path(), tool, &bzimage(&compress(tool, &vmlinux(18))));
            let booted = boot_image(&image, tool, &cache).unwrap_or_else(|e| panic!("{tool}: {e}"));
            let BootImage::Pvh(path) = &booted else {
                panic!("{tool}: {booted:?}");
            };
            assert_eq!(fs::read(path).ok(), Some(vmlinux(18)));
            // The second time comes from the cache.
            assert_eq!(boot_image(&image, tool, &cache).ok(), Some(booted.clone()));
        }
    }

    #[test]
    fn no_pvh_note_boots_the_bzimage_and_is_remembered() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let cache = dir.path().join("cache");
        let image = write(dir.path(), "v", &bzimage(&compress("xz", &vmlinux(17))));
        for _ in 0..2 {
            assert_eq!(
                boot_image(&image, "r", &cache).ok(),
                Some(BootImage::BzImage(image.clone()))
            );
        }
        let markers = fs::read_dir(&cache).map_or(0, |d| d.count());
        assert_eq!(markers, 1);
        // A vmlinux given directly is booted as it is.
        let elf = write(dir.path(), "vmlinux", &vmlinux(18));
        assert_eq!(
            boot_image(&elf, "r", &cache).ok(),
            Some(BootImage::Pvh(elf.clone()))
        );
    }

    #[test]
    fn a_payload_that_does_not_unpack_is_an_error_naming_the_compressor() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let cache = dir.path().join("cache");
        let mut garbage = b"\xfd7zXZ\0".to_vec();
        garbage.extend((0..200u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8));
        garbage.extend_from_slice(&0x400u32.to_le_bytes());
        let image = write(dir.path(), "garbage", &bzimage(&garbage));
        let e = boot_image(&image, "r", &cache).map(|b| panic!("booted {b:?}"));
        let e = e.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(e.contains("xz payload is corrupt"), "{e}");
        // A stream longer than it declares is cut off, not read whole.
        let mut long = compress("gzip", &vec![0u8; 1 << 20]);
        let n = long.len();
        long[n - 4..].copy_from_slice(&16u32.to_le_bytes());
        let image = write(dir.path(), "long", &bzimage(&long));
        let e = boot_image(&image, "r", &cache).map(|b| panic!("booted {b:?}"));
        let e = e.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(e.contains("more than the 16 bytes"), "{e}");
        // A payload that unpacks to something else than a vmlinux.
        let image = write(dir.path(), "text", &bzimage(&compress("gzip", b"hello")));
        let e = boot_image(&image, "r", &cache).map(|b| panic!("booted {b:?}"));
        let e = e.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(e.contains("unpacks to a bad vmlinux"), "{e}");
    }
}
