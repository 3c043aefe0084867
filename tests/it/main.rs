//! Integration tests (one binary; one module per area).

mod layout;
mod support;
mod test_registry;
