//! What each node claims about its neighbours, per directed pair, and the
//! rule that turns two ends' claims into one link row.
//!
//! One node's word is never enough: a link row is created only once both
//! ends have reported each other (as a candidate or a measured link), and
//! its RTT and loss are the larger of the two ends' latest measurements,
//! so a node cannot make itself look close by reporting a zero RTT to
//! nodes that never reported it, or by under-reporting a link the other
//! end measured. Going down needs only one end: either end can see that a
//! link stopped working, and claiming its own link down takes nothing from
//! anyone that a silent node could not take as well.
//!
//! Links already in the store when the controller starts were created
//! under the old one-sided rule; they stay (an operator saw them, and the
//! agents at both ends hold them), and from then on only two-sided
//! measurements change their metric.

use std::collections::{BTreeMap, BTreeSet};

use freimesh_proto::PublicKeyBytes;
use freimesh_proto::control::LinkMeasurement;

use crate::records::LinkRecord;

/// One end's RTT counts as disputed when it is less than the other end's
/// divided by this: both ends time the same heartbeats over the same path,
/// so beyond scheduling noise (a few ms on a busy router) they agree within
/// a small factor; four times less is a lie or a broken clock.
pub const DISPUTE_RTT_RATIO: u32 = 4;
/// ... and the two ends differ by more than this many microseconds: below
/// 5 ms the ratio alone would flag ordinary jitter on fast LAN links
/// (0.2 ms against 1 ms is 5× but means nothing).
pub const DISPUTE_RTT_MIN_DIFF_US: u32 = 5_000;

/// What one node last said about one neighbour.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Claim {
    /// Its latest measurement of the link, if it measured one.
    pub measurement: Option<Measured>,
}

/// One end's latest measurement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Measured {
    pub rtt_us: u32,
    pub loss_ppm: u32,
    pub up: bool,
}

impl From<&LinkMeasurement> for Measured {
    fn from(m: &LinkMeasurement) -> Self {
        Self {
            rtt_us: m.rtt_us,
            loss_ppm: m.loss_ppm,
            up: m.up,
        }
    }
}

/// Two ends' RTTs that disagree beyond noise: `node` claimed `rtt_us`, the
/// other end `other_rtt_us`. The larger one is used anyway; the dispute is
/// reported so an operator looks at the node that claims to be closer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dispute {
    pub a: u32,
    pub b: u32,
    /// The end that claimed the smaller RTT.
    pub node: u32,
    pub rtt_us: u32,
    pub other_rtt_us: u32,
}

/// Every node's claims about its neighbours, keyed `(from, to)`.
#[derive(Debug, Default)]
pub struct Claims {
    by_pair: BTreeMap<(u32, u32), Claim>,
    /// Keys each node named in its latest report that were no active node
    /// then (the neighbour had not enrolled yet, or waits for approval).
    /// Agents report again only when something changes, so without this a
    /// node that reported its neighbour before the neighbour enrolled would
    /// never claim it: the claim is taken up when the key becomes active.
    /// Replaced by every report, so it is bounded by one report's size.
    waiting: BTreeMap<u32, BTreeSet<PublicKeyBytes>>,
    /// Links whose ends disagree now (reported once when they start to).
    disputed: BTreeSet<(u32, u32)>,
}

/// Is `low` a wild under-statement of `high`?
pub fn disputed(low: u32, high: u32) -> bool {
    low.saturating_mul(DISPUTE_RTT_RATIO) < high
        && high.saturating_sub(low) > DISPUTE_RTT_MIN_DIFF_US
}

impl Claims {
    /// `from` reported `to` as a candidate or a measured link.
    pub fn claim(&mut self, from: u32, to: u32) {
        self.by_pair.entry((from, to)).or_default();
    }

    /// `from`'s newest measurement of its link to `to` (a claim as well).
    pub fn measure(&mut self, from: u32, to: u32, m: Measured) {
        self.by_pair.entry((from, to)).or_default().measurement = Some(m);
    }

    /// The keys `from`'s latest report named that are no active node yet
    /// (replaces what it named before).
    pub fn wait_for(&mut self, from: u32, keys: BTreeSet<PublicKeyBytes>) {
        if keys.is_empty() {
            self.waiting.remove(&from);
        } else {
            self.waiting.insert(from, keys);
        }
    }

    /// Turns waiting claims on keys that are now active nodes (`active`
    /// maps a key to its node id) into claims; returns the pairs claimed.
    pub fn take_up_waiting(
        &mut self,
        active: impl Fn(&PublicKeyBytes) -> Option<u32>,
    ) -> Vec<(u32, u32)> {
        let mut claimed = Vec::new();
        for (from, keys) in &mut self.waiting {
            keys.retain(|key| match active(key) {
                Some(to) if to != *from => {
                    claimed.push((*from, to));
                    false
                }
                _ => true,
            });
        }
        self.waiting.retain(|_, keys| !keys.is_empty());
        for &(from, to) in &claimed {
            self.claim(from, to);
        }
        claimed
    }

    /// Forgets everything node `id` said and everything said about it.
    pub fn forget(&mut self, id: u32) {
        self.waiting.remove(&id);
        self.by_pair.retain(|(a, b), _| *a != id && *b != id);
        self.disputed.retain(|(a, b)| *a != id && *b != id);
    }

    /// Keeps only claims between nodes for which `keep` holds.
    pub fn retain_nodes(&mut self, keep: impl Fn(u32) -> bool) {
        self.waiting.retain(|from, _| keep(*from));
        self.by_pair.retain(|(a, b), _| keep(*a) && keep(*b));
        self.disputed.retain(|(a, b)| keep(*a) && keep(*b));
    }

    /// The row the link between `x` and `y` should have given both ends'
    /// claims and `stored` (the row as it is now, if any). `None`: no row
    /// (a new link not yet claimed by both ends).
    pub fn desired(&self, x: u32, y: u32, stored: Option<&LinkRecord>) -> Option<LinkRecord> {
        let (a, b) = (x.min(y), x.max(y));
        let from_a = self.by_pair.get(&(a, b));
        let from_b = self.by_pair.get(&(b, a));
        let base = match stored {
            Some(row) => *row,
            None if from_a.is_some() && from_b.is_some() => LinkRecord {
                a,
                b,
                rtt_us: None,
                loss_ppm: None,
                up: true,
                override_cost: None,
            },
            None => return None,
        };
        let ma = from_a.and_then(|c| c.measurement);
        let mb = from_b.and_then(|c| c.measurement);
        let mut row = base;
        if let (Some(ma), Some(mb)) = (ma, mb) {
            row.rtt_us = Some(ma.rtt_us.max(mb.rtt_us));
            row.loss_ppm = Some(ma.loss_ppm.max(mb.loss_ppm));
        }
        if ma.is_some() || mb.is_some() {
            // Down if either end says so; up again only when no end does.
            row.up = ma.is_none_or(|m| m.up) && mb.is_none_or(|m| m.up);
        }
        Some(row)
    }

    /// Checks the two ends' RTTs of link `(x, y)`: a dispute that just
    /// started is returned (once; it is returned again only after the ends
    /// agreed in between).
    pub fn check_dispute(&mut self, x: u32, y: u32) -> Option<Dispute> {
        let (a, b) = (x.min(y), x.max(y));
        let ma = self.by_pair.get(&(a, b)).and_then(|c| c.measurement)?;
        let mb = self.by_pair.get(&(b, a)).and_then(|c| c.measurement)?;
        let (node, rtt_us, other_rtt_us) = if ma.rtt_us <= mb.rtt_us {
            (a, ma.rtt_us, mb.rtt_us)
        } else {
            (b, mb.rtt_us, ma.rtt_us)
        };
        if !disputed(rtt_us, other_rtt_us) {
            self.disputed.remove(&(a, b));
            return None;
        }
        self.disputed.insert((a, b)).then_some(Dispute {
            a,
            b,
            node,
            rtt_us,
            other_rtt_us,
        })
    }

    /// Links whose ends disagree now.
    pub fn disputed_links(&self) -> &BTreeSet<(u32, u32)> {
        &self.disputed
    }
}
