//! Integration tests (one binary; one module per area).

mod distribution;
mod http_registry;
mod layout;
mod observability;
mod support;
mod test_registry;
