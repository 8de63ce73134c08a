use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use super::core::*;

fn controller() -> Upstream {
    Upstream::Controller(SocketAddr::from(([192, 0, 2, 10], 7700)))
}

fn link_local(i: u16) -> IpAddr {
    IpAddr::V6(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, i >> 8, i & 0xff))
}

fn mesh(name: &str) -> Origin {
    Origin::MeshInterface(name.to_owned())
}

fn core() -> RelayCore {
    let mut core = RelayCore::new(RelayLimits::default());
    core.handle_upstream(Some(controller()));
    core
}

#[test]
fn only_mesh_link_local_and_overlay_connections_are_relayed_and_only_upstream() {
    let t0 = Instant::now();
    let mut core = core();
    assert_eq!(
        core.handle_accept(Origin::Other, link_local(1), t0),
        Err(Refusal::NotServed)
    );
    let (_, upstream) = core
        .handle_accept(mesh("mesh0"), link_local(1), t0)
        .expect("mesh");
    assert_eq!(upstream, controller(), "the one place a relay connects to");
    let overlay = IpAddr::V6("fd00::9".parse().expect("ip"));
    let (_, upstream) = core
        .handle_accept(Origin::Overlay, overlay, t0)
        .expect("overlay");
    assert_eq!(upstream, controller());
}

#[test]
fn without_a_session_of_its_own_the_relay_refuses() {
    let t0 = Instant::now();
    let mut core = RelayCore::new(RelayLimits::default());
    assert_eq!(
        core.handle_accept(mesh("mesh0"), link_local(1), t0),
        Err(Refusal::NoUpstream)
    );
    let exit = Upstream::Relay("[fd00::1]:51819".parse().expect("addr"));
    core.handle_upstream(Some(exit));
    assert_eq!(
        core.handle_accept(mesh("mesh0"), link_local(1), t0)
            .map(|(_, u)| u),
        Ok(exit)
    );
}

#[test]
fn caps_per_interface_and_over_all_mesh_interfaces() {
    let t0 = Instant::now();
    let mut core = core();
    let mut source = 0;
    let mut accept = |core: &mut RelayCore, origin: Origin| {
        source += 1;
        core.handle_accept(origin, link_local(source), t0)
    };
    let mut ids = Vec::new();
    for _ in 0..MAX_PER_INTERFACE {
        ids.push(accept(&mut core, mesh("mesh0")).expect("under the cap").0);
    }
    assert_eq!(
        accept(&mut core, mesh("mesh0")),
        Err(Refusal::InterfaceFull)
    );
    // Other interfaces still get theirs, up to the total.
    for i in 1..MAX_ON_MESH_INTERFACES / MAX_PER_INTERFACE {
        for _ in 0..MAX_PER_INTERFACE {
            accept(&mut core, mesh(&format!("mesh{i}"))).expect("under the cap");
        }
    }
    assert_eq!(accept(&mut core, mesh("mesh9")), Err(Refusal::Full));
    // The overlay has its own cap.
    accept(&mut core, Origin::Overlay).expect("overlay");
    core.handle_closed(ids[0]);
    accept(&mut core, mesh("mesh0")).expect("a slot came back");
}

#[test]
fn one_source_is_rate_limited() {
    let t0 = Instant::now();
    let mut core = core();
    let src = link_local(7);
    for _ in 0..SOURCE_BURST {
        let (id, _) = core.handle_accept(mesh("mesh0"), src, t0).expect("burst");
        core.handle_closed(id);
    }
    assert_eq!(
        core.handle_accept(mesh("mesh0"), src, t0),
        Err(Refusal::SourceRate)
    );
    assert!(
        core.handle_accept(mesh("mesh0"), src, t0 + SOURCE_REFILL)
            .is_ok()
    );
    // On the overlay a member relaying for others gets a larger budget.
    let member = IpAddr::V6("fd00::2".parse().expect("ip"));
    for _ in 0..OVERLAY_SOURCE_BURST {
        let (id, _) = core
            .handle_accept(Origin::Overlay, member, t0)
            .expect("burst");
        core.handle_closed(id);
    }
    assert_eq!(
        core.handle_accept(Origin::Overlay, member, t0),
        Err(Refusal::SourceRate)
    );
    assert!(
        core.handle_accept(Origin::Overlay, member, t0 + OVERLAY_SOURCE_REFILL)
            .is_ok()
    );
}

#[test]
fn a_flood_of_thousands_of_sources_costs_bounded_memory() {
    let t0 = Instant::now();
    let mut core = core();
    let mut accepted = 0;
    for i in 0..20_000u32 {
        let ip = IpAddr::V6(Ipv6Addr::from(0xfe80_u128 << 112 | u128::from(i)));
        let now = t0 + Duration::from_millis(10 * u64::from(i));
        if let Ok((id, _)) = core.handle_accept(mesh("mesh0"), ip, now) {
            accepted += 1;
            core.handle_closed(id);
        }
        assert!(core.tracked_sources() <= MAX_TRACKED_SOURCES);
        assert!(core.open() <= MAX_PER_INTERFACE);
    }
    // Sources are forgotten once their buckets are whole again, so the
    // flood is admitted at the rate the table turns over, not at once.
    assert!(accepted > MAX_TRACKED_SOURCES, "{accepted}");
    assert!(accepted < 20_000, "{accepted}");
}

#[test]
fn bytes_beyond_the_burst_wait_at_the_byte_rate() {
    let t0 = Instant::now();
    let mut core = core();
    let (id, _) = core
        .handle_accept(mesh("mesh0"), link_local(1), t0)
        .expect("accept");
    let burst = usize::try_from(BYTE_BURST).expect("usize");
    assert_eq!(core.handle_transfer(id, burst, t0), Some(Duration::ZERO));
    let second = usize::try_from(BYTES_PER_SECOND).expect("usize");
    assert_eq!(
        core.handle_transfer(id, second, t0),
        Some(Duration::from_secs(1))
    );
    // After the wait the budget is back at zero.
    assert_eq!(
        core.handle_transfer(id, 0, t0 + Duration::from_secs(1)),
        Some(Duration::ZERO)
    );
    assert_eq!(core.handle_transfer(RelayId(999), 1, t0), None, "unknown");
}

#[test]
fn idle_connections_are_closed_once() {
    let t0 = Instant::now();
    let mut core = core();
    let (quiet, _) = core
        .handle_accept(mesh("mesh0"), link_local(1), t0)
        .expect("a");
    let (busy, _) = core
        .handle_accept(mesh("mesh0"), link_local(2), t0)
        .expect("b");
    assert_eq!(core.poll_timeout(), Some(t0 + IDLE_TIMEOUT));
    let later = t0 + IDLE_TIMEOUT - Duration::from_secs(1);
    core.handle_transfer(busy, 10, later);
    core.handle_tick(t0 + IDLE_TIMEOUT);
    assert_eq!(core.poll_close(), Some(quiet));
    assert_eq!(core.poll_close(), None);
    core.handle_tick(t0 + IDLE_TIMEOUT + Duration::from_millis(500));
    assert_eq!(core.poll_close(), None, "closed once");
    assert_eq!(
        core.handle_transfer(quiet, 1, later),
        None,
        "closing: nothing more"
    );
    assert_eq!(core.poll_timeout(), Some(later + IDLE_TIMEOUT));
}
