//! Finding out, once per run, what the guest can do.

use labgrade_agent::proto::{Privilege, ProbeResult, Request, Response};
use labgrade_guest::{Guest, GuestError};
use labgrade_spec::Capability;

/// What a guest offers, found by trying: every lab's `needs` is matched against this.
#[derive(Debug, Clone)]
pub struct ProbedCapabilities {
    /// Under what privilege labs run there.
    pub privilege: Privilege,
    /// Why kernel-log checks cannot be judged there, if they cannot.
    pub kmsg_unavailable: Option<String>,
    /// One result per capability probed.
    pub results: Vec<ProbeResult>,
}

impl ProbedCapabilities {
    /// The reason a lab needing `needs` must be skipped here, or `None` if all are available.
    pub fn missing(&self, needs: &[Capability]) -> Option<String> {
        let missing: Vec<String> = needs
            .iter()
            .filter_map(|cap| match self.results.iter().find(|r| r.cap == *cap) {
                Some(r) if r.available => None,
                Some(r) => Some(format!("needs {cap} ({}): {}", cap.meaning(), r.detail)),
                None => Some(format!("needs {cap} ({}): not probed", cap.meaning())),
            })
            .collect();
        (!missing.is_empty()).then(|| missing.join("; "))
    }
}

/// Starts one session on the guest and tries each capability there.
pub fn probe_guest(
    guest: &dyn Guest,
    caps: &[Capability],
) -> Result<ProbedCapabilities, GuestError> {
    let mut session = guest.start_session()?;
    let hello = session.hello().clone();
    let results = if caps.is_empty() {
        Vec::new()
    } else {
        match session.request(&Request::Probe {
            caps: caps.to_vec(),
        })? {
            Response::Probed { results } => results,
            other => {
                return Err(GuestError::Agent {
                    message: format!("expected probe results, got {other:?}"),
                    stderr: String::new(),
                });
            }
        }
    };
    let _ = session.request(&Request::Shutdown);
    Ok(ProbedCapabilities {
        privilege: hello.privilege,
        kmsg_unavailable: hello.kmsg_unavailable,
        results,
    })
}
