//! What the controller says about membership (the signing key in the
//! Welcome, this node's credential, revocation pages), folded into the
//! agent's [`Membership`]: sans-IO, beside the [`super::ControlCore`],
//! which keeps the links and routes. The shell holds the membership
//! behind its lock and logs the [`MembershipUpdate`]s this returns.
//!
//! Nothing from the controller is taken on trust beyond the signing key
//! (which the Noise channel to the pinned controller key authenticates):
//! a credential must verify against that key and name this node, a page
//! must verify, or it is refused and the previous state stays.

use freimesh_proto::PublicKeyBytes;
use freimesh_proto::credential::SigningKeyBytes;

use super::ControllerEvent;
use crate::membership::{Membership, MembershipError, PageOutcome};

/// What folding one event changed, for the shell's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MembershipUpdate {
    /// The Welcome named a signing key; `replaced` when it differs from
    /// the one held before (the old credential and list are dropped).
    SigningKey {
        key: SigningKeyBytes,
        replaced: bool,
    },
    /// This node's credential was taken.
    Credential { expires_unix_s: u64 },
    /// This node's credential was refused; the previous one stays.
    CredentialRefused(MembershipError),
    /// Revocation pages applied: the list's serial and size now, and the
    /// keys revoked for the first time.
    Revocations {
        serial: u64,
        revoked: usize,
        newly_revoked: Vec<PublicKeyBytes>,
    },
    /// A revocation page was refused.
    PageRefused(MembershipError),
}

/// Folds `event` into `membership` for the node with key `own_key`.
/// Events other than Welcome, Credential and Revocations change nothing.
pub fn apply_to_membership(
    membership: &mut Membership,
    own_key: &PublicKeyBytes,
    event: &ControllerEvent,
) -> Vec<MembershipUpdate> {
    match event {
        ControllerEvent::Welcome(welcome) => {
            let replaced = membership
                .signing_key()
                .is_some_and(|key| key != welcome.signing_key);
            membership.set_signing_key(welcome.signing_key);
            vec![MembershipUpdate::SigningKey {
                key: welcome.signing_key,
                replaced,
            }]
        }
        ControllerEvent::Credential(signed) => {
            match membership.set_own_credential(own_key, signed.clone()) {
                Ok(credential) => vec![MembershipUpdate::Credential {
                    expires_unix_s: credential.expires_unix_s,
                }],
                Err(e) => vec![MembershipUpdate::CredentialRefused(e)],
            }
        }
        ControllerEvent::Revocations(pages) => {
            let mut updates = Vec::new();
            let mut newly_revoked = Vec::new();
            let mut changed = false;
            for page in pages {
                match membership.handle_revocation_page(page) {
                    Ok(PageOutcome::Known) => {}
                    Ok(
                        PageOutcome::Partial { newly_revoked: new }
                        | PageOutcome::Complete { newly_revoked: new },
                    ) => {
                        changed = true;
                        newly_revoked.extend(new);
                    }
                    Err(e) => updates.push(MembershipUpdate::PageRefused(e)),
                }
            }
            if changed {
                updates.push(MembershipUpdate::Revocations {
                    serial: membership.revocation_serial(),
                    revoked: membership.revoked_keys().count(),
                    newly_revoked,
                });
            }
            updates
        }
        _ => Vec::new(),
    }
}

#[cfg(test)]
#[path = "membership_tests.rs"]
mod tests;
