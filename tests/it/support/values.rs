//! Small constructors for ocimirror's value types, shared by the adapter
//! tests (these use the code under test only to build inputs).

use bytes::Bytes;
use futures::stream;
use ocimirror::oci::{Descriptor, Digest, Reference, RepoName, Tag};
use ocimirror::registry::{BlobStream, RegistryError};

/// A repository name.
pub fn repo(s: &str) -> RepoName {
    RepoName::new(s).unwrap()
}

/// A tag reference.
pub fn tag(s: &str) -> Reference {
    Reference::Tag(Tag::new(s).unwrap())
}

/// `bytes` as a blob stream of `chunk`-byte pieces.
pub fn body_of(bytes: &[u8], chunk: usize) -> BlobStream {
    let chunks: Vec<Result<Bytes, RegistryError>> = bytes
        .chunks(chunk)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    Box::pin(stream::iter(chunks))
}

/// The descriptor of `bytes` with `media_type`.
pub fn desc(bytes: &[u8], media_type: &str) -> Descriptor {
    Descriptor::new(media_type, Digest::sha256(bytes), bytes.len() as u64)
}
