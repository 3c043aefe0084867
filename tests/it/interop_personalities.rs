//! The registry personalities of the test registry, driven with plain
//! reqwest (no ocimirror code): each answers the referrers path, and
//! `OCI-Subject` on manifest PUT, as the registry it stands for. The
//! interop tests trust them as their oracle.

use reqwest::StatusCode;
use serde_json::Value;

use crate::support::registry::{Personality, TestRegistry};
use crate::test_registry::{OCI_INDEX, OCI_MANIFEST, client, desc, h, image, seed_image};

/// Each personality answers the referrers path (and `OCI-Subject` on PUT) as the registry it
/// stands for: the oracle of the interop tests.
#[tokio::test]
async fn personalities_answer_the_referrers_path_as_documented() {
    let c = client();
    for p in Personality::ALL {
        let reg = TestRegistry::start_as(p).await;
        // Referrers401 works with a token for everything but the referrers path.
        let auth = if p.needs_credentials() {
            let r = c
                .get(format!(
                    "{}/token?service=test-registry&scope=repository:r:pull,push",
                    reg.url()
                ))
                .basic_auth(Personality::USER, Some(Personality::PASSWORD))
                .send()
                .await
                .unwrap();
            let v: Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
            Some(format!("Bearer {}", v["token"].as_str().unwrap()))
        } else {
            None
        };
        let with_auth = |b: reqwest::RequestBuilder| match &auth {
            Some(a) => b.header("authorization", a),
            None => b,
        };
        let (subject, subject_digest) = seed_image(&reg, "r", "v1", b"layer");
        reg.put_blob("r", b"{}");
        let m = image(b"{}", &[], Some(&desc(OCI_MANIFEST, &subject)), None);
        let put = with_auth(c.put(format!("{}/v2/r/manifests/t", reg.url())))
            .header("content-type", OCI_MANIFEST)
            .body(m)
            .send()
            .await
            .unwrap();
        assert_eq!(put.status(), StatusCode::CREATED, "{p:?}");
        let oci_subject = h(&put, "oci-subject");
        let expect_subject = matches!(p, Personality::FullApi | Personality::DockerHub2024);
        assert_eq!(oci_subject.is_some(), expect_subject, "{p:?}");
        let r = with_auth(c.get(format!("{}/v2/r/referrers/{subject_digest}", reg.url())))
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let ct = h(&r, "content-type").unwrap_or_default();
        let location = h(&r, "location");
        let challenge = h(&r, "www-authenticate");
        let body = r.text().await.unwrap();
        match p {
            Personality::FullApi => {
                assert_eq!((status, ct.as_str()), (200, OCI_INDEX));
                assert_eq!(
                    serde_json::from_str::<Value>(&body).unwrap()["manifests"]
                        .as_array()
                        .unwrap()
                        .len(),
                    1
                );
            }
            Personality::Distribution28 | Personality::DockerHub2024 => {
                assert_eq!(
                    (status, body.as_str()),
                    (404, "404 page not found\n"),
                    "{p:?}"
                );
            }
            Personality::ApiOff405 => {
                assert_eq!(status, 405);
                assert!(body.contains("\"UNSUPPORTED\""), "{body}");
            }
            Personality::Ghcr303 => {
                assert_eq!(status, 303);
                let page = location.unwrap();
                assert!(page.starts_with("http://127.0.0.2:"), "{page}");
                let r = c.get(&page).send().await.unwrap();
                assert_eq!(r.status(), StatusCode::OK);
                assert!(h(&r, "content-type").unwrap().starts_with("text/html"));
                assert_eq!(reg.count("GET", "/orgs/test/packages"), 1);
            }
            Personality::Html200 => {
                assert_eq!(status, 200);
                assert!(
                    ct.starts_with("text/html") && body.contains("<html>"),
                    "{ct} {body}"
                );
            }
            Personality::Referrers401 => {
                assert_eq!(status, 401);
                assert!(challenge.unwrap().contains("insufficient_scope"));
                // The same token reads the repository.
                let r = with_auth(c.get(format!("{}/v2/r/manifests/v1", reg.url())))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), StatusCode::OK);
            }
        }
    }
}
