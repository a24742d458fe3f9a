//! A lab x guest matrix: the same labs on several kernels, and what differs between them.

mod differences;
mod kmsg;
mod render;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::model::{LabReport, LabStatus, RunReport, SCHEMA_VERSION};

pub use differences::{Difference, Observed, Subject};
pub use render::{render_matrix_human, render_matrix_markdown};

fn schema_version() -> u32 {
    SCHEMA_VERSION
}

/// `labgrade matrix`: one run per guest, in the order the guests were named.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct MatrixReport {
    /// The shape of this report: [`SCHEMA_VERSION`] when it was written.
    #[serde(default = "schema_version")]
    pub schema_version: u32,
    /// One entry per guest.
    pub columns: Vec<MatrixColumn>,
    /// Wall time of the whole matrix in milliseconds.
    pub duration_ms: u64,
}

/// One guest's run, or why it could not run at all.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct MatrixColumn {
    /// The guest, e.g. `qemu:debian:6.1` or `host`.
    pub guest: String,
    /// The kernel release it ran, where known (`uname -r`).
    pub kernel_release: Option<String>,
    /// The run, if the guest came up.
    pub run: Option<RunReport>,
    /// Why there is no run (boot failure, kernel not found): infrastructure, exit code 3.
    pub error: Option<String>,
}

/// What one cell of the table (a lab on a guest) shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cell<'a> {
    /// The lab ran (or was skipped) there.
    Lab(&'a LabReport),
    /// The guest never came up: every cell of its column is this error.
    GuestError(&'a str),
    /// The guest ran, but not this lab.
    NotRun,
}

impl<'a> Cell<'a> {
    /// The lab's status, or `Error` for a guest that never ran; `None` where the lab did not run.
    pub fn status(self) -> Option<LabStatus> {
        match self {
            Cell::Lab(l) => Some(l.status),
            Cell::GuestError(_) => Some(LabStatus::Error),
            Cell::NotRun => None,
        }
    }

    /// Why the cell did not pass, where it says.
    pub fn reason(self) -> Option<&'a str> {
        match self {
            Cell::Lab(l) => l.reason.as_deref(),
            Cell::GuestError(e) => e.lines().next(),
            Cell::NotRun => None,
        }
    }
}

impl MatrixColumn {
    /// The column of a guest that never ran its labs, and why.
    pub fn failed(guest: &str, error: String) -> MatrixColumn {
        MatrixColumn {
            guest: guest.to_owned(),
            kernel_release: None,
            run: None,
            error: Some(error),
        }
    }

    /// The kernel release, or why the guest did not come up.
    pub fn kernel_text(&self) -> &str {
        self.kernel_release
            .as_deref()
            .or(self.error.as_deref())
            .unwrap_or("?")
    }

    /// The cell of lab `id` in this column.
    pub fn cell(&self, id: &str) -> Cell<'_> {
        if let Some(e) = &self.error {
            return Cell::GuestError(e);
        }
        self.run
            .as_ref()
            .and_then(|r| r.labs.iter().find(|l| l.id == id))
            .map_or(Cell::NotRun, Cell::Lab)
    }
}

impl MatrixReport {
    /// A matrix of these columns, stamped with the current schema version.
    pub fn new(columns: Vec<MatrixColumn>, duration_ms: u64) -> MatrixReport {
        MatrixReport {
            schema_version: SCHEMA_VERSION,
            columns,
            duration_ms,
        }
    }

    /// Lab ids in first-seen order across columns.
    pub fn lab_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = Vec::new();
        for run in self.columns.iter().filter_map(|c| c.run.as_ref()) {
            for lab in &run.labs {
                if !ids.contains(&lab.id) {
                    ids.push(lab.id.clone());
                }
            }
        }
        ids
    }
}
