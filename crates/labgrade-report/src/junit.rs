//! JUnit XML, for CI systems that show test results: one test case per lab.

use quick_junit::{NonSuccessKind, Report, TestCase, TestCaseStatus, TestSuite};
use std::time::Duration;

use crate::model::{CheckStatus, LabStatus, RunReport};

/// Renders a run as a JUnit report with one suite (the guest) and one case per lab.
pub fn render_junit(report: &RunReport) -> Result<String, quick_junit::SerializeError> {
    let mut junit = Report::new("labgrade");
    let mut suite = TestSuite::new(format!("labgrade@{}", report.guest));
    for lab in &report.labs {
        let status = match lab.status {
            LabStatus::Pass => TestCaseStatus::success(),
            LabStatus::Skip => {
                let mut s = TestCaseStatus::skipped();
                if let Some(r) = &lab.reason {
                    s.set_message(r.as_str());
                }
                s
            }
            LabStatus::Fail | LabStatus::Error => {
                let kind = if lab.status == LabStatus::Fail {
                    NonSuccessKind::Failure
                } else {
                    NonSuccessKind::Error
                };
                let mut s = TestCaseStatus::non_success(kind);
                let failed: Vec<String> = lab
                    .checks()
                    .filter(|c| c.status == CheckStatus::Fail)
                    .map(|c| {
                        format!(
                            "{} {}: expected {}, actual {}",
                            c.subject, c.fact, c.expected, c.actual
                        )
                    })
                    .collect();
                let message = lab
                    .reason
                    .clone()
                    .or_else(|| failed.first().cloned())
                    .unwrap_or_default();
                s.set_message(message);
                s.set_description(failed.join("\n"));
                s
            }
        };
        let mut case = TestCase::new(lab.id.as_str(), status);
        case.set_classname(lab.file.as_str());
        case.set_time(Duration::from_millis(lab.duration_ms));
        suite.add_test_case(case);
    }
    junit.add_test_suite(suite);
    junit.to_string()
}
