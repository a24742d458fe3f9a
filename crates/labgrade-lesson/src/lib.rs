//! Lesson drift: run a lesson's own markdown as a student would and point at every documented
//! output line that is no longer true.
//!
//! Data flows one way: [`extract`] (markdown -> shell blocks and documented output) ->
//! [`run`] (blocks on a guest, one shell session per lesson part) -> [`judge`] (compare, pure)
//! -> [`baseline`] (accepted divergences) -> [`report`] -> [`render`] / JSON, and [`fix`] to
//! write the new truth back into the lesson.

pub mod baseline;
pub mod compare;
pub mod extract;
pub mod fix;
pub mod judge;
pub mod probe;
pub mod render;
pub mod report;
pub mod run;

pub use baseline::{Baseline, BaselineError};
pub use extract::{Lesson, extract};
pub use judge::{RunMeta, judge};
pub use report::{DriftReport, KernelsReport};
pub use run::{RunOptions, run_lesson};
