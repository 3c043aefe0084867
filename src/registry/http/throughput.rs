//! A minimum throughput for blob bodies: the idle read timeout alone lets a
//! link that trickles a byte now and then hold a transfer (and its slot)
//! for days.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures::Stream;
use tokio::time::{Instant, Sleep};

use crate::registry::{BlobStream, ErrorKind, RegistryError};

/// Wraps a blob body so it fails with the error `fail` builds when fewer
/// than `min_bytes_per_second` arrive on average over `window` of waiting
/// for the source. Only time spent waiting counts: a consumer that reads
/// slowly (a slow target) does not make the source look slow. A zero rate
/// or window leaves the body as it is.
pub(crate) fn enforce(
    inner: BlobStream,
    min_bytes_per_second: u64,
    window: Duration,
    fail: impl Fn(ErrorKind) -> RegistryError + Send + 'static,
) -> BlobStream {
    if min_bytes_per_second == 0 || window.is_zero() {
        return inner;
    }
    let min_bytes = (min_bytes_per_second as f64 * window.as_secs_f64()) as u64;
    Box::pin(MinThroughput {
        inner,
        min_bytes_per_second,
        min_bytes,
        window,
        seen: 0,
        waited: Duration::ZERO,
        waiting_since: None,
        timer: Box::pin(tokio::time::sleep(window)),
        fail: Box::new(fail),
        done: false,
    })
}

struct MinThroughput {
    inner: BlobStream,
    min_bytes_per_second: u64,
    /// Bytes a window must bring.
    min_bytes: u64,
    window: Duration,
    /// Bytes seen in the current window.
    seen: u64,
    /// Time spent waiting for the source in the current window.
    waited: Duration,
    /// Since when we wait for the source, if we do.
    waiting_since: Option<Instant>,
    /// Fires when the current window's waiting time is used up.
    timer: Pin<Box<Sleep>>,
    fail: Box<dyn Fn(ErrorKind) -> RegistryError + Send>,
    done: bool,
}

impl MinThroughput {
    /// At a window's end: an error when it brought too little, else a new
    /// window.
    fn end_window(&mut self) -> Option<RegistryError> {
        if self.seen < self.min_bytes {
            self.done = true;
            return Some((self.fail)(ErrorKind::Transport {
                message: format!(
                    "blob body slower than {} bytes/s: {} bytes in {} s",
                    self.min_bytes_per_second,
                    self.seen,
                    self.waited.as_secs_f64()
                ),
                retryable: false,
            }));
        }
        self.seen = 0;
        self.waited = Duration::ZERO;
        None
    }
}

impl Stream for MinThroughput {
    type Item = Result<Bytes, RegistryError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.done {
            return Poll::Ready(None);
        }
        match this.inner.as_mut().poll_next(cx) {
            Poll::Ready(Some(Ok(chunk))) => {
                if let Some(since) = this.waiting_since.take() {
                    this.waited += since.elapsed();
                }
                this.seen = this.seen.saturating_add(chunk.len() as u64);
                if this.waited >= this.window
                    && let Some(e) = this.end_window()
                {
                    return Poll::Ready(Some(Err(e)));
                }
                Poll::Ready(Some(Ok(chunk)))
            }
            Poll::Ready(other) => {
                this.done = other.is_none();
                Poll::Ready(other)
            }
            Poll::Pending => loop {
                // Nothing arrived: the window's end must still be noticed.
                let since = *this.waiting_since.get_or_insert_with(Instant::now);
                let end = since + this.window.saturating_sub(this.waited);
                if this.timer.deadline() != end {
                    this.timer.as_mut().reset(end);
                }
                if this.timer.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                let now = Instant::now();
                this.waited += now.saturating_duration_since(since);
                this.waiting_since = Some(now);
                if let Some(e) = this.end_window() {
                    return Poll::Ready(Some(Err(e)));
                }
            },
        }
    }
}
