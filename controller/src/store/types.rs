//! The registry's record types.

use std::net::{IpAddr, SocketAddr};

use freimesh_proto::PublicKeyBytes;
use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use super::{Pool, Result, StoreError};

/// The mesh-wide settings chosen at `init`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeshSettings {
    pub ula: Ipv6Net,
    pub ipv4: Ipv4Net,
    /// Nodes without a token wait for approval instead of being refused.
    pub approval: bool,
    pub controller_public_key: PublicKeyBytes,
}

impl MeshSettings {
    pub fn pools(&self) -> (Pool, Pool) {
        (Pool::V6(self.ula), Pool::V4(self.ipv4))
    }

    pub fn mesh_prefixes(&self) -> Vec<IpNet> {
        vec![IpNet::V6(self.ula), IpNet::V4(self.ipv4)]
    }

    pub(super) fn check(&self) -> Result<()> {
        let ula_ok = self.ula.network().segments()[0] & 0xff00 == 0xfd00;
        if !ula_ok || self.ula.prefix_len() > 64 {
            return Err(StoreError::BadSettings(format!(
                "--ula {}: needs a ULA prefix in fd00::/8 of length /64 or shorter (e.g. fd12:3456:789a::/48)",
                self.ula
            )));
        }
        if self.ipv4.prefix_len() > 30 {
            return Err(StoreError::BadSettings(format!(
                "--ipv4 {}: needs a pool of length /30 or shorter (e.g. 10.99.0.0/16)",
                self.ipv4
            )));
        }
        Ok(())
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

    pub(super) fn parse(text: &str) -> Result<Self> {
        match text {
            "pending" => Ok(Self::Pending),
            "active" => Ok(Self::Active),
            "revoked" => Ok(Self::Revoked),
            other => Err(StoreError::Corrupt(format!("node state {other:?}"))),
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
}
