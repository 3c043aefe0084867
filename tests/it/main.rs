//! Integration tests (one binary; one module per area).

mod copy_cli;
mod copy_distribution;
mod copy_matrix;
mod copy_retry;
mod distribution;
mod http_registry;
mod layout;
mod limits;
mod observability;
mod observability_daemon;
mod reliability;
mod support;
mod sync_jobs;
mod test_registry;
