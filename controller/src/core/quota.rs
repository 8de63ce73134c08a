//! Budgets for what agents may make the controller store: the hostname
//! rule of every Hello (defined in `freimesh_proto::control`, so agents can
//! check their own name), the pending-node gate of approval mode (in total
//! and per source address) and the per-node quota and age cap of `Events`
//! frames.
//!
//! Sans-IO: the hub passes the time in (`now_ms`, Unix milliseconds) and
//! drains the drop warnings with [`EventQuota::poll_warning`]; nothing here
//! reads a clock or touches the store.

use std::collections::{BTreeMap, VecDeque};
use std::net::IpAddr;

pub use freimesh_proto::control::{MAX_HOSTNAME_LEN, check_hostname};

/// Nodes that may wait for approval at once. An operator approves pending
/// nodes by hand; a few hundred is a large city's roll-out day, more is a
/// flood of made-up keys. Each pending row costs the database about 200
/// bytes plus its audit event, so the cap also bounds the disk an
/// unauthenticated client can take (about 0.2 MB).
pub const MAX_PENDING_NODES: usize = 256;
/// New pending nodes one source address (an IPv4 address or an IPv6 /64)
/// may create per minute: a volunteer flashing several routers behind one
/// NAT needs a handful, a script inventing keys needs thousands.
pub const NEW_PENDING_PER_SOURCE_PER_MINUTE: u32 = 10;
/// Sources whose pending budget is tracked at once; buckets that have
/// refilled are forgotten first, so only a flood from more sources than
/// this within a minute finds the table full (and is refused: the total
/// cap would stop it a moment later anyway).
pub const MAX_TRACKED_SOURCES: usize = 4_096;

/// Events one node may have stored per minute, sustained. A healthy link
/// fails over a few times a day; a link flapping every few seconds is
/// already visible from its link-down events and the drop count. At this
/// rate one node alone needs more than three days to push the 100,000
/// events of the history (`HISTORY_KEEP`) out.
pub const EVENTS_PER_MINUTE: u32 = 20;
/// Events one node may send at once: the agent queues up to 256 failovers
/// while the controller is away (`PENDING_FAILOVERS` in the agent) and
/// sends them in one frame when it returns; that backlog is accepted whole.
pub const EVENT_BURST: u32 = 256;
/// One warning line per node per this interval when its events are
/// dropped; the lines carry how many were dropped since the last one.
pub const DROP_WARN_INTERVAL_MS: i64 = 60_000;
/// How much earlier than the controller last heard of a node an event may
/// have happened: the controller notices a dead session only after its
/// idle timeout, and the agent may have lost the link a moment before its
/// last frame left: the idle timeout (90 s) and 10 s for the agent's
/// own detection. Events claiming to be older are stored at this bound.
pub const EVENT_AGE_SLACK_MS: i64 = 100_000;
/// The oldest an event may claim to be, however long the node was away:
/// the agent keeps at most 256 events, and after a week away what matters
/// is that they happened, not to the millisecond when.
pub const MAX_EVENT_AGE_MS: i64 = 7 * 24 * 3_600 * 1_000;

/// A token bucket in thousandths of a token, refilled continuously.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct TokenBucket {
    milli_tokens: u64,
    last_ms: i64,
}

impl TokenBucket {
    fn full(capacity: u32, now_ms: i64) -> Self {
        Self {
            milli_tokens: u64::from(capacity) * 1_000,
            last_ms: now_ms,
        }
    }

    fn refill(&mut self, capacity: u32, per_minute: u32, now_ms: i64) {
        let elapsed = u64::try_from(now_ms.saturating_sub(self.last_ms)).unwrap_or(0);
        // per_minute tokens per 60,000 ms = per_minute / 60 milli-tokens
        // per ms.
        let gained = elapsed.saturating_mul(u64::from(per_minute)) / 60;
        self.milli_tokens = self
            .milli_tokens
            .saturating_add(gained)
            .min(u64::from(capacity) * 1_000);
        self.last_ms = self.last_ms.max(now_ms);
    }

    fn take(&mut self) -> bool {
        if self.milli_tokens >= 1_000 {
            self.milli_tokens -= 1_000;
            true
        } else {
            false
        }
    }

    fn is_full(&self, capacity: u32) -> bool {
        self.milli_tokens >= u64::from(capacity) * 1_000
    }
}

/// Where a pending node came from, as far as its budget is concerned: an
/// IPv4 address, or an IPv6 /64 (one customer's prefix is one source).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum SourceKey {
    V4([u8; 4]),
    V6Prefix([u8; 8]),
}

impl SourceKey {
    pub fn of(addr: IpAddr) -> Self {
        match addr.to_canonical() {
            IpAddr::V4(v4) => Self::V4(v4.octets()),
            IpAddr::V6(v6) => {
                let o = v6.octets();
                Self::V6Prefix([o[0], o[1], o[2], o[3], o[4], o[5], o[6], o[7]])
            }
        }
    }
}

/// Why a new pending node is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PendingRefusal {
    #[error(
        "{pending} nodes already wait for approval (at most {max}); an operator must approve or revoke some first"
    )]
    TooManyPending { pending: usize, max: usize },
    #[error(
        "more than {per_minute} new nodes per minute from {source_addr} wait for approval; try again later"
    )]
    SourceRate {
        source_addr: IpAddr,
        per_minute: u32,
    },
    #[error("too many addresses are enrolling at once; try again later")]
    TooManySources,
}

/// The gate in front of `add_pending`: caps the nodes waiting for approval
/// and the rate at which one source adds new ones.
#[derive(Debug, Clone)]
pub struct PendingGate {
    max_pending: usize,
    per_source_per_minute: u32,
    max_sources: usize,
    sources: BTreeMap<SourceKey, TokenBucket>,
}

impl Default for PendingGate {
    fn default() -> Self {
        Self::new(
            MAX_PENDING_NODES,
            NEW_PENDING_PER_SOURCE_PER_MINUTE,
            MAX_TRACKED_SOURCES,
        )
    }
}

impl PendingGate {
    pub fn new(max_pending: usize, per_source_per_minute: u32, max_sources: usize) -> Self {
        Self {
            max_pending,
            per_source_per_minute,
            max_sources,
            sources: BTreeMap::new(),
        }
    }

    /// A key not yet known wants to wait for approval from `source` while
    /// `pending` nodes already wait. `Ok` spends one of the source's budget.
    pub fn handle_new_pending(
        &mut self,
        source: IpAddr,
        pending: usize,
        now_ms: i64,
    ) -> Result<(), PendingRefusal> {
        if pending >= self.max_pending {
            return Err(PendingRefusal::TooManyPending {
                pending,
                max: self.max_pending,
            });
        }
        let (capacity, rate) = (self.per_source_per_minute, self.per_source_per_minute);
        let key = SourceKey::of(source);
        if !self.sources.contains_key(&key) && self.sources.len() >= self.max_sources {
            // Forget the sources whose budget is whole again: for them a
            // fresh bucket is the same thing.
            self.sources.retain(|_, bucket| {
                bucket.refill(capacity, rate, now_ms);
                !bucket.is_full(capacity)
            });
            if self.sources.len() >= self.max_sources {
                return Err(PendingRefusal::TooManySources);
            }
        }
        let bucket = self
            .sources
            .entry(key)
            .or_insert_with(|| TokenBucket::full(capacity, now_ms));
        bucket.refill(capacity, rate, now_ms);
        if bucket.take() {
            Ok(())
        } else {
            Err(PendingRefusal::SourceRate {
                source_addr: source,
                per_minute: self.per_source_per_minute,
            })
        }
    }
}

/// What to do with one event of an `Events` frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Store it at `at_ms`; `clamped` if it claimed to be older than the
    /// node's session allows.
    Accept { at_ms: i64, clamped: bool },
    /// Over the node's quota: counted, not stored.
    Drop,
}

/// One warning line's worth of dropped events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DropWarning {
    pub node: u32,
    /// Dropped since the previous warning for this node.
    pub dropped: u64,
}

#[derive(Debug, Clone)]
struct NodeBudget {
    bucket: TokenBucket,
    earliest_ms: i64,
    unreported: u64,
    last_warn_ms: Option<i64>,
}

/// Per-node quota and age cap for the events agents report.
///
/// Call [`handle_session`](Self::handle_session) when a node's session
/// starts, [`handle_event`](Self::handle_event) for each event it reports,
/// then drain [`poll_warning`](Self::poll_warning). A node's bucket lives
/// across its sessions, so reconnecting does not refill it.
#[derive(Debug, Clone)]
pub struct EventQuota {
    per_minute: u32,
    burst: u32,
    nodes: BTreeMap<u32, NodeBudget>,
    warnings: VecDeque<DropWarning>,
    dropped_total: u64,
    clamped_total: u64,
}

impl Default for EventQuota {
    fn default() -> Self {
        Self::new(EVENTS_PER_MINUTE, EVENT_BURST)
    }
}

impl EventQuota {
    pub fn new(per_minute: u32, burst: u32) -> Self {
        Self {
            per_minute,
            burst,
            nodes: BTreeMap::new(),
            warnings: VecDeque::new(),
            dropped_total: 0,
            clamped_total: 0,
        }
    }

    /// The earliest time events of a session starting at `now_ms` may
    /// claim: shortly before the controller last heard of the node
    /// (`last_seen_ms`, its previous connect or disconnect), never more
    /// than [`MAX_EVENT_AGE_MS`] back; a node never seen before gets the
    /// slack before now.
    pub fn earliest_for_session(last_seen_ms: Option<i64>, now_ms: i64) -> i64 {
        let horizon = now_ms.saturating_sub(MAX_EVENT_AGE_MS);
        let seen = last_seen_ms.unwrap_or(now_ms).min(now_ms);
        seen.saturating_sub(EVENT_AGE_SLACK_MS).max(horizon)
    }

    /// Node `node` started a session; its events may not claim to be older
    /// than `earliest_ms` (see [`Self::earliest_for_session`]).
    pub fn handle_session(&mut self, node: u32, earliest_ms: i64, now_ms: i64) {
        let burst = self.burst;
        self.nodes
            .entry(node)
            .and_modify(|b| b.earliest_ms = earliest_ms)
            .or_insert_with(|| NodeBudget {
                bucket: TokenBucket::full(burst, now_ms),
                earliest_ms,
                unreported: 0,
                last_warn_ms: None,
            });
    }

    /// One event node `node` says happened `age_ms` before `now_ms`.
    pub fn handle_event(&mut self, node: u32, age_ms: u32, now_ms: i64) -> Admission {
        let (burst, per_minute) = (self.burst, self.per_minute);
        let budget = self.nodes.entry(node).or_insert_with(|| NodeBudget {
            bucket: TokenBucket::full(burst, now_ms),
            earliest_ms: now_ms.saturating_sub(EVENT_AGE_SLACK_MS),
            unreported: 0,
            last_warn_ms: None,
        });
        budget.bucket.refill(burst, per_minute, now_ms);
        let admission = if budget.bucket.take() {
            let claimed = now_ms.saturating_sub(i64::from(age_ms));
            let at_ms = claimed.max(budget.earliest_ms).min(now_ms);
            let clamped = at_ms != claimed;
            if clamped {
                self.clamped_total += 1;
            }
            Admission::Accept { at_ms, clamped }
        } else {
            budget.unreported += 1;
            self.dropped_total += 1;
            Admission::Drop
        };
        let due = budget
            .last_warn_ms
            .is_none_or(|last| now_ms.saturating_sub(last) >= DROP_WARN_INTERVAL_MS);
        if budget.unreported > 0 && due {
            self.warnings.push_back(DropWarning {
                node,
                dropped: budget.unreported,
            });
            budget.unreported = 0;
            budget.last_warn_ms = Some(now_ms);
        }
        admission
    }

    /// The next warning line to log, if any.
    pub fn poll_warning(&mut self) -> Option<DropWarning> {
        self.warnings.pop_front()
    }

    /// A revoked node's budget is no longer needed.
    pub fn forget(&mut self, node: u32) {
        self.nodes.remove(&node);
    }

    /// Events dropped over quota since the controller started.
    pub fn dropped_total(&self) -> u64 {
        self.dropped_total
    }

    /// Events stored at their node's earliest allowed time instead of the
    /// older time they claimed.
    pub fn clamped_total(&self) -> u64 {
        self.clamped_total
    }
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use freimesh_proto::control::HostnameError;

    use super::*;
    use crate::server::IDLE_TIMEOUT;

    const T0: i64 = 1_800_000_000_000;

    #[test]
    fn hostnames_are_one_label_long_of_letters_digits_dots_and_dashes() {
        assert_eq!(check_hostname("rathaus-2.ffm"), Ok(()));
        assert_eq!(check_hostname(&"a".repeat(63)), Ok(()));
        assert_eq!(check_hostname(""), Err(HostnameError::Empty));
        assert_eq!(
            check_hostname(&"a".repeat(64)),
            Err(HostnameError::TooLong(64))
        );
        assert_eq!(
            check_hostname("evil\x1b[2J"),
            Err(HostnameError::BadCharacter('\x1b'))
        );
        assert_eq!(
            check_hostname("under_score"),
            Err(HostnameError::BadCharacter('_'))
        );
        assert_eq!(
            check_hostname("bäckerei"),
            Err(HostnameError::BadCharacter('ä'))
        );
    }

    #[test]
    fn one_source_gets_its_per_minute_budget_then_waits_for_the_refill() {
        let mut gate = PendingGate::new(1_000, 3, 16);
        let src = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 7));
        for i in 0..3 {
            assert_eq!(gate.handle_new_pending(src, i, T0), Ok(()), "{i}");
        }
        assert!(matches!(
            gate.handle_new_pending(src, 3, T0 + 1_000),
            Err(PendingRefusal::SourceRate { per_minute: 3, .. })
        ));
        // Another source has its own budget.
        let other = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 8));
        assert_eq!(gate.handle_new_pending(other, 3, T0 + 1_000), Ok(()));
        // A third of a minute later one more fits.
        assert_eq!(gate.handle_new_pending(src, 4, T0 + 20_000), Ok(()));
        assert!(gate.handle_new_pending(src, 5, T0 + 20_001).is_err());
    }

    #[test]
    fn the_total_cap_refuses_every_source() {
        let mut gate = PendingGate::new(5, 100, 16);
        let src = IpAddr::V4(Ipv4Addr::LOCALHOST);
        assert_eq!(
            gate.handle_new_pending(src, 5, T0),
            Err(PendingRefusal::TooManyPending { pending: 5, max: 5 })
        );
        assert_eq!(gate.handle_new_pending(src, 4, T0), Ok(()));
    }

    #[test]
    fn addresses_of_one_ipv6_slash_64_share_a_budget() {
        let mut gate = PendingGate::new(1_000, 2, 16);
        let a: Ipv6Addr = "2001:db8:1:2::1".parse().expect("addr");
        let b: Ipv6Addr = "2001:db8:1:2:ffff::9".parse().expect("addr");
        let c: Ipv6Addr = "2001:db8:1:3::1".parse().expect("addr");
        assert_eq!(gate.handle_new_pending(a.into(), 0, T0), Ok(()));
        assert_eq!(gate.handle_new_pending(b.into(), 1, T0), Ok(()));
        assert!(gate.handle_new_pending(b.into(), 2, T0).is_err());
        assert_eq!(gate.handle_new_pending(c.into(), 2, T0), Ok(()));
        // An IPv4-mapped address counts as the IPv4 address.
        let mapped: Ipv6Addr = "::ffff:192.0.2.1".parse().expect("addr");
        assert_eq!(
            SourceKey::of(mapped.into()),
            SourceKey::of(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)))
        );
    }

    #[test]
    fn a_full_source_table_forgets_refilled_sources_and_refuses_only_when_all_are_busy() {
        let mut gate = PendingGate::new(1_000, 1, 2);
        let ip = |n| IpAddr::V4(Ipv4Addr::new(203, 0, 113, n));
        assert_eq!(gate.handle_new_pending(ip(1), 0, T0), Ok(()));
        assert_eq!(gate.handle_new_pending(ip(2), 0, T0), Ok(()));
        assert_eq!(
            gate.handle_new_pending(ip(3), 0, T0),
            Err(PendingRefusal::TooManySources)
        );
        // A minute later both buckets are whole again and are forgotten.
        assert_eq!(gate.handle_new_pending(ip(3), 0, T0 + 60_000), Ok(()));
    }

    #[test]
    fn a_node_gets_its_burst_then_its_rate_and_the_excess_is_dropped_and_counted() {
        let mut quota = EventQuota::new(60, 5);
        quota.handle_session(1, T0 - 1_000, T0);
        let accepted = (0..20)
            .filter(|_| matches!(quota.handle_event(1, 0, T0), Admission::Accept { .. }))
            .count();
        assert_eq!(accepted, 5);
        assert_eq!(quota.dropped_total(), 15);
        // One token per second at 60 per minute.
        assert!(matches!(
            quota.handle_event(1, 0, T0 + 1_000),
            Admission::Accept { .. }
        ));
        assert_eq!(quota.handle_event(1, 0, T0 + 1_000), Admission::Drop);
        // Another node is not affected.
        assert!(matches!(
            quota.handle_event(2, 0, T0 + 1_000),
            Admission::Accept { .. }
        ));
    }

    #[test]
    fn reconnecting_does_not_refill_the_bucket() {
        let mut quota = EventQuota::new(1, 2);
        quota.handle_session(1, T0, T0);
        for _ in 0..2 {
            assert!(matches!(
                quota.handle_event(1, 0, T0),
                Admission::Accept { .. }
            ));
        }
        quota.handle_session(1, T0, T0 + 10);
        assert_eq!(quota.handle_event(1, 0, T0 + 10), Admission::Drop);
    }

    #[test]
    fn drops_give_one_warning_per_node_per_interval_carrying_the_count() {
        let mut quota = EventQuota::new(1, 1);
        quota.handle_session(7, T0, T0);
        for _ in 0..11 {
            quota.handle_event(7, 0, T0);
        }
        assert_eq!(
            quota.poll_warning(),
            Some(DropWarning {
                node: 7,
                dropped: 1
            })
        );
        assert_eq!(
            quota.poll_warning(),
            None,
            "the other 9 wait for the interval"
        );
        quota.handle_event(7, 0, T0 + DROP_WARN_INTERVAL_MS);
        assert_eq!(
            quota.poll_warning(),
            Some(DropWarning {
                node: 7,
                dropped: 9
            }),
            "the event at the interval's end was accepted (one token refilled)"
        );
    }

    #[test]
    fn an_event_cannot_claim_to_be_older_than_the_session_allows() {
        let mut quota = EventQuota::default();
        let last_seen = T0 - 3_600_000;
        let earliest = EventQuota::earliest_for_session(Some(last_seen), T0);
        assert_eq!(earliest, last_seen - EVENT_AGE_SLACK_MS);
        quota.handle_session(3, earliest, T0);
        // 40 days back is stored at the earliest allowed time.
        let forty_days = 40 * 24 * 3_600 * 1_000;
        assert_eq!(
            quota.handle_event(3, forty_days, T0),
            Admission::Accept {
                at_ms: earliest,
                clamped: true
            }
        );
        // An honest age inside the window is kept as it is.
        assert_eq!(
            quota.handle_event(3, 60_000, T0),
            Admission::Accept {
                at_ms: T0 - 60_000,
                clamped: false
            }
        );
        assert_eq!(quota.clamped_total(), 1);
    }

    #[test]
    fn the_age_slack_covers_the_idle_timeout() {
        let idle = i64::try_from(IDLE_TIMEOUT.as_millis()).expect("fits");
        assert!(EVENT_AGE_SLACK_MS >= idle + 10_000);
    }

    #[test]
    fn the_earliest_time_is_bounded_by_the_horizon_and_never_in_the_future() {
        let long_ago = T0 - 30 * 24 * 3_600 * 1_000;
        assert_eq!(
            EventQuota::earliest_for_session(Some(long_ago), T0),
            T0 - MAX_EVENT_AGE_MS
        );
        assert_eq!(
            EventQuota::earliest_for_session(None, T0),
            T0 - EVENT_AGE_SLACK_MS
        );
        assert_eq!(
            EventQuota::earliest_for_session(Some(T0 + 5_000), T0),
            T0 - EVENT_AGE_SLACK_MS,
            "a last-seen time ahead of now (clock step) counts as now"
        );
    }
}
