//! Segment classification: which routing domain (`ARCHITECTURE.md`,
//! "Segments") an address belongs to, and whether this node owns it.
//!
//! The engine keeps one entry per prefix it knows: its own addresses
//! (infrastructure), its local prefixes (intranet) and client prefixes
//! (public), all *owned*; and every route's destination segment. A packet's
//! source and destination are classified by longest-prefix match; an
//! address no prefix covers belongs to the internet. Default routes
//! (length 0) are never entered: they would cover every address, and what
//! they lead to is the internet anyway.

use std::collections::BTreeMap;
use std::net::IpAddr;

use freimesh_proto::segment::Segment;
use ipnet::IpNet;

use super::table::Lpm;

/// What the engine knows about the prefix covering an address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Origin {
    pub segment: Segment,
    /// One of this node's own prefixes: a packet from the local backend
    /// may use a source inside it.
    pub owned: bool,
}

/// Longest-prefix match from address to [`Origin`].
#[derive(Debug)]
pub struct SegmentTable {
    v4: Lpm<u32, Origin>,
    v6: Lpm<u128, Origin>,
    entries: BTreeMap<IpNet, Origin>,
}

impl Default for SegmentTable {
    fn default() -> Self {
        Self {
            v4: Lpm::new(32),
            v6: Lpm::new(128),
            entries: BTreeMap::new(),
        }
    }
}

impl SegmentTable {
    /// Sets (or with `None` removes) what `prefix` is. Length-0 prefixes are
    /// ignored (see the module docs).
    pub fn set(&mut self, prefix: IpNet, origin: Option<Origin>) {
        let prefix = prefix.trunc();
        if prefix.prefix_len() == 0 {
            return;
        }
        match origin {
            Some(origin) => {
                if self.entries.insert(prefix, origin) == Some(origin) {
                    return;
                }
                match prefix {
                    IpNet::V4(n) => self.v4.insert(u32::from(n.addr()), n.prefix_len(), origin),
                    IpNet::V6(n) => self.v6.insert(u128::from(n.addr()), n.prefix_len(), origin),
                };
            }
            None => {
                if self.entries.remove(&prefix).is_none() {
                    return;
                }
                match prefix {
                    IpNet::V4(n) => self.v4.remove(u32::from(n.addr()), n.prefix_len()),
                    IpNet::V6(n) => self.v6.remove(u128::from(n.addr()), n.prefix_len()),
                };
            }
        }
    }

    /// The origin of the longest prefix covering `addr`; `None` = internet.
    pub fn lookup(&self, addr: IpAddr) -> Option<Origin> {
        match addr {
            IpAddr::V4(a) => self.v4.lookup(u32::from(a)),
            IpAddr::V6(a) => self.v6.lookup(u128::from(a)),
        }
    }

    /// The segment of `addr`: no covering prefix means the internet.
    pub fn segment(&self, addr: IpAddr) -> Segment {
        self.lookup(addr).map_or(Segment::Internet, |o| o.segment)
    }

    /// Every entry in prefix order.
    pub fn entries(&self) -> &BTreeMap<IpNet, Origin> {
        &self.entries
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().expect("test prefix")
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("test address")
    }

    fn origin(segment: Segment, owned: bool) -> Option<Origin> {
        Some(Origin { segment, owned })
    }

    #[test]
    fn longest_prefix_decides_and_the_rest_is_internet() {
        let mut t = SegmentTable::default();
        t.set(net("10.99.0.0/16"), origin(Segment::Infrastructure, false));
        t.set(net("10.99.7.0/24"), origin(Segment::Public, true));
        t.set(net("fd20::/48"), origin(Segment::Intranet, false));
        t.set(net("0.0.0.0/0"), origin(Segment::Intranet, false));
        assert_eq!(t.segment(ip("10.99.1.1")), Segment::Infrastructure);
        assert_eq!(t.lookup(ip("10.99.7.9")), origin(Segment::Public, true));
        assert_eq!(t.segment(ip("fd20::5")), Segment::Intranet);
        assert_eq!(t.segment(ip("192.0.2.1")), Segment::Internet, "/0 ignored");
        assert_eq!(t.segment(ip("2001:db8::1")), Segment::Internet);
        t.set(net("10.99.7.0/24"), None);
        assert_eq!(t.segment(ip("10.99.7.9")), Segment::Infrastructure);
        assert_eq!(t.entries().len(), 2);
    }
}
