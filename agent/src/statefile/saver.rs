//! When to write the state file, as a sans-IO core: routers keep it on
//! flash, which wears with every erase, so a write happens only when the
//! encoded state really differs from what the file holds, and at most once
//! per write interval (plus once at a clean shutdown).
//!
//! # Contract (call order)
//!
//! 1. [`StateSaver::new`] with the write interval and the digest of the
//!    file as read at start-up (`None` when there was none usable).
//! 2. [`StateSaver::handle_change`] whenever something the file holds may
//!    have changed (a controller event, a revocation page): a hint only,
//!    cheap to give too often; [`StateSaver::handle_shutdown`] at a clean
//!    shutdown.
//! 3. When [`StateSaver::poll_timeout`] has passed and
//!    [`StateSaver::wants_state`] says so, encode the state and hand the
//!    bytes to [`StateSaver::handle_state`]: the core compares their digest
//!    with the file's.
//! 4. Drain [`StateSaver::poll_write`]; write what it returns and report
//!    the outcome with [`StateSaver::handle_written`].

use std::time::{Duration, Instant};

use super::format::StateDigest;

/// Default for `state_write_interval`: at most 1,440 writes a day even
/// while the mesh churns; a steady mesh writes far less (only changes
/// count), and a restart loses at most a minute of changes, which the
/// controller or the neighbours bring back anyway.
pub const DEFAULT_WRITE_INTERVAL: Duration = Duration::from_secs(60);
/// A change seldom comes alone (a Welcome and its two full sets, the pages
/// of a revocation list): wait this long after the first sign of one so a
/// burst costs one write, not two.
pub const SETTLE: Duration = Duration::from_secs(2);

/// The write policy; see the module docs.
#[derive(Debug)]
pub struct StateSaver {
    interval: Duration,
    /// What the file holds now.
    on_disk: Option<StateDigest>,
    last_write: Option<Instant>,
    /// Since when the state may differ from the file (unchecked).
    changed_since: Option<Instant>,
    shutting_down: bool,
    /// Encoded state waiting to be written, with its digest.
    pending: Option<(Vec<u8>, StateDigest)>,
    /// The digest of the bytes handed out by `poll_write`.
    in_flight: Option<StateDigest>,
    writes: u32,
}

impl StateSaver {
    pub fn new(interval: Duration, on_disk: Option<StateDigest>) -> Self {
        Self {
            interval,
            on_disk,
            last_write: None,
            changed_since: None,
            shutting_down: false,
            pending: None,
            in_flight: None,
            writes: 0,
        }
    }

    /// Something the file holds may have changed.
    pub fn handle_change(&mut self, now: Instant) {
        self.changed_since.get_or_insert(now);
    }

    /// A clean shutdown: the state is checked once more and written at
    /// once if it differs, whatever the interval says.
    pub fn handle_shutdown(&mut self, now: Instant) {
        self.shutting_down = true;
        self.changed_since.get_or_insert(now);
    }

    /// When the state should next be encoded and handed in.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let since = self.changed_since?;
        if self.shutting_down {
            return Some(since);
        }
        let settled = since + SETTLE;
        Some(match self.last_write {
            Some(last) => settled.max(last + self.interval),
            None => settled,
        })
    }

    /// Whether to encode the state now (its time has come).
    pub fn wants_state(&self, now: Instant) -> bool {
        self.poll_timeout().is_some_and(|due| now >= due)
    }

    /// The state, encoded, as it is now: queued for writing if it differs
    /// from the file.
    pub fn handle_state(&mut self, encoded: Vec<u8>, _now: Instant) {
        self.changed_since = None;
        let digest = StateDigest::of(&encoded);
        self.pending = (self.on_disk != Some(digest)).then_some((encoded, digest));
    }

    /// The bytes to write, if any.
    pub fn poll_write(&mut self) -> Option<Vec<u8>> {
        let (encoded, digest) = self.pending.take()?;
        self.in_flight = Some(digest);
        Some(encoded)
    }

    /// How the write of the last [`StateSaver::poll_write`] went. A failed
    /// write is tried again after the interval (a full disk does not turn
    /// into a write loop).
    pub fn handle_written(&mut self, ok: bool, now: Instant) {
        let digest = self.in_flight.take();
        self.last_write = Some(now);
        if ok {
            self.on_disk = digest;
            self.writes = self.writes.saturating_add(1);
        } else {
            self.changed_since = Some(now);
        }
    }

    /// Writes done by this process (`state_writes` in the status).
    pub fn writes(&self) -> u32 {
        self.writes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: Duration = Duration::from_secs(60);

    /// Runs the shell's side of the contract at `now` with `state`; the
    /// bytes written, if any.
    fn step(saver: &mut StateSaver, now: Instant, state: &[u8]) -> Option<Vec<u8>> {
        if saver.wants_state(now) {
            saver.handle_state(state.to_vec(), now);
        }
        let written = saver.poll_write();
        if written.is_some() {
            saver.handle_written(true, now);
        }
        written
    }

    #[test]
    fn a_change_is_written_once_it_settles() {
        let t0 = Instant::now();
        let mut saver = StateSaver::new(MINUTE, None);
        assert_eq!(saver.poll_timeout(), None, "nothing changed");
        saver.handle_change(t0);
        saver.handle_change(t0 + Duration::from_secs(1));
        assert_eq!(
            saver.poll_timeout(),
            Some(t0 + SETTLE),
            "the first hint counts"
        );
        assert_eq!(step(&mut saver, t0 + Duration::from_secs(1), b"a"), None);
        assert_eq!(step(&mut saver, t0 + SETTLE, b"a"), Some(b"a".to_vec()));
        assert_eq!(saver.writes(), 1);
        assert_eq!(saver.poll_timeout(), None);
    }

    #[test]
    fn at_most_one_write_per_interval() {
        let t0 = Instant::now();
        let mut saver = StateSaver::new(MINUTE, None);
        let mut written = 0;
        // A change every second for ten minutes, each a new state.
        for s in 0..600u64 {
            let now = t0 + Duration::from_secs(s);
            saver.handle_change(now);
            if step(&mut saver, now, &s.to_le_bytes()).is_some() {
                written += 1;
            }
        }
        assert_eq!(written, 10, "one write a minute");
        assert_eq!(saver.writes(), 10);
    }

    #[test]
    fn only_a_real_change_is_written() {
        let t0 = Instant::now();
        let on_disk = StateDigest::of(b"same");
        let mut saver = StateSaver::new(MINUTE, Some(on_disk));
        for s in 0..600u64 {
            let now = t0 + Duration::from_secs(s);
            saver.handle_change(now);
            assert_eq!(step(&mut saver, now, b"same"), None, "at {s} s");
        }
        assert_eq!(saver.writes(), 0);
        saver.handle_change(t0 + Duration::from_secs(600));
        assert_eq!(
            step(&mut saver, t0 + Duration::from_secs(602), b"new"),
            Some(b"new".to_vec())
        );
    }

    #[test]
    fn shutdown_writes_at_once_if_the_state_differs() {
        let t0 = Instant::now();
        let mut saver = StateSaver::new(MINUTE, None);
        saver.handle_change(t0);
        assert!(step(&mut saver, t0 + SETTLE, b"a").is_some());
        // Changed again ten seconds later: the interval holds it back...
        let later = t0 + Duration::from_secs(10);
        saver.handle_change(later);
        assert_eq!(step(&mut saver, later + SETTLE, b"b"), None);
        // ...but a shutdown writes it now.
        saver.handle_shutdown(later + SETTLE);
        assert_eq!(step(&mut saver, later + SETTLE, b"b"), Some(b"b".to_vec()));
        // A shutdown with nothing new writes nothing.
        saver.handle_shutdown(later + SETTLE);
        assert_eq!(step(&mut saver, later + SETTLE, b"b"), None);
        assert_eq!(saver.writes(), 2);
    }

    #[test]
    fn a_failed_write_is_tried_again_after_the_interval() {
        let t0 = Instant::now();
        let mut saver = StateSaver::new(MINUTE, None);
        saver.handle_change(t0);
        saver.handle_state(b"a".to_vec(), t0 + SETTLE);
        assert!(saver.poll_write().is_some());
        saver.handle_written(false, t0 + SETTLE);
        assert_eq!(saver.writes(), 0);
        assert_eq!(saver.poll_timeout(), Some(t0 + SETTLE + MINUTE));
        assert_eq!(
            step(&mut saver, t0 + SETTLE + MINUTE, b"a"),
            Some(b"a".to_vec())
        );
        assert_eq!(saver.writes(), 1);
    }
}
