//! What `copy` and `once` show while they work: on a terminal one status
//! line (elapsed time, images done, bytes and rate, the current step) that
//! log lines are written above, never glued onto; debug log events
//! otherwise.

use std::io::Write;
use std::sync::Mutex;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use tracing_subscriber::fmt::MakeWriter;

use crate::copy::{Action, CopyEvent, NodeKind};

/// The status line on screen, if any: the log writer clears it around
/// each log line.
static ACTIVE: Mutex<Option<ProgressBar>> = Mutex::new(None);

fn active() -> Option<ProgressBar> {
    ACTIVE.lock().unwrap_or_else(|e| e.into_inner()).clone()
}

/// The display of one command run.
pub(crate) struct Progress {
    bar: Option<ProgressBar>,
    images: u64,
    failed: u64,
    /// Images to do, when known up front (`copy`).
    total: Option<u64>,
}

impl Progress {
    /// A status line when `tty`, debug log events otherwise.
    pub(crate) fn new(tty: bool) -> Self {
        let bar = tty.then(|| {
            let b = ProgressBar::new_spinner();
            b.set_style(
                ProgressStyle::with_template(
                    "{spinner} {elapsed:>4} {prefix} {binary_bytes} ({binary_bytes_per_sec}) {wide_msg}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            b.set_prefix("0 images done,");
            b.set_message("starting: reading the sources");
            b.enable_steady_tick(Duration::from_millis(120));
            *ACTIVE.lock().unwrap_or_else(|e| e.into_inner()) = Some(b.clone());
            b
        });
        Progress {
            bar,
            images: 0,
            failed: 0,
            total: None,
        }
    }

    /// Says how many images there are to do, when that is known.
    pub(crate) fn set_total(&mut self, total: u64) {
        self.total = Some(total);
        self.show_counts();
    }

    /// Shows one copy event of `label` (an image or a job).
    pub(crate) fn event(&mut self, label: &str, e: &CopyEvent) {
        if e.kind == NodeKind::Image {
            self.images += 1;
            if e.action == Action::Fail {
                self.failed += 1;
            }
            self.show_counts();
            return;
        }
        if matches!(e.action, Action::Copy | Action::Mount)
            && let Some(b) = &self.bar
        {
            b.inc(e.size);
        }
        match &self.bar {
            // Failures are said once, by the image's own line and the
            // summary; the status line only counts.
            Some(b) => b.set_message(format!("{label}: {} {}", e.action, e.kind)),
            // Per-object events are debug detail, as fields.
            None => tracing::debug!(
                image = %label,
                action = %e.action,
                kind = %e.kind,
                digest = e.digest.as_ref().map(|d| d.to_string()).unwrap_or_default(),
                size = e.size,
                reason = %e.reason,
                "Copy step."
            ),
        }
    }

    fn show_counts(&self) {
        let Some(b) = &self.bar else { return };
        let done = match self.total {
            Some(t) => format!("{}/{t}", self.images),
            None => self.images.to_string(),
        };
        let failed = if self.failed > 0 {
            format!(" ({} failed)", self.failed)
        } else {
            String::new()
        };
        let noun = if self.total.unwrap_or(self.images) == 1 {
            "image"
        } else {
            "images"
        };
        b.set_prefix(format!("{done} {noun} done{failed},"));
    }

    /// Removes the status line.
    pub(crate) fn finish(self) {
        if let Some(b) = self.bar {
            b.finish_and_clear();
            *ACTIVE.lock().unwrap_or_else(|e| e.into_inner()) = None;
        }
    }
}

/// The log writer of the command line: stderr, with the status line (if
/// one is shown) cleared while a log line is written and redrawn after.
#[derive(Clone, Copy, Debug, Default)]
pub struct LogWriter;

impl<'a> MakeWriter<'a> for LogWriter {
    type Writer = LogWriter;

    fn make_writer(&'a self) -> Self::Writer {
        LogWriter
    }
}

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match active() {
            Some(bar) => bar.suspend(|| std::io::stderr().write_all(buf).map(|()| buf.len())),
            None => std::io::stderr().write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

/// `n` bytes in binary units (`1.5 MiB`).
pub(crate) fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_events_count_images_and_failures_not_bytes() {
        let mut p = Progress::new(false);
        p.event("j", &CopyEvent::image_done("a:1", Action::Copy));
        p.event("j", &CopyEvent::image_done("a:2", Action::Fail));
        let mut blob = CopyEvent::image_done("a:3", Action::Copy);
        blob.kind = NodeKind::Blob;
        p.event("j", &blob);
        assert_eq!((p.images, p.failed), (2, 1));
    }
}
