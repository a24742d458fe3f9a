//! Kernels from local files (`local:VMLINUZ:MODULES`), checked, never copied.

use super::*;

/// A local kernel: checked, never copied.
pub(super) fn local(name: &str, vmlinuz: &Path, modules: &Path) -> Result<Kernel, KernelError> {
    let bad = |path: &Path, why: &str| KernelError::Local {
        path: path.to_path_buf(),
        why: why.to_owned(),
    };
    if !vmlinuz.is_file() {
        return Err(bad(
            vmlinuz,
            "no such file; give the kernel image, e.g. /boot/vmlinuz-RELEASE",
        ));
    }
    if let Err(why) = crate::image::inspect_file(vmlinuz) {
        return Err(bad(
            vmlinuz,
            &format!(
                "not a kernel image: {why}; give the kernel image, e.g. /boot/vmlinuz-RELEASE"
            ),
        ));
    }
    if !modules.is_dir() {
        return Err(bad(
            modules,
            "no such directory; give the modules directory, e.g. /lib/modules/RELEASE",
        ));
    }
    let is_modules_dir = ["modules.dep", "modules.builtin", "modules.order"]
        .iter()
        .any(|f| modules.join(f).is_file());
    if !is_modules_dir {
        return Err(bad(
            modules,
            "not a kernel's modules directory: it has no modules.dep or modules.builtin \
             (give lib/modules/RELEASE itself, not lib/modules)",
        ));
    }
    let absolute = |p: &Path| std::fs::canonicalize(p).map_err(KernelError::io("resolve", p));
    let modules_dir = absolute(modules)?;
    let release = modules_dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    Ok(Kernel {
        name: name.to_owned(),
        release,
        package_version: None,
        vmlinuz: absolute(vmlinuz)?,
        modules_dir,
    })
}
