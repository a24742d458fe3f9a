//! Every lab on every kernel of the matrix, each in a VM of its own under QEMU: pass, or skip with
//! a probed reason; snapshots are kept per kernel.

mod common;

use std::path::PathBuf;

use labgrade_report::{LabStatus, RunReport, render_human};
use labgrade_runner::{probe_guest, run_lab};
use rstest::rstest;

#[rstest]
fn lab_passes_on_kernel(
    #[files("../../labs/*/*.toml")] path: PathBuf,
    #[values("debian:5.10", "debian:6.1", "debian:6.12", "debian:7")] kernel: &str,
) -> Result<(), Box<dyn std::error::Error>> {
    let lab = labgrade_spec::load_lab(&path)?;
    if lab.pending.is_some() {
        // Nothing boots for a pending lab; the host test covers its skip.
        return Ok(());
    }
    let guest = match common::qemu_guest(kernel, 1) {
        Ok(g) => g,
        Err(reason) => {
            common::skip_or_fail(&reason);
            return Ok(());
        }
    };
    let caps = probe_guest(&guest, &lab.needs)?;
    let report = run_lab(&guest, &lab, &caps);
    let run = RunReport {
        guest: format!("qemu:{kernel}"),
        privilege: Some(caps.privilege.to_string()),
        kmsg_unavailable: caps.kmsg_unavailable.clone(),
        labs: vec![report.clone()],
        probe_ms: 0,
        duration_ms: 0,
    };
    println!("{}", render_human(&run));
    match report.status {
        LabStatus::Pass => {}
        LabStatus::Skip => {
            common::skip(&report.reason.unwrap_or_default());
            return Ok(());
        }
        LabStatus::Fail | LabStatus::Error => panic!(
            "lab {} did not pass on {kernel}:\n{}",
            lab.id,
            render_human(&run)
        ),
    }
    let guest_name = format!("qemu-{}", kernel.replace(':', "-"));
    for snap in &report.snapshots {
        let name = format!(
            "{}__{}__{guest_name}",
            lab.id,
            snap.name.replace(['@', '/'], "_")
        );
        insta::with_settings!({ snapshot_path => "snapshots", prepend_module_to_snapshot => false, description => format!("{} ({}) on {kernel}", lab.title, snap.dir) }, {
            insta::assert_snapshot!(name, snap.text);
        });
    }
    Ok(())
}
