//! Uploads (monolithic, chunked, single POST) and cross-repository mounts.

use super::*;

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
