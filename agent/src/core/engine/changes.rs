//! Controller-given changes applied to the engine one at a time.
//!
//! The agent's control core ([`crate::controlplane::ControlCore`]) turns
//! every controller message into the [`EngineChange`]s it implies; the shell
//! hands each to [`Engine::apply`]. One change touches one link or one
//! prefix: nothing here walks the whole table, so a one-route delta costs one
//! route update however large the mesh is (`docs/decisions.md`, "Controller
//! deltas stay deltas in the agent").

use std::collections::BTreeSet;
use std::time::Instant;

use freimesh_proto::PublicKeyBytes;
use freimesh_proto::control::{MAX_ROUTE_UPSTREAMS, Route};
use ipnet::IpNet;

use super::{Engine, EngineError, LinkSpec, segments};
use crate::core::LinkId;
use crate::core::table::Hop;

/// One change to what the engine holds on the controller's behalf.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EngineChange {
    /// The public Wi-Fi client prefixes this node serves (from the Welcome);
    /// replaces the previous set.
    SetClientPrefixes(Vec<IpNet>),
    /// Add the link to this neighbour, or update its endpoint, profile or
    /// allowed sources.
    UpsertLink(LinkSpec),
    /// Take the link to this neighbour out of service.
    RetireLink(PublicKeyBytes),
    /// Install or replace the route for `route.prefix`. Next hops name
    /// neighbours by key (this node's own key means "deliver here"); the
    /// engine keeps those it holds a link to, in order, and drops the route
    /// when none is left.
    SetRoute(Route),
    /// Forget the route for this prefix.
    RemoveRoute(IpNet),
}

impl std::fmt::Display for EngineChange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::SetClientPrefixes(p) => write!(f, "client prefixes {p:?}"),
            Self::UpsertLink(spec) => write!(f, "upsert link {} ({})", spec.name, spec.peer),
            Self::RetireLink(peer) => write!(f, "retire link to {peer}"),
            Self::SetRoute(route) => write!(
                f,
                "route {} via {} hop(s) ({:?})",
                route.prefix,
                route.via.len(),
                route.segment
            ),
            Self::RemoveRoute(prefix) => write!(f, "remove route {prefix}"),
        }
    }
}

impl Engine {
    /// Applies one change. Unchanged routes are left alone, so forwarding
    /// and any local repair in progress are not disturbed.
    pub fn apply(&mut self, change: &EngineChange, now: Instant) -> Result<(), EngineError> {
        match change {
            EngineChange::SetClientPrefixes(prefixes) => {
                let wanted: BTreeSet<IpNet> = prefixes.iter().map(IpNet::trunc).collect();
                if self.client_prefixes.iter().ne(wanted.iter()) {
                    self.set_client_prefixes(prefixes.clone());
                }
            }
            EngineChange::UpsertLink(spec) => {
                self.upsert_link(spec.clone(), now)?;
            }
            EngineChange::RetireLink(peer) => {
                if let Some(link) = self.link_by_peer(peer) {
                    self.retire_link(link);
                }
            }
            EngineChange::SetRoute(route) => self.set_route(route)?,
            EngineChange::RemoveRoute(prefix) => self.remove_controller_route(prefix.trunc()),
        }
        Ok(())
    }

    /// The hops the controller's route for `prefix` was resolved to (what
    /// [`EngineChange::SetRoute`] left), for tests that check the control
    /// core against a real engine.
    #[cfg(test)]
    pub(crate) fn configured_hops(&self, prefix: IpNet) -> Option<&[Hop]> {
        self.repair
            .configured
            .get(&prefix.trunc())
            .map(Vec::as_slice)
    }

    /// The table hops for a controller route: its next hops this engine
    /// holds a live link to (or itself), primary first.
    fn controller_hops(&self, route: &Route) -> Vec<Hop> {
        let me = self.public_key();
        route
            .via
            .iter()
            .filter_map(|peer| {
                if *peer == me {
                    Some(Hop::Local)
                } else {
                    self.link_by_peer(peer).map(Hop::Link)
                }
            })
            .collect()
    }

    fn set_route(&mut self, route: &Route) -> Result<(), EngineError> {
        let prefix = route.prefix.trunc();
        let hops = self.controller_hops(route);
        if hops.is_empty() {
            self.remove_controller_route(prefix);
            return Ok(());
        }
        self.set_route_upstreams(prefix, &route.upstreams);
        let table_hops = segments::table_hops(prefix, hops.clone());
        if self.repair.configured.get(&prefix) != Some(&table_hops)
            || self.route_segments.get(&prefix) != Some(&route.segment)
        {
            self.insert_route_in(prefix, hops, route.segment)?;
        }
        self.unpoison_unless_uplink(prefix);
        Ok(())
    }

    fn remove_controller_route(&mut self, prefix: IpNet) {
        if self.repair.configured.contains_key(&prefix) {
            self.remove_route(prefix);
        }
        self.set_route_upstreams(prefix, &[]);
        self.unpoison_unless_uplink(prefix);
    }

    /// Replaces the upstreams of the route for `prefix` (at most
    /// `MAX_ROUTE_UPSTREAMS` are kept). A neighbour that stops being one
    /// stays feasible for the hold, as a former next hop does.
    fn set_route_upstreams(&mut self, prefix: IpNet, upstreams: &[PublicKeyBytes]) {
        let new: Vec<PublicKeyBytes> = upstreams
            .iter()
            .take(MAX_ROUTE_UPSTREAMS)
            .copied()
            .collect();
        let old = if new.is_empty() {
            self.route_upstreams.remove(&prefix)
        } else {
            self.route_upstreams.insert(prefix, new.clone())
        };
        for peer in old.iter().flatten().filter(|p| !new.contains(p)) {
            if let Some(link) = self.link_by_peer(peer) {
                self.former_hops
                    .route_changed(prefix, &[Hop::Link(link)], &[]);
            }
        }
    }

    /// Whether the controller named `link`'s neighbour as an upstream of
    /// the route for `prefix`.
    pub(super) fn is_route_upstream(&self, prefix: IpNet, link: LinkId) -> bool {
        self.route_upstreams
            .get(&prefix)
            .is_some_and(|peers| peers.contains(&self.links[link.0].peer))
    }

    /// A default route that no longer leaves through our uplink needs no
    /// poison toward its next hop; the next lost-set refresh restores it
    /// there.
    fn unpoison_unless_uplink(&mut self, prefix: IpNet) {
        let leaves_by_uplink = self
            .repair
            .configured
            .get(&prefix)
            .is_some_and(|h| h.contains(&Hop::Uplink));
        if leaves_by_uplink {
            return;
        }
        for prefixes in self.repair.poisoned.values_mut() {
            prefixes.remove(&prefix);
        }
        self.repair.poisoned.retain(|_, p| !p.is_empty());
    }
}

#[cfg(test)]
mod tests {
    use boringtun::x25519::{PublicKey, StaticSecret};
    use freimesh_proto::segment::Segment;

    use super::*;

    fn secret(n: u8) -> [u8; 32] {
        let mut s = [n; 32];
        s[0] &= 248;
        s[31] = (s[31] & 127) | 64;
        s
    }

    fn public(n: u8) -> PublicKeyBytes {
        PublicKeyBytes(PublicKey::from(&StaticSecret::from(secret(n))).to_bytes())
    }

    fn link(n: u8) -> EngineChange {
        EngineChange::UpsertLink(LinkSpec {
            name: format!("n{n}"),
            peer: public(n),
            endpoint: None,
            keepalive: None,
            allowed_sources: Vec::new(),
            profile: "default".into(),
        })
    }

    fn route(prefix: &str, via: &[u8]) -> EngineChange {
        EngineChange::SetRoute(Route {
            upstreams: Vec::new(),
            prefix: prefix.parse().expect("prefix"),
            via: via.iter().copied().map(public).collect(),
            segment: Segment::Infrastructure,
        })
    }

    fn hops(engine: &Engine, prefix: &str) -> Option<Vec<Hop>> {
        let prefix: IpNet = prefix.parse().expect("prefix");
        engine.table().route(prefix).map(|g| g.hops().to_vec())
    }

    #[test]
    fn each_change_touches_one_link_or_one_route() {
        let now = Instant::now();
        let mut engine = Engine::new(secret(1), Vec::new(), 1000, now).expect("engine");
        engine.apply(&link(2), now).expect("link 2");
        engine.apply(&link(3), now).expect("link 3");
        let two = engine.link_by_peer(&public(2)).expect("2");
        let three = engine.link_by_peer(&public(3)).expect("3");
        engine
            .apply(&route("10.99.0.2/32", &[2, 3]), now)
            .expect("route");
        engine
            .apply(&route("10.99.0.3/32", &[3, 9]), now)
            .expect("route");
        assert_eq!(
            hops(&engine, "10.99.0.2/32"),
            Some(vec![Hop::Link(two), Hop::Link(three)])
        );
        assert_eq!(
            hops(&engine, "10.99.0.3/32"),
            Some(vec![Hop::Link(three)]),
            "no link to 9"
        );
        // Our own key means "deliver here".
        engine
            .apply(&route("10.99.0.1/32", &[1]), now)
            .expect("route");
        assert_eq!(hops(&engine, "10.99.0.1/32"), Some(vec![Hop::Local]));
        // No next hop we hold a link to: no route.
        engine
            .apply(&route("10.99.0.9/32", &[9]), now)
            .expect("route");
        assert_eq!(hops(&engine, "10.99.0.9/32"), None);
        engine
            .apply(
                &EngineChange::RemoveRoute("10.99.0.2/32".parse().expect("net")),
                now,
            )
            .expect("remove");
        assert_eq!(hops(&engine, "10.99.0.2/32"), None);
        assert!(hops(&engine, "10.99.0.3/32").is_some(), "others untouched");
        engine
            .apply(&EngineChange::RetireLink(public(3)), now)
            .expect("retire");
        assert_eq!(engine.link_by_peer(&public(3)), None);
        assert_eq!(engine.link_by_peer(&public(2)), Some(two));
    }
}
