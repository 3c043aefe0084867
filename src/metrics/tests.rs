//! Every metric renders with its documented name and labels.

use super::*;
use std::collections::BTreeSet;

/// Calls every update method once with fixed labels.
fn exercised() -> Metrics {
    let m = Metrics::new().unwrap();
    m.job_configured("alpha", 300.0);
    m.blob_copied("alpha", "reg.example", 100);
    m.blob_skipped("alpha", "reg.example", 7);
    m.blob_mounted("alpha", "reg.example", 5);
    m.manifest_copied("alpha", "reg.example");
    m.manifest_skipped("alpha", "reg.example");
    m.tag_copied("alpha", "reg.example");
    m.tag_skipped("alpha", "reg.example");
    m.referrer_copied("alpha", "api", "fallback_tag");
    m.referrers_skipped("alpha", "api", "api", 1);
    m.error("alpha", "reg.example", "transport");
    m.request_finished("reg.example", "blob_get", Some(429), 0.2);
    m.retry("reg.example", "blob_get");
    m.rate_limiter_waited("reg.example", 0.5);
    m.docker_hub_remaining("registry-1.docker.io", 42);
    m.docker_hub_limit("registry-1.docker.io", 100);
    m.run_started("alpha");
    m.run_finished("alpha", RunResult::Success, 3.0);
    m.items_pending("alpha", 4);
    m.items_failing("alpha", 1);
    m.mirror_lag("alpha", 60.0);
    m.deletions().deleted("alpha", "tag");
    m.deletions().guard("alpha", true);
    m.deletions().backed_up("alpha");
    m.policy_image("alpha", PolicyResult::Refused);
    m.policy_signature("alpha", SignatureResult::Cached);
    m.replicas().joined("alpha", true);
    m.replicas().claimed("alpha");
    m.replicas().held("alpha", 2);
    m.replicas().live(3);
    m
}

#[test]
fn every_name_follows_the_naming_rule() {
    let families = exercised().registry().gather();
    let rule = regex::Regex::new(r"^ocimirror_[a-z][a-z0-9]*(_[a-z0-9]+)*$").unwrap();
    let units_not_base = ["_ms", "_milliseconds", "_minutes", "_hours", "_kb", "_mb"];
    for f in &families {
        let name = f.name();
        assert!(rule.is_match(name), "{name} breaks ocimirror_<name>_<unit>");
        let is_counter = f.get_field_type() == prometheus::proto::MetricType::COUNTER;
        assert_eq!(
            name.ends_with("_total"),
            is_counter,
            "{name}: counters and only counters end in _total"
        );
        for bad in units_not_base {
            assert!(!name.contains(bad), "{name} uses a non-base unit");
        }
        if f.get_field_type() == prometheus::proto::MetricType::HISTOGRAM {
            assert!(
                name.ends_with("_seconds") || name.ends_with("_bytes"),
                "{name}: histograms carry their unit"
            );
        }
        assert!(!f.help().is_empty(), "{name} has no help text");
        for metric in f.get_metric() {
            for l in metric.get_label() {
                assert!(
                    !["repo", "repository", "tag", "digest", "job"].contains(&l.name()),
                    "{name} has the unbounded or clashing label {}",
                    l.name()
                );
            }
        }
    }
    // The exported list is exactly what is registered.
    let registered: BTreeSet<&str> = families.iter().map(|f| f.name()).collect();
    let listed: BTreeSet<&str> = metric_names().iter().copied().collect();
    assert_eq!(registered, listed);
}

#[test]
fn rendering_contains_every_family_after_updates() {
    let text = exercised().render();
    for name in metric_names() {
        assert!(text.contains(&format!("# TYPE {name} ")), "{name} missing");
    }
    assert!(text.contains(&format!(
        "ocimirror_build_info{{version=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION")
    )));
    assert!(text.contains(
        r#"ocimirror_blob_bytes_total{action="copied",mirror_job="alpha",registry="reg.example"} 100"#
    ));
    assert!(text.contains(r#"ocimirror_replica_items_held{mirror_job="alpha"} 2"#));
    assert!(text.contains(r#"ocimirror_replica_leads{mirror_job="alpha"} 1"#));
    assert!(text.contains("ocimirror_replicas_live 3"));
    assert!(text.contains(
        r#"ocimirror_referrer_conversions_total{mirror_job="alpha",source_repr="api",target_repr="fallback_tag"} 1"#
    ));
    assert!(text.contains(
        r#"ocimirror_registry_rate_limited_total{operation="blob_get",registry="reg.example"} 1"#
    ));
    assert!(text.contains(
        r#"ocimirror_registry_request_duration_seconds_count{operation="blob_get",registry="reg.example",status_class="4xx"} 1"#
    ));
    assert!(text.contains(r#"ocimirror_job_running{mirror_job="alpha"} 0"#));
}

#[test]
fn same_representation_is_not_a_conversion() {
    let m = Metrics::new().unwrap();
    m.referrer_copied("j", "api", "api");
    assert!(!m.render().contains("ocimirror_referrer_conversions_total{"));
    m.referrer_copied("j", "cosign_tag", "layout");
    m.referrers_copied("j", "cosign_tag", "layout", 4);
    let text = m.render();
    assert!(text.contains(
        r#"ocimirror_referrer_conversions_total{mirror_job="j",source_repr="cosign_tag",target_repr="layout"} 5"#
    ));
    assert!(text.contains(
        r#"ocimirror_referrers_total{action="copied",mirror_job="j",source_repr="api",target_repr="api"} 1"#
    ));
}

#[test]
fn run_results_set_their_own_timestamp() {
    let m = Metrics::new().unwrap();
    m.job_configured("j", 60.0);
    let at = UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000);
    m.run_finished_at("j", RunResult::Failure, 2.0, at);
    let text = m.render();
    assert!(
        text.contains(r#"ocimirror_job_last_failure_timestamp_seconds{mirror_job="j"} 1700000000"#)
    );
    assert!(text.contains(r#"ocimirror_job_last_success_timestamp_seconds{mirror_job="j"} 0"#));
    assert!(text.contains(
        r#"ocimirror_job_run_duration_seconds_count{mirror_job="j",result="failure"} 1"#
    ));
}

#[test]
fn status_classes() {
    assert_eq!(status_class(Some(200)), "2xx");
    assert_eq!(status_class(Some(307)), "3xx");
    assert_eq!(status_class(Some(429)), "4xx");
    assert_eq!(status_class(Some(503)), "5xx");
    assert_eq!(status_class(Some(999)), "error");
    assert_eq!(status_class(None), "error");
}

#[test]
fn instances_are_independent() {
    let a = Metrics::new().unwrap();
    let b = Metrics::new().unwrap();
    a.blob_copied("j", "r", 1);
    assert!(a.render().contains("ocimirror_blobs_total{"));
    assert!(!b.render().contains("ocimirror_blobs_total{"));
}

#[test]
fn cosign_conversions_count_by_direction() {
    let m = Metrics::new().unwrap();
    m.cosign_converted("j", "to_referrers", 0);
    assert!(!m.render().contains("ocimirror_cosign_conversions_total{"));
    m.cosign_converted("j", "to_referrers", 3);
    m.cosign_converted("j", "to_tags", 1);
    let text = m.render();
    assert!(text.contains(
        r#"ocimirror_cosign_conversions_total{direction="to_referrers",mirror_job="j"} 3"#
    ));
    assert!(
        text.contains(
            r#"ocimirror_cosign_conversions_total{direction="to_tags",mirror_job="j"} 1"#
        )
    );
}
