//! Finding out, once per run, what the guest can do.

use labgrade_agent::proto::{Hello, Privilege, ProbeResult, Request, Response};
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

/// Tries each capability on the guest, in up to `jobs` sessions at once (making and mounting XFS
/// images is what takes time, so the two XFS probes go to different sessions).
pub fn probe_guest(
    guest: &dyn Guest,
    caps: &[Capability],
    jobs: usize,
) -> Result<ProbedCapabilities, GuestError> {
    let mut ordered: Vec<Capability> = caps.to_vec();
    ordered.sort_by_key(|c| !matches!(c, Capability::Xfs | Capability::XfsV4));
    let groups = jobs.clamp(1, ordered.len().max(1));
    let mut batches: Vec<Vec<Capability>> = vec![Vec::new(); groups];
    for (i, cap) in ordered.into_iter().enumerate() {
        batches[i % groups].push(cap);
    }
    let outcomes: Vec<Result<(Hello, Vec<ProbeResult>), GuestError>> =
        std::thread::scope(|scope| {
            let handles: Vec<_> = batches
                .iter()
                .map(|batch| scope.spawn(move || probe_in_session(guest, batch)))
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join().unwrap_or_else(|_| {
                        Err(GuestError::Agent {
                            message: "a probe thread panicked".into(),
                            stderr: String::new(),
                        })
                    })
                })
                .collect()
        });
    let mut hello = None;
    let mut results = Vec::new();
    for outcome in outcomes {
        let (h, r) = outcome?;
        hello.get_or_insert(h);
        results.extend(r);
    }
    results.sort_by_key(|r| caps.iter().position(|c| *c == r.cap));
    let hello = hello.ok_or_else(|| GuestError::Agent {
        message: "no probe session ran".into(),
        stderr: String::new(),
    })?;
    Ok(ProbedCapabilities {
        privilege: hello.privilege,
        kmsg_unavailable: hello.kmsg_unavailable,
        results,
    })
}

/// One session: its hello, and the results for `caps`.
fn probe_in_session(
    guest: &dyn Guest,
    caps: &[Capability],
) -> Result<(Hello, Vec<ProbeResult>), GuestError> {
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
    Ok((hello, results))
}
