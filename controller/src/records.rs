//! The registry's record types: what the store reads and writes and the
//! core mirrors. Plain data without I/O, so the decision core does not
//! depend on SQLite (the store re-exports them).

use std::net::{IpAddr, SocketAddr};

use freimesh_proto::PublicKeyBytes;
use freimesh_proto::control::Roles;
use ipnet::{IpNet, Ipv4Net, Ipv6Net};

/// The mesh-wide settings chosen at `init`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeshSettings {
    pub ula: Ipv6Net,
    pub ipv4: Ipv4Net,
    /// Nodes without a token wait for approval instead of being refused.
    pub approval: bool,
    pub controller_public_key: PublicKeyBytes,
    /// Where public Wi-Fi nodes' IPv4 client subnets come from; `None`
    /// until the operator sets one (`init --clients-ipv4` or `pool
    /// clients`).
    pub clients_ipv4: Option<Ipv4Net>,
    /// The length of each public node's IPv4 client subnet.
    pub client_subnet_len: u8,
}

/// The client subnet length unless `init --client-subnet-len` says
/// otherwise: 253 leases per public node.
pub const DEFAULT_CLIENT_SUBNET_LEN: u8 = 24;

impl MeshSettings {
    /// What every node's kernel sends into the mesh: the ULA (overlay
    /// addresses and client /64s), the IPv4 pool and the IPv4 client pool.
    pub fn mesh_prefixes(&self) -> Vec<IpNet> {
        let mut out = vec![IpNet::V6(self.ula), IpNet::V4(self.ipv4)];
        out.extend(self.clients_ipv4.map(IpNet::V4));
        out
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum NodeState {
    Pending,
    Active,
    Revoked,
}

impl NodeState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Active => "active",
            Self::Revoked => "revoked",
        }
    }
}

/// One node as the registry knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeRecord {
    pub id: u32,
    pub public_key: PublicKeyBytes,
    pub hostname: String,
    /// Overlay host prefixes: the /128 then the /32; empty while pending.
    pub addresses: Vec<IpNet>,
    pub state: NodeState,
    pub drained: bool,
    pub endpoints: Vec<SocketAddr>,
    /// A gateway now: the node requests the role in its Hello and an
    /// operator approved it.
    pub gateway: bool,
    /// Serves public Wi-Fi now (requested and approved).
    pub public_wifi: bool,
    /// Its client /64 and IPv4 subnet once allocated (they stay its own
    /// even if it stops serving public Wi-Fi, so they are never reused).
    pub client_prefixes: Vec<IpNet>,
    /// What its last Hello asked for (a request, not a fact).
    pub requested_roles: Roles,
    /// What an operator approved for it (`role approve`, its join token).
    pub approved_roles: Roles,
}

impl NodeRecord {
    /// The roles in effect: requested and approved.
    pub fn roles(&self) -> Roles {
        Roles {
            gateway: self.gateway,
            public_wifi: self.public_wifi,
        }
    }

    /// Roles requested but not approved.
    pub fn roles_awaiting(&self) -> Roles {
        Roles {
            gateway: self.requested_roles.gateway && !self.approved_roles.gateway,
            public_wifi: self.requested_roles.public_wifi && !self.approved_roles.public_wifi,
        }
    }
}

/// A standard WireGuard site joined through a node (`site add`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SiteRecord {
    pub name: String,
    /// The node its tunnel ends on.
    pub via: u32,
    pub public_key: PublicKeyBytes,
    /// Kept only when the controller generated the key, so `site export`
    /// can print it.
    pub private_key: Option<String>,
    /// Its overlay /32 from the IPv4 pool.
    pub address: IpNet,
    pub prefixes: Vec<IpNet>,
}

/// A link between two nodes (`a < b`) with its last measurement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkRecord {
    pub a: u32,
    pub b: u32,
    pub rtt_us: Option<u32>,
    pub loss_ppm: Option<u32>,
    pub up: bool,
    pub override_cost: Option<u32>,
}

/// What a node presents to enrol with a token.
#[derive(Debug, Clone)]
pub struct Enrollment<'a> {
    pub key: PublicKeyBytes,
    pub hostname: &'a str,
    pub endpoints: &'a [SocketAddr],
    pub token: &'a str,
    pub want_addresses: &'a [IpAddr],
    pub prefixes: &'a [IpNet],
    pub roles: Roles,
}
