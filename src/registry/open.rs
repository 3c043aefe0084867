//! The one factory of adapters: the HTTP adapter for a registry host, the
//! layout adapter for an `oci:<dir>` directory. `copy`, `once`, `serve` and
//! `plan` all open their sources and targets here, so a location reads the
//! same whichever command names it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::http::{HttpRegistry, HttpSettings, RequestObserver, RequestStats};
use super::layout::LayoutRegistry;
pub use super::layout::missing_source_layout;
use super::{Registry, RegistryError};
use crate::oci::Location;

/// The adapter for `location`: [`HttpRegistry`] for a registry (with
/// `http`), [`LayoutRegistry`] for an OCI layout directory (whose referrer
/// listing merges its fallback tags with a scan of `index.json`).
pub fn open(location: &Location, http: &HttpSettings) -> Result<Arc<dyn Registry>, RegistryError> {
    Ok(match location {
        Location::Registry(host) => Arc::new(HttpRegistry::new(host, http.clone())?),
        Location::Layout(dir) => Arc::new(LayoutRegistry::open(dir.clone())),
    })
}

/// The HTTP settings of a registry host.
pub type SettingsFor = dyn Fn(&str) -> HttpSettings + Send + Sync;

/// Every adapter a process uses, opened through [`open`] on first use and
/// kept: one HTTP adapter per host, so everything that talks to a registry
/// shares its rate limit, in-flight limit and tokens.
pub struct Registries {
    settings: Box<SettingsFor>,
    observer: Option<Arc<dyn RequestObserver>>,
    http: Mutex<HashMap<String, Arc<HttpRegistry>>>,
}

impl Registries {
    /// Adapters whose HTTP settings per host come from `settings`.
    pub fn new(settings: impl Fn(&str) -> HttpSettings + Send + Sync + 'static) -> Self {
        Registries {
            settings: Box::new(settings),
            observer: None,
            http: Mutex::new(HashMap::new()),
        }
    }

    /// Reports every HTTP request to `observer` (metrics).
    pub fn with_observer(mut self, observer: Arc<dyn RequestObserver>) -> Self {
        self.observer = Some(observer);
        self
    }

    /// The adapter for `location`.
    pub fn open(&self, location: &Location) -> Result<Arc<dyn Registry>, RegistryError> {
        match location {
            Location::Registry(host) => Ok(self.http(host)?),
            Location::Layout(_) => open(location, &HttpSettings::default()),
        }
    }

    /// Every repository of a registry (`_catalog`), for catalog jobs.
    pub async fn catalog(&self, host: &str) -> Result<Vec<String>, RegistryError> {
        self.http(host)?.catalog().await
    }

    /// Per registry host, the requests sent so far, sorted by host.
    pub fn request_stats(&self) -> Vec<(String, RequestStats)> {
        let map = self.http.lock().unwrap_or_else(|p| p.into_inner());
        let mut stats: Vec<_> = map.iter().map(|(h, r)| (h.clone(), r.stats())).collect();
        stats.sort_by(|a, b| a.0.cmp(&b.0));
        stats
    }

    fn http(&self, host: &str) -> Result<Arc<HttpRegistry>, RegistryError> {
        let mut map = self.http.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(r) = map.get(host) {
            return Ok(r.clone());
        }
        let mut registry = HttpRegistry::new(host, (self.settings)(host))?;
        if let Some(o) = &self.observer {
            registry = registry.with_observer(o.clone());
        }
        let registry = Arc::new(registry);
        map.insert(host.to_string(), registry.clone());
        Ok(registry)
    }
}
