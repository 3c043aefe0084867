//! Time limits on requests over a link that trickles bytes: just often
//! enough to defeat the idle read timeout, far too slowly to be useful.
//! Metadata requests get a total deadline; blob bodies a minimum
//! throughput. Both leave an honest slow registry alone.

use std::time::{Duration, Instant};

use futures::StreamExt;
use ocimirror::oci::Digest;
use ocimirror::registry::Registry;
use ocimirror::registry::http::{DockerConfigSource, HttpRegistry, HttpSettings, RetryPolicy};

use crate::support::registry::{Fault, FaultKind, Options, TestRegistry};
use crate::support::values::repo;

fn client(tr: &TestRegistry, f: impl FnOnce(&mut HttpSettings)) -> HttpRegistry {
    let mut s = HttpSettings {
        docker_config: DockerConfigSource::Off,
        retry: RetryPolicy {
            max_attempts: 2,
            min_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(5),
        },
        ..HttpSettings::default()
    };
    f(&mut s);
    HttpRegistry::new(&tr.host(), s).unwrap()
}

/// One byte every 50 ms, for every matching response.
fn trickle(tr: &TestRegistry, path: &str, chunk: usize) {
    tr.push_fault(Fault {
        times: 100,
        ..Fault::once(
            Some("GET"),
            path,
            FaultKind::Trickle {
                chunk,
                every: Duration::from_millis(50),
            },
        )
    });
}

#[tokio::test]
async fn a_trickled_metadata_answer_hits_the_total_deadline() {
    let tr = TestRegistry::start(Options::default()).await;
    tr.seed_image("app", "v1", &[b"layer"]);
    trickle(&tr, "/tags/list", 1);

    // The default deadline leaves a slow but honest answer (~2 s) alone.
    let tags = client(&tr, |_| {}).tags(&repo("app")).await.unwrap();
    assert_eq!(tags, ["v1"]);

    let r = client(&tr, |s| s.metadata_timeout = Duration::from_millis(300));
    let started = Instant::now();
    let e = r.tags(&repo("app")).await.unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "took {:?}",
        started.elapsed()
    );
    let text = e.to_string();
    assert!(text.contains(&tr.host()) && text.contains("app"), "{text}");
    assert!(
        text.contains("timed out") || text.contains("deadline"),
        "{text}"
    );
}

#[tokio::test]
async fn a_trickled_blob_body_fails_below_the_minimum_throughput() {
    let tr = TestRegistry::start(Options::default()).await;
    let data = vec![3u8; 64 * 1024];
    let d = tr.put_blob("app", &data);
    let digest: Digest = d.parse().unwrap();
    // 100 bytes every 50 ms: 2 KB/s, below the 100 KB/s asked for here.
    trickle(&tr, "/blobs/", 100);
    let r = client(&tr, |s| {
        s.min_blob_bytes_per_second = 100_000;
        s.blob_throughput_window = Duration::from_millis(300);
    });
    let started = Instant::now();
    let blob = r.blob_get(&repo("app"), &digest).await.unwrap();
    let mut body = blob.stream;
    let mut e = None;
    while let Some(chunk) = body.next().await {
        if let Err(err) = chunk {
            e = Some(err);
            break;
        }
    }
    let e = e.expect("a 2 KB/s body passed a 100 KB/s minimum");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    let text = e.to_string();
    for part in [tr.host().as_str(), "app", d.as_str(), "slower than"] {
        assert!(text.contains(part), "{text:?} lacks {part:?}");
    }
}
