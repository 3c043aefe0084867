//! When a job runs: an interval or a cron expression, with jitter.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Serialize, Serializer};

use super::fmt_duration;

/// When a job runs.
#[derive(Clone, Debug, PartialEq)]
pub struct Schedule {
    /// Interval or cron times.
    pub timing: Timing,
    /// Upper bound of the per-job delay added to each fire time.
    pub jitter: Duration,
}

impl Default for Schedule {
    fn default() -> Self {
        Schedule {
            timing: Timing::Interval(Duration::from_secs(3600)),
            jitter: Duration::ZERO,
        }
    }
}

impl Serialize for Schedule {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(2))?;
        match &self.timing {
            Timing::Interval(d) => m.serialize_entry("interval", &fmt_duration(*d))?,
            Timing::Cron(c) => m.serialize_entry("cron", c.expression())?,
        }
        m.serialize_entry("jitter", &fmt_duration(self.jitter))?;
        m.end()
    }
}

/// Interval or cron timing.
#[derive(Clone, Debug, PartialEq)]
pub enum Timing {
    /// Every this long.
    Interval(Duration),
    /// At the times of a cron expression (UTC).
    Cron(CronExpr),
}

/// A parsed 5-field cron expression, evaluated in UTC.
#[derive(Clone, Debug)]
pub struct CronExpr {
    expr: String,
    // Boxed: a parsed pattern is ~300 bytes and `Timing` is mostly intervals.
    cron: Box<croner::Cron>,
}

impl PartialEq for CronExpr {
    fn eq(&self, other: &Self) -> bool {
        self.expr == other.expr
    }
}

impl CronExpr {
    /// Parses `expr` (`minute hour day-of-month month day-of-week`).
    pub fn parse(expr: &str) -> Result<Self, croner::errors::CronError> {
        let cron = expr.parse::<croner::Cron>()?;
        Ok(CronExpr {
            expr: expr.to_string(),
            cron: Box::new(cron),
        })
    }

    /// The expression as written.
    pub fn expression(&self) -> &str {
        &self.expr
    }

    /// The first matching time strictly after `t`, if any.
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.cron.find_next_occurrence(&t, false).ok()
    }
}
