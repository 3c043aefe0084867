//! Command implementations behind `src/main.rs`. Each command is a clap
//! `Args` struct plus a `run` function returning a typed result; `main`
//! only parses, sets up logging and maps the outcome to an exit code.

pub mod copy;
pub mod deletions;
pub mod exit;
pub mod generate;
pub mod jobs;
pub mod output;
pub mod progress;
pub mod selection;
pub mod serve;
pub mod status;
pub mod verify;
