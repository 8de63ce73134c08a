//! Pure queries for tracing a packet through a mesh of engines from the
//! outside (the whole-mesh simulator, tests): where would a packet to a
//! destination leave this node now, and which routes are installed. Nothing
//! here changes the engine.

use std::net::IpAddr;

use freimesh_proto::PublicKeyBytes;
use ipnet::IpNet;

use super::Engine;
use crate::core::table::Hop;

/// Where a packet to some destination would leave this node, by the
/// engine's current choice (the first live next hop of the longest match).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NextHop {
    /// Delivered to this node.
    Local,
    /// Out through this gateway's uplink.
    Uplink,
    /// Over the link to the neighbour holding this key.
    Neighbour(PublicKeyBytes),
    /// Dropped: no route, or every next hop is down.
    Unreachable,
}

impl Engine {
    /// The next hop a packet to `dst` would take from this node now.
    pub fn next_hop(&self, dst: IpAddr) -> NextHop {
        match self.table.lookup(dst) {
            Some(Hop::Local) => NextHop::Local,
            Some(Hop::Uplink) => NextHop::Uplink,
            Some(Hop::Link(id)) => match self.links.get(id.0) {
                Some(link) if !link.retired => NextHop::Neighbour(link.peer),
                _ => NextHop::Unreachable,
            },
            Some(Hop::Unreachable) | None => NextHop::Unreachable,
        }
    }

    /// Grows with every change that can alter what [`Engine::next_hop`]
    /// answers for any destination (routes, hops up or down, links
    /// retired or revived): equal versions, equal answers.
    pub fn forwarding_version(&self) -> u64 {
        self.table.version() + self.link_retirements
    }

    /// Every installed route with its configured next hops by neighbour key
    /// (`None` for local delivery, the uplink or an unreachable marker),
    /// primary first, in prefix order.
    pub fn installed_routes(&self) -> Vec<(IpNet, Vec<Option<PublicKeyBytes>>)> {
        self.table
            .routes()
            .into_iter()
            .map(|r| {
                let hops = r
                    .hops
                    .iter()
                    .map(|h| match h {
                        Hop::Link(id) => self.links.get(id.0).map(|l| l.peer),
                        _ => None,
                    })
                    .collect();
                (r.prefix, hops)
            })
            .collect()
    }
}
