//! The client's 1 kHz UDP probe flow to the internet host, and the gateway
//! failover scenario the lab and `freimesh-testbed gateway-bench` play
//! under it: the primary gateway is killed (SIGKILL) and started again,
//! then its uplink is cut silently and restored. Each event's window of
//! the flow reports its longest gap (`failover::probe::window_stats`).

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use anyhow::{Context as _, bail};
use ipnet::Ipv4Net;

use super::{CityLab, GW1, INTERNET_HOST, T1};
use crate::failover::probe::{WindowStats, now_ns, window_stats};
use crate::failover::probe_flow::ProbeFlow;

const PROBE_PORT: u16 = 40_000;
/// Steady flow before the first event, and after each: long enough for
/// a failover (target 300 ms) and a controller recomputation to finish,
/// so each window holds exactly one event's effect.
const EVENT_SPACING: Duration = Duration::from_secs(4);
/// How long the restarted gateway may take to enrol again, get its links
/// up and win back the default route.
const RECOVER_TIMEOUT: Duration = Duration::from_secs(30);

/// One event of the scenario and what the flow saw from it to the next.
#[derive(Debug, Clone)]
pub struct EventGap {
    pub event: &'static str,
    /// Whether this event is a failure (its gap is the failover time).
    pub failure: bool,
    pub stats: WindowStats,
}

/// What the failover scenario measured.
#[derive(Debug, Clone)]
pub struct FailoverReport {
    pub client: Ipv4Net,
    /// The client's address after the scenario.
    pub client_after: Option<Ipv4Net>,
    pub events: Vec<EventGap>,
    pub sent: u64,
    pub received: u64,
}

impl FailoverReport {
    /// The event's window.
    pub fn gap(&self, event: &str) -> Option<&EventGap> {
        self.events.iter().find(|e| e.event == event)
    }

    /// One line per event.
    pub fn table(&self) -> String {
        let mut out = format!(
            "client {} (after: {}), probes sent {}, received {}\n",
            self.client,
            self.client_after
                .map_or_else(|| "none".to_owned(), |a| a.to_string()),
            self.sent,
            self.received
        );
        for e in &self.events {
            out.push_str(&format!(
                "  {:<28} longest gap {:>8.1} ms  sent {:>6} received {:>6}  flowing at end: {}\n",
                e.event,
                e.stats.longest_gap_ms,
                e.stats.sent,
                e.stats.received,
                e.stats.flowing_at_end
            ));
        }
        out
    }
}

pub const STEADY: &str = "steady (via gw1)";
pub const KILL: &str = "gw1 killed";
pub const RESTART: &str = "gw1 restarted";
pub const UPLINK_CUT: &str = "gw1 uplink cut silently";
pub const UPLINK_RESTORED: &str = "gw1 uplink restored";

/// Plays the scenario under a probe flow from the client (which must hold
/// a lease and reach the internet through gw1).
pub fn run_scenario(
    lab: &mut CityLab,
    binary: &Path,
    client: Ipv4Net,
) -> anyhow::Result<FailoverReport> {
    lab.wait_default_via(T1, GW1, RECOVER_TIMEOUT)?;
    let flow = ProbeFlow::start(
        binary,
        &lab.mesh.lab.ns("client"),
        IpAddr::V4(client.addr()),
        &lab.mesh.lab.ns("inet"),
        SocketAddr::new(IpAddr::V4(INTERNET_HOST), PROBE_PORT),
        lab.mesh.dir(),
    )?;
    let mut marks: Vec<(&'static str, bool, u64)> = vec![(STEADY, false, now_ns())];
    std::thread::sleep(EVENT_SPACING);

    marks.push((KILL, true, now_ns()));
    lab.mesh.kill(GW1);
    std::thread::sleep(EVENT_SPACING);

    marks.push((RESTART, false, now_ns()));
    lab.mesh.restart(GW1)?;
    lab.wait_default_via(T1, GW1, RECOVER_TIMEOUT)
        .context("after its restart")?;
    std::thread::sleep(EVENT_SPACING);

    marks.push((UPLINK_CUT, true, now_ns()));
    lab.cut_uplink(GW1)?;
    std::thread::sleep(EVENT_SPACING);

    marks.push((UPLINK_RESTORED, false, now_ns()));
    lab.restore_uplink(GW1)?;
    std::thread::sleep(EVENT_SPACING);
    let end = now_ns();

    let (sent, received) = flow.finish()?;
    if received.is_empty() {
        bail!("no probe reached the internet host\n{}", lab.diagnose());
    }
    let mut events = Vec::new();
    for (i, &(event, failure, start)) in marks.iter().enumerate() {
        let stop = marks.get(i + 1).map_or(end, |m| m.2);
        events.push(EventGap {
            event,
            failure,
            stats: window_stats(&sent, &received, start, stop),
        });
    }
    let total = window_stats(&sent, &received, marks[0].2, end);
    Ok(FailoverReport {
        client,
        client_after: lab.client_address()?,
        events,
        sent: total.sent,
        received: total.received,
    })
}
