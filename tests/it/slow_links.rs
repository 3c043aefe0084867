//! Bad links. One that trickles bytes, just often enough to defeat the
//! idle read timeout and far too slowly to be useful: metadata requests get
//! a total deadline, blob bodies a minimum throughput, and both leave an
//! honest slow registry alone. One that cuts connections mid-body: blob
//! reads resume with `Range` from where they were.

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

#[tokio::test]
async fn a_blob_over_a_link_that_cuts_every_response_resumes_with_range() {
    const CUT: usize = 256 * 1024;
    let tr = TestRegistry::start(Options::default()).await;
    let data: Vec<u8> = (0..4 * 1024 * 1024 + 12_345)
        .map(|i: usize| (i % 251) as u8)
        .collect();
    let d = tr.put_blob("app", &data);
    let digest: Digest = d.parse().unwrap();
    tr.push_fault(Fault {
        times: 1000,
        ..Fault::once(Some("GET"), "/blobs/", FaultKind::CutAfter(CUT))
    });
    let r = client(&tr, |s| s.retry.max_attempts = 3);
    let blob = r.blob_get(&repo("app"), &digest).await.unwrap();
    assert_eq!(blob.size, data.len() as u64);
    let mut body = blob.stream;
    let mut got = Vec::new();
    while let Some(chunk) = body.next().await {
        got.extend_from_slice(&chunk.unwrap());
    }
    assert!(got == data, "the resumed read delivered other bytes");
    // Every response brings at most CUT bytes; resuming from the offset
    // reached means no byte is sent twice, so the requests are just enough.
    let gets = tr.count("GET", &format!("/blobs/{d}"));
    let needed = data.len().div_ceil(CUT);
    assert!(
        gets <= needed + 2,
        "{gets} GETs for {needed} pieces: bytes were sent again"
    );
    assert!(gets >= needed, "{gets} GETs cannot carry {needed} pieces");
}

#[tokio::test]
async fn a_link_that_brings_nothing_gives_up_after_the_retry_budget() {
    let tr = TestRegistry::start(Options::default()).await;
    let data = vec![9u8; 64 * 1024];
    let d = tr.put_blob("app", &data);
    let digest: Digest = d.parse().unwrap();
    // The first response brings half; every later one is cut before a byte.
    tr.push_fault(Fault::once(Some("GET"), "/blobs/", FaultKind::ResetMidBody));
    tr.push_fault(Fault {
        times: 1000,
        ..Fault::once(Some("GET"), "/blobs/", FaultKind::CutAfter(0))
    });
    let r = client(&tr, |s| s.retry.max_attempts = 3);
    let blob = r.blob_get(&repo("app"), &digest).await.unwrap();
    let mut body = blob.stream;
    let mut e = None;
    while let Some(chunk) = body.next().await {
        if let Err(err) = chunk {
            e = Some(err);
            break;
        }
    }
    let e = e.expect("a link that never brings the rest cannot succeed");
    assert!(e.to_string().contains(&d), "{e}");
    // One good half, then 3 fruitless resumes.
    assert_eq!(tr.count("GET", &format!("/blobs/{d}")), 1 + 3);
}

#[tokio::test]
async fn a_registry_ignoring_range_is_read_again_from_the_start() {
    let tr = TestRegistry::start(Options {
        ignore_range: true,
        ..Options::default()
    })
    .await;
    let data: Vec<u8> = (0..200_000).map(|i: usize| (i % 253) as u8).collect();
    let d = tr.put_blob("app", &data);
    let digest: Digest = d.parse().unwrap();
    tr.push_fault(Fault::once(
        Some("GET"),
        "/blobs/",
        FaultKind::CutAfter(50_000),
    ));
    let r = client(&tr, |_| {});
    let blob = r.blob_get(&repo("app"), &digest).await.unwrap();
    let mut body = blob.stream;
    let mut got = Vec::new();
    while let Some(chunk) = body.next().await {
        got.extend_from_slice(&chunk.unwrap());
    }
    // The 200 re-sent the whole blob; the bytes already handed on were
    // skipped, not doubled.
    assert!(got == data, "{} bytes instead of {}", got.len(), data.len());
    assert_eq!(tr.count("GET", &format!("/blobs/{d}")), 2);
}
