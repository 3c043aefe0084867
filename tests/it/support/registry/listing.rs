//! Paged listings: tags, catalog, referrers.

use std::collections::HashMap;

use axum::response::Response;
use serde_json::{Value, json};

use super::http::{enc, err, query_get, reply};
use super::store::{self, OCI_INDEX};
use super::{Shared, lock};

/// Page `items` (sorted) after `last`, at most `min(n, server_max)`; returns the page and
/// whether more follow, or an error response for a bad `n`.
fn page(
    items: Vec<String>,
    q: &[(String, String)],
    server_max: Option<usize>,
) -> Result<(Vec<String>, Option<usize>), Box<Response>> {
    let n = match query_get(q, "n") {
        Some(v) => Some(v.parse::<usize>().map_err(|_| {
            Box::new(err(
                400,
                "PAGINATION_NUMBER_INVALID",
                "invalid number of results requested",
            ))
        })?),
        None => None,
    };
    let start: Vec<String> = match query_get(q, "last") {
        Some(last) => items.into_iter().filter(|t| t.as_str() > last).collect(),
        None => items,
    };
    let limit = match (n, server_max) {
        (Some(a), Some(b)) => a.min(b),
        (Some(a), None) => a,
        (None, Some(b)) => b,
        (None, None) => usize::MAX,
    };
    let more = limit > 0 && start.len() > limit;
    let page: Vec<String> = start.into_iter().take(limit).collect();
    Ok((page, more.then_some(n.unwrap_or(limit))))
}

fn link(path: &str, extra: &str) -> String {
    format!("<{path}?{extra}>; rel=\"next\"")
}

pub(super) fn tags_list(sh: &Shared, name: &str, q: &[(String, String)]) -> Response {
    let tags = {
        let st = lock(&sh.store);
        let Some(r) = st.repo(name) else {
            return err(404, "NAME_UNKNOWN", "repository name not known to registry");
        };
        r.tags.keys().cloned().collect::<Vec<_>>()
    };
    let (page, more) = match page(tags, q, sh.options.tag_page_size) {
        Ok(p) => p,
        Err(r) => return *r,
    };
    let mut headers = vec![("content-type", "application/json".to_string())];
    if let (Some(n), Some(last)) = (more, page.last()) {
        headers.push((
            "link",
            link(
                &format!("/v2/{name}/tags/list"),
                &format!("n={n}&last={}", enc(last)),
            ),
        ));
    }
    reply(
        200,
        &headers,
        json!({"name": name, "tags": page}).to_string(),
    )
}

pub(super) fn catalog(sh: &Shared, q: &[(String, String)]) -> Response {
    let repos = lock(&sh.store).repositories();
    let (page, more) = match page(repos, q, None) {
        Ok(p) => p,
        Err(r) => return *r,
    };
    let mut headers = vec![("content-type", "application/json".to_string())];
    if let (Some(n), Some(last)) = (more, page.last()) {
        headers.push((
            "link",
            link("/v2/_catalog", &format!("n={n}&last={}", enc(last))),
        ));
    }
    reply(200, &headers, json!({"repositories": page}).to_string())
}

pub(super) fn referrers(
    sh: &Shared,
    name: &str,
    subject: &str,
    q: &[(String, String)],
) -> Response {
    if !store::valid_digest(subject) {
        return err(400, "DIGEST_INVALID", "invalid digest");
    }
    let filter = query_get(q, "artifactType").filter(|f| !f.is_empty());
    let mut descriptors: HashMap<String, Value> = HashMap::new();
    let mut order = Vec::new();
    {
        let st = lock(&sh.store);
        let Some(r) = st.repo(name) else {
            return err(404, "NAME_UNKNOWN", "repository name not known to registry");
        };
        for d in r.referrers.get(subject).into_iter().flatten() {
            let Some((mt, bytes)) = r.manifests.get(d) else {
                continue;
            };
            let desc = store::referrer_descriptor(d, mt, bytes);
            if filter.is_some_and(|f| desc.get("artifactType").and_then(Value::as_str) != Some(f)) {
                continue;
            }
            order.push(d.clone());
            descriptors.insert(d.clone(), desc);
        }
    }
    let (page, more) = match page(order, q, sh.options.referrers_page_size) {
        Ok(p) => p,
        Err(r) => return *r,
    };
    let mut headers = vec![("content-type", OCI_INDEX.to_string())];
    if filter.is_some() {
        headers.push(("oci-filters-applied", "artifactType".into()));
    }
    if let (Some(n), Some(last)) = (more, page.last()) {
        let mut extra = format!("n={n}&last={}", enc(last));
        if let Some(f) = filter {
            extra.push_str(&format!("&artifactType={}", enc(f)));
        }
        headers.push((
            "link",
            link(&format!("/v2/{name}/referrers/{subject}"), &extra),
        ));
    }
    let manifests: Vec<Value> = page.iter().filter_map(|d| descriptors.remove(d)).collect();
    let body = json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests});
    reply(200, &headers, body.to_string())
}
