//! The bounded queue between the webhook receiver and the worker, keyed by
//! item (job, repository, tag or digest): a second event for an item that
//! is still waiting joins it (dedupe) and pushes its start back by the
//! debounce (so an image and its signature pushed a moment apart are one
//! sync), up to a cap so a steady stream cannot starve an item.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::mapping::Work;

/// An item never waits longer than this many debounces after its first event.
const MAX_DEBOUNCES: u32 = 10;

/// The queue had no room for every new item of a request (429).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the event queue is full ({capacity} items waiting): retry later")]
pub struct QueueFull {
    /// The bound.
    pub capacity: usize,
}

/// An accepted event: its unique id and the source that sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventId {
    /// Unique id (the state database's key).
    pub id: String,
    /// The webhook source's name.
    pub source: String,
}

/// One item waiting, with every event id merged into it.
#[derive(Debug, Clone)]
pub struct Pending {
    /// What to sync.
    pub work: Work,
    /// The accepted events it stands for (rows of the state database).
    pub events: Vec<EventId>,
    /// When its first event arrived (the start of the push-to-mirrored lag).
    pub received_at: DateTime<Utc>,
    first: Instant,
    due: Instant,
}

/// Debounced, deduplicated, bounded. Shared by the receiver and the worker.
#[derive(Debug)]
pub struct EventQueue {
    pending: Mutex<HashMap<String, Pending>>,
    ready: Notify,
    capacity: usize,
    debounce: Duration,
}

impl EventQueue {
    /// A queue of at most `capacity` items, each waiting `debounce` after
    /// its latest event.
    pub fn new(capacity: usize, debounce: Duration) -> Self {
        EventQueue {
            pending: Mutex::new(HashMap::new()),
            ready: Notify::new(),
            capacity: capacity.max(1),
            debounce,
        }
    }

    /// Items waiting.
    pub fn depth(&self) -> usize {
        self.lock().len()
    }

    /// Adds every `(work, event id)`, or none of them when the new items
    /// do not fit (items already waiting always take more events).
    pub fn push(&self, items: Vec<(Work, EventId)>, now: DateTime<Utc>) -> Result<(), QueueFull> {
        let at = Instant::now();
        let mut pending = self.lock();
        let mut new_keys: Vec<String> = items
            .iter()
            .map(|(w, _)| w.key())
            .filter(|k| !pending.contains_key(k))
            .collect();
        new_keys.sort();
        new_keys.dedup();
        if pending.len() + new_keys.len() > self.capacity {
            return Err(QueueFull {
                capacity: self.capacity,
            });
        }
        let cap = self.debounce * MAX_DEBOUNCES;
        for (work, id) in items {
            let entry = pending.entry(work.key()).or_insert_with(|| Pending {
                work,
                events: Vec::new(),
                received_at: now,
                first: at,
                due: at,
            });
            entry.events.push(id);
            entry.due = (at + self.debounce).min(entry.first + cap);
        }
        drop(pending);
        self.ready.notify_one();
        Ok(())
    }

    /// Waits until at least one item is due and takes every due item;
    /// empty once `cancel` fires.
    pub async fn next_batch(&self, cancel: &CancellationToken) -> Vec<Pending> {
        loop {
            let notified = self.ready.notified();
            let next_due = {
                let mut pending = self.lock();
                let now = Instant::now();
                let due: Vec<String> = pending
                    .iter()
                    .filter(|(_, p)| p.due <= now)
                    .map(|(k, _)| k.clone())
                    .collect();
                if !due.is_empty() {
                    let mut batch: Vec<Pending> =
                        due.iter().filter_map(|k| pending.remove(k)).collect();
                    batch.sort_by_key(|p| p.first);
                    return batch;
                }
                pending.values().map(|p| p.due).min()
            };
            let sleep = async {
                match next_due {
                    Some(t) => tokio::time::sleep_until(t).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = cancel.cancelled() => return Vec::new(),
                _ = notified => {}
                _ = sleep => {}
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Pending>> {
        // A panic while holding the lock leaves a consistent map.
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::mapping::Target;
    use crate::oci::{RepoName, Tag};

    fn id(id: &str) -> EventId {
        EventId {
            id: id.into(),
            source: "s".into(),
        }
    }

    fn ids(p: &Pending) -> Vec<&str> {
        p.events.iter().map(|e| e.id.as_str()).collect()
    }

    fn work(tag: &str) -> Work {
        Work {
            job: "j".into(),
            repository: RepoName::new("a/b").unwrap(),
            target: Target::Tag(Tag::new(tag).unwrap()),
        }
    }

    // `second` is read before the push that sets the deadline, so the
    // wait measured from it is never shorter than the debounce.
    #[tokio::test]
    async fn events_for_one_item_merge_and_wait_for_quiet() {
        let q = EventQueue::new(2, Duration::from_millis(200));
        let now = Utc::now();
        q.push(vec![(work("v1"), id("e1"))], now).unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        let second = Instant::now();
        q.push(vec![(work("v1"), id("e2"))], now).unwrap();
        assert_eq!(q.depth(), 1);
        let batch = q.next_batch(&CancellationToken::new()).await;
        // Due a debounce after the second event, not the first.
        assert!(
            second.elapsed() >= Duration::from_millis(200),
            "{:?}",
            second.elapsed()
        );
        assert_eq!(batch.len(), 1);
        assert_eq!(ids(&batch[0]), ["e1", "e2"]);
        assert_eq!(q.depth(), 0);
    }

    #[tokio::test]
    async fn a_full_queue_refuses_new_items_but_merges_known_ones() {
        let q = EventQueue::new(2, Duration::from_millis(100));
        let now = Utc::now();
        q.push(vec![(work("a"), id("1")), (work("b"), id("2"))], now)
            .unwrap();
        assert_eq!(
            q.push(vec![(work("a"), id("3")), (work("c"), id("4"))], now),
            Err(QueueFull { capacity: 2 })
        );
        // Nothing of the refused request was taken.
        q.push(vec![(work("a"), id("5"))], now).unwrap();
        let batch = q.next_batch(&CancellationToken::new()).await;
        let all: Vec<Vec<&str>> = batch.iter().map(ids).collect();
        assert!(all.contains(&vec!["1", "5"]), "{all:?}");
    }
}
