//! Metric names, so tests can check dashboards and alerts against them.

/// Blobs handled, by action.
pub const BLOBS: &str = "ocimirror_blobs_total";
/// Blob bytes handled, by action.
pub const BLOB_BYTES: &str = "ocimirror_blob_bytes_total";
/// Manifests handled, by action.
pub const MANIFESTS: &str = "ocimirror_manifests_total";
/// Tags handled, by action.
pub const TAGS: &str = "ocimirror_tags_total";
/// Referrers handled, by action and representation.
pub const REFERRERS: &str = "ocimirror_referrers_total";
/// Referrers whose representation changed on the way.
pub const REFERRER_CONVERSIONS: &str = "ocimirror_referrer_conversions_total";
/// cosign attachments converted, by direction (to_referrers, to_tags).
pub const COSIGN_CONVERSIONS: &str = "ocimirror_cosign_conversions_total";
/// Errors by job, registry and kind.
pub const ERRORS: &str = "ocimirror_errors_total";
/// Registry request latency.
pub const REQUEST_DURATION: &str = "ocimirror_registry_request_duration_seconds";
/// Retried registry requests.
pub const RETRIES: &str = "ocimirror_registry_retries_total";
/// 429 responses.
pub const RATE_LIMITED: &str = "ocimirror_registry_rate_limited_total";
/// Time spent waiting for the local rate limiter.
pub const LIMITER_WAIT: &str = "ocimirror_rate_limiter_wait_seconds";
/// Docker Hub pulls remaining.
pub const DOCKER_HUB_REMAINING: &str = "ocimirror_docker_hub_pulls_remaining";
/// Docker Hub pull limit.
pub const DOCKER_HUB_LIMIT: &str = "ocimirror_docker_hub_pulls_limit";
/// Run duration by job and result.
pub const RUN_DURATION: &str = "ocimirror_job_run_duration_seconds";
/// Whether a run is in progress.
pub const RUNNING: &str = "ocimirror_job_running";
/// Last successful run end.
pub const LAST_SUCCESS: &str = "ocimirror_job_last_success_timestamp_seconds";
/// Last failed run end.
pub const LAST_FAILURE: &str = "ocimirror_job_last_failure_timestamp_seconds";
/// Items waiting to be copied.
pub const ITEMS_PENDING: &str = "ocimirror_job_items_pending";
/// Items whose last attempt failed.
pub const ITEMS_FAILING: &str = "ocimirror_job_items_failing";
/// Age of the oldest source change not yet on the target.
pub const MIRROR_LAG: &str = "ocimirror_job_mirror_lag_seconds";
/// The configured schedule interval.
pub const INTERVAL: &str = "ocimirror_job_interval_seconds";
/// Build information.
pub const BUILD_INFO: &str = "ocimirror_build_info";

// --- webhooks (event-driven mirroring) -------------------------------------

/// Webhook requests received, by format.
pub const WEBHOOK_RECEIVED: &str = "ocimirror_webhook_requests_total";
/// Webhook events accepted or ignored, by format.
pub const WEBHOOK_EVENTS: &str = "ocimirror_webhook_events_total";
/// Webhook requests refused, by format and reason.
pub const WEBHOOK_REJECTED: &str = "ocimirror_webhook_rejected_total";
/// Items waiting in the event queue.
pub const WEBHOOK_QUEUE_DEPTH: &str = "ocimirror_webhook_queue_depth";
/// Seconds from an event's arrival to its item on the target.
pub const WEBHOOK_LAG: &str = "ocimirror_webhook_push_to_mirrored_seconds";
// -- deletion sync ------------------------------------------------------------

/// Target tags deleted, by kind (`tag`, `digest`).
pub const DELETIONS: &str = "ocimirror_deletions_total";
/// Runs whose deletions the guard stopped.
pub const DELETION_GUARD_TRIPS: &str = "ocimirror_deletion_guard_trips_total";
/// Whether the job's last run tripped the deletion guard.
pub const DELETION_GUARD_TRIPPED: &str = "ocimirror_deletion_guard_tripped";
/// Backup tags written before a moved tag.
pub const TAG_BACKUPS: &str = "ocimirror_tag_backups_total";
/// Images decided by the signature policy, by result.
pub const POLICY_IMAGES: &str = "ocimirror_policy_images_total";
/// Signatures checked by the signature policy, by result.
pub const POLICY_SIGNATURES: &str = "ocimirror_policy_signatures_total";
// -- replicas (PostgreSQL) ----------------------------------------------------

/// Items of a shared run this replica claimed.
pub const REPLICA_ITEMS_CLAIMED: &str = "ocimirror_replica_items_claimed_total";
/// Items of a shared run this replica holds now.
pub const REPLICA_ITEMS_HELD: &str = "ocimirror_replica_items_held";
/// Whether this replica leads the job's shared run.
pub const REPLICA_LEADS: &str = "ocimirror_replica_leads";
/// Replicas alive in the state database.
pub const REPLICAS_LIVE: &str = "ocimirror_replicas_live";
