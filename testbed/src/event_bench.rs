//! `freimesh-testbed bench-events`: how fast the controller's events reach
//! a subscriber of `GET /api/v1/events/stream` (what the TUI reads), on
//! the demo mesh. Target: ≤ 100 ms.
//!
//! * **drain**: from sending `POST /nodes/{id}/drain` (or `/undrain`) to
//!   the `drained` (`undrained`) event arriving on the stream.
//! * **failover**: a link on the demo traffic's path is cut silently (the
//!   demo's relay drops everything); the agent detects it and switches on
//!   its own, then reports. Measured: from the agent's switch (the event's
//!   `at_ms`, which the controller back-dates by the age the agent
//!   reports) to the event arriving, on the machine's one wall clock; and,
//!   for scale, from the cut to the arrival (detection included).

use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use freimesh_proto::api::EventKind;

use crate::api::Arrived;
use crate::demo::ControlledDemo;
use crate::schedule::active_next_hop;
use crate::traffic;

/// How long one event may take before the run counts it as lost.
const EVENT_TIMEOUT: Duration = Duration::from_secs(10);

/// Figures of one kind of measurement, in milliseconds.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Figures {
    pub what: String,
    pub samples: usize,
    pub min_ms: f64,
    pub median_ms: f64,
    pub p95_ms: f64,
    pub max_ms: f64,
}

impl Figures {
    fn of(what: &str, mut samples: Vec<f64>) -> Self {
        samples.sort_by(f64::total_cmp);
        let at = |q: f64| {
            if samples.is_empty() {
                return f64::NAN;
            }
            // Nearest rank; the sample counts are small.
            #[allow(
                clippy::cast_possible_truncation,
                clippy::cast_sign_loss,
                clippy::cast_precision_loss
            )]
            let rank = ((q * samples.len() as f64).ceil() as usize).clamp(1, samples.len());
            samples[rank - 1]
        };
        Self {
            what: what.to_owned(),
            samples: samples.len(),
            min_ms: at(0.0),
            median_ms: at(0.5),
            p95_ms: at(0.95),
            max_ms: at(1.0),
        }
    }

    fn line(&self) -> String {
        format!(
            "{:<48} {:>3}  min {:>7.1}  median {:>7.1}  p95 {:>7.1}  max {:>7.1} ms",
            self.what, self.samples, self.min_ms, self.median_ms, self.p95_ms, self.max_ms
        )
    }
}

/// Runs the bench: `rounds` drains and undrains, `cuts` link cuts.
pub fn run(
    dir: &std::path::Path,
    rounds: usize,
    cuts: usize,
    json: bool,
) -> anyhow::Result<Vec<Figures>> {
    let demo = ControlledDemo::start(dir, 6)?;
    let target = std::net::IpAddr::from(demo.target_v4);
    let source = &demo.nodes[0];
    traffic::retry(Duration::from_secs(20), || {
        let s = traffic::ping(&source.socket, target, 1)?;
        if s.received == 0 {
            bail!("{target} unreachable from {}", source.name)
        }
        // Alternates in place: the cut below must be repairable locally.
        let status = traffic::status(&source.socket)?;
        if status.engine.routes.iter().all(|r| r.via.len() < 2) {
            bail!("no alternates yet")
        }
        Ok(())
    })?;
    let api = &demo.api;
    let ids = api.nodes()?;
    let id_of = |name: &str| ids.iter().find(|n| n.hostname == name).map(|n| n.id);
    let source_id = id_of(&source.name).context("the source in GET /nodes")?;
    let stream = api.subscribe(api.last_seq()?)?;

    println!("\nevent delivery ({rounds} drains and undrains, {cuts} link cuts):");
    let drained_node = &demo.nodes[1];
    let drained_id = id_of(&drained_node.name).context("node b in GET /nodes")?;
    let (mut drain_ms, mut undrain_ms) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        for (on, samples) in [(true, &mut drain_ms), (false, &mut undrain_ms)] {
            let sent = Instant::now();
            api.drain(drained_id, on)?;
            let arrived = wait_for(&stream, |k| {
                *k == if on {
                    EventKind::Drained { node: drained_id }
                } else {
                    EventKind::Undrained { node: drained_id }
                }
            })?;
            samples.push(ms(arrived.at.duration_since(sent)));
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    let (mut delivery_ms, mut from_cut_ms, mut detection_ms) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..cuts {
        let hop = next_hop(&demo)?;
        let relay = demo
            .underlay
            .relay(0, hop)
            .context("the next hop's link is not relayed")?;
        let cut_at = Instant::now();
        relay.set_cut(true);
        let arrived = wait_for(
            &stream,
            |k| matches!(k, EventKind::Failover { node, .. } if *node == source_id),
        );
        relay.set_cut(false);
        let arrived = arrived?;
        let event_ms = u64::try_from(arrived.event.at_ms).unwrap_or(0);
        #[allow(clippy::cast_precision_loss)]
        delivery_ms.push(arrived.received_ms.saturating_sub(event_ms) as f64);
        from_cut_ms.push(ms(arrived.at.duration_since(cut_at)));
        if let EventKind::Failover {
            detection_ms: d, ..
        } = arrived.event.kind
        {
            detection_ms.push(f64::from(d));
        }
        // The link comes back (and is reported up) before the next cut.
        let back = Instant::now();
        while next_hop(&demo).ok() != Some(hop) && back.elapsed() < Duration::from_secs(20) {
            std::thread::sleep(Duration::from_millis(100));
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    let figures = vec![
        Figures::of("drain: POST → event on the stream", drain_ms),
        Figures::of("undrain: POST → event on the stream", undrain_ms),
        Figures::of(
            "failover: agent's switch → event on the stream",
            delivery_ms,
        ),
        Figures::of("failover: silent cut → event on the stream", from_cut_ms),
        Figures::of("failover: detection time the agent reported", detection_ms),
    ];
    for f in &figures {
        println!("   {}", f.line());
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&figures)?);
    }
    let ControlledDemo { agents, .. } = demo;
    for agent in agents {
        agent.stop(Duration::from_secs(5))?;
    }
    Ok(figures)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// The next event on `stream` whose kind matches.
fn wait_for(
    stream: &Receiver<Arrived>,
    wanted: impl Fn(&EventKind) -> bool,
) -> anyhow::Result<Arrived> {
    let deadline = Instant::now() + EVENT_TIMEOUT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let arrived = stream
            .recv_timeout(left)
            .context("no such event on the stream in time")?;
        if wanted(&arrived.event.kind) {
            return Ok(arrived);
        }
    }
}

/// The neighbour node 0 forwards to toward the demo's target now.
fn next_hop(demo: &ControlledDemo) -> anyhow::Result<usize> {
    active_next_hop(&demo.nodes, 0, demo.target_v4.into())
}
