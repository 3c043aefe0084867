//! Integration tests (one binary; one module per area).

mod cli_flags;
mod cli_output;
mod config_examples;
mod copy_cli;
mod copy_matrix;
mod copy_retry;
mod credentials;
mod distribution;
mod fail_fast;
mod http_registry;
mod interop;
mod interop_personalities;
mod interop_places;
mod layout;
mod limits;
mod listing_limits;
mod observability;
mod observability_daemon;
mod perf_requests;
mod progress_tty;
mod reliability;
mod slow_links;
mod support;
mod sync_jobs;
mod test_registry;
mod verify;
