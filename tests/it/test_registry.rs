//! Tests of the test registry itself, driven with plain reqwest (no ocimirror code), to prove
//! the oracle is right.

use std::time::{Duration, SystemTime};

use reqwest::{Client, StatusCode};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

use crate::support::registry::{Auth, Fault, FaultKind, Options, RetryAfter, TestRegistry};

mod auth;
mod faults;
mod skopeo;
mod uploads;

pub(crate) const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub(crate) const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

pub(crate) fn client() -> Client {
    Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

fn sha(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

pub(crate) fn desc(media_type: &str, bytes: &[u8]) -> Value {
    json!({"mediaType": media_type, "digest": sha(bytes), "size": bytes.len()})
}

/// An image manifest over `config` and `layers`, optionally with a subject and artifactType.
pub(crate) fn image(
    config: &[u8],
    layers: &[&[u8]],
    subject: Option<&Value>,
    artifact_type: Option<&str>,
) -> Vec<u8> {
    let mut m = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": desc(CONFIG, config),
        "layers": layers.iter().map(|l| desc(LAYER, l)).collect::<Vec<_>>(),
        "annotations": {"org.example.note": "hello", "org.opencontainers.image.created": "2026-01-01T00:00:00Z"},
    });
    if let Some(s) = subject {
        m["subject"] = s.clone();
    }
    if let Some(a) = artifact_type {
        m["artifactType"] = json!(a);
    }
    serde_json::to_vec(&m).unwrap()
}

/// Seed config+layer blobs and an image manifest under `tag`; returns (manifest bytes, digest).
pub(crate) fn seed_image(
    reg: &TestRegistry,
    repo: &str,
    tag: &str,
    layer: &[u8],
) -> (Vec<u8>, String) {
    let config = br#"{"architecture":"amd64","os":"linux"}"#;
    reg.put_blob(repo, config);
    reg.put_blob(repo, layer);
    let m = image(config, &[layer], None, None);
    let d = reg.put_manifest(repo, tag, OCI_MANIFEST, &m);
    (m, d)
}

async fn put_manifest(
    c: &Client,
    reg: &TestRegistry,
    repo: &str,
    reference: &str,
    mt: &str,
    body: &[u8],
) -> reqwest::Response {
    c.put(format!("{}/v2/{repo}/manifests/{reference}", reg.url()))
        .header("content-type", mt)
        .body(body.to_vec())
        .send()
        .await
        .unwrap()
}

async fn error_codes(r: reqwest::Response) -> Vec<String> {
    let v: Value = json_of(r).await;
    v["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["code"].as_str().unwrap().to_string())
        .collect()
}

async fn json_of(r: reqwest::Response) -> Value {
    serde_json::from_slice(&r.bytes().await.unwrap()).unwrap()
}

pub(crate) fn h(r: &reqwest::Response, name: &str) -> Option<String> {
    r.headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_string())
}

#[tokio::test]
async fn manifest_with_missing_blob_is_refused_then_accepted() {
    let reg = TestRegistry::start(Options::default()).await;
    let c = client();
    let config = b"{}";
    let layer = b"layer-bytes";
    reg.put_blob("a/b", config);
    let m = image(config, &[layer], None, None);

    let r = put_manifest(&c, &reg, "a/b", "v1", OCI_MANIFEST, &m).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let v: Value = json_of(r).await;
    assert_eq!(v["errors"][0]["code"], "MANIFEST_BLOB_UNKNOWN");
    assert_eq!(v["errors"][0]["detail"]["digest"], sha(layer));
    assert_eq!(v["errors"].as_array().unwrap().len(), 1);
    assert!(reg.manifest("a/b", "v1").is_none());

    reg.put_blob("a/b", layer);
    // Content-Type must match the body's mediaType.
    let r = put_manifest(&c, &reg, "a/b", "v1", OCI_INDEX, &m).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(error_codes(r).await, ["MANIFEST_INVALID"]);
    let r = put_manifest(
        &c,
        &reg,
        "a/b",
        "v1",
        "application/vnd.oci.artifact.manifest.v1+json",
        &m,
    )
    .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);

    let r = put_manifest(&c, &reg, "a/b", "v1", OCI_MANIFEST, &m).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(h(&r, "docker-content-digest").unwrap(), sha(&m));
    assert_eq!(
        h(&r, "location").unwrap(),
        format!("/v2/a/b/manifests/{}", sha(&m))
    );
    assert!(h(&r, "oci-subject").is_none());
    assert_eq!(
        reg.manifest("a/b", "v1").unwrap(),
        (OCI_MANIFEST.to_string(), m.clone())
    );
    assert_eq!(reg.tags("a/b"), ["v1"]);

    let r = c
        .get(format!("{}/v2/a/b/manifests/v1", reg.url()))
        .header("accept", OCI_MANIFEST)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(h(&r, "content-type").unwrap(), OCI_MANIFEST);
    assert_eq!(h(&r, "etag").unwrap(), format!("\"{}\"", sha(&m)));
    assert_eq!(r.bytes().await.unwrap().to_vec(), m);
    let r = c
        .head(format!("{}/v2/a/b/manifests/{}", reg.url(), sha(&m)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(h(&r, "content-length").unwrap(), m.len().to_string());
    assert_eq!(h(&r, "docker-content-digest").unwrap(), sha(&m));
    assert_eq!(h(&r, "content-type").unwrap(), OCI_MANIFEST);
    // An Accept that excludes the stored type hides it, like distribution.
    let r = c
        .get(format!("{}/v2/a/b/manifests/v1", reg.url()))
        .header(
            "accept",
            "application/vnd.docker.distribution.manifest.v2+json",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);

    // By-digest PUT must hash to the URL digest.
    let r = put_manifest(&c, &reg, "a/b", &sha(b"other"), OCI_MANIFEST, &m).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(error_codes(r).await, ["DIGEST_INVALID"]);
    // Over 4 MiB is refused.
    let big = vec![b' '; (4 << 20) + 1];
    let r = put_manifest(&c, &reg, "a/b", "big", OCI_MANIFEST, &big).await;
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn index_with_missing_child_is_refused() {
    let reg = TestRegistry::start(Options::default()).await;
    let c = client();
    let (m, d) = seed_image(&reg, "r", "child", b"l1");
    let missing = image(b"{}", &[], None, None);
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": OCI_INDEX,
        "manifests": [
            {"mediaType": OCI_MANIFEST, "digest": d, "size": m.len()},
            desc(OCI_MANIFEST, &missing),
        ],
    }))
    .unwrap();
    let r = put_manifest(&c, &reg, "r", "idx", OCI_INDEX, &index).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let v: Value = json_of(r).await;
    assert_eq!(v["errors"][0]["code"], "MANIFEST_BLOB_UNKNOWN");
    assert_eq!(v["errors"][0]["detail"]["digest"], sha(&missing));
    assert!(reg.manifest("r", "idx").is_none());
    // A blob with that digest is not a manifest.
    reg.put_blob("r", &missing);
    let r = put_manifest(&c, &reg, "r", "idx", OCI_INDEX, &index).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    reg.put_manifest("r", &sha(&missing), OCI_MANIFEST, &missing);
    let r = put_manifest(&c, &reg, "r", "idx", OCI_INDEX, &index).await;
    assert_eq!(r.status(), StatusCode::CREATED);
}

#[tokio::test]
async fn referrer_with_absent_subject_is_accepted_listed_and_filtered() {
    let reg = TestRegistry::start(Options::default()).await;
    let c = client();
    let subject_bytes = image(b"{\"x\":1}", &[], None, None);
    let subject = desc(OCI_MANIFEST, &subject_bytes);
    let sd = sha(&subject_bytes);
    reg.put_blob("r", b"{}");
    reg.put_blob("r", b"sig");
    let sig = image(
        b"{}",
        &[b"sig"],
        Some(&subject),
        Some("application/vnd.example.sig"),
    );
    // No artifactType: derived from config.mediaType.
    let sbom = image(b"{}", &[], Some(&subject), None);

    let r = put_manifest(&c, &reg, "r", &sha(&sig), OCI_MANIFEST, &sig).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(h(&r, "oci-subject").unwrap(), sd);
    let r = put_manifest(&c, &reg, "r", &sha(&sbom), OCI_MANIFEST, &sbom).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    assert!(reg.manifest("r", &sd).is_none());

    let r = c
        .get(format!("{}/v2/r/referrers/{sd}", reg.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(h(&r, "content-type").unwrap(), OCI_INDEX);
    assert!(h(&r, "oci-filters-applied").is_none());
    let v: Value = json_of(r).await;
    assert_eq!(v["mediaType"], OCI_INDEX);
    let list = v["manifests"].as_array().unwrap();
    assert_eq!(list.len(), 2);
    let by = |d: &str| list.iter().find(|e| e["digest"] == d).unwrap().clone();
    let s = by(&sha(&sig));
    assert_eq!(s["artifactType"], "application/vnd.example.sig");
    assert_eq!(s["size"], sig.len());
    assert_eq!(s["mediaType"], OCI_MANIFEST);
    assert_eq!(s["annotations"]["org.example.note"], "hello");
    assert_eq!(by(&sha(&sbom))["artifactType"], CONFIG);

    let r = c
        .get(format!(
            "{}/v2/r/referrers/{sd}?artifactType=application/vnd.example.sig",
            reg.url()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(h(&r, "oci-filters-applied").unwrap(), "artifactType");
    let v: Value = json_of(r).await;
    assert_eq!(v["manifests"].as_array().unwrap().len(), 1);
    assert_eq!(v["manifests"][0]["digest"], sha(&sig));

    // An index referrer without artifactType is listed without one.
    let idx = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [], "subject": subject,
        "annotations": {"k": "v"},
    }))
    .unwrap();
    let r = put_manifest(&c, &reg, "r", &sha(&idx), OCI_INDEX, &idx).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(h(&r, "oci-subject").unwrap(), sd);
    let r = c
        .get(format!("{}/v2/r/referrers/{sd}", reg.url()))
        .send()
        .await
        .unwrap();
    let v = json_of(r).await;
    let i = v["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["digest"] == sha(&idx))
        .unwrap()
        .clone();
    assert_eq!(
        i,
        json!({"mediaType": OCI_INDEX, "digest": sha(&idx), "size": idx.len(), "annotations": {"k": "v"}})
    );
    assert!(
        c.delete(format!("{}/v2/r/manifests/{}", reg.url(), sha(&idx)))
            .send()
            .await
            .unwrap()
            .status()
            .is_success()
    );

    // Unknown digest: empty list; bad digest: 400.
    let r = c
        .get(format!(
            "{}/v2/r/referrers/sha256:{}",
            reg.url(),
            "0".repeat(64)
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(json_of(r).await["manifests"], json!([]));
    let r = c
        .get(format!("{}/v2/r/referrers/sha256:ABC", reg.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    // Unknown repository.
    let r = c
        .get(format!("{}/v2/nope/referrers/{sd}", reg.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(error_codes(r).await, ["NAME_UNKNOWN"]);

    // Deleting a referrer removes it from the list.
    let r = c
        .delete(format!("{}/v2/r/manifests/{}", reg.url(), sha(&sig)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    assert_eq!(reg.referrers("r", &sd), [sha(&sbom)]);
}

#[tokio::test]
async fn referrers_api_off_answers_plain_404_and_no_oci_subject() {
    let reg = TestRegistry::start(Options {
        referrers_api: false,
        ..Options::default()
    })
    .await;
    let c = client();
    reg.put_blob("r", b"{}");
    let subject = desc(OCI_MANIFEST, b"whatever");
    let m = image(b"{}", &[], Some(&subject), None);
    let r = put_manifest(&c, &reg, "r", "t", OCI_MANIFEST, &m).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    assert!(h(&r, "oci-subject").is_none());
    let r = c
        .get(format!("{}/v2/r/referrers/{}", reg.url(), sha(b"whatever")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert!(h(&r, "content-type").unwrap().starts_with("text/plain"));
    assert_eq!(r.text().await.unwrap(), "404 page not found\n");
    // Switching it on lists what was pushed while off.
    reg.set_referrers_api(true);
    let r = c
        .get(format!("{}/v2/r/referrers/{}", reg.url(), sha(b"whatever")))
        .send()
        .await
        .unwrap();
    assert_eq!(json_of(r).await["manifests"][0]["digest"], sha(&m));
}

/// Follow `Link` headers from `first`, collecting `field` arrays.
async fn follow_pages(
    c: &Client,
    reg: &TestRegistry,
    first: &str,
    field: &str,
) -> (Vec<Value>, usize) {
    let mut url = format!("{}{first}", reg.url());
    let mut all = Vec::new();
    let mut pages = 0;
    loop {
        let r = c.get(&url).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        let link = h(&r, "link");
        let v: Value = json_of(r).await;
        all.extend(v[field].as_array().unwrap().iter().cloned());
        pages += 1;
        match link {
            Some(l) => {
                let path = l.trim_start_matches('<').split('>').next().unwrap();
                assert!(path.starts_with("/v2/"), "relative link: {l}");
                assert!(l.ends_with("rel=\"next\""));
                url = format!("{}{path}", reg.url());
            }
            None => break,
        }
    }
    (all, pages)
}

#[tokio::test]
async fn tags_and_referrers_paginate_with_link() {
    let reg = TestRegistry::start(Options {
        tag_page_size: Some(2),
        referrers_page_size: Some(2),
        ..Options::default()
    })
    .await;
    let c = client();
    reg.put_blob("r", b"{}");
    let subject = desc(OCI_MANIFEST, b"s");
    for t in ["e", "a", "c", "b", "d"] {
        let m = image(
            b"{}",
            &[],
            Some(&subject),
            Some(&format!("application/x-{t}")),
        );
        reg.put_manifest("r", t, OCI_MANIFEST, &m);
    }
    let (tags, pages) = follow_pages(&c, &reg, "/v2/r/tags/list", "tags").await;
    assert_eq!(tags, ["a", "b", "c", "d", "e"].map(|t| json!(t)));
    assert_eq!(pages, 3);
    let (refs, pages) = follow_pages(
        &c,
        &reg,
        &format!("/v2/r/referrers/{}", sha(b"s")),
        "manifests",
    )
    .await;
    assert_eq!(refs.len(), 5);
    assert_eq!(pages, 3);

    // n smaller than the server page; n=0; last.
    let r = c
        .get(format!("{}/v2/r/tags/list?n=1", reg.url()))
        .send()
        .await
        .unwrap();
    assert!(h(&r, "link").unwrap().contains("n=1&last=a"));
    assert_eq!(json_of(r).await["tags"], json!(["a"]));
    let r = c
        .get(format!("{}/v2/r/tags/list?n=0", reg.url()))
        .send()
        .await
        .unwrap();
    assert!(h(&r, "link").is_none());
    assert_eq!(json_of(r).await["tags"], json!([]));
    let r = c
        .get(format!("{}/v2/r/tags/list?last=c", reg.url()))
        .send()
        .await
        .unwrap();
    assert!(h(&r, "link").is_none());
    assert_eq!(json_of(r).await["tags"], json!(["d", "e"]));
    let r = c
        .get(format!("{}/v2/nope/tags/list", reg.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(error_codes(r).await, ["NAME_UNKNOWN"]);
}

async fn post_upload(c: &Client, reg: &TestRegistry, repo: &str, query: &str) -> reqwest::Response {
    c.post(format!("{}/v2/{repo}/blobs/uploads/{query}", reg.url()))
        .header("content-length", "0")
        .send()
        .await
        .unwrap()
}
