//! Grading student submissions.
//!
//! An [`Assignment`] (TOML, validated with file:line:col errors) has tasks; each runs in a fresh
//! sandbox on a guest (the agent's `RunSandboxed`), and its checks, worth points, are judged from
//! the state the student's code left ([`judge`], pure), never from what it printed. The
//! [`GradeReport`] is plain data; every output format is a renderer of it ([`render`]).
//! [`batch`] grades a directory of submissions, resumably.

mod assignment;
pub mod batch;
mod escape;
mod grade;
pub mod judge;
pub mod render;
mod report;
mod wire;

pub use assignment::{
    ASSIGNMENT_FILE, Assignment, AssignmentError, DEFAULT_LIMITS, GradeCheck, OverlayExpectation,
    Task, TaskFact, Visibility, load_assignment, parse_assignment,
};
pub use grade::{MAX_ENTRY_BYTES, grade_submission};
pub use report::{
    GradeReport, GradeStatus, GradedCheck, SCHEMA_VERSION, TaskReport, TaskRun, TaskStatus,
    grade_report_schema,
};
