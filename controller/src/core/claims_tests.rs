//! Links and their metrics need both ends (`claims.rs`).

use freimesh_proto::PublicKeyBytes;
use freimesh_proto::control::{Candidate, LinkMeasurement, Report};

use super::claims::disputed;
use super::*;
use crate::store::{MeshSettings, NodeRecord, NodeState};

fn settings() -> MeshSettings {
    MeshSettings {
        ula: "fd12:3456:789a::/48".parse().expect("ula"),
        ipv4: "10.99.0.0/16".parse().expect("v4"),
        approval: false,
        controller_public_key: PublicKeyBytes([9; 32]),
        clients_ipv4: None,
        client_subnet_len: 24,
    }
}

fn node(id: u32) -> NodeRecord {
    let b = u8::try_from(id).expect("small");
    NodeRecord {
        id,
        public_key: PublicKeyBytes([b; 32]),
        hostname: format!("n{id}"),
        addresses: vec![format!("10.99.0.{id}/32").parse().expect("v4")],
        state: NodeState::Active,
        drained: false,
        endpoints: vec![],
        gateway: false,
        public_wifi: false,
        client_prefixes: vec![],
        requested_roles: Default::default(),
        approved_roles: Default::default(),
    }
}

fn key(id: u32) -> PublicKeyBytes {
    PublicKeyBytes([u8::try_from(id).expect("small"); 32])
}

fn candidates(peers: &[u32]) -> Report {
    Report {
        links: vec![],
        candidates: peers
            .iter()
            .map(|p| Candidate {
                peer: key(*p),
                endpoint: None,
            })
            .collect(),
    }
}

fn measured(peer: u32, rtt_us: u32, loss_ppm: u32, up: bool) -> Report {
    Report {
        links: vec![LinkMeasurement {
            peer: key(peer),
            rtt_us,
            loss_ppm,
            up,
        }],
        candidates: vec![],
    }
}

/// Nodes 1..=n, all connected, no links.
fn mesh(n: u32) -> Controller {
    let mut core = Controller::new(settings(), (1..=n).map(node).collect(), vec![], vec![]);
    for id in 1..=n {
        core.handle_connect(id);
    }
    while core.poll_transmit().is_some() {}
    core
}

/// Plans and applies a report; returns the rows it changed.
fn send(core: &mut Controller, id: u32, report: &Report) -> Vec<LinkRecord> {
    let rows = core.plan_report(id, report);
    core.apply_links(&rows);
    rows
}

/// Both ends of `a – b` measured `rtt_us` and no loss.
fn measured_link(core: &mut Controller, a: u32, b: u32, rtt_us: u32) {
    send(core, a, &measured(b, rtt_us, 0, true));
    send(core, b, &measured(a, rtt_us, 0, true));
}

fn first_hop(core: &Controller, from: u32, to: u32) -> Option<u32> {
    core.routes_of(from)
        .into_iter()
        .find(|r| r.dst == to)
        .map(|r| r.via[0])
}

#[test]
fn a_one_sided_candidate_creates_nothing() {
    let mut core = mesh(3);
    assert!(core.plan_report(1, &candidates(&[2, 3])).is_empty());
    assert!(core.links().is_empty());
    assert!(core.routes_of(1).is_empty());
    assert_eq!(core.poll_transmit(), None, "no frame to anyone");
    // Repeating it changes nothing either.
    assert!(core.plan_report(1, &candidates(&[2, 3])).is_empty());
}

#[test]
fn both_sides_create_the_link() {
    let mut core = mesh(3);
    assert!(send(&mut core, 1, &candidates(&[2])).is_empty());
    // The reverse claim may be a measured link instead of a candidate.
    let rows = send(&mut core, 2, &measured(1, 700, 0, true));
    assert_eq!(rows.len(), 1);
    assert_eq!((rows[0].a, rows[0].b), (1, 2));
    assert_eq!(rows[0].rtt_us, None, "one end measured: still unmeasured");
    assert!(rows[0].up);
    assert_eq!(first_hop(&core, 1, 2), Some(2));
    assert_eq!(first_hop(&core, 1, 3), None, "3 never reported anything");
}

#[test]
fn a_one_sided_zero_rtt_measurement_changes_no_routes() {
    // 1 – 2 – 3 measured at 10 ms per hop; 4 is an attacker that claims
    // 1 ms links to 1 and 3, which never reported it.
    let mut core = mesh(4);
    measured_link(&mut core, 1, 2, 10_000);
    measured_link(&mut core, 2, 3, 10_000);
    let before: Vec<_> = (1..=3).map(|id| core.routes_of(id)).collect();
    while core.poll_transmit().is_some() {}
    let mut attack = candidates(&[1, 3]);
    attack.links = measured(1, 1, 0, true)
        .links
        .into_iter()
        .chain(measured(3, 1, 0, true).links)
        .collect();
    assert!(core.plan_report(4, &attack).is_empty(), "no row to write");
    assert!(core.plan_report(4, &attack).is_empty());
    assert_eq!(core.poll_transmit(), None, "no frame to anyone");
    let after: Vec<_> = (1..=3).map(|id| core.routes_of(id)).collect();
    assert_eq!(before, after);
    assert_eq!(first_hop(&core, 1, 3), Some(2));
    assert_eq!(core.links().len(), 2);
}

#[test]
fn the_larger_rtt_and_loss_of_both_ends_is_used() {
    let mut core = mesh(2);
    send(&mut core, 1, &candidates(&[2]));
    send(&mut core, 2, &candidates(&[1]));
    // One end's measurement alone leaves the link unmeasured.
    send(&mut core, 1, &measured(2, 2_000, 30_000, true));
    assert_eq!(core.links()[&(1, 2)].rtt_us, None);
    let unmeasured = Controller::link_metric(&core.links()[&(1, 2)]);
    // The other end claims less RTT but more loss: the larger of each.
    let rows = send(&mut core, 2, &measured(1, 1_500, 50_000, true));
    assert_eq!(rows.len(), 1);
    let link = core.links()[&(1, 2)];
    assert_eq!(link.rtt_us, Some(2_000));
    assert_eq!(link.loss_ppm, Some(50_000));
    assert_ne!(Controller::link_metric(&link), unmeasured);
    // An end lowering its claim pulls the RTT only down to the other
    // end's figure, never below it.
    send(&mut core, 1, &measured(2, 100, 0, true));
    assert_eq!(core.links()[&(1, 2)].rtt_us, Some(1_500));
}

#[test]
fn a_zero_rtt_end_cannot_pull_an_existing_link_down_in_cost() {
    // 1 – 2 – 3 at 10 ms per hop and a slow direct 1 – 3 (80 ms): 1 goes
    // through 2. 3 then claims 1 µs on 1 – 3; 1 still measures 80 ms.
    let mut core = mesh(3);
    measured_link(&mut core, 1, 2, 10_000);
    measured_link(&mut core, 2, 3, 10_000);
    measured_link(&mut core, 1, 3, 80_000);
    assert_eq!(first_hop(&core, 1, 3), Some(2));
    send(&mut core, 3, &measured(1, 1, 0, true));
    assert_eq!(core.links()[&(1, 3)].rtt_us, Some(80_000));
    assert_eq!(first_hop(&core, 1, 3), Some(2), "the lie moved no route");
    assert_eq!(first_hop(&core, 2, 1), Some(1));
}

#[test]
fn a_wildly_disagreeing_measurement_is_flagged_once() {
    let mut core = mesh(2);
    measured_link(&mut core, 1, 2, 20_000);
    assert_eq!(core.poll_dispute(), None, "agreeing ends");
    send(&mut core, 2, &measured(1, 1, 0, true));
    assert_eq!(
        core.poll_dispute(),
        Some(Dispute {
            a: 1,
            b: 2,
            node: 2,
            rtt_us: 1,
            other_rtt_us: 20_000
        })
    );
    assert_eq!(core.links()[&(1, 2)].rtt_us, Some(20_000), "not trusted");
    assert!(core.disputed_links().contains(&(1, 2)));
    // The same claim again is not reported again.
    send(&mut core, 2, &measured(1, 2, 0, true));
    assert_eq!(core.poll_dispute(), None);
    // Once the ends agree, a new disagreement is reported anew.
    send(&mut core, 2, &measured(1, 19_000, 0, true));
    assert!(core.disputed_links().is_empty());
    send(&mut core, 2, &measured(1, 10, 0, true));
    assert!(core.poll_dispute().is_some());
}

#[test]
fn the_dispute_rule_ignores_jitter_on_fast_links() {
    assert!(!disputed(200, 1_000), "5x but under the minimum difference");
    assert!(!disputed(10_000, 30_000), "3x: within the ratio");
    assert!(disputed(1_000, 20_000));
    assert!(disputed(0, DISPUTE_RTT_MIN_DIFF_US + 1));
    assert!(!disputed(0, DISPUTE_RTT_MIN_DIFF_US));
}

#[test]
fn down_from_either_end_takes_the_link_down() {
    let mut core = mesh(2);
    measured_link(&mut core, 1, 2, 1_000);
    assert!(core.links()[&(1, 2)].up);
    send(&mut core, 2, &measured(1, 1_000, 0, false));
    assert!(!core.links()[&(1, 2)].up, "2 says down");
    assert_eq!(first_hop(&core, 1, 2), None);
    // 1 still hears 2: the link stays down while 2 says so.
    assert!(core.plan_report(1, &measured(2, 1_000, 0, true)).is_empty());
    assert!(!core.links()[&(1, 2)].up);
    send(&mut core, 2, &measured(1, 1_000, 0, true));
    assert!(core.links()[&(1, 2)].up);
    assert_eq!(first_hop(&core, 1, 2), Some(2));
}

#[test]
fn a_stored_link_goes_down_on_one_ends_word_and_keeps_its_override() {
    // A link from before the restart (or the old rule): no claims yet.
    let stored = LinkRecord {
        a: 1,
        b: 2,
        rtt_us: Some(3_000),
        loss_ppm: Some(0),
        up: true,
        override_cost: Some(1_000),
    };
    let mut core = Controller::new(settings(), vec![node(1), node(2)], vec![], vec![stored]);
    // One end's RTT alone changes nothing on a stored link.
    assert!(core.plan_report(1, &measured(2, 1, 0, true)).is_empty());
    // Its failure does: a dead neighbour never reports.
    let rows = core.plan_report(1, &measured(2, 1, 0, false));
    assert_eq!(
        rows,
        vec![LinkRecord {
            up: false,
            ..stored
        }]
    );
    core.apply_links(&rows);
    send(&mut core, 1, &measured(2, 50_000, 0, true));
    send(&mut core, 2, &measured(1, 40_000, 0, true));
    let link = core.links()[&(1, 2)];
    assert_eq!(link.rtt_us, Some(50_000));
    assert_eq!(link.override_cost, Some(1_000));
    assert_eq!(Controller::link_metric(&link), 1_000, "the operator wins");
}

#[test]
fn revoking_a_node_forgets_its_claims() {
    let mut core = mesh(3);
    send(&mut core, 1, &candidates(&[2]));
    core.revoke(1);
    assert!(send(&mut core, 2, &candidates(&[1])).is_empty());
    assert!(core.links().is_empty());
}

#[test]
fn a_claim_on_a_neighbour_that_enrols_later_counts_once_it_is_active() {
    // 1 reports 3 before 3 enrolled; agents report again only when
    // something changes, so 1 will not repeat it.
    let mut core = Controller::new(settings(), (1..=2).map(node).collect(), vec![], vec![]);
    core.handle_connect(1);
    core.handle_connect(2);
    assert!(send(&mut core, 1, &candidates(&[2, 3])).is_empty());
    core.upsert_node(node(3), Vec::new());
    core.handle_connect(3);
    // 3's side is enough now: 1's earlier claim on its key counts.
    let rows = send(&mut core, 3, &candidates(&[1]));
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!((rows[0].a, rows[0].b), (1, 3));
    // A key named once and then dropped from the node's reports waits no
    // more: 4 enrols after 1 stopped naming it, and 4 alone makes no link.
    assert!(send(&mut core, 1, &candidates(&[2, 3])).is_empty());
    core.upsert_node(node(4), Vec::new());
    core.handle_connect(4);
    assert!(send(&mut core, 4, &candidates(&[1])).is_empty());
}
