//! Who may link with this router: the controller's signing key, this
//! node's own credential and the revocation list, and the offline check of
//! a neighbour's credential that discovery asks before bringing a link up.
//!
//! A sans-IO core: the control path feeds it what the controller sent
//! (`set_signing_key`, `set_own_credential`, `handle_revocation_page`),
//! neighbours feed it revocation pages they pass on, the state file saves
//! and restores it ([`MembershipSnapshot`]), and discovery calls
//! [`Membership::check_neighbour`] with the time in Unix seconds. Nothing
//! here reads a clock or does I/O.
//!
//! Revocation pages of a newer list are applied as they arrive (a key once
//! revoked stays revoked until its credential would have expired), and the
//! list is replaced as a whole once every page of the newer serial is in,
//! so a lost page delays only the pruning of old entries, never a
//! revocation.

use std::collections::BTreeMap;

use freimesh_proto::PublicKeyBytes;
use freimesh_proto::credential::{
    Credential, CredentialError, MAX_PAGE_BYTES, MAX_PAGES, RevocationPage, SignedCredential,
    SignedRevocationPage, SigningKeyBytes,
};
use serde::{Deserialize, Serialize};

/// Why a neighbour, credential or page was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MembershipError {
    #[error("no controller signing key known yet (never enrolled)")]
    NoSigningKey,
    #[error("credential refused: {0}")]
    Credential(#[from] CredentialError),
    #[error("credential is for {credential_key}, the neighbour's key is {neighbour_key}")]
    KeyMismatch {
        credential_key: PublicKeyBytes,
        neighbour_key: PublicKeyBytes,
    },
    #[error("{0} is revoked")]
    Revoked(PublicKeyBytes),
    #[error("credential is for {0}, not for this node")]
    NotOurs(PublicKeyBytes),
}

/// What a revocation page did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PageOutcome {
    /// The page belongs to a list we already have (or an older one).
    Known,
    /// A page of a newer list; its entries apply now, more pages wanted.
    Partial { newly_revoked: Vec<PublicKeyBytes> },
    /// The last missing page of a newer list: the list is replaced.
    Complete { newly_revoked: Vec<PublicKeyBytes> },
}

/// The persisted form (the state file keeps it).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MembershipSnapshot {
    pub signing_key: Option<SigningKeyBytes>,
    pub own_credential: Option<SignedCredential>,
    /// Every page of the newest complete revocation list, then the pages
    /// of a newer one collected so far.
    pub revocation_pages: Vec<SignedRevocationPage>,
}

/// This node's membership state.
#[derive(Debug, Default)]
pub struct Membership {
    signing_key: Option<SigningKeyBytes>,
    own: Option<(SignedCredential, Credential)>,
    /// The newest complete list: its serial and pages.
    serial: u64,
    pages: Vec<SignedRevocationPage>,
    /// A newer list being collected: serial and the pages in so far.
    collecting: Option<(u64, u16, BTreeMap<u16, SignedRevocationPage>)>,
    /// Revoked keys with the time their entry may go.
    revoked: BTreeMap<PublicKeyBytes, u64>,
}

impl Membership {
    pub fn new() -> Self {
        Self::default()
    }

    /// The controller's signing key, once known.
    pub fn signing_key(&self) -> Option<SigningKeyBytes> {
        self.signing_key
    }

    /// Sets the signing key the controller announced over the
    /// authenticated control channel. A different key than before (the
    /// operator replaced the controller's key) drops the own credential and
    /// the revocation list: both were signed with the old key.
    pub fn set_signing_key(&mut self, key: SigningKeyBytes) {
        if self.signing_key != Some(key) {
            *self = Self {
                signing_key: Some(key),
                ..Self::default()
            };
        }
    }

    /// Takes this node's (new or renewed) credential, after checking that
    /// the controller signed it and that it names `own_key`.
    pub fn set_own_credential(
        &mut self,
        own_key: &PublicKeyBytes,
        signed: SignedCredential,
    ) -> Result<&Credential, MembershipError> {
        let signer = self.signing_key.ok_or(MembershipError::NoSigningKey)?;
        let credential = signed.verify_ignoring_expiry(&signer)?;
        if credential.node_key != *own_key {
            return Err(MembershipError::NotOurs(credential.node_key));
        }
        let (_, credential) = self.own.insert((signed, credential));
        Ok(credential)
    }

    /// This node's credential, signed, as beacons carry it.
    pub fn own_credential(&self) -> Option<&SignedCredential> {
        self.own.as_ref().map(|(signed, _)| signed)
    }

    /// This node's credential, decoded.
    pub fn own_credential_decoded(&self) -> Option<&Credential> {
        self.own.as_ref().map(|(_, credential)| credential)
    }

    /// Checks a neighbour offline: the credential is signed by the
    /// controller, unexpired at `now_unix_s`, for `neighbour_key`, and the
    /// key is not revoked.
    pub fn check_neighbour(
        &self,
        neighbour_key: &PublicKeyBytes,
        signed: &SignedCredential,
        now_unix_s: u64,
    ) -> Result<Credential, MembershipError> {
        let signer = self.signing_key.ok_or(MembershipError::NoSigningKey)?;
        if self.is_revoked(neighbour_key) {
            return Err(MembershipError::Revoked(*neighbour_key));
        }
        let credential = signed.verify(&signer, now_unix_s)?;
        if credential.node_key != *neighbour_key {
            return Err(MembershipError::KeyMismatch {
                credential_key: credential.node_key,
                neighbour_key: *neighbour_key,
            });
        }
        Ok(credential)
    }

    pub fn is_revoked(&self, key: &PublicKeyBytes) -> bool {
        self.revoked.contains_key(key)
    }

    /// The serial of the newest complete revocation list (0: none).
    pub fn revocation_serial(&self) -> u64 {
        self.serial
    }

    /// The pages of the newest complete list, to pass on to a neighbour
    /// whose serial is lower.
    pub fn revocation_pages(&self) -> &[SignedRevocationPage] {
        &self.pages
    }

    /// Revoked keys, in key order.
    pub fn revoked_keys(&self) -> impl Iterator<Item = &PublicKeyBytes> {
        self.revoked.keys()
    }

    /// Takes one revocation page, from the controller or a neighbour.
    pub fn handle_revocation_page(
        &mut self,
        signed: &SignedRevocationPage,
    ) -> Result<PageOutcome, MembershipError> {
        let signer = self.signing_key.ok_or(MembershipError::NoSigningKey)?;
        // A page of a list we have costs no signature check: anyone on a
        // mesh interface can send old pages. Decoding the unverified body
        // is bounded, and nothing is applied before the check below.
        if signed.body.len() <= MAX_PAGE_BYTES
            && let Ok(unverified) = postcard::from_bytes::<RevocationPage>(&signed.body)
            && unverified.serial <= self.serial
        {
            return Ok(PageOutcome::Known);
        }
        let page = signed.verify(&signer)?;
        if page.serial <= self.serial {
            return Ok(PageOutcome::Known);
        }
        let newly_revoked = self.revoke(&page);
        let restart = self
            .collecting
            .as_ref()
            .is_none_or(|(serial, pages, _)| *serial < page.serial || *pages != page.pages);
        if self
            .collecting
            .as_ref()
            .is_some_and(|(serial, _, _)| *serial > page.serial)
        {
            // An older list than the one being collected: its entries
            // count, the page does not.
            return Ok(PageOutcome::Partial { newly_revoked });
        }
        if restart {
            self.collecting = Some((page.serial, page.pages, BTreeMap::new()));
        }
        let Some((serial, pages, got)) = self.collecting.as_mut() else {
            return Ok(PageOutcome::Partial { newly_revoked });
        };
        if got.len() < usize::from(MAX_PAGES) {
            got.insert(page.page, signed.clone());
        }
        if got.len() < usize::from(*pages) {
            return Ok(PageOutcome::Partial { newly_revoked });
        }
        let serial = *serial;
        let complete: Vec<SignedRevocationPage> = std::mem::take(got).into_values().collect();
        self.collecting = None;
        self.replace_list(serial, complete, &signer);
        Ok(PageOutcome::Complete { newly_revoked })
    }

    fn revoke(&mut self, page: &RevocationPage) -> Vec<PublicKeyBytes> {
        let mut newly = Vec::new();
        for entry in &page.entries {
            let until = self.revoked.entry(entry.node_key).or_insert_with(|| {
                newly.push(entry.node_key);
                entry.until_unix_s
            });
            *until = (*until).max(entry.until_unix_s);
        }
        newly
    }

    /// Replaces the list by a complete, verified newer one: the revoked set
    /// becomes exactly its entries.
    fn replace_list(
        &mut self,
        serial: u64,
        pages: Vec<SignedRevocationPage>,
        signer: &SigningKeyBytes,
    ) {
        let mut revoked = BTreeMap::new();
        for signed in &pages {
            if let Ok(page) = signed.verify(signer) {
                for entry in page.entries {
                    revoked.insert(entry.node_key, entry.until_unix_s);
                }
            }
        }
        self.serial = serial;
        self.pages = pages;
        self.revoked = revoked;
    }

    /// Forgets revocations whose credentials have expired by now: such a
    /// node cannot present a valid credential any more.
    pub fn prune(&mut self, now_unix_s: u64) {
        self.revoked.retain(|_, until| *until > now_unix_s);
    }

    /// What the state file keeps: the complete list's pages and those of
    /// a newer list collected so far (their revocations already apply, and
    /// must survive a reboot before the last page arrives).
    pub fn snapshot(&self) -> MembershipSnapshot {
        let collecting = self
            .collecting
            .iter()
            .flat_map(|(_, _, pages)| pages.values().cloned());
        MembershipSnapshot {
            signing_key: self.signing_key,
            own_credential: self.own_credential().cloned(),
            revocation_pages: self.pages.iter().cloned().chain(collecting).collect(),
        }
    }

    /// Rebuilds the state from a snapshot, checking every signature again
    /// (a state file is input like any other). Parts that fail are left
    /// out and named in the returned errors.
    pub fn restore(
        own_key: &PublicKeyBytes,
        snapshot: MembershipSnapshot,
    ) -> (Self, Vec<MembershipError>) {
        let mut membership = Self::new();
        let mut errors = Vec::new();
        let Some(key) = snapshot.signing_key else {
            return (membership, errors);
        };
        membership.set_signing_key(key);
        if let Some(own) = snapshot.own_credential
            && let Err(e) = membership.set_own_credential(own_key, own)
        {
            errors.push(e);
        }
        for page in &snapshot.revocation_pages {
            if let Err(e) = membership.handle_revocation_page(page) {
                errors.push(e);
            }
        }
        (membership, errors)
    }
}

#[cfg(test)]
#[path = "membership_tests.rs"]
mod tests;
