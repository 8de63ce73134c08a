//! The demo's "wires": a UDP relay per link between two userspace agents on
//! loopback, which the demo can cut (drop every datagram, silently, both
//! ways) and restore, without root.
//!
//! The relay of link `a–b` owns two sockets: `a` is configured to reach `b`
//! at the first, `b` to reach `a` at the second. A datagram from `a` to the
//! first goes out of the second to `b`'s listen address, so `b` sees it
//! come from the second socket: WireGuard's endpoint roaming then keeps
//! both sides talking through the relay. Each agent gives its neighbour's
//! relay address as its candidate endpoint, and the controller hands that
//! back in the link assignment, so no agent setting is needed.
//!
//! The agents listen on the wildcard address (`0.0.0.0:port`): an agent
//! then advertises no endpoint of its own, so the controller can only hand
//! out the relay addresses the agents name as candidates (or none, and the
//! agent waits to be contacted, through the relay). With `127.0.0.1:port`
//! the controller would give a node that enrols after its neighbour
//! reported it the neighbour's own address, and traffic would bypass the
//! relay: it hands out the address a node reported for a peer only once
//! the link changes.

use std::collections::BTreeMap;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::Context as _;

use crate::mesh::{Loopback, Underlay};

/// How often a relay thread looks at its stop flag.
const POLL: Duration = Duration::from_millis(100);

/// One relayed link; dropping it stops its threads.
#[derive(Debug)]
pub struct LinkRelay {
    /// Node indices `(a, b)`.
    pub link: (usize, usize),
    /// Where `a` sends to reach `b`.
    pub facing_a: SocketAddr,
    /// Where `b` sends to reach `a`.
    pub facing_b: SocketAddr,
    cut: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl LinkRelay {
    /// Relays between `a_listen` and `b_listen` (the agents' UDP sockets).
    pub fn start(
        link: (usize, usize),
        a_listen: SocketAddr,
        b_listen: SocketAddr,
    ) -> anyhow::Result<Self> {
        let facing_a = UdpSocket::bind("127.0.0.1:0").context("binding a relay socket")?;
        let facing_b = UdpSocket::bind("127.0.0.1:0").context("binding a relay socket")?;
        facing_a.set_read_timeout(Some(POLL))?;
        facing_b.set_read_timeout(Some(POLL))?;
        let (addr_a, addr_b) = (facing_a.local_addr()?, facing_b.local_addr()?);
        let cut = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let (a2, b2) = (facing_a.try_clone()?, facing_b.try_clone()?);
        let threads = vec![
            pump(facing_a, b2, b_listen, cut.clone(), stop.clone()),
            pump(facing_b, a2, a_listen, cut.clone(), stop.clone()),
        ];
        Ok(Self {
            link,
            facing_a: addr_a,
            facing_b: addr_b,
            cut,
            stop,
            threads,
        })
    }

    /// Drops everything from now on (a silent cut: no carrier loss, no
    /// error, the datagrams just vanish), or passes them again.
    pub fn set_cut(&self, cut: bool) {
        self.cut.store(cut, Ordering::SeqCst);
    }
}

impl Drop for LinkRelay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

/// Forwards what arrives on `from` out of `out` to `to`, unless cut.
fn pump(
    from: UdpSocket,
    out: UdpSocket,
    to: SocketAddr,
    cut: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 64 * 1024];
        while !stop.load(Ordering::Relaxed) {
            let Ok((len, _)) = from.recv_from(&mut buf) else {
                continue;
            };
            if !cut.load(Ordering::Relaxed) {
                // A full socket buffer loses the datagram, as a wire would.
                let _ = out.send_to(&buf[..len], to);
            }
        }
    })
}

/// Every node on loopback like [`Loopback`], every link through a
/// [`LinkRelay`].
#[derive(Debug)]
pub struct RelayedLoopback {
    pub loopback: Loopback,
    pub relays: BTreeMap<(usize, usize), LinkRelay>,
}

impl RelayedLoopback {
    /// Starts a relay for each of `links` between the nodes' loopback ports.
    pub fn start(loopback: Loopback, links: &[(usize, usize)]) -> anyhow::Result<Self> {
        let mut relays = BTreeMap::new();
        for &(a, b) in links {
            let relay = LinkRelay::start((a, b), loopback.listen(a), loopback.listen(b))?;
            relays.insert((a, b), relay);
        }
        Ok(Self { loopback, relays })
    }

    /// The relay of the link between `x` and `y`, either way round.
    pub fn relay(&self, x: usize, y: usize) -> Option<&LinkRelay> {
        self.relays
            .get(&(x, y))
            .or_else(|| self.relays.get(&(y, x)))
    }
}

impl Underlay for RelayedLoopback {
    fn listen(&self, node: usize) -> SocketAddr {
        SocketAddr::from(([0, 0, 0, 0], self.loopback.ports[node]))
    }
    fn endpoint(&self, from: usize, to: usize) -> SocketAddr {
        match (self.relays.get(&(from, to)), self.relays.get(&(to, from))) {
            (Some(r), _) => r.facing_a,
            (None, Some(r)) => r.facing_b,
            (None, None) => self.loopback.listen(to),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relays_both_ways_and_drops_while_cut() -> anyhow::Result<()> {
        let a = UdpSocket::bind("127.0.0.1:0")?;
        let b = UdpSocket::bind("127.0.0.1:0")?;
        for s in [&a, &b] {
            s.set_read_timeout(Some(Duration::from_millis(300)))?;
        }
        let relay = LinkRelay::start((0, 1), a.local_addr()?, b.local_addr()?)?;
        let mut buf = [0u8; 16];
        a.send_to(b"ping", relay.facing_a)?;
        let (n, from) = b.recv_from(&mut buf)?;
        assert_eq!((&buf[..n], from), (&b"ping"[..], relay.facing_b));
        b.send_to(b"pong", from)?;
        let (n, from) = a.recv_from(&mut buf)?;
        assert_eq!((&buf[..n], from), (&b"pong"[..], relay.facing_a));
        relay.set_cut(true);
        a.send_to(b"lost", relay.facing_a)?;
        assert!(
            b.recv_from(&mut buf).is_err(),
            "a cut relay passed a datagram"
        );
        relay.set_cut(false);
        a.send_to(b"back", relay.facing_a)?;
        let (n, _) = b.recv_from(&mut buf)?;
        assert_eq!(&buf[..n], b"back");
        Ok(())
    }
}
