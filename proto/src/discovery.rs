//! Neighbour discovery on the interfaces a router meshes on: the datagrams
//! agents exchange over link-local IPv6 UDP, outside any tunnel.
//!
//! Every router sends a [`Beacon`] to the link-local multicast group
//! [`DISCOVERY_GROUP`] on [`DISCOVERY_PORT`]: its WireGuard key and port and
//! its membership credential ([`crate::credential`]). A receiver that
//! accepts the credential brings a WireGuard link up to the sender's
//! link-local address; the WireGuard handshake then proves the key, so a
//! beacon needs no signature of its own (replaying someone's beacon gets the
//! replayer a link that never completes a handshake).
//!
//! Revocation lists travel here too: a beacon carries the sender's
//! revocation serial, a neighbour with an older list asks with a
//! [`DiscoveryMessage::RevocationRequest`] and gets the pages back
//! ([`DiscoveryMessage::RevocationPages`]). The pages are signed by the
//! controller, so they need no tunnel.
//!
//! Wire format: [`MAGIC`], one version byte ([`DISCOVERY_VERSION`]), then
//! the postcard encoding of a [`DiscoveryMessage`]. Decoding is strict:
//! wrong magic or version, trailing bytes, more than [`MAX_DATAGRAM`] bytes
//! or more than [`MAX_PAGES_PER_DATAGRAM`] pages are refused.

use std::net::Ipv6Addr;

use serde::{Deserialize, Serialize};

use crate::PublicKeyBytes;
use crate::credential::{SignedCredential, SignedRevocationPage};

/// The UDP port beacons are sent to and from. 6697, the first idea, is
/// IANA-registered (IRC over TLS); 51818 sits next to WireGuard's
/// customary 51820, below Linux's ephemeral range (32768–60999 starts
/// lower, but agents bind it explicitly before any ephemeral use), and is
/// not among the well-known ports of the services database we checked.
pub const DISCOVERY_PORT: u16 = 51818;

/// The TCP port of the control relay (`crate::relay`): on a router's
/// link-local addresses of its mesh interfaces (for neighbours that are
/// not enrolled yet) and on its overlay addresses (for enrolled routers
/// without an underlay route to the controller). Next to
/// [`DISCOVERY_PORT`], and the same reasoning.
pub const CONTROL_RELAY_PORT: u16 = 51819;

/// The link-local multicast group beacons go to: a *transient* group
/// (flags T = 1, `ff12::`), which RFC 4291 lets anyone use without an IANA
/// assignment, with the group id spelling "frmesh" in ASCII. Permanent
/// `ff02::` ids are IANA's to give and we have none.
pub const DISCOVERY_GROUP: Ipv6Addr = Ipv6Addr::new(0xff12, 0, 0, 0, 0, 0x6672, 0x6d65, 0x7368);

/// The first bytes of every discovery datagram.
pub const MAGIC: [u8; 4] = *b"FMDS";
/// The discovery format version; bumped when a message changes shape.
pub const DISCOVERY_VERSION: u8 = 1;
/// The largest discovery datagram (UDP payload): fits the IPv6 minimum MTU
/// of 1,280 with the IPv6 and UDP headers.
pub const MAX_DATAGRAM: usize = 1_200;
/// The most revocation pages one datagram may carry (one signed page is
/// up to ~1,070 bytes, so in practice one).
pub const MAX_PAGES_PER_DATAGRAM: usize = 4;
/// The IPv6 hop limit discovery datagrams are sent with, and the only one
/// accepted: a datagram with 255 cannot have been routed (the GTSM idea,
/// RFC 5082).
pub const DISCOVERY_HOP_LIMIT: u8 = 255;

/// A router announcing itself on one interface.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Beacon {
    /// The sender's WireGuard public key.
    pub node_key: PublicKeyBytes,
    /// The sender's WireGuard UDP port (its address is the datagram's
    /// link-local source).
    pub wg_port: u16,
    /// The sender's membership credential; `None` for a router that is not
    /// enrolled yet.
    pub credential: Option<SignedCredential>,
    /// The serial of the sender's newest complete revocation list (0: none).
    pub revocation_serial: u64,
    /// Set in beacons to the group: "answer me if you do not know me yet".
    /// Unicast replies clear it, so two routers never answer each other in
    /// a loop.
    pub wants_reply: bool,
}

/// One discovery datagram.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum DiscoveryMessage {
    Beacon(Beacon),
    /// "Send me your revocation pages; I have the list with this serial."
    RevocationRequest {
        have_serial: u64,
    },
    /// Pages of the sender's newest complete revocation list.
    RevocationPages(Vec<SignedRevocationPage>),
}

/// Why a datagram was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DiscoveryError {
    #[error("{0} bytes; a discovery datagram is at most {MAX_DATAGRAM}")]
    TooLarge(usize),
    #[error("not a freimesh discovery datagram")]
    BadMagic,
    #[error("discovery version {0}; this build speaks {DISCOVERY_VERSION}")]
    Version(u8),
    #[error("malformed: {0}")]
    Malformed(String),
    #[error("{0} trailing bytes")]
    Trailing(usize),
    #[error("{0} revocation pages; at most {MAX_PAGES_PER_DATAGRAM} per datagram")]
    TooManyPages(usize),
}

impl DiscoveryMessage {
    /// Encodes the message; fails if it would not fit [`MAX_DATAGRAM`] or
    /// carries too many pages.
    pub fn encode(&self) -> Result<Vec<u8>, DiscoveryError> {
        self.check()?;
        let mut out = Vec::with_capacity(MAX_DATAGRAM);
        out.extend_from_slice(&MAGIC);
        out.push(DISCOVERY_VERSION);
        let out =
            postcard::to_extend(self, out).map_err(|e| DiscoveryError::Malformed(e.to_string()))?;
        if out.len() > MAX_DATAGRAM {
            return Err(DiscoveryError::TooLarge(out.len()));
        }
        Ok(out)
    }

    /// Decodes one datagram, strictly.
    pub fn decode(datagram: &[u8]) -> Result<Self, DiscoveryError> {
        if datagram.len() > MAX_DATAGRAM {
            return Err(DiscoveryError::TooLarge(datagram.len()));
        }
        let rest = datagram
            .strip_prefix(&MAGIC)
            .ok_or(DiscoveryError::BadMagic)?;
        let (&version, body) = rest.split_first().ok_or(DiscoveryError::BadMagic)?;
        if version != DISCOVERY_VERSION {
            return Err(DiscoveryError::Version(version));
        }
        let (message, trailing): (Self, &[u8]) = postcard::take_from_bytes(body)
            .map_err(|e| DiscoveryError::Malformed(e.to_string()))?;
        if !trailing.is_empty() {
            return Err(DiscoveryError::Trailing(trailing.len()));
        }
        message.check()?;
        Ok(message)
    }

    fn check(&self) -> Result<(), DiscoveryError> {
        match self {
            Self::RevocationPages(pages) if pages.len() > MAX_PAGES_PER_DATAGRAM => {
                Err(DiscoveryError::TooManyPages(pages.len()))
            }
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
#[path = "discovery_tests.rs"]
mod tests;
