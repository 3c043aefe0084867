//! Blob upload sessions: POST, PATCH, PUT, status, cancel, mount.

use std::sync::atomic::Ordering;

use axum::body::Body;
use axum::extract::Request;
use axum::http::HeaderMap;
use axum::response::Response;
use bytes::Bytes;
use rand::Rng as _;

use super::http::{err, header, query_get, read_body, reply};
use super::store;
use super::{Shared, lock};

fn session_headers(sh: &Shared, name: &str, id: &str, len: usize) -> Vec<(&'static str, String)> {
    vec![
        (
            "location",
            sh.location(&format!("/v2/{name}/blobs/uploads/{id}")),
        ),
        ("range", format!("0-{}", len.saturating_sub(1))),
        ("docker-upload-uuid", id.to_string()),
    ]
}

/// Verify `data` against `digest` and commit it, or explain why not.
fn commit(sh: &Shared, name: &str, digest: Option<&str>, data: Bytes) -> Response {
    let Some(digest) = digest.filter(|d| store::valid_digest(d)) else {
        return err(400, "DIGEST_INVALID", "missing or invalid digest parameter");
    };
    match store::digest_with_alg_of(digest, &data) {
        Some(d) if d == digest => {}
        Some(_) => {
            return err(
                400,
                "DIGEST_INVALID",
                "provided digest did not match uploaded content",
            );
        }
        None => return err(400, "DIGEST_INVALID", "unsupported digest algorithm"),
    }
    lock(&sh.store).put_blob(name, digest, data);
    reply(
        201,
        &[
            (
                "location",
                sh.location(&format!("/v2/{name}/blobs/{digest}")),
            ),
            ("docker-content-digest", digest.to_string()),
        ],
        Body::empty(),
    )
}

pub(super) async fn upload_start(
    sh: &Shared,
    name: &str,
    q: &[(String, String)],
    req: Request,
) -> Response {
    if let (Some(mount), Some(from)) = (query_get(q, "mount"), query_get(q, "from"))
        && sh.mount.load(Ordering::SeqCst)
        && store::valid_digest(mount)
        && store::valid_name(from)
    {
        let mut st = lock(&sh.store);
        if let Some(b) = st.blob(from, mount) {
            st.put_blob(name, mount, b);
            return reply(
                201,
                &[
                    (
                        "location",
                        sh.location(&format!("/v2/{name}/blobs/{mount}")),
                    ),
                    ("docker-content-digest", mount.to_string()),
                ],
                Body::empty(),
            );
        }
    }
    let digest = query_get(q, "digest").map(str::to_string);
    let body = match read_body(req).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    if digest.is_some() && query_get(q, "mount").is_none() {
        // Single-POST upload.
        return commit(sh, name, digest.as_deref(), body);
    }
    if !body.is_empty() {
        return err(
            400,
            "BLOB_UPLOAD_INVALID",
            "POST without digest must not carry a body",
        );
    }
    let id = hex::encode(rand::rng().random::<[u8; 16]>());
    lock(&sh.store).uploads.insert(
        id.clone(),
        store::Upload {
            repo: name.to_string(),
            data: Vec::new(),
        },
    );
    reply(202, &session_headers(sh, name, &id, 0), Body::empty())
}

fn unknown_upload() -> Response {
    err(
        404,
        "BLOB_UPLOAD_UNKNOWN",
        "blob upload unknown to registry",
    )
}

/// Check `Content-Range: <start>-<end>` against the session offset and chunk length.
fn check_range(h: &HeaderMap, offset: usize, len: usize) -> Result<(), u16> {
    let Some(v) = header(h, "content-range") else {
        return Ok(());
    };
    let (a, b) = v.trim().split_once('-').ok_or(400u16)?;
    let (a, b): (usize, usize) = (
        a.parse().map_err(|_| 400u16)?,
        b.parse().map_err(|_| 400u16)?,
    );
    if a != offset {
        return Err(416);
    }
    if b + 1 < a || b + 1 - a != len {
        return Err(400);
    }
    Ok(())
}

pub(super) async fn upload_patch(sh: &Shared, name: &str, id: &str, req: Request) -> Response {
    let h = req.headers().clone();
    let body = match read_body(req).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let mut st = lock(&sh.store);
    let Some(u) = st.uploads.get_mut(id).filter(|u| u.repo == name) else {
        return unknown_upload();
    };
    match check_range(&h, u.data.len(), body.len()) {
        Ok(()) => {}
        Err(416) => {
            let hs = session_headers(sh, name, id, u.data.len());
            let mut r = err(
                416,
                "BLOB_UPLOAD_INVALID",
                "content range does not continue the upload",
            );
            for (k, v) in hs {
                r.headers_mut().insert(k, v.parse().unwrap());
            }
            return r;
        }
        Err(_) => return err(400, "BLOB_UPLOAD_INVALID", "invalid Content-Range"),
    }
    u.data.extend_from_slice(&body);
    let len = u.data.len();
    drop(st);
    reply(202, &session_headers(sh, name, id, len), Body::empty())
}

pub(super) async fn upload_put(
    sh: &Shared,
    name: &str,
    id: &str,
    q: &[(String, String)],
    req: Request,
) -> Response {
    let h = req.headers().clone();
    let body = match read_body(req).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let upload = {
        let mut st = lock(&sh.store);
        let Some(u) = st.uploads.get(id).filter(|u| u.repo == name) else {
            return unknown_upload();
        };
        if !body.is_empty() {
            match check_range(&h, u.data.len(), body.len()) {
                Ok(()) => {}
                Err(416) => {
                    return err(
                        416,
                        "BLOB_UPLOAD_INVALID",
                        "content range does not continue the upload",
                    );
                }
                Err(_) => return err(400, "BLOB_UPLOAD_INVALID", "invalid Content-Range"),
            }
        }
        // Commit or fail: either way the session is over (distribution cancels on error).
        st.uploads.remove(id)
    };
    let Some(mut u) = upload else {
        return unknown_upload();
    };
    // Monolithic uploads (nothing PATCHed before) commit the body without another copy.
    let data = if u.data.is_empty() {
        body
    } else {
        u.data.extend_from_slice(&body);
        Bytes::from(u.data)
    };
    commit(sh, name, query_get(q, "digest"), data)
}

pub(super) fn upload_status(sh: &Shared, name: &str, id: &str) -> Response {
    let st = lock(&sh.store);
    match st.uploads.get(id).filter(|u| u.repo == name) {
        Some(u) => reply(
            204,
            &session_headers(sh, name, id, u.data.len()),
            Body::empty(),
        ),
        None => unknown_upload(),
    }
}

pub(super) fn upload_cancel(sh: &Shared, name: &str, id: &str) -> Response {
    let mut st = lock(&sh.store);
    if st.uploads.get(id).is_some_and(|u| u.repo == name) {
        st.uploads.remove(id);
        reply(204, &[], Body::empty())
    } else {
        unknown_upload()
    }
}
