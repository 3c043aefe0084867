//! Digest verification of a blob stream as it passes.
//!
//! The verifier holds back one chunk, so when the content does not match, the
//! final bytes are never handed on: an upload fed by this stream cannot
//! complete with wrong content, even against a registry that would not check.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures::Stream;

use super::{BlobStream, ErrorKind, Operation, RegistryError};
use crate::oci::{Digest, Digester};

/// Context for the errors a verifying stream raises.
#[derive(Clone, Debug)]
pub struct StreamContext {
    /// Registry name.
    pub registry: String,
    /// Repository.
    pub repo: String,
}

/// Wraps `inner` so that it yields exactly `expected_size` bytes hashing to
/// `expected`, or ends with an error naming the digest.
pub fn verify(
    inner: BlobStream,
    expected: Digest,
    expected_size: Option<u64>,
    ctx: StreamContext,
) -> BlobStream {
    Box::pin(Verifying {
        digester: Some(Digester::new(expected.algorithm())),
        inner,
        expected,
        expected_size,
        held: None,
        ctx,
        done: false,
    })
}

struct Verifying {
    inner: BlobStream,
    digester: Option<Digester>,
    expected: Digest,
    expected_size: Option<u64>,
    held: Option<Bytes>,
    ctx: StreamContext,
    done: bool,
}

impl Verifying {
    fn error(&self, kind: ErrorKind) -> RegistryError {
        RegistryError::new(
            self.ctx.registry.clone(),
            self.ctx.repo.clone(),
            Operation::BlobGet,
            Some(self.expected.to_string()),
            kind,
        )
    }
}

impl Stream for Verifying {
    type Item = Result<Bytes, RegistryError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            if this.done {
                return Poll::Ready(None);
            }
            match this.inner.as_mut().poll_next(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Err(e))) => {
                    this.done = true;
                    return Poll::Ready(Some(Err(e)));
                }
                Poll::Ready(Some(Ok(chunk))) => {
                    if chunk.is_empty() {
                        continue;
                    }
                    let Some(digester) = this.digester.as_mut() else {
                        return Poll::Ready(None);
                    };
                    digester.update(&chunk);
                    let seen = digester.len();
                    if let Some(size) = this.expected_size
                        && seen > size
                    {
                        this.done = true;
                        let err = this.error(ErrorKind::SizeMismatch {
                            expected: size,
                            actual: seen,
                        });
                        return Poll::Ready(Some(Err(err)));
                    }
                    if let Some(prev) = this.held.replace(chunk) {
                        return Poll::Ready(Some(Ok(prev)));
                    }
                }
                Poll::Ready(None) => {
                    this.done = true;
                    let Some(digester) = this.digester.take() else {
                        return Poll::Ready(None);
                    };
                    let seen = digester.len();
                    if let Some(size) = this.expected_size
                        && seen != size
                    {
                        let err = this.error(ErrorKind::SizeMismatch {
                            expected: size,
                            actual: seen,
                        });
                        return Poll::Ready(Some(Err(err)));
                    }
                    let actual = digester.finish();
                    if actual != this.expected {
                        let err = this.error(ErrorKind::DigestMismatch {
                            expected: this.expected.clone(),
                            actual,
                        });
                        return Poll::Ready(Some(Err(err)));
                    }
                    return Poll::Ready(this.held.take().map(Ok));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::{StreamExt, stream};

    fn ctx() -> StreamContext {
        StreamContext {
            registry: "r".into(),
            repo: "p".into(),
        }
    }

    fn chunks(parts: &[&'static [u8]]) -> BlobStream {
        Box::pin(stream::iter(
            parts
                .iter()
                .map(|p| Ok(Bytes::from_static(p)))
                .collect::<Vec<_>>(),
        ))
    }

    #[tokio::test]
    async fn passes_matching_content() {
        let s = verify(
            chunks(&[b"ab", b"cd"]),
            Digest::sha256(b"abcd"),
            Some(4),
            ctx(),
        );
        let out: Vec<_> = s.collect().await;
        let bytes: Vec<u8> = out.into_iter().flat_map(|c| c.unwrap().to_vec()).collect();
        assert_eq!(bytes, b"abcd");
    }

    #[tokio::test]
    async fn wrong_bytes_never_release_the_last_chunk() {
        let s = verify(
            chunks(&[b"ab", b"cX"]),
            Digest::sha256(b"abcd"),
            Some(4),
            ctx(),
        );
        let out: Vec<_> = s.collect().await;
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].as_ref().unwrap().as_ref(), b"ab");
        let err = out[1].as_ref().unwrap_err();
        assert!(matches!(err.kind, ErrorKind::DigestMismatch { .. }));
        assert!(
            err.to_string()
                .contains(&Digest::sha256(b"abcd").to_string())
        );
    }

    #[tokio::test]
    async fn truncated_and_oversized_bodies_fail() {
        let s = verify(chunks(&[b"ab"]), Digest::sha256(b"abcd"), Some(4), ctx());
        let out: Vec<_> = s.collect().await;
        assert!(matches!(
            out.last().unwrap().as_ref().unwrap_err().kind,
            ErrorKind::SizeMismatch {
                expected: 4,
                actual: 2
            }
        ));
        let s = verify(chunks(&[b"abcde"]), Digest::sha256(b"abcd"), Some(4), ctx());
        let out: Vec<_> = s.collect().await;
        assert_eq!(out.len(), 1);
        assert!(out[0].is_err());
    }
}
