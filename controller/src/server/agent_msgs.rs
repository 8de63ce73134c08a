//! What the hub does with an agent's frames after its Welcome: link
//! reports (committed, then routed), failover events within their quota,
//! traffic and client counts for the API, gateways' uplink checks.

use freimesh_proto::api::{self, EventKind};
use freimesh_proto::control::{AgentMsg, ErrorCode, LinkEvent, LinkTraffic};

use super::hub::HubCore;
use crate::clock::MS_PER_S;
use crate::core::KeyStatus;
use crate::core::quota::Admission;
use crate::records::LinkRecord;

impl HubCore {
    /// A frame from welcomed node `id`.
    pub(super) fn agent_msg(&mut self, id: u32, msg: AgentMsg) {
        match msg {
            AgentMsg::Report(report) => {
                let rows = self.core.plan_report(id, &report);
                self.disputes();
                if rows.is_empty() {
                    return;
                }
                match self.store.save_links(&rows, self.now_ms / MS_PER_S) {
                    Ok(()) => {
                        self.link_events(&rows);
                        self.timed(|core| core.apply_links(&rows));
                    }
                    Err(e) => {
                        tracing::error!(node = id, error = %e, "saving links failed; report ignored")
                    }
                }
            }
            AgentMsg::Hello(_) => {
                tracing::warn!(node = id, "second Hello on one session");
                self.core.push_error(
                    id,
                    ErrorCode::Malformed,
                    "Hello is only valid as the first frame",
                );
            }
            AgentMsg::Ping(_) | AgentMsg::Pong(_) => {}
            AgentMsg::Events(events) => self.failovers(id, &events),
            AgentMsg::Traffic(traffic) => self.traffic(id, &traffic),
            AgentMsg::Uplink { up } => self.uplink(id, up),
            AgentMsg::Clients { count } => {
                self.telemetry.clients.insert(id, count);
            }
            AgentMsg::NodeInfo(info) => self.node_info(id, info),
            AgentMsg::Statistics(stats) => self.statistics(id, stats),
        }
    }

    /// Link up/down events for rows about to replace the core's links.
    fn link_events(&mut self, rows: &[LinkRecord]) {
        for row in rows {
            if let (Some(rtt), Some(loss)) = (row.rtt_us, row.loss_ppm) {
                self.telemetry.sample(row.a, row.b, rtt, loss);
            }
            let was_up = self.core.links().get(&(row.a, row.b)).map(|l| l.up);
            let (a, b) = (row.a, row.b);
            match (was_up, row.up) {
                (None | Some(false), true) => self.emit(EventKind::LinkUp { a, b }),
                (Some(true), false) => self.emit(EventKind::LinkDown { a, b }),
                _ => {}
            }
        }
    }

    /// Measurement disputes the last report started: logged once per
    /// dispute and raised as an event; the link keeps the larger RTT.
    fn disputes(&mut self) {
        while let Some(d) = self.core.poll_dispute() {
            tracing::warn!(
                a = d.a,
                b = d.b,
                node = d.node,
                rtt_us = d.rtt_us,
                other_rtt_us = d.other_rtt_us,
                "the two ends of a link disagree about its RTT; the larger is used"
            );
            self.emit(EventKind::LinkDisputed {
                a: d.a,
                b: d.b,
                node: d.node,
                rtt_us: d.rtt_us,
                other_rtt_us: d.other_rtt_us,
            });
        }
    }

    /// Failovers node `id` made on its own, within its quota and no older
    /// than its session allows ([`EventQuota`]).
    fn failovers(&mut self, id: u32, events: &[LinkEvent]) {
        let now = self.now_ms;
        for e in events {
            let at_ms = match self.event_quota.handle_event(id, e.age_ms, now) {
                Admission::Accept { at_ms, clamped } => {
                    if clamped {
                        tracing::debug!(
                            node = id,
                            age_ms = e.age_ms,
                            clamped_total = self.event_quota.clamped_total(),
                            "failover claimed to be older than the node's session allows; stored at the bound"
                        );
                    }
                    at_ms
                }
                Admission::Drop => continue,
            };
            let peer = match self.core.lookup(&e.peer) {
                KeyStatus::Active(p) | KeyStatus::Pending(p) | KeyStatus::Revoked(p) => p,
                KeyStatus::Unknown => {
                    tracing::warn!(node = id, peer = %e.peer, "failover over a link to an unknown key; ignored");
                    continue;
                }
            };
            tracing::info!(node = id, peer, cause = ?e.cause, detection_ms = e.detection_ms, switch_us = e.switch_us, "failover");
            self.telemetry
                .failover(e.cause, e.detection_ms, e.switch_us);
            self.events.emit(
                at_ms,
                EventKind::Failover {
                    node: id,
                    peer,
                    cause: e.cause,
                    detection_ms: e.detection_ms,
                    switch_us: e.switch_us,
                    rerouted: e.rerouted,
                    lost: e.lost,
                },
                None,
            );
        }
        while let Some(w) = self.event_quota.poll_warning() {
            tracing::warn!(
                node = w.node,
                dropped = w.dropped,
                dropped_total = self.event_quota.dropped_total(),
                "failover events over the node's quota dropped"
            );
        }
    }

    /// A gateway's uplink check changed (or was repeated after a Welcome).
    fn uplink(&mut self, id: u32, up: bool) {
        if !self.core.nodes().get(&id).is_some_and(|n| n.gateway) {
            tracing::warn!(
                node = id,
                up,
                "uplink report from a node that is no gateway; ignored"
            );
            return;
        }
        let changed = self.timed(|core| core.handle_uplink(id, up));
        if changed {
            tracing::info!(
                node = id,
                up,
                "gateway uplink changed; default routes recomputed"
            );
            self.emit(if up {
                EventKind::UplinkUp { node: id }
            } else {
                EventKind::UplinkDown { node: id }
            });
        }
    }

    fn traffic(&mut self, id: u32, traffic: &[LinkTraffic]) {
        let now = self.now_ms;
        let rows = traffic
            .iter()
            .filter_map(|t| {
                let peer = match self.core.lookup(&t.peer) {
                    KeyStatus::Active(p) | KeyStatus::Pending(p) | KeyStatus::Revoked(p) => p,
                    KeyStatus::Unknown => return None,
                };
                Some(api::LinkTraffic {
                    peer,
                    tx_bytes: t.tx_bytes,
                    rx_bytes: t.rx_bytes,
                    reported_at_ms: now,
                })
            })
            .collect();
        self.telemetry.set_traffic(id, rows);
    }
}
