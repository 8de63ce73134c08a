//! What can go wrong in the Linux backend, each variant naming the operation
//! and the device, address or prefix it was about.
//!
//! Kernel errors are kept as `io::Error` so that their text is the familiar
//! `File exists (os error 17)` and callers can match on the errno. The cause
//! is part of each message (as in "adding route 10.99.0.0/16 via fm0: File
//! exists (os error 17)") and therefore not repeated as `source()`.

use std::{io, net::IpAddr};

use ipnet::IpNet;

/// An error of the Linux backend.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LinuxError {
    /// The interface name cannot be a Linux interface name.
    #[error("invalid interface name {name:?}: need 1 to 15 bytes without '/', ' ' or NUL")]
    InvalidName { name: String },
    /// IPv6 wanted on a device whose MTU would disable it.
    #[error("MTU {mtu} of {device} is below 1280, which IPv6 needs")]
    MtuTooSmallForIpv6 { device: String, mtu: u16 },
    /// Opening `/dev/net/tun` or attaching to the device failed.
    #[error("creating TUN device {device}: {cause}")]
    CreateTun { device: String, cause: io::Error },
    /// An operation on the open TUN device failed.
    #[error("TUN device {device}: {cause}")]
    Device { device: String, cause: io::Error },
    /// The rtnetlink socket could not be opened.
    #[error("opening rtnetlink socket: {cause}")]
    NetlinkSocket { cause: io::Error },
    /// Setting MTU or up state failed.
    #[error("setting MTU {mtu} and bringing up {device}: {cause}")]
    ConfigureLink {
        device: String,
        mtu: u16,
        cause: io::Error,
    },
    /// Deleting the TUN device failed.
    #[error("deleting device {device}: {cause}")]
    DeleteLink { device: String, cause: io::Error },
    /// Listing the device's addresses failed.
    #[error("listing addresses of {device}: {cause}")]
    DumpAddresses { device: String, cause: io::Error },
    /// Listing the routes failed.
    #[error("listing routes: {cause}")]
    DumpRoutes { cause: io::Error },
    /// Adding an address failed.
    #[error("adding address {address} to {device}: {cause}")]
    AddAddress {
        address: IpNet,
        device: String,
        cause: io::Error,
    },
    /// Removing an address failed.
    #[error("removing address {address} from {device}: {cause}")]
    RemoveAddress {
        address: IpNet,
        device: String,
        cause: io::Error,
    },
    /// Installing a route failed.
    #[error("adding route {prefix} via {device}: {cause}")]
    AddRoute {
        prefix: IpNet,
        device: String,
        cause: io::Error,
    },
    /// Removing a route failed.
    #[error("removing route {prefix} via {device}: {cause}")]
    RemoveRoute {
        prefix: IpNet,
        device: String,
        cause: io::Error,
    },
    /// The kernel has no route to an underlay peer (or the lookup failed).
    #[error("looking up the route to {peer}: {cause}")]
    RouteLookup { peer: IpAddr, cause: io::Error },
    /// Subscribing to or reading link notifications failed.
    #[error("watching link state: {cause}")]
    WatchLinks { cause: io::Error },
    /// Setting up or releasing a public Wi-Fi client interface failed.
    #[error("client interface {interface}: {what}: {cause}")]
    ClientInterface {
        interface: String,
        what: String,
        cause: io::Error,
    },
}

impl LinuxError {
    /// The errno behind the error, if the kernel gave one (e.g.
    /// `libc::EEXIST`).
    pub fn raw_os_error(&self) -> Option<i32> {
        match self {
            Self::InvalidName { .. } | Self::MtuTooSmallForIpv6 { .. } => None,
            Self::CreateTun { cause, .. }
            | Self::Device { cause, .. }
            | Self::NetlinkSocket { cause }
            | Self::ConfigureLink { cause, .. }
            | Self::DeleteLink { cause, .. }
            | Self::DumpAddresses { cause, .. }
            | Self::DumpRoutes { cause }
            | Self::AddAddress { cause, .. }
            | Self::RemoveAddress { cause, .. }
            | Self::AddRoute { cause, .. }
            | Self::RemoveRoute { cause, .. }
            | Self::RouteLookup { cause, .. }
            | Self::WatchLinks { cause }
            | Self::ClientInterface { cause, .. } => cause.raw_os_error(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_names_operation_prefix_device_and_errno() {
        let error = LinuxError::AddRoute {
            prefix: IpNet::V4(ipnet::Ipv4Net::new_assert([10, 99, 0, 0].into(), 16)),
            device: "fm0".into(),
            cause: io::Error::from_raw_os_error(libc::EEXIST),
        };
        assert_eq!(
            error.to_string(),
            "adding route 10.99.0.0/16 via fm0: File exists (os error 17)"
        );
        assert_eq!(error.raw_os_error(), Some(libc::EEXIST));
    }
}
