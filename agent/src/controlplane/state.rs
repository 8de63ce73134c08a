//! The controller-given state, rebuilt from [`ControllerEvent`]s: what the
//! run loop reconciles the engine against (desired minus actual = changes,
//! the same code at start-up and on every update).

use std::collections::BTreeMap;

use freimesh_proto::PublicKeyBytes;
use freimesh_proto::control::{LinkAssignment, LinkChange, Route, RouteChange, Welcome};
use ipnet::IpNet;

use super::ControllerEvent;

/// Links and routes as the controller last described them. Survives
/// disconnects unchanged (headless mode) and is replaced by the full state
/// that follows the next Welcome.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ControllerState {
    pub welcome: Option<Welcome>,
    pub links: BTreeMap<PublicKeyBytes, LinkAssignment>,
    /// Prefix → next hops (neighbour keys, or this node's own key for
    /// "deliver here"), primary first, and the destination's segment.
    pub routes: BTreeMap<IpNet, Route>,
}

impl ControllerState {
    /// Applies one event; true if the welcome, links or routes changed.
    pub fn apply(&mut self, event: &ControllerEvent) -> bool {
        let before = self.clone();
        match event {
            ControllerEvent::Welcome(w) => self.welcome = Some(w.clone()),
            ControllerEvent::Links(links) => {
                self.links = links.iter().map(|l| (l.peer, l.clone())).collect();
            }
            ControllerEvent::Routes(routes) => {
                self.routes = routes.iter().map(|r| (r.prefix, r.clone())).collect();
            }
            ControllerEvent::LinksDelta(changes) => {
                for change in changes {
                    match change {
                        LinkChange::Add(l) => {
                            self.links.insert(l.peer, l.clone());
                        }
                        LinkChange::Remove(peer) => {
                            self.links.remove(peer);
                        }
                    }
                }
            }
            ControllerEvent::RoutesDelta(changes) => {
                for change in changes {
                    match change {
                        RouteChange::Set(r) => {
                            self.routes.insert(r.prefix, r.clone());
                        }
                        RouteChange::Remove(prefix) => {
                            self.routes.remove(prefix);
                        }
                    }
                }
            }
            ControllerEvent::Pending { .. }
            | ControllerEvent::Refused(_)
            | ControllerEvent::Disconnected { .. } => {}
        }
        *self != before
    }

    /// The public Wi-Fi client prefixes (a /64 and an IPv4 subnet) the
    /// last Welcome assigned: what the shell puts on the client interface.
    pub fn client_prefixes(&self) -> &[IpNet] {
        self.welcome
            .as_ref()
            .map_or(&[], |w| w.client_prefixes.as_slice())
    }
}

#[cfg(test)]
mod tests {
    use freimesh_proto::control::Route;

    use super::*;

    fn key(b: u8) -> PublicKeyBytes {
        PublicKeyBytes([b; 32])
    }

    #[test]
    fn full_state_replaces_and_deltas_patch() {
        let mut s = ControllerState::default();
        let link = |b| LinkAssignment {
            peer: key(b),
            endpoint: None,
            profile: "default".into(),
            allowed_sources: Vec::new(),
        };
        let p: IpNet = "10.99.0.2/32".parse().expect("net");
        assert!(s.apply(&ControllerEvent::Links(vec![link(2), link(3)])));
        assert!(s.apply(&ControllerEvent::Routes(vec![Route {
            prefix: p,
            via: vec![key(2), key(3)],
            segment: freimesh_proto::segment::Segment::Infrastructure,
        }])));
        assert!(
            s.apply(&ControllerEvent::LinksDelta(vec![LinkChange::Remove(key(
                3
            ))]))
        );
        assert!(s.apply(&ControllerEvent::RoutesDelta(vec![RouteChange::Set(
            Route {
                prefix: p,
                via: vec![key(2)],
                segment: freimesh_proto::segment::Segment::Infrastructure,
            }
        )])));
        assert_eq!(s.links.keys().copied().collect::<Vec<_>>(), vec![key(2)]);
        assert_eq!(s.routes[&p].via, vec![key(2)]);
        let disconnected = ControllerEvent::Disconnected {
            reason: "x".into(),
            retry_in: std::time::Duration::from_secs(1),
        };
        assert!(!s.apply(&disconnected), "headless: state stays");
        assert!(s.apply(&ControllerEvent::Links(vec![])));
        assert!(s.links.is_empty());
    }
}
