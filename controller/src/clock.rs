//! Wall-clock helpers for the shells (CLI, HTTP API, the hub's task):
//! decision cores never call these, they are handed `now`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Milliseconds per second: the hub's `now_ms` to the store's seconds.
pub const MS_PER_S: i64 = 1_000;
const SECS_PER_MINUTE: u64 = 60;
const SECS_PER_HOUR: u64 = 60 * SECS_PER_MINUTE;
const SECS_PER_DAY: u64 = 24 * SECS_PER_HOUR;

/// A duration the operator wrote that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a duration (e.g. 30m, 24h, 7d)")]
pub struct BadDuration(pub String);

/// Seconds since the Unix epoch.
pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Milliseconds since the Unix epoch: the admin API's time unit.
pub fn unix_now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Parses `30s`, `30m`, `24h`, `7d`.
pub fn parse_duration(text: &str) -> Result<Duration, BadDuration> {
    let err = || BadDuration(text.to_owned());
    let text = text.trim();
    let split = text.len().checked_sub(1).ok_or_else(err)?;
    let (num, unit) = text.split_at(split);
    let n: u64 = num.parse().map_err(|_| err())?;
    let secs = match unit {
        "s" => n,
        "m" => n.checked_mul(SECS_PER_MINUTE).ok_or_else(err)?,
        "h" => n.checked_mul(SECS_PER_HOUR).ok_or_else(err)?,
        "d" => n.checked_mul(SECS_PER_DAY).ok_or_else(err)?,
        _ => return Err(err()),
    };
    if secs == 0 {
        return Err(err());
    }
    Ok(Duration::from_secs(secs))
}
