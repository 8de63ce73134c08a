//! WireGuard public keys as they travel between components, and the node id
//! derived from them.
//!
//! Keys use WireGuard's own text form (standard base64 of the 32 raw bytes), so
//! `wg pubkey` and `freimesh-agent pubkey` print the same string for the same
//! private key.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use blake2::{Blake2s256, Digest};
use serde::{Deserialize, Serialize};

/// Length in bytes of an X25519 key.
pub const KEY_LEN: usize = 32;

/// Why a key string was rejected.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    #[error("key is not valid base64: {0}")]
    Base64(String),
    #[error("key decodes to {0} bytes, WireGuard keys are 32 bytes")]
    Length(usize),
}

/// A node's WireGuard (X25519) public key.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct PublicKeyBytes(pub [u8; KEY_LEN]);

impl PublicKeyBytes {
    /// Parses WireGuard's base64 text form (surrounding whitespace allowed).
    pub fn from_base64(text: &str) -> Result<Self, KeyError> {
        decode_key(text).map(Self)
    }

    /// WireGuard's base64 text form.
    pub fn to_base64(&self) -> String {
        BASE64.encode(self.0)
    }
}

impl fmt::Display for PublicKeyBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_base64())
    }
}

impl fmt::Debug for PublicKeyBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.to_base64())
    }
}

/// Decodes 32 key bytes from WireGuard's base64 text form. Used for both
/// public and private keys.
pub fn decode_key(text: &str) -> Result<[u8; KEY_LEN], KeyError> {
    let bytes = BASE64
        .decode(text.trim())
        .map_err(|e| KeyError::Base64(e.to_string()))?;
    <[u8; KEY_LEN]>::try_from(bytes.as_slice()).map_err(|_| KeyError::Length(bytes.len()))
}

/// Encodes 32 key bytes in WireGuard's base64 text form.
pub fn encode_key(bytes: &[u8; KEY_LEN]) -> String {
    BASE64.encode(bytes)
}

/// A short, stable name for a node: the first 8 bytes of BLAKE2s over its
/// public key, printed as 16 hex digits. Short enough for logs and screens,
/// long enough that a city mesh never sees a collision by chance.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct NodeId(pub [u8; 8]);

impl NodeId {
    /// The node id of the node holding `key`.
    pub fn of(key: &PublicKeyBytes) -> Self {
        let digest = Blake2s256::new_with_prefix(b"freimesh node id v1")
            .chain_update(key.0)
            .finalize();
        let mut id = [0u8; 8];
        id.copy_from_slice(&digest[..8]);
        Self(id)
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for byte in self.0 {
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeId({self})")
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn rejects_wrong_lengths_and_garbage() {
        assert_eq!(
            PublicKeyBytes::from_base64("AAAA"),
            Err(KeyError::Length(3))
        );
        assert!(matches!(
            PublicKeyBytes::from_base64("not base64!"),
            Err(KeyError::Base64(_))
        ));
    }

    #[test]
    fn node_id_is_stable() {
        let key = PublicKeyBytes([7; 32]);
        assert_eq!(NodeId::of(&key), NodeId::of(&key));
        assert_ne!(NodeId::of(&key), NodeId::of(&PublicKeyBytes([8; 32])));
    }

    proptest! {
        #[test]
        fn base64_round_trips(bytes in any::<[u8; 32]>()) {
            let key = PublicKeyBytes(bytes);
            prop_assert_eq!(PublicKeyBytes::from_base64(&key.to_base64()), Ok(key));
        }

        #[test]
        fn garbage_never_panics(text in ".*") {
            let _ = PublicKeyBytes::from_base64(&text);
        }
    }
}
