//! `freimesh-testbed gateway-bench`: the figures of issue 7 on the city
//! lab (root). The client-visible gap when the primary gateway dies and
//! when its uplink dies silently (1 kHz probe flow from the DHCP client
//! to the internet host), and TCP throughput from the client through two
//! mesh hops (ap → t1 → gw1) and the gateway's NAT to the internet host.

use std::path::Path;
use std::time::Duration;

use anyhow::bail;

use super::flow::{self, FailoverReport};
use super::{CityLab, GW1, INTERNET_HOST, T1};

/// Seconds of iperf3 per throughput run.
const IPERF_SECONDS: u32 = 10;

/// Builds the lab, measures, prints a table (and JSON with `json`).
pub fn run(binary: &Path, json: bool) -> anyhow::Result<()> {
    if !crate::lab::is_root() {
        bail!("gateway-bench needs root for network namespaces");
    }
    let mut lab = CityLab::start("gwb")?;
    let client = lab.lease()?;
    lab.wait_internet(Duration::from_secs(60))?;
    lab.wait_default_via(T1, GW1, Duration::from_secs(30))?;
    let bits = crate::traffic::iperf3(
        &lab.mesh.lab,
        "client",
        "inet",
        &INTERNET_HOST.to_string(),
        IPERF_SECONDS,
    )?;
    let report = flow::run_scenario(&mut lab, binary, client)?;
    println!(
        "client → 2 mesh hops → gateway (NAT) → internet host: {:.0} Mbit/s (iperf3, one TCP stream, {IPERF_SECONDS} s)",
        bits / 1e6
    );
    print!("{}", report.table());
    if json {
        println!("{}", to_json(&report, bits));
    }
    Ok(())
}

fn to_json(report: &FailoverReport, bits: f64) -> serde_json::Value {
    serde_json::json!({
        "throughput_bits_per_second": bits,
        "client": report.client.to_string(),
        "client_after": report.client_after.map(|a| a.to_string()),
        "sent": report.sent,
        "received": report.received,
        "events": report.events.iter().map(|e| serde_json::json!({
            "event": e.event,
            "failure": e.failure,
            "longest_gap_ms": e.stats.longest_gap_ms,
            "sent": e.stats.sent,
            "received": e.stats.received,
            "flowing_at_end": e.stats.flowing_at_end,
        })).collect::<Vec<_>>(),
    })
}
