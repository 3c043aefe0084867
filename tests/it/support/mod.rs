//! Shared helpers for the integration tests.

pub mod cli;
pub mod distribution;
pub mod fixtures;
pub mod postgres;
pub mod registry;
pub mod values;
