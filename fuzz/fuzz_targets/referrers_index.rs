//! A referrers response (or a fallback index read back) on any bytes, as
//! the HTTP and layout adapters parse it: `Manifest::parse` served as an
//! OCI index, then its entries. Never panics; every entry's digest prints
//! back to itself and names a valid fallback tag.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use ocimirror::oci::referrers::{fallback_tag, is_fallback_tag};
use ocimirror::oci::{Algorithm, Digest, Manifest, Tag};

const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

fuzz_target!(|input: &[u8]| {
    let Ok(index) = Manifest::parse(Bytes::copy_from_slice(input), Some(OCI_INDEX)) else {
        return;
    };
    for entry in index.child_manifests() {
        let printed = entry.digest.to_string();
        let again: Digest = printed
            .parse()
            .unwrap_or_else(|e| panic!("{printed:?} does not parse back: {e}"));
        assert_eq!(again, entry.digest);
        let tag = fallback_tag(&entry.digest);
        assert!(Tag::new(&tag).is_ok(), "{tag:?} is not a valid tag");
        if matches!(entry.digest.algorithm(), Algorithm::Sha256 | Algorithm::Sha512) {
            assert!(is_fallback_tag(&tag), "{tag:?} not recognised");
        }
        let _ = entry.artifact_type.as_deref();
    }
});
