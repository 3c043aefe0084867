//! Log output: human-readable text on a terminal, one JSON object per line
//! otherwise (for log collectors), filtered by `RUST_LOG` or a configured
//! level.
//!
//! Log lines are capitalised sentences ending with a period, with the
//! structured fields first (`info!(job, tag, "Image synced.")`); ERROR is
//! for failures an operator must act on.
//!
//! Imports nothing from the crate.

use std::io::IsTerminal;

use serde::{Deserialize, Serialize};
use tracing::Subscriber;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::util::SubscriberInitExt;

/// Log output format.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Text on a terminal, JSON otherwise.
    #[default]
    Auto,
    /// Human-readable text.
    Text,
    /// One JSON object per line, event fields at the top level.
    Json,
}

/// The log filter could not be parsed.
#[derive(Debug, thiserror::Error)]
#[error("invalid log filter {directive:?}: {message}")]
pub struct LoggingError {
    /// The filter as given (`RUST_LOG` or the configured level).
    pub directive: String,
    /// What is wrong with it.
    pub message: String,
}

/// Installs the global subscriber writing to stderr. `RUST_LOG`, when set
/// and not empty, wins over `level` (e.g. `"info"` or
/// `"info,ocimirror::copy=debug"`). Calling it again after a subscriber is
/// installed does nothing, so tests and embedders may call it freely.
pub fn init(format: LogFormat, level: &str) -> Result<(), LoggingError> {
    init_with(format, level, std::io::stderr)
}

/// [`init`] writing through `writer`, a wrapper of stderr (the command
/// line's clears its status line around each log line).
pub fn init_with<W>(format: LogFormat, level: &str, writer: W) -> Result<(), LoggingError>
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    let directive = match std::env::var("RUST_LOG") {
        Ok(v) if !v.trim().is_empty() => v,
        _ => level.to_string(),
    };
    let sub = build(format, &directive, writer, std::io::stderr().is_terminal())?;
    // Err means a global subscriber (or log bridge) already exists: keep it.
    let _ = sub.try_init();
    Ok(())
}

/// Builds the subscriber [`init`] would install, writing to `writer` and
/// filtering with `level` alone (no `RUST_LOG`). The writer is taken not to
/// be a terminal: `Auto` means JSON, and text has no colours.
pub fn subscriber<W>(
    format: LogFormat,
    level: &str,
    writer: W,
) -> Result<Box<dyn Subscriber + Send + Sync>, LoggingError>
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    build(format, level, writer, false)
}

fn build<W>(
    format: LogFormat,
    directive: &str,
    writer: W,
    terminal: bool,
) -> Result<Box<dyn Subscriber + Send + Sync>, LoggingError>
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    // A bare word must be a level: EnvFilter would take `bogus` as a target
    // name and silently log nothing but that target.
    const LEVELS: [&str; 6] = ["trace", "debug", "info", "warn", "error", "off"];
    if let Some(word) = directive.split(',').map(str::trim).find(|part| {
        !part.is_empty()
            && !part.contains(['=', '['])
            && !part.contains("::")
            && !LEVELS.contains(&part.to_ascii_lowercase().as_str())
    }) {
        return Err(LoggingError {
            directive: directive.to_string(),
            message: format!(
                "{word:?} is not a level: use trace, debug, info, warn, error or off, or target=level"
            ),
        });
    }
    let filter = EnvFilter::builder()
        .parse(directive)
        .map_err(|e| LoggingError {
            directive: directive.to_string(),
            message: e.to_string(),
        })?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    let json = match format {
        LogFormat::Auto => !terminal,
        LogFormat::Text => false,
        LogFormat::Json => true,
    };
    Ok(if json {
        Box::new(
            builder
                .json()
                .flatten_event(true)
                .with_current_span(true)
                .with_span_list(false)
                .finish(),
        )
    } else {
        Box::new(builder.with_ansi(terminal).finish())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);

    impl Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Buf {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
        }
    }

    fn capture(format: LogFormat, level: &str, emit: impl FnOnce()) -> String {
        let buf = Buf::default();
        let w = buf.clone();
        let sub = subscriber(format, level, move || w.clone()).unwrap();
        tracing::subscriber::with_default(sub, emit);
        buf.text()
    }

    #[test]
    fn json_writes_one_object_per_event_with_its_fields() {
        let out = capture(LogFormat::Json, "info", || {
            let span = tracing::info_span!("run", job = "alpha");
            let _g = span.enter();
            tracing::info!(tag = "v1", bytes = 42_u64, "Image synced.");
            tracing::debug!("Filtered out.");
            tracing::warn!(registry = "reg.example", "Registry slow.");
        });
        let lines: Vec<serde_json::Value> = out
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2, "{out}");
        let first = &lines[0];
        assert_eq!(first["level"], "INFO");
        assert_eq!(first["message"], "Image synced.");
        assert_eq!(first["tag"], "v1");
        assert_eq!(first["bytes"], 42);
        assert_eq!(first["span"]["job"], "alpha");
        assert!(first["timestamp"].is_string());
        assert_eq!(lines[1]["level"], "WARN");
        assert_eq!(lines[1]["registry"], "reg.example");
    }

    #[test]
    fn auto_is_json_when_not_a_terminal_and_text_is_plain() {
        let auto = capture(LogFormat::Auto, "info", || tracing::info!(n = 1, "Hello."));
        let v: serde_json::Value = serde_json::from_str(auto.trim()).unwrap();
        assert_eq!(v["message"], "Hello.");

        let text = capture(LogFormat::Text, "info", || tracing::info!(n = 1, "Hello."));
        assert!(serde_json::from_str::<serde_json::Value>(text.trim()).is_err());
        assert!(text.contains("Hello. n=1"), "{text}");
        assert!(!text.contains('\u{1b}'), "no colour codes off a terminal");
    }

    #[test]
    fn level_filters_per_module() {
        let out = capture(LogFormat::Json, "warn,ocimirror::logging=debug", || {
            tracing::debug!("Kept.")
        });
        assert!(out.contains("Kept."));
        let out = capture(LogFormat::Json, "warn", || tracing::info!("Dropped."));
        assert_eq!(out, "");
    }

    #[test]
    fn bad_filter_is_an_error() {
        let e = subscriber(LogFormat::Json, "info,=[", std::io::sink)
            .err()
            .unwrap();
        assert!(e.to_string().contains("invalid log filter"), "{e}");
    }
}
