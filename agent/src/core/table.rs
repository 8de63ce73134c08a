//! The forwarding table: for every destination prefix an ordered list of next
//! hops (the primary first, then the loop-free alternates), with
//! longest-prefix match for IPv4 and IPv6.
//!
//! Prefixes do not point at hops directly. They point at a shared
//! [`NextHopGroup`] (one per distinct ordered hop list), and each group caches
//! its first live hop. A link that goes down or up only touches the groups
//! that contain it, never the prefixes: thousands of prefixes behind the same
//! neighbours fail over in one step whose cost does not grow with the table
//! (the "prefix independent convergence" shape of big routers).
//!
//! Lookups use one hash probe per prefix length present in the table, longest
//! first. Nothing here iterates a `HashMap`, so every run is repeatable.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::{BuildHasherDefault, Hasher};
use std::net::IpAddr;

use ipnet::IpNet;

use super::LinkId;

/// Where a packet goes next.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Hop {
    /// Delivered to this node (its own addresses, or prefixes behind its local
    /// interface such as a building LAN).
    Local,
    /// Sent into the tunnel of a neighbour.
    Link(LinkId),
    /// Delivered to this node to leave through its uplink: the first hop of
    /// a gateway's default route. Unlike [`Hop::Local`] it can fail (the
    /// uplink checker reports it), and then the alternates after it carry
    /// the traffic.
    Uplink,
    /// Never live: a route whose every next hop was withdrawn keeps this
    /// placeholder, so its packets are dropped rather than following a
    /// shorter route.
    Unreachable,
}

/// Index of a group in the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GroupId(usize);

/// An ordered list of next hops shared by every prefix that uses the same
/// list, with the first live one cached.
#[derive(Debug, Clone)]
pub struct NextHopGroup {
    hops: Vec<Hop>,
    /// Index into `hops` of the first live hop, if any.
    active: Option<usize>,
    /// The prefixes that point here; the group is freed when none do.
    prefixes: BTreeSet<IpNet>,
}

impl NextHopGroup {
    pub fn hops(&self) -> &[Hop] {
        &self.hops
    }

    /// The hop traffic takes now, or `None` when every hop is down.
    pub fn active(&self) -> Option<Hop> {
        self.active.and_then(|i| self.hops.get(i).copied())
    }

    /// The prefixes that use this group.
    pub fn prefixes(&self) -> &BTreeSet<IpNet> {
        &self.prefixes
    }
}

/// A group whose active hop changed when a link went up or down.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupChange {
    pub group: GroupId,
    pub before: Option<Hop>,
    pub after: Option<Hop>,
    /// How many prefixes followed the change.
    pub prefixes: usize,
}

/// Why a route was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TableError {
    #[error("route {0} has no next hop")]
    NoHops(IpNet),
    #[error("route {prefix} lists next hop {hop:?} twice")]
    DuplicateHop { prefix: IpNet, hop: Hop },
}

/// A route as shown by `freimesh-agent status`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RouteView {
    pub prefix: IpNet,
    pub hops: Vec<Hop>,
    pub active: Option<Hop>,
}

/// Multiplicative hashing for integer keys: fast, and deterministic across
/// runs (the table never iterates its maps, but repeatability costs nothing).
#[derive(Default)]
struct IntHasher(u64);

impl Hasher for IntHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }
    fn write_u32(&mut self, n: u32) {
        self.0 = (self.0 ^ u64::from(n)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
    fn write_u128(&mut self, n: u128) {
        let folded = u64::try_from((n ^ (n >> 64)) & u128::from(u64::MAX)).unwrap_or(0);
        self.0 = (self.0 ^ folded).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

type IntMap<K, V> = HashMap<K, V, BuildHasherDefault<IntHasher>>;

/// Longest-prefix match over one address family, keyed by the address as an
/// integer (`u32` or `u128`) with host bits cleared.
#[derive(Debug)]
pub(crate) struct Lpm<K, V> {
    /// One map per prefix length present, longest first: a lookup walks
    /// this short vector directly (no tree search per length), and an
    /// insert or remove touches it only when a length appears or goes.
    levels: Vec<(u8, IntMap<K, V>)>,
    bits: u8,
}

pub(crate) trait Key: Copy + Eq + std::hash::Hash {
    fn mask(self, len: u8, bits: u8) -> Self;
}

impl Key for u32 {
    fn mask(self, len: u8, bits: u8) -> Self {
        if len == 0 {
            0
        } else {
            self & (u32::MAX << (bits - len))
        }
    }
}

impl Key for u128 {
    fn mask(self, len: u8, bits: u8) -> Self {
        if len == 0 {
            0
        } else {
            self & (u128::MAX << (bits - len))
        }
    }
}

impl<K: Key, V: Copy> Lpm<K, V> {
    pub(crate) fn new(bits: u8) -> Self {
        Self {
            levels: Vec::new(),
            bits,
        }
    }

    pub(crate) fn insert(&mut self, key: K, len: u8, value: V) -> Option<V> {
        // Longest first: the level for `len` sits where the lengths
        // shorter than it begin.
        let at = self.levels.partition_point(|(l, _)| *l > len);
        if self.levels.get(at).is_none_or(|(l, _)| *l != len) {
            self.levels.insert(at, (len, IntMap::default()));
        }
        let bits = self.bits;
        self.levels[at].1.insert(key.mask(len, bits), value)
    }

    pub(crate) fn remove(&mut self, key: K, len: u8) -> Option<V> {
        let at = self.levels.iter().position(|(l, _)| *l == len)?;
        let old = self.levels[at].1.remove(&key.mask(len, self.bits));
        if self.levels[at].1.is_empty() {
            self.levels.remove(at);
        }
        old
    }

    pub(crate) fn lookup(&self, key: K) -> Option<V> {
        self.lookup_with_length(key).map(|(_, value)| value)
    }

    /// The longest match's prefix length and value.
    pub(crate) fn lookup_with_length(&self, key: K) -> Option<(u8, V)> {
        self.levels.iter().find_map(|(len, map)| {
            map.get(&key.mask(*len, self.bits))
                .copied()
                .map(|value| (*len, value))
        })
    }
}

/// The table: prefixes → groups → first live hop.
#[derive(Debug)]
pub struct ForwardingTable {
    v4: Lpm<u32, GroupId>,
    v6: Lpm<u128, GroupId>,
    /// Every route, in prefix order, for display and for replacing routes.
    routes: BTreeMap<IpNet, GroupId>,
    groups: Vec<Option<NextHopGroup>>,
    free_groups: Vec<usize>,
    group_by_hops: BTreeMap<Vec<Hop>, GroupId>,
    /// For each hop that can fail (links, the uplink), the groups that
    /// contain it.
    groups_by_hop: BTreeMap<Hop, BTreeSet<GroupId>>,
    /// Hops currently down. Hops are up unless marked down.
    down: BTreeSet<Hop>,
    /// Counts changes that can move a lookup's answer (routes in or out,
    /// hops up or down); see [`ForwardingTable::version`].
    version: u64,
}

impl Default for ForwardingTable {
    fn default() -> Self {
        Self::new()
    }
}

impl ForwardingTable {
    pub fn new() -> Self {
        Self {
            v4: Lpm::new(32),
            v6: Lpm::new(128),
            routes: BTreeMap::new(),
            groups: Vec::new(),
            free_groups: Vec::new(),
            group_by_hops: BTreeMap::new(),
            groups_by_hop: BTreeMap::new(),
            down: BTreeSet::new(),
            version: 0,
        }
    }

    /// Grows with every change that can alter what [`Self::lookup`]
    /// answers: equal versions, equal answers. Lets an observer (the
    /// simulator's flow traces) skip asking again when nothing moved.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// Installs (or replaces) the route for `prefix`. Host bits are cleared.
    pub fn insert(&mut self, prefix: IpNet, hops: Vec<Hop>) -> Result<(), TableError> {
        let prefix = prefix.trunc();
        validate_hops(prefix, &hops)?;
        self.remove(prefix);
        self.version += 1;
        let group = self.group_for(hops, prefix);
        match prefix {
            IpNet::V4(net) => self
                .v4
                .insert(u32::from(net.addr()), net.prefix_len(), group),
            IpNet::V6(net) => self
                .v6
                .insert(u128::from(net.addr()), net.prefix_len(), group),
        };
        self.routes.insert(prefix, group);
        Ok(())
    }

    /// Removes the route for `prefix`; returns whether there was one.
    pub fn remove(&mut self, prefix: IpNet) -> bool {
        let prefix = prefix.trunc();
        let Some(group) = self.routes.remove(&prefix) else {
            return false;
        };
        self.version += 1;
        match prefix {
            IpNet::V4(net) => self.v4.remove(u32::from(net.addr()), net.prefix_len()),
            IpNet::V6(net) => self.v6.remove(u128::from(net.addr()), net.prefix_len()),
        };
        self.release_group(group, prefix);
        true
    }

    /// The group of exactly `prefix`, if it has a route.
    pub fn route(&self, prefix: IpNet) -> Option<&NextHopGroup> {
        let id = self.routes.get(&prefix.trunc())?;
        self.groups.get(id.0).and_then(Option::as_ref)
    }

    /// The group with this id.
    pub fn group(&self, id: GroupId) -> Option<&NextHopGroup> {
        self.groups.get(id.0).and_then(Option::as_ref)
    }

    /// The longest prefix shorter than or equal to `prefix` that covers it.
    pub fn covering(&self, prefix: IpNet) -> Option<(IpNet, &NextHopGroup)> {
        let prefix = prefix.trunc();
        (0..=prefix.prefix_len()).rev().find_map(|len| {
            let candidate = IpNet::new(prefix.addr(), len).ok()?.trunc();
            let id = self.routes.get(&candidate)?;
            Some((candidate, self.groups.get(id.0)?.as_ref()?))
        })
    }

    /// The group of the longest prefix that contains `addr`.
    pub fn lookup_group(&self, addr: IpAddr) -> Option<&NextHopGroup> {
        let id = match addr {
            IpAddr::V4(a) => self.v4.lookup(u32::from(a)),
            IpAddr::V6(a) => self.v6.lookup(u128::from(a)),
        }?;
        self.groups.get(id.0).and_then(Option::as_ref)
    }

    /// The prefix of the longest route that contains `addr`.
    pub fn lookup_prefix(&self, addr: IpAddr) -> Option<IpNet> {
        let len = match addr {
            IpAddr::V4(a) => self.v4.lookup_with_length(u32::from(a))?.0,
            IpAddr::V6(a) => self.v6.lookup_with_length(u128::from(a))?.0,
        };
        IpNet::new(addr, len).ok().map(|p| p.trunc())
    }

    /// The hop a packet for `addr` takes now: `None` when no prefix matches
    /// or every hop of the matching prefix is down.
    pub fn lookup(&self, addr: IpAddr) -> Option<Hop> {
        self.lookup_group(addr).and_then(NextHopGroup::active)
    }

    /// Marks a link up or down and re-selects the active hop of every group
    /// that contains it. Returns the groups whose active hop changed. Cost
    /// grows with the number of groups using the link, not with the number
    /// of prefixes.
    pub fn set_link_up(&mut self, link: LinkId, up: bool) -> Vec<GroupChange> {
        self.set_hop_up(Hop::Link(link), up)
    }

    /// Marks the uplink up or down, like [`ForwardingTable::set_link_up`]
    /// for the groups that contain [`Hop::Uplink`].
    pub fn set_uplink_up(&mut self, up: bool) -> Vec<GroupChange> {
        self.set_hop_up(Hop::Uplink, up)
    }

    fn set_hop_up(&mut self, hop: Hop, up: bool) -> Vec<GroupChange> {
        let changed_state = if up {
            self.down.remove(&hop)
        } else {
            self.down.insert(hop)
        };
        if !changed_state {
            return Vec::new();
        }
        self.version += 1;
        let Some(affected) = self.groups_by_hop.get(&hop) else {
            return Vec::new();
        };
        let mut changes = Vec::new();
        for id in affected {
            if let Some(Some(group)) = self.groups.get_mut(id.0) {
                let before = group.active();
                group.active = first_live(&group.hops, &self.down);
                let after = group.active();
                if before != after {
                    changes.push(GroupChange {
                        group: *id,
                        before,
                        after,
                        prefixes: group.prefixes.len(),
                    });
                }
            }
        }
        changes
    }

    pub fn is_link_up(&self, link: LinkId) -> bool {
        !self.down.contains(&Hop::Link(link))
    }

    pub fn is_uplink_up(&self) -> bool {
        !self.down.contains(&Hop::Uplink)
    }

    /// Every route in prefix order.
    pub fn routes(&self) -> Vec<RouteView> {
        self.routes
            .iter()
            .filter_map(|(prefix, id)| {
                let group = self.groups.get(id.0)?.as_ref()?;
                Some(RouteView {
                    prefix: *prefix,
                    hops: group.hops.clone(),
                    active: group.active(),
                })
            })
            .collect()
    }

    pub fn len(&self) -> usize {
        self.routes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }

    fn group_for(&mut self, hops: Vec<Hop>, prefix: IpNet) -> GroupId {
        if let Some(&id) = self.group_by_hops.get(&hops) {
            if let Some(Some(group)) = self.groups.get_mut(id.0) {
                group.prefixes.insert(prefix);
            }
            return id;
        }
        let group = NextHopGroup {
            active: first_live(&hops, &self.down),
            hops: hops.clone(),
            prefixes: BTreeSet::from([prefix]),
        };
        let id = match self.free_groups.pop() {
            Some(slot) => {
                self.groups[slot] = Some(group);
                GroupId(slot)
            }
            None => {
                self.groups.push(Some(group));
                GroupId(self.groups.len() - 1)
            }
        };
        for hop in &hops {
            if matches!(hop, Hop::Link(_) | Hop::Uplink) {
                self.groups_by_hop.entry(*hop).or_default().insert(id);
            }
        }
        self.group_by_hops.insert(hops, id);
        id
    }

    fn release_group(&mut self, id: GroupId, prefix: IpNet) {
        let Some(Some(group)) = self.groups.get_mut(id.0) else {
            return;
        };
        group.prefixes.remove(&prefix);
        if !group.prefixes.is_empty() {
            return;
        }
        let hops = std::mem::take(&mut group.hops);
        self.groups[id.0] = None;
        self.free_groups.push(id.0);
        for hop in &hops {
            if let Some(set) = self.groups_by_hop.get_mut(hop) {
                set.remove(&id);
                if set.is_empty() {
                    self.groups_by_hop.remove(hop);
                }
            }
        }
        self.group_by_hops.remove(&hops);
    }
}

/// Whether `hops` may form a route for `prefix`: at least one hop, none
/// twice. (What [`ForwardingTable::insert`] refuses, checked without a
/// table.)
pub fn validate_hops(prefix: IpNet, hops: &[Hop]) -> Result<(), TableError> {
    if hops.is_empty() {
        return Err(TableError::NoHops(prefix));
    }
    for (i, hop) in hops.iter().enumerate() {
        if hops[..i].contains(hop) {
            return Err(TableError::DuplicateHop { prefix, hop: *hop });
        }
    }
    Ok(())
}

fn first_live(hops: &[Hop], down: &BTreeSet<Hop>) -> Option<usize> {
    hops.iter().position(|hop| match hop {
        Hop::Local => true,
        Hop::Link(_) | Hop::Uplink => !down.contains(hop),
        Hop::Unreachable => false,
    })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().expect("test prefix")
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("test address")
    }

    #[test]
    fn longest_prefix_wins_v4_and_v6() {
        let mut t = ForwardingTable::new();
        t.insert(net("0.0.0.0/0"), vec![Hop::Link(LinkId(9))])
            .expect("insert");
        t.insert(net("10.99.0.0/16"), vec![Hop::Link(LinkId(1))])
            .expect("insert");
        t.insert(net("10.99.0.4/32"), vec![Hop::Link(LinkId(2))])
            .expect("insert");
        t.insert(net("fd99::/64"), vec![Hop::Link(LinkId(3))])
            .expect("insert");
        t.insert(net("fd99::4/128"), vec![Hop::Local])
            .expect("insert");
        assert_eq!(t.lookup(ip("10.99.0.4")), Some(Hop::Link(LinkId(2))));
        assert_eq!(t.lookup(ip("10.99.7.7")), Some(Hop::Link(LinkId(1))));
        assert_eq!(t.lookup(ip("192.0.2.1")), Some(Hop::Link(LinkId(9))));
        assert_eq!(t.lookup(ip("fd99::4")), Some(Hop::Local));
        assert_eq!(t.lookup(ip("fd99::5")), Some(Hop::Link(LinkId(3))));
        assert_eq!(t.lookup(ip("fe80::1")), None);
    }

    #[test]
    fn host_bits_are_cleared_and_routes_replace() {
        let mut t = ForwardingTable::new();
        t.insert(net("10.1.2.3/24"), vec![Hop::Link(LinkId(1))])
            .expect("insert");
        t.insert(net("10.1.2.0/24"), vec![Hop::Link(LinkId(2))])
            .expect("insert");
        assert_eq!(t.len(), 1);
        assert_eq!(t.lookup(ip("10.1.2.200")), Some(Hop::Link(LinkId(2))));
        assert!(t.remove(net("10.1.2.9/24")));
        assert_eq!(t.lookup(ip("10.1.2.200")), None);
        assert!(t.is_empty());
    }

    #[test]
    fn rejects_empty_and_duplicate_hops() {
        let mut t = ForwardingTable::new();
        assert!(matches!(
            t.insert(net("10.0.0.0/8"), vec![]),
            Err(TableError::NoHops(_))
        ));
        assert!(matches!(
            t.insert(
                net("10.0.0.0/8"),
                vec![Hop::Link(LinkId(1)), Hop::Link(LinkId(1))]
            ),
            Err(TableError::DuplicateHop { .. })
        ));
    }

    #[test]
    fn link_down_switches_every_prefix_of_the_group_at_once() {
        let mut t = ForwardingTable::new();
        for i in 0..1000u32 {
            let prefix =
                IpNet::new(IpAddr::V4((0x0a00_0000 + (i << 8)).into()), 24).expect("prefix");
            t.insert(prefix, vec![Hop::Link(LinkId(1)), Hop::Link(LinkId(2))])
                .expect("insert");
        }
        let changes = t.set_link_up(LinkId(1), false);
        assert_eq!(changes.len(), 1, "one group changed, not 1000 prefixes");
        assert_eq!(changes[0].prefixes, 1000);
        assert_eq!(changes[0].after, Some(Hop::Link(LinkId(2))));
        assert_eq!(t.lookup(ip("10.0.5.1")), Some(Hop::Link(LinkId(2))));
        assert_eq!(t.set_link_up(LinkId(2), false)[0].after, None);
        assert_eq!(t.lookup(ip("10.0.5.1")), None);
        t.set_link_up(LinkId(1), true);
        assert_eq!(t.lookup(ip("10.0.5.1")), Some(Hop::Link(LinkId(1))));
    }

    #[test]
    fn groups_are_shared_and_freed() {
        let mut t = ForwardingTable::new();
        let hops = vec![Hop::Link(LinkId(1))];
        t.insert(net("10.0.0.0/24"), hops.clone()).expect("insert");
        t.insert(net("10.0.1.0/24"), hops.clone()).expect("insert");
        assert_eq!(t.group_by_hops.len(), 1);
        t.remove(net("10.0.0.0/24"));
        assert_eq!(t.group_by_hops.len(), 1);
        t.remove(net("10.0.1.0/24"));
        assert!(t.group_by_hops.is_empty());
        assert!(t.groups_by_hop.is_empty());
        // A new route created while link 1 is down starts on its alternate.
        t.set_link_up(LinkId(1), false);
        t.insert(
            net("10.0.2.0/24"),
            vec![Hop::Link(LinkId(1)), Hop::Link(LinkId(3))],
        )
        .expect("insert");
        assert_eq!(t.lookup(ip("10.0.2.1")), Some(Hop::Link(LinkId(3))));
    }

    /// Reference: the answer a linear scan over every route gives.
    fn naive(routes: &[(IpNet, Hop)], addr: IpAddr) -> Option<Hop> {
        routes
            .iter()
            .filter(|(p, _)| p.contains(&addr))
            .max_by_key(|(p, _)| p.prefix_len())
            .map(|(_, h)| *h)
    }

    proptest! {
        #[test]
        fn matches_a_linear_scan(
            entries in proptest::collection::vec((any::<u32>(), 0u8..=32, 0usize..4), 1..40),
            probes in proptest::collection::vec(any::<u32>(), 1..40),
        ) {
            let mut t = ForwardingTable::new();
            let mut reference: BTreeMap<IpNet, Hop> = BTreeMap::new();
            for (addr, len, link) in entries {
                let prefix = IpNet::new(IpAddr::V4(addr.into()), len).expect("len <= 32").trunc();
                let hop = Hop::Link(LinkId(link));
                t.insert(prefix, vec![hop]).expect("insert");
                reference.insert(prefix, hop);
            }
            let reference: Vec<(IpNet, Hop)> = reference.into_iter().collect();
            for probe in probes {
                let addr = IpAddr::V4(probe.into());
                prop_assert_eq!(t.lookup(addr), naive(&reference, addr));
            }
            // Probe inside each prefix too, where random probes rarely land.
            for (prefix, _) in &reference {
                let addr = prefix.addr();
                prop_assert_eq!(t.lookup(addr), naive(&reference, addr));
            }
        }

        /// Removals too: a prefix length whose last route goes must stop
        /// matching, and one that comes back must match again.
        #[test]
        fn matches_a_linear_scan_through_removals(
            ops in proptest::collection::vec((any::<bool>(), 0u32..64, 0u8..=32, 0usize..4), 1..80),
            probes in proptest::collection::vec(any::<u32>(), 1..20),
        ) {
            let mut t = ForwardingTable::new();
            let mut reference: BTreeMap<IpNet, Hop> = BTreeMap::new();
            for (insert, addr, len, link) in ops {
                // Few distinct addresses, so removals hit routes that exist.
                let prefix = IpNet::new(IpAddr::V4((addr << 26).into()), len)
                    .expect("len <= 32")
                    .trunc();
                if insert {
                    t.insert(prefix, vec![Hop::Link(LinkId(link))]).expect("insert");
                    reference.insert(prefix, Hop::Link(LinkId(link)));
                } else {
                    prop_assert_eq!(t.remove(prefix), reference.remove(&prefix).is_some());
                }
            }
            let reference: Vec<(IpNet, Hop)> = reference.into_iter().collect();
            let inside = reference.iter().map(|(p, _)| u32::from(match p.addr() {
                IpAddr::V4(a) => a,
                IpAddr::V6(_) => std::net::Ipv4Addr::UNSPECIFIED,
            }));
            for probe in probes.into_iter().chain(inside) {
                let addr = IpAddr::V4(probe.into());
                prop_assert_eq!(t.lookup(addr), naive(&reference, addr));
            }
        }
    }

    #[test]
    fn the_version_moves_with_every_change_a_lookup_can_see() {
        let mut t = ForwardingTable::new();
        let v0 = t.version();
        t.insert(
            net("10.0.0.0/24"),
            vec![Hop::Link(LinkId(1)), Hop::Link(LinkId(2))],
        )
        .expect("insert");
        let v1 = t.version();
        assert!(v1 > v0, "a route in");
        t.set_link_up(LinkId(1), true);
        assert_eq!(
            t.version(),
            v1,
            "a link that was up already changes nothing"
        );
        t.set_link_up(LinkId(1), false);
        let v2 = t.version();
        assert!(v2 > v1, "a hop down");
        assert!(!t.remove(net("10.9.0.0/24")));
        assert_eq!(t.version(), v2, "removing a missing route changes nothing");
        assert!(t.remove(net("10.0.0.0/24")));
        assert!(t.version() > v2, "a route out");
    }

    #[test]
    fn validation_refuses_what_insert_refuses() {
        let p = net("10.0.0.0/24");
        assert_eq!(validate_hops(p, &[]), Err(TableError::NoHops(p)));
        assert_eq!(
            validate_hops(p, &[Hop::Local, Hop::Local]),
            Err(TableError::DuplicateHop {
                prefix: p,
                hop: Hop::Local
            })
        );
        assert_eq!(validate_hops(p, &[Hop::Local, Hop::Uplink]), Ok(()));
    }
}
