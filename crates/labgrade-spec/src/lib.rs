//! The lab file format.
//!
//! A lab is a TOML file a course maintainer who knows shell (but not Rust) can read and write:
//! shell steps run in one session, typed checks after each step, snapshot points, the
//! capabilities it needs and the lesson section it comes from. `labs/README.md` documents the
//! format; this crate turns a file into a validated [`Lab`] or into an [`SpecError`] that names the
//! file, line and column and says what to do.

mod discover;
mod disk;
mod error;
mod lab;
mod load;

pub use discover::{SelectError, all_labs, select_labs};
pub use disk::{DEFAULT_DISK_MIB, Disk, DiskFormat, Filesystem, MAX_DISK_MIB};
pub use error::{InvalidLab, SpecError};
pub use lab::{Check, ExitExpectation, Fact, Lab, LessonRef, OutputCheck, Step};
use labgrade_proto::Capability;
pub use load::{
    DEFAULT_STEP_TIMEOUT, RawCheck, lab_id, load_dir, load_lab, parse_check, parse_lab,
};

#[cfg(test)]
mod tests;
