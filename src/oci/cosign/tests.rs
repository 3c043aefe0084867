use super::*;

const SIMPLE: &str = "application/vnd.dev.cosign.simplesigning.v1+json";

fn hex(c: char) -> String {
    std::iter::repeat_n(c, 64).collect()
}

/// A legacy `.sig` manifest exactly as cosign (go-containerregistry) writes it.
fn legacy(layers: &[(char, &str)]) -> Manifest {
    let layers: Vec<String> = layers
        .iter()
        .map(|(c, sig)| {
            format!(
                r#"{{"mediaType":"{SIMPLE}","size":242,"digest":"sha256:{}","annotations":{{"dev.cosignproject.cosign/signature":"{sig}"}}}}"#,
                hex(*c)
            )
        })
        .collect();
    let raw = format!(
        r#"{{"schemaVersion":2,"mediaType":"{}","config":{{"mediaType":"{}","size":233,"digest":"sha256:{}"}},"layers":[{}]}}"#,
        mt::OCI_MANIFEST,
        mt::OCI_CONFIG,
        hex('c'),
        layers.join(",")
    );
    Manifest::parse(Bytes::from(raw), Some(mt::OCI_MANIFEST)).unwrap()
}

fn subject() -> Descriptor {
    Descriptor::new(
        mt::OCI_INDEX,
        format!("sha256:{}", hex('5')).parse().unwrap(),
        512,
    )
}

#[test]
fn a_legacy_signature_becomes_what_cosign_oci_1_1_writes() {
    let old = legacy(&[('a', "MEUCIQ==")]);
    let new = to_referrer(&old, Attachment::Signature, &subject()).unwrap();
    let expected = format!(
        r#"{{"schemaVersion":2,"mediaType":"{}","config":{{"mediaType":"application/vnd.dev.cosign.artifact.sig.v1+json","size":233,"digest":"sha256:{}"}},"layers":[{{"mediaType":"{SIMPLE}","size":242,"digest":"sha256:{}","annotations":{{"dev.cosignproject.cosign/signature":"MEUCIQ=="}}}}],"subject":{{"mediaType":"{}","size":512,"digest":"sha256:{}"}}}}"#,
        mt::OCI_MANIFEST,
        hex('c'),
        hex('a'),
        mt::OCI_INDEX,
        hex('5')
    );
    assert_eq!(std::str::from_utf8(new.bytes()).unwrap(), expected);
    assert_eq!(Attachment::of_referrer(&new), Some(Attachment::Signature));
    assert_eq!(new.subject().unwrap().digest, subject().digest);
}

#[test]
fn the_round_trip_gives_back_the_original_digest() {
    let old = legacy(&[('a', "sig-a"), ('b', "sig-b")]);
    for kind in Attachment::ALL {
        let referrer = to_referrer(&old, kind, &subject()).unwrap();
        assert_eq!(Attachment::of_referrer(&referrer), Some(kind));
        let back = to_legacy(&[&referrer]).unwrap();
        assert_eq!(back.manifest.digest(), old.digest(), "{kind:?}");
        assert!(back.config.is_none());
    }
}

#[test]
fn several_referrers_merge_into_one_manifest_in_a_fixed_order() {
    let one = to_referrer(
        &legacy(&[('a', "sig-a")]),
        Attachment::Signature,
        &subject(),
    )
    .unwrap();
    let two = to_referrer(
        &legacy(&[('b', "sig-b"), ('a', "sig-a")]),
        Attachment::Signature,
        &subject(),
    )
    .unwrap();
    let merged = to_legacy(&[&one, &two]).unwrap();
    let swapped = to_legacy(&[&two, &one]).unwrap();
    assert_eq!(merged.manifest.digest(), swapped.manifest.digest());
    let layers: Vec<String> = merged.manifest.blobs()[1..]
        .iter()
        .map(|d| d.digest.hex()[..1].to_string())
        .collect();
    // The duplicate layer (same blob, same signature) is kept once.
    assert_eq!(layers.len(), 2);
    assert!(merged.manifest.subject().is_none());
    let (desc, bytes) = merged.config.unwrap();
    assert_eq!(merged.manifest.blobs()[0], &desc);
    assert_eq!(desc.digest, Digest::sha256(&bytes));
    let config: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(config["rootfs"]["diff_ids"].as_array().unwrap().len(), 2);
}

#[test]
fn referrers_of_other_kinds_or_subjects_do_not_merge() {
    let sig = to_referrer(&legacy(&[('a', "s")]), Attachment::Signature, &subject()).unwrap();
    let att = to_referrer(&legacy(&[('b', "s")]), Attachment::Attestation, &subject()).unwrap();
    let err = to_legacy(&[&sig, &att]).unwrap_err().to_string();
    assert!(err.contains("same subject"), "{err}");
}

#[test]
fn what_cannot_be_converted_is_refused_by_digest() {
    // Already a referrer.
    let referrer = to_referrer(&legacy(&[('a', "s")]), Attachment::Signature, &subject()).unwrap();
    let err = to_referrer(&referrer, Attachment::Signature, &subject()).unwrap_err();
    assert!(
        err.to_string().contains(&referrer.digest().to_string()),
        "{err}"
    );
    // A field go-containerregistry's manifest lacks would be dropped.
    let raw = format!(
        r#"{{"schemaVersion":2,"mediaType":"{}","artifactType":"x/y","config":{{"mediaType":"{}","size":2,"digest":"sha256:{}"}},"layers":[{{"mediaType":"x","size":1,"digest":"sha256:{}"}}]}}"#,
        mt::OCI_MANIFEST,
        mt::OCI_CONFIG,
        hex('c'),
        hex('a')
    );
    let m = Manifest::parse(Bytes::from(raw), None).unwrap();
    let err = to_referrer(&m, Attachment::Signature, &subject())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("artifactType") && err.contains(&m.digest().to_string()),
        "{err}"
    );
}

#[test]
fn strings_are_escaped_as_go_does() {
    let old = legacy(&[('a', "<&>")]);
    let new = to_referrer(&old, Attachment::Signature, &subject()).unwrap();
    let text = std::str::from_utf8(new.bytes()).unwrap();
    assert!(text.contains(r#""\u003c\u0026\u003e""#), "{text}");
    let back = to_legacy(&[&new]).unwrap();
    let parsed: serde_json::Value = serde_json::from_slice(back.manifest.bytes()).unwrap();
    assert_eq!(
        parsed["layers"][0]["annotations"]["dev.cosignproject.cosign/signature"],
        "<&>"
    );
}

#[test]
fn tags_and_config_types_name_the_kind() {
    assert_eq!(
        Attachment::of_tag(&format!("sha256-{}.att", hex('a'))),
        Some(Attachment::Attestation)
    );
    assert_eq!(Attachment::of_tag(&format!("sha256-{}", hex('a'))), None);
    // Not cosign's: a sigstore bundle referrer has no legacy form.
    assert_eq!(Attachment::of_referrer(&legacy(&[('a', "s")])), None);
}
