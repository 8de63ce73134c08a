//! What the core remembers having sent each connected node, kept small:
//! the links in full (a node has a handful), and for each route prefix
//! only a 128-bit digest of its next hops and segment. Every node holds a
//! route to every other node, so this table grows with the square of the
//! mesh; the digests are only ever compared (is what the node holds what
//! it should hold?), never sent, so the full routes need not be kept.
//! Two different routes for one prefix would have to share all 128 bits
//! for a change to be missed: not a practical risk.

use std::collections::BTreeMap;
use std::hash::{DefaultHasher, Hash, Hasher};

use freimesh_proto::PublicKeyBytes;
use freimesh_proto::control::{LinkAssignment, Route};
use freimesh_proto::segment::Segment;
use ipnet::IpNet;

/// What a node holds for one prefix: its next hops as keys (primary
/// first), the other neighbours its sources may arrive through, and the
/// segment.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) struct RouteEntry {
    pub(super) via: Vec<PublicKeyBytes>,
    pub(super) upstreams: Vec<PublicKeyBytes>,
    pub(super) segment: Segment,
}

impl RouteEntry {
    /// The wire route for `prefix`.
    pub(super) fn into_route(self, prefix: IpNet) -> Route {
        Route {
            prefix,
            via: self.via,
            segment: self.segment,
            upstreams: self.upstreams,
        }
    }
}

/// A [`RouteEntry`] reduced to 128 bits: equal entries, equal digests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct RouteDigest(u128);

impl RouteDigest {
    pub(super) fn of(entry: &RouteEntry) -> Self {
        // Two SipHash runs (fixed keys: the digest never leaves this
        // process) told apart by a leading salt byte.
        let half = |salt: u8| {
            let mut h = DefaultHasher::new();
            salt.hash(&mut h);
            entry.hash(&mut h);
            h.finish()
        };
        Self(u128::from(half(0)) << 64 | u128::from(half(1)))
    }
}

/// The digests of a node's routes, by prefix.
pub(super) fn digests(routes: &BTreeMap<IpNet, RouteEntry>) -> BTreeMap<IpNet, RouteDigest> {
    routes
        .iter()
        .map(|(prefix, entry)| (*prefix, RouteDigest::of(entry)))
        .collect()
}

/// What one connected node was last sent.
#[derive(Debug, Default)]
pub(super) struct Sent {
    pub(super) links: BTreeMap<PublicKeyBytes, LinkAssignment>,
    pub(super) routes: BTreeMap<IpNet, RouteDigest>,
    /// Its exit gateway (`ControllerMsg::ExitGateway`).
    pub(super) exit_gateway: Option<PublicKeyBytes>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(b: u8) -> PublicKeyBytes {
        PublicKeyBytes([b; 32])
    }

    #[test]
    fn equal_routes_equal_digests_and_any_difference_shows() {
        let entry =
            |via: Vec<PublicKeyBytes>, upstreams: Vec<PublicKeyBytes>, segment| RouteEntry {
                via,
                upstreams,
                segment,
            };
        let base = entry(vec![key(1), key(2)], vec![key(4)], Segment::Infrastructure);
        assert_eq!(RouteDigest::of(&base), RouteDigest::of(&base.clone()));
        let variants: [RouteEntry; 7] = [
            entry(vec![key(2), key(1)], vec![key(4)], Segment::Infrastructure),
            entry(vec![key(1)], vec![key(4)], Segment::Infrastructure),
            entry(
                vec![key(1), key(2), key(3)],
                vec![key(4)],
                Segment::Infrastructure,
            ),
            entry(vec![key(1), key(2)], vec![key(4)], Segment::Intranet),
            entry(Vec::new(), vec![key(4)], Segment::Infrastructure),
            entry(vec![key(1), key(2)], Vec::new(), Segment::Infrastructure),
            entry(
                vec![key(1), key(2)],
                vec![key(4), key(5)],
                Segment::Infrastructure,
            ),
        ];
        for v in &variants {
            assert_ne!(RouteDigest::of(&base), RouteDigest::of(v), "{v:?}");
        }
    }

    #[test]
    fn the_two_halves_differ() {
        let RouteDigest(d) = RouteDigest::of(&RouteEntry {
            via: vec![key(7)],
            upstreams: Vec::new(),
            segment: Segment::Public,
        });
        assert_ne!(d >> 64, d & u128::from(u64::MAX));
    }

    #[test]
    fn digests_keep_every_prefix() {
        let routes: BTreeMap<IpNet, RouteEntry> =
            [("10.0.0.1/32", vec![key(1)]), ("fd00::1/128", vec![key(1)])]
                .into_iter()
                .map(|(p, via)| {
                    let entry = RouteEntry {
                        via,
                        upstreams: Vec::new(),
                        segment: Segment::Infrastructure,
                    };
                    (p.parse().expect("prefix"), entry)
                })
                .collect();
        let d = digests(&routes);
        assert_eq!(
            d.keys().collect::<Vec<_>>(),
            routes.keys().collect::<Vec<_>>()
        );
    }
}
