//! The one clock of the agent's shells: what every `now` handed to a core
//! (engine, control session, control core, link reporter) is read from.
//!
//! It is tokio's clock, converted to a std [`Instant`] once here: the
//! shells wait on tokio's timers for the deadlines the cores compute, so the
//! times the cores get and the timers that wake them must come from the
//! same clock, also when a test pauses it. Outside a paused test it is the
//! std monotonic clock.

use std::time::Instant;

/// Now, on the shells' clock.
pub fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

/// The wall clock in Unix seconds, for what expires in Unix time
/// (membership credentials); 0 for a clock set before 1970.
pub fn unix_now_s() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
