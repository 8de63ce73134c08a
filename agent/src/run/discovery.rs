//! The agent shell around the discovery core ([`crate::discovery`]): feeds
//! it what the discovery socket hears, the interfaces' carrier, the time
//! and the controller's link assignments; sends what it asks; and carries
//! out its actions on the engine: a discovered neighbour gets a link at its
//! link-local endpoint (default profile) and host routes to the overlay
//! addresses in its credential, so traffic to it flows before any
//! controller route exists.

use std::collections::BTreeMap;
use std::net::{SocketAddr, SocketAddrV6};
use std::sync::Arc;

use freimesh_proto::control::Route;
use freimesh_proto::segment::Segment;
use freimesh_proto::{NodeId, PublicKeyBytes};
use ipnet::IpNet;
use tokio::sync::watch;

use super::mesh_control::MeshControl;
use super::{Outputs, Shared};
use crate::clock;
use crate::core::{EngineChange, Hop, LinkSpec};
use crate::discovery::shell::{
    DiscoverySocket, INTERFACE_POLL, InterfaceChange, MeshInterfaces, is_link_local,
};
use crate::discovery::{Discovery, DiscoveryAction, DownReason};

/// What the shell remembers of one discovered link: where the neighbour
/// is (with the scope the controller cannot carry) and the host routes
/// installed for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct DiscoveredLink {
    pub endpoint: SocketAddrV6,
    pub host_routes: Vec<IpNet>,
}

/// A controller link change as it applies next to discovery. A link
/// assignment for a discovered neighbour comes back without the scope id
/// of its link-local endpoint (serde does not carry it): the discovered
/// endpoint wins; an unscoped link-local endpoint we know nothing about is
/// left out (the engine keeps what it has). The controller retiring a link
/// that discovery still holds does not take it down (`None`): the two
/// routers still hear each other, and discovery takes it down when they
/// stop (or the key is revoked). A link exists while either side wants it.
/// Likewise a discovered neighbour's own addresses stay routed over its
/// link: the controller removing its route for one (the neighbour just
/// reconnected and has not reported its links yet) puts discovery's host
/// route back instead of leaving none, so the neighbour (a control exit,
/// often) stays reachable until the controller routes it again.
pub(super) fn controller_change_next_to_discovery(
    change: EngineChange,
    discovered: &BTreeMap<PublicKeyBytes, DiscoveredLink>,
) -> Option<EngineChange> {
    let mut spec = match change {
        EngineChange::RetireLink(peer) if discovered.contains_key(&peer) => {
            tracing::debug!(neighbour = %peer, "link kept: the controller retired it, discovery still hears the neighbour");
            return None;
        }
        EngineChange::RemoveRoute(prefix) => {
            let neighbour = discovered
                .iter()
                .find(|(_, link)| link.host_routes.contains(&prefix));
            return Some(match neighbour {
                Some((peer, _)) => {
                    tracing::debug!(%prefix, neighbour = %peer, "route kept over the discovered link: the controller removed it");
                    EngineChange::SetRoute(Route {
                        upstreams: Vec::new(),
                        prefix,
                        via: vec![*peer],
                        segment: Segment::Infrastructure,
                    })
                }
                None => EngineChange::RemoveRoute(prefix),
            });
        }
        EngineChange::UpsertLink(spec) => spec,
        other => return Some(other),
    };
    if let Some(SocketAddr::V6(endpoint)) = spec.endpoint
        && is_link_local(endpoint.ip())
        && endpoint.scope_id() == 0
    {
        spec.endpoint = discovered
            .get(&spec.peer)
            .map(|d| SocketAddr::V6(d.endpoint));
    }
    Some(EngineChange::UpsertLink(spec))
}

/// Whether a discovered link that discovery lets go must leave the engine:
/// not while the controller assigns it, unless the neighbour's membership
/// ended (revoked, expired), which no assignment overrides.
fn retire_on_link_down(reason: DownReason, assigned_by_controller: bool) -> bool {
    matches!(reason, DownReason::Revoked | DownReason::Expired) || !assigned_by_controller
}

/// Whom discovery works for: the running agent, or a router that waits
/// for its enrolment (no engine yet) and only needs to be heard and to
/// hear which neighbours relay to the controller.
pub(super) enum DiscoveryHost {
    Agent(Arc<Shared>),
    Unenrolled {
        own_key: PublicKeyBytes,
        /// Empty: no signing key, no credential (beacons go without one,
        /// no neighbour's credential can be checked, so no link comes up).
        membership: Box<std::sync::Mutex<crate::membership::Membership>>,
        mesh: MeshControl,
    },
}

impl DiscoveryHost {
    fn membership(&self) -> std::sync::MutexGuard<'_, crate::membership::Membership> {
        match self {
            Self::Agent(shared) => shared.membership(),
            Self::Unenrolled { membership, .. } => membership
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        }
    }

    fn mesh(&self) -> &MeshControl {
        match self {
            Self::Agent(shared) => &shared.mesh_control,
            Self::Unenrolled { mesh, .. } => mesh,
        }
    }
}

/// Runs discovery on the configured mesh interfaces until the agent stops
/// or `stop` fires (never without one); gives the socket back (an
/// unenrolled router's discovery hands it to the agent's once enrolled).
/// Not generic over the stop signal: one copy of the loop in the router
/// binary.
pub(super) async fn run(
    host: DiscoveryHost,
    socket: DiscoverySocket,
    names: Vec<String>,
    wg_port: u16,
    max_links: usize,
    stop: Option<tokio::sync::oneshot::Receiver<()>>,
) -> DiscoverySocket {
    let stop = async move {
        match stop {
            Some(stop) => {
                let _ = stop.await;
            }
            None => std::future::pending().await,
        }
    };
    tokio::pin!(stop);
    let own_key = match &host {
        DiscoveryHost::Agent(shared) => shared.engine().public_key(),
        DiscoveryHost::Unenrolled { own_key, .. } => *own_key,
    };
    let mut core = Discovery::new(own_key, wg_port, max_links, &names, clock::now());
    let mut interfaces = MeshInterfaces::new(&names);
    // Until an interface shows up with carrier, it gets no beacons.
    {
        let membership = host.membership();
        for name in &names {
            core.handle_carrier(&membership, name, false, clock::now());
        }
    }
    let mut controller_links = match &host {
        DiscoveryHost::Agent(shared) => shared.controller_links.subscribe(),
        DiscoveryHost::Unenrolled { .. } => watch::Sender::new(None).subscribe(),
    };
    let mut poll = tokio::time::interval(INTERFACE_POLL);
    let mut buf = vec![0u8; 2048];
    loop {
        let deadline = tokio::time::Instant::from_std(core.poll_timeout(clock::now()));
        tokio::select! {
            () = &mut stop => return socket,
            received = socket.recv(&interfaces, &mut buf) => {
                let datagram = &buf[..received.len];
                let mut membership = host.membership();
                let revocations_before = (membership.revocation_serial(), membership.revoked_keys().count());
                core.handle_datagram(&mut membership, &received.interface, received.from, datagram, clock::now(), clock::unix_now_s());
                if (membership.revocation_serial(), membership.revoked_keys().count()) != revocations_before
                    && let DiscoveryHost::Agent(shared) = &host
                {
                    // Pages learnt from a neighbour: the state file keeps
                    // the list, so a reboot while headless still knows it.
                    shared.state_changed.notify_one();
                }
            }
            _ = poll.tick() => {
                for change in interfaces.refresh() {
                    match change {
                        InterfaceChange::Appeared { name, ifindex } => {
                            match socket.join(ifindex) {
                                Ok(()) => tracing::info!(interface = %name, ifindex, "discovery on"),
                                // The socket joined before enrolment (an
                                // unenrolled router's discovery hands it on).
                                Err(err) if err.kind() == std::io::ErrorKind::AddrInUse => {
                                    tracing::debug!(interface = %name, "discovery group already joined");
                                }
                                Err(err) => tracing::warn!(interface = %name, %err, "joining the discovery group failed"),
                            }
                        }
                        InterfaceChange::Carrier { name, up } => {
                            tracing::debug!(interface = %name, up, "mesh interface carrier");
                            let membership = host.membership();
                            core.handle_carrier(&membership, &name, up, clock::now());
                        }
                    }
                }
            }
            Ok(()) = controller_links.changed() => {
                let assigned = controller_links.borrow_and_update().clone();
                if let Some(assigned) = assigned {
                    core.handle_controller_links(assigned);
                }
            }
            () = tokio::time::sleep_until(deadline) => {
                let membership = host.membership();
                core.handle_tick(&membership, clock::now(), Some(clock::unix_now_s()));
            }
        }
        while let Some(transmit) = core.poll_transmit() {
            socket.send(&interfaces, &transmit).await;
        }
        host.mesh()
            .publish_neighbour_relays(&core.relay_candidates());
        let DiscoveryHost::Agent(shared) = &host else {
            // Without a credential nothing is accepted, so no action comes.
            continue;
        };
        while let Some(action) = core.poll_action() {
            carry_out(shared, action).await;
        }
        *shared.discovery_counters() = Some(core.counters());
    }
}

async fn carry_out(shared: &Shared, action: DiscoveryAction) {
    let mut outputs = Outputs::default();
    match action {
        DiscoveryAction::LinkUp {
            interface,
            key,
            endpoint,
            credential,
        } => {
            let host_routes: Vec<IpNet> = credential
                .addresses
                .iter()
                .map(|a| IpNet::from(a.addr()))
                .collect();
            tracing::info!(neighbour = %key, %interface, %endpoint, addresses = ?host_routes, "discovered link up");
            shared.discovered().insert(
                key,
                DiscoveredLink {
                    endpoint,
                    host_routes: host_routes.clone(),
                },
            );
            let spec = LinkSpec {
                name: NodeId::of(&key).to_string(),
                peer: key,
                endpoint: Some(SocketAddr::V6(endpoint)),
                keepalive: None,
                allowed_sources: Vec::new(),
                profile: "default".to_owned(),
            };
            shared
                .with_engine(&mut outputs, |engine| {
                    let now = clock::now();
                    if let Err(err) = engine.apply(&EngineChange::UpsertLink(spec), now) {
                        tracing::warn!(neighbour = %key, %err, "discovered link not added");
                        return;
                    }
                    for prefix in host_routes {
                        // A route the controller (or the operator) set wins.
                        if engine.table().route(prefix).is_some() {
                            continue;
                        }
                        let route = Route { upstreams: Vec::new(),
                            prefix,
                            via: vec![key],
                            segment: Segment::Infrastructure,
                        };
                        if let Err(err) = engine.apply(&EngineChange::SetRoute(route), now) {
                            tracing::warn!(%prefix, %err, "host route to a discovered neighbour not set");
                        }
                    }
                })
                .await;
        }
        DiscoveryAction::LinkDown { key, reason } => {
            let assigned = shared
                .controller_links
                .borrow()
                .as_ref()
                .is_some_and(|links| links.contains(&key));
            let retire = retire_on_link_down(reason, assigned);
            tracing::info!(neighbour = %key, ?reason, kept_for_the_controller = !retire, "discovered link down");
            let known = shared.discovered().remove(&key);
            if !retire {
                // The controller's link now: its routes are the
                // controller's to change (a host route discovery set and
                // the controller's own route to the neighbour look alike).
                return;
            }
            shared
                .with_engine(&mut outputs, |engine| {
                    if let Some(known) = known {
                        remove_discovered_routes(engine, &key, &known.host_routes);
                    }
                    let _ = engine.apply(&EngineChange::RetireLink(key), clock::now());
                })
                .await;
        }
        DiscoveryAction::Forget { key } => {
            // Silent, but the controller assigned the link: link and routes
            // are the controller's; only discovery's record goes (so it is
            // no longer reported as a candidate at its old endpoint).
            tracing::info!(neighbour = %key, "discovered neighbour silent; its link stays the controller's");
            shared.discovered().remove(&key);
        }
    }
}

/// Removes the host routes discovery set for `key`'s neighbour: those
/// that still run through its link alone (a controller route stays).
fn remove_discovered_routes(
    engine: &mut crate::core::Engine,
    key: &PublicKeyBytes,
    host_routes: &[IpNet],
) {
    let now = clock::now();
    let Some(link) = engine.link_by_peer(key) else {
        return;
    };
    for prefix in host_routes {
        let ours = engine
            .table()
            .route(*prefix)
            .is_some_and(|r| r.hops() == [Hop::Link(link)]);
        if ours {
            let _ = engine.apply(&EngineChange::RemoveRoute(*prefix), now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_routes_through_the_discovered_link_alone_are_removed() {
        let now = clock::now();
        let peer = PublicKeyBytes([5; 32]);
        let other = PublicKeyBytes([6; 32]);
        let spec = |peer: PublicKeyBytes| LinkSpec {
            name: NodeId::of(&peer).to_string(),
            peer,
            endpoint: Some("[fe80::5%3]:51820".parse().expect("addr")),
            keepalive: None,
            allowed_sources: Vec::new(),
            profile: "default".into(),
        };
        let mut engine = crate::core::Engine::new([7; 32], vec![spec(peer), spec(other)], 1, now)
            .expect("engine");
        let ours: IpNet = "fd00::5/128".parse().expect("prefix");
        let controllers: IpNet = "fd00::55/128".parse().expect("prefix");
        for (prefix, via) in [(ours, peer), (controllers, other)] {
            let route = Route {
                upstreams: Vec::new(),
                prefix,
                via: vec![via],
                segment: Segment::Infrastructure,
            };
            engine
                .apply(&EngineChange::SetRoute(route), now)
                .expect("route");
        }
        remove_discovered_routes(&mut engine, &peer, &[ours, controllers]);
        assert!(engine.table().route(ours).is_none());
        assert!(
            engine.table().route(controllers).is_some(),
            "not through this link alone"
        );
        assert!(engine.link_by_peer(&peer).is_some(), "the link stays");
    }

    #[test]
    fn a_link_local_assignment_without_scope_takes_the_discovered_endpoint() {
        let peer = PublicKeyBytes([5; 32]);
        let scoped: SocketAddrV6 = "[fe80::5%3]:51820".parse().expect("addr");
        let discovered = BTreeMap::from([(
            peer,
            DiscoveredLink {
                endpoint: scoped,
                host_routes: Vec::new(),
            },
        )]);
        let spec = |endpoint: &str| {
            EngineChange::UpsertLink(LinkSpec {
                name: "n".into(),
                peer,
                endpoint: Some(endpoint.parse().expect("addr")),
                keepalive: None,
                allowed_sources: Vec::new(),
                profile: "default".into(),
            })
        };
        let Some(EngineChange::UpsertLink(fixed)) =
            controller_change_next_to_discovery(spec("[fe80::5]:51820"), &discovered)
        else {
            panic!("upsert");
        };
        assert_eq!(fixed.endpoint, Some(SocketAddr::V6(scoped)));
        // Global addresses and scoped ones pass unchanged.
        for other in [
            "[2001:db8::5]:51820",
            "192.0.2.5:51820",
            "[fe80::5%9]:51820",
        ] {
            assert_eq!(
                controller_change_next_to_discovery(spec(other), &discovered),
                Some(spec(other))
            );
        }
        // Unscoped link-local for a neighbour we did not discover: left out.
        let Some(EngineChange::UpsertLink(unknown)) =
            controller_change_next_to_discovery(spec("[fe80::5]:51820"), &BTreeMap::new())
        else {
            panic!("upsert");
        };
        assert_eq!(unknown.endpoint, None);
    }

    #[test]
    fn a_link_stays_while_either_the_controller_or_discovery_wants_it() {
        let peer = PublicKeyBytes([5; 32]);
        let discovered = BTreeMap::from([(
            peer,
            DiscoveredLink {
                endpoint: "[fe80::5%3]:51820".parse().expect("addr"),
                host_routes: Vec::new(),
            },
        )]);
        // The controller retires a link discovery still holds: kept.
        assert_eq!(
            controller_change_next_to_discovery(EngineChange::RetireLink(peer), &discovered),
            None
        );
        // One discovery does not hold: retired.
        let other = PublicKeyBytes([6; 32]);
        assert_eq!(
            controller_change_next_to_discovery(EngineChange::RetireLink(other), &discovered),
            Some(EngineChange::RetireLink(other))
        );
        // The controller removing the route to a discovered neighbour's
        // own address: the host route over its link comes back.
        let own: IpNet = "fd00::5/128".parse().expect("prefix");
        let with_routes = BTreeMap::from([(
            peer,
            DiscoveredLink {
                endpoint: "[fe80::5%3]:51820".parse().expect("addr"),
                host_routes: vec![own],
            },
        )]);
        assert_eq!(
            controller_change_next_to_discovery(EngineChange::RemoveRoute(own), &with_routes),
            Some(EngineChange::SetRoute(Route {
                upstreams: Vec::new(),
                prefix: own,
                via: vec![peer],
                segment: Segment::Infrastructure,
            }))
        );
        let elsewhere: IpNet = "fd00::9/128".parse().expect("prefix");
        assert_eq!(
            controller_change_next_to_discovery(EngineChange::RemoveRoute(elsewhere), &with_routes),
            Some(EngineChange::RemoveRoute(elsewhere))
        );
        // Discovery lets go of a link the controller assigns: kept, unless
        // the neighbour's membership ended.
        assert!(!retire_on_link_down(DownReason::Silent, true));
        assert!(!retire_on_link_down(DownReason::Displaced, true));
        assert!(retire_on_link_down(DownReason::Revoked, true));
        assert!(retire_on_link_down(DownReason::Expired, true));
        assert!(retire_on_link_down(DownReason::Silent, false));
    }
}
