//! Container engines a lab can run on: each engine lab runs once per engine, as its own result.

use std::fmt;
use std::str::FromStr;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::Capability;

/// A container engine labgrade can start in a lab's session.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum Engine {
    /// Docker: labgrade starts its own `dockerd` (overlay2) in the session.
    Docker,
    /// Podman: daemonless; labgrade gives it its own storage root and configuration.
    Podman,
}

impl Engine {
    /// Every engine, in the order their results are reported.
    pub const ALL: [Engine; 2] = [Engine::Docker, Engine::Podman];

    /// The word used in lab files, lab ids (`lab2@docker`) and `--engine`.
    pub fn as_str(self) -> &'static str {
        match self {
            Engine::Docker => "docker",
            Engine::Podman => "podman",
        }
    }

    /// The capability a lab run on this engine needs.
    pub fn capability(self) -> Capability {
        match self {
            Engine::Docker => Capability::Docker,
            Engine::Podman => Capability::Podman,
        }
    }
}

impl fmt::Display for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The word is not a known engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownEngine;

impl FromStr for Engine {
    type Err = UnknownEngine;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Engine::ALL
            .into_iter()
            .find(|e| e.as_str() == s)
            .ok_or(UnknownEngine)
    }
}
