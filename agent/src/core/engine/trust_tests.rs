//! What a lying or flooding neighbour can do to the engine: it cannot look
//! closer than it is, and its withdrawals cannot grow our state without
//! bound.

use freimesh_proto::mesh::{MeshMessage, PREFIXES_PER_MESSAGE, Timing, WirePrefix};

use super::repair::{MAX_DERIVED_ROUTES_PER_LINK, rtt_from_echo};
use super::*;

fn timing(echo_us: u32, held_us: u32) -> Timing {
    Timing {
        clock_us: 77,
        echo_us,
        held_us,
        interval_ms: 50,
    }
}

#[test]
fn rtt_is_the_elapsed_time_minus_an_honest_hold() {
    // We sent clock 1 000 µs and read 21 000 µs now: 20 ms have passed.
    let sent = [500, 1_000];
    assert_eq!(
        rtt_from_echo(21_000, timing(1_000, 5_000), &sent),
        Some(15_000)
    );
    assert_eq!(rtt_from_echo(21_000, timing(1_000, 20_000), &sent), Some(0));
    // Our clock wrapped since we sent the value.
    let sent = [u32::MAX - 999];
    assert_eq!(
        rtt_from_echo(9_000, timing(u32::MAX - 999, 4_000), &sent),
        Some(6_000)
    );
}

#[test]
fn a_lying_neighbour_cannot_look_close() {
    let sent = [1_000];
    // A hold longer than the time that passed is a lie: none of it counts,
    // and the sample is the whole elapsed time (never zero, never wrapped).
    for lie in [20_001, 1_000_000, u32::MAX] {
        assert_eq!(
            rtt_from_echo(21_000, timing(1_000, lie), &sent),
            Some(20_000),
            "held {lie}"
        );
    }
    // An echo we never sent (moved forward to shrink the elapsed time)
    // proves nothing.
    assert_eq!(rtt_from_echo(21_000, timing(20_990, 0), &sent), None);
    // Nor does "no echo" or one from a previous run.
    assert_eq!(rtt_from_echo(21_000, timing(0, 0), &[0]), None);
    let old = [21_000u32.wrapping_sub(10_000_001)];
    assert_eq!(rtt_from_echo(21_000, timing(old[0], 0), &old), None);
}

#[test]
fn a_lying_neighbour_gets_the_elapsed_time_as_its_rtt() {
    let start = Instant::now();
    let mut engine = Engine::new(secret(1), vec![spec(2)], 7, start).expect("engine");
    engine.start(start);
    let to_2 = engine.link_id("n2").expect("link");
    // We sent our clock at 1 ms; the neighbour answers 21 ms in, claiming
    // it held the value for more than a second.
    engine.links[to_2.0].remember_sent_clock(1_000);
    let now = start + Duration::from_millis(21);
    engine.handle_mesh_message(
        to_2,
        MeshMessage::LinkState {
            hears_you: true,
            timing: timing(1_000, 1_500_000),
        },
        now,
    );
    assert_eq!(engine.links[to_2.0].rtt, Some(Duration::from_millis(20)));
    // A forged echo right before "now" leaves the estimate alone.
    engine.handle_mesh_message(
        to_2,
        MeshMessage::LinkState {
            hears_you: true,
            timing: timing(20_999, 0),
        },
        now,
    );
    assert_eq!(engine.links[to_2.0].rtt, Some(Duration::from_millis(20)));
    assert_eq!(
        engine.link_states()[0].rtt,
        Some(Duration::from_millis(20)),
        "what the controller hears"
    );
}

fn host(i: u32) -> WirePrefix {
    WirePrefix {
        addr: IpAddr::V4(Ipv4Addr::from(0x0a32_0000 + i)),
        len: 32,
    }
}

#[test]
fn a_withdrawal_flood_leaves_bounded_state_and_honest_routes() {
    let now = Instant::now();
    let mut engine = Engine::new(secret(1), vec![spec(2), spec(3)], 7, now).expect("engine");
    let (n2, n3) = (
        engine.link_id("n2").expect("link"),
        engine.link_id("n3").expect("link"),
    );
    let net = |s: &str| s.parse::<IpNet>().expect("net");
    engine
        .insert_route(net("0.0.0.0/0"), vec![Hop::Link(n2), Hop::Link(n3)])
        .expect("default");
    engine
        .insert_route(net("10.99.0.2/32"), vec![Hop::Link(n2)])
        .expect("route");
    engine
        .insert_route(net("10.99.0.3/32"), vec![Hop::Link(n3)])
        .expect("route");
    let honest_routes = engine.table().len();
    // 100 full messages of distinct host routes, each covered only by the
    // default route: every one would become a repair route.
    let messages = 100;
    let per_message = u32::try_from(PREFIXES_PER_MESSAGE).expect("small");
    for m in 0..messages {
        let prefixes = (0..per_message)
            .map(|i| host(m * per_message + i))
            .collect();
        engine.handle_mesh_message(n2, MeshMessage::Withdraw(prefixes), now);
    }
    let sent = u64::from(messages * per_message);
    assert_eq!(engine.repair.derived_count(n2), MAX_DERIVED_ROUTES_PER_LINK);
    assert_eq!(
        engine.table().len(),
        honest_routes + MAX_DERIVED_ROUTES_PER_LINK
    );
    let status = engine.status(now);
    assert_eq!(
        status.withdrawals_over_cap,
        sent - MAX_DERIVED_ROUTES_PER_LINK as u64
    );
    // The honest routes are untouched; the first withdrawals took effect
    // (around the withdrawing neighbour), the rest follow the default.
    let hop = |e: &Engine, a: u32| e.table().lookup(IpAddr::V4(Ipv4Addr::from(a)));
    assert_eq!(hop(&engine, 0x0a63_0002), Some(Hop::Link(n2)));
    assert_eq!(hop(&engine, 0x0a63_0003), Some(Hop::Link(n3)));
    assert_eq!(hop(&engine, 0xc633_6401), Some(Hop::Link(n2)), "default");
    assert_eq!(hop(&engine, 0x0a32_0000), Some(Hop::Link(n3)), "repaired");
    let beyond = 0x0a32_0000 + u32::try_from(MAX_DERIVED_ROUTES_PER_LINK).expect("small");
    assert_eq!(hop(&engine, beyond), Some(Hop::Link(n2)), "over the cap");
    // The other neighbour still has its own budget.
    engine.handle_mesh_message(n3, MeshMessage::Withdraw(vec![host(100_000)]), now);
    assert_eq!(engine.repair.derived_count(n3), 1);
    // An empty lost set from the flooder gives everything back.
    engine.handle_mesh_message(n2, MeshMessage::LostSet(Vec::new()), now);
    assert_eq!(engine.repair.derived_count(n2), 0);
    assert_eq!(engine.table().len(), honest_routes + 1);
}

#[test]
fn honest_neighbours_still_measure_each_other() {
    // Both ends check the other's echoes against what they sent: honest
    // echoes pass (the in-memory underlay has no delay, so the round trip
    // is the time the messages waited for the next step: under 10 ms).
    let mut mesh = Mesh::new(2, &[(1, 2)], |_, d| vec![d]);
    mesh.advance(Duration::from_secs(3), Duration::from_millis(10));
    for n in [1, 2] {
        let rtt = mesh.engine(n).link_states()[0].rtt;
        assert!(
            rtt.is_some_and(|r| r < Duration::from_millis(10)),
            "node {n}: {rtt:?}"
        );
    }
}
