//! What crosses the wire between the host and the in-guest agent, and the names both sides use.
//!
//! The agent (inside a guest) and every host-side crate (guests, runner, reports) link this crate
//! and nothing of each other: requests and replies ([`wire`]), what a path looks like ([`Entry`],
//! [`TreeSnapshot`]) and what a guest may be able to do ([`Capability`]). Everything here is plain
//! serde data with a JSON Schema, so a change to the contract is a visible diff.

mod capability;
mod engine;
mod entry;
pub mod options;
pub mod wire;

pub use capability::{Capability, UnknownCapability};
pub use engine::{Engine, UnknownEngine};
pub use entry::{Entry, EntryKind, OverlayXattr, TreeSnapshot, XattrValue};
pub use wire::*;

/// Set (to any value) in an agent's environment by a backend that grades on this machine: the
/// agent then starts a reaper that removes its sandboxes' cgroups when it dies, however it dies.
/// Labs make no sandbox, and a VM's cgroups die with the VM: neither pays for one.
pub const REAP_SANDBOX_CGROUPS_ENV: &str = "LABGRADE_REAP_SANDBOX_CGROUPS";

/// The top-level directories of a machine that hold its programs and libraries: on a merged-/usr
/// system `usr` is a directory and the rest symlinks into it; elsewhere each is one of its own.
/// Untrusted code sees these and nothing else of the machine: a grading VM's staged root
/// exports them, and a sandbox's own root binds them, both read-only.
pub const PROGRAM_DIRS: [&str; 7] = ["usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32"];
