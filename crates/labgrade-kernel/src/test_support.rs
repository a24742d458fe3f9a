//! Helpers for this crate's unit tests.

use std::path::Path;

/// Creates `root/rel` (and its parents) holding one byte: enough to stand for a kernel file.
pub(crate) fn touch(root: &Path, rel: &str) {
    let path = root.join(rel);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).expect("mkdir");
    }
    std::fs::write(path, b"x").expect("write");
}
