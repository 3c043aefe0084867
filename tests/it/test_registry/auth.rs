//! Token and basic authentication: scopes, expiry.

use super::*;

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
