//! Radio cells for field labs: a "cell" is a Linux bridge in its own
//! namespace standing in for the air around a group of routers (an 802.11s
//! mesh, or mesh on a shared LAN); a router hears a cell through a veth
//! whose far end is a port of the bridge. Also what the discovery and town
//! labs measure on a cell: a capture of the discovery datagrams heard on
//! the bridge (who beaconed when, how many bytes, with or without a
//! credential), and the helpers that find a router's link-local address
//! and ping from inside a namespace.

use std::collections::BTreeMap;
use std::io::BufRead as _;
use std::net::IpAddr;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::Receiver;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, bail};

use crate::lab::Lab;

/// The bridge in every cell's namespace.
pub const CELL_BRIDGE: &str = "br0";
/// UDP payload plus the IPv6 (40) and UDP (8) headers: what a beacon costs
/// on the air, per datagram, on top of its payload.
const IPV6_UDP_HEADERS: usize = 48;

/// Prints, for every discovery datagram heard on the bridge, the wall time,
/// the sender and its size, and whether it is a beacon with a credential.
/// Python because the lab process cannot enter a namespace without unsafe
/// code; `ip netns exec` runs this inside the cell.
const CAPTURE: &str = r#"
import socket, struct, sys, time
GROUP = "ff12::6672:6d65:7368"
s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("::", int(sys.argv[2])))
idx = socket.if_nametoindex(sys.argv[1])
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_JOIN_GROUP,
             socket.inet_pton(socket.AF_INET6, GROUP) + struct.pack("@I", idx))
print("ready", flush=True)
while True:
    data, src = s.recvfrom(2048)
    # magic(4) version(1) variant(1) key(32) port(varint) credential tag
    cred = 0
    if len(data) > 40 and data[:4] == b"FMDS" and data[5] == 0:
        i = 38
        while i < len(data) and data[i] & 0x80:
            i += 1
        i += 1
        cred = 1 if i < len(data) and data[i] == 1 else 0
    print("%.6f %s %d %d" % (time.time(), src[0].split("%")[0], len(data), cred), flush=True)
"#;

/// Creates cell `cell`: a namespace with a bridge (multicast snooping off:
/// a radio delivers every frame to everyone in range).
pub fn add_cell(lab: &mut Lab, cell: &str) -> anyhow::Result<()> {
    lab.add_namespace(cell)?;
    lab.exec(
        cell,
        &[
            "ip",
            "link",
            "add",
            CELL_BRIDGE,
            "type",
            "bridge",
            "mcast_snooping",
            "0",
        ],
    )?;
    lab.exec(cell, &["ip", "link", "set", CELL_BRIDGE, "up"])?;
    Ok(())
}

/// Turns off duplicate address detection in `router`'s namespace:
/// link-local addresses are usable the moment an interface is up, as on a
/// router that has been up for a while.
pub fn skip_dad(lab: &Lab, router: &str) -> anyhow::Result<()> {
    lab.exec(
        router,
        &[
            "sysctl",
            "-qw",
            "net.ipv6.conf.all.accept_dad=0",
            "net.ipv6.conf.default.accept_dad=0",
        ],
    )
    .map(drop)
}

/// Puts `router` into `cell`: a veth `ifname` in the router's namespace
/// whose peer `port` joins the cell's bridge; both ends up.
pub fn join_cell(
    lab: &Lab,
    router: &str,
    ifname: &str,
    cell: &str,
    port: &str,
) -> anyhow::Result<()> {
    let status = Command::new("ip")
        .args(["link", "add", ifname, "netns", &lab.ns(router)])
        .args(["type", "veth", "peer", "name", port])
        .args(["netns", &lab.ns(cell)])
        .status()
        .context("running ip link add")?;
    if !status.success() {
        bail!("creating {router}'s {ifname} into {cell}");
    }
    lab.exec(cell, &["ip", "link", "set", port, "master", CELL_BRIDGE])?;
    lab.exec(cell, &["ip", "link", "set", port, "up"])?;
    lab.exec(router, &["ip", "link", "set", ifname, "up"])?;
    Ok(())
}

/// The link-local address of `router`'s `ifname`.
pub fn link_local(lab: &Lab, router: &str, ifname: &str) -> anyhow::Result<String> {
    let out = lab.exec(
        router,
        &[
            "ip", "-6", "-o", "addr", "show", "dev", ifname, "scope", "link",
        ],
    )?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.split_whitespace()
        .find_map(|w| w.strip_suffix("/64").filter(|a| a.starts_with("fe80")))
        .map(str::to_owned)
        .with_context(|| format!("no link-local address on {router}'s {ifname}: {text}"))
}

/// One ping from namespace `from`, waiting `wait` seconds (fractions
/// allowed) for the reply.
pub fn ping_within(lab: &Lab, from: &str, to: IpAddr, wait: &str) -> bool {
    lab.try_exec(
        from,
        &["ping", "-n", "-q", "-c", "1", "-W", wait, &to.to_string()],
    )
    .is_ok_and(|o| o.status.success())
}

/// The wall clock in Unix seconds: what the capture stamps datagrams with.
pub fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// One discovery datagram heard on a cell.
#[derive(Debug, Clone, PartialEq)]
pub struct Heard {
    /// Wall time, Unix seconds.
    pub at: f64,
    /// The sender's link-local address (without scope).
    pub source: String,
    /// UDP payload bytes.
    pub bytes: usize,
    /// A beacon carrying a credential.
    pub credential: bool,
}

/// A capture of the discovery datagrams heard on a cell's bridge; stopped
/// (by its own pid) when dropped.
#[derive(Debug)]
pub struct BeaconCapture {
    child: Child,
    lines: Receiver<String>,
}

impl BeaconCapture {
    /// Starts listening on `cell`'s bridge; returns once it has joined the
    /// discovery group.
    pub fn start(lab: &Lab, cell: &str) -> anyhow::Result<Self> {
        let mut child = Command::new("ip")
            .args([
                "netns",
                "exec",
                &lab.ns(cell),
                "python3",
                "-c",
                CAPTURE,
                CELL_BRIDGE,
            ])
            .arg(freimesh_proto::discovery::DISCOVERY_PORT.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting the beacon capture (python3)")?;
        let stdout = child.stdout.take().context("capture stdout")?;
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let this = Self { child, lines };
        let ready = this
            .lines
            .recv_timeout(Duration::from_secs(10))
            .context("capture did not start")?;
        if ready != "ready" {
            bail!("capture: {ready}");
        }
        Ok(this)
    }

    /// Every datagram heard since the last call.
    pub fn drain(&self) -> Vec<Heard> {
        self.lines
            .try_iter()
            .filter_map(|line| parse_heard(&line))
            .collect()
    }
}

impl Drop for BeaconCapture {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn parse_heard(line: &str) -> Option<Heard> {
    let mut parts = line.split_whitespace();
    let at = parts.next()?.parse().ok()?;
    let source = parts.next()?.to_owned();
    let bytes = parts.next()?.parse().ok()?;
    let credential = parts.next()? == "1";
    Some(Heard {
        at,
        source,
        bytes,
        credential,
    })
}

/// Bits per second on the air per sender (= per interface: a sender is
/// one interface's link-local address) over a capture of `window`,
/// headers included.
pub fn bits_per_second(heard: &[Heard], window: Duration) -> BTreeMap<String, f64> {
    let mut bytes: BTreeMap<String, usize> = BTreeMap::new();
    for h in heard {
        *bytes.entry(h.source.clone()).or_default() += h.bytes + IPV6_UDP_HEADERS;
    }
    let seconds = window.as_secs_f64().max(f64::EPSILON);
    bytes
        .into_iter()
        .map(|(source, b)| {
            // Exact: a capture never holds 2^53 bytes.
            #[allow(clippy::cast_precision_loss)]
            let bits = b as f64 * 8.0;
            (source, bits / seconds)
        })
        .collect()
}

/// When `source` was first heard beaconing with a credential.
pub fn first_credential_beacon(heard: &[Heard], source: &str) -> Option<f64> {
    heard
        .iter()
        .find(|h| h.credential && h.source == source)
        .map(|h| h.at)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capture_lines_are_parsed_and_garbage_skipped() {
        assert_eq!(
            parse_heard("1700000000.250000 fe80::1 120 1"),
            Some(Heard {
                at: 1_700_000_000.25,
                source: "fe80::1".into(),
                bytes: 120,
                credential: true,
            })
        );
        assert_eq!(parse_heard("ready"), None);
        assert_eq!(parse_heard("1.0 fe80::1 x 0"), None);
    }

    #[test]
    fn bit_rate_counts_headers_per_sender() {
        let heard = [
            Heard {
                at: 0.0,
                source: "a".into(),
                bytes: 77,
                credential: true,
            },
            Heard {
                at: 1.0,
                source: "a".into(),
                bytes: 77,
                credential: false,
            },
            Heard {
                at: 1.0,
                source: "b".into(),
                bytes: 2,
                credential: false,
            },
        ];
        let bps = bits_per_second(&heard, Duration::from_secs(2));
        assert!((bps["a"] - 1_000.0).abs() < 1e-9, "{bps:?}");
        assert!((bps["b"] - 200.0).abs() < 1e-9, "{bps:?}");
        assert_eq!(first_credential_beacon(&heard, "a"), Some(0.0));
        assert_eq!(first_credential_beacon(&heard, "b"), None);
    }
}
