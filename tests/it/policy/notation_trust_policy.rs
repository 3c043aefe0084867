//! Notation verifiers reading notation's own `trustpolicy.json` and trust
//! store layout: the rule is picked by the job's source repository.

use std::path::Path;

use serde_json::{Value, json};

use super::notation::{
    IDENTITY, JWS, KeyKind, Pki, envelope, header, payload, push_signature, target,
};
use super::{assert_refused, mirror, setup};
use crate::support::fixtures::Form;
use crate::sync_jobs::REPO;
use ocimirror::sync::SyncOptions;

/// notation's layout: `<dir>/truststore/x509/ca/<store>/root.pem` and a
/// `trustpolicy.json` of `policies`; the `[jobs.policy]` using them.
fn trust_policy_config(dir: &Path, stores: &[(&str, &Pki)], policies: Value) -> String {
    for (name, pki) in stores {
        let store = dir.join("truststore/x509/ca").join(name);
        std::fs::create_dir_all(&store).unwrap();
        std::fs::copy(pki.root(), store.join("root.pem")).unwrap();
    }
    let file = dir.join("trustpolicy.json");
    let doc = json!({"version": "1.0", "trustPolicies": policies});
    std::fs::write(&file, serde_json::to_vec(&doc).unwrap()).unwrap();
    format!(
        "[jobs.policy]\nmode = \"enforce\"\n[[jobs.policy.notation]]\nname = \"notation\"\n\
         trust_store = \"{}\"\ntrust_policy = \"{}\"\n",
        dir.join("truststore").display(),
        file.display()
    )
}

fn trust_policy(name: &str, scopes: Value, level: &str, store: &str) -> Value {
    json!({"name": name, "registryScopes": scopes, "signatureVerification": {"level": level},
           "trustStores": [format!("ca:{store}")], "trustedIdentities": [IDENTITY]})
}

#[tokio::test]
async fn notations_trust_policy_file_picks_the_rule_by_source_repository() {
    let (src, dst, f) = setup("notation trust policy").await;
    let dir = tempfile::tempdir().unwrap();
    let corp = Pki::valid(dir.path(), "corp", KeyKind::Rsa);
    let stranger = Pki::valid(dir.path(), "stranger", KeyKind::Rsa);
    let env = envelope(&corp, &header(&corp), &payload(&target(&f)));
    push_signature(&src, &f, Form::Api, JWS, &env);
    let source = format!("{}/{REPO}", src.host());
    let stores = [("corp", &corp), ("stranger", &stranger)];

    // A global policy would trust only the stranger: the exact scope wins.
    let text = trust_policy_config(
        dir.path(),
        &stores,
        json!([
            trust_policy("global", json!(["*"]), "strict", "stranger"),
            trust_policy("app", json!([source]), "strict", "corp")
        ]),
    );
    let r = mirror(
        dir.path(),
        &src,
        &dst,
        &text,
        SyncOptions {
            dry_run: true,
            ..SyncOptions::default()
        },
    )
    .await;
    assert!(r.failures.is_empty(), "{:?}", r.failures);
    let reasons: Vec<&str> = r.plan[0].steps.iter().map(|s| s.reason.as_str()).collect();
    assert!(
        reasons.contains(&"notation signature: verified by notation"),
        "{reasons:#?}"
    );

    // Only another repository's policy: nothing applies to this source.
    let text = trust_policy_config(
        dir.path(),
        &stores,
        json!([trust_policy(
            "other",
            json!([format!("{}/other/app", src.host())]),
            "strict",
            "corp"
        )]),
    );
    let r = mirror(dir.path(), &src, &dst, &text, SyncOptions::default()).await;
    assert_refused(
        &r,
        &dst,
        &format!("verifier notation: no trust policy applies to {source}"),
    );

    // Levels that would not decide trust are refused when loading.
    let text = trust_policy_config(
        dir.path(),
        &stores,
        json!([trust_policy("global", json!(["*"]), "audit", "corp")]),
    );
    let path = crate::sync_jobs::write_config(dir.path(), &src, &dst, "", &text);
    let err = ocimirror::config::load(&path).unwrap_err().to_string();
    assert!(
        err.contains("jobs[0].policy.notation[0].trust_policy"),
        "{err}"
    );
    assert!(err.contains("level \"audit\" is not supported"), "{err}");
}
