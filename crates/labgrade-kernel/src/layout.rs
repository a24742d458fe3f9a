//! Where the kernel image and modules are in an unpacked package tree. Debian has two layouts:
//! up to 6.12 one `linux-image-RELEASE` holds `boot/vmlinuz-RELEASE` and `lib/modules/RELEASE/`;
//! from 7.x `linux-binary-RELEASE` holds `usr/lib/modules/RELEASE/vmlinuz`, `linux-modules-RELEASE`
//! the modules and `linux-base-RELEASE` modules.builtin beside them, all under `usr/lib/modules`.

use std::path::{Path, PathBuf};

/// Where modules directories live, usr-merged first.
const MODULE_ROOTS: &[&str] = &["usr/lib/modules", "lib/modules"];

/// A kernel found in an unpacked tree; paths relative to the tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Layout {
    /// `uname -r`: the modules directory's name.
    pub(crate) release: String,
    /// The kernel image.
    pub(crate) vmlinuz: PathBuf,
    /// The `…/modules/<release>` directory.
    pub(crate) modules_dir: PathBuf,
}

/// Finds the kernel in `tree`. With `release`, that one; else the only one there is.
pub(crate) fn find(tree: &Path, release: Option<&str>) -> Result<Layout, String> {
    let release = match release {
        Some(r) => r.to_owned(),
        None => only_release(tree)?,
    };
    let modules: Vec<PathBuf> = MODULE_ROOTS
        .iter()
        .map(|root| Path::new(root).join(&release))
        .filter(|rel| tree.join(rel).is_dir())
        .collect();
    // Some packages may put a stray file under the other root: take the one with the modules.
    let modules_dir = modules
        .iter()
        .find(|rel| tree.join(rel).join("kernel").is_dir())
        .or_else(|| modules.first())
        .cloned()
        .ok_or_else(|| {
            format!("no lib/modules/{release} or usr/lib/modules/{release} directory in it")
        })?;
    let mut images = vec![Path::new("boot").join(format!("vmlinuz-{release}"))];
    images.extend(
        MODULE_ROOTS
            .iter()
            .map(|root| Path::new(root).join(&release).join("vmlinuz")),
    );
    let vmlinuz = images
        .into_iter()
        .find(|rel| tree.join(rel).is_file())
        .ok_or_else(|| {
            format!(
                "no kernel image (boot/vmlinuz-{release} or usr/lib/modules/{release}/vmlinuz); \
                 from 7.x on the image is in the linux-binary-{release} package"
            )
        })?;
    let full = tree.join(&modules_dir);
    if !full.join("kernel").is_dir() {
        return Err(format!(
            "{} has no kernel/ directory of modules; from 7.x they are in the \
             linux-modules-{release} package",
            modules_dir.display()
        ));
    }
    if !full.join("modules.builtin").is_file() {
        return Err(format!(
            "{} has no modules.builtin; from 7.x it is in the linux-base-{release} package",
            modules_dir.display()
        ));
    }
    Ok(Layout {
        release,
        vmlinuz,
        modules_dir,
    })
}

/// The one release under the tree's modules roots.
fn only_release(tree: &Path) -> Result<String, String> {
    let mut releases: Vec<String> = MODULE_ROOTS
        .iter()
        .filter_map(|root| std::fs::read_dir(tree.join(root)).ok())
        .flatten()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    releases.sort();
    releases.dedup();
    match &releases[..] {
        [one] => Ok(one.clone()),
        [] => Err("no lib/modules/RELEASE or usr/lib/modules/RELEASE directory in it".into()),
        many => Err(format!("it holds several kernels: {}", many.join(", "))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::test_support::touch;

    fn tempdir() -> tempfile::TempDir {
        tempfile::tempdir().expect("tempdir")
    }

    #[test]
    fn classic_layout_up_to_6_12() {
        let t = tempdir();
        let rel = "6.1.0-50-amd64";
        touch(t.path(), &format!("boot/vmlinuz-{rel}"));
        touch(t.path(), &format!("boot/System.map-{rel}"));
        touch(t.path(), &format!("lib/modules/{rel}/modules.builtin"));
        touch(
            t.path(),
            &format!("lib/modules/{rel}/kernel/fs/overlayfs/overlay.ko"),
        );
        let want = Layout {
            release: rel.into(),
            vmlinuz: format!("boot/vmlinuz-{rel}").into(),
            modules_dir: format!("lib/modules/{rel}").into(),
        };
        assert_eq!(find(t.path(), Some(rel)), Ok(want.clone()));
        assert_eq!(find(t.path(), None), Ok(want));
    }

    #[test]
    fn split_usr_lib_layout_from_7() {
        let t = tempdir();
        let rel = "7.2.13+deb14-amd64";
        let dir = format!("usr/lib/modules/{rel}");
        touch(t.path(), &format!("{dir}/vmlinuz"));
        touch(t.path(), &format!("{dir}/modules.builtin"));
        touch(
            t.path(),
            &format!("{dir}/kernel/fs/overlayfs/overlay.ko.xz"),
        );
        touch(t.path(), "usr/share/doc/linux-base/changelog.gz");
        let want = Layout {
            release: rel.into(),
            vmlinuz: format!("{dir}/vmlinuz").into(),
            modules_dir: dir.clone().into(),
        };
        assert_eq!(find(t.path(), None), Ok(want.clone()));
        assert_eq!(find(t.path(), Some(rel)), Ok(want));
    }

    #[test]
    fn missing_parts_are_named() {
        let t = tempdir();
        let rel = "7.2.13+deb14-amd64";
        let dir = format!("usr/lib/modules/{rel}");
        // linux-binary only
        touch(t.path(), &format!("{dir}/vmlinuz"));
        let e = find(t.path(), None).expect_err("no modules");
        assert!(e.contains("linux-modules-7.2.13+deb14-amd64"), "{e}");
        touch(t.path(), &format!("{dir}/kernel/a.ko.zst"));
        let e = find(t.path(), None).expect_err("no modules.builtin");
        assert!(e.contains("linux-base-7.2.13+deb14-amd64"), "{e}");
        touch(t.path(), &format!("{dir}/modules.builtin"));
        assert!(find(t.path(), None).is_ok());

        let t = tempdir();
        touch(t.path(), &format!("{dir}/kernel/a.ko.zst"));
        let e = find(t.path(), None).expect_err("no image");
        assert!(e.contains("linux-binary-7.2.13+deb14-amd64"), "{e}");
        let e = find(t.path(), Some("6.1.0-1-amd64")).expect_err("other release");
        assert!(e.contains("no lib/modules/6.1.0-1-amd64"), "{e}");

        let t = tempdir();
        assert!(find(t.path(), None).is_err());
        touch(t.path(), "lib/modules/6.1.0-1-amd64/modules.builtin");
        touch(t.path(), "lib/modules/6.1.0-2-amd64/modules.builtin");
        let e = find(t.path(), None).expect_err("two kernels");
        assert!(e.contains("6.1.0-1-amd64, 6.1.0-2-amd64"), "{e}");
    }
}
