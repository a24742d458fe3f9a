//! One module per subcommand.

pub mod exec;
pub mod list;
pub mod run;
pub mod snapshot;
