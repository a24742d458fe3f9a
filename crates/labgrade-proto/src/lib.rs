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
