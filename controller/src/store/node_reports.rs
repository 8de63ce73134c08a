//! Fleet telemetry in the store (issue 15): each node's newest node
//! information and statistics, as the hub last persisted them, and its
//! enrolment time. Values are the protocol's types as JSON, so a new
//! optional field needs no migration.

use std::collections::BTreeMap;

use freimesh_proto::api::NodeTelemetry;
use freimesh_proto::telemetry::{NodeInfo, Statistics};
use rusqlite::params;

use super::{Result, Store, StoreError};

fn json<T: serde::Serialize>(value: &T) -> Result<String> {
    serde_json::to_string(value).map_err(|e| StoreError::Corrupt(format!("telemetry: {e}")))
}

fn parse<T: serde::de::DeserializeOwned>(text: Option<String>) -> Option<T> {
    // A row this build cannot read is dropped, not fatal: the node sends
    // fresh values after its next Welcome.
    serde_json::from_str(text.as_deref()?).ok()
}

impl Store {
    /// Keeps node `id`'s information as received at `at_ms`.
    pub fn save_node_info(&self, id: u32, info: &NodeInfo, at_ms: i64) -> Result<()> {
        self.conn.execute(
            "INSERT INTO node_reports (node_id, info, info_at_ms) VALUES (?1, ?2, ?3)
             ON CONFLICT (node_id) DO UPDATE SET info = ?2, info_at_ms = ?3",
            params![id, json(info)?, at_ms],
        )?;
        Ok(())
    }

    /// Keeps node `id`'s statistics as received at `at_ms`, with the boot
    /// time they imply.
    pub fn save_statistics(
        &self,
        id: u32,
        stats: &Statistics,
        boot_time_ms: Option<i64>,
        at_ms: i64,
    ) -> Result<()> {
        self.conn.execute(
            "INSERT INTO node_reports (node_id, stats, stats_at_ms, boot_time_ms) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (node_id) DO UPDATE SET stats = ?2, stats_at_ms = ?3, boot_time_ms = ?4",
            params![id, json(stats)?, at_ms, boot_time_ms],
        )?;
        Ok(())
    }

    /// Every node's telemetry as stored, with its enrolment time.
    pub fn node_telemetry(&self) -> Result<BTreeMap<u32, NodeTelemetry>> {
        let mut stmt = self.conn.prepare(
            "SELECT n.id, n.created_at, r.info, r.info_at_ms, r.stats, r.stats_at_ms, r.boot_time_ms
             FROM nodes n LEFT JOIN node_reports r ON r.node_id = n.id ORDER BY n.id",
        )?;
        let rows = stmt.query_map([], |r| {
            let created_s: i64 = r.get(1)?;
            Ok((
                r.get::<_, u32>(0)?,
                NodeTelemetry {
                    first_seen_ms: Some(created_s.saturating_mul(1_000)),
                    info: parse(r.get(2)?),
                    info_at_ms: r.get(3)?,
                    stats: parse(r.get(4)?),
                    stats_at_ms: r.get(5)?,
                    boot_time_ms: r.get(6)?,
                },
            ))
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }
}

#[cfg(test)]
mod tests {
    use freimesh_proto::telemetry::Location;

    use super::*;
    use crate::store::tests::enrolled_store;

    #[test]
    fn reports_survive_and_carry_the_enrolment_time() {
        let (store, id) = enrolled_store();
        let before = store.node_telemetry().expect("read");
        assert!(before[&id].first_seen_ms.is_some());
        assert_eq!(before[&id].info, None);
        let info = NodeInfo {
            agent_version: "0.3.0".into(),
            location: Location::from_degrees(52.5, 13.4),
            ..NodeInfo::default()
        };
        store.save_node_info(id, &info, 5_000).expect("info");
        let stats = Statistics {
            uptime_s: Some(60),
            ..Statistics::default()
        };
        store
            .save_statistics(id, &stats, Some(1_000), 61_000)
            .expect("stats");
        store.save_node_info(id, &info, 7_000).expect("info again");
        let after = &store.node_telemetry().expect("read")[&id];
        assert_eq!(after.info.as_ref(), Some(&info));
        assert_eq!(after.info_at_ms, Some(7_000));
        assert_eq!(after.stats, Some(stats));
        assert_eq!(
            (after.stats_at_ms, after.boot_time_ms),
            (Some(61_000), Some(1_000))
        );
    }
}
