//! Timing only: when each job fires, never two runs of one job at once, the
//! bound on jobs running together. (Per-item failure backoff is the
//! store's: [`Store::failure`], asked by sync before every item.)
//!
//! - Interval jobs fire right after start-up and then every interval;
//!   cron jobs fire at their cron times (UTC). Each fire time is delayed by
//!   a jitter fixed per job name ([`jitter_for`]), so restarts do not make
//!   every job fire at the same instant, and a job keeps its slot across
//!   restarts.
//! - When a job's previous run is still going (or still waiting for a job
//!   permit), its tick is skipped and recorded ([`TickEvent::Skipped`],
//!   [`Store::record_skipped`]). Slots missed while the process was busy or
//!   the clock jumped are coalesced into one tick.
//!
//! Time comes from a [`Clock`], so tests drive it with a [`ManualClock`]
//! and await events instead of sleeping.
//!
//! May import: `config` (types only), `store`, `oci`.

use std::collections::HashSet;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, Schedule, Timing};
use crate::store::Store;

/// A source of time.
#[async_trait]
pub trait Clock: Send + Sync {
    /// The current time.
    fn now(&self) -> DateTime<Utc>;
    /// Completes once [`Clock::now`] has reached `deadline`.
    async fn sleep_until(&self, deadline: DateTime<Utc>);
}

/// The system clock, sleeping with tokio timers.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

#[async_trait]
impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }

    async fn sleep_until(&self, deadline: DateTime<Utc>) {
        // Re-check after waking: the wall clock may have been adjusted.
        loop {
            let left = deadline - Utc::now();
            match left.to_std() {
                Ok(d) if !d.is_zero() => tokio::time::sleep(d).await,
                _ => return,
            }
        }
    }
}

/// A clock that only moves when told to, for tests.
#[derive(Debug)]
pub struct ManualClock {
    now: watch::Sender<DateTime<Utc>>,
}

impl ManualClock {
    /// A clock standing at `start`.
    pub fn new(start: DateTime<Utc>) -> Self {
        ManualClock {
            now: watch::Sender::new(start),
        }
    }

    /// Moves the clock forward by `by`, waking sleepers whose deadline has
    /// come.
    pub fn advance(&self, by: Duration) {
        let by = chrono::Duration::from_std(by).unwrap_or(chrono::Duration::MAX);
        self.now
            .send_modify(|t| *t = t.checked_add_signed(by).unwrap_or(*t));
    }

    /// Sets the clock to `t`.
    pub fn set(&self, t: DateTime<Utc>) {
        self.now.send_replace(t);
    }
}

#[async_trait]
impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.now.borrow()
    }

    async fn sleep_until(&self, deadline: DateTime<Utc>) {
        let mut rx = self.now.subscribe();
        loop {
            if *rx.borrow_and_update() >= deadline {
                return;
            }
            if rx.changed().await.is_err() {
                return;
            }
        }
    }
}

/// The fixed delay of `job` within `[0, max]`, derived from its name: the
/// same on every restart, different between jobs.
pub fn jitter_for(job: &str, max: Duration) -> Duration {
    let max_ms = u64::try_from(max.as_millis()).unwrap_or(u64::MAX);
    if max_ms == 0 {
        return Duration::ZERO;
    }
    let digest = crate::oci::Digest::sha256(job.as_bytes());
    let seed = u64::from_str_radix(&digest.hex()[..16], 16).unwrap_or(0);
    Duration::from_millis(seed % max_ms.saturating_add(1))
}

/// When one job fires next.
#[derive(Clone, Debug)]
pub struct JobTimer {
    job: String,
    timing: Timing,
    jitter: chrono::Duration,
    /// The schedule slot before jitter; `None` when a cron expression has no
    /// further match.
    slot: Option<DateTime<Utc>>,
}

impl JobTimer {
    /// A timer for `job` starting at `now`: interval jobs get their first
    /// slot at `now`, cron jobs at their next cron time.
    pub fn new(job: &str, schedule: &Schedule, now: DateTime<Utc>) -> Self {
        let jitter = chrono::Duration::from_std(jitter_for(job, schedule.jitter))
            .unwrap_or(chrono::Duration::zero());
        let slot = match &schedule.timing {
            Timing::Interval(_) => Some(now),
            // The first cron slot whose jittered time is not in the past.
            Timing::Cron(c) => c.next_after(now - jitter - chrono::Duration::milliseconds(1)),
        };
        JobTimer {
            job: job.to_string(),
            timing: schedule.timing.clone(),
            jitter,
            slot,
        }
    }

    /// The job's name.
    pub fn job(&self) -> &str {
        &self.job
    }

    /// The next fire time (slot plus jitter), if any.
    pub fn next_fire(&self) -> Option<DateTime<Utc>> {
        self.slot.and_then(|s| s.checked_add_signed(self.jitter))
    }

    /// True when the timer should fire at `now`.
    pub fn is_due(&self, now: DateTime<Utc>) -> bool {
        self.next_fire().is_some_and(|f| f <= now)
    }

    /// Moves to the first slot that fires after `now` (coalescing missed
    /// slots into the tick just taken).
    pub fn advance(&mut self, now: DateTime<Utc>) {
        let Some(slot) = self.slot else {
            return;
        };
        self.slot = match &self.timing {
            Timing::Interval(every) => {
                let every_ms = i64::try_from(every.as_millis()).unwrap_or(i64::MAX).max(1);
                let fire = slot + self.jitter;
                let behind_ms = (now - fire).num_milliseconds().max(0);
                let steps = behind_ms / every_ms + 1;
                steps
                    .checked_mul(every_ms)
                    .and_then(|ms| slot.checked_add_signed(chrono::Duration::milliseconds(ms)))
            }
            Timing::Cron(c) => c.next_after(now - self.jitter),
        };
    }
}

/// Jobs with a run in progress.
#[derive(Clone, Debug, Default)]
pub struct RunningJobs {
    inner: Arc<Mutex<HashSet<String>>>,
}

impl RunningJobs {
    /// Marks `job` running, or returns `None` when it already is. The mark
    /// is removed when the guard is dropped.
    pub fn try_start(&self, job: &str) -> Option<RunningGuard> {
        let mut set = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        set.insert(job.to_string()).then(|| RunningGuard {
            set: self.inner.clone(),
            job: job.to_string(),
        })
    }

    /// True while `job` has a run in progress.
    pub fn is_running(&self, job: &str) -> bool {
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(job)
    }
}

/// Proof that a job is marked running; unmarks it on drop.
#[derive(Debug)]
pub struct RunningGuard {
    set: Arc<Mutex<HashSet<String>>>,
    job: String,
}

impl Drop for RunningGuard {
    fn drop(&mut self) {
        self.set
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.job);
    }
}

/// What the scheduler did, for logs, metrics and tests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TickEvent {
    /// A run of `job` began (after getting a job permit).
    Started {
        /// Job name.
        job: String,
        /// When.
        at: DateTime<Utc>,
    },
    /// A run of `job` ended.
    Finished {
        /// Job name.
        job: String,
        /// When.
        at: DateTime<Utc>,
    },
    /// A tick of `job` was skipped: the previous run was still in progress.
    Skipped {
        /// Job name.
        job: String,
        /// When.
        at: DateTime<Utc>,
    },
    /// Shutdown began: no more ticks; running jobs get until `deadline`.
    Draining {
        /// Runs still in progress.
        running: usize,
        /// When they are abandoned.
        deadline: DateTime<Utc>,
    },
}

/// Fires jobs on their schedules and hands each run to a runner function.
pub struct Scheduler {
    clock: Arc<dyn Clock>,
    timers: Vec<JobTimer>,
    permits: Arc<Semaphore>,
    running: RunningJobs,
    store: Option<Store>,
    drain_timeout: Duration,
    events: Option<mpsc::UnboundedSender<TickEvent>>,
    /// "Run now" requests (job names), from the HTTP API.
    trigger: Option<mpsc::UnboundedReceiver<String>>,
}

impl Scheduler {
    /// A scheduler for `jobs` (name and schedule), running at most
    /// `concurrent_jobs` at once, with timers starting at the clock's now.
    pub fn new(
        clock: Arc<dyn Clock>,
        jobs: impl IntoIterator<Item = (String, Schedule)>,
        concurrent_jobs: usize,
    ) -> Self {
        let now = clock.now();
        let timers = jobs
            .into_iter()
            .map(|(name, schedule)| JobTimer::new(&name, &schedule, now))
            .collect();
        Scheduler {
            clock,
            timers,
            permits: Arc::new(Semaphore::new(concurrent_jobs.max(1))),
            running: RunningJobs::default(),
            store: None,
            drain_timeout: Duration::from_secs(30),
            events: None,
            trigger: None,
        }
    }

    /// A scheduler for every job of `config`, with its limits.
    pub fn from_config(clock: Arc<dyn Clock>, config: &Config) -> Self {
        let jobs = config
            .jobs
            .iter()
            .map(|j| (j.name.clone(), j.schedule.clone()));
        Scheduler::new(clock, jobs, config.limits.concurrent_jobs)
            .with_drain_timeout(config.limits.drain_timeout)
    }

    /// Records skipped ticks in `store`.
    pub fn with_store(mut self, store: Store) -> Self {
        self.store = Some(store);
        self
    }

    /// How long [`Scheduler::run`] waits for running jobs after shutdown.
    pub fn with_drain_timeout(mut self, timeout: Duration) -> Self {
        self.drain_timeout = timeout;
        self
    }

    /// A receiver of every [`TickEvent`].
    pub fn subscribe(&mut self) -> mpsc::UnboundedReceiver<TickEvent> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.events = Some(tx);
        rx
    }

    /// Fires a job as soon as its name arrives on `requests`, as if its
    /// timer had (skipped when a run of it is in progress); its schedule
    /// is unchanged.
    pub fn with_trigger(mut self, requests: mpsc::UnboundedReceiver<String>) -> Self {
        self.trigger = Some(requests);
        self
    }

    /// The set of jobs with a run in progress (shared, live).
    pub fn running(&self) -> RunningJobs {
        self.running.clone()
    }

    /// The timers, for `ocimirror status` ("next run at").
    pub fn timers(&self) -> &[JobTimer] {
        &self.timers
    }

    /// Fires jobs until `shutdown`, calling `runner(job)` for each run in
    /// its own task. After shutdown, waits up to the drain timeout for
    /// running jobs (which should watch the same token), then aborts them.
    pub async fn run<F, Fut>(mut self, runner: F, shutdown: CancellationToken)
    where
        F: Fn(String) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let runner = Arc::new(runner);
        let mut tasks = JoinSet::new();
        loop {
            let next = self.timers.iter().filter_map(JobTimer::next_fire).min();
            let clock = self.clock.clone();
            let sleep = async move {
                match next {
                    Some(t) => clock.sleep_until(t).await,
                    None => std::future::pending().await,
                }
            };
            let mut requested = None;
            tokio::select! {
                _ = shutdown.cancelled() => break,
                Some(_) = tasks.join_next(), if !tasks.is_empty() => continue,
                Some(job) = next_request(&mut self.trigger) => requested = Some(job),
                _ = sleep => {}
            }
            let now = self.clock.now();
            for i in 0..self.timers.len() {
                let due = self.timers[i].is_due(now);
                if !due && requested.as_deref() != Some(self.timers[i].job()) {
                    continue;
                }
                if due {
                    self.timers[i].advance(now);
                }
                let job = self.timers[i].job().to_string();
                match self.running.try_start(&job) {
                    Some(guard) => {
                        let permits = self.permits.clone();
                        let runner = runner.clone();
                        let clock = self.clock.clone();
                        let events = self.events.clone();
                        tasks.spawn(async move {
                            // The guard is held while waiting for a permit:
                            // a queued run counts as in progress.
                            let Ok(_permit) = permits.acquire_owned().await else {
                                return;
                            };
                            emit(
                                &events,
                                TickEvent::Started {
                                    job: job.clone(),
                                    at: clock.now(),
                                },
                            );
                            runner(job.clone()).await;
                            drop(guard);
                            emit(
                                &events,
                                TickEvent::Finished {
                                    job,
                                    at: clock.now(),
                                },
                            );
                        });
                    }
                    None => {
                        tracing::info!(job = %job, "Skipped a tick: the previous run is still in progress.");
                        if let Some(store) = &self.store
                            && let Err(e) = store
                                .record_skipped(&job, now, "previous run still in progress")
                                .await
                        {
                            tracing::warn!(job = %job, error = %e, "Could not record a skipped tick.");
                        }
                        emit(&self.events, TickEvent::Skipped { job, at: now });
                    }
                }
            }
        }
        // Drain: running jobs see the cancelled token and should wind down.
        let deadline = self.clock.now()
            + chrono::Duration::from_std(self.drain_timeout).unwrap_or(chrono::Duration::zero());
        emit(
            &self.events,
            TickEvent::Draining {
                running: tasks.len(),
                deadline,
            },
        );
        let clock = self.clock.clone();
        let drained = async { while tasks.join_next().await.is_some() {} };
        tokio::select! {
            _ = drained => {}
            _ = clock.sleep_until(deadline) => {
                tracing::warn!(remaining = tasks.len(), "Drain timeout reached; abandoning running jobs.");
                tasks.abort_all();
            }
        }
    }
}

/// The next "run now" request; never, without a trigger channel.
async fn next_request(trigger: &mut Option<mpsc::UnboundedReceiver<String>>) -> Option<String> {
    match trigger {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

fn emit(events: &Option<mpsc::UnboundedSender<TickEvent>>, event: TickEvent) {
    if let Some(tx) = events {
        // A dropped receiver only means nobody listens.
        let _ = tx.send(event);
    }
}

#[cfg(test)]
mod tests;
