//! Turning a `--guest` name into a guest, through the runner's [`labgrade_runner::GuestSpec`].

pub use labgrade_runner::{GuestOptions, ResolvedGuest};

use crate::exit::CliError;

/// Where disk images for scratch disks and filesystem probes are kept.
pub fn image_cache() -> Result<labgrade_disk::ImageCache, CliError> {
    Ok(labgrade_runner::image_cache()?)
}

fn agent_exe() -> Result<std::path::PathBuf, CliError> {
    std::env::current_exe().map_err(|e| {
        CliError::Usage(format!(
            "cannot find the labgrade binary to start the agent: {e}"
        ))
    })
}

/// Builds the guest `name`; a qemu kernel is fetched (or found in the cache) first.
pub fn resolve(name: &str, options: &GuestOptions) -> Result<ResolvedGuest, CliError> {
    let spec: labgrade_runner::GuestSpec = name.parse()?;
    Ok(spec.launch(&agent_exe()?, options)?)
}

/// Guests for grading untrusted code `name`: on qemu, a VM per submission that sees a staged
/// root only (see [`labgrade_runner::GuestSpec::launch_for_grading`]).
pub fn resolve_for_grading(
    name: &str,
    options: &GuestOptions,
) -> Result<labgrade_runner::GradingGuests, CliError> {
    let spec: labgrade_runner::GuestSpec = name.parse()?;
    Ok(spec.launch_for_grading(&agent_exe()?, options)?)
}
