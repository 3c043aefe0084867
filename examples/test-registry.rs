//! The project's strict in-process test registry (`tests/it/support/registry`)
//! as a standalone server, for benchmarks: it is the only registry here with
//! the referrers API, and it can add a round-trip latency.
//!
//! Prints `127.0.0.1:<port>` once listening, then serves until killed. With
//! `--access-log FILE`, appends one line per request in the shape of
//! distribution's access log (`"METHOD /path HTTP/1.1" status`), so
//! `bench/lib.sh` counts its requests the same way.
//!
//! `cargo run --release --example test-registry -- [--no-referrers-api] [--latency-ms N] [--access-log FILE]`

#[path = "../tests/it/support/registry/mod.rs"]
mod registry;

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

#[derive(Parser)]
struct Args {
    /// Serve no referrers API (a tag-schema-only registry).
    #[arg(long)]
    no_referrers_api: bool,
    /// Milliseconds added to every request.
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
    /// Append every request here.
    #[arg(long)]
    access_log: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let reg = registry::TestRegistry::start(registry::Options {
        referrers_api: !args.no_referrers_api,
        latency: Duration::from_millis(args.latency_ms),
        ..registry::Options::default()
    })
    .await;
    println!("{}", reg.host());
    std::io::stdout().flush()?;
    let mut log = match &args.access_log {
        Some(path) => Some(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)?,
        ),
        None => None,
    };
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if let Some(file) = log.as_mut() {
            let mut lines = String::new();
            for r in reg.take_log() {
                lines.push_str(&format!(
                    "\"{} {} HTTP/1.1\" {}\n",
                    r.method, r.path, r.status
                ));
            }
            file.write_all(lines.as_bytes())?;
        }
    }
}
