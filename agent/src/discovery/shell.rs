//! The sockets side of discovery: one UDP socket on [`DISCOVERY_PORT`],
//! joined to [`DISCOVERY_GROUP`] on every mesh interface that exists, and
//! the interfaces' state read from sysfs.
//!
//! Interfaces may not exist yet when the agent starts (a Wi-Fi mesh
//! interface comes up late, a bridge is created by another service) or may
//! be recreated with a new index: [`MeshInterfaces::refresh`] looks again
//! every [`INTERFACE_POLL`], joins the group on new indexes and reports
//! carrier changes. Polling sysfs (`/sys/class/net/NAME/ifindex`,
//! `operstate`) needs no netlink and works with every backend; a second of
//! delay on carrier up only delays the first beacon on that interface.
//!
//! Received datagrams are accepted only from IPv6 link-local sources on a
//! known mesh interface (their scope id is the interface index): a
//! link-local source cannot have been routed. Datagrams are sent with hop
//! limit 255 so a receiver may also check it (GTSM, RFC 5082); this build
//! does not read the received hop limit (that needs `IPV6_RECVHOPLIMIT`
//! control messages, which have no safe Rust API here, and the link-local
//! source check already rules out routed packets).

use std::collections::BTreeMap;
use std::net::{Ipv6Addr, SocketAddr, SocketAddrV6};
use std::path::Path;
use std::time::Duration;

use freimesh_proto::discovery::{DISCOVERY_GROUP, DISCOVERY_HOP_LIMIT, DISCOVERY_PORT};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::UdpSocket;

use super::{Destination, Transmit};

/// How often interfaces are looked up again (appearance, index, carrier).
pub const INTERFACE_POLL: Duration = Duration::from_secs(1);

/// The discovery socket.
#[derive(Debug)]
pub struct DiscoverySocket {
    socket: UdpSocket,
}

/// One datagram heard on a mesh interface.
#[derive(Debug)]
pub struct Received {
    pub interface: String,
    pub from: SocketAddrV6,
    pub len: usize,
}

impl DiscoverySocket {
    /// Binds `[::]:port` (IPv6 only), multicast loop off, hop limit 255.
    /// `port` is [`DISCOVERY_PORT`] outside tests.
    pub fn open(port: u16) -> std::io::Result<Self> {
        let socket = Socket::new(Domain::IPV6, Type::DGRAM, Some(Protocol::UDP))?;
        socket.set_only_v6(true)?;
        socket.set_reuse_address(true)?;
        socket.set_multicast_loop_v6(false)?;
        socket.set_multicast_hops_v6(u32::from(DISCOVERY_HOP_LIMIT))?;
        socket.set_unicast_hops_v6(u32::from(DISCOVERY_HOP_LIMIT))?;
        socket.set_nonblocking(true)?;
        let bind = SocketAddr::from(SocketAddrV6::new(Ipv6Addr::UNSPECIFIED, port, 0, 0));
        socket.bind(&bind.into())?;
        let socket = UdpSocket::from_std(socket.into())?;
        Ok(Self { socket })
    }

    /// Joins the discovery group on interface `ifindex`.
    pub fn join(&self, ifindex: u32) -> std::io::Result<()> {
        let socket = socket2::SockRef::from(&self.socket);
        socket.join_multicast_v6(&DISCOVERY_GROUP, ifindex)
    }

    /// Sends one datagram the core asked for; errors are logged (an
    /// interface that just went away).
    pub async fn send(&self, interfaces: &MeshInterfaces, transmit: &Transmit) {
        let to = match transmit.to {
            Destination::Unicast(to) => to,
            Destination::Group => {
                let Some(ifindex) = interfaces.index_of(&transmit.interface) else {
                    return;
                };
                SocketAddrV6::new(DISCOVERY_GROUP, DISCOVERY_PORT, 0, ifindex)
            }
        };
        if let Err(err) = self.socket.send_to(&transmit.datagram, to).await {
            tracing::debug!(interface = %transmit.interface, %to, %err, "discovery send failed");
        }
    }

    /// Waits for the next datagram from a link-local source on a known
    /// mesh interface; everything else is dropped here.
    pub async fn recv(&self, interfaces: &MeshInterfaces, buf: &mut [u8]) -> Received {
        loop {
            let (len, from) = match self.socket.recv_from(buf).await {
                Ok(received) => received,
                Err(err) => {
                    tracing::trace!(%err, "discovery receive error");
                    continue;
                }
            };
            let SocketAddr::V6(from) = from else { continue };
            if !is_link_local(from.ip()) {
                continue;
            }
            let Some(interface) = interfaces.name_of(from.scope_id()) else {
                continue;
            };
            return Received {
                interface: interface.to_owned(),
                from,
                len,
            };
        }
    }
}

/// Whether `ip` is an IPv6 link-local unicast address (`fe80::/10`).
pub fn is_link_local(ip: &Ipv6Addr) -> bool {
    ip.segments()[0] & 0xffc0 == 0xfe80
}

/// What changed on one interface at a refresh.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InterfaceChange {
    /// The interface exists with this index now (first seen, or
    /// recreated): join the group on it.
    Appeared {
        name: String,
        ifindex: u32,
    },
    Carrier {
        name: String,
        up: bool,
    },
}

/// The mesh interfaces by name, with the index and carrier last read.
#[derive(Debug)]
pub struct MeshInterfaces {
    sysfs: std::path::PathBuf,
    known: BTreeMap<String, Option<(u32, bool)>>,
}

impl MeshInterfaces {
    pub fn new(names: &[String]) -> Self {
        Self::with_sysfs(names, Path::new("/sys/class/net"))
    }

    /// Reads interfaces under `sysfs` instead of `/sys/class/net` (tests).
    pub fn with_sysfs(names: &[String], sysfs: &Path) -> Self {
        Self {
            sysfs: sysfs.to_owned(),
            known: names.iter().map(|n| (n.clone(), None)).collect(),
        }
    }

    pub fn index_of(&self, name: &str) -> Option<u32> {
        self.known.get(name).copied().flatten().map(|(i, _)| i)
    }

    pub fn name_of(&self, ifindex: u32) -> Option<&str> {
        self.known
            .iter()
            .find(|(_, s)| s.is_some_and(|(i, _)| i == ifindex))
            .map(|(n, _)| n.as_str())
    }

    /// Reads every interface's index and carrier again; what changed.
    pub fn refresh(&mut self) -> Vec<InterfaceChange> {
        let mut changes = Vec::new();
        for (name, state) in &mut self.known {
            let dir = self.sysfs.join(name);
            let ifindex = std::fs::read_to_string(dir.join("ifindex"))
                .ok()
                .and_then(|t| t.trim().parse::<u32>().ok());
            let Some(ifindex) = ifindex else {
                if let Some((_, true)) = state.take() {
                    changes.push(InterfaceChange::Carrier {
                        name: name.clone(),
                        up: false,
                    });
                }
                continue;
            };
            // "up", or "unknown" for interfaces without carrier reporting
            // (some virtual ones): usable. "down", "dormant" etc.: not.
            let up = std::fs::read_to_string(dir.join("operstate"))
                .is_ok_and(|t| matches!(t.trim(), "up" | "unknown"));
            let previous = state.replace((ifindex, up));
            if previous.map(|(i, _)| i) != Some(ifindex) {
                changes.push(InterfaceChange::Appeared {
                    name: name.clone(),
                    ifindex,
                });
            }
            if previous.map(|(_, u)| u) != Some(up) {
                changes.push(InterfaceChange::Carrier {
                    name: name.clone(),
                    up,
                });
            }
        }
        changes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_local_is_fe80_slash_10() {
        assert!(is_link_local(&"fe80::1".parse().expect("ip")));
        assert!(is_link_local(&"febf::1".parse().expect("ip")));
        assert!(!is_link_local(&"fec0::1".parse().expect("ip")));
        assert!(!is_link_local(&"fd00::1".parse().expect("ip")));
        assert!(!is_link_local(&"ff02::1".parse().expect("ip")));
    }

    #[test]
    fn interfaces_that_appear_late_or_come_back_are_reported() {
        let dir = tempfile::tempdir().expect("tempdir");
        let write = |name: &str, index: &str, state: &str| {
            let d = dir.path().join(name);
            std::fs::create_dir_all(&d).expect("dir");
            std::fs::write(d.join("ifindex"), index).expect("ifindex");
            std::fs::write(d.join("operstate"), state).expect("operstate");
        };
        let mut interfaces = MeshInterfaces::with_sysfs(&["mesh0".to_owned()], dir.path());
        assert!(interfaces.refresh().is_empty(), "not there yet");
        write("mesh0", "7\n", "down\n");
        assert_eq!(
            interfaces.refresh(),
            [
                InterfaceChange::Appeared {
                    name: "mesh0".into(),
                    ifindex: 7
                },
                InterfaceChange::Carrier {
                    name: "mesh0".into(),
                    up: false
                }
            ]
        );
        write("mesh0", "7\n", "up\n");
        assert_eq!(
            interfaces.refresh(),
            [InterfaceChange::Carrier {
                name: "mesh0".into(),
                up: true
            }]
        );
        assert_eq!(interfaces.name_of(7), Some("mesh0"));
        // Recreated with a new index.
        write("mesh0", "9\n", "up\n");
        assert_eq!(
            interfaces.refresh(),
            [InterfaceChange::Appeared {
                name: "mesh0".into(),
                ifindex: 9
            }]
        );
        std::fs::remove_dir_all(dir.path().join("mesh0")).expect("rm");
        assert_eq!(
            interfaces.refresh(),
            [InterfaceChange::Carrier {
                name: "mesh0".into(),
                up: false
            }]
        );
        assert_eq!(interfaces.index_of("mesh0"), None);
    }
}
