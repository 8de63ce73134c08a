//! The primitives of the control channel's Noise pattern
//! ([`crate::control::NOISE_PATTERN`]: 25519, ChaChaPoly, BLAKE2s) for snow.
//!
//! snow's default resolver supplies the key exchange, the cipher and the
//! randomness. The hash is resolved here, and only BLAKE2s: asking the
//! default resolver for a hash links every hash it knows, and BLAKE2b,
//! which nothing here uses, is ≈ 9 KB of the router binary (16 MB of
//! flash; `docs/agent-dependencies.md`). The BLAKE2s below is the `blake2`
//! crate's, as in snow's own resolver.

use blake2::{Blake2s256, Digest};
use snow::params::{CipherChoice, DHChoice, HashChoice};
use snow::resolvers::{CryptoResolver, DefaultResolver};
use snow::types::{Cipher, Dh, Hash, Random};

/// snow's resolver for the control channel. See the module docs.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct ControlResolver;

impl CryptoResolver for ControlResolver {
    fn resolve_rng(&self) -> Option<Box<dyn Random>> {
        DefaultResolver.resolve_rng()
    }

    fn resolve_dh(&self, choice: &DHChoice) -> Option<Box<dyn Dh>> {
        DefaultResolver.resolve_dh(choice)
    }

    fn resolve_hash(&self, choice: &HashChoice) -> Option<Box<dyn Hash>> {
        match choice {
            HashChoice::Blake2s => Some(Box::<Blake2s>::default()),
            _ => None,
        }
    }

    fn resolve_cipher(&self, choice: &CipherChoice) -> Option<Box<dyn Cipher>> {
        DefaultResolver.resolve_cipher(choice)
    }
}

/// BLAKE2s-256 as snow's `Hash` (64-byte blocks, 32-byte output).
#[derive(Default)]
struct Blake2s(Blake2s256);

impl Hash for Blake2s {
    fn name(&self) -> &'static str {
        "BLAKE2s"
    }

    fn block_len(&self) -> usize {
        64
    }

    fn hash_len(&self) -> usize {
        32
    }

    fn reset(&mut self) {
        self.0 = Blake2s256::default();
    }

    fn input(&mut self, data: &[u8]) {
        self.0.update(data);
    }

    fn result(&mut self, out: &mut [u8]) {
        let digest = self.0.finalize_reset();
        // snow hands a buffer of at least `hash_len` bytes.
        if let Some(out) = out.get_mut(..digest.len()) {
            out.copy_from_slice(&digest);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::NOISE_PATTERN;

    /// A handshake and transport messages between this resolver and
    /// snow's default one, both ways: the wire is unchanged.
    #[test]
    fn the_control_resolver_speaks_with_snows_default_one() {
        let params = || NOISE_PATTERN.parse().expect("pattern");
        let keypair = || {
            snow::Builder::with_resolver(params(), Box::new(ControlResolver))
                .generate_keypair()
                .expect("keypair")
        };
        let (initiator_key, responder_key) = (keypair(), keypair());
        let (i_private, r_private, r_public) = (
            initiator_key.private,
            responder_key.private.clone(),
            responder_key.public,
        );
        for ours_initiates in [true, false] {
            let ours = || snow::Builder::with_resolver(params(), Box::new(ControlResolver));
            let theirs = || snow::Builder::with_resolver(params(), Box::new(DefaultResolver));
            let (initiator, responder) = if ours_initiates {
                (ours(), theirs())
            } else {
                (theirs(), ours())
            };
            let mut initiator = initiator
                .local_private_key(&i_private)
                .and_then(|b| b.remote_public_key(&r_public))
                .and_then(|b| b.build_initiator())
                .expect("initiator");
            let mut responder = responder
                .local_private_key(&r_private)
                .and_then(|b| b.build_responder())
                .expect("responder");
            let (mut a, mut b) = ([0u8; 1024], [0u8; 1024]);
            let n = initiator.write_message(b"hello", &mut a).expect("msg 1");
            let m = responder.read_message(&a[..n], &mut b).expect("read 1");
            assert_eq!(&b[..m], b"hello");
            let n = responder.write_message(b"welcome", &mut a).expect("msg 2");
            let m = initiator.read_message(&a[..n], &mut b).expect("read 2");
            assert_eq!(&b[..m], b"welcome");
            let mut initiator = initiator.into_transport_mode().expect("transport");
            let mut responder = responder.into_transport_mode().expect("transport");
            let n = initiator.write_message(b"routes", &mut a).expect("data");
            let m = responder.read_message(&a[..n], &mut b).expect("read data");
            assert_eq!(&b[..m], b"routes");
            let n = responder.write_message(b"ack", &mut a).expect("data back");
            let m = initiator.read_message(&a[..n], &mut b).expect("read back");
            assert_eq!(&b[..m], b"ack");
        }
    }
}
