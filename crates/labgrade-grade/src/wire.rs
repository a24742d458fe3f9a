//! The agent's wire types this crate uses, named in one place (they move crates as the protocol
//! gets its own).

pub use labgrade_proto::{MountEntry, PathFacts, SandboxLimits, SandboxRequest};
