//! Turning a `--guest` name into a guest, through the runner's [`labgrade_runner::GuestSpec`].

pub use labgrade_runner::{GuestOptions, ResolvedGuest};

use crate::exit::CliError;

/// Where disk images for scratch disks and filesystem probes are kept.
pub fn image_cache() -> Result<labgrade_disk::ImageCache, CliError> {
    Ok(labgrade_runner::image_cache()?)
}

/// Builds the guest `name`; a qemu kernel is fetched (or found in the cache) first.
pub fn resolve(name: &str, options: &GuestOptions) -> Result<ResolvedGuest, CliError> {
    let exe = std::env::current_exe().map_err(|e| {
        CliError::Usage(format!(
            "cannot find the labgrade binary to start the agent: {e}"
        ))
    })?;
    let spec: labgrade_runner::GuestSpec = name.parse()?;
    Ok(spec.launch(&exe, options)?)
}
