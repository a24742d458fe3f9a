//! Facts about paths, read inside the guest and sent back as data; the runner decides what they
//! mean.

use std::fs;
use std::io::ErrorKind;
use std::path::Path;

use labgrade_proto::EntryKind;
use labgrade_snap::{DigestCache, SnapError};

use labgrade_proto::{PathFacts, TEXT_LIMIT};

/// Reads one path relative to `lab`, and its content as text if `with_text`.
pub(crate) fn inspect(
    lab: &Path,
    rel: &str,
    with_text: bool,
    digests: &mut DigestCache,
) -> PathFacts {
    let full = lab.join(rel);
    let mut facts = PathFacts {
        path: rel.to_owned(),
        entry: None,
        text: None,
        children: None,
        error: None,
    };
    match labgrade_snap::read_entry(&full, rel, digests) {
        Ok(entry) => {
            if with_text
                && entry.kind == EntryKind::File
                && entry.size.is_some_and(|s| s <= TEXT_LIMIT)
            {
                match fs::read(&full) {
                    Ok(bytes) => facts.text = Some(String::from_utf8_lossy(&bytes).into_owned()),
                    Err(e) => facts.error = Some(format!("cannot read {rel}: {e}")),
                }
            }
            if entry.kind == EntryKind::Dir {
                match fs::read_dir(&full) {
                    Ok(rd) => {
                        let mut names: Vec<String> = rd
                            .filter_map(Result::ok)
                            .map(|d| d.file_name().to_string_lossy().into_owned())
                            .collect();
                        names.sort();
                        facts.children = Some(names);
                    }
                    Err(e) => facts.error = Some(format!("cannot list {rel}: {e}")),
                }
            }
            facts.entry = Some(entry);
        }
        Err(SnapError::Io { source, .. })
            if matches!(
                source.kind(),
                ErrorKind::NotFound | ErrorKind::NotADirectory
            ) => {}
        Err(e) => facts.error = Some(e.to_string()),
    }
    facts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_travels_only_when_asked_for() -> std::io::Result<()> {
        let lab = tempfile::tempdir()?;
        fs::write(lab.path().join("f"), "hello\n")?;
        let mut digests = DigestCache::default();
        let bare = inspect(lab.path(), "f", false, &mut digests);
        assert_eq!(bare.text, None);
        assert!(
            bare.entry.is_some_and(|e| e.sha256.is_some()),
            "the digest is always read"
        );
        let read = inspect(lab.path(), "f", true, &mut digests);
        assert_eq!(read.text.as_deref(), Some("hello\n"));
        Ok(())
    }
}
