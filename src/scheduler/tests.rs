//! Scheduler tests under a manual clock.

use super::*;
use crate::config::CronExpr;
use chrono::TimeZone;
use tokio::sync::Semaphore as Gate;

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 1, 30, 0).unwrap()
}

fn every(secs: u64, jitter: u64) -> Schedule {
    Schedule {
        timing: Timing::Interval(Duration::from_secs(secs)),
        jitter: Duration::from_secs(jitter),
    }
}

fn cron(expr: &str) -> Schedule {
    Schedule {
        timing: Timing::Cron(CronExpr::parse(expr).unwrap()),
        jitter: Duration::ZERO,
    }
}

fn secs(n: i64) -> chrono::Duration {
    chrono::Duration::seconds(n)
}

#[test]
fn jitter_is_bounded_deterministic_and_spread() {
    let max = Duration::from_secs(30);
    let mut distinct = HashSet::new();
    for i in 0..200 {
        let name = format!("job-{i}");
        let j = jitter_for(&name, max);
        assert!(j <= max, "{name}: {j:?}");
        assert_eq!(j, jitter_for(&name, max));
        distinct.insert(j);
    }
    // 200 names over 30001 possible values: nearly all distinct.
    assert!(distinct.len() > 190, "{}", distinct.len());
    assert_eq!(jitter_for("x", Duration::ZERO), Duration::ZERO);
}

#[test]
fn interval_timer_fires_now_plus_jitter_then_every_interval() {
    let schedule = every(60, 30);
    let mut timer = JobTimer::new("a", &schedule, t0());
    let jitter = chrono::Duration::from_std(jitter_for("a", Duration::from_secs(30))).unwrap();
    assert!(
        jitter > chrono::Duration::zero(),
        "the test needs a job with jitter"
    );
    let first = timer.next_fire().unwrap();
    assert_eq!(first, t0() + jitter);
    timer.advance(first);
    assert_eq!(timer.next_fire(), Some(first + secs(60)));
    // Three slots missed: coalesced, and the timer stays on its grid.
    timer.advance(first + secs(60 * 3 + 10));
    assert_eq!(timer.next_fire(), Some(first + secs(60 * 4)));
}

#[test]
fn cron_timer_fires_at_cron_times() {
    let mut timer = JobTimer::new("c", &cron("0 */6 * * *"), t0());
    let six = Utc.with_ymd_and_hms(2026, 1, 1, 6, 0, 0).unwrap();
    assert_eq!(timer.next_fire(), Some(six));
    timer.advance(six);
    assert_eq!(timer.next_fire(), Some(six + secs(6 * 3600)));
    // A start exactly on a cron time fires at once.
    let timer = JobTimer::new("c", &cron("0 */6 * * *"), six);
    assert_eq!(timer.next_fire(), Some(six));
}

#[test]
fn from_config_uses_every_job_and_the_limits() {
    let demo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/demo.toml");
    let config = crate::config::load_with_env(&demo, []).unwrap();
    let clock = Arc::new(ManualClock::new(t0()));
    let sched = Scheduler::from_config(clock, &config);
    let names: Vec<&str> = sched.timers().iter().map(JobTimer::job).collect();
    assert_eq!(names, ["demo"]);
    assert_eq!(sched.timers()[0].next_fire(), Some(t0()));
    assert_eq!(
        sched.permits.available_permits(),
        config.limits.concurrent_jobs
    );
    assert_eq!(sched.drain_timeout, config.limits.drain_timeout);
}

#[test]
fn running_guard_blocks_a_second_start() {
    let running = RunningJobs::default();
    let g = running.try_start("a").unwrap();
    assert!(running.try_start("a").is_none());
    assert!(running.try_start("b").is_some());
    assert!(running.is_running("a"));
    drop(g);
    assert!(!running.is_running("a"));
    assert!(running.try_start("a").is_some());
}

/// A runner whose runs each wait for one permit of `gate`.
fn gated_runner(
    gate: Arc<Gate>,
) -> impl Fn(String) -> futures::future::BoxFuture<'static, ()> + Send + Sync {
    move |_job| {
        let gate = gate.clone();
        Box::pin(async move {
            if let Ok(p) = gate.acquire().await {
                p.forget();
            }
        })
    }
}

async fn next(rx: &mut mpsc::UnboundedReceiver<TickEvent>) -> TickEvent {
    rx.recv().await.unwrap()
}

#[tokio::test]
async fn interval_firing_and_skip_while_running() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("s.db")).await.unwrap();
    let clock = Arc::new(ManualClock::new(t0()));
    let mut sched = Scheduler::new(clock.clone(), [("a".to_string(), every(10, 0))], 2)
        .with_store(store.clone());
    let mut rx = sched.subscribe();
    let running = sched.running();
    let gate = Arc::new(Gate::new(0));
    let shutdown = CancellationToken::new();
    let handle = tokio::spawn(sched.run(gated_runner(gate.clone()), shutdown.clone()));

    // Fires at start.
    assert_eq!(
        next(&mut rx).await,
        TickEvent::Started {
            job: "a".into(),
            at: t0()
        }
    );
    assert!(running.is_running("a"));
    // Ten seconds later the first run is still going: skipped, recorded.
    clock.advance(Duration::from_secs(10));
    assert_eq!(
        next(&mut rx).await,
        TickEvent::Skipped {
            job: "a".into(),
            at: t0() + secs(10)
        }
    );
    let runs = store.last_runs(Some("a"), 5).await.unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].result, Some(crate::store::RunResult::Skipped));
    assert_eq!(runs[0].started_at, t0() + secs(10));
    // Let the run finish; the next slot starts a new run.
    gate.add_permits(1);
    assert_eq!(
        next(&mut rx).await,
        TickEvent::Finished {
            job: "a".into(),
            at: t0() + secs(10)
        }
    );
    clock.advance(Duration::from_secs(10));
    assert_eq!(
        next(&mut rx).await,
        TickEvent::Started {
            job: "a".into(),
            at: t0() + secs(20)
        }
    );
    gate.add_permits(1);
    assert!(matches!(next(&mut rx).await, TickEvent::Finished { .. }));

    shutdown.cancel();
    handle.await.unwrap();
}

#[tokio::test]
async fn cron_firing_under_the_manual_clock() {
    let clock = Arc::new(ManualClock::new(t0()));
    let mut sched = Scheduler::new(clock.clone(), [("c".to_string(), cron("0 */6 * * *"))], 1);
    let mut rx = sched.subscribe();
    let gate = Arc::new(Gate::new(100));
    let shutdown = CancellationToken::new();
    let handle = tokio::spawn(sched.run(gated_runner(gate), shutdown.clone()));
    let six = Utc.with_ymd_and_hms(2026, 1, 1, 6, 0, 0).unwrap();
    // 05:59:59: nothing yet; 06:00: fires.
    clock.set(six - secs(1));
    clock.set(six);
    assert_eq!(
        next(&mut rx).await,
        TickEvent::Started {
            job: "c".into(),
            at: six
        }
    );
    assert!(matches!(next(&mut rx).await, TickEvent::Finished { .. }));
    clock.set(six + secs(6 * 3600));
    assert_eq!(
        next(&mut rx).await,
        TickEvent::Started {
            job: "c".into(),
            at: six + secs(6 * 3600)
        }
    );
    assert!(matches!(next(&mut rx).await, TickEvent::Finished { .. }));
    shutdown.cancel();
    handle.await.unwrap();
    // Nothing else happened: no extra or skipped ticks.
    assert!(matches!(
        rx.recv().await,
        Some(TickEvent::Draining { running: 0, .. })
    ));
    assert_eq!(rx.recv().await, None);
}

#[tokio::test]
async fn job_permits_bound_concurrent_runs() {
    let clock = Arc::new(ManualClock::new(t0()));
    let jobs = [
        ("a".to_string(), every(3600, 0)),
        ("b".to_string(), every(3600, 0)),
    ];
    let mut sched = Scheduler::new(clock.clone(), jobs, 1);
    let mut rx = sched.subscribe();
    let gate = Arc::new(Gate::new(0));
    let shutdown = CancellationToken::new();
    let handle = tokio::spawn(sched.run(gated_runner(gate.clone()), shutdown.clone()));
    let first = match next(&mut rx).await {
        TickEvent::Started { job, .. } => job,
        other => panic!("{other:?}"),
    };
    // The other job waits for the single permit until the first ends.
    gate.add_permits(1);
    assert_eq!(
        next(&mut rx).await,
        TickEvent::Finished {
            job: first.clone(),
            at: t0()
        }
    );
    let second = match next(&mut rx).await {
        TickEvent::Started { job, .. } => job,
        other => panic!("{other:?}"),
    };
    assert_ne!(first, second);
    gate.add_permits(1);
    assert!(matches!(next(&mut rx).await, TickEvent::Finished { .. }));
    shutdown.cancel();
    handle.await.unwrap();
}

#[tokio::test]
async fn shutdown_abandons_runs_after_the_drain_timeout() {
    let clock = Arc::new(ManualClock::new(t0()));
    let mut sched = Scheduler::new(clock.clone(), [("a".to_string(), every(60, 0))], 1)
        .with_drain_timeout(Duration::from_secs(5));
    let mut rx = sched.subscribe();
    let gate = Arc::new(Gate::new(0));
    let shutdown = CancellationToken::new();
    let handle = tokio::spawn(sched.run(gated_runner(gate), shutdown.clone()));
    assert!(matches!(next(&mut rx).await, TickEvent::Started { .. }));
    shutdown.cancel();
    // The run never ends by itself; only the drain timeout ends `run`.
    assert_eq!(
        next(&mut rx).await,
        TickEvent::Draining {
            running: 1,
            deadline: t0() + secs(5)
        }
    );
    assert!(!handle.is_finished());
    clock.advance(Duration::from_secs(5));
    handle.await.unwrap();
    assert_eq!(rx.recv().await, None);
}
