//! Lab 2's claim, checked: a container's `GraphDriver.Data` (what `docker inspect` shows) names
//! exactly the directories of the container's root overlay mount (what its mount table shows),
//! and the image's layers are the container's lower layers, in order.
//!
//! Run inside a lab's session as `"$LABGRADE" __container-layers CONTAINER [--image IMAGE]`
//! (`$ENGINE` names the engine's client). It prints one fact per line and exits 0 when they all
//! agree, 1 when one does not, 2 when it cannot find out. Docker's containerd image store (the
//! default of fresh installs since Docker 29) leaves `GraphDriver.Data` empty: that is detected,
//! printed as a fact (the lesson's Lab 2 does not hold there), and the layers are read from the
//! container's overlay mount instead. The parsing and judging are pure and tested on real
//! `inspect` output.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

/// The directories of an overlay mount (or of `GraphDriver.Data`), lower layers topmost first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OverlayDirs {
    /// `lowerdir` / `LowerDir`, split at `:`, topmost first.
    pub lower: Vec<String>,
    /// `upperdir` / `UpperDir`.
    pub upper: String,
    /// `workdir` / `WorkDir`.
    pub work: String,
}

/// What an object's `inspect` says about its storage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GraphDriver {
    /// A graph driver (overlay2, podman's overlay) with its directories.
    Dirs {
        /// The driver's name.
        name: String,
        /// Its directories (`LowerDir` may be absent: a one-layer image has none).
        dirs: OverlayDirs,
    },
    /// `GraphDriver.Data` is empty or missing: Docker's containerd image store, whose
    /// snapshotter keeps the layers (the lesson's `jq .GraphDriver.Data...` prints null).
    Empty {
        /// The name given, if any (`overlayfs` under the containerd store).
        name: Option<String>,
    },
}

/// Reads `GraphDriver` from `docker inspect` / `podman inspect` output (a JSON array of one
/// object, or the object itself).
pub fn graph_driver(inspect: &str) -> Result<GraphDriver, String> {
    let v: Value =
        serde_json::from_str(inspect).map_err(|e| format!("inspect output is not JSON: {e}"))?;
    let obj = match &v {
        Value::Array(items) => items
            .first()
            .ok_or("inspect printed an empty list: no such object")?,
        other => other,
    };
    let gd = obj.get("GraphDriver");
    let name = gd
        .and_then(|g| g.get("Name"))
        .and_then(Value::as_str)
        .map(str::to_owned);
    let data = gd.and_then(|g| g.get("Data")).and_then(Value::as_object);
    let field = |k: &str| {
        data.and_then(|d| d.get(k))
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    };
    match (field("UpperDir"), field("WorkDir")) {
        (Some(upper), Some(work)) => Ok(GraphDriver::Dirs {
            name: name.unwrap_or_default(),
            dirs: OverlayDirs {
                lower: field("LowerDir")
                    .map(|l| l.split(':').map(str::to_owned).collect())
                    .unwrap_or_default(),
                upper,
                work,
            },
        }),
        _ => Ok(GraphDriver::Empty { name }),
    }
}

/// The container's root (`/`) overlay mount in its `mountinfo`, if it has one.
pub fn root_overlay(mountinfo: &str) -> Option<OverlayDirs> {
    let root = crate::sandbox::mounts_under(mountinfo, "/")
        .into_iter()
        .rfind(|m| m.mount_point.is_empty() && m.fstype == "overlay")?;
    let opt = |k: &str| {
        root.super_options
            .iter()
            .rev()
            .find_map(|o| o.strip_prefix(k).map(str::to_owned))
    };
    Some(OverlayDirs {
        lower: split_lowerdir(&opt("lowerdir=")?),
        upper: opt("upperdir=")?,
        work: opt("workdir=")?,
    })
}

/// `lowerdir` is `:`-separated; a `:` inside a path is escaped as `\:`.
fn split_lowerdir(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => cur.extend(chars.next()),
            ':' => out.push(std::mem::take(&mut cur)),
            _ => cur.push(c),
        }
    }
    out.push(cur);
    out
}

/// One line of the verdict: a fact, and whether it is what the lesson says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// Holds as the lesson says (or is only informative).
    pub holds: bool,
    /// The fact, in words.
    pub text: String,
}

fn finding(holds: bool, text: String) -> Finding {
    Finding { holds, text }
}

/// Compares what inspect says with the mount table. `resolve` makes paths comparable (the
/// mount names layers by short symlinks, `l/ABC...`, where inspect names `<id>/diff`).
pub fn judge(
    container: &GraphDriver,
    mount: &OverlayDirs,
    image: Option<&GraphDriver>,
    resolve: &dyn Fn(&str) -> PathBuf,
) -> Vec<Finding> {
    let mut out = Vec::new();
    let same = |a: &str, b: &str| resolve(a) == resolve(b);
    let lower = match container {
        GraphDriver::Dirs { name, dirs } => {
            out.push(finding(
                true,
                format!("image store: graph driver {name} (GraphDriver.Data names the layers)"),
            ));
            out.push(finding(
                same(&dirs.upper, &mount.upper),
                format!("UpperDir is the mount's upperdir: {}", mount.upper),
            ));
            out.push(finding(
                same(&dirs.work, &mount.work),
                format!("WorkDir is the mount's workdir: {}", mount.work),
            ));
            let lower_same = dirs.lower.len() == mount.lower.len()
                && dirs.lower.iter().zip(&mount.lower).all(|(a, b)| same(a, b));
            out.push(finding(
                lower_same,
                format!(
                    "LowerDir is the mount's lowerdir, in order: {} layers",
                    mount.lower.len()
                ),
            ));
            dirs.lower.clone()
        }
        GraphDriver::Empty { name } => {
            out.push(finding(
                false,
                format!(
                    "image store: containerd (GraphDriver.Data is empty{}): the lesson's \
                     `jq .GraphDriver.Data.UpperDir` prints null; layers read from the container's \
                     overlay mount instead",
                    name.as_deref()
                        .map(|n| format!(", driver name {n}"))
                        .unwrap_or_default()
                ),
            ));
            out.push(finding(true, format!("mount upperdir: {}", mount.upper)));
            out.push(finding(true, format!("mount workdir: {}", mount.work)));
            out.push(finding(
                true,
                format!("mount lowerdir: {} layers", mount.lower.len()),
            ));
            mount.lower.clone()
        }
    };
    match image {
        Some(GraphDriver::Dirs { dirs, .. }) => {
            // The image's top layer is its UpperDir; below it its LowerDir.
            let layers: Vec<&String> = std::iter::once(&dirs.upper).chain(&dirs.lower).collect();
            let tail = lower
                .len()
                .checked_sub(layers.len())
                .map(|skip| &lower[skip..]);
            let in_order = tail.is_some_and(|t| t.iter().zip(&layers).all(|(a, b)| same(a, b)));
            out.push(finding(
                in_order,
                format!(
                    "the image's {} layers are the container's lowest layers, in order{}",
                    layers.len(),
                    match lower.len() - tail.map_or(lower.len(), <[String]>::len) {
                        0 => String::new(),
                        n => format!(" (above them {n} layer of the engine's own)"),
                    }
                ),
            ));
        }
        Some(GraphDriver::Empty { .. }) => out.push(finding(
            true,
            "the image's GraphDriver.Data is empty: its layers cannot be named by inspect".into(),
        )),
        None => {}
    }
    out
}

/// Runs `$ENGINE ARGS...` and returns its stdout, or why not.
fn engine_output(engine: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new(engine)
        .args(args)
        .output()
        .map_err(|e| format!("cannot run {engine}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "`{engine} {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn container_pid(inspect: &str) -> Option<i64> {
    let v: Value = serde_json::from_str(inspect).ok()?;
    let obj = v.as_array().and_then(|a| a.first()).unwrap_or(&v);
    obj.get("State")?.get("Pid")?.as_i64().filter(|p| *p > 0)
}

/// `labgrade __container-layers CONTAINER [--image IMAGE]`: prints the findings, exits 0 when
/// every one holds, 1 when one does not, 2 when the facts cannot be read.
pub fn main(args: &[String]) -> i32 {
    let (container, image) = match args {
        [c] => (c.as_str(), None),
        [c, flag, i] if flag == "--image" => (c.as_str(), Some(i.as_str())),
        _ => {
            eprintln!("usage: labgrade __container-layers CONTAINER [--image IMAGE]");
            return 2;
        }
    };
    let Ok(engine) = std::env::var("ENGINE") else {
        eprintln!("$ENGINE is not set: run this in a lab with `engines = [...]`");
        return 2;
    };
    let result = (|| -> Result<Vec<Finding>, String> {
        let inspect = engine_output(&engine, &["container", "inspect", container])?;
        let pid = container_pid(&inspect)
            .ok_or_else(|| format!("container {container} is not running"))?;
        let mountinfo = std::fs::read_to_string(format!("/proc/{pid}/mountinfo"))
            .map_err(|e| format!("cannot read the container's mount table: {e}"))?;
        let mount = root_overlay(&mountinfo)
            .ok_or_else(|| format!("container {container}'s root is not an overlay mount"))?;
        let gd = graph_driver(&inspect)?;
        let image_gd = match image {
            Some(i) => Some(graph_driver(&engine_output(
                &engine,
                &["image", "inspect", i],
            )?)?),
            None => None,
        };
        let resolve = |p: &str| std::fs::canonicalize(p).unwrap_or_else(|_| Path::new(p).into());
        Ok(judge(&gd, &mount, image_gd.as_ref(), &resolve))
    })();
    match result {
        Ok(findings) => {
            for f in &findings {
                println!("{} {}", if f.holds { "ok:" } else { "NOT:" }, f.text);
            }
            i32::from(findings.iter().any(|f| !f.holds))
        }
        Err(e) => {
            eprintln!("labgrade __container-layers: {e}");
            2
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOCKER_CONTAINER: &str = include_str!("../testdata/docker-container-inspect.json");
    const DOCKER_IMAGE: &str = include_str!("../testdata/docker-image-inspect.json");
    const DOCKER_MOUNTS: &str = include_str!("../testdata/docker-mountinfo.txt");
    const PODMAN_CONTAINER: &str = include_str!("../testdata/podman-container-inspect.json");
    const PODMAN_IMAGE: &str = include_str!("../testdata/podman-image-inspect.json");
    const PODMAN_MOUNTS: &str = include_str!("../testdata/podman-mountinfo.txt");

    /// The layer symlinks (`l/XXX`) of the recorded runs, as `ls -l` showed them.
    fn resolver(links: &[(&str, &str)]) -> impl Fn(&str) -> PathBuf {
        let links: Vec<(String, String)> = links
            .iter()
            .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
            .collect();
        move |p: &str| {
            let p = links
                .iter()
                .find(|(l, _)| l == p)
                .map_or(p, |(_, t)| t.as_str());
            PathBuf::from(p)
        }
    }

    fn dirs(gd: &GraphDriver) -> &OverlayDirs {
        match gd {
            GraphDriver::Dirs { dirs, .. } => dirs,
            GraphDriver::Empty { .. } => panic!("no dirs in {gd:?}"),
        }
    }

    #[test]
    fn docker_overlay2_names_the_mounts_dirs_and_the_image_is_below_the_init_layer() {
        let gd = graph_driver(DOCKER_CONTAINER).unwrap_or_else(|e| panic!("{e}"));
        let image = graph_driver(DOCKER_IMAGE).unwrap_or_else(|e| panic!("{e}"));
        let mount = root_overlay(DOCKER_MOUNTS).unwrap_or_else(|| panic!("no root overlay"));
        assert_eq!(dirs(&gd).lower.len(), 3, "init layer + the image's two");
        assert!(dirs(&gd).lower[0].ends_with("-init/diff"));
        assert_eq!(mount.upper, dirs(&gd).upper);
        let l = |s: &str| format!("/tmp/eng/data/overlay2/l/{s}");
        let links = [
            (l("YD3JATYLK2L634IOVDNH6AG5J2"), dirs(&gd).lower[0].clone()),
            (l("PALDB7XCZE3KQ3QETHN6YBCICY"), dirs(&gd).lower[1].clone()),
            (l("WJJKMTJW5TL3BT5AUUMSKJZ5EZ"), dirs(&gd).lower[2].clone()),
        ];
        let links: Vec<(&str, &str)> = links
            .iter()
            .map(|(a, b)| (a.as_str(), b.as_str()))
            .collect();
        let findings = judge(&gd, &mount, Some(&image), &resolver(&links));
        assert!(findings.iter().all(|f| f.holds), "{findings:#?}");
        assert!(
            findings
                .iter()
                .any(|f| f.text.contains("above them 1 layer of the engine's own")),
            "{findings:#?}"
        );
        // A lowerdir in another order is found out.
        let mut swapped = mount.clone();
        swapped.lower.swap(1, 2);
        let findings = judge(&gd, &swapped, Some(&image), &resolver(&links));
        assert!(
            findings
                .iter()
                .any(|f| !f.holds && f.text.starts_with("LowerDir"))
        );
    }

    #[test]
    fn podman_names_the_mounts_dirs_and_the_image_is_the_whole_lowerdir() {
        let gd = graph_driver(PODMAN_CONTAINER).unwrap_or_else(|e| panic!("{e}"));
        let image = graph_driver(PODMAN_IMAGE).unwrap_or_else(|e| panic!("{e}"));
        let mount = root_overlay(PODMAN_MOUNTS).unwrap_or_else(|| panic!("no root overlay"));
        assert_eq!(dirs(&gd).lower.len(), 2);
        let links = [
            (
                "/tmp/eng/storage/overlay/l/I2OM3NKZBPOGEDCNWMEMP7WVSW",
                dirs(&gd).lower[0].as_str(),
            ),
            (
                "/tmp/eng/storage/overlay/l/HZMNUHDJLY53XANTTKIE5RQCBJ",
                dirs(&gd).lower[1].as_str(),
            ),
        ];
        let findings = judge(&gd, &mount, Some(&image), &resolver(&links));
        assert!(findings.iter().all(|f| f.holds), "{findings:#?}");
        assert!(matches!(&gd, GraphDriver::Dirs { name, .. } if name == "overlay"));
    }

    #[test]
    fn containerds_image_store_leaves_graph_driver_data_empty_and_the_mount_is_read_instead() {
        // Shapes Docker's containerd image store prints: Data null, Data {}, no GraphDriver.
        for inspect in [
            r#"[{"Id":"c","State":{"Pid":42},"GraphDriver":{"Data":null,"Name":"overlayfs"}}]"#,
            r#"[{"Id":"c","GraphDriver":{"Data":{},"Name":"overlayfs"}}]"#,
            r#"[{"Id":"c","State":{"Pid":42}}]"#,
        ] {
            let gd = graph_driver(inspect).unwrap_or_else(|e| panic!("{e}"));
            assert!(matches!(gd, GraphDriver::Empty { .. }), "{inspect}: {gd:?}");
            let mount = root_overlay(DOCKER_MOUNTS).unwrap_or_else(|| panic!("no root overlay"));
            let findings = judge(&gd, &mount, None, &|p| PathBuf::from(p));
            assert!(!findings[0].holds, "reported as not what the lesson says");
            assert!(findings[0].text.contains("containerd"), "{findings:#?}");
            assert!(
                findings
                    .iter()
                    .any(|f| f.text.contains("mount lowerdir: 3 layers"))
            );
        }
        assert_eq!(
            container_pid(r#"[{"State":{"Pid":42},"GraphDriver":{"Data":null}}]"#),
            Some(42)
        );
        assert!(graph_driver("[]").is_err());
        assert!(graph_driver("not json").is_err());
    }

    #[test]
    fn escaped_colons_stay_inside_a_lower_layer() {
        assert_eq!(split_lowerdir(r"/a\:b:/c"), vec!["/a:b", "/c"]);
    }
}
