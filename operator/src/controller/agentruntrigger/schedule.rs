//! Cron arithmetic for triggers (pure): the most recent due time, the next one, the times
//! missed in between. Cron patterns are parsed by `croner` (Vixie cron: five fields, `@daily`
//! and the other aliases, day of week 0–7 with 0 and 7 Sunday, as Kubernetes CronJobs read
//! them); time zones come from the IANA database compiled into `chrono-tz`. Times are whole
//! seconds since the Unix epoch.

use chrono::TimeZone as _;
use croner::Cron;
use std::str::FromStr as _;

/// A trigger's parsed schedule.
#[derive(Debug, Clone)]
pub struct Schedule {
    cron: Cron,
    tz: chrono_tz::Tz,
}

/// Why a schedule cannot be used: the condition reason and a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    /// `InvalidSchedule` or `InvalidTimeZone`.
    pub reason: &'static str,
    /// For people.
    pub message: String,
}

/// The aliases a CronJob schedule may use.
const ALIASES: [&str; 7] = [
    "@yearly",
    "@annually",
    "@monthly",
    "@weekly",
    "@daily",
    "@midnight",
    "@hourly",
];

impl Schedule {
    /// Parses `pattern` (five fields or an alias; seconds are not allowed, as in a CronJob) in
    /// time zone `tz` (IANA name; `None`: UTC).
    ///
    /// # Errors
    /// [`Invalid`] naming what is wrong.
    pub fn parse(pattern: &str, tz: Option<&str>) -> Result<Self, Invalid> {
        let p = pattern.trim();
        let fields = p.split_whitespace().count();
        if !(ALIASES.contains(&p) || (fields == 5 && !p.starts_with('@'))) {
            return Err(Invalid {
                reason: "InvalidSchedule",
                message: format!(
                    "schedule {pattern:?} is not five cron fields (minute hour day-of-month month day-of-week) or one of {}",
                    ALIASES.join(", ")
                ),
            });
        }
        let cron = Cron::from_str(if p == "@midnight" { "@daily" } else { p }).map_err(|e| Invalid {
            reason: "InvalidSchedule",
            message: format!("schedule {pattern:?}: {e}"),
        })?;
        let tz = match tz {
            None => chrono_tz::UTC,
            Some(name) => name.parse::<chrono_tz::Tz>().map_err(|_| Invalid {
                reason: "InvalidTimeZone",
                message: format!("timeZone {name:?} is not an IANA time zone name (e.g. Europe/Berlin)"),
            })?,
        };
        Ok(Schedule { cron, tz })
    }

    /// The first due time strictly after `t`, or `None` when there is none (e.g. `0 0 30 2 *`).
    pub fn next_after(&self, t: i64) -> Option<i64> {
        let at = self.tz.timestamp_opt(t, 0).single()?;
        self.cron.find_next_occurrence(&at, false).ok().map(|d| d.timestamp())
    }

    /// The latest due time in `(after, now]`, if any. Bounded work: it looks back over
    /// growing windows (a minute to ten years) and walks forward only inside the first window
    /// that holds a due time.
    pub fn most_recent(&self, after: i64, now: i64) -> Option<i64> {
        if now <= after {
            return None;
        }
        for window in [60, 3_600, 86_400, 2_678_400, 31_622_400, 316_224_000] {
            let from = (now - window).max(after);
            let mut t = self.next_after(from)?;
            if t > now {
                if from == after {
                    return None;
                }
                continue;
            }
            loop {
                match self.next_after(t) {
                    Some(n) if n <= now => t = n,
                    _ => return Some(t),
                }
            }
        }
        None
    }

    /// How many due times lie in `(after, before)`, counting at most `cap`.
    pub fn count_between(&self, after: i64, before: i64, cap: u64) -> u64 {
        let mut n = 0;
        let mut t = after;
        while n < cap {
            match self.next_after(t) {
                Some(next) if next < before => {
                    n += 1;
                    t = next;
                }
                _ => break,
            }
        }
        n
    }
}
