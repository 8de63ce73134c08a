//! Virtual-clock tests of link liveness: detection, hold-down, flap
//! damping, slow probes of down links, coalesced and followed heartbeats.

use super::*;

const MS: Duration = Duration::from_millis(1);

#[test]
fn comes_up_when_heard_and_goes_down_after_detection_time() {
    let t0 = Instant::now();
    let mut l = Liveness::new(Profile::DEFAULT);
    assert!(!l.is_up());
    assert_eq!(l.heard(t0), Some(Transition::Up));
    assert!(l.is_up());
    assert_eq!(l.tick(t0 + 149 * MS), None);
    assert_eq!(
        l.tick(t0 + 150 * MS),
        Some(Transition::Down {
            cause: DownCause::Silence,
            silent_for: 150 * MS
        })
    );
    assert!(!l.is_up());
}

#[test]
fn recovery_waits_for_the_hold_down_and_flaps_double_it() {
    let t0 = Instant::now();
    let mut l = Liveness::new(Profile::DEFAULT);
    l.heard(t0);
    l.tick(t0 + 200 * MS);
    assert!(!l.is_up());
    let t1 = t0 + 300 * MS;
    assert_eq!(l.heard(t1), None, "heard again: on probation");
    // Keep hearing it every 40 ms for the hold-down, which doubled
    // because the failure came soon after coming up.
    let hold = Profile::DEFAULT.hold_down * 2;
    let mut t = t1;
    while t < t1 + hold {
        t += 40 * MS;
        if let Some(tr) = l.heard(t) {
            assert_eq!(tr, Transition::Up);
        }
    }
    assert!(l.is_up(), "up after {hold:?} of stable hearing");
    assert!(t - t1 >= hold);
}

#[test]
fn silence_during_hold_down_restarts_it_with_a_bigger_penalty() {
    let t0 = Instant::now();
    let mut l = Liveness::new(Profile::FAST);
    l.heard(t0);
    l.tick(t0 + 40 * MS);
    l.heard(t0 + 50 * MS);
    let before = l.hold_down;
    assert_eq!(
        l.tick(t0 + 100 * MS),
        None,
        "silence on probation is not a new down event"
    );
    assert!(matches!(l.state, State::Down { .. }));
    assert_eq!(l.hold_down, before * 2);
}

#[test]
fn peer_that_does_not_hear_us_takes_the_link_down() {
    let t0 = Instant::now();
    let mut l = Liveness::new(Profile::DEFAULT);
    l.heard(t0);
    assert_eq!(
        l.peer_state(false, t0 + 10 * MS),
        Some(Transition::Down {
            cause: DownCause::PeerDoesNotHearUs,
            silent_for: Duration::ZERO
        })
    );
}

#[test]
fn carrier_loss_is_immediate_and_forgets_old_proof() {
    let t0 = Instant::now();
    let mut l = Liveness::new(Profile::METERED);
    l.heard(t0);
    assert!(matches!(
        l.carrier_lost(t0 + 5 * MS),
        Some(Transition::Down {
            cause: DownCause::Carrier,
            ..
        })
    ));
    assert!(!l.hears_peer(t0 + 6 * MS));
}

#[test]
fn plain_wireguard_links_are_always_up_and_never_probed() {
    let t0 = Instant::now();
    let mut l = Liveness::new(Profile::WIREGUARD);
    assert!(l.is_up());
    assert!(!l.heartbeat_due(t0, false));
    assert_eq!(l.tick(t0 + Duration::from_secs(3600)), None);
    assert_eq!(l.carrier_lost(t0), None);
    assert!(l.is_up());
}

/// A link that loses 30 % of its packets at random: it may go down
/// once, but must not come back and go down again and again.
#[test]
fn a_lossy_link_does_not_flap() {
    let t0 = Instant::now();
    let mut l = Liveness::new(Profile::DEFAULT);
    let mut transitions = Vec::new();
    let mut seed: u64 = 0x5eed;
    let interval = Profile::DEFAULT.interval.unwrap_or(MS);
    l.heard(t0);
    // Five minutes of heartbeats, each lost with probability 0.3.
    for i in 1..6000u32 {
        let now = t0 + interval * i;
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let lost = (seed >> 33) % 100 < 30;
        if let Some(t) = l.tick(now) {
            transitions.push(t);
        }
        if !lost && let Some(t) = l.heard(now) {
            transitions.push(t);
        }
    }
    let downs = transitions
        .iter()
        .filter(|t| matches!(t, Transition::Down { .. }))
        .count();
    assert!(downs <= 1, "a 30 % lossy link flapped: {transitions:?}");
}

#[test]
fn a_clean_link_recovers_after_the_hold_down() {
    let t0 = Instant::now();
    let mut l = Liveness::new(Profile::FAST);
    l.heard(t0);
    l.tick(t0 + 30 * MS);
    assert!(!l.is_up());
    let mut t = t0 + 40 * MS;
    let mut up_at = None;
    while t < t0 + Duration::from_secs(5) {
        if l.heard(t) == Some(Transition::Up) && up_at.is_none() {
            up_at = Some(t);
        }
        l.tick(t);
        t += 10 * MS;
    }
    let up_at = up_at.expect("recovered");
    assert!(
        up_at - (t0 + 40 * MS) >= Profile::FAST.hold_down,
        "waited the hold-down"
    );
}

/// Heartbeats that arrive late (a loaded sender's timer drifts) are not
/// losses: the link must still recover.
#[test]
fn late_heartbeats_still_recover() {
    let t0 = Instant::now();
    let mut l = Liveness::new(Profile::FAST);
    l.heard(t0);
    l.tick(t0 + 40 * MS);
    let mut t = t0 + 50 * MS;
    let mut up = false;
    while t < t0 + Duration::from_secs(10) && !up {
        up = l.heard(t) == Some(Transition::Up);
        l.tick(t);
        t += 14 * MS;
    }
    assert!(
        up,
        "a link heard every 14 ms (10 ms interval) never recovered"
    );
}

#[test]
fn a_slower_neighbour_is_judged_by_its_own_interval() {
    let t0 = Instant::now();
    let mut l = Liveness::new(Profile::DEFAULT);
    l.heard(t0);
    l.set_peer_interval(Duration::from_secs(1));
    assert_eq!(
        l.tick(t0 + 500 * MS),
        None,
        "a metered neighbour is silent for up to 3 s"
    );
    assert!(matches!(
        l.tick(t0 + 3000 * MS),
        Some(Transition::Down { .. })
    ));
}

/// Next to a slower neighbour the deadline must lie in the future: a
/// deadline at our own detection time would already have passed, and a
/// timer that sleeps until it would spin.
#[test]
fn next_to_a_slower_neighbour_the_deadline_is_never_in_the_past() {
    let t0 = Instant::now();
    let mut l = Liveness::new(Profile::DEFAULT);
    l.heard(t0);
    l.set_peer_interval(Duration::from_secs(1));
    let now = t0 + 500 * MS;
    l.sent(now);
    assert_eq!(l.tick(now), None);
    let deadline = l.next_deadline().expect("a deadline");
    assert!(deadline > now, "deadline {:?} before now", now - deadline);
}

#[test]
fn heartbeats_are_suppressed_by_other_traffic() {
    let t0 = Instant::now();
    let mut l = Liveness::new(Profile::DEFAULT);
    assert!(l.heartbeat_due(t0, false));
    l.sent(t0);
    assert_eq!(l.heartbeat_deadline(t0), Some(t0 + 50 * MS));
    // Within the coalescing slack (a quarter of 50 ms) it may go early.
    assert!(!l.heartbeat_due(t0 + 37 * MS, false));
    assert!(l.heartbeat_due(t0 + 38 * MS, false));
    l.sent(t0 + 45 * MS);
    assert_eq!(l.heartbeat_deadline(t0), Some(t0 + 95 * MS));
}

/// Pulled forward by a faster link's wake-ups, a heartbeat keeps its
/// own schedule: one per interval, never more.
#[test]
fn early_heartbeats_keep_the_rate() {
    let t0 = Instant::now();
    let mut l = Liveness::new(Profile::DEFAULT);
    l.sent(t0);
    let mut sent = Vec::new();
    // Woken every 10 ms (a fast link next to it), never joining.
    for step in 1..=100u32 {
        let now = t0 + 10 * MS * step;
        if l.take_heartbeat(now, false) {
            sent.push(now);
        }
        assert!(
            l.heartbeat_deadline(now).is_some_and(|d| d > now),
            "never late"
        );
    }
    assert_eq!(sent.len(), 20, "one per 50 ms over 1 s: {sent:?}");
    // Joining a due link of the same interval moves the schedule.
    let now = t0 + Duration::from_millis(1040);
    let due = l.heartbeat_deadline(now).expect("probed");
    assert!(due > now && due <= now + 50 * MS / COALESCING_DIVISOR);
    assert!(l.take_heartbeat(now, true));
    assert_eq!(l.heartbeat_deadline(now), Some(now + 50 * MS));
    // A link that carried traffic since does not join from further
    // than the ride-along slack.
    l.sent(now + 10 * MS);
    let now = now + 30 * MS;
    assert!(!l.heartbeat_due(now, true), "due in 30 ms, busy");
    assert!(!l.take_heartbeat(now, true));
}

/// Following answers the neighbour's heartbeat only when it beats at
/// our interval and ours is older than an eighth of one.
#[test]
fn following_needs_the_same_interval_and_the_guard() {
    let t0 = Instant::now();
    let mut l = Liveness::new(Profile::DEFAULT);
    l.heard(t0);
    assert!(l.take_heartbeat(t0, false));
    assert!(
        !l.take_following_heartbeat(t0 + 20 * MS),
        "interval unknown"
    );
    l.set_peer_interval(Duration::from_millis(10));
    assert!(!l.take_following_heartbeat(t0 + 20 * MS), "a faster peer");
    l.set_peer_interval(50 * MS);
    assert!(!l.take_following_heartbeat(t0 + 6 * MS), "within the guard");
    assert!(l.take_following_heartbeat(t0 + 7 * MS));
    assert_eq!(l.heartbeat_deadline(t0), Some(t0 + 57 * MS));
    l.sent(t0 + 20 * MS);
    assert!(!l.take_following_heartbeat(t0 + 40 * MS), "busy");
}

/// A down link is probed four times a second, not at the profile's
/// rate (a dead neighbour's queue in the kernel fills the socket), and
/// goes back to the full rate as soon as it is heard again.
#[test]
fn a_down_link_is_probed_slowly_until_heard() {
    let t0 = Instant::now();
    let mut l = Liveness::new(Profile::FAST);
    l.heard(t0);
    l.sent(t0);
    assert!(l.carrier_lost(t0 + MS).is_some());
    let mut probes = 0;
    let mut now = t0;
    while now < t0 + Duration::from_secs(3) {
        now += MS;
        if l.take_heartbeat(now, false) {
            probes += 1;
        }
    }
    assert!((12..=14).contains(&probes), "{probes} probes in 3 s");
    // Heard again: on probation, we say so at once, and the next
    // heartbeat goes at once.
    assert_eq!(l.heard(now), None);
    assert!(l.take_hearing_resumed());
    assert!(!l.take_hearing_resumed());
    assert!(matches!(l.state, State::HoldDown { .. }));
    assert!(l.heartbeat_due(now, false));
    assert_eq!(l.heartbeat_interval(), Profile::FAST.interval);
}
