//! The control relay's one word on the wire: the preamble a relay writes
//! to the controller before the bytes it pipes.
//!
//! A router that relays a neighbour's control channel (`docs/protocol.md`,
//! "Control through the mesh") opens a TCP connection to the controller
//! and copies bytes both ways; the Noise IK handshake and everything after
//! it stay end to end, so the relay sees only ciphertext. When the relay
//! connects to a controller endpoint itself (its own session is direct),
//! it first writes a [`RelayPreamble`]: the magic [`PREAMBLE_MAGIC`] and
//! the relay's own WireGuard key. The controller then knows the session
//! is relayed (such a router is no control exit) and, once it has checked
//! that the named relay holds a direct session from the same address,
//! counts the handshake against that relay rather than against the
//! address all of its relayed neighbours share.
//!
//! A relay that forwards to another relay (an exit's overlay address)
//! writes nothing: the exit that reaches the controller writes the one
//! preamble.
//!
//! The preamble cannot be mistaken for a Noise message: those start with
//! their 2-byte big-endian length, and the first handshake message is far
//! shorter than `0x464d` (17,997) bytes.

use crate::PublicKeyBytes;

/// The first bytes a relay writes to the controller.
pub const PREAMBLE_MAGIC: [u8; 4] = *b"FMRL";
/// Magic and a 32-byte key.
pub const PREAMBLE_LEN: usize = PREAMBLE_MAGIC.len() + 32;

/// "The connection that follows is relayed by the router with this key."
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RelayPreamble {
    pub relay_key: PublicKeyBytes,
}

impl RelayPreamble {
    pub fn encode(&self) -> [u8; PREAMBLE_LEN] {
        let mut out = [0u8; PREAMBLE_LEN];
        out[..PREAMBLE_MAGIC.len()].copy_from_slice(&PREAMBLE_MAGIC);
        out[PREAMBLE_MAGIC.len()..].copy_from_slice(&self.relay_key.0);
        out
    }

    /// Whether a connection's first two bytes begin a preamble (a Noise
    /// message's length prefix never equals them).
    pub fn starts(first_two: [u8; 2]) -> bool {
        first_two == [PREAMBLE_MAGIC[0], PREAMBLE_MAGIC[1]]
    }

    /// Decodes a whole preamble; `None` if the magic is wrong.
    pub fn decode(bytes: &[u8; PREAMBLE_LEN]) -> Option<Self> {
        let (magic, key) = bytes.split_at(PREAMBLE_MAGIC.len());
        if magic != PREAMBLE_MAGIC {
            return None;
        }
        let mut relay_key = [0u8; 32];
        relay_key.copy_from_slice(key);
        Some(Self {
            relay_key: PublicKeyBytes(relay_key),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_preamble_round_trips_and_is_told_from_a_noise_message() {
        let preamble = RelayPreamble {
            relay_key: PublicKeyBytes([7; 32]),
        };
        let bytes = preamble.encode();
        assert!(RelayPreamble::starts([bytes[0], bytes[1]]));
        assert_eq!(RelayPreamble::decode(&bytes), Some(preamble));
        // A Noise IK message 1 (96 bytes + payload) has a small length prefix.
        let noise_len = u16::try_from(crate::control::MAX_NOISE_MESSAGE / 4).expect("u16");
        assert!(!RelayPreamble::starts(noise_len.to_be_bytes()));
        assert!(!RelayPreamble::starts(96u16.to_be_bytes()));
        let mut wrong = bytes;
        wrong[3] = b'X';
        assert_eq!(RelayPreamble::decode(&wrong), None);
    }
}
