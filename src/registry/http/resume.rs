//! Blob reads that survive a cut connection (spec-notes §1.7): the read
//! goes on with `Range: bytes=<offset>-` from the last byte handed on. A
//! 206 must continue exactly there (`Content-Range`); a registry that
//! ignores `Range` (200) sends the whole blob again and the bytes already
//! handed on are skipped. The digest check wraps the resumed stream, so it
//! still covers every byte.
//!
//! The budget is measured in progress, not attempts: a read may resume as
//! often as each attempt brings new bytes, and gives up after
//! `retry.max_attempts` attempts in a row that bring none.

use bytes::Bytes;
use futures::StreamExt;
use reqwest::header::{self, HeaderMap, HeaderValue};
use reqwest::{Method, StatusCode, Url};
use tracing::debug;

use super::{Ctx, HttpRegistry, ReqBody, header_str, sanitize};
use crate::registry::{BlobStream, ErrorKind, RegistryError};

/// Wraps `first`, the body of a blob GET of `size` bytes from `url`, so
/// that retryable body errors resume the read.
pub(super) fn resuming(
    registry: HttpRegistry,
    ctx: Ctx,
    url: Url,
    size: u64,
    first: BlobStream,
) -> BlobStream {
    let read = Read {
        registry,
        ctx,
        url,
        size,
        offset: 0,
        body: Some(first),
        progressed: false,
        fruitless: 0,
        done: false,
    };
    Box::pin(futures::stream::unfold(read, |mut read| async move {
        let item = read.next().await?;
        Some((item, read))
    }))
}

struct Read {
    registry: HttpRegistry,
    ctx: Ctx,
    url: Url,
    size: u64,
    /// Bytes handed on so far.
    offset: u64,
    /// The response being read; `None` between attempts.
    body: Option<BlobStream>,
    /// The current attempt has handed on bytes.
    progressed: bool,
    /// Attempts in a row that brought nothing.
    fruitless: usize,
    done: bool,
}

impl Read {
    async fn next(&mut self) -> Option<Result<Bytes, RegistryError>> {
        if self.done {
            return None;
        }
        loop {
            let failure = match self.body.as_mut() {
                None => match self.reopen().await {
                    Ok(body) => {
                        self.body = Some(body);
                        continue;
                    }
                    Err(e) => e,
                },
                Some(body) => match body.next().await {
                    Some(Ok(chunk)) => {
                        self.offset = self.offset.saturating_add(chunk.len() as u64);
                        self.progressed |= !chunk.is_empty();
                        return Some(Ok(chunk));
                    }
                    Some(Err(e)) => e,
                    None => {
                        self.done = true;
                        return None;
                    }
                },
            };
            // Past the end there is nothing to resume: let the digest
            // check report what arrived.
            if !failure.is_retryable() || self.offset >= self.size {
                self.done = true;
                return Some(Err(failure));
            }
            self.body = None;
            self.fruitless = if self.progressed {
                0
            } else {
                self.fruitless.saturating_add(1)
            };
            self.progressed = false;
            let policy = &self.registry.settings.retry;
            if self.fruitless >= policy.max_attempts.max(1) {
                self.done = true;
                return Some(Err(failure));
            }
            let delay = policy
                .min_delay
                .saturating_mul(1u32 << self.fruitless.min(16))
                .min(policy.max_delay);
            debug!(
                registry = %self.registry.name, repo = %self.ctx.repo,
                offset = self.offset, size = self.size, error = %failure.kind,
                "Resuming an interrupted blob read."
            );
            self.registry.count_retry(self.ctx.op, delay);
            tokio::time::sleep(delay).await;
        }
    }

    /// Asks for the rest of the blob from `offset`.
    async fn reopen(&mut self) -> Result<BlobStream, RegistryError> {
        let reg = &self.registry;
        let mut headers = HeaderMap::new();
        let range = HeaderValue::from_str(&format!("bytes={}-", self.offset))
            .map_err(|_| reg.err(&self.ctx, ErrorKind::InvalidResponse("range".into())))?;
        headers.insert(header::RANGE, range);
        let resp = reg
            .send(
                &self.ctx,
                Method::GET,
                self.url.clone(),
                headers,
                ReqBody::Empty,
            )
            .await?;
        match resp.status() {
            StatusCode::PARTIAL_CONTENT => {
                let range = header_str(resp.headers(), "content-range").unwrap_or_default();
                if !continues_at(range, self.offset, self.size) {
                    return Err(reg.err(
                        &self.ctx,
                        ErrorKind::InvalidResponse(format!(
                            "resumed read at byte {} got Content-Range {:?}",
                            self.offset,
                            sanitize(range)
                        )),
                    ));
                }
                Ok(reg.blob_body(&self.ctx, resp))
            }
            StatusCode::OK => Ok(skip(reg.blob_body(&self.ctx, resp), self.offset)),
            _ => Err(reg.status_error(&self.ctx, resp).await),
        }
    }
}

/// True when `content_range` is `bytes <offset>-<size-1>/<size or *>`.
fn continues_at(content_range: &str, offset: u64, size: u64) -> bool {
    let Some(rest) = content_range.trim().strip_prefix("bytes ") else {
        return false;
    };
    let Some((span, total)) = rest.split_once('/') else {
        return false;
    };
    let Some((first, last)) = span.split_once('-') else {
        return false;
    };
    let total_ok = total == "*" || total.parse::<u64>().ok() == Some(size);
    first.parse::<u64>().ok() == Some(offset)
        && last.parse::<u64>().ok() == size.checked_sub(1)
        && total_ok
}

/// Drops the first `n` bytes of a stream.
fn skip(body: BlobStream, n: u64) -> BlobStream {
    let mut left = n;
    Box::pin(body.filter_map(move |item| {
        let out = match item {
            Ok(mut chunk) if left > 0 => {
                let len = chunk.len() as u64;
                if len <= left {
                    left -= len;
                    None
                } else {
                    let tail = chunk.split_off(left as usize);
                    left = 0;
                    Some(Ok(tail))
                }
            }
            other => Some(other),
        };
        futures::future::ready(out)
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_range_must_continue_at_the_offset() {
        assert!(continues_at("bytes 100-999/1000", 100, 1000));
        assert!(continues_at("bytes 100-999/*", 100, 1000));
        assert!(!continues_at("bytes 0-999/1000", 100, 1000));
        assert!(!continues_at("bytes 100-998/1000", 100, 1000));
        assert!(!continues_at("bytes 100-999/2000", 100, 1000));
        assert!(!continues_at("", 100, 1000));
        assert!(!continues_at("bytes 100-/1000", 100, 1000));
    }

    #[tokio::test]
    async fn skip_drops_exactly_n_bytes_across_chunks() {
        let chunks: Vec<Result<Bytes, RegistryError>> = vec![
            Ok(Bytes::from_static(b"abc")),
            Ok(Bytes::from_static(b"defg")),
            Ok(Bytes::from_static(b"hi")),
        ];
        let out: Vec<u8> = skip(Box::pin(futures::stream::iter(chunks)), 5)
            .map(|c| c.map(|b| b.to_vec()).unwrap_or_default())
            .concat()
            .await;
        assert_eq!(out, b"fghi");
    }
}
