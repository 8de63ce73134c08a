//! Membership credentials and revocation lists: what lets two enrolled
//! routers link with each other while the controller is away.
//!
//! The controller signs, for every enrolled node, a [`Credential`] binding
//! the node's WireGuard key to its node id, overlay addresses, approved
//! roles and prefixes, with an expiry. Agents check a neighbour's
//! credential offline against the controller's signing key (Ed25519,
//! RFC 8032, `ed25519-dalek`), which they learned over the Noise-IK control
//! channel authenticated by the pinned controller key. Revoked nodes are
//! listed in signed [`RevocationPage`]s: small enough (≤
//! [`MAX_PAGE_ENTRIES`] entries) to travel inside one in-tunnel mesh
//! message, so neighbours can pass them on without the controller.
//!
//! What is signed is the postcard encoding of the body with a domain
//! prefix ([`CREDENTIAL_DOMAIN`], [`REVOCATION_DOMAIN`]), so a signature
//! over one kind of object is never valid for the other. The signed forms
//! keep the body's bytes as they were signed: a verifier never re-encodes.
//!
//! Time is Unix seconds. Routers often have no real-time clock and come up
//! with a wrong time, so a verifier checks only the expiry, never that the
//! issue time lies in the past (a clock running behind accepts credentials
//! a little longer; a clock running ahead would otherwise cut the mesh).

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::roles::Roles;
use crate::{NodeId, PublicKeyBytes};

/// Signed ahead of every credential body.
pub const CREDENTIAL_DOMAIN: &[u8] = b"freimesh credential v1\0";
/// Signed ahead of every revocation page body.
pub const REVOCATION_DOMAIN: &[u8] = b"freimesh revocations v1\0";
/// Length of an Ed25519 signature.
pub const SIGNATURE_LEN: usize = 64;
/// The largest credential body accepted: a node with its two addresses
/// and a handful of approved prefixes needs ~200 bytes; this leaves room
/// for a building with many LAN prefixes and still fits a beacon.
pub const MAX_CREDENTIAL_BYTES: usize = 768;
/// The most prefixes (addresses plus approved prefixes) one credential
/// may carry, checked on decode.
pub const MAX_CREDENTIAL_PREFIXES: usize = 32;
/// Entries per revocation page: 20 × ~42 bytes plus the header and the
/// signature stay under the 1,200-byte in-tunnel message limit.
pub const MAX_PAGE_ENTRIES: usize = 20;
/// Pages per revocation list: at most 1,280 nodes revoked within one
/// credential lifetime (entries leave the list when the revoked node's
/// last credential would have expired anyway).
pub const MAX_PAGES: u16 = 64;
/// The largest encoded revocation page body.
pub const MAX_PAGE_BYTES: usize = 1_000;

/// An Ed25519 public key of the controller, used to check credentials and
/// revocation pages. Printed as base64, like WireGuard keys.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct SigningKeyBytes(pub [u8; 32]);

impl std::fmt::Debug for SigningKeyBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SigningKey({})", crate::encode_key(&self.0))
    }
}

/// What the controller vouches for about one enrolled node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credential {
    /// The node's WireGuard public key: the WireGuard handshake proves that
    /// the holder of a credential is this node.
    pub node_key: PublicKeyBytes,
    pub node_id: NodeId,
    /// Overlay addresses (/128 and /32).
    pub addresses: Vec<IpNet>,
    /// Roles an operator approved.
    pub roles: Roles,
    /// Prefixes an operator approved (a building's LAN, a public Wi-Fi
    /// node's client prefixes).
    pub prefixes: Vec<IpNet>,
    pub issued_unix_s: u64,
    pub expires_unix_s: u64,
}

/// A credential as it travels: the signed bytes and the signature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedCredential {
    pub body: Vec<u8>,
    pub signature: Vec<u8>,
}

/// One revoked node: its key, and when its last credential expires (after
/// that the entry may leave the list).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Revoked {
    pub node_key: PublicKeyBytes,
    pub until_unix_s: u64,
}

/// One page of the revocation list. Every page of one list carries the
/// same `serial`; a higher serial replaces the whole list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevocationPage {
    /// Grows with every change of the list.
    pub serial: u64,
    /// This page's number, from 0.
    pub page: u16,
    /// How many pages the list with this serial has (≥ 1; an empty list is
    /// one empty page).
    pub pages: u16,
    pub issued_unix_s: u64,
    pub entries: Vec<Revoked>,
}

/// A revocation page as it travels.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedRevocationPage {
    pub body: Vec<u8>,
    pub signature: Vec<u8>,
}

/// Why a credential or revocation page was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CredentialError {
    #[error("signed body of {0} bytes is larger than the {1}-byte limit")]
    TooLarge(usize, usize),
    #[error("signature is {0} bytes, Ed25519 signatures are {SIGNATURE_LEN}")]
    SignatureLength(usize),
    #[error("the controller's signing key is not a valid Ed25519 key")]
    BadSigningKey,
    #[error("signature does not verify against the controller's signing key")]
    BadSignature,
    #[error("body does not decode: {0}")]
    Malformed(String),
    #[error("{0} prefixes; at most {MAX_CREDENTIAL_PREFIXES} are allowed")]
    TooManyPrefixes(usize),
    #[error("node id does not belong to the node key")]
    NodeIdMismatch,
    #[error("expired at {expired_unix_s}, now is {now_unix_s}")]
    Expired {
        expired_unix_s: u64,
        now_unix_s: u64,
    },
    #[error("page {page} of {pages}: out of range (at most {MAX_PAGES} pages)")]
    BadPage { page: u16, pages: u16 },
    #[error("{0} entries on one page; at most {MAX_PAGE_ENTRIES} are allowed")]
    TooManyEntries(usize),
}

impl SigningKeyBytes {
    /// The public half of a controller's signing key.
    pub fn of(signing_key: &SigningKey) -> Self {
        Self(signing_key.verifying_key().to_bytes())
    }

    fn verifying_key(&self) -> Result<VerifyingKey, CredentialError> {
        VerifyingKey::from_bytes(&self.0).map_err(|_| CredentialError::BadSigningKey)
    }

    /// The base64 text form.
    pub fn to_base64(&self) -> String {
        crate::encode_key(&self.0)
    }
}

fn sign(domain: &[u8], body: &[u8], signing_key: &SigningKey) -> Vec<u8> {
    let mut message = Vec::with_capacity(domain.len() + body.len());
    message.extend_from_slice(domain);
    message.extend_from_slice(body);
    signing_key.sign(&message).to_bytes().to_vec()
}

fn verify(
    domain: &[u8],
    body: &[u8],
    signature: &[u8],
    max: usize,
    signer: &SigningKeyBytes,
) -> Result<(), CredentialError> {
    if body.len() > max {
        return Err(CredentialError::TooLarge(body.len(), max));
    }
    let signature: [u8; SIGNATURE_LEN] = signature
        .try_into()
        .map_err(|_| CredentialError::SignatureLength(signature.len()))?;
    let mut message = Vec::with_capacity(domain.len() + body.len());
    message.extend_from_slice(domain);
    message.extend_from_slice(body);
    signer
        .verifying_key()?
        .verify_strict(&message, &Signature::from_bytes(&signature))
        .map_err(|_| CredentialError::BadSignature)
}

impl Credential {
    /// Signs this credential with the controller's signing key.
    pub fn sign(&self, signing_key: &SigningKey) -> Result<SignedCredential, CredentialError> {
        let body =
            postcard::to_allocvec(self).map_err(|e| CredentialError::Malformed(e.to_string()))?;
        if body.len() > MAX_CREDENTIAL_BYTES {
            return Err(CredentialError::TooLarge(body.len(), MAX_CREDENTIAL_BYTES));
        }
        let signature = sign(CREDENTIAL_DOMAIN, &body, signing_key);
        Ok(SignedCredential { body, signature })
    }
}

impl SignedCredential {
    /// Checks the signature against `signer`, decodes the body and checks
    /// its bounds, that the node id belongs to the key, and that it has not
    /// expired at `now_unix_s`.
    pub fn verify(
        &self,
        signer: &SigningKeyBytes,
        now_unix_s: u64,
    ) -> Result<Credential, CredentialError> {
        let credential = self.verify_ignoring_expiry(signer)?;
        if credential.expires_unix_s <= now_unix_s {
            return Err(CredentialError::Expired {
                expired_unix_s: credential.expires_unix_s,
                now_unix_s,
            });
        }
        Ok(credential)
    }

    /// Like [`Self::verify`] without the expiry check: for an agent's own
    /// credential, kept in its state file and renewed by the controller.
    pub fn verify_ignoring_expiry(
        &self,
        signer: &SigningKeyBytes,
    ) -> Result<Credential, CredentialError> {
        verify(
            CREDENTIAL_DOMAIN,
            &self.body,
            &self.signature,
            MAX_CREDENTIAL_BYTES,
            signer,
        )?;
        let credential: Credential = postcard::from_bytes(&self.body)
            .map_err(|e| CredentialError::Malformed(e.to_string()))?;
        let prefixes = credential.addresses.len() + credential.prefixes.len();
        if prefixes > MAX_CREDENTIAL_PREFIXES {
            return Err(CredentialError::TooManyPrefixes(prefixes));
        }
        if NodeId::of(&credential.node_key) != credential.node_id {
            return Err(CredentialError::NodeIdMismatch);
        }
        Ok(credential)
    }
}

impl RevocationPage {
    /// Signs this page with the controller's signing key.
    pub fn sign(&self, signing_key: &SigningKey) -> Result<SignedRevocationPage, CredentialError> {
        self.check()?;
        let body =
            postcard::to_allocvec(self).map_err(|e| CredentialError::Malformed(e.to_string()))?;
        if body.len() > MAX_PAGE_BYTES {
            return Err(CredentialError::TooLarge(body.len(), MAX_PAGE_BYTES));
        }
        let signature = sign(REVOCATION_DOMAIN, &body, signing_key);
        Ok(SignedRevocationPage { body, signature })
    }

    fn check(&self) -> Result<(), CredentialError> {
        if self.pages == 0 || self.pages > MAX_PAGES || self.page >= self.pages {
            return Err(CredentialError::BadPage {
                page: self.page,
                pages: self.pages,
            });
        }
        if self.entries.len() > MAX_PAGE_ENTRIES {
            return Err(CredentialError::TooManyEntries(self.entries.len()));
        }
        Ok(())
    }

    /// Splits a whole revocation list into signed-size pages (one empty
    /// page for an empty list). Fails when the list needs more than
    /// [`MAX_PAGES`] pages.
    pub fn paginate(
        serial: u64,
        issued_unix_s: u64,
        revoked: &[Revoked],
    ) -> Result<Vec<RevocationPage>, CredentialError> {
        let chunks: Vec<&[Revoked]> = if revoked.is_empty() {
            vec![&[]]
        } else {
            revoked.chunks(MAX_PAGE_ENTRIES).collect()
        };
        let pages = u16::try_from(chunks.len())
            .ok()
            .filter(|p| *p <= MAX_PAGES)
            .ok_or(CredentialError::BadPage {
                page: 0,
                pages: u16::MAX,
            })?;
        Ok(chunks
            .into_iter()
            .zip(0u16..)
            .map(|(entries, page)| RevocationPage {
                serial,
                page,
                pages,
                issued_unix_s,
                entries: entries.to_vec(),
            })
            .collect())
    }
}

impl SignedRevocationPage {
    /// Checks the signature against `signer`, decodes the page and checks
    /// its bounds.
    pub fn verify(&self, signer: &SigningKeyBytes) -> Result<RevocationPage, CredentialError> {
        verify(
            REVOCATION_DOMAIN,
            &self.body,
            &self.signature,
            MAX_PAGE_BYTES,
            signer,
        )?;
        let page: RevocationPage = postcard::from_bytes(&self.body)
            .map_err(|e| CredentialError::Malformed(e.to_string()))?;
        page.check()?;
        Ok(page)
    }
}

#[cfg(test)]
#[path = "credential_tests.rs"]
mod tests;
