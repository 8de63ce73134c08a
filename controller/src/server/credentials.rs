//! Membership credentials and the revocation list, as the hub hands them
//! out (`docs/security.md`): when a node gets a (new) credential, and when
//! every connected node gets the revocation list again.
//!
//! Decided here, sans-IO, from the call's `now_ms`:
//!
//! * A credential goes to a node after every Welcome (the one it holds
//!   while that needs no renewal, else a new one), and a new one on a tick
//!   or an admin action when what it names (addresses, approved roles,
//!   approved prefixes) changed or at most half its lifetime is left
//!   ([`needs_renewal`]). Its expiry is recorded in the store before it is
//!   sent, so a later revocation lists the node exactly as long as it
//!   could show a valid credential.
//! * The whole revocation list goes after every Welcome and to every
//!   connected node whenever its serial changed (a revocation by the admin
//!   API or the CLI, or entries pruned once their credentials expired).
//!
//! Signing is a pure function of the key and the body, so it runs here.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use ed25519_dalek::SigningKey;
use freimesh_proto::NodeId;
use freimesh_proto::control::ControllerMsg;
use freimesh_proto::credential::{
    Credential, MAX_PAGE_ENTRIES, MAX_PAGES, RevocationPage, Revoked, SignedCredential,
    SignedRevocationPage, SigningKeyBytes,
};

use super::hub::{HubCore, HubOutput};
use crate::clock::MS_PER_S;
use crate::records::NodeState;
use crate::store::RevocationList;

/// How long a credential is valid by default: a week. Long enough that a
/// town whose controller is away over a long weekend (or whose operator
/// is on holiday) keeps linking, short enough that a router revoked while
/// no agent heard of it can link for at most a week. Renewal at half the
/// lifetime leaves 3.5 days to reach a node that is offline.
pub const DEFAULT_CREDENTIAL_LIFETIME: Duration = Duration::from_secs(7 * 24 * 3_600);

/// The shortest lifetime the hub accepts: renewal at half of it must stay
/// far above the registry poll and an agent's reconnect backoff.
pub const MIN_CREDENTIAL_LIFETIME: Duration = Duration::from_secs(600);

/// The hub's `now_ms` as Unix seconds, the unit of credentials (a time
/// before 1970 counts as 0).
pub fn unix_seconds(now_ms: i64) -> u64 {
    u64::try_from(now_ms.div_euclid(MS_PER_S)).unwrap_or(0)
}

/// Whether a node holding `issued` needs a new credential naming `wanted`
/// at `now_unix_s`: it holds none, what it names changed, or no more than
/// half of its lifetime is left.
pub fn needs_renewal(issued: Option<&Credential>, wanted: &Credential, now_unix_s: u64) -> bool {
    let Some(issued) = issued else {
        return true;
    };
    if issued.node_key != wanted.node_key
        || issued.addresses != wanted.addresses
        || issued.roles != wanted.roles
        || issued.prefixes != wanted.prefixes
    {
        return true;
    }
    let lifetime = issued.expires_unix_s.saturating_sub(issued.issued_unix_s);
    let left = issued.expires_unix_s.saturating_sub(now_unix_s);
    left <= lifetime / 2
}

/// The most entries a revocation list can carry ([`MAX_PAGES`] pages).
const MAX_LISTED: usize = MAX_PAGE_ENTRIES * MAX_PAGES as usize;

/// Signs `list` into pages issued at `now_unix_s`. A list longer than the
/// pages can carry keeps the entries that stay longest (a shorter-lived
/// one is the first to be pruned anyway) and says so.
pub fn sign_revocations(
    list: &RevocationList,
    key: &SigningKey,
    now_unix_s: u64,
) -> Vec<SignedRevocationPage> {
    let mut entries: Vec<Revoked> = list.entries.clone();
    if entries.len() > MAX_LISTED {
        tracing::error!(
            revoked = entries.len(),
            listed = MAX_LISTED,
            "more revoked nodes than a revocation list carries; the ones whose credentials expire first are left out"
        );
        entries.sort_by_key(|e| std::cmp::Reverse(e.until_unix_s));
        entries.truncate(MAX_LISTED);
        entries.sort();
    }
    let pages = match RevocationPage::paginate(list.serial, now_unix_s, &entries) {
        Ok(pages) => pages,
        Err(e) => {
            tracing::error!(error = %e, "paginating the revocation list failed");
            return Vec::new();
        }
    };
    pages
        .iter()
        .filter_map(|page| match page.sign(key) {
            Ok(signed) => Some(signed),
            Err(e) => {
                tracing::error!(error = %e, page = page.page, "signing a revocation page failed");
                None
            }
        })
        .collect()
}

/// What the hub keeps for credentials and revocations.
#[derive(Debug)]
pub(super) struct Credentials {
    key: SigningKey,
    lifetime_s: u64,
    /// The last credential of each active node (loaded from the store at
    /// start): sent again after a Welcome while it needs no renewal, so a
    /// reconnect costs no signature and no store write.
    issued: BTreeMap<u32, (Credential, SignedCredential)>,
    /// Nodes welcomed in this step: they get a credential and the list.
    welcomed: BTreeSet<u32>,
    /// Something that may change what credentials name happened
    /// (registry poll, admin action): check every connected node.
    check_all: bool,
    /// The revocation list may have changed: reread it from the store.
    reread_list: bool,
    list: RevocationList,
    pages: Vec<SignedRevocationPage>,
}

impl Credentials {
    pub(super) fn new(
        key: SigningKey,
        lifetime: Duration,
        issued: Vec<(u32, SignedCredential, Credential)>,
        list: RevocationList,
        now_unix_s: u64,
    ) -> Self {
        let pages = sign_revocations(&list, &key, now_unix_s);
        Self {
            key,
            lifetime_s: lifetime.max(MIN_CREDENTIAL_LIFETIME).as_secs(),
            issued: issued
                .into_iter()
                .map(|(id, signed, credential)| (id, (credential, signed)))
                .collect(),
            welcomed: BTreeSet::new(),
            check_all: false,
            reread_list: false,
            list,
            pages,
        }
    }
}

impl HubCore {
    /// The public half of the signing key credentials are signed with
    /// (what agents learn in the Welcome; operators may pin it).
    pub fn signing_key(&self) -> SigningKeyBytes {
        SigningKeyBytes::of(&self.credentials.key)
    }

    /// The revocation list the hub hands out.
    pub fn revocation_list(&self) -> &RevocationList {
        &self.credentials.list
    }

    /// Node `id` was welcomed in this step.
    pub(super) fn credential_welcomed(&mut self, id: u32) {
        self.credentials.welcomed.insert(id);
    }

    /// Node `id`'s session ended (its last credential stays known).
    pub(super) fn credential_gone(&mut self, id: u32) {
        self.credentials.welcomed.remove(&id);
    }

    /// On every tick: renewals come due with time alone.
    pub(super) fn credentials_due_check(&mut self) {
        self.credentials.check_all = true;
    }

    /// After a registry poll or an admin action: credentials may name
    /// something else now, and the list may have changed.
    pub(super) fn credentials_may_have_changed(&mut self) {
        self.credentials.check_all = true;
        self.credentials.reread_list = true;
    }

    /// The credential node `id` should hold at `now_unix_s`, if it is an
    /// active node.
    fn wanted_credential(&self, id: u32, now_unix_s: u64) -> Option<Credential> {
        let node = self.core.nodes().get(&id)?;
        if node.state != NodeState::Active {
            return None;
        }
        let mut prefixes = self.core.prefixes_of(id).to_vec();
        if node.public_wifi {
            prefixes.extend(node.client_prefixes.iter().copied());
        }
        Some(Credential {
            node_key: node.public_key,
            node_id: NodeId::of(&node.public_key),
            addresses: node.addresses.clone(),
            roles: node.roles(),
            prefixes,
            issued_unix_s: now_unix_s,
            expires_unix_s: now_unix_s.saturating_add(self.credentials.lifetime_s),
        })
    }

    /// The credential and revocation part of a step (see the module
    /// docs); runs after the core's frames are queued, so a Welcome goes
    /// out before the credential that follows it.
    pub(super) fn credentials_step(&mut self) {
        let now_s = unix_seconds(self.now_ms);
        if self.credentials.reread_list
            || self
                .credentials
                .list
                .entries
                .iter()
                .any(|e| e.until_unix_s <= now_s)
        {
            self.reread_revocations(now_s);
        }
        let candidates: Vec<u32> = if std::mem::take(&mut self.credentials.check_all) {
            self.conns.keys().copied().collect()
        } else {
            self.credentials.welcomed.iter().copied().collect()
        };
        let mut due = Vec::new();
        let mut resend = Vec::new();
        for id in candidates {
            let Some(wanted) = self.wanted_credential(id, now_s) else {
                self.credentials.issued.remove(&id);
                continue;
            };
            let held = self.credentials.issued.get(&id);
            if needs_renewal(held.map(|(c, _)| c), &wanted, now_s) {
                due.push((id, wanted));
            } else if let Some((_, signed)) = held
                && self.credentials.welcomed.contains(&id)
            {
                resend.push((id, signed.clone()));
            }
        }
        for (id, signed) in resend {
            if let Some(session) = self.conns.get(&id).copied() {
                let msg = ControllerMsg::Credential(signed);
                self.push_output(HubOutput::Transmit { session, msg });
            }
        }
        self.issue(due);
        let welcomed = std::mem::take(&mut self.credentials.welcomed);
        if !self.credentials.pages.is_empty() {
            for id in welcomed {
                if let Some(session) = self.conns.get(&id).copied() {
                    let msg = ControllerMsg::Revocations(self.credentials.pages.clone());
                    self.push_output(HubOutput::Transmit { session, msg });
                }
            }
        }
    }

    /// Signs, records and queues the credentials in `due`.
    fn issue(&mut self, due: Vec<(u32, Credential)>) {
        if due.is_empty() {
            return;
        }
        let mut signed = BTreeMap::new();
        for (id, credential) in due {
            match credential.sign(&self.credentials.key) {
                Ok(s) => {
                    signed.insert(id, (credential, s));
                }
                Err(e) => tracing::error!(node = id, error = %e, "signing a credential failed"),
            }
        }
        let records: Vec<(u32, &SignedCredential, u64)> = signed
            .iter()
            .map(|(id, (c, s))| (*id, s, c.expires_unix_s))
            .collect();
        let active = match self.store.record_credentials(&records) {
            Ok(active) => active,
            Err(e) => {
                // Unrecorded, a later revocation could not list the node
                // long enough: send nothing, try again at the next check.
                tracing::error!(error = %e, "recording credentials failed; none sent");
                self.credentials.check_all = true;
                return;
            }
        };
        for id in active {
            let Some((credential, signed)) = signed.remove(&id) else {
                continue;
            };
            self.credentials
                .issued
                .insert(id, (credential.clone(), signed.clone()));
            let Some(session) = self.conns.get(&id).copied() else {
                continue;
            };
            tracing::debug!(
                node = id,
                expires_unix_s = credential.expires_unix_s,
                "credential issued"
            );
            self.push_output(HubOutput::Transmit {
                session,
                msg: ControllerMsg::Credential(signed),
            });
        }
    }

    /// Prunes expired entries, rereads the list and, if its serial moved,
    /// signs it and queues it for every connected node.
    fn reread_revocations(&mut self, now_s: u64) {
        self.credentials.reread_list = false;
        if let Err(e) = self.store.prune_revocations(now_s) {
            tracing::error!(error = %e, "pruning the revocation list failed");
        }
        let list = match self.store.revocations() {
            Ok(list) => list,
            Err(e) => return tracing::error!(error = %e, "reading the revocation list failed"),
        };
        if list.serial == self.credentials.list.serial && !self.credentials.pages.is_empty() {
            self.credentials.list = list;
            return;
        }
        tracing::info!(
            serial = list.serial,
            revoked = list.entries.len(),
            "revocation list changed; sending it to every connected node"
        );
        self.credentials.pages = sign_revocations(&list, &self.credentials.key, now_s);
        self.credentials.list = list;
        // Nodes welcomed in this step get it after their credential.
        let sessions: Vec<u64> = self
            .conns
            .iter()
            .filter(|(id, _)| !self.credentials.welcomed.contains(id))
            .map(|(_, session)| *session)
            .collect();
        for session in sessions {
            let msg = ControllerMsg::Revocations(self.credentials.pages.clone());
            self.push_output(HubOutput::Transmit { session, msg });
        }
    }
}
