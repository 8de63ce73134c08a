//! The discovery core (sans-IO; see the module docs of
//! [`crate::discovery`]).
//!
//! # Contract (call order)
//!
//! [`Discovery::new`] with the interfaces and the start instant; then, in
//! any order, [`Discovery::handle_datagram`] for every datagram heard on a
//! mesh interface (the shell has already dropped non-link-local sources),
//! [`Discovery::handle_carrier`], [`Discovery::handle_controller_links`],
//! and [`Discovery::handle_tick`] at [`Discovery::poll_timeout`]; after each,
//! drain [`Discovery::poll_transmit`] and [`Discovery::poll_action`].
//! Nothing here reads a clock: `now` drives timers, `now_unix_s` checks
//! credential expiry.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::SocketAddrV6;
use std::time::{Duration, Instant};

use freimesh_proto::PublicKeyBytes;
use freimesh_proto::credential::Credential;
use freimesh_proto::discovery::{Beacon, DiscoveryMessage};

use super::budget::Budget;
use super::policy::{CONTROLLER_GRACE, DISPLACE_AFTER, wanted};
use crate::membership::{Membership, MembershipError};

mod gossip;
mod relays;

pub use relays::MAX_RELAYS_PER_INTERFACE;

/// Beacons to the group every 5 s (±10 %). A typical beacon is ~230 bytes
/// of UDP payload, ~280 on the wire: ~450 bit/s per interface, under the
/// 1 kbit/s budget with room for the replies to new neighbours. A new
/// neighbour needs no periodic beacon to be found fast: it beacons at
/// start and on carrier up, and whoever hears it answers at once.
pub const BEACON_INTERVAL: Duration = Duration::from_secs(5);
/// A neighbour not heard for four intervals is forgotten (a beacon or
/// three may be lost on a busy channel); its discovered link goes down.
/// The engine's heartbeats detect a dead link long before this.
pub const NEIGHBOUR_TIMEOUT: Duration = Duration::from_secs(20);
/// Accepted neighbours kept per interface (linked or waiting for a slot).
pub const MAX_NEIGHBOURS_PER_INTERFACE: usize = 64;
/// Refused keys remembered per interface, so their periodic beacons are
/// not checked again and again.
pub const MAX_REJECTED_PER_INTERFACE: usize = 64;
/// How long a refused key (with that credential) is not checked again.
const REJECT_HOLD: Duration = Duration::from_secs(60);
/// Credential checks (an Ed25519 verification each) per interface: a
/// burst of 40, then one every 50 ms (20/s).
const CHECK_BURST: u32 = 40;
const CHECK_REFILL: Duration = Duration::from_millis(50);
/// Unicast replies per interface: 32 (a whole dense cell answering a
/// town-wide restart), then 10/s.
const REPLY_BURST: u32 = 32;
const REPLY_REFILL: Duration = Duration::from_millis(100);
/// After announcing ourselves, beacons from neighbours we did not know
/// are their answers: they need no answer back.
const ANNOUNCE_ANSWERS: Duration = Duration::from_secs(2);
/// Revocation pages sent per interface: a whole list of 64 pages, then
/// one page per 100 ms.
const PAGE_BURST: u32 = 64;
const PAGE_REFILL: Duration = Duration::from_millis(100);
/// A revocation serial asked for is not asked for again before this.
const REQUEST_HOLD: Duration = Duration::from_secs(5);
/// One requester gets our pages at most this often.
const ANSWER_HOLD: Duration = Duration::from_secs(10);
/// Requesters remembered per interface for [`ANSWER_HOLD`].
const MAX_ANSWERED: usize = 64;

/// Where a datagram goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Destination {
    /// The discovery group on the interface.
    Group,
    /// One neighbour (its link-local address with scope, discovery port).
    Unicast(SocketAddrV6),
}

/// One datagram for the shell to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    pub interface: String,
    pub to: Destination,
    pub datagram: Vec<u8>,
}

/// Why a discovered link goes down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DownReason {
    /// Not heard for [`NEIGHBOUR_TIMEOUT`].
    Silent,
    /// A closer neighbour took its slot (or the controller did not assign
    /// it and the interface is over its cap).
    Displaced,
    /// Its key is on the revocation list.
    Revoked,
    /// Its credential expired.
    Expired,
}

/// What the shell carries out on the engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DiscoveryAction {
    /// Bring up (or refresh) the link to this neighbour at `endpoint`, with
    /// host routes to the overlay addresses in its credential.
    LinkUp {
        interface: String,
        key: PublicKeyBytes,
        endpoint: SocketAddrV6,
        credential: Credential,
    },
    /// Take the discovered link down.
    LinkDown {
        key: PublicKeyBytes,
        reason: DownReason,
    },
    /// The neighbour went silent but the controller assigned its link:
    /// drop what discovery knows of it (its endpoint record and the host
    /// routes discovery set) and leave the link to the controller.
    Forget { key: PublicKeyBytes },
}

/// Totals over the core's life, for status and the docs' figures.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DiscoveryCounters {
    pub beacons_sent: u64,
    /// UDP payload bytes of every beacon sent (group and unicast).
    pub beacon_bytes_sent: u64,
    pub beacons_received: u64,
    pub replies_sent: u64,
    /// Credentials refused: forged, expired, for another key, or no
    /// signing key known yet.
    pub refused: u64,
    /// Beacons from revoked keys.
    pub revoked: u64,
    /// Beacons without a credential (routers not enrolled yet).
    pub unenrolled: u64,
    /// Beacons not checked: the check budget was spent.
    pub rate_limited: u64,
    /// New neighbours not kept: the interface's table was full.
    pub table_full: u64,
    pub links_up: u64,
    pub links_down: u64,
    pub revocation_requests_sent: u64,
    pub revocation_pages_sent: u64,
    pub revocation_pages_received: u64,
}

#[derive(Debug, Clone)]
struct Neighbour {
    endpoint: SocketAddrV6,
    credential: Credential,
    first_heard: Instant,
    last_heard: Instant,
    /// The first signature bytes of the credential checked: the same
    /// credential again needs no new check.
    fingerprint: [u8; 8],
    /// When the link came up, while it is up on this interface.
    linked_since: Option<Instant>,
}

#[derive(Debug)]
struct Interface {
    carrier: bool,
    next_beacon: Instant,
    /// The next group beacon announces us (asks everyone to answer).
    announce: bool,
    /// When we last announced ourselves here.
    asked_at: Option<Instant>,
    neighbours: BTreeMap<PublicKeyBytes, Neighbour>,
    /// Refused keys: the first signature bytes of the refused credential
    /// and when the key may be checked again.
    rejected: BTreeMap<PublicKeyBytes, ([u8; 8], Instant)>,
    answered: BTreeMap<SocketAddrV6, Instant>,
    checks: Budget,
    replies: Budget,
    pages: Budget,
    relays: relays::HeardRelays,
}

impl Interface {
    fn new(now: Instant) -> Self {
        Self {
            carrier: true,
            next_beacon: now,
            announce: true,
            asked_at: None,
            neighbours: BTreeMap::new(),
            rejected: BTreeMap::new(),
            answered: BTreeMap::new(),
            checks: Budget::new(CHECK_BURST, CHECK_REFILL),
            replies: Budget::new(REPLY_BURST, REPLY_REFILL),
            pages: Budget::new(PAGE_BURST, PAGE_REFILL),
            relays: relays::HeardRelays::default(),
        }
    }
}

/// The discovery core; see the module docs.
#[derive(Debug)]
pub struct Discovery {
    own_key: PublicKeyBytes,
    wg_port: u16,
    max_links: usize,
    interfaces: BTreeMap<String, Interface>,
    /// Keys with a discovered link, and the interface it runs over (the
    /// engine holds one link per neighbour).
    linked: BTreeMap<PublicKeyBytes, String>,
    /// The links the controller assigns, once it has been heard.
    controller_links: Option<BTreeSet<PublicKeyBytes>>,
    /// The own credential our beacons last carried (its fingerprint): a
    /// new one (enrolment, renewal) is announced at once.
    own_credential: Option<[u8; 8]>,
    /// The last revocation request sent: only its addressee's pages are
    /// taken, within [`REQUEST_HOLD`].
    requested: Option<gossip::Request>,
    jitter_state: u64,
    transmits: VecDeque<Transmit>,
    actions: VecDeque<DiscoveryAction>,
    counters: DiscoveryCounters,
}

impl Discovery {
    /// A core for `interfaces` (their first beacons are due at `now`).
    pub fn new(
        own_key: PublicKeyBytes,
        wg_port: u16,
        max_links: usize,
        interfaces: &[String],
        now: Instant,
    ) -> Self {
        let seed = own_key.0.iter().fold(0x9e37_79b9_7f4a_7c15_u64, |s, b| {
            s.rotate_left(8) ^ u64::from(*b)
        });
        Self {
            own_key,
            wg_port,
            max_links,
            interfaces: interfaces
                .iter()
                .map(|name| (name.clone(), Interface::new(now)))
                .collect(),
            linked: BTreeMap::new(),
            controller_links: None,
            own_credential: None,
            requested: None,
            jitter_state: seed | 1,
            transmits: VecDeque::new(),
            actions: VecDeque::new(),
            counters: DiscoveryCounters::default(),
        }
    }

    pub fn counters(&self) -> DiscoveryCounters {
        self.counters
    }

    /// Keys with a discovered link, with their interface.
    pub fn linked(&self) -> &BTreeMap<PublicKeyBytes, String> {
        &self.linked
    }

    /// Accepted neighbours on `interface` (linked or waiting for a slot).
    pub fn neighbours(&self, interface: &str) -> usize {
        self.interfaces
            .get(interface)
            .map_or(0, |i| i.neighbours.len())
    }

    /// Refused keys remembered on `interface`.
    pub fn rejected(&self, interface: &str) -> usize {
        self.interfaces
            .get(interface)
            .map_or(0, |i| i.rejected.len())
    }

    /// The next beacon interval, ±10 % (a deterministic sequence seeded by
    /// our key, so routers booted together drift apart).
    fn interval(&mut self) -> Duration {
        let mut x = self.jitter_state;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.jitter_state = x;
        let permille = 900 + x % 201;
        BEACON_INTERVAL * u32::try_from(permille).unwrap_or(1000) / 1000
    }

    fn beacon(&self, membership: &Membership, wants_reply: bool) -> Option<Vec<u8>> {
        let message = DiscoveryMessage::Beacon(Beacon {
            node_key: self.own_key,
            wg_port: self.wg_port,
            credential: membership.own_credential().cloned(),
            revocation_serial: membership.revocation_serial(),
            wants_reply,
        });
        match message.encode() {
            Ok(datagram) => Some(datagram),
            Err(err) => {
                tracing::warn!(%err, "own beacon does not encode; not sent");
                None
            }
        }
    }

    /// Queues a beacon: to the group (asking for replies if it announces
    /// us: start, carrier up, a new credential) or as a reply.
    fn send_beacon(
        &mut self,
        membership: &Membership,
        interface: &str,
        to: Destination,
        now: Instant,
    ) {
        let mut wants_reply = false;
        if to == Destination::Group
            && let Some(iface) = self.interfaces.get_mut(interface)
            && std::mem::take(&mut iface.announce)
        {
            wants_reply = true;
            iface.asked_at = Some(now);
        }
        let Some(datagram) = self.beacon(membership, wants_reply) else {
            return;
        };
        self.counters.beacons_sent += 1;
        self.counters.beacon_bytes_sent += u64::try_from(datagram.len()).unwrap_or(u64::MAX);
        if matches!(to, Destination::Unicast(_)) {
            self.counters.replies_sent += 1;
        }
        self.transmits.push_back(Transmit {
            interface: interface.to_owned(),
            to,
            datagram,
        });
    }

    /// Carrier on `interface` came or went. Coming up beacons at once: the
    /// neighbours on the other side learn of us without waiting.
    pub fn handle_carrier(
        &mut self,
        membership: &Membership,
        interface: &str,
        up: bool,
        now: Instant,
    ) {
        let Some(iface) = self.interfaces.get_mut(interface) else {
            return;
        };
        let was = std::mem::replace(&mut iface.carrier, up);
        if up && !was {
            iface.next_beacon = now;
            iface.announce = true;
            self.handle_tick(membership, now, None);
        }
    }

    /// The controller's current link assignments (after every change).
    pub fn handle_controller_links(&mut self, assigned: BTreeSet<PublicKeyBytes>) {
        self.controller_links = Some(assigned);
    }

    fn assigned(&self, key: &PublicKeyBytes) -> bool {
        self.controller_links
            .as_ref()
            .is_some_and(|links| links.contains(key))
    }

    /// One datagram heard on `interface` from `src` (link-local, with its
    /// scope id).
    pub fn handle_datagram(
        &mut self,
        membership: &mut Membership,
        interface: &str,
        src: SocketAddrV6,
        datagram: &[u8],
        now: Instant,
        now_unix_s: u64,
    ) {
        if !self.interfaces.contains_key(interface) {
            return;
        }
        match DiscoveryMessage::decode(datagram) {
            Ok(DiscoveryMessage::Beacon(beacon)) => {
                self.handle_beacon(membership, interface, src, &beacon, now, now_unix_s)
            }
            Ok(DiscoveryMessage::RevocationRequest { have_serial }) => {
                self.handle_revocation_request(membership, interface, src, have_serial, now)
            }
            Ok(DiscoveryMessage::RevocationPages(pages)) => {
                self.handle_revocation_pages(membership, interface, src, &pages, now, now_unix_s)
            }
            Err(err) => tracing::debug!(%src, %err, "discovery datagram refused"),
        }
    }

    /// A beacon from `src` on `interface`.
    pub fn handle_beacon(
        &mut self,
        membership: &Membership,
        interface: &str,
        src: SocketAddrV6,
        beacon: &Beacon,
        now: Instant,
        now_unix_s: u64,
    ) {
        if beacon.node_key == self.own_key {
            return;
        }
        self.counters.beacons_received += 1;
        let Some(signed) = &beacon.credential else {
            self.counters.unenrolled += 1;
            return;
        };
        let endpoint = SocketAddrV6::new(*src.ip(), beacon.wg_port, 0, src.scope_id());
        let fingerprint = fingerprint(signed);
        let Some(iface) = self.interfaces.get_mut(interface) else {
            return;
        };
        iface.relays.handle_beacon(src, now);
        if let Some(known) = iface.neighbours.get(&beacon.node_key)
            && known.linked_since.is_some()
            && !same_address(&known.endpoint, &src)
        {
            // A linked neighbour speaks only from its known address: its
            // public beacon replayed from elsewhere neither moves the link
            // nor keeps a dead neighbour heard. WireGuard roaming follows a
            // real move; a new address is taken once the old one has gone
            // silent and the neighbour is forgotten.
            tracing::debug!(neighbour = %beacon.node_key, %interface, %src, "beacon from another address than the linked one ignored");
            return;
        }
        if let Some(known) = iface.neighbours.get_mut(&beacon.node_key)
            && known.fingerprint == fingerprint
        {
            // A neighbour we know, with the credential we checked: no new
            // signature check (revocation and expiry are checked on every
            // tick against what we hold).
            known.last_heard = now;
            if beacon.wants_reply && iface.replies.take(now) {
                // A known neighbour announces itself (it restarted, or its
                // interface came back): it may not know us any more.
                self.send_beacon(membership, interface, Destination::Unicast(src), now);
            }
            let Some(known) = self
                .interfaces
                .get_mut(interface)
                .and_then(|i| i.neighbours.get_mut(&beacon.node_key))
            else {
                return;
            };
            if known.endpoint != endpoint {
                known.endpoint = endpoint;
                if known.linked_since.is_some() {
                    self.link_up(interface, beacon.node_key, now);
                }
            }
            self.request_revocations(membership, interface, src, beacon.revocation_serial, now);
            return;
        }
        if let Some((f, until)) = iface.rejected.get(&beacon.node_key)
            && *f == fingerprint
            && *until > now
        {
            return;
        }
        if !iface.checks.take(now) {
            self.counters.rate_limited += 1;
            return;
        }
        let credential = match membership.check_neighbour(&beacon.node_key, signed, now_unix_s) {
            Ok(credential) => credential,
            Err(err) => {
                tracing::debug!(neighbour = %beacon.node_key, %interface, %err, "neighbour refused");
                self.reject(interface, beacon.node_key, fingerprint, now);
                if let MembershipError::Revoked(_) = err {
                    self.counters.revoked += 1;
                    self.forget(interface, &beacon.node_key, DownReason::Revoked);
                } else {
                    // A bad credential under a known neighbour's key may be
                    // anyone's: it does not take the neighbour's link down.
                    self.counters.refused += 1;
                }
                return;
            }
        };
        let Some(iface) = self.interfaces.get_mut(interface) else {
            return;
        };
        iface.rejected.remove(&beacon.node_key);
        let new = !iface.neighbours.contains_key(&beacon.node_key);
        if new && iface.neighbours.len() >= MAX_NEIGHBOURS_PER_INTERFACE && !evict(iface, now) {
            self.counters.table_full += 1;
            return;
        }
        let entry = iface
            .neighbours
            .entry(beacon.node_key)
            .or_insert_with(|| Neighbour {
                endpoint,
                credential: credential.clone(),
                first_heard: now,
                last_heard: now,
                fingerprint,
                linked_since: None,
            });
        entry.endpoint = endpoint;
        entry.credential = credential;
        entry.fingerprint = fingerprint;
        entry.last_heard = now;
        let refresh = entry.linked_since.is_some();
        // Answer an announcement, and a neighbour we did not know (unless
        // we just announced ourselves: then it is answering us).
        let answering_us = iface
            .asked_at
            .is_some_and(|at| now.saturating_duration_since(at) < ANNOUNCE_ANSWERS);
        if (beacon.wants_reply || (new && !answering_us)) && iface.replies.take(now) {
            self.send_beacon(membership, interface, Destination::Unicast(src), now);
        }
        if refresh {
            // The endpoint moved or the credential was renewed: the shell
            // updates the link and the host routes.
            self.link_up(interface, beacon.node_key, now);
        }
        self.select(interface, now);
        // Only an accepted neighbour is asked for revocation pages.
        self.request_revocations(membership, interface, src, beacon.revocation_serial, now);
    }

    fn reject(&mut self, interface: &str, key: PublicKeyBytes, fingerprint: [u8; 8], now: Instant) {
        let Some(iface) = self.interfaces.get_mut(interface) else {
            return;
        };
        if !iface.rejected.contains_key(&key) && iface.rejected.len() >= MAX_REJECTED_PER_INTERFACE
        {
            // Forget the entry that would be checked again soonest.
            if let Some(first) = iface
                .rejected
                .iter()
                .min_by_key(|(_, (_, until))| *until)
                .map(|(k, _)| *k)
            {
                iface.rejected.remove(&first);
            }
        }
        iface.rejected.insert(key, (fingerprint, now + REJECT_HOLD));
    }

    /// Drops a neighbour from `interface`, taking its link down if it had
    /// one there (a controller-assigned link only when the reason is the
    /// neighbour's membership).
    fn forget(&mut self, interface: &str, key: &PublicKeyBytes, reason: DownReason) {
        let Some(iface) = self.interfaces.get_mut(interface) else {
            return;
        };
        let Some(neighbour) = iface.neighbours.remove(key) else {
            return;
        };
        if neighbour.linked_since.is_some() {
            self.linked.remove(key);
            let membership = matches!(reason, DownReason::Revoked | DownReason::Expired);
            if membership || !self.assigned(key) {
                self.counters.links_down += 1;
                self.actions
                    .push_back(DiscoveryAction::LinkDown { key: *key, reason });
            } else {
                self.actions
                    .push_back(DiscoveryAction::Forget { key: *key });
            }
        }
    }

    fn link_up(&mut self, interface: &str, key: PublicKeyBytes, now: Instant) {
        let Some(neighbour) = self
            .interfaces
            .get_mut(interface)
            .and_then(|i| i.neighbours.get_mut(&key))
        else {
            return;
        };
        if neighbour.linked_since.is_none() {
            neighbour.linked_since = Some(now);
            self.counters.links_up += 1;
        }
        let action = DiscoveryAction::LinkUp {
            interface: interface.to_owned(),
            key,
            endpoint: neighbour.endpoint,
            credential: neighbour.credential.clone(),
        };
        self.linked.insert(key, interface.to_owned());
        self.actions.push_back(action);
    }

    fn link_down(&mut self, interface: &str, key: PublicKeyBytes, reason: DownReason) {
        if let Some(neighbour) = self
            .interfaces
            .get_mut(interface)
            .and_then(|i| i.neighbours.get_mut(&key))
        {
            neighbour.linked_since = None;
        }
        self.linked.remove(&key);
        self.counters.links_down += 1;
        self.actions
            .push_back(DiscoveryAction::LinkDown { key, reason });
    }

    /// Applies the dense-cell policy ([`super::policy`]) on `interface`.
    fn select(&mut self, interface: &str, now: Instant) {
        let Some(iface) = self.interfaces.get(interface) else {
            return;
        };
        // Neighbours linked over another interface are not candidates here.
        let heard = iface
            .neighbours
            .keys()
            .filter(|k| self.linked.get(*k).is_none_or(|i| i == interface))
            .copied();
        let wanted = wanted(&self.own_key, heard, self.max_links);
        let linked: Vec<(PublicKeyBytes, Instant)> = iface
            .neighbours
            .iter()
            .filter_map(|(k, n)| n.linked_since.map(|since| (*k, since)))
            .collect();
        // Unwanted linked neighbours the controller has not assigned, the
        // longest-linked last (they go first).
        let mut spare: Vec<PublicKeyBytes> = linked
            .iter()
            .filter(|(k, _)| !wanted.contains(k) && !self.assigned(k))
            .map(|(k, _)| *k)
            .collect();
        let mut free = self.max_links.saturating_sub(linked.len());
        let mut up = Vec::new();
        let mut down = Vec::new();
        for key in &wanted {
            let Some(n) = iface.neighbours.get(key) else {
                continue;
            };
            if n.linked_since.is_some() {
                continue;
            }
            if free > 0 {
                free -= 1;
                up.push(*key);
            } else if now.saturating_duration_since(n.first_heard) >= DISPLACE_AFTER
                && let Some(gone) = spare.pop()
            {
                down.push(gone);
                up.push(*key);
            }
        }
        // The controller's say: over the cap (its own assignments count),
        // unwanted discovered links it has not assigned within the grace
        // period go.
        if self.controller_links.is_some() {
            let mut over = (linked.len() + up.len())
                .saturating_sub(down.len())
                .saturating_sub(self.max_links);
            for (key, since) in &linked {
                if over == 0 {
                    break;
                }
                if !self.assigned(key)
                    && !down.contains(key)
                    && !wanted.contains(key)
                    && now.saturating_duration_since(*since) >= CONTROLLER_GRACE
                {
                    down.push(*key);
                    over -= 1;
                }
            }
        }
        for key in down {
            self.link_down(interface, key, DownReason::Displaced);
        }
        for key in up {
            self.link_up(interface, key, now);
        }
    }

    /// Timers: beacons due, silent neighbours, revocations and expiry, the
    /// policy. `now_unix_s` is `None` when only beacons are due (carrier).
    pub fn handle_tick(&mut self, membership: &Membership, now: Instant, now_unix_s: Option<u64>) {
        let own = membership.own_credential().map(fingerprint);
        if own != self.own_credential {
            // Enrolled or renewed: neighbours should not wait a whole
            // interval to hear it.
            self.own_credential = own;
            for iface in self.interfaces.values_mut() {
                iface.next_beacon = now;
                iface.announce = true;
            }
        }
        let due: Vec<String> = self
            .interfaces
            .iter()
            .filter(|(_, i)| i.carrier && i.next_beacon <= now)
            .map(|(name, _)| name.clone())
            .collect();
        for name in due {
            let next = now + self.interval();
            if let Some(iface) = self.interfaces.get_mut(&name) {
                iface.next_beacon = next;
            }
            self.send_beacon(membership, &name, Destination::Group, now);
        }
        let Some(now_unix_s) = now_unix_s else {
            return;
        };
        let silent: Vec<(String, PublicKeyBytes)> = self
            .interfaces
            .iter()
            .flat_map(|(name, i)| {
                i.neighbours
                    .iter()
                    .filter(|(_, n)| {
                        now.saturating_duration_since(n.last_heard) >= NEIGHBOUR_TIMEOUT
                    })
                    .map(|(k, _)| (name.clone(), *k))
            })
            .collect();
        for (interface, key) in silent {
            self.forget(&interface, &key, DownReason::Silent);
        }
        self.drop_unwelcome(membership, now_unix_s);
        for iface in self.interfaces.values_mut() {
            iface.rejected.retain(|_, (_, until)| *until > now);
            iface.relays.expire(now);
        }
        let names: Vec<String> = self.interfaces.keys().cloned().collect();
        for name in names {
            self.select(&name, now);
        }
    }

    /// When [`Self::handle_tick`] wants to run next: the next beacon, or a
    /// second from now while neighbours are known (timeouts, hysteresis).
    pub fn poll_timeout(&self, now: Instant) -> Instant {
        let beacon = self
            .interfaces
            .values()
            .filter(|i| i.carrier)
            .map(|i| i.next_beacon)
            .min();
        let housekeeping = now + Duration::from_secs(1);
        beacon.map_or(housekeeping, |b| b.min(housekeeping))
    }

    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    pub fn poll_action(&mut self) -> Option<DiscoveryAction> {
        self.actions.pop_front()
    }
}

/// The first signature bytes of a credential: what tells a repeated
/// credential from a new one without checking it.
fn fingerprint(signed: &freimesh_proto::credential::SignedCredential) -> [u8; 8] {
    let mut out = [0u8; 8];
    for (o, b) in out.iter_mut().zip(&signed.signature) {
        *o = *b;
    }
    out
}

/// Whether a neighbour's endpoint and a datagram's source are the same
/// link-local address (ports differ: WireGuard's and discovery's).
fn same_address(endpoint: &SocketAddrV6, src: &SocketAddrV6) -> bool {
    endpoint.ip() == src.ip() && endpoint.scope_id() == src.scope_id()
}

/// Makes room in a full table: forgets the unlinked neighbour heard least
/// recently, if it has been silent for a beacon interval.
fn evict(iface: &mut Interface, now: Instant) -> bool {
    let stalest = iface
        .neighbours
        .iter()
        .filter(|(_, n)| n.linked_since.is_none())
        .min_by_key(|(_, n)| n.last_heard)
        .filter(|(_, n)| now.saturating_duration_since(n.last_heard) >= BEACON_INTERVAL)
        .map(|(k, _)| *k);
    match stalest {
        Some(key) => {
            iface.neighbours.remove(&key);
            true
        }
        None => false,
    }
}
