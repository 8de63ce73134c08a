//! Failure schedules. Each scenario is a function of the mesh and a seed:
//! a list of timed [`Action`]s the simulator carries out. Every failure is
//! healed before the schedule ends, so the run can end with the whole mesh
//! converged and checked.

use std::time::Duration;

use super::queue::{Nanos, nanos};
use super::rng::SimRng;

/// One thing that happens to the mesh.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// The underlay link (index into the mesh's links) stops or resumes
    /// carrying datagrams.
    Cut(usize),
    Restore(usize),
    /// A node's agent dies (its engine and session are gone) or starts
    /// again from nothing.
    Crash(usize),
    Restart(usize),
    /// The controller process stops, or starts again from its store.
    ControllerDown,
    ControllerUp,
    /// An operator drains or undrains a node through the admin API.
    Drain(usize),
    Undrain(usize),
}

/// The scenarios `freimesh-testbed sim --scenario` knows.
pub const SCENARIOS: [&str; 7] = [
    "mixed",
    "link-failures",
    "double-link-failures",
    "node-crashes",
    "controller-away",
    "flapping-link",
    "drain",
];

/// How long a failure lasts before it is healed.
const FAILURE_LASTS: Duration = Duration::from_secs(3);
/// How long a crashed node stays down.
const CRASH_LASTS: Duration = Duration::from_secs(5);
/// How long the controller stays away.
const CONTROLLER_AWAY: Duration = Duration::from_secs(20);
/// One flap: down this long, then up as long.
const FLAP_HALF_PERIOD: Duration = Duration::from_millis(400);
/// Flaps in one flapping episode.
const FLAPS: u32 = 10;

/// The schedule of `name` over `[start, end)`: one failure episode every
/// `every`. `links` are the mesh's links as node pairs, `nodes` its size.
pub fn schedule(
    name: &str,
    seed: u64,
    nodes: usize,
    links: &[(usize, usize)],
    start: Nanos,
    end: Nanos,
    every: Duration,
) -> Option<Vec<(Nanos, Action)>> {
    if !SCENARIOS.contains(&name) {
        return None;
    }
    let mut rng = SimRng::new(seed ^ 0x5CE7_A210);
    let mut out = Vec::new();
    let mut t = start;
    let mut episode = 0u64;
    while t < end {
        let kind = match name {
            "mixed" => [
                "link-failures",
                "double-link-failures",
                "node-crashes",
                "flapping-link",
                "drain",
                "link-failures",
            ][rng.index(6)],
            // The controller goes away now and then in a mixed run too.
            other => other,
        };
        let kind = if name == "mixed" && episode % 10 == 9 {
            "controller-away"
        } else {
            kind
        };
        episode += 1;
        match kind {
            "link-failures" => {
                let l = rng.index(links.len());
                out.push((t, Action::Cut(l)));
                out.push((t + nanos(FAILURE_LASTS), Action::Restore(l)));
            }
            "double-link-failures" => {
                let a = rng.index(links.len());
                let b = rng.index(links.len());
                out.push((t, Action::Cut(a)));
                out.push((t, Action::Cut(b)));
                out.push((t + nanos(FAILURE_LASTS), Action::Restore(a)));
                out.push((t + nanos(FAILURE_LASTS), Action::Restore(b)));
            }
            "node-crashes" => {
                let n = rng.index(nodes);
                out.push((t, Action::Crash(n)));
                out.push((t + nanos(CRASH_LASTS), Action::Restart(n)));
            }
            "controller-away" => {
                // A link fails while the controller is away: agents repair
                // on their own and the controller catches up on return.
                let l = rng.index(links.len());
                out.push((t, Action::ControllerDown));
                out.push((t + nanos(Duration::from_secs(2)), Action::Cut(l)));
                out.push((t + nanos(CONTROLLER_AWAY), Action::ControllerUp));
                out.push((
                    t + nanos(CONTROLLER_AWAY + FAILURE_LASTS),
                    Action::Restore(l),
                ));
                t += nanos(CONTROLLER_AWAY);
            }
            "flapping-link" => {
                let l = rng.index(links.len());
                for i in 0..FLAPS {
                    let at = t + nanos(FLAP_HALF_PERIOD * 2 * i);
                    out.push((at, Action::Cut(l)));
                    out.push((at + nanos(FLAP_HALF_PERIOD), Action::Restore(l)));
                }
                t += nanos(FLAP_HALF_PERIOD * 2 * FLAPS);
            }
            "drain" => {
                let n = rng.index(nodes);
                out.push((t, Action::Drain(n)));
                out.push((t + nanos(FAILURE_LASTS), Action::Undrain(n)));
            }
            _ => {}
        }
        t += nanos(every) + rng.below(nanos(every) / 2);
    }
    out.sort_by_key(|(at, _)| *at);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_failure_heals_and_the_schedule_is_a_function_of_the_seed() {
        let links: Vec<(usize, usize)> = (0..20).map(|i| (i, i + 1)).collect();
        let end = nanos(Duration::from_secs(120));
        for name in SCENARIOS {
            let a = schedule(name, 5, 21, &links, 0, end, Duration::from_secs(4)).expect("known");
            let b = schedule(name, 5, 21, &links, 0, end, Duration::from_secs(4)).expect("known");
            assert_eq!(a, b, "{name}");
            assert!(!a.is_empty(), "{name}: no action");
            assert!(
                a.windows(2).all(|w| w[0].0 <= w[1].0),
                "{name}: not in time order"
            );
            let mut cut = [0i32; 20];
            let mut crashed = [0i32; 21];
            let mut drained = [0i32; 21];
            let mut away = 0;
            for (_, action) in &a {
                match *action {
                    Action::Cut(l) => cut[l] += 1,
                    Action::Restore(l) => cut[l] -= 1,
                    Action::Crash(n) => crashed[n] += 1,
                    Action::Restart(n) => crashed[n] -= 1,
                    Action::Drain(n) => drained[n] += 1,
                    Action::Undrain(n) => drained[n] -= 1,
                    Action::ControllerDown => away += 1,
                    Action::ControllerUp => away -= 1,
                }
            }
            assert!(
                cut.iter().chain(&crashed).chain(&drained).all(|c| *c == 0) && away == 0,
                "{name}: a failure is not healed"
            );
        }
        assert!(schedule("nonsense", 5, 21, &links, 0, end, Duration::from_secs(4)).is_none());
    }
}
