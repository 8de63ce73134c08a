//! The shell around [`Collector`]: reads the router's files every
//! [`STATISTICS_INTERVAL_S`] on a blocking thread and hands the results to
//! the control session, which decides what is sent (node information only
//! when it changed; statistics rate-limited).

use std::time::Duration;

use freimesh_proto::telemetry::STATISTICS_INTERVAL_S;
use tokio::sync::mpsc;

use super::Collector;
use crate::controlplane::Upstream;

/// Collects now and then every [`STATISTICS_INTERVAL_S`] until the session
/// side of `upstream` is gone.
pub async fn report_task(collector: Collector, upstream: mpsc::Sender<Upstream>) {
    let mut every = tokio::time::interval(Duration::from_secs(STATISTICS_INTERVAL_S));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        let reader = collector.clone();
        let Ok((info, stats)) =
            tokio::task::spawn_blocking(move || (reader.node_info(), reader.statistics())).await
        else {
            tracing::warn!("reading node information failed");
            continue;
        };
        for item in [Upstream::NodeInfo(info), Upstream::Statistics(stats)] {
            match upstream.try_send(item) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(_)) => {
                    tracing::debug!("controller queue full: node information not reported");
                }
                Err(mpsc::error::TrySendError::Closed(_)) => return,
            }
        }
    }
}
