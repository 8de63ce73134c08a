//! TUN offloads on and off (`linux.offload`, issue 14): a line r0–r1–r2 in
//! namespaces with real agents, r0 and r1 with offloads (the default), r2
//! without. TCP streams between every pair, over IPv4 and IPv6, arrive byte
//! for byte (the kernel checks every checksum the split and the coalescing
//! wrote); pings of exactly the tunnel MTU cross, in both directions.
//! Root only (see `lab::require_root`).

use std::io::Write;
use std::net::IpAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use freimesh_testbed::mesh::{overlay_v4, overlay_v6};
use freimesh_testbed::netns_mesh::NetnsMesh;
use freimesh_testbed::topology::Topology;

const HANDSHAKE_WAIT: Duration = Duration::from_secs(15);
/// Bytes per stream: a few hundred 64 KiB segments each way.
const STREAM_BYTES: usize = 6 << 20;
/// The agents' TUN MTU (`linux.mtu` default).
const MTU: usize = 1420;
const PORT: u16 = 5201;

/// Accepts one connection, reads it to the end, prints its length and
/// SHA-256.
const RECEIVER: &str = r#"
import hashlib, socket, sys
s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("::", int(sys.argv[1])))
s.listen(1)
s.settimeout(30)
c, _ = s.accept()
c.settimeout(30)
h, n = hashlib.sha256(), 0
while True:
    b = c.recv(1 << 16)
    if not b:
        break
    h.update(b)
    n += len(b)
print(n, h.hexdigest())
"#;

/// Sends stdin to the address and port given, then closes.
const SENDER: &str = r#"
import socket, sys, time
data = sys.stdin.buffer.read()
for _ in range(100):
    try:
        c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=30)
        break
    except OSError:
        time.sleep(0.05)
c.sendall(data)
c.close()
"#;

fn ns_command(mesh: &NetnsMesh, node: usize) -> Command {
    let mut command = Command::new("ip");
    command.args(["netns", "exec", &mesh.lab.ns(mesh.name(node))]);
    command
}

/// Sends `data` from `from` to `to`'s overlay address `address` over TCP;
/// what arrived (length, SHA-256 in hex).
fn transfer(
    mesh: &NetnsMesh,
    from: usize,
    to: usize,
    address: IpAddr,
    data: &[u8],
) -> anyhow::Result<String> {
    let receiver: Child = ns_command(mesh, to)
        .args(["python3", "-c", RECEIVER, &PORT.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting the receiver (python3)")?;
    let mut sender = ns_command(mesh, from)
        .args([
            "python3",
            "-c",
            SENDER,
            &address.to_string(),
            &PORT.to_string(),
        ])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting the sender (python3)")?;
    sender
        .stdin
        .take()
        .context("sender's stdin")?
        .write_all(data)
        .context("feeding the sender")?;
    let sent = sender.wait_with_output()?;
    let received = receiver.wait_with_output()?;
    ensure!(
        sent.status.success(),
        "sender failed: {}",
        String::from_utf8_lossy(&sent.stderr)
    );
    ensure!(
        received.status.success(),
        "receiver failed: {}",
        String::from_utf8_lossy(&received.stderr)
    );
    Ok(String::from_utf8_lossy(&received.stdout).trim().to_owned())
}

/// The digest line the receiver prints for `data`.
fn expected(data: &[u8]) -> anyhow::Result<String> {
    let mut child = Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .context("sha256sum")?;
    child.stdin.take().context("stdin")?.write_all(data)?;
    let out = child.wait_with_output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let digest = text.split_whitespace().next().context("a digest")?;
    Ok(format!("{} {digest}", data.len()))
}

/// Pseudo-random bytes (xorshift), so a stream has no pattern a
/// coalescing bug could hide in.
fn stream_data(seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    (0..STREAM_BYTES)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state.to_le_bytes()[0]
        })
        .collect()
}

/// One ping of `size` payload bytes with fragmentation forbidden.
fn ping_exactly(mesh: &NetnsMesh, from: usize, to: IpAddr, size: usize) -> anyhow::Result<()> {
    let size = size.to_string();
    let out = mesh.lab.try_exec(
        mesh.name(from),
        &[
            "ping",
            "-c",
            "1",
            "-W",
            "2",
            "-M",
            "do",
            "-s",
            &size,
            &to.to_string(),
        ],
    )?;
    if !out.status.success() {
        bail!(
            "ping -s {size} from {} to {to}: {}",
            mesh.name(from),
            String::from_utf8_lossy(&out.stdout)
        );
    }
    Ok(())
}

#[test]
fn tcp_and_full_size_pings_cross_with_offloads_on_off_and_mixed() -> anyhow::Result<()> {
    if !freimesh_testbed::lab::require_root("offload_lab") {
        return Ok(());
    }
    let mut mesh = NetnsMesh::prepare("ofl", Topology::line(3), None)?;
    let path = mesh.nodes[2].config.clone();
    let mut text = std::fs::read_to_string(&path)?;
    text.push_str("\n[linux]\noffload = false\n");
    std::fs::write(&path, text)?;
    mesh.start_agents()?;
    for (from, to) in [(0, 1), (0, 2), (2, 1)] {
        mesh.wait_reachable(from, overlay_v4(to).into(), HANDSHAKE_WAIT)?;
        mesh.wait_reachable(from, overlay_v6(to).into(), HANDSHAKE_WAIT)?;
    }

    // The largest packets the tunnel carries, both ways, offloads on both
    // ends and on one.
    for (from, to) in [(0, 1), (1, 0), (0, 2), (2, 0)] {
        ping_exactly(&mesh, from, overlay_v4(to).into(), MTU - 28)?;
        ping_exactly(&mesh, from, overlay_v6(to).into(), MTU - 48)?;
    }

    // r0→r1: offloads on both ends; r0→r2 and back: on one end only.
    let mut seed = 1;
    for (from, to) in [(0, 1), (1, 0), (0, 2), (2, 0)] {
        for address in [IpAddr::from(overlay_v4(to)), overlay_v6(to).into()] {
            let data = stream_data(seed);
            seed += 1;
            let arrived = transfer(&mesh, from, to, address, &data)
                .with_context(|| format!("r{from} → r{to} ({address})"))?;
            assert_eq!(
                arrived,
                expected(&data)?,
                "r{from} → r{to} ({address}): the stream arrived changed"
            );
        }
    }
    Ok(())
}
