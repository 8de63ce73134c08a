//! What each connected node is sent after a change: a full diff of its
//! links and routes against what it holds, or, for a node whose routes
//! moved only toward some destinations, a delta for those destinations'
//! prefixes. The core remembers what it sent (`Sent`), so only differences
//! go out.

use std::collections::BTreeSet;

use freimesh_proto::PublicKeyBytes;
use freimesh_proto::control::{ControllerMsg, LinkChange, RouteChange};

use super::sent::{self, RouteDigest};
use super::{Controller, Outgoing};

impl Controller {
    /// Node `id`'s routes moved toward `dsts` only (its links did not
    /// change): queues one RoutesDelta for those destinations' prefixes.
    pub(super) fn sync_destinations(&mut self, id: u32, dsts: &BTreeSet<u32>) {
        if !self.sessions.contains_key(&id) {
            return;
        }
        let desired: Vec<_> = dsts
            .iter()
            .flat_map(|dst| self.desired_routes_to(id, *dst))
            .collect();
        let Some(sent) = self.sessions.get_mut(&id) else {
            return;
        };
        let mut changes = Vec::new();
        for (prefix, want) in desired {
            match want {
                Some(entry) => {
                    let digest = RouteDigest::of(&entry);
                    if sent.routes.insert(prefix, digest) != Some(digest) {
                        changes.push(RouteChange::Set(entry.into_route(prefix)));
                    }
                }
                None => {
                    if sent.routes.remove(&prefix).is_some() {
                        changes.push(RouteChange::Remove(prefix));
                    }
                }
            }
        }
        if !changes.is_empty() {
            self.push(id, Outgoing::Frame(ControllerMsg::RoutesDelta(changes)));
        }
    }

    /// Diffs what `ids` should have against what they were sent; queues
    /// LinksDelta (additions), RoutesDelta, LinksDelta (removals), so that a
    /// node never holds a route over a link it no longer has.
    pub(super) fn sync(&mut self, ids: &BTreeSet<u32>) {
        for id in ids {
            if !self.sessions.contains_key(id) {
                continue;
            }
            let links = self.desired_links(*id);
            let routes = self.desired_routes(*id);
            let Some(sent) = self.sessions.get_mut(id) else {
                continue;
            };
            let adds: Vec<LinkChange> = links
                .iter()
                .filter(|(k, v)| sent.links.get(*k) != Some(*v))
                .map(|(_, v)| LinkChange::Add(v.clone()))
                .collect();
            let removes: Vec<LinkChange> = sent
                .links
                .keys()
                .filter(|k| !links.contains_key(*k))
                .map(|k| LinkChange::Remove(*k))
                .collect();
            let mut route_changes: Vec<RouteChange> = sent
                .routes
                .keys()
                .filter(|p| !routes.contains_key(*p))
                .map(|p| RouteChange::Remove(*p))
                .collect();
            let digests = sent::digests(&routes);
            route_changes.extend(
                routes
                    .into_iter()
                    .filter(|(p, _)| sent.routes.get(p) != digests.get(p))
                    .map(|(prefix, entry)| RouteChange::Set(entry.into_route(prefix))),
            );
            sent.links = links;
            sent.routes = digests;
            if !adds.is_empty() {
                self.push(*id, Outgoing::Frame(ControllerMsg::LinksDelta(adds)));
            }
            if !route_changes.is_empty() {
                self.push(
                    *id,
                    Outgoing::Frame(ControllerMsg::RoutesDelta(route_changes)),
                );
            }
            if !removes.is_empty() {
                self.push(*id, Outgoing::Frame(ControllerMsg::LinksDelta(removes)));
            }
        }
        self.sync_exit_gateways();
    }

    /// Node `id`'s exit gateway as a key ([`Controller::default_gateway`]).
    pub(super) fn exit_gateway_key(&self, id: u32) -> Option<PublicKeyBytes> {
        let (gateway, _) = self.default_gateway(id)?;
        self.key_of(gateway)
    }

    /// Queues an ExitGateway for every connected node whose exit gateway
    /// is not the one it was sent last. A node's exit can move without
    /// any of its own routes moving (a hop further along switched
    /// gateways), so every connected node is checked: a walk along its
    /// primary default path, cheap beside the route update before it.
    pub(super) fn sync_exit_gateways(&mut self) {
        let ids: Vec<u32> = self.sessions.keys().copied().collect();
        for id in ids {
            let gateway = self.exit_gateway_key(id);
            let Some(sent) = self.sessions.get_mut(&id) else {
                continue;
            };
            if sent.exit_gateway != gateway {
                sent.exit_gateway = gateway;
                self.push(id, Outgoing::Frame(ControllerMsg::ExitGateway(gateway)));
            }
        }
    }
}
