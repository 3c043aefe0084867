//! `Manifest::parse` on any bytes, served as any of the manifest media
//! types (or none, or an unknown one): never panics, and an accepted
//! manifest keeps its exact bytes and their digest.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use ocimirror::oci::{Digest, Manifest};

const SERVED: [Option<&str>; 7] = [
    None,
    Some("application/vnd.oci.image.manifest.v1+json"),
    Some("application/vnd.oci.image.index.v1+json"),
    Some("application/vnd.docker.distribution.manifest.v2+json"),
    Some("application/vnd.docker.distribution.manifest.list.v2+json"),
    Some("application/json; charset=utf-8"),
    Some("text/plain"),
];

fuzz_target!(|input: &[u8]| {
    let Some((&which, body)) = input.split_first() else {
        return;
    };
    let served = SERVED[usize::from(which) % SERVED.len()];
    let bytes = Bytes::copy_from_slice(body);
    let Ok(m) = Manifest::parse(bytes.clone(), served) else {
        return;
    };
    assert_eq!(m.bytes(), &bytes);
    assert_eq!(m.digest(), &Digest::sha256(&bytes));
    // The navigation views agree with each other.
    let _ = m.descriptor();
    let _ = m.referrer_descriptor();
    assert!(m.child_manifests().is_empty() || m.is_index());
    for b in m.blobs() {
        let _ = b.digest.to_string();
    }
});
