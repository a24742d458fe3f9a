//! Every lab file is a test: it runs on the host guest, must pass (or be skipped with a probed
//! reason), and its snapshots must match the committed ones.

mod common;

use std::path::PathBuf;

use labgrade_report::{LabStatus, render_human};
use labgrade_runner::{GuestCapabilities, run_lab};
use rstest::rstest;

#[rstest]
fn lab_passes_on_host(
    #[files("../../labs/*/*.toml")] path: PathBuf,
) -> Result<(), Box<dyn std::error::Error>> {
    let lab = labgrade_spec::load_lab(&path)?;
    let guest = common::host();
    let caps = GuestCapabilities::new(common::images());
    let report = run_lab(&guest, &lab, &caps);
    let run = common::one_lab_run("host", &caps, &report);
    println!("{}", render_human(&run));
    match report.status {
        LabStatus::Pass => {}
        LabStatus::Skip => {
            let reason = report.reason.clone().unwrap_or_default();
            let required = common::required_capabilities();
            let broken: Vec<&String> = required
                .iter()
                .filter(|c| lab.needs.iter().any(|n| n.as_str() == c.as_str()))
                .filter(|c| reason.contains(&format!("needs {c} ")))
                .collect();
            assert!(
                broken.is_empty(),
                "{} was skipped although LABGRADE_REQUIRE promises {broken:?}: {reason}",
                lab.id
            );
            common::skip(&reason);
            return Ok(());
        }
        LabStatus::Fail | LabStatus::Error => {
            panic!("lab {} did not pass:\n{}", lab.id, render_human(&run))
        }
    }
    assert!(
        common::host_overlay_mounts().is_empty(),
        "a lab's overlay mount is visible on the host"
    );
    let mode = match caps.hello().map(|h| h.privilege) {
        Some(labgrade_agent::proto::Privilege::UserNamespace { .. }) => "host-userns",
        _ => "host",
    };
    common::assert_snapshots(&lab, &report, mode, None);
    Ok(())
}
