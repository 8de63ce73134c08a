//! What the hub does with a node's `NodeInfo` and `Statistics` (issue 15):
//! validates them, keeps the newest in memory for the API and the
//! exports, persists them, and raises events when the agent version
//! changes or the node rebooted.
//!
//! Statistics come every minute from every node; the store gets them only
//! when the boot time moved or the stored ones are older than
//! [`STATS_PERSIST_MS`], so a thousand nodes cost a write every second
//! or so rather than seventeen. Node information changes rarely and is
//! written whenever it does.

use freimesh_proto::api::EventKind;
use freimesh_proto::telemetry::{NodeInfo, Statistics};

use super::hub::HubCore;
use crate::clock::MS_PER_S;

/// A boot time that moved by more than this is a reboot; less is the
/// jitter of report delays (the controller derives boot times from its
/// own clock minus the reported uptime).
pub const REBOOT_TOLERANCE_MS: i64 = 120_000;
/// How old stored statistics may get before the newest are written.
pub const STATS_PERSIST_MS: i64 = 15 * 60_000;

impl HubCore {
    /// Node `id` says what it is.
    pub(super) fn node_info(&mut self, id: u32, info: NodeInfo) {
        if let Err(e) = info.validate() {
            tracing::warn!(node = id, error = %e, "node information refused");
            return;
        }
        let now = self.now_ms;
        let entry = self.telemetry.nodes.entry(id).or_default();
        entry.info_at_ms = Some(now);
        if entry.info.as_ref() == Some(&info) {
            return;
        }
        let previous = entry.info.replace(info.clone());
        if let Err(e) = self.store.save_node_info(id, &info, now) {
            tracing::error!(node = id, error = %e, "saving node information failed");
        }
        if let Some(from) = previous.map(|p| p.agent_version)
            && from != info.agent_version
        {
            tracing::info!(node = id, %from, to = %info.agent_version, "agent version changed");
            self.emit(EventKind::AgentVersionChanged {
                node: id,
                from,
                to: info.agent_version,
            });
        }
    }

    /// Node `id` says how it is doing.
    pub(super) fn statistics(&mut self, id: u32, stats: Statistics) {
        if let Err(e) = stats.validate() {
            tracing::warn!(node = id, error = %e, "statistics refused");
            return;
        }
        let now = self.now_ms;
        let entry = self.telemetry.nodes.entry(id).or_default();
        let reported_boot = stats.uptime_s.map(|u| {
            now.saturating_sub(
                i64::try_from(u)
                    .unwrap_or(i64::MAX)
                    .saturating_mul(MS_PER_S),
            )
        });
        let (boot_time_ms, rebooted) = match (entry.boot_time_ms, reported_boot) {
            // Within the tolerance the first estimate stays: the boot
            // time does not wobble with report delays.
            (Some(old), Some(new)) if new.abs_diff(old) <= REBOOT_TOLERANCE_MS.unsigned_abs() => {
                (Some(old), false)
            }
            (Some(old), Some(new)) => (Some(new), new > old),
            (old, new) => (new.or(old), false),
        };
        let saved_at = self.telemetry.stats_saved_ms.get(&id).copied();
        let persist = rebooted
            || boot_time_ms != entry.boot_time_ms
            || saved_at.is_none_or(|at| now.saturating_sub(at) >= STATS_PERSIST_MS);
        entry.stats = Some(stats);
        entry.boot_time_ms = boot_time_ms;
        entry.stats_at_ms = Some(now);
        if persist {
            match self.store.save_statistics(id, &stats, boot_time_ms, now) {
                Ok(()) => {
                    self.telemetry.stats_saved_ms.insert(id, now);
                }
                Err(e) => tracing::error!(node = id, error = %e, "saving statistics failed"),
            }
        }
        if rebooted && let Some(boot_time_ms) = boot_time_ms {
            tracing::info!(node = id, boot_time_ms, "node rebooted");
            self.emit(EventKind::Rebooted {
                node: id,
                boot_time_ms,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use freimesh_proto::control::{AgentMsg, Hello, Roles};
    use freimesh_proto::telemetry::{Location, NodeInfo, Statistics};
    use freimesh_proto::{PROTOCOL_VERSION, PublicKeyBytes};

    use super::*;
    use crate::hub_api::{AdminReply, AdminRequest};
    use crate::records::MeshSettings;
    use crate::server::{HubConfig, HubCore};
    use crate::store::Store;

    const T0_MS: i64 = 1_800_000_000_000;

    /// A hub with node 1 enrolled and welcomed on session 1.
    fn welcomed() -> HubCore {
        let mut store = Store::open_in_memory().expect("store");
        store
            .init(&MeshSettings {
                ula: "fd12:3456:789a::/48".parse().expect("ula"),
                ipv4: "10.99.0.0/16".parse().expect("v4"),
                approval: false,
                controller_public_key: PublicKeyBytes([99; 32]),
                clients_ipv4: None,
                client_subnet_len: 24,
            })
            .expect("init");
        let token = store
            .create_token(T0_MS / 1_000 + 3_600, &[], T0_MS / 1_000)
            .expect("token");
        let mut hub = HubCore::new(store, HubConfig::default(), T0_MS).expect("hub");
        hub.handle_hello(
            1,
            "192.0.2.7:40000".parse().expect("addr"),
            PublicKeyBytes([1; 32]),
            Hello {
                version: PROTOCOL_VERSION,
                join_token: Some(token),
                hostname: "kita".into(),
                endpoints: vec![],
                prefixes: vec![],
                want_addresses: vec![],
                roles: Roles::default(),
            },
            T0_MS,
        );
        while hub.poll_output().is_some() {}
        while hub.poll_event().is_some() {}
        hub
    }

    fn events(hub: &mut HubCore) -> Vec<EventKind> {
        std::iter::from_fn(|| hub.poll_event())
            .map(|e| e.kind)
            .collect()
    }

    fn telemetry(hub: &mut HubCore) -> freimesh_proto::api::NodeTelemetry {
        match hub.handle_admin(AdminRequest::NodeDetail(1), T0_MS) {
            Ok(AdminReply::NodeDetail(d)) => *d.node.telemetry,
            other => panic!("{other:?}"),
        }
    }

    fn info(version: &str) -> NodeInfo {
        NodeInfo {
            agent_version: version.into(),
            location: Location::from_degrees(52.5, 13.4),
            ..NodeInfo::default()
        }
    }

    fn uptime(s: u64) -> Statistics {
        Statistics {
            uptime_s: Some(s),
            ..Statistics::default()
        }
    }

    #[test]
    fn node_information_is_kept_and_a_new_version_is_an_event() {
        let mut hub = welcomed();
        assert_eq!(
            telemetry(&mut hub).first_seen_ms,
            Some(T0_MS),
            "enrolment time"
        );
        hub.handle_agent_msg(1, AgentMsg::NodeInfo(info("0.3.0")), T0_MS + 1_000);
        assert_eq!(events(&mut hub), []);
        assert_eq!(telemetry(&mut hub).info, Some(info("0.3.0")));
        hub.handle_agent_msg(1, AgentMsg::NodeInfo(info("0.3.1")), T0_MS + 2_000);
        assert_eq!(
            events(&mut hub),
            [EventKind::AgentVersionChanged {
                node: 1,
                from: "0.3.0".into(),
                to: "0.3.1".into()
            }]
        );
        let stored = hub.store.node_telemetry().expect("store");
        assert_eq!(stored[&1].info, Some(info("0.3.1")));
    }

    #[test]
    fn absurd_reports_are_refused() {
        let mut hub = welcomed();
        let mut bad = info("0.3.0");
        bad.location = Some(Location {
            latitude_e6: 95_000_000,
            longitude_e6: 0,
        });
        hub.handle_agent_msg(1, AgentMsg::NodeInfo(bad), T0_MS);
        let mut stats = uptime(10);
        stats.rootfs_used_ppm = Some(2_000_000);
        hub.handle_agent_msg(1, AgentMsg::Statistics(stats), T0_MS);
        let t = telemetry(&mut hub);
        assert_eq!((t.info, t.stats), (None, None));
    }

    #[test]
    fn boot_time_is_stable_within_the_tolerance_and_a_reboot_is_an_event() {
        let mut hub = welcomed();
        hub.handle_agent_msg(1, AgentMsg::Statistics(uptime(3_600)), T0_MS);
        let boot = T0_MS - 3_600_000;
        assert_eq!(telemetry(&mut hub).boot_time_ms, Some(boot));
        // A minute later, reported a few seconds late: same boot.
        hub.handle_agent_msg(1, AgentMsg::Statistics(uptime(3_655)), T0_MS + 60_000);
        assert_eq!(telemetry(&mut hub).boot_time_ms, Some(boot));
        assert_eq!(events(&mut hub), []);
        // Rebooted: uptime back to 30 s.
        let now = T0_MS + 600_000;
        hub.handle_agent_msg(1, AgentMsg::Statistics(uptime(30)), now);
        assert_eq!(
            events(&mut hub),
            [EventKind::Rebooted {
                node: 1,
                boot_time_ms: now - 30_000
            }]
        );
        let stored = hub.store.node_telemetry().expect("store");
        assert_eq!(stored[&1].boot_time_ms, Some(now - 30_000));
        assert_eq!(stored[&1].stats, Some(uptime(30)));
    }
}
