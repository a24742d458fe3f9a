//! `labgrade kernel`: fetch bootable kernels for the qemu guest into the cache, and list them.

use std::process::ExitCode;

use clap::{Args, Subcommand};
use labgrade_kernel::{FetchOptions, Kernel, KernelCache, KernelError, KernelSource};

use crate::exit::CliError;

/// Arguments of `labgrade kernel`.
#[derive(Debug, Args)]
pub struct KernelArgs {
    /// What to do with kernels.
    #[command(subcommand)]
    command: KernelCommand,
}

/// The `labgrade kernel` subcommands.
#[derive(Debug, Subcommand)]
enum KernelCommand {
    /// Download and unpack kernels into the cache (a cached kernel needs no network).
    Fetch {
        /// Kernel sources: debian:6.1, debian:7, debian:bookworm, debian:6.1.176-1,
        /// debian:6.1.0-50-amd64, local:VMLINUZ:MODULES_DIR, deb:PATH.deb.
        #[arg(required = true, value_name = "KERNEL")]
        kernels: Vec<String>,
        /// The Debian archive to fetch from (default: the mirror this machine's apt uses).
        #[arg(long, value_name = "URI")]
        mirror: Option<String>,
    },
    /// List the cached kernels.
    List,
}

/// Runs `labgrade kernel fetch|list`; prints one line per kernel:
/// `NAME  RELEASE (PACKAGE_VERSION)  VMLINUZ`.
pub fn run(args: &KernelArgs) -> Result<ExitCode, CliError> {
    let cache = KernelCache::default_location();
    match &args.command {
        KernelCommand::Fetch { kernels, mirror } => {
            // Every argument is checked before anything is downloaded.
            let sources = kernels
                .iter()
                .map(|k| k.parse::<KernelSource>())
                .collect::<Result<Vec<_>, _>>()?;
            let offline = FetchOptions {
                mirror: mirror.clone(),
                offline: true,
            };
            let online = FetchOptions {
                mirror: mirror.clone(),
                offline: false,
            };
            for source in &sources {
                let kernel = match cache.fetch(source, &offline) {
                    Ok(kernel) => kernel,
                    Err(KernelError::NotCached { .. }) => {
                        eprintln!("fetching {source} into {} ...", cache.root().display());
                        cache.fetch(source, &online)?
                    }
                    Err(e) => return Err(e.into()),
                };
                println!("{}", line(&kernel));
            }
        }
        KernelCommand::List => {
            let kernels = cache.list()?;
            if kernels.is_empty() {
                eprintln!(
                    "no kernels cached in {}; get one with: labgrade kernel fetch debian:6.1",
                    cache.root().display()
                );
            }
            for kernel in &kernels {
                println!("{}", line(kernel));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `debian:6.1  6.1.0-50-amd64 (6.1.176-1)  /path/to/vmlinuz`
fn line(kernel: &Kernel) -> String {
    let version = kernel
        .package_version
        .as_deref()
        .map(|v| format!(" ({v})"))
        .unwrap_or_default();
    format!(
        "{}  {}{version}  {}",
        kernel.name,
        kernel.release,
        kernel.vmlinuz.display()
    )
}
