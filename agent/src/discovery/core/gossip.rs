//! Revocation gossip: an accepted neighbour with a newer revocation list
//! (its beacon's serial) is asked for its pages; our pages go to an
//! accepted neighbour that asks, rate-limited; a key that turns out
//! revoked loses its link. Pages are taken only from the neighbour we
//! asked, and each costs a token of the interface's check budget: a
//! stranger can neither make us send pages nor make us check them.

use std::net::SocketAddrV6;
use std::time::Instant;

use freimesh_proto::credential::SignedRevocationPage;
use freimesh_proto::discovery::DiscoveryMessage;

use super::{
    ANSWER_HOLD, Destination, Discovery, DownReason, MAX_ANSWERED, REQUEST_HOLD, Transmit,
    same_address,
};
use crate::membership::{Membership, PageOutcome};

/// The last revocation request we sent.
#[derive(Debug, Clone)]
pub(super) struct Request {
    serial: u64,
    interface: String,
    to: SocketAddrV6,
    at: Instant,
}

impl Discovery {
    /// Asks the accepted neighbour at `src` for its pages if its list
    /// (`serial`) is newer than ours.
    pub(super) fn request_revocations(
        &mut self,
        membership: &Membership,
        interface: &str,
        src: SocketAddrV6,
        serial: u64,
        now: Instant,
    ) {
        if serial <= membership.revocation_serial() || membership.signing_key().is_none() {
            return;
        }
        if let Some(asked) = &self.requested
            && asked.serial >= serial
            && now.saturating_duration_since(asked.at) < REQUEST_HOLD
        {
            return;
        }
        let message = DiscoveryMessage::RevocationRequest {
            have_serial: membership.revocation_serial(),
        };
        let Ok(datagram) = message.encode() else {
            return;
        };
        self.requested = Some(Request {
            serial,
            interface: interface.to_owned(),
            to: src,
            at: now,
        });
        self.counters.revocation_requests_sent += 1;
        self.transmits.push_back(Transmit {
            interface: interface.to_owned(),
            to: Destination::Unicast(src),
            datagram,
        });
    }

    /// A neighbour asks for our revocation pages: answered only to an
    /// accepted neighbour at its known address (a spoofed request would
    /// aim our pages at anyone), at most once per [`ANSWER_HOLD`].
    pub fn handle_revocation_request(
        &mut self,
        membership: &Membership,
        interface: &str,
        src: SocketAddrV6,
        have_serial: u64,
        now: Instant,
    ) {
        if have_serial >= membership.revocation_serial() || membership.revocation_pages().is_empty()
        {
            return;
        }
        let Some(iface) = self.interfaces.get_mut(interface) else {
            return;
        };
        if !iface
            .neighbours
            .values()
            .any(|n| same_address(&n.endpoint, &src))
        {
            tracing::debug!(%src, %interface, "revocation request from a stranger ignored");
            return;
        }
        iface
            .answered
            .retain(|_, at| now.saturating_duration_since(*at) < ANSWER_HOLD);
        if iface.answered.contains_key(&src) || iface.answered.len() >= MAX_ANSWERED {
            return;
        }
        iface.answered.insert(src, now);
        for page in membership.revocation_pages() {
            if !iface.pages.take(now) {
                break;
            }
            let message = DiscoveryMessage::RevocationPages(vec![page.clone()]);
            let Ok(datagram) = message.encode() else {
                continue;
            };
            self.counters.revocation_pages_sent += 1;
            self.transmits.push_back(Transmit {
                interface: interface.to_owned(),
                to: Destination::Unicast(src),
                datagram,
            });
        }
    }

    /// Revocation pages from `src`: taken only from the neighbour we asked
    /// within [`REQUEST_HOLD`], each page charged to the interface's check
    /// budget, then checked against the controller's key by the
    /// membership; a newly revoked key loses its link at once.
    pub fn handle_revocation_pages(
        &mut self,
        membership: &mut Membership,
        interface: &str,
        src: SocketAddrV6,
        pages: &[SignedRevocationPage],
        now: Instant,
        now_unix_s: u64,
    ) {
        let asked = self.requested.as_ref().is_some_and(|r| {
            r.interface == interface
                && same_address(&r.to, &src)
                && now.saturating_duration_since(r.at) < REQUEST_HOLD
        });
        if !asked {
            tracing::debug!(%src, %interface, "revocation pages nobody asked for ignored");
            return;
        }
        let Some(iface) = self.interfaces.get_mut(interface) else {
            return;
        };
        for page in pages {
            if !iface.checks.take(now) {
                self.counters.rate_limited += 1;
                continue;
            }
            self.counters.revocation_pages_received += 1;
            match membership.handle_revocation_page(page) {
                Ok(
                    PageOutcome::Partial { newly_revoked }
                    | PageOutcome::Complete { newly_revoked },
                ) if !newly_revoked.is_empty() => {
                    tracing::info!(revoked = ?newly_revoked, "revocations from a neighbour");
                }
                Ok(_) => {}
                Err(err) => tracing::debug!(%err, "revocation page from a neighbour refused"),
            }
        }
        self.drop_unwelcome(membership, now_unix_s);
    }

    /// Takes down every neighbour that is revoked or whose credential has
    /// expired (however the revocation arrived: neighbour or controller).
    pub(super) fn drop_unwelcome(&mut self, membership: &Membership, now_unix_s: u64) {
        let mut gone = Vec::new();
        for (name, iface) in &self.interfaces {
            for (key, n) in &iface.neighbours {
                if membership.is_revoked(key) {
                    gone.push((name.clone(), *key, DownReason::Revoked));
                } else if n.credential.expires_unix_s <= now_unix_s {
                    gone.push((name.clone(), *key, DownReason::Expired));
                }
            }
        }
        for (interface, key, reason) in gone {
            self.forget(&interface, &key, reason);
        }
    }
}
