//! Who may start a handshake: a global and a per-source cap on connections
//! that have not yet proven a key (Noise handshake and Hello).
//!
//! Connections relayed through the mesh (`freimesh_proto::relay`) all come
//! from their exit's address: one exit's many relayed agents must not look
//! like one abusive source. A connection whose relay preamble names a
//! router that holds a direct session from the same source moves from
//! that source's count to the relay's ([`Admission::handle_relayed`]),
//! with its own cap; a preamble naming anyone else changes nothing.
//!
//! [`Admission`] is the decision, plain data; [`Gate`] shares it between the
//! accept loop and the connection tasks, and a [`Ticket`] gives a slot back
//! when the connection authenticates or ends, whichever comes first.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};

use freimesh_proto::PublicKeyBytes;

/// The unit a per-source cap counts: one IPv4 address or one IPv6 /64 (a
/// host is handed a whole /64, so counting its addresses would count nothing).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Source {
    V4([u8; 4]),
    V6Prefix64([u8; 8]),
}

impl From<IpAddr> for Source {
    fn from(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(v4) => Self::V4(v4.octets()),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Self::V4(v4.octets()),
                None => {
                    let o = v6.octets();
                    Self::V6Prefix64([o[0], o[1], o[2], o[3], o[4], o[5], o[6], o[7]])
                }
            },
        }
    }
}

/// Why a connection was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// [`Admission::max_total`] peers are in the handshake already.
    Global,
    /// Its source has [`Admission::max_per_source`] in the handshake.
    PerSource,
    /// Its relay has `max_per_relay` in the handshake.
    PerRelay,
}

/// What an unauthenticated connection counts against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    Source(Source),
    /// A checked relay (its key).
    Relay(PublicKeyBytes),
}

/// Counts unauthenticated connections, in total and per source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admission {
    max_total: usize,
    max_per_source: usize,
    max_per_relay: usize,
    total: usize,
    per_source: BTreeMap<Source, usize>,
    per_relay: BTreeMap<PublicKeyBytes, usize>,
    /// Authenticated sessions that came directly (no preamble), by key
    /// and source: what a relay preamble is checked against. One entry
    /// per live session, so bounded by the sessions.
    direct: BTreeMap<(PublicKeyBytes, Source), usize>,
}

impl Admission {
    /// Relays capped like sources (tests).
    #[cfg(test)]
    pub fn new(max_total: usize, max_per_source: usize) -> Self {
        Self::with_relays(max_total, max_per_source, max_per_source)
    }

    pub fn with_relays(max_total: usize, max_per_source: usize, max_per_relay: usize) -> Self {
        Self {
            max_total,
            max_per_source,
            max_per_relay,
            total: 0,
            per_source: BTreeMap::new(),
            per_relay: BTreeMap::new(),
            direct: BTreeMap::new(),
        }
    }

    /// An authenticated session of `key` from `source` came directly.
    pub fn handle_direct_session(&mut self, key: PublicKeyBytes, source: Source) {
        *self.direct.entry((key, source)).or_insert(0) += 1;
    }

    /// That session ended.
    pub fn handle_direct_gone(&mut self, key: PublicKeyBytes, source: Source) {
        match self.direct.get_mut(&(key, source)) {
            Some(n) if *n > 1 => *n -= 1,
            Some(_) => {
                self.direct.remove(&(key, source));
            }
            None => {}
        }
    }

    /// A connection admitted from `source` named `relay` in a relay
    /// preamble: if that relay holds a direct session from the same
    /// source, the connection counts against the relay from now on;
    /// otherwise the claim is not believed and nothing changes. Refused
    /// when the relay has its cap in the handshake.
    pub fn handle_relayed(
        &mut self,
        source: Source,
        relay: PublicKeyBytes,
    ) -> Result<Slot, Refusal> {
        if !self.direct.contains_key(&(relay, source)) {
            return Ok(Slot::Source(source));
        }
        let through = self.per_relay.get(&relay).copied().unwrap_or(0);
        if through >= self.max_per_relay {
            return Err(Refusal::PerRelay);
        }
        self.per_relay.insert(relay, through + 1);
        // The source's slot moves to the relay: the total is unchanged.
        match self.per_source.get_mut(&source) {
            Some(n) if *n > 1 => *n -= 1,
            Some(_) => {
                self.per_source.remove(&source);
            }
            None => {}
        }
        Ok(Slot::Relay(relay))
    }

    /// Gives back a slot [`Admission::handle_relayed`] returned.
    pub fn handle_release_slot(&mut self, slot: Slot) {
        let Slot::Relay(relay) = slot else {
            if let Slot::Source(source) = slot {
                self.handle_release(source);
            }
            return;
        };
        match self.per_relay.get_mut(&relay) {
            Some(n) if *n > 1 => *n -= 1,
            Some(_) => {
                self.per_relay.remove(&relay);
            }
            None => return,
        }
        self.total = self.total.saturating_sub(1);
    }

    /// Takes a slot for a new connection from `source`, or says why not.
    pub fn handle_connect(&mut self, source: Source) -> Result<(), Refusal> {
        let from_source = self.per_source.get(&source).copied().unwrap_or(0);
        if from_source >= self.max_per_source {
            return Err(Refusal::PerSource);
        }
        if self.total >= self.max_total {
            return Err(Refusal::Global);
        }
        self.total += 1;
        self.per_source.insert(source, from_source + 1);
        Ok(())
    }

    /// Gives back the slot of a connection that authenticated or closed.
    pub fn handle_release(&mut self, source: Source) {
        match self.per_source.get_mut(&source) {
            Some(n) if *n > 1 => *n -= 1,
            Some(_) => {
                self.per_source.remove(&source);
            }
            None => return,
        }
        self.total = self.total.saturating_sub(1);
    }

    /// Connections in the handshake now.
    pub fn unauthenticated(&self) -> usize {
        self.total
    }
}

/// [`Admission`] shared by the accept loop and the connection tasks.
#[derive(Debug, Clone)]
pub struct Gate(Arc<Mutex<Admission>>);

impl Gate {
    pub fn new(admission: Admission) -> Self {
        Self(Arc::new(Mutex::new(admission)))
    }

    /// A ticket for a connection from `ip`, or why it is refused.
    pub fn admit(&self, ip: IpAddr) -> Result<Ticket, Refusal> {
        let source = Source::from(ip);
        self.lock().handle_connect(source)?;
        Ok(Ticket {
            gate: Some(self.clone()),
            slot: Slot::Source(source),
        })
    }

    /// Registers an authenticated direct session of `key` from `ip`; the
    /// returned guard unregisters it when dropped.
    pub fn direct_session(&self, key: PublicKeyBytes, ip: IpAddr) -> DirectSession {
        let source = Source::from(ip);
        self.lock().handle_direct_session(key, source);
        DirectSession {
            gate: self.clone(),
            key,
            source,
        }
    }

    pub fn unauthenticated(&self) -> usize {
        self.lock().unauthenticated()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Admission> {
        // The counters stay consistent even if a holder panicked: each
        // update is one step.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// One admitted connection's slot; given back by [`Ticket::release`] or
/// on drop.
#[derive(Debug)]
pub struct Ticket {
    gate: Option<Gate>,
    slot: Slot,
}

impl Ticket {
    /// The gate this ticket holds a slot of (`None` once released).
    pub fn gate(&self) -> Option<Gate> {
        self.gate.clone()
    }

    /// The connection's relay preamble named `relay`: counts it against
    /// that relay if the claim checks out (see
    /// [`Admission::handle_relayed`]).
    pub fn relayed(&mut self, relay: PublicKeyBytes) -> Result<(), Refusal> {
        let (Some(gate), Slot::Source(source)) = (&self.gate, self.slot) else {
            return Ok(());
        };
        self.slot = gate.lock().handle_relayed(source, relay)?;
        Ok(())
    }

    /// The peer authenticated: it no longer counts as unauthenticated.
    pub fn release(mut self) {
        self.give_back();
    }

    fn give_back(&mut self) {
        if let Some(gate) = self.gate.take() {
            gate.lock().handle_release_slot(self.slot);
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.give_back();
    }
}

/// A registered direct session; unregistered on drop.
#[derive(Debug)]
pub struct DirectSession {
    gate: Gate,
    key: PublicKeyBytes,
    source: Source,
}

impl Drop for DirectSession {
    fn drop(&mut self) {
        self.gate.lock().handle_direct_gone(self.key, self.source);
    }
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use super::*;

    fn v4(last: u8) -> Source {
        Source::from(IpAddr::V4(Ipv4Addr::new(192, 0, 2, last)))
    }

    #[test]
    fn one_source_is_capped_before_the_global_cap() {
        let mut a = Admission::new(10, 3);
        for _ in 0..3 {
            assert_eq!(a.handle_connect(v4(1)), Ok(()));
        }
        assert_eq!(a.handle_connect(v4(1)), Err(Refusal::PerSource));
        // Another source still gets in.
        assert_eq!(a.handle_connect(v4(2)), Ok(()));
        assert_eq!(a.unauthenticated(), 4);
    }

    #[test]
    fn the_global_cap_holds_across_sources_and_releases_free_slots() {
        let mut a = Admission::new(4, 3);
        for i in 0..4 {
            assert_eq!(a.handle_connect(v4(i)), Ok(()));
        }
        assert_eq!(a.handle_connect(v4(9)), Err(Refusal::Global));
        a.handle_release(v4(0));
        assert_eq!(a.handle_connect(v4(9)), Ok(()));
        // Releasing what was never admitted changes nothing.
        a.handle_release(v4(200));
        assert_eq!(a.unauthenticated(), 4);
    }

    #[test]
    fn ipv6_sources_count_per_64_and_mapped_ipv4_as_ipv4() {
        let a: Ipv6Addr = "2001:db8:1:2::1".parse().expect("v6");
        let b: Ipv6Addr = "2001:db8:1:2:ffff::9".parse().expect("v6");
        let c: Ipv6Addr = "2001:db8:1:3::1".parse().expect("v6");
        assert_eq!(Source::from(IpAddr::V6(a)), Source::from(IpAddr::V6(b)));
        assert_ne!(Source::from(IpAddr::V6(a)), Source::from(IpAddr::V6(c)));
        let mapped = Ipv4Addr::new(192, 0, 2, 1).to_ipv6_mapped();
        assert_eq!(Source::from(IpAddr::V6(mapped)), v4(1));
    }

    #[test]
    fn a_checked_relay_gets_its_own_cap_and_a_false_claim_gets_nothing() {
        let exit = PublicKeyBytes([1; 32]);
        let stranger = PublicKeyBytes([2; 32]);
        let mut a = Admission::with_relays(100, 2, 10);
        a.handle_direct_session(exit, v4(1));
        // Ten relayed handshakes through the exit at once: each arrives
        // on the exit's address and moves to the exit's count.
        for _ in 0..10 {
            assert_eq!(a.handle_connect(v4(1)), Ok(()));
            assert_eq!(a.handle_relayed(v4(1), exit), Ok(Slot::Relay(exit)));
        }
        assert_eq!(a.handle_connect(v4(1)), Ok(()));
        assert_eq!(
            a.handle_relayed(v4(1), exit),
            Err(Refusal::PerRelay),
            "the relay's cap"
        );
        a.handle_release(v4(1));
        // A preamble naming a relay without a direct session from that
        // source (or from elsewhere) leaves the connection on its source.
        assert_eq!(a.handle_connect(v4(9)), Ok(()));
        assert_eq!(a.handle_relayed(v4(9), exit), Ok(Slot::Source(v4(9))));
        assert_eq!(a.handle_connect(v4(9)), Ok(()));
        assert_eq!(a.handle_relayed(v4(9), stranger), Ok(Slot::Source(v4(9))));
        assert_eq!(a.handle_connect(v4(9)), Err(Refusal::PerSource));
        assert_eq!(a.unauthenticated(), 12);
        for _ in 0..10 {
            a.handle_release_slot(Slot::Relay(exit));
        }
        assert_eq!(a.unauthenticated(), 2);
        a.handle_direct_gone(exit, v4(1));
        assert_eq!(a.handle_connect(v4(1)), Ok(()));
        assert_eq!(
            a.handle_relayed(v4(1), exit),
            Ok(Slot::Source(v4(1))),
            "gone"
        );
    }

    #[test]
    fn tickets_give_their_slot_back_once() {
        let gate = Gate::new(Admission::new(2, 2));
        let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let first = gate.admit(ip).expect("first");
        let second = gate.admit(ip).expect("second");
        assert!(gate.admit(ip).is_err());
        first.release();
        assert_eq!(gate.unauthenticated(), 1);
        drop(second);
        assert_eq!(gate.unauthenticated(), 0);
    }
}
