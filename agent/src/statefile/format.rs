//! The state file's bytes: a fixed header, the postcard-encoded
//! [`NodeState`] and a BLAKE2s checksum over everything before it.
//!
//! ```text
//!  0        8       10        12        16          16+len      +32
//!  │ magic  │format │protocol │ body len│ body      │ BLAKE2s-256 │
//!  │"FMSTATE\n"│ u16 LE│ u16 LE │ u32 LE  │ postcard  │ of 0..16+len│
//! ```
//!
//! The body holds wire types of `freimesh_proto` (the Welcome, link
//! assignments, routes, signed credentials), so the protocol version is in
//! the header too: a file written by an agent speaking another protocol is
//! refused before its body is decoded, instead of being misread. Pure
//! functions, no I/O.

use std::net::SocketAddr;

use blake2::{Blake2s256, Digest};
use freimesh_proto::control::{LinkAssignment, Route, Welcome};
use freimesh_proto::{PROTOCOL_VERSION, PublicKeyBytes};
use serde::{Deserialize, Serialize};

use crate::membership::MembershipSnapshot;

/// Marks a freimesh state file (and makes `file` say "data", not text).
pub const MAGIC: [u8; 8] = *b"FMSTATE\n";
/// The layout of header and body; bump on any change to [`NodeState`].
pub const FORMAT_VERSION: u16 = 2;
const HEADER_LEN: usize = 16;
const CHECKSUM_LEN: usize = 32;

/// A digest of an encoded state: the saver compares these, not flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StateDigest(pub [u8; 32]);

impl StateDigest {
    /// The digest of encoded bytes (the checksum the file ends with).
    pub fn of(encoded: &[u8]) -> Self {
        Self(Blake2s256::digest(encoded).into())
    }
}

/// What the agent keeps across restarts: enough to come up as after a
/// Welcome and its full sets, without the controller.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeState {
    /// This node's public key: a file of another key is not ours.
    pub node_key: PublicKeyBytes,
    /// The controller key the state came under: a file from another mesh
    /// (the operator changed `[controller] public_key`) is not used.
    pub controller_key: PublicKeyBytes,
    /// Signing key, own credential, revocation list.
    pub membership: MembershipSnapshot,
    /// The last Welcome: node id, addresses, mesh and client prefixes.
    pub welcome: Option<Welcome>,
    /// The links as applied, in key order.
    pub links: Vec<LinkAssignment>,
    /// The controller's routes, in prefix order.
    pub routes: Vec<Route>,
    /// Controller endpoints, configured first, then any learned.
    pub controller_endpoints: Vec<SocketAddr>,
    /// The control exits the controller named last (format 2): how a
    /// router without an underlay route reaches the controller after a
    /// restart.
    pub control_exits: Vec<SocketAddr>,
}

/// Why bytes are not a usable state file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    #[error("not a freimesh state file (no FMSTATE header)")]
    NotAStateFile,
    #[error("truncated: {len} bytes where the header promises {expected}")]
    Truncated { len: usize, expected: usize },
    #[error("checksum mismatch: the file is corrupt")]
    Checksum,
    #[error(
        "written in state format {format} / protocol {protocol}; this agent reads format {FORMAT_VERSION} / protocol {PROTOCOL_VERSION}"
    )]
    Version { format: u16, protocol: u16 },
    #[error("body does not decode: {0}")]
    Body(String),
    #[error("encoding the state: {0}")]
    Encode(String),
}

/// The file's bytes for `state`.
pub fn encode(state: &NodeState) -> Result<Vec<u8>, FormatError> {
    let body = postcard::to_stdvec(state).map_err(|e| FormatError::Encode(e.to_string()))?;
    let body_len = u32::try_from(body.len())
        .map_err(|_| FormatError::Encode(format!("body of {} bytes", body.len())))?;
    let mut out = Vec::with_capacity(HEADER_LEN + body.len() + CHECKSUM_LEN);
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&PROTOCOL_VERSION.to_le_bytes());
    out.extend_from_slice(&body_len.to_le_bytes());
    out.extend_from_slice(&body);
    let checksum = StateDigest::of(&out);
    out.extend_from_slice(&checksum.0);
    Ok(out)
}

/// Reads a state back; checks header, length and checksum before the body.
pub fn decode(bytes: &[u8]) -> Result<NodeState, FormatError> {
    let Some(header) = bytes.get(..HEADER_LEN) else {
        return Err(if bytes.starts_with(&MAGIC) || MAGIC.starts_with(bytes) {
            FormatError::Truncated {
                len: bytes.len(),
                expected: HEADER_LEN + CHECKSUM_LEN,
            }
        } else {
            FormatError::NotAStateFile
        });
    };
    if header[..8] != MAGIC {
        return Err(FormatError::NotAStateFile);
    }
    let u16_at = |i: usize| u16::from_le_bytes([header[i], header[i + 1]]);
    let (format, protocol) = (u16_at(8), u16_at(10));
    let body_len = u32::from_le_bytes([header[12], header[13], header[14], header[15]]);
    let expected = usize::try_from(body_len)
        .ok()
        .and_then(|len| len.checked_add(HEADER_LEN + CHECKSUM_LEN))
        .unwrap_or(usize::MAX);
    if bytes.len() != expected {
        return Err(FormatError::Truncated {
            len: bytes.len(),
            expected,
        });
    }
    let (signed, checksum) = bytes.split_at(expected - CHECKSUM_LEN);
    if StateDigest::of(signed).0[..] != *checksum {
        return Err(FormatError::Checksum);
    }
    if format != FORMAT_VERSION || protocol != PROTOCOL_VERSION {
        return Err(FormatError::Version { format, protocol });
    }
    let (state, rest) = postcard::take_from_bytes::<NodeState>(&signed[HEADER_LEN..])
        .map_err(|e| FormatError::Body(e.to_string()))?;
    if !rest.is_empty() {
        return Err(FormatError::Body(format!(
            "{} bytes after the state",
            rest.len()
        )));
    }
    Ok(state)
}

#[cfg(test)]
pub(crate) mod tests {
    use freimesh_proto::NodeId;
    use freimesh_proto::segment::Segment;

    use super::*;

    pub(crate) fn sample_state() -> NodeState {
        let node_key = PublicKeyBytes([1; 32]);
        let peer = PublicKeyBytes([2; 32]);
        NodeState {
            node_key,
            controller_key: PublicKeyBytes([9; 32]),
            membership: MembershipSnapshot::default(),
            welcome: Some(Welcome {
                node_id: NodeId::of(&node_key),
                addresses: vec!["fd00::1/128".parse().expect("net")],
                mesh_prefixes: vec!["fd00::/48".parse().expect("net")],
                client_prefixes: Vec::new(),
                signing_key: freimesh_proto::credential::SigningKeyBytes([5; 32]),
            }),
            links: vec![LinkAssignment {
                peer,
                endpoint: Some("192.0.2.2:51820".parse().expect("addr")),
                profile: "default".into(),
                allowed_sources: Vec::new(),
            }],
            routes: vec![Route {
                upstreams: Vec::new(),
                prefix: "fd00::2/128".parse().expect("net"),
                via: vec![peer],
                segment: Segment::Infrastructure,
            }],
            controller_endpoints: vec!["192.0.2.10:7700".parse().expect("addr")],
            control_exits: vec!["[fd00::7]:51819".parse().expect("addr")],
        }
    }

    #[test]
    fn a_state_round_trips() {
        let state = sample_state();
        let bytes = encode(&state).expect("encode");
        assert_eq!(&bytes[..8], &MAGIC);
        assert_eq!(decode(&bytes), Ok(state));
    }

    #[test]
    fn every_truncation_is_detected() {
        let bytes = encode(&sample_state()).expect("encode");
        for len in 0..bytes.len() {
            let err = decode(&bytes[..len]).expect_err("truncated");
            assert!(matches!(err, FormatError::Truncated { .. }), "{len}: {err}");
        }
    }

    #[test]
    fn a_flipped_bit_anywhere_is_detected() {
        let bytes = encode(&sample_state()).expect("encode");
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x10;
            assert!(decode(&bad).is_err(), "flip at {i} went unnoticed");
        }
        let mut bad = bytes;
        let body = HEADER_LEN + 3;
        bad[body] ^= 1;
        assert_eq!(decode(&bad), Err(FormatError::Checksum));
    }

    #[test]
    fn other_files_and_versions_are_named() {
        assert_eq!(
            decode(b"[node]\nname = \"x\"\n"),
            Err(FormatError::NotAStateFile)
        );
        let mut bytes = encode(&sample_state()).expect("encode");
        bytes[8] = 99;
        let len = bytes.len() - CHECKSUM_LEN;
        let checksum = StateDigest::of(&bytes[..len]);
        bytes[len..].copy_from_slice(&checksum.0);
        assert_eq!(
            decode(&bytes),
            Err(FormatError::Version {
                format: 99,
                protocol: PROTOCOL_VERSION
            })
        );
    }
}
