//! The validated lab: what the runner executes. Built only by [`crate::load_lab`].

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use labgrade_proto::{Engine, EntryKind};
use serde::{Deserialize, Serialize};

use crate::{Capability, Disk};

/// One lab: shell steps run in a single session, with typed checks after each step.
#[derive(Debug, Clone)]
pub struct Lab {
    /// Stable id, from the file name without its ordering prefix (`03-multiple-lowerdirs.toml`
    /// -> `multiple-lowerdirs`). Reports, snapshots and graders key on it.
    pub id: String,
    /// The file it was loaded from.
    pub path: PathBuf,
    /// One line a reader of the lesson recognises.
    pub title: String,
    /// Where in the lesson the lab's claims come from.
    pub lesson: LessonRef,
    /// What the guest must offer; a lab whose needs are missing is skipped with the reason.
    pub needs: Vec<Capability>,
    /// Scratch disks the guest formats and hands over before the first step.
    pub disks: Vec<Disk>,
    /// A lab that is written down but cannot run yet, with the reason; always reported as skipped.
    pub pending: Option<String>,
    /// The steps, in order.
    pub steps: Vec<Step>,
    /// Directories (relative to `$LAB`) snapshotted once the last step has run.
    pub end_snapshots: Vec<String>,
    /// The container engines the lab runs on (`engines = ["docker", "podman"]`): it runs once
    /// per engine, each run its own result (see [`Lab::per_engine`]).
    pub engines: Vec<Engine>,
    /// The engine this run of the lab uses; its id is then `<lab>@<engine>`.
    pub engine: Option<Engine>,
}

impl Lab {
    /// One lab per engine it names (id `<lab>@<engine>`, needing that engine), or the lab itself
    /// when it names none.
    pub fn per_engine(self) -> Vec<Lab> {
        if self.engines.is_empty() || self.engine.is_some() {
            return vec![self];
        }
        self.engines
            .iter()
            .map(|&e| {
                let mut lab = self.clone();
                lab.id = format!("{}@{e}", self.id);
                lab.engine = Some(e);
                if !lab.needs.contains(&e.capability()) {
                    lab.needs.push(e.capability());
                }
                lab
            })
            .collect()
    }

    /// The id of the lab file this lab comes from (without `@<engine>`).
    pub fn file_id(&self) -> &str {
        self.id.split_once('@').map_or(&self.id, |(id, _)| id)
    }
}

/// A pointer into the lesson's markdown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct LessonRef {
    /// The lesson file name, e.g. `07-overlay-filesystems.md`.
    pub file: String,
    /// The heading text of the section.
    pub section: String,
}

/// One shell step and what must hold after it.
#[derive(Debug, Clone)]
pub struct Step {
    /// 1-based position in the lab.
    pub number: usize,
    /// Optional name, used by `unchanged_since` and in reports.
    pub name: Option<String>,
    /// Shell text, run by bash in the lab's session (variables and cwd carry over).
    pub run: String,
    /// Line in the lab file where the shell text starts, to map shell errors back to the file.
    pub run_line: usize,
    /// How the step must end.
    pub exit: ExitExpectation,
    /// Facts about the step's output and the kernel log while it ran.
    pub output_checks: Vec<OutputCheck>,
    /// Facts about paths after the step.
    pub checks: Vec<Check>,
    /// Directories (relative to `$LAB`) snapshotted after this step.
    pub snapshots: Vec<String>,
    /// How long the step may run before the lab is stopped.
    pub timeout: Duration,
}

/// How a step must end. Every command in a step counts, as under `set -e`: a step succeeds only if
/// no command in it failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExitExpectation {
    /// Every command succeeded (the default).
    Success,
    /// Some command failed (`fails = true`), e.g. a mount the kernel must refuse.
    Failure,
    /// The step's last command exited with this code (`exit = 32`).
    Code(i32),
}

impl fmt::Display for ExitExpectation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExitExpectation::Success => f.write_str("every command succeeds"),
            ExitExpectation::Failure => f.write_str("a command fails"),
            ExitExpectation::Code(c) => write!(f, "exit code {c}"),
        }
    }
}

/// A fact about a step's output or the kernel log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutputCheck {
    /// Standard output is exactly this.
    Stdout(String),
    /// Standard output contains this.
    StdoutContains(String),
    /// Standard error contains this.
    StderrContains(String),
    /// The kernel logged a line containing this while the step ran.
    KmsgContains(String),
}

/// A fact about one path after a step. `path` is relative to `$LAB`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// Relative to `$LAB`, e.g. `upper/etc/app.conf`.
    pub path: String,
    /// What must hold.
    pub fact: Fact,
    /// Line in the lab file, for reports that point back at the source.
    pub line: usize,
}

/// The typed facts a check can assert about a path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fact {
    /// The path exists (`exists = true`).
    Exists,
    /// The path does not exist (`absent = true` or `exists = false`).
    Absent,
    /// The path has this file type (`kind = "dir"`).
    Kind(EntryKind),
    /// The path is (or is not) a whiteout: a character device 0:0.
    Whiteout(bool),
    /// The directory is (or is not) opaque: overlay xattr `opaque` = `y`.
    Opaque(bool),
    /// The file's content is exactly this text.
    Content(String),
    /// The file's content contains this text.
    Contains(String),
    /// The file's size in bytes.
    Size(u64),
    /// The file's content digest (hex SHA-256).
    Sha256(String),
    /// The directory lists exactly these names (sorted), nothing else.
    Entries(Vec<String>),
    /// The path carries this overlay xattr (short name: `metacopy`, `opaque`, ...).
    HasXattr(String),
    /// The path does not carry this overlay xattr.
    LacksXattr(String),
    /// Type, mode, owner, size, xattrs and content are as they were after step N (1-based).
    UnchangedSince(usize),
}

impl fmt::Display for Fact {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fact::Exists => f.write_str("exists"),
            Fact::Absent => f.write_str("absent"),
            Fact::Kind(k) => write!(f, "kind {k}"),
            Fact::Whiteout(true) => f.write_str("whiteout (char 0:0)"),
            Fact::Whiteout(false) => f.write_str("not a whiteout"),
            Fact::Opaque(true) => f.write_str("opaque dir"),
            Fact::Opaque(false) => f.write_str("not opaque"),
            Fact::Content(_) => f.write_str("content"),
            Fact::Contains(s) => write!(f, "contains {s:?}"),
            Fact::Size(n) => write!(f, "size {n}"),
            Fact::Sha256(_) => f.write_str("sha256"),
            Fact::Entries(_) => f.write_str("entries"),
            Fact::HasXattr(x) => write!(f, "has overlay xattr {x}"),
            Fact::LacksXattr(x) => write!(f, "lacks overlay xattr {x}"),
            Fact::UnchangedSince(n) => write!(f, "unchanged since step {n}"),
        }
    }
}
