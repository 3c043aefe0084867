//! The process exit status of every command, in one place (documented in
//! `--help` and the README).

use crate::app::AppError;
use crate::config::{ConfigErrors, EXIT_INVALID_CONFIG};

use super::copy::CopyCommandError;

/// Everything asked for was done.
pub const SUCCESS: u8 = 0;
/// Some images failed or are still backing off; the rest were copied.
pub const PARTIAL: u8 = 1;
/// Bad arguments or flags (clap uses 2 for its own usage errors too).
pub const USAGE: u8 = 2;
/// The command could not run at all.
pub const FATAL: u8 = 3;
/// The configuration is invalid (`EX_CONFIG`).
pub const CONFIG: u8 = EXIT_INVALID_CONFIG;

/// The exit status for an error that stopped a command.
pub fn for_error(e: &anyhow::Error) -> u8 {
    // A job name the config does not have is a mismatch with the config,
    // like an invalid one.
    if e.downcast_ref::<ConfigErrors>().is_some()
        || matches!(
            e.downcast_ref::<AppError>(),
            Some(AppError::Config(_) | AppError::UnknownJob { .. })
        )
        || matches!(
            e.downcast_ref::<CopyCommandError>(),
            Some(CopyCommandError::Config(_))
        )
    {
        CONFIG
    } else if matches!(
        e.downcast_ref::<CopyCommandError>(),
        Some(CopyCommandError::Usage(_))
    ) {
        USAGE
    } else {
        FATAL
    }
}
