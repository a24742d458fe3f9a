//! Choosing between KVM and TCG. KVM is only worth trying where the hardware-backed KVM module is
//! loaded: a paravirtual KVM (kvm_pvm, as on this project's build machines) exposes /dev/kvm but
//! stock distribution kernels hang at boot under it.

use std::fmt;
use std::path::Path;
use std::str::FromStr;

/// `--accel`: how QEMU executes the guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Accel {
    /// KVM where it can run stock kernels, TCG otherwise.
    #[default]
    Auto,
    /// Hardware virtualisation, forced.
    Kvm,
    /// Software emulation (multi-threaded TCG), forced.
    Tcg,
}

impl FromStr for Accel {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(Accel::Auto),
            "kvm" => Ok(Accel::Kvm),
            "tcg" => Ok(Accel::Tcg),
            other => Err(format!(
                "unknown accelerator `{other}`: use auto, kvm or tcg"
            )),
        }
    }
}

impl fmt::Display for Accel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Accel::Auto => "auto",
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        })
    }
}

impl Accel {
    /// Resolves `Auto` by probing this machine; returns the choice and why.
    pub fn resolve(self) -> (Accel, String) {
        match self {
            Accel::Kvm => (Accel::Kvm, "forced with --accel kvm".into()),
            Accel::Tcg => (Accel::Tcg, "forced with --accel tcg".into()),
            Accel::Auto => probe(Path::new("/dev/kvm"), Path::new("/sys/module")),
        }
    }
}

fn probe(dev: &Path, modules: &Path) -> (Accel, String) {
    let openable = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(dev)
        .is_ok();
    if !openable {
        return (Accel::Tcg, format!("{} cannot be opened", dev.display()));
    }
    let hw = ["kvm_intel", "kvm_amd"]
        .into_iter()
        .find(|m| modules.join(m).exists());
    match hw {
        Some(m) => (
            Accel::Kvm,
            format!("{} is usable and {m} is loaded", dev.display()),
        ),
        None if modules.join("kvm_pvm").exists() => (
            Accel::Tcg,
            "/dev/kvm is paravirtual (kvm_pvm), which stock kernels hang under".into(),
        ),
        None => (Accel::Tcg, "neither kvm_intel nor kvm_amd is loaded".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_prefers_hardware_kvm_and_refuses_pvm() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let dev = dir.path().join("kvm");
        std::fs::write(&dev, "")?;
        let modules = dir.path().join("module");
        std::fs::create_dir_all(modules.join("kvm_pvm"))?;
        assert_eq!(probe(&dev, &modules).0, Accel::Tcg);
        std::fs::create_dir_all(modules.join("kvm_intel"))?;
        assert_eq!(probe(&dev, &modules).0, Accel::Kvm);
        assert_eq!(probe(&dir.path().join("missing"), &modules).0, Accel::Tcg);
        assert_eq!("tcg".parse::<Accel>(), Ok(Accel::Tcg));
        assert!("hvf".parse::<Accel>().is_err());
        Ok(())
    }
}
