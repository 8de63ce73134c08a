//! The discovery core on a virtual clock: routers exchange the datagrams
//! the cores ask to send, with no sockets.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv6Addr, SocketAddrV6};
use std::time::{Duration, Instant};

use ed25519_dalek::SigningKey;
use freimesh_proto::control::Roles;
use freimesh_proto::credential::{
    Credential, RevocationPage, Revoked, SignedCredential, SigningKeyBytes,
};
use freimesh_proto::discovery::{Beacon, DISCOVERY_PORT, DiscoveryMessage};
use freimesh_proto::{NodeId, PublicKeyBytes};

use super::policy::wanted;
use super::*;
use crate::membership::Membership;

const IFACE: &str = "mesh0";
const SCOPE: u32 = 7;
/// The Unix time the tests run at; credentials expire a day later.
const UNIX: u64 = 1_800_000_000;

fn controller() -> SigningKey {
    SigningKey::from_bytes(&[1; 32])
}

fn key(n: u16) -> PublicKeyBytes {
    let mut k = [0u8; 32];
    for (i, b) in k.iter_mut().enumerate() {
        let i = u16::try_from(i).expect("small");
        *b = u8::try_from((n.wrapping_mul(97) ^ i.wrapping_mul(31)).wrapping_add(n) & 0xff)
            .expect("byte");
    }
    // Distinct for every n.
    k[..2].copy_from_slice(&n.to_be_bytes());
    PublicKeyBytes(k)
}

fn credential(n: u16, expires_unix_s: u64, signer: &SigningKey) -> SignedCredential {
    Credential {
        node_key: key(n),
        node_id: NodeId::of(&key(n)),
        addresses: vec![format!("fd00::{n:x}/128").parse().expect("prefix")],
        roles: Roles::default(),
        prefixes: Vec::new(),
        issued_unix_s: UNIX - 10,
        expires_unix_s,
    }
    .sign(signer)
    .expect("sign")
}

fn membership(n: u16) -> Membership {
    let mut m = Membership::new();
    m.set_signing_key(SigningKeyBytes::of(&controller()));
    m.set_own_credential(&key(n), credential(n, UNIX + 86_400, &controller()))
        .expect("own credential");
    m
}

fn addr(n: u16) -> SocketAddrV6 {
    SocketAddrV6::new(
        Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, n),
        DISCOVERY_PORT,
        0,
        SCOPE,
    )
}

struct Router {
    n: u16,
    core: Discovery,
    membership: Membership,
    actions: Vec<DiscoveryAction>,
}

impl Router {
    fn new(n: u16, cap: usize, t0: Instant) -> Self {
        Self {
            n,
            core: Discovery::new(key(n), 51820, cap, &[IFACE.to_owned()], t0),
            membership: membership(n),
            actions: Vec::new(),
        }
    }

    fn tick(&mut self, now: Instant) {
        self.core
            .handle_tick(&self.membership, now, Some(unix(now)));
        self.drain_actions();
    }

    fn hear(&mut self, from: u16, datagram: &[u8], now: Instant) {
        self.core.handle_datagram(
            &mut self.membership,
            IFACE,
            addr(from),
            datagram,
            now,
            unix(now),
        );
        self.drain_actions();
    }

    fn drain_actions(&mut self) {
        self.actions
            .extend(std::iter::from_fn(|| self.core.poll_action()));
    }

    fn transmits(&mut self) -> Vec<Transmit> {
        std::iter::from_fn(|| self.core.poll_transmit()).collect()
    }

    fn up(&self) -> BTreeSet<PublicKeyBytes> {
        self.core.linked().keys().copied().collect()
    }
}

static T0: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();

fn t0() -> Instant {
    *T0.get_or_init(Instant::now)
}

fn unix(now: Instant) -> u64 {
    UNIX + now.saturating_duration_since(t0()).as_secs()
}

/// Delivers every pending datagram (group: to every other router;
/// unicast: to the addressee) until the cell is quiet.
fn exchange(routers: &mut [Router], now: Instant) {
    for _ in 0..16 {
        let mut sent = Vec::new();
        for r in routers.iter_mut() {
            let from = r.n;
            sent.extend(r.transmits().into_iter().map(|t| (from, t)));
        }
        if sent.is_empty() {
            return;
        }
        for (from, t) in sent {
            for r in routers.iter_mut() {
                let wanted = match t.to {
                    Destination::Group => r.n != from,
                    Destination::Unicast(to) => *to.ip() == *addr(r.n).ip(),
                };
                if wanted {
                    r.hear(from, &t.datagram, now);
                }
            }
        }
    }
}

#[test]
fn both_ends_link_up_from_one_beacon_and_its_reply() {
    let t0 = t0();
    let mut routers = [Router::new(1, 8, t0), Router::new(2, 8, t0)];
    // Only router 1 beacons (router 2 booted earlier and is between beacons).
    routers[0].tick(t0);
    let first = routers[0].transmits();
    assert!(matches!(&first[..], [t] if t.to == Destination::Group));
    routers[1].hear(1, &first[0].datagram, t0);
    let reply = routers[1].transmits();
    assert!(
        matches!(&reply[..], [t] if t.to == Destination::Unicast(addr(1))),
        "{reply:?}"
    );
    let Ok(DiscoveryMessage::Beacon(Beacon { wants_reply, .. })) =
        DiscoveryMessage::decode(&reply[0].datagram)
    else {
        panic!("a beacon");
    };
    assert!(!wants_reply, "a reply asks for no reply");
    routers[0].hear(2, &reply[0].datagram, t0);
    assert!(routers[0].transmits().is_empty(), "no reply to a reply");
    assert_eq!(routers[0].up(), BTreeSet::from([key(2)]));
    assert_eq!(routers[1].up(), BTreeSet::from([key(1)]));
    let DiscoveryAction::LinkUp {
        endpoint,
        credential,
        ..
    } = &routers[1].actions[0]
    else {
        panic!("link up: {:?}", routers[1].actions);
    };
    assert_eq!(endpoint.scope_id(), SCOPE);
    assert_eq!(
        endpoint.port(),
        51820,
        "the WireGuard port, not discovery's"
    );
    assert_eq!(credential.node_key, key(1));
    // Later beacons change nothing and cost no signature check (router
    // 2's first group beacon announces it: router 1 answers that one).
    let later = t0 + BEACON_INTERVAL * 2;
    routers[0].tick(later);
    routers[1].tick(later);
    exchange(&mut routers, later);
    assert_eq!(routers[1].actions.len(), 1, "{:?}", routers[1].actions);
    let counters = routers[0].core.counters();
    assert_eq!((counters.beacons_sent, counters.replies_sent), (3, 1));
    assert!(counters.beacon_bytes_sent / counters.beacons_sent < 250);
}

fn beacon_with(n: u16, credential: Option<SignedCredential>) -> Vec<u8> {
    DiscoveryMessage::Beacon(Beacon {
        node_key: key(n),
        wg_port: 51820,
        credential,
        revocation_serial: 0,
        wants_reply: true,
    })
    .encode()
    .expect("encode")
}

#[test]
fn a_forged_expired_foreign_or_revoked_credential_gives_no_link() {
    let t0 = t0();
    let mut r = Router::new(1, 8, t0);
    let other_controller = SigningKey::from_bytes(&[2; 32]);
    let mut tampered = credential(3, UNIX + 86_400, &controller());
    tampered.body[5] ^= 1;
    let revoked = RevocationPage::paginate(
        1,
        UNIX,
        &[Revoked {
            node_key: key(6),
            until_unix_s: UNIX + 86_400,
        }],
    )
    .expect("paginate")[0]
        .sign(&controller())
        .expect("sign");
    r.membership.handle_revocation_page(&revoked).expect("page");
    let beacons = [
        beacon_with(2, Some(credential(2, UNIX + 86_400, &other_controller))),
        beacon_with(3, Some(tampered)),
        beacon_with(4, Some(credential(4, UNIX - 1, &controller()))),
        // Router 9's credential under router 5's key.
        beacon_with(5, Some(credential(9, UNIX + 86_400, &controller()))),
        beacon_with(6, Some(credential(6, UNIX + 86_400, &controller()))),
        beacon_with(7, None),
    ];
    for (i, b) in beacons.iter().enumerate() {
        r.hear(u16::try_from(i).expect("small") + 2, b, t0);
    }
    assert!(r.actions.is_empty(), "{:?}", r.actions);
    assert!(r.transmits().is_empty(), "no reply to a stranger");
    let c = r.core.counters();
    assert_eq!((c.refused, c.revoked, c.unenrolled), (4, 1, 1));
    // The same refused credential again is not even checked.
    r.hear(2, &beacons[0], t0 + Duration::from_secs(1));
    assert_eq!(r.core.counters().refused, 4);
}

#[test]
fn a_thirty_router_cell_gives_at_most_the_cap_closest_by_key_distance() {
    const CAP: usize = 8;
    let t0 = t0();
    let routers = {
        let mut routers: Vec<Router> = (1..=30).map(|n| Router::new(n, CAP, t0)).collect();
        let mut now = t0;
        for _ in 0..6 {
            for r in &mut routers {
                r.tick(now);
            }
            exchange(&mut routers, now);
            now += BEACON_INTERVAL;
        }
        routers
    };
    let links: BTreeMap<u16, BTreeSet<PublicKeyBytes>> =
        routers.iter().map(|r| (r.n, r.up())).collect();
    for r in &routers {
        let up = &links[&r.n];
        assert!(up.len() <= CAP, "router {}: {} links", r.n, up.len());
        // The rule: the ring window in key order.
        assert_eq!(
            *up,
            wanted(&key(r.n), (1..=30).map(key), CAP),
            "router {}",
            r.n
        );
    }
    // The rule is a pure function of the keys heard, so the same cell
    // always gives the same links.
    // Mutual links (what carries traffic) connect the cell; no one-sided
    // link is left.
    let mutual = |a: u16, b: u16| links[&a].contains(&key(b)) && links[&b].contains(&key(a));
    let mut reached = BTreeSet::from([1u16]);
    let mut frontier = vec![1u16];
    while let Some(a) = frontier.pop() {
        for b in 1..=30 {
            if mutual(a, b) && reached.insert(b) {
                frontier.push(b);
            }
        }
    }
    assert_eq!(reached.len(), 30, "the mutual links connect every router");
    for (a, up) in &links {
        for b in 1..=30 {
            if up.contains(&key(b)) {
                assert!(mutual(*a, b), "{a} -> {b} one-sided");
            }
        }
    }
}

#[test]
fn a_wanted_neighbour_displaces_an_unwanted_link_only_after_the_hold() {
    let t0 = t0();
    let mut r = Router::new(1, 2, t0);
    let beacon = |n: u16| beacon_with(n, Some(credential(n, UNIX + 86_400, &controller())));
    // The window of 1 among 2..40 with a cap of 2; two others fill the
    // slots first.
    let window = wanted(&key(1), (2..40).map(key), 2);
    let (outside, inside): (Vec<u16>, Vec<u16>) = (2..40).partition(|n| !window.contains(&key(*n)));
    let early = [outside[0], outside[1]];
    for n in early {
        r.hear(n, &beacon(n), t0);
    }
    assert_eq!(r.up(), early.iter().map(|n| key(*n)).collect());
    for n in &inside {
        r.hear(*n, &beacon(*n), t0);
    }
    assert_eq!(r.up(), early.iter().map(|n| key(*n)).collect(), "held");
    let mut now = t0;
    while now < t0 + policy::DISPLACE_AFTER {
        now += Duration::from_secs(1);
        for n in early.iter().chain(&inside) {
            r.hear(*n, &beacon(*n), now);
        }
        r.tick(now);
    }
    assert_eq!(r.up(), window);
    assert!(r.actions.contains(&DiscoveryAction::LinkDown {
        key: key(early[0]),
        reason: DownReason::Displaced
    }));
}

#[test]
fn a_flood_of_ten_thousand_garbage_keys_keeps_the_tables_bounded() {
    let t0 = t0();
    let mut r = Router::new(1, 8, t0);
    let garbage = SignedCredential {
        body: vec![0xAA; 200],
        signature: vec![0x55; 64],
    };
    let mut now = t0;
    for i in 0..10_000u16 {
        let n = i.wrapping_add(100);
        let credential = match i % 10 {
            // Valid signatures from another controller.
            1 if i % 100 == 1 => Some(credential(
                n,
                UNIX + 86_400,
                &SigningKey::from_bytes(&[2; 32]),
            )),
            1 => None,
            2 => None,
            _ => Some(garbage.clone()),
        };
        r.hear(n, &beacon_with(n, credential), now);
        now += Duration::from_micros(100);
    }
    r.tick(now);
    assert!(r.actions.is_empty());
    assert!(r.core.rejected(IFACE) <= MAX_REJECTED_PER_INTERFACE);
    assert_eq!(r.core.neighbours(IFACE), 0);
    let c = r.core.counters();
    assert_eq!(c.beacons_received, 10_000);
    assert!(c.rate_limited > 7_000, "checks were rate-limited: {c:?}");
    assert!(c.refused < 100, "few signature checks in one second: {c:?}");
    assert_eq!(c.replies_sent, 0);
}

#[test]
fn a_full_table_of_accepted_neighbours_refuses_more_until_one_goes_quiet() {
    let t0 = t0();
    let mut r = Router::new(1, 8, t0);
    let mut now = t0;
    for n in 2..(2 + u16::try_from(MAX_NEIGHBOURS_PER_INTERFACE).expect("small") + 10) {
        r.hear(
            n,
            &beacon_with(n, Some(credential(n, UNIX + 86_400, &controller()))),
            now,
        );
        // Stay within the check budget.
        now += Duration::from_millis(60);
    }
    assert_eq!(r.core.neighbours(IFACE), MAX_NEIGHBOURS_PER_INTERFACE);
    assert_eq!(r.core.counters().table_full, 10);
    assert!(r.up().len() <= 8);
}

#[test]
fn revocation_gossip_spreads_a_page_and_downs_an_existing_link() {
    let t0 = t0();
    let mut routers = [
        Router::new(1, 8, t0),
        Router::new(2, 8, t0),
        Router::new(3, 8, t0),
    ];
    for r in &mut routers {
        r.tick(t0);
    }
    exchange(&mut routers, t0);
    assert_eq!(routers[1].up(), BTreeSet::from([key(1), key(3)]));
    // Router 1 alone hears from the controller that 3 is revoked.
    let page = RevocationPage::paginate(
        4,
        UNIX,
        &[Revoked {
            node_key: key(3),
            until_unix_s: UNIX + 86_400,
        }],
    )
    .expect("paginate")[0]
        .sign(&controller())
        .expect("sign");
    routers[0]
        .membership
        .handle_revocation_page(&page)
        .expect("page");
    let now = t0 + BEACON_INTERVAL * 2;
    routers[0].tick(now);
    assert!(routers[0].actions.contains(&DiscoveryAction::LinkDown {
        key: key(3),
        reason: DownReason::Revoked
    }));
    // Its next beacon carries serial 4: router 2 asks, gets the page, and
    // takes its link to 3 down at once.
    exchange(&mut routers, now);
    assert_eq!(routers[1].membership.revocation_serial(), 4);
    assert!(routers[1].membership.is_revoked(&key(3)));
    assert!(routers[1].actions.contains(&DiscoveryAction::LinkDown {
        key: key(3),
        reason: DownReason::Revoked
    }));
    assert_eq!(routers[1].up(), BTreeSet::from([key(1)]));
    let c = routers[1].core.counters();
    assert_eq!(
        (c.revocation_requests_sent, c.revocation_pages_received),
        (1, 1)
    );
    // Router 3 learns it too (it hears the same beacon), and a revoked
    // key's beacons never bring a link back.
    routers[2].tick(now + BEACON_INTERVAL);
    exchange(&mut routers, now + BEACON_INTERVAL);
    assert_eq!(routers[1].up(), BTreeSet::from([key(1)]));
}

#[test]
fn a_silent_neighbour_is_dropped_unless_the_controller_assigned_the_link() {
    let t0 = t0();
    let mut routers = [
        Router::new(1, 8, t0),
        Router::new(2, 8, t0),
        Router::new(3, 8, t0),
    ];
    for r in &mut routers {
        r.tick(t0);
    }
    exchange(&mut routers, t0);
    assert_eq!(routers[0].up(), BTreeSet::from([key(2), key(3)]));
    routers[0]
        .core
        .handle_controller_links(BTreeSet::from([key(3)]));
    // Both go quiet.
    let later = t0 + NEIGHBOUR_TIMEOUT + Duration::from_secs(1);
    routers[0].tick(later);
    let downs: Vec<&DiscoveryAction> = routers[0]
        .actions
        .iter()
        .filter(|a| matches!(a, DiscoveryAction::LinkDown { .. }))
        .collect();
    assert_eq!(
        downs,
        [&DiscoveryAction::LinkDown {
            key: key(2),
            reason: DownReason::Silent
        }],
        "the controller keeps its link to 3"
    );
    assert!(routers[0].up().is_empty(), "no discovered link left");
    assert!(
        routers[0]
            .actions
            .contains(&DiscoveryAction::Forget { key: key(3) }),
        "the shell drops its record of 3: {:?}",
        routers[0].actions
    );
}

#[test]
fn carrier_up_beacons_at_once_and_poll_timeout_follows_the_interval() {
    let t0 = t0();
    let mut r = Router::new(1, 8, t0);
    r.tick(t0);
    assert_eq!(r.transmits().len(), 1);
    let next = r.core.poll_timeout(t0);
    assert!(next <= t0 + Duration::from_secs(1));
    let later = t0 + Duration::from_secs(2);
    r.core.handle_carrier(&r.membership, IFACE, false, later);
    r.tick(later + BEACON_INTERVAL * 2);
    assert!(r.transmits().is_empty(), "no beacons without carrier");
    r.core
        .handle_carrier(&r.membership, IFACE, true, later + BEACON_INTERVAL * 2);
    assert_eq!(r.transmits().len(), 1, "at once on carrier up");
}

#[test]
fn a_new_own_credential_is_announced_at_the_next_tick() {
    let t0 = t0();
    let mut r = Router::new(1, 8, t0);
    r.tick(t0);
    assert_eq!(r.transmits().len(), 1);
    let soon = t0 + Duration::from_millis(500);
    r.tick(soon);
    assert!(r.transmits().is_empty(), "between beacons");
    r.membership
        .set_own_credential(&key(1), credential(1, UNIX + 2 * 86_400, &controller()))
        .expect("renewed");
    r.tick(soon + Duration::from_millis(1));
    assert_eq!(r.transmits().len(), 1, "renewed: beacon at once");
}

#[test]
fn a_restarted_neighbour_is_answered_at_once_but_periodic_beacons_are_not() {
    let t0 = t0();
    let mut routers = [Router::new(1, 8, t0), Router::new(2, 8, t0)];
    for r in &mut routers {
        r.tick(t0);
    }
    exchange(&mut routers, t0);
    assert_eq!(routers[1].up(), BTreeSet::from([key(1)]));
    // Periodic beacons: no one answers.
    let later = t0 + BEACON_INTERVAL * 2;
    routers[0].tick(later);
    let periodic = routers[0].transmits();
    assert_eq!(periodic.len(), 1);
    routers[1].hear(1, &periodic[0].datagram, later);
    assert!(
        routers[1].transmits().is_empty(),
        "a known neighbour's periodic beacon"
    );
    // Router 1 restarts: its first beacon announces it, and router 2,
    // which still knows it, answers at once.
    let restart = later + Duration::from_secs(1);
    routers[0] = Router::new(1, 8, restart);
    routers[0].tick(restart);
    let announce = routers[0].transmits();
    routers[1].hear(1, &announce[0].datagram, restart);
    let answer = routers[1].transmits();
    assert!(
        matches!(&answer[..], [t] if t.to == Destination::Unicast(addr(1))),
        "{answer:?}"
    );
    routers[0].hear(2, &answer[0].datagram, restart);
    assert_eq!(routers[0].up(), BTreeSet::from([key(2)]));
    assert!(
        routers[0].transmits().is_empty(),
        "an answer needs no answer"
    );
}

fn revocation_page(serial: u64, revoked: u16) -> freimesh_proto::credential::SignedRevocationPage {
    RevocationPage::paginate(
        serial,
        UNIX,
        &[Revoked {
            node_key: key(revoked),
            until_unix_s: UNIX + 86_400,
        }],
    )
    .expect("paginate")[0]
        .sign(&controller())
        .expect("sign")
}

fn beacon_with_serial(n: u16, credential: Option<SignedCredential>, serial: u64) -> Vec<u8> {
    DiscoveryMessage::Beacon(Beacon {
        node_key: key(n),
        wg_port: 51820,
        credential,
        revocation_serial: serial,
        wants_reply: false,
    })
    .encode()
    .expect("encode")
}

fn revocation_requests(transmits: &[Transmit]) -> Vec<Destination> {
    transmits
        .iter()
        .filter(|t| {
            matches!(
                DiscoveryMessage::decode(&t.datagram),
                Ok(DiscoveryMessage::RevocationRequest { .. })
            )
        })
        .map(|t| t.to)
        .collect()
}

#[test]
fn revocation_pages_are_taken_only_when_asked_and_each_costs_a_check() {
    let t0 = t0();
    let mut r = Router::new(1, 8, t0);
    let pages = DiscoveryMessage::RevocationPages(vec![revocation_page(4, 3)])
        .encode()
        .expect("encode");
    r.hear(9, &pages, t0);
    assert!(!r.membership.is_revoked(&key(3)), "nobody asked for them");
    // An accepted neighbour with a newer list is asked (one check spent
    // on its credential).
    r.hear(
        2,
        &beacon_with_serial(2, Some(credential(2, UNIX + 86_400, &controller())), 4),
        t0,
    );
    assert_eq!(
        revocation_requests(&r.transmits()),
        [Destination::Unicast(addr(2))]
    );
    r.hear(9, &pages, t0);
    assert!(!r.membership.is_revoked(&key(3)), "not from the one asked");
    // The neighbour asked floods: every page costs a check.
    for _ in 0..100 {
        r.hear(2, &pages, t0);
    }
    assert!(r.membership.is_revoked(&key(3)));
    let c = r.core.counters();
    assert_eq!(c.revocation_pages_received, 39, "{c:?}");
    assert_eq!(c.rate_limited, 61, "{c:?}");
    // After the request hold, even the neighbour asked is not listened to.
    let late = t0 + Duration::from_secs(60);
    r.hear(
        2,
        &DiscoveryMessage::RevocationPages(vec![revocation_page(5, 4)])
            .encode()
            .expect("encode"),
        late,
    );
    assert!(!r.membership.is_revoked(&key(4)));
}

#[test]
fn revocation_requests_are_answered_and_sent_only_between_accepted_neighbours() {
    let t0 = t0();
    let mut r = Router::new(1, 8, t0);
    r.membership
        .handle_revocation_page(&revocation_page(4, 3))
        .expect("page");
    let request = DiscoveryMessage::RevocationRequest { have_serial: 0 }
        .encode()
        .expect("encode");
    r.hear(9, &request, t0);
    assert!(r.transmits().is_empty(), "a stranger gets no pages");
    r.hear(
        2,
        &beacon_with(2, Some(credential(2, UNIX + 86_400, &controller()))),
        t0,
    );
    r.transmits();
    r.hear(2, &request, t0);
    let answer = r.transmits();
    assert!(
        matches!(&answer[..], [t] if t.to == Destination::Unicast(addr(2))),
        "{answer:?}"
    );
    // Beacons whose credential was not accepted make us ask no one.
    let mut asking = Router::new(5, 8, t0);
    let garbage = SignedCredential {
        body: vec![0xAA; 200],
        signature: vec![0x55; 64],
    };
    asking.hear(7, &beacon_with_serial(7, None, 9), t0);
    asking.hear(8, &beacon_with_serial(8, Some(garbage), 9), t0);
    assert!(revocation_requests(&asking.transmits()).is_empty());
}

#[test]
fn a_linked_neighbours_beacon_from_another_address_neither_moves_nor_refreshes_it() {
    let t0 = t0();
    let mut routers = [Router::new(1, 8, t0), Router::new(2, 8, t0)];
    for r in &mut routers {
        r.tick(t0);
    }
    exchange(&mut routers, t0);
    assert_eq!(routers[0].up(), BTreeSet::from([key(2)]));
    routers[0].actions.clear();
    // Router 2 dies; its public beacon is replayed from another address.
    let replay = beacon_with(2, Some(credential(2, UNIX + 86_400, &controller())));
    let mut now = t0;
    while now < t0 + NEIGHBOUR_TIMEOUT {
        now += BEACON_INTERVAL;
        routers[0].hear(9, &replay, now);
    }
    assert!(
        !routers[0]
            .actions
            .iter()
            .any(|a| matches!(a, DiscoveryAction::LinkUp { .. })),
        "the endpoint stays: {:?}",
        routers[0].actions
    );
    assert!(routers[0].transmits().is_empty(), "no answer to the replay");
    routers[0].tick(t0 + NEIGHBOUR_TIMEOUT + Duration::from_secs(1));
    assert!(routers[0].actions.contains(&DiscoveryAction::LinkDown {
        key: key(2),
        reason: DownReason::Silent
    }));
}
