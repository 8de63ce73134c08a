//! Address pools: which address a pool index stands for and back.
//!
//! Nodes store the *index* of their address in each pool (UNIQUE in the
//! schema), so "lowest free address" is one SQL query and "never twice" is
//! the database's promise, not ours. Index 0 is never handed out: it is the
//! network address in IPv4 and the subnet-router anycast address in IPv6; the
//! IPv4 broadcast address is excluded at the top.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

/// One pool of overlay addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pool {
    V4(Ipv4Net),
    V6(Ipv6Net),
}

impl Pool {
    /// The largest index a node may get.
    pub fn max_index(&self) -> i64 {
        match self {
            Self::V4(net) => {
                let hosts = 1u64 << (32 - u32::from(net.prefix_len()));
                i64::try_from(hosts.saturating_sub(2)).unwrap_or(i64::MAX)
            }
            Self::V6(net) => {
                let bits = 128 - u32::from(net.prefix_len());
                if bits >= 63 {
                    i64::MAX
                } else {
                    (1i64 << bits) - 1
                }
            }
        }
    }

    /// The address at `index`, if the index lies in the pool.
    pub fn addr(&self, index: i64) -> Option<IpAddr> {
        if index < 1 || index > self.max_index() {
            return None;
        }
        match self {
            Self::V4(net) => {
                let base = u32::from(net.network());
                let off = u32::try_from(index).ok()?;
                Some(IpAddr::V4(Ipv4Addr::from(base.checked_add(off)?)))
            }
            Self::V6(net) => {
                let base = u128::from(net.network());
                let off = u128::try_from(index).ok()?;
                Some(IpAddr::V6(Ipv6Addr::from(base.checked_add(off)?)))
            }
        }
    }

    /// The index of `addr`, or `None` if it lies outside the pool (or is
    /// one of the reserved addresses).
    pub fn index(&self, addr: IpAddr) -> Option<i64> {
        let index = match (self, addr) {
            (Self::V4(net), IpAddr::V4(a)) if net.contains(&a) => {
                i64::from(u32::from(a) - u32::from(net.network()))
            }
            (Self::V6(net), IpAddr::V6(a)) if net.contains(&a) => {
                i64::try_from(u128::from(a) - u128::from(net.network())).ok()?
            }
            _ => return None,
        };
        (1..=self.max_index()).contains(&index).then_some(index)
    }

    /// The host prefix (/32 or /128) of the address at `index`.
    pub fn host(&self, index: i64) -> Option<IpNet> {
        self.addr(index).map(IpNet::from)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn reserved_addresses_are_never_in_the_pool() {
        let v4 = Pool::V4("10.99.0.0/16".parse().expect("net"));
        assert_eq!(v4.addr(1), Some("10.99.0.1".parse().expect("ip")));
        assert_eq!(v4.index("10.99.0.0".parse().expect("ip")), None);
        assert_eq!(v4.index("10.99.255.255".parse().expect("ip")), None);
        assert_eq!(v4.index("10.98.0.1".parse().expect("ip")), None);
        assert_eq!(v4.max_index(), 65534);
        let v6 = Pool::V6("fd12:3456:789a::/48".parse().expect("net"));
        assert_eq!(v6.addr(1), Some("fd12:3456:789a::1".parse().expect("ip")));
        assert_eq!(v6.index("fd00::1".parse().expect("ip")), None);
    }

    proptest! {
        #[test]
        fn index_and_addr_agree(i in 1i64..65535) {
            let v4 = Pool::V4("10.99.0.0/16".parse().expect("net"));
            let addr = v4.addr(i).expect("in pool");
            prop_assert_eq!(v4.index(addr), Some(i));
        }
    }
}
