//! After a command failed: what its stderr says is missing, checked in the same guest session
//! (so the answer is the guest's, not the host's), for `exec` and `matrix -- CMD` alike.

use std::time::Duration;

use labgrade_guest::AgentSession;
use labgrade_report::MissingInGuest;
use labgrade_results::missing;

/// Most stderr bytes kept for reading clues: the end, where a failure's cause is.
const STDERR_KEPT: usize = 64 * 1024;

/// The last [`STDERR_KEPT`] bytes of a command's stderr, kept as it streams.
#[derive(Debug, Default)]
pub struct StderrTail(String);

impl StderrTail {
    /// Keeps `data`, dropping the oldest bytes beyond the bound (at a character boundary).
    pub fn push(&mut self, data: &str) {
        self.0.push_str(data);
        if self.0.len() > STDERR_KEPT {
            let mut cut = self.0.len() - STDERR_KEPT;
            while !self.0.is_char_boundary(cut) {
                cut += 1;
            }
            self.0.drain(..cut);
        }
    }
}

/// What the failed `script`'s stderr names as missing and the guest confirms; empty when the
/// stderr has no clue or the check itself could not run (the failure then stands as it is).
pub fn diagnose(
    session: &mut AgentSession,
    step: usize,
    script: &str,
    stderr: &StderrTail,
) -> Vec<MissingInGuest> {
    let found = missing::clues(&stderr.0);
    if found.is_empty() {
        return Vec::new();
    }
    let check = missing::check_script(
        &found,
        &missing::cd_targets(script),
        &labgrade_guest::shell_quote,
    );
    let mut answer = String::new();
    let outcome = session.run_step(
        step,
        &check,
        Duration::from_secs(30),
        Some(&mut |stream: &str, data: &str| {
            if stream != "stderr" {
                answer.push_str(data);
            }
        }),
    );
    match outcome {
        Ok(o) if o.succeeded() => missing::confirmed(&found, &answer),
        Ok(_) | Err(_) => {
            tracing::debug!("the check for missing programs did not run; left out");
            Vec::new()
        }
    }
}
