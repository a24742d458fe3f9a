//! What this machine can do, for the test suites' build scripts: each suite's `build.rs` calls
//! [`emit`], so a test that cannot do its work here is compiled *ignored, with its reason* and
//! shows so in the test runner's own summary instead of passing without having run. CI (root,
//! everything installed) runs them all with `--run-ignored all`, and there a missing install
//! step fails the run. The labs suite also calls [`write_lab_tests`].
//!
//! cfgs: `labgrade_root` (the tests run as root), `labgrade_qemu` (qemu-system-x86_64 is
//! installed and the four kernels of the matrix are in the kernel cache), `labgrade_xfsprogs`
//! (mkfs.xfs is installed), `labgrade_vagrant` (root, with vagrant, virsh, debootstrap and
//! qemu-img installed: the offline box can be built and brought up), `labgrade_actionlint` and
//! `labgrade_nextest` (actionlint, cargo-nextest on PATH), `labgrade_docker` and
//! `labgrade_podman` (the engine's programs are installed).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// The kernels of the matrix, as the qemu tests name them.
const KERNELS: [&str; 4] = ["debian:5.10", "debian:6.1", "debian:6.12", "debian:7"];

/// Engine labs that also get a test per kernel: Lab 2 per engine per kernel. An engine lab under
/// TCG takes about two minutes (dockerd alone ~20-40 s to answer), so the scenario labs run per
/// kernel only through `labgrade matrix`, keeping a fresh CI run within its budget.
const ENGINE_LABS_ON_KERNELS: [&str; 1] = ["lab2-container-layers"];

/// Capabilities a lab can only have with real root (loop devices, trusted.* xattrs): without
/// root the host guest runs labs in a user namespace, and such labs skip there.
const ROOT_ONLY: [&str; 5] = ["trusted-xattr", "metacopy", "xfs", "xfs-v4", "ext4"];

fn on_path(binary: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|paths| {
        std::env::split_paths(&paths)
            .chain(["/usr/sbin".into(), "/sbin".into()])
            .any(|dir| {
                let p = dir.join(binary);
                println!("cargo::rerun-if-changed={}", p.display());
                p.is_file()
            })
    })
}

fn is_root() -> bool {
    // The build runs as the user who runs the tests; /proc says who that is without libc.
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|ids| ids.split_whitespace().nth(1).map(|e| e == "0"))
        })
        .unwrap_or(false)
}

fn missing_kernels() -> Vec<&'static str> {
    let cache = labgrade_kernel::KernelCache::default_location();
    println!(
        "cargo::rerun-if-changed={}",
        cache.root().join("index.toml").display()
    );
    let offline = labgrade_kernel::FetchOptions {
        mirror: None,
        offline: true,
    };
    KERNELS
        .into_iter()
        .filter(|k| {
            labgrade_kernel::KernelSource::from_str(k)
                .and_then(|source| cache.fetch(&source, &offline))
                .is_err()
        })
        .collect()
}

/// A lab file's id, whether it is pending, and what it needs.
struct LabFile {
    path: PathBuf,
    id: String,
    pending: bool,
    needs: Vec<String>,
    /// Container engines (`engines = [...]`): one test per engine, guest and kernel.
    engines: Vec<String>,
}

fn lab_files(labs: &Path) -> Vec<LabFile> {
    println!("cargo::rerun-if-changed={}", labs.display());
    let mut files: Vec<PathBuf> = std::fs::read_dir(labs)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().is_dir())
        .flat_map(|lesson| {
            std::fs::read_dir(lesson.path())
                .into_iter()
                .flatten()
                .flatten()
        })
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            // A lab file that does not parse still gets its test: the loader reports the error.
            let table: toml::Table = toml::from_str(&text).unwrap_or_default();
            let stem = path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            let id = stem
                .split_once('-')
                .filter(|(n, _)| n.bytes().all(|b| b.is_ascii_digit()))
                .map_or(stem.clone(), |(_, rest)| rest.to_owned());
            let strings = |key: &str| -> Vec<String> {
                table
                    .get(key)
                    .and_then(|n| n.as_array())
                    .map(|a| {
                        a.iter()
                            .filter_map(|v| v.as_str().map(str::to_owned))
                            .collect()
                    })
                    .unwrap_or_default()
            };
            LabFile {
                engines: strings("engines"),
                pending: table.contains_key("pending"),
                needs: table
                    .get("needs")
                    .and_then(|n| n.as_array())
                    .map(|a| {
                        a.iter()
                            .filter_map(|v| v.as_str().map(str::to_owned))
                            .collect()
                    })
                    .unwrap_or_default(),
                path,
                id,
            }
        })
        .collect()
}

/// What [`emit`] found: the reasons the suites' generated tests are ignored.
#[derive(Debug)]
pub struct Machine {
    root: bool,
    qemu_missing: Option<String>,
}

/// Prints the cfgs (and what to re-run on) for the build script calling it.
pub fn emit() -> Machine {
    println!("cargo::rustc-check-cfg=cfg(labgrade_root)");
    println!("cargo::rustc-check-cfg=cfg(labgrade_qemu)");
    println!("cargo::rustc-check-cfg=cfg(labgrade_xfsprogs)");
    println!("cargo::rustc-check-cfg=cfg(labgrade_vagrant)");
    println!("cargo::rustc-check-cfg=cfg(labgrade_actionlint)");
    println!("cargo::rustc-check-cfg=cfg(labgrade_nextest)");
    println!("cargo::rustc-check-cfg=cfg(labgrade_docker)");
    println!("cargo::rustc-check-cfg=cfg(labgrade_podman)");
    for var in ["LABGRADE_CACHE_DIR", "XDG_CACHE_HOME", "HOME", "PATH"] {
        println!("cargo::rerun-if-env-changed={var}");
    }
    let root = is_root();
    if root {
        println!("cargo::rustc-cfg=labgrade_root");
    }
    let qemu_missing = if !on_path("qemu-system-x86_64") {
        Some("qemu-system-x86_64 is not installed (apt-get install qemu-system-x86)".to_owned())
    } else {
        let missing = missing_kernels();
        (!missing.is_empty()).then(|| {
            format!(
                "kernels not in the cache: {} (labgrade kernel fetch {})",
                missing.join(", "),
                missing.join(" ")
            )
        })
    };
    if qemu_missing.is_none() {
        println!("cargo::rustc-cfg=labgrade_qemu");
    }
    if on_path("mkfs.xfs") {
        println!("cargo::rustc-cfg=labgrade_xfsprogs");
    }
    // ---- vagrant guests: tests/vagrant.rs (vagrant/build-box needs root and debootstrap) ----
    if root
        && ["vagrant", "virsh", "debootstrap", "qemu-img"]
            .iter()
            .all(|b| on_path(b))
    {
        println!("cargo::rustc-cfg=labgrade_vagrant");
    }
    // tests/ci.rs: the workflow linter and the partition proof.
    if on_path("actionlint") {
        println!("cargo::rustc-cfg=labgrade_actionlint");
    }
    if on_path("cargo-nextest") {
        println!("cargo::rustc-cfg=labgrade_nextest");
    }
    // ---- end vagrant guests ----
    for engine in ["docker", "podman"] {
        if engine_missing(engine).is_none() {
            println!("cargo::rustc-cfg=labgrade_{engine}");
        }
    }

    Machine { root, qemu_missing }
}

/// Why `engine` cannot start here (its programs are missing), or `None`.
fn engine_missing(engine: &str) -> Option<String> {
    let (programs, package): (&[&str], &str) = match engine {
        "docker" => (&["dockerd", "docker", "containerd", "runc"], "docker.io"),
        "podman" => (&["podman", "conmon", "runc"], "podman runc"),
        _ => return Some(format!("unknown engine {engine}")),
    };
    let missing: Vec<&str> = programs.iter().copied().filter(|p| !on_path(p)).collect();
    (!missing.is_empty()).then(|| {
        format!(
            "{engine} is not installed ({} missing; apt-get install {package})",
            missing.join(", ")
        )
    })
}

/// Writes `$OUT_DIR/lab_tests.rs`: one test per lab file under `labs` that is not pending, on
/// the host and (with rstest) on each kernel, per engine for engine labs, each ignored where
/// `machine` cannot run it. The labs suite `include!`s it.
pub fn write_lab_tests(machine: &Machine, labs: &Path) {
    let Machine { root, qemu_missing } = machine;
    let root = *root;
    let mut out = String::new();
    for lab in lab_files(labs) {
        if lab.pending {
            // Nothing to run: `labgrade list` and the CLI tests show its pending reason.
            continue;
        }
        let name = lab.id.replace(|c: char| !c.is_ascii_alphanumeric(), "_");
        // Relative to the workspace root, which the labs suite finds at run time: an archive
        // of the tests runs from another checkout.
        let path = labs
            .parent()
            .and_then(|root| lab.path.strip_prefix(root).ok())
            .unwrap_or(&lab.path)
            .display()
            .to_string();
        let host_ignore = if root {
            String::new()
        } else {
            match lab.needs.iter().find(|n| ROOT_ONLY.contains(&n.as_str())) {
                Some(need) => format!(
                    "#[ignore = \"needs real root: the lab needs {need}, which a user namespace cannot have\"]\n"
                ),
                None => String::new(),
            }
        };
        let qemu_ignore = qemu_missing
            .as_ref()
            .map(|why| format!("#[ignore = {why:?}]\n"))
            .unwrap_or_default();
        let kernels = KERNELS.map(|k| format!("{k:?}")).join(", ");
        if !lab.engines.is_empty() {
            for engine in &lab.engines {
                let engine_ignore = match (engine_missing(engine), root) {
                    (Some(why), _) => format!("#[ignore = {why:?}]\n"),
                    (None, false) => "#[ignore = \"container engines need real root\"]\n".into(),
                    (None, true) => String::new(),
                };
                let qemu_ignore = if engine_ignore.is_empty() {
                    qemu_ignore.clone()
                } else {
                    engine_ignore.clone()
                };
                let e = engine.replace(|c: char| !c.is_ascii_alphanumeric(), "_");
                let _ = write!(
                    out,
                    "#[test]\n{engine_ignore}fn {name}_at_{e}_on_host() {{\n    \
                     engine_lab_on_host({path:?}, {engine:?});\n}}\n\n"
                );
                if ENGINE_LABS_ON_KERNELS.contains(&lab.id.as_str()) {
                    let _ = write!(
                        out,
                        "#[rstest::rstest]\n{qemu_ignore}fn {name}_at_{e}_on_kernel(\n    \
                         #[values({kernels})] kernel: &str,\n) {{\n    \
                         engine_lab_on_kernel({path:?}, {engine:?}, kernel);\n}}\n\n"
                    );
                }
            }
            continue;
        }
        let _ = write!(
            out,
            "#[test]\n{host_ignore}fn {name}_on_host() {{\n    lab_on_host({path:?});\n}}\n\n\
             #[rstest::rstest]\n{qemu_ignore}fn {name}_on_kernel(\n    \
             #[values({kernels})] kernel: &str,\n) {{\n    \
             lab_on_kernel({path:?}, kernel);\n}}\n\n"
        );
    }
    let dest = PathBuf::from(std::env::var_os("OUT_DIR").unwrap_or_default()).join("lab_tests.rs");
    if let Err(e) = std::fs::write(&dest, out) {
        println!("cargo::warning=cannot write {}: {e}", dest.display());
    }
}
