//! One module per subcommand.

pub mod course;
pub mod drift;
pub mod exec;
pub mod grade;
pub mod gradescope_package;
pub mod kernel;
pub mod list;
pub mod matrix;
pub mod missing;
pub mod run;
pub mod snapshot;
pub mod suite;
