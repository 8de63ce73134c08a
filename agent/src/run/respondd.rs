//! The agent shell around the respondd core ([`crate::respondd`]): joins
//! the respondd group on the mesh interfaces as they appear, hands the core
//! the interfaces' indexes, every datagram heard and, before a datagram
//! when the last one is older than [`SNAPSHOT_MAX_AGE`], a fresh
//! [`Snapshot`]; sends what it answers. Nothing is read while nobody asks.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use freimesh_proto::PublicKeyBytes;
use ipnet::IpNet;

use super::Shared;
use crate::clock;
use crate::core::Hop;
use crate::discovery::shell::{INTERFACE_POLL, InterfaceChange, MeshInterfaces};
use crate::nodeinfo::{Collector, NodeInfoConfig};
use crate::respondd::shell::RespondSocket;
use crate::respondd::{
    MAX_REQUEST_BYTES, NeighbourLink, OwnNode, Respondd, Snapshot, SourcePolicy,
};

/// How old the answers' data may be: Gluon caches statistics for 5 s.
/// Also the bound on how often a flood of requests (answered or not) makes
/// the agent read its files and links again.
pub(super) const SNAPSHOT_MAX_AGE: Duration = Duration::from_secs(5);

/// What the respondd task needs from the configuration.
#[derive(Debug)]
pub(super) struct RespondSettings {
    pub own: OwnNode,
    pub policy: SourcePolicy,
    pub interfaces: Vec<String>,
    pub node_info: NodeInfoConfig,
}

/// The mesh's prefixes as respondd's source policy reads them: the
/// prefixes the kernel sends into the mesh and the overlay addresses'
/// networks. A default route is not "the mesh" and is left out.
pub(super) fn mesh_prefixes(kernel_routes: &[IpNet], addresses: &[IpNet]) -> Vec<IpNet> {
    kernel_routes
        .iter()
        .chain(addresses)
        .map(IpNet::trunc)
        .filter(|p| p.prefix_len() > 0)
        .collect()
}

/// Serves respondd until the agent stops.
pub(super) async fn run(shared: Arc<Shared>, socket: RespondSocket, settings: RespondSettings) {
    let own_key = settings.own.key;
    let mut core = Respondd::new(settings.own, settings.policy);
    *shared.respondd_counters() = Some(core.counters());
    let mut interfaces = MeshInterfaces::new(&settings.interfaces);
    let collector = Collector::new("/", settings.node_info);
    let mut poll = tokio::time::interval(INTERFACE_POLL);
    let mut read_at: Option<std::time::Instant> = None;
    let mut buf = [0u8; MAX_REQUEST_BYTES + 1];
    loop {
        tokio::select! {
            _ = poll.tick() => {
                let changes = interfaces.refresh();
                for change in &changes {
                    if let InterfaceChange::Appeared { name, ifindex } = change
                        && let Err(err) = socket.join(*ifindex)
                    {
                        tracing::warn!(interface = %name, %err, "respondd: joining the group failed");
                    }
                }
                if !changes.is_empty() {
                    core.handle_mesh_interfaces(
                        settings.interfaces.iter().filter_map(|n| interfaces.index_of(n)),
                    );
                }
            }
            (len, from) = socket.recv(&mut buf) => {
                if read_at.is_none_or(|at| clock::now().saturating_duration_since(at) >= SNAPSHOT_MAX_AGE) {
                    read_at = Some(clock::now());
                    if let Some(snapshot) = snapshot(&shared, &collector, &own_key).await {
                        core.handle_snapshot(snapshot);
                    }
                }
                if let Err(refusal) = core.handle_request(from, &buf[..len], clock::now()) {
                    tracing::debug!(%from, %refusal, "respondd: no answer");
                }
                *shared.respondd_counters() = Some(core.counters());
                while let Some(answer) = core.poll_answer() {
                    socket.send(&answer).await;
                }
            }
        }
    }
}

/// Reads the router's files (on a blocking thread), the engine's links
/// and default route, and the exit gateway the controller named.
async fn snapshot(
    shared: &Shared,
    collector: &Collector,
    own_key: &PublicKeyBytes,
) -> Option<Snapshot> {
    let reader = collector.clone();
    let (info, stats) = match tokio::task::spawn_blocking(move || {
        (reader.node_info(), reader.statistics())
    })
    .await
    {
        Ok(read) => read,
        Err(err) => {
            tracing::warn!(%err, "respondd: reading node information failed");
            return None;
        }
    };
    let (links, gateway_nexthop) = {
        let engine = shared.engine();
        let states = engine.link_states();
        // The active first hop of the default route: a neighbour, or this
        // node's own uplink (a gateway that is its own exit names itself,
        // as the controller's meshviewer export does).
        let nexthop = ["0.0.0.0/0", "::/0"]
            .into_iter()
            .filter_map(|p| p.parse::<IpNet>().ok())
            .find_map(|p| match engine.table().route(p)?.active()? {
                Hop::Link(id) => states
                    .iter()
                    .find(|l| engine.link_by_peer(&l.peer) == Some(id))
                    .map(|l| l.peer),
                Hop::Uplink => Some(*own_key),
                Hop::Local | Hop::Unreachable => None,
            });
        let links = states
            .iter()
            .filter(|l| l.up)
            .map(|l| NeighbourLink {
                peer: l.peer,
                loss_ppm: l.loss_ppm,
            })
            .collect();
        (links, nexthop)
    };
    Some(Snapshot {
        info,
        stats,
        links,
        clients: Some(
            shared
                .public_wifi_clients
                .load(std::sync::atomic::Ordering::Relaxed),
        ),
        gateway_nexthop,
        gateway: shared.exit_gateway(),
    })
}

/// The overlay addresses respondd lists (`network.addresses`).
pub(super) fn overlay_addresses(addresses: &[IpNet]) -> Vec<IpAddr> {
    addresses.iter().map(IpNet::addr).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mesh_is_the_kernel_routes_and_the_address_networks_never_everything() {
        let net = |t: &str| t.parse::<IpNet>().expect("net");
        assert_eq!(
            mesh_prefixes(
                &[net("fd99::/48"), net("::/0"), net("0.0.0.0/0")],
                &[net("fd98::5/64"), net("10.99.0.5/32")]
            ),
            [net("fd99::/48"), net("fd98::/64"), net("10.99.0.5/32")]
        );
    }
}
