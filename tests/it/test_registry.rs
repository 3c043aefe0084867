//! Tests of the test registry itself, driven with plain reqwest (no ocimirror code), to prove
//! the oracle is right.

use std::time::{Duration, SystemTime};

use reqwest::{Client, StatusCode};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

use crate::support::registry::{Auth, Fault, FaultKind, Options, RetryAfter, TestRegistry};

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

#[tokio::test]
async fn monolithic_upload_commits_only_verified_content() {
    let reg = TestRegistry::start(Options::default()).await;
    let c = client();
    let data = b"blob-content".to_vec();

    let r = post_upload(&c, &reg, "r", "").await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let loc = h(&r, "location").unwrap();
    assert!(loc.starts_with("/v2/r/blobs/uploads/"));
    assert_eq!(reg.open_uploads(), 1);
    let r = c
        .put(format!(
            "{}{loc}?digest={}",
            reg.url(),
            sha(b"something else")
        ))
        .body(data.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(error_codes(r).await, ["DIGEST_INVALID"]);
    assert!(reg.blob("r", &sha(&data)).is_none());
    assert!(reg.blob("r", &sha(b"something else")).is_none());
    assert_eq!(reg.open_uploads(), 0);

    let r = post_upload(&c, &reg, "r", "").await;
    let loc = h(&r, "location").unwrap();
    let r = c
        .put(format!("{}{loc}?digest={}", reg.url(), sha(&data)))
        .body(data.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(
        h(&r, "location").unwrap(),
        format!("/v2/r/blobs/{}", sha(&data))
    );
    assert_eq!(h(&r, "docker-content-digest").unwrap(), sha(&data));
    assert_eq!(reg.blob("r", &sha(&data)).unwrap(), data);

    let r = c
        .get(format!("{}/v2/r/blobs/{}", reg.url(), sha(&data)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.bytes().await.unwrap().to_vec(), data);
    let r = c
        .get(format!("{}/v2/r/blobs/{}", reg.url(), sha(&data)))
        .header("range", "bytes=5-")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(
        h(&r, "content-range").unwrap(),
        format!("bytes 5-11/{}", data.len())
    );
    assert_eq!(r.bytes().await.unwrap().to_vec(), data[5..].to_vec());
    let r = c
        .head(format!("{}/v2/r/blobs/{}", reg.url(), sha(&data)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(h(&r, "content-length").unwrap(), data.len().to_string());
    assert_eq!(h(&r, "docker-content-digest").unwrap(), sha(&data));
    let r = c
        .head(format!("{}/v2/r/blobs/{}", reg.url(), sha(b"nope")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let r = c
        .delete(format!("{}/v2/r/blobs/{}", reg.url(), sha(&data)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    assert!(reg.blob("r", &sha(&data)).is_none());
}

#[tokio::test]
async fn chunked_upload_rejects_out_of_order_chunks() {
    let reg = TestRegistry::start(Options {
        relative_locations: false,
        ..Options::default()
    })
    .await;
    let c = client();
    let data = b"0123456789".to_vec();
    let r = post_upload(&c, &reg, "r", "").await;
    let loc = h(&r, "location").unwrap();
    assert!(loc.starts_with(&format!("{}/v2/r/blobs/uploads/", reg.url())));
    assert_eq!(h(&r, "range").unwrap(), "0-0");

    let r = c
        .patch(&loc)
        .header("content-range", "0-3")
        .body(data[..4].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    assert_eq!(h(&r, "range").unwrap(), "0-3");
    let loc = h(&r, "location").unwrap();
    let r = c
        .patch(&loc)
        .header("content-range", "6-9")
        .body(data[6..].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    let r = c.get(&loc).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(h(&r, "range").unwrap(), "0-3");
    let r = c
        .patch(&loc)
        .header("content-range", "4-5")
        .body(data[4..6].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    assert!(reg.blob("r", &sha(&data)).is_none());
    let r = c
        .put(format!("{loc}?digest={}", sha(&data)))
        .header("content-range", "6-9")
        .body(data[6..].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(reg.blob("r", &sha(&data)).unwrap(), data);
    assert_eq!(reg.open_uploads(), 0);

    // Cancel.
    let r = post_upload(&c, &reg, "r", "").await;
    let loc = h(&r, "location").unwrap();
    assert_eq!(
        c.delete(&loc).send().await.unwrap().status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(reg.open_uploads(), 0);
    assert_eq!(
        c.get(&loc).send().await.unwrap().status(),
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn mount_answers_201_when_possible_else_202_session() {
    let reg = TestRegistry::start(Options::default()).await;
    let c = client();
    let d = reg.put_blob("src", b"shared");
    let r = post_upload(&c, &reg, "dst", &format!("?mount={d}&from=src")).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(h(&r, "location").unwrap(), format!("/v2/dst/blobs/{d}"));
    assert_eq!(reg.blob("dst", &d).unwrap(), b"shared");
    assert_eq!(reg.open_uploads(), 0);

    let missing = sha(b"missing");
    let r = post_upload(&c, &reg, "dst", &format!("?mount={missing}&from=src")).await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    assert_eq!(reg.open_uploads(), 1);

    reg.set_mount(false);
    let r = post_upload(&c, &reg, "dst2", &format!("?mount={d}&from=src")).await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    assert!(reg.blob("dst2", &d).is_none());
    assert_eq!(reg.open_uploads(), 2);
}

fn scope_of(challenge: &str) -> String {
    challenge
        .split("scope=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_string()
}

async fn token(
    c: &Client,
    reg: &TestRegistry,
    scopes: &[&str],
    creds: Option<(&str, &str)>,
) -> String {
    let mut req = c
        .get(format!("{}/token", reg.url()))
        .query(&[("service", "test-registry")]);
    for s in scopes {
        req = req.query(&[("scope", s)]);
    }
    if let Some((u, p)) = creds {
        req = req.basic_auth(u, Some(p));
    }
    let r = req.send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let v: Value = json_of(r).await;
    assert!(v["expires_in"].as_u64().is_some());
    assert!(v["issued_at"].as_str().unwrap().ends_with('Z'));
    v["token"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn bearer_auth_checks_scopes() {
    let reg = TestRegistry::start(Options {
        auth: Some(Auth {
            anonymous_pull: true,
            ..Auth::bearer("u", "p")
        }),
        ..Options::default()
    })
    .await;
    let c = client();
    let d = reg.put_blob("src", b"x");
    reg.put_blob("r", b"y");

    let r = c.get(format!("{}/v2/", reg.url())).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let ch = h(&r, "www-authenticate").unwrap();
    assert!(ch.starts_with(&format!(
        "Bearer realm=\"http://{}/token\",service=\"test-registry\"",
        reg.host()
    )));

    let r = post_upload(&c, &reg, "r", "").await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let ch = h(&r, "www-authenticate").unwrap();
    assert_eq!(scope_of(&ch), "repository:r:pull,push");

    // Anonymous: pull only, push denied with insufficient_scope.
    let anon = token(&c, &reg, &["repository:r:pull,push"], None).await;
    let r = c
        .get(format!("{}/v2/r/blobs/{}", reg.url(), sha(b"y")))
        .bearer_auth(&anon)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = c
        .post(format!("{}/v2/r/blobs/uploads/", reg.url()))
        .bearer_auth(&anon)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(
        h(&r, "www-authenticate")
            .unwrap()
            .contains("error=\"insufficient_scope\"")
    );
    // The OAuth2 POST form is not offered.
    let r = c
        .post(format!("{}/token", reg.url()))
        .body("grant_type=password")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    // Wrong credentials at the token server.
    let r = c
        .get(format!("{}/token?scope=repository:r:pull", reg.url()))
        .basic_auth("u", Some("bad"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // Unknown token.
    let r = c
        .get(format!("{}/v2/r/tags/list", reg.url()))
        .bearer_auth("forged")
        .send()
        .await
        .unwrap();
    assert!(
        h(&r, "www-authenticate")
            .unwrap()
            .contains("error=\"invalid_token\"")
    );

    // Mount needs pull on the source too.
    let push = token(&c, &reg, &["repository:r:pull,push"], Some(("u", "p"))).await;
    let r = c
        .post(format!(
            "{}/v2/r/blobs/uploads/?mount={d}&from=src",
            reg.url()
        ))
        .bearer_auth(&push)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        scope_of(&h(&r, "www-authenticate").unwrap()),
        "repository:r:pull,push repository:src:pull"
    );
    let both = token(
        &c,
        &reg,
        &["repository:r:pull,push", "repository:src:pull"],
        Some(("u", "p")),
    )
    .await;
    let r = c
        .post(format!(
            "{}/v2/r/blobs/uploads/?mount={d}&from=src",
            reg.url()
        ))
        .bearer_auth(&both)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);

    // The log has the scheme, never the credential.
    let log = reg.log();
    assert!(
        log.iter()
            .any(|l| l.auth_scheme.as_deref() == Some("Bearer"))
    );
    assert!(
        log.iter()
            .any(|l| l.auth_scheme.as_deref() == Some("Basic") && l.path == "/token")
    );
    let dump = format!("{log:?}");
    for t in reg.issued_tokens() {
        assert!(!dump.contains(&t));
    }
    assert_eq!(reg.issued_tokens().len(), 3);
}

#[tokio::test]
async fn expired_token_is_invalid() {
    let reg = TestRegistry::start(Options {
        auth: Some(Auth {
            token_ttl: Duration::ZERO,
            ..Auth::bearer("u", "p")
        }),
        ..Options::default()
    })
    .await;
    let c = client();
    let t = token(&c, &reg, &["repository:r:pull"], Some(("u", "p"))).await;
    let r = c
        .get(format!("{}/v2/r/tags/list", reg.url()))
        .bearer_auth(&t)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(
        h(&r, "www-authenticate")
            .unwrap()
            .contains("error=\"invalid_token\"")
    );
}

#[tokio::test]
async fn basic_auth() {
    let reg = TestRegistry::start(Options {
        auth: Some(Auth::basic("u", "p")),
        ..Options::default()
    })
    .await;
    let c = client();
    reg.put_blob("r", b"x");
    let r = c
        .get(format!("{}/v2/r/tags/list", reg.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        h(&r, "www-authenticate").unwrap(),
        "Basic realm=\"test-registry\""
    );
    let r = c
        .get(format!("{}/v2/r/tags/list", reg.url()))
        .basic_auth("u", Some("p"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = c
        .get(format!("{}/token", reg.url()))
        .basic_auth("u", Some("p"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn status_and_rate_limit_faults() {
    let reg = TestRegistry::start(Options::default()).await;
    let c = client();
    let (_, d) = seed_image(&reg, "r", "t", b"l");
    let url = format!("{}/v2/r/manifests/{d}", reg.url());
    reg.push_fault(Fault {
        times: 2,
        ..Fault::once(Some("GET"), "/manifests/", FaultKind::Status(503))
    });
    reg.push_fault(Fault::once(
        None,
        "/manifests/",
        FaultKind::TooManyRequests(RetryAfter::Seconds(7)),
    ));
    let when = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    reg.push_fault(Fault::once(
        None,
        "/manifests/",
        FaultKind::TooManyRequests(RetryAfter::HttpDate(when)),
    ));
    reg.push_fault(Fault::once(
        None,
        "/manifests/",
        FaultKind::TooManyRequests(RetryAfter::None),
    ));
    reg.push_fault(Fault::once(
        None,
        "/manifests/",
        FaultKind::Delay(Duration::from_millis(20)),
    ));

    // HEAD does not match the GET-only 503 fault but takes the next one in order.
    let r = c.head(&url).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(h(&r, "retry-after").unwrap(), "7");
    for _ in 0..2 {
        let r = c.get(&url).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(error_codes(r).await, ["UNAVAILABLE"]);
    }
    let r = c.get(&url).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        h(&r, "retry-after").unwrap(),
        "Fri, 15 Jan 2027 08:00:00 GMT"
    );
    assert_eq!(error_codes(r).await, ["TOOMANYREQUESTS"]);
    let r = c.get(&url).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(h(&r, "retry-after").is_none());
    assert_eq!(reg.pending_faults(), 1);
    let r = c.get(&url).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(reg.pending_faults(), 0);
    let r = c.get(&url).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let statuses: Vec<u16> = reg.log().iter().map(|l| l.status).collect();
    assert_eq!(statuses, [429, 503, 503, 429, 429, 200, 200]);
    assert_eq!(reg.count("GET", "/manifests/"), 6);
    assert_eq!(reg.count("HEAD", "/manifests/"), 1);
    assert_eq!(reg.count("*", "/r/"), 7);
    reg.clear_log();
    assert!(reg.log().is_empty());
}

#[tokio::test]
async fn body_faults_damage_the_body() {
    let reg = TestRegistry::start(Options::default()).await;
    let c = client();
    let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    let d = reg.put_blob("r", &data);
    let url = format!("{}/v2/r/blobs/{d}", reg.url());

    for kind in [FaultKind::TruncatedBody, FaultKind::ResetMidBody] {
        // HEAD has no body: the fault stays pending.
        reg.push_fault(Fault::once(None, "/blobs/", kind));
        assert_eq!(c.head(&url).send().await.unwrap().status(), StatusCode::OK);
        assert_eq!(reg.pending_faults(), 1);
        let mut r = c.get(&url).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.content_length(), Some(data.len() as u64));
        let mut received = 0;
        let failed = loop {
            match r.chunk().await {
                Ok(Some(c)) => received += c.len(),
                Ok(None) => break false,
                Err(_) => break true,
            }
        };
        assert!(failed, "the body read must fail");
        assert!(received <= data.len() / 2, "received {received}");
        assert_eq!(reg.pending_faults(), 0);
    }

    reg.push_fault(Fault::once(Some("GET"), "/blobs/", FaultKind::WrongBytes));
    let r = c.get(&url).send().await.unwrap();
    let got = r.bytes().await.unwrap();
    assert_eq!(got.len(), data.len());
    assert_ne!(got.to_vec(), data);
    assert_ne!(sha(&got), d);
    // Used up: the next read is intact.
    assert_eq!(
        c.get(&url)
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap()
            .to_vec(),
        data
    );
}

#[tokio::test]
async fn blob_redirect_refuses_forwarded_authorization() {
    let reg = TestRegistry::start(Options {
        redirect_blobs: true,
        ..Options::default()
    })
    .await;
    let c = client();
    let d = reg.put_blob("r", b"redirected");
    let r = c
        .get(format!("{}/v2/r/blobs/{d}", reg.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::TEMPORARY_REDIRECT);
    let loc = h(&r, "location").unwrap();
    assert!(loc.starts_with("http://localhost:"));
    assert!(!loc.contains(&reg.host()));
    let r = c.get(&loc).bearer_auth("leaked").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let r = c.get(&loc).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.bytes().await.unwrap().as_ref(), b"redirected");
    // HEAD is answered directly.
    let r = c
        .head(format!("{}/v2/r/blobs/{d}", reg.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}

#[tokio::test]
async fn conditional_manifest_put_and_ratelimit_headers() {
    let reg = TestRegistry::start(Options {
        ratelimit: Some((100, 42)),
        ..Options::default()
    })
    .await;
    let c = client();
    let (m, d) = seed_image(&reg, "r", "t", b"l");
    let url = format!("{}/v2/r/manifests/t", reg.url());
    let r = c.head(&url).send().await.unwrap();
    assert_eq!(h(&r, "ratelimit-limit").unwrap(), "100;w=21600");
    assert_eq!(h(&r, "ratelimit-remaining").unwrap(), "42;w=21600");
    let r = c
        .put(&url)
        .header("content-type", OCI_MANIFEST)
        .header("if-none-match", "*")
        .body(m.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PRECONDITION_FAILED);
    let r = c
        .put(&url)
        .header("content-type", OCI_MANIFEST)
        .header("if-match", "\"sha256:0\"")
        .body(m.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PRECONDITION_FAILED);
    let r = c
        .put(&url)
        .header("content-type", OCI_MANIFEST)
        .header("if-match", format!("\"{d}\""))
        .body(m.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let r = c
        .put(format!("{}/v2/r/manifests/new", reg.url()))
        .header("content-type", OCI_MANIFEST)
        .header("if-none-match", "*")
        .body(m.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let r = c
        .get(&url)
        .header("if-none-match", format!("\"{d}\""))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_MODIFIED);
}

#[tokio::test]
async fn single_post_upload_and_catalog() {
    let reg = TestRegistry::start(Options::default()).await;
    let c = client();
    let data = b"single post".to_vec();
    let r = c
        .post(format!(
            "{}/v2/x/y/blobs/uploads/?digest={}",
            reg.url(),
            sha(&data)
        ))
        .body(data.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(reg.blob("x/y", &sha(&data)).unwrap(), data);
    let r = c
        .post(format!(
            "{}/v2/x/y/blobs/uploads/?digest={}",
            reg.url(),
            sha(b"other")
        ))
        .body(data.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(reg.blob("x/y", &sha(b"other")).is_none());
    // A body without digest is refused; an invalid name too.
    let r = c
        .post(format!("{}/v2/x/y/blobs/uploads/", reg.url()))
        .body(data.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let r = post_upload(&c, &reg, "Bad", "").await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(error_codes(r).await, ["NAME_INVALID"]);
    assert_eq!(reg.open_uploads(), 0);

    reg.put_blob("a", b"1");
    let r = c
        .get(format!("{}/v2/_catalog", reg.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(json_of(r).await["repositories"], json!(["a", "x/y"]));
    let r = c.get(format!("{}/v2/", reg.url())).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        h(&r, "docker-distribution-api-version").unwrap(),
        "registry/2.0"
    );
}

#[tokio::test]
async fn large_bodies_and_docker_manifests() {
    let reg = TestRegistry::start(Options::default()).await;
    let c = client();
    // Larger than axum's default 2 MiB body limit, both monolithic and streamed PATCH.
    let data: Vec<u8> = (0..((2u32 << 20) + 4096))
        .map(|i| (i % 253) as u8)
        .collect();
    let r = post_upload(&c, &reg, "r", "").await;
    let loc = h(&r, "location").unwrap();
    let r = c
        .put(format!("{}{loc}?digest={}", reg.url(), sha(&data)))
        .body(data.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let r = post_upload(&c, &reg, "r2", "").await;
    let loc = h(&r, "location").unwrap();
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        data.chunks(1 << 20).map(|c| Ok(c.to_vec())).collect();
    let r = c
        .patch(format!("{}{loc}", reg.url()))
        .body(reqwest::Body::wrap_stream(futures::stream::iter(chunks)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    assert_eq!(h(&r, "range").unwrap(), format!("0-{}", data.len() - 1));
    let loc = h(&r, "location").unwrap();
    let r = c
        .put(format!("{}{loc}?digest={}", reg.url(), sha(&data)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(reg.blob("r2", &sha(&data)).unwrap().len(), data.len());

    const DOCKER: &str = "application/vnd.docker.distribution.manifest.v2+json";
    const LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
    let config = reg.put_blob("r", b"{}");
    let m = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": DOCKER,
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "digest": config, "size": 2},
        "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "digest": sha(&data), "size": data.len()}],
    }))
    .unwrap();
    let r = put_manifest(&c, &reg, "r", "d", DOCKER, &m).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let list = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": LIST,
        "manifests": [{"mediaType": DOCKER, "digest": sha(&m), "size": m.len(), "platform": {"architecture": "amd64", "os": "linux"}}],
    }))
    .unwrap();
    // Docker types need their mediaType in the body.
    let mut no_mt: Value = serde_json::from_slice(&list).unwrap();
    no_mt.as_object_mut().unwrap().remove("mediaType");
    let r = put_manifest(
        &c,
        &reg,
        "r",
        "l",
        LIST,
        &serde_json::to_vec(&no_mt).unwrap(),
    )
    .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let r = put_manifest(&c, &reg, "r", "l", LIST, &list).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let r = c
        .get(format!("{}/v2/r/manifests/l", reg.url()))
        .header("accept", format!("{OCI_INDEX}, {LIST}"))
        .send()
        .await
        .unwrap();
    assert_eq!(h(&r, "content-type").unwrap(), LIST);
    assert_eq!(r.bytes().await.unwrap().to_vec(), list);
}

#[tokio::test]
async fn seeding_helpers_build_valid_content() {
    let reg = TestRegistry::start(Options::default()).await;
    let c = client();
    let amd = reg.seed_image("r", "amd", &[b"a1", b"a2"]);
    let arm = reg.seed_image("r", "arm", &[b"b1"]);
    let idx = reg.seed_index(
        "r",
        "multi",
        &[(&amd, "linux/amd64"), (&arm, "linux/arm64")],
    );
    let sig = reg.seed_referrer("r", &idx, "application/vnd.example.sig", b"signature");
    assert_eq!(reg.tags("r"), ["amd", "arm", "multi"]);
    assert_eq!(reg.referrers("r", &idx), vec![sig.clone()]);
    // Everything the helpers stored passes the registry's own PUT validation.
    for d in [&amd, &arm, &idx, &sig] {
        let (mt, bytes) = reg.manifest("r", d).unwrap();
        let r = put_manifest(&c, &reg, "r", d, &mt, &bytes).await;
        assert_eq!(r.status(), StatusCode::CREATED, "{d}");
        assert_eq!(sha(&bytes), **d);
    }
    let r = c
        .get(format!("{}/v2/r/referrers/{idx}", reg.url()))
        .send()
        .await
        .unwrap();
    let v = json_of(r).await;
    assert_eq!(
        v["manifests"][0]["artifactType"],
        "application/vnd.example.sig"
    );
}

#[tokio::test]
async fn early_answers_to_large_bodies_arrive_as_statuses() {
    let reg = TestRegistry::start(Options {
        auth: Some(Auth::basic("u", "p")),
        ..Options::default()
    })
    .await;
    let c = client();
    let data = vec![1u8; 4 << 20];
    let r = c
        .post(format!("{}/v2/r/blobs/uploads/", reg.url()))
        .basic_auth("u", Some("p"))
        .send()
        .await
        .unwrap();
    let loc = format!(
        "{}{}?digest={}",
        reg.url(),
        h(&r, "location").unwrap(),
        sha(&data)
    );
    // No credentials: the 401 arrives although the body is not wanted.
    let r = c.put(&loc).body(data.clone()).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // An injected 500 happens before the handler: the session survives.
    reg.push_fault(Fault::once(
        Some("PUT"),
        "/blobs/uploads/",
        FaultKind::Status(500),
    ));
    let r = c
        .put(&loc)
        .basic_auth("u", Some("p"))
        .body(data.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(reg.open_uploads(), 1);
    let r = c
        .put(&loc)
        .basic_auth("u", Some("p"))
        .body(data.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(reg.open_uploads(), 0);
    assert_eq!(
        reg.log().iter().map(|l| l.status).collect::<Vec<_>>(),
        [202, 401, 500, 201]
    );
}

/// Write a one-image OCI layout (tag `v1`) into `dir`; returns (manifest bytes, layer bytes).
fn write_layout(dir: &std::path::Path) -> (Vec<u8>, Vec<u8>) {
    let layer = b"not really a tarball, but skopeo does not look".to_vec();
    let config =
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#
            .to_vec();
    let manifest = image(&config, &[&layer], None, None);
    std::fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
    for b in [&layer, &config, &manifest] {
        let d = sha(b);
        std::fs::write(
            dir.join("blobs/sha256")
                .join(d.trim_start_matches("sha256:")),
            b,
        )
        .unwrap();
    }
    std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let index = json!({"schemaVersion": 2, "manifests": [{
        "mediaType": OCI_MANIFEST, "digest": sha(&manifest), "size": manifest.len(),
        "annotations": {"org.opencontainers.image.ref.name": "v1"},
    }]});
    std::fs::write(dir.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
    (manifest, layer)
}

async fn skopeo(args: &[&str]) -> std::process::Output {
    tokio::process::Command::new("skopeo")
        .arg("--insecure-policy")
        .args(args)
        .output()
        .await
        .unwrap()
}

/// A real client (containers/image via skopeo) pushes and pulls through the token flow.
#[tokio::test]
async fn skopeo_round_trip_with_token_auth() {
    let reg = TestRegistry::start(Options {
        auth: Some(Auth::bearer("u", "p")),
        ..Options::default()
    })
    .await;
    let tmp = tempfile::tempdir().unwrap();
    let (manifest, layer) = write_layout(&tmp.path().join("src"));
    let src = format!("oci:{}:v1", tmp.path().join("src").display());
    let dst = format!("docker://{}/skopeo/img:v1", reg.host());
    let out = skopeo(&[
        "copy",
        "--preserve-digests",
        "--dest-tls-verify=false",
        "--dest-creds",
        "u:p",
        &src,
        &dst,
    ])
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        reg.manifest("skopeo/img", "v1").unwrap(),
        (OCI_MANIFEST.to_string(), manifest.clone())
    );
    assert_eq!(reg.blob("skopeo/img", &sha(&layer)).unwrap(), layer);

    let back = format!("oci:{}:v1", tmp.path().join("back").display());
    let out = skopeo(&[
        "copy",
        "--preserve-digests",
        "--src-tls-verify=false",
        "--src-creds",
        "u:p",
        &dst,
        &back,
    ])
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let copied = std::fs::read(
        tmp.path()
            .join("back/blobs/sha256")
            .join(sha(&layer).trim_start_matches("sha256:")),
    )
    .unwrap();
    assert_eq!(copied, layer);
    assert!(reg.count("GET", "/token") >= 2);
    assert!(
        reg.log()
            .iter()
            .any(|l| l.auth_scheme.as_deref() == Some("Bearer") && l.status == 201)
    );
    assert_eq!(reg.open_uploads(), 0);
}

#[tokio::test]
async fn concurrent_requests_are_measured() {
    let reg = TestRegistry::start(Options::default()).await;
    let c = client();
    let d = reg.put_blob("r", b"x");
    let url = format!("{}/v2/r/blobs/{d}", reg.url());
    let one = c.get(&url).send().await.unwrap();
    assert_eq!(one.status(), StatusCode::OK);
    assert_eq!(reg.max_concurrent_requests(), 1);
    // Three requests held by a delay overlap.
    reg.push_fault(Fault {
        times: 3,
        ..Fault::once(
            None,
            "/blobs/",
            FaultKind::Delay(Duration::from_millis(500)),
        )
    });
    let (a, b, e) = tokio::join!(c.get(&url).send(), c.get(&url).send(), c.get(&url).send());
    for r in [a, b, e] {
        assert_eq!(r.unwrap().status(), StatusCode::OK);
    }
    assert_eq!(reg.max_concurrent_requests(), 3);
    reg.reset_max_concurrent_requests();
    assert_eq!(reg.max_concurrent_requests(), 0);
}
