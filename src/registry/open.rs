//! Choosing an adapter for a location: the HTTP adapter for a registry
//! host, the layout adapter for an `oci:<dir>` directory. The one factory:
//! every caller (commands, jobs) gets the same adapter for a location, so a
//! layout reads the same referrers whoever opens it.

use std::sync::Arc;

use super::http::{HttpRegistry, HttpSettings};
use super::layout::LayoutRegistry;
use super::{Registry, RegistryError};
use crate::oci::Location;

/// The adapter for `location`: [`HttpRegistry`] for a registry (with
/// `http`), [`LayoutRegistry`] for an OCI layout directory.
pub fn open(location: &Location, http: &HttpSettings) -> Result<Arc<dyn Registry>, RegistryError> {
    Ok(match location {
        Location::Registry(host) => Arc::new(HttpRegistry::new(host, http.clone())?),
        Location::Layout(dir) => Arc::new(LayoutRegistry::open(dir.clone())),
    })
}
