//! The hub's event log: numbers events and persists them; the hub then
//! hands them to the API's live streams.
//!
//! Events raised while the hub handles one message are collected and
//! committed in one transaction at the end of the step ([`EventLog::commit`]),
//! and only then sent live: a client that sees an event live always finds it
//! in the history too, and a restart continues the numbering.

use freimesh_proto::api::{Event, EventKind};

use crate::store::{Store, StoreError};

/// How many events the history keeps: months of a city's failovers and
/// logins, a few tens of MB of SQLite. Audit events are kept apart as well
/// and never pruned (`Store::audit_since`).
pub const HISTORY_KEEP: u64 = 100_000;
/// Pruning runs after this many new events, not on every commit.
const PRUNE_EVERY: u64 = 1_000;
/// Live events buffered per stream subscriber; one that falls further behind
/// reads the gap from the history.
pub const LIVE_BUFFER: usize = 1_024;

#[derive(Debug)]
pub struct EventLog {
    next_seq: u64,
    pending: Vec<Event>,
    since_prune: u64,
}

impl EventLog {
    pub fn new(store: &Store) -> Result<Self, StoreError> {
        Ok(Self {
            next_seq: store.last_event_seq()? + 1,
            pending: Vec::new(),
            since_prune: 0,
        })
    }

    /// Numbers an event; it is stored and sent at the next [`commit`](Self::commit).
    /// `operator` names who caused it, if an operator did.
    pub fn emit(&mut self, at_ms: i64, kind: EventKind, operator: Option<String>) {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.pending.push(Event {
            seq,
            at_ms,
            kind,
            operator,
        });
    }

    /// The newest sequence number handed out (0 if none).
    pub fn last_seq(&self) -> u64 {
        self.next_seq - 1
    }

    /// Stores the pending events in one transaction and returns them, for
    /// the live streams.
    pub fn commit(&mut self, store: &mut Store) -> Vec<Event> {
        if self.pending.is_empty() {
            return Vec::new();
        }
        let events = std::mem::take(&mut self.pending);
        if let Err(e) = store.append_events(&events) {
            // Live clients still get them; only the history has a hole.
            tracing::error!(error = %e, count = events.len(), "storing events failed");
        }
        self.since_prune += u64::try_from(events.len()).unwrap_or(u64::MAX);
        if self.since_prune >= PRUNE_EVERY {
            self.since_prune = 0;
            if let Err(e) = store.prune_events(HISTORY_KEEP) {
                tracing::warn!(error = %e, "pruning the event history failed");
            }
        }
        events
    }
}
