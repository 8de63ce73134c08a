//! Who may start a handshake: a global and a per-source cap on connections
//! that have not yet proven a key (Noise handshake and Hello).
//!
//! [`Admission`] is the decision, plain data; [`Gate`] shares it between the
//! accept loop and the connection tasks, and a [`Ticket`] gives a slot back
//! when the connection authenticates or ends, whichever comes first.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};

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
}

/// Counts unauthenticated connections, in total and per source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admission {
    max_total: usize,
    max_per_source: usize,
    total: usize,
    per_source: BTreeMap<Source, usize>,
}

impl Admission {
    pub fn new(max_total: usize, max_per_source: usize) -> Self {
        Self {
            max_total,
            max_per_source,
            total: 0,
            per_source: BTreeMap::new(),
        }
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
            source,
        })
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
    source: Source,
}

impl Ticket {
    /// The peer authenticated: it no longer counts as unauthenticated.
    pub fn release(mut self) {
        self.give_back();
    }

    fn give_back(&mut self) {
        if let Some(gate) = self.gate.take() {
            gate.lock().handle_release(self.source);
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.give_back();
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
