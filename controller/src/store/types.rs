//! The store's side of the record types (`crate::records`): address
//! pools and the checks and parsing that need [`StoreError`].

use ipnet::Ipv4Net;

use super::{Pool, Result, StoreError};
use crate::records::{MeshSettings, NodeState};

impl MeshSettings {
    pub fn pools(&self) -> (Pool, Pool) {
        (Pool::V6(self.ula), Pool::V4(self.ipv4))
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
        if let Some(clients) = self.clients_ipv4 {
            check_client_pool(self, clients)?;
        }
        Ok(())
    }
}

/// A client pool must leave room for subnets, stay clear of the overlay
/// pool, and the ULA must have /64s to spare beside the overlay addresses.
pub(super) fn check_client_pool(settings: &MeshSettings, clients: Ipv4Net) -> Result<()> {
    let len = settings.client_subnet_len;
    if !(clients.prefix_len()..=30).contains(&len) {
        return Err(StoreError::BadSettings(format!(
            "--client-subnet-len {len}: needs a length between the client pool's /{} and /30",
            clients.prefix_len()
        )));
    }
    if clients.contains(&settings.ipv4) || settings.ipv4.contains(&clients) {
        return Err(StoreError::BadSettings(format!(
            "client pool {clients} overlaps the overlay pool {}",
            settings.ipv4
        )));
    }
    if settings.ula.prefix_len() >= 64 {
        return Err(StoreError::BadSettings(format!(
            "--ula {}: public Wi-Fi needs a ULA shorter than /64 (client /64s come from it)",
            settings.ula
        )));
    }
    Ok(())
}

impl NodeState {
    pub(super) fn parse(text: &str) -> Result<Self> {
        match text {
            "pending" => Ok(Self::Pending),
            "active" => Ok(Self::Active),
            "revoked" => Ok(Self::Revoked),
            other => Err(StoreError::Corrupt(format!("node state {other:?}"))),
        }
    }
}
