//! What `copy` and `once` show while they work: a spinner with a running
//! count on a terminal, plain log lines otherwise.

use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

use crate::copy::{Action, CopyEvent};

/// The display of one command run.
pub(crate) struct Progress {
    bar: Option<ProgressBar>,
    nodes: u64,
    bytes: u64,
}

impl Progress {
    /// A spinner when `tty`, log lines otherwise.
    pub(crate) fn new(tty: bool) -> Self {
        let bar = tty.then(|| {
            let b = ProgressBar::new_spinner();
            b.set_style(
                ProgressStyle::with_template("{spinner} {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            b.enable_steady_tick(Duration::from_millis(120));
            b
        });
        Progress {
            bar,
            nodes: 0,
            bytes: 0,
        }
    }

    /// Shows one copy event of `label` (an image or a job).
    pub(crate) fn event(&mut self, label: &str, e: &CopyEvent) {
        self.nodes += 1;
        if matches!(e.action, Action::Copy | Action::Mount) {
            self.bytes += e.size;
        }
        match &self.bar {
            // Failures are said once, by the image's own line and the
            // summary; the spinner only counts.
            Some(b) => b.set_message(format!(
                "{label}: {} nodes, {} copied — {} {}",
                self.nodes,
                human_bytes(self.bytes),
                e.action,
                e.kind
            )),
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

    /// Removes the spinner.
    pub(crate) fn finish(self) {
        if let Some(b) = self.bar {
            b.finish_and_clear();
        }
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
