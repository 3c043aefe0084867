//! Integration tests (one binary; one module per area).

mod copy_cli;
mod copy_distribution;
mod copy_matrix;
mod copy_retry;
mod credentials;
mod distribution;
mod http_registry;
mod layout;
mod observability;
mod observability_daemon;
mod reliability;
mod slow_links;
mod support;
mod sync_jobs;
mod test_registry;
