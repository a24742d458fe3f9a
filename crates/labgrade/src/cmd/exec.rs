//! `labgrade exec --guest G -- CMD...`: one command in a fresh guest session, its output streamed
//! as it comes. The quick way to poke a kernel, and what the boot benchmark times.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;

use crate::exit::CliError;

/// Arguments of `labgrade exec`.
#[derive(Debug, Args)]
pub struct ExecArgs {
    /// Where to run: `host`, `qemu:KERNEL` or `vagrant:NAME`.
    #[arg(long, default_value = "host")]
    guest: String,
    /// For qemu guests: kvm, tcg, or auto.
    #[arg(long, default_value = "auto", value_parser = str::parse::<labgrade_qemu::Accel>)]
    accel: labgrade_qemu::Accel,
    /// Seconds the command may run.
    #[arg(long, default_value_t = 600)]
    timeout: u64,
    #[command(flatten)]
    writable: crate::cmd::suite::WritableArgs,
    /// Vagrant guests: leave the machine up afterwards, and reuse one kept before.
    #[arg(long)]
    keep: bool,
    /// The command and its arguments.
    #[arg(last = true, required = true)]
    command: Vec<String>,
}

/// Runs the command, prints its stdout and stderr, and exits with its exit code.
pub fn run(args: &ExecArgs) -> Result<ExitCode, CliError> {
    let mut options = crate::guests::GuestOptions::for_labs(args.accel, 1, &[], None);
    options.writable = args.writable.writable()?;
    options.keep = args.keep;
    let guest = crate::guests::resolve(&args.guest, &options)?.guest;
    let mut session = guest.start_session()?;
    let script = args
        .command
        .iter()
        .map(|w| labgrade_guest::shell_quote(w))
        .collect::<Vec<_>>()
        .join(" ");
    let mut stderr_tail = crate::cmd::missing::StderrTail::default();
    let mut print = |stream: &str, data: &str| {
        let _ = if stream == "stderr" {
            stderr_tail.push(data);
            std::io::stderr().write_all(data.as_bytes())
        } else {
            std::io::stdout()
                .write_all(data.as_bytes())
                .and_then(|()| std::io::stdout().flush())
        };
    };
    let outcome = session.run_step(
        1,
        &script,
        Duration::from_secs(args.timeout),
        Some(&mut print),
    );
    // After a failure the same session says what the command's stderr named as missing.
    if let Ok(o) = &outcome
        && !o.timed_out
        && !o.session_ended
        && o.exit_code != Some(0)
    {
        for m in crate::cmd::missing::diagnose(&mut session, 2, &script, &stderr_tail) {
            eprintln!("labgrade exec: missing: {}", m.missing.explain());
        }
    }
    let _ = session.shutdown();
    // A reply that is not a step's outcome is the agent's fault: a guest error, exit 3.
    let outcome = outcome?;
    if outcome.timed_out {
        eprintln!("labgrade exec: timed out after {} s", args.timeout);
        return Ok(ExitCode::from(124));
    }
    Ok(ExitCode::from(
        outcome
            .exit_code
            .map_or(255, |c| u8::try_from(c).unwrap_or(255)),
    ))
}
