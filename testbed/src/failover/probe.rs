//! Probe flows: a sender that emits numbered, timestamped UDP datagrams at
//! a fixed rate, a receiver that records when each arrives, and the gap
//! arithmetic the report is made of. Sender and receiver run as hidden
//! subcommands of `freimesh-testbed` inside the lab's namespaces
//! (`ip netns exec … freimesh-testbed probe-send …`).
//!
//! Both stop when their stdin closes: the runner holds the other end of the
//! pipe, so a runner that dies (Ctrl-C, panic) leaves no probe behind.
//! Timestamps are `CLOCK_REALTIME` nanoseconds: every namespace of a lab
//! shares the machine's clock, so sender, receiver and runner agree.

use std::io::{BufRead as _, BufWriter, Write as _};
use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, bail};

const MAGIC: [u8; 4] = *b"FMP1";
/// Small but not tiny: room for the header, like a voice frame.
const PACKET_LEN: usize = 64;
/// How often the receiver looks at its stop flag.
const RECV_POLL: Duration = Duration::from_millis(50);

/// Wall-clock nanoseconds since the epoch.
pub fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// A flag set when stdin reaches end of file.
fn stop_on_stdin_eof() -> Arc<AtomicBool> {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    std::thread::spawn(move || {
        let mut line = String::new();
        let mut stdin = std::io::stdin().lock();
        while matches!(stdin.read_line(&mut line), Ok(n) if n > 0) {
            line.clear();
        }
        flag.store(true, Ordering::SeqCst);
    });
    stop
}

/// `probe-send`: sends `rate` datagrams per second from `from` to `to` for
/// `duration`, writing `seq send_ns` per packet to `out`. A failed send
/// (no route, full queue) still counts as sent: the packet was due.
pub fn send(
    from: SocketAddr,
    to: SocketAddr,
    rate: u32,
    duration: Duration,
    out: &Path,
) -> anyhow::Result<()> {
    if rate == 0 {
        bail!("--rate must be at least 1");
    }
    let socket = UdpSocket::bind(from).with_context(|| format!("binding {from}"))?;
    // Never wait for the socket: behind an interface without carrier the
    // queue fills and a blocking send would stall the schedule, then burst.
    // A probe that cannot be queued is lost, like on a real link.
    socket.set_nonblocking(true)?;
    let stop = stop_on_stdin_eof();
    let interval = Duration::from_secs(1) / rate;
    let mut log = BufWriter::new(
        std::fs::File::create(out).with_context(|| format!("creating {}", out.display()))?,
    );
    let started = Instant::now();
    let mut packet = [0u8; PACKET_LEN];
    packet[..4].copy_from_slice(&MAGIC);
    let mut seq: u64 = 0;
    let mut due = started;
    while due.duration_since(started) < duration && !stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
        let sent_at = now_ns();
        packet[4..12].copy_from_slice(&seq.to_be_bytes());
        packet[12..20].copy_from_slice(&sent_at.to_be_bytes());
        let _ = socket.send_to(&packet, to);
        writeln!(log, "{seq} {sent_at}")?;
        seq += 1;
        due += interval;
    }
    log.flush()
        .with_context(|| format!("writing {}", out.display()))
}

/// `probe-recv`: records `seq send_ns recv_ns` for every probe arriving on
/// `bind` until stdin closes, then writes them to `out`.
pub fn receive(bind: SocketAddr, out: &Path) -> anyhow::Result<()> {
    let socket = UdpSocket::bind(bind).with_context(|| format!("binding {bind}"))?;
    socket.set_read_timeout(Some(RECV_POLL))?;
    let stop = stop_on_stdin_eof();
    let mut records = Vec::new();
    let mut buf = [0u8; 2048];
    while !stop.load(Ordering::Relaxed) {
        let Ok((len, _)) = socket.recv_from(&mut buf) else {
            continue;
        };
        let recv_ns = now_ns();
        if let Some((seq, send_ns)) = decode(&buf[..len]) {
            records.push(Received {
                seq,
                send_ns,
                recv_ns,
            });
        }
    }
    let mut file = BufWriter::new(
        std::fs::File::create(out).with_context(|| format!("creating {}", out.display()))?,
    );
    for r in &records {
        writeln!(file, "{} {} {}", r.seq, r.send_ns, r.recv_ns)?;
    }
    file.flush()
        .with_context(|| format!("writing {}", out.display()))
}

fn decode(packet: &[u8]) -> Option<(u64, u64)> {
    if packet.len() < 20 || packet[..4] != MAGIC {
        return None;
    }
    let seq = u64::from_be_bytes(packet[4..12].try_into().ok()?);
    let send_ns = u64::from_be_bytes(packet[12..20].try_into().ok()?);
    Some((seq, send_ns))
}

/// One probe that arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Received {
    pub seq: u64,
    pub send_ns: u64,
    pub recv_ns: u64,
}

/// Send times from a sender's log, in order.
pub fn read_sent(path: &Path) -> anyhow::Result<Vec<u64>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    text.lines()
        .map(|line| {
            line.split_whitespace()
                .nth(1)
                .and_then(|s| s.parse().ok())
                .with_context(|| format!("{}: bad line {line:?}", path.display()))
        })
        .collect()
}

/// Arrivals from a receiver's file, sorted by arrival time.
pub fn read_received(path: &Path) -> anyhow::Result<Vec<Received>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut out = text
        .lines()
        .map(|line| {
            let mut it = line.split_whitespace().map(str::parse::<u64>);
            match (it.next(), it.next(), it.next()) {
                (Some(Ok(seq)), Some(Ok(send_ns)), Some(Ok(recv_ns))) => Ok(Received {
                    seq,
                    send_ns,
                    recv_ns,
                }),
                _ => bail!("{}: bad line {line:?}", path.display()),
            }
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    out.sort_by_key(|r| r.recv_ns);
    Ok(out)
}

/// What one flow saw in one window of time `[start, end)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WindowStats {
    /// Probes sent in the window.
    pub sent: u64,
    /// Of those, how many arrived (whenever they arrived).
    pub received: u64,
    /// The longest stretch of the window without an arrival, in ms: between
    /// two consecutive arrivals, clipped to the window (a silence that
    /// begins before the event counts from the event; one that outlasts the
    /// window counts to its end).
    pub longest_gap_ms: f64,
    /// Whether probes were arriving again in the window's last
    /// [`FLOWING_TAIL_NS`].
    pub flowing_at_end: bool,
}

/// "Flowing at the end" = an arrival in the window's last 100 ms (a
/// hundred probes at 1 kHz).
pub const FLOWING_TAIL_NS: u64 = 100_000_000;

/// The statistics of `[start, end)`: `sent` are send times (sorted),
/// `received` arrivals sorted by `recv_ns`.
pub fn window_stats(sent: &[u64], received: &[Received], start: u64, end: u64) -> WindowStats {
    let in_window = |t: u64| t >= start && t < end;
    let sent_count = sent.iter().filter(|t| in_window(**t)).count();
    let received_count = received.iter().filter(|r| in_window(r.send_ns)).count();
    // Arrival times inside the window, framed by the window's edges: the
    // longest distance between neighbours is the longest silence.
    let mut edges = vec![start];
    edges.extend(received.iter().map(|r| r.recv_ns).filter(|t| in_window(*t)));
    edges.push(end);
    // A silence that began before `start` is clipped to `start` above; one
    // already in progress is not a gap of zero, so the first edge stays.
    let longest = edges
        .windows(2)
        .map(|w| w[1].saturating_sub(w[0]))
        .max()
        .unwrap_or(0);
    let tail_start = end.saturating_sub(FLOWING_TAIL_NS).max(start);
    let flowing_at_end = received
        .iter()
        .any(|r| r.recv_ns >= tail_start && r.recv_ns < end);
    WindowStats {
        sent: u64::try_from(sent_count).unwrap_or(u64::MAX),
        received: u64::try_from(received_count).unwrap_or(u64::MAX),
        longest_gap_ms: ns_to_ms(longest),
        flowing_at_end,
    }
}

pub fn ns_to_ms(ns: u64) -> f64 {
    // Exact below 2^53 ns (104 days).
    #[allow(clippy::cast_precision_loss)]
    let ms = ns as f64 / 1e6;
    ms
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    /// Probes sent every ms from 0 to `until_ms`, arriving 0.1 ms later,
    /// except those sent in `[lost_from, lost_to)` ms.
    fn run(until_ms: u64, lost_from: u64, lost_to: u64) -> (Vec<u64>, Vec<Received>) {
        let sent: Vec<u64> = (0..until_ms).map(|i| i * MS).collect();
        let received = sent
            .iter()
            .enumerate()
            .filter(|(_, t)| **t < lost_from * MS || **t >= lost_to * MS)
            .map(|(i, t)| Received {
                seq: u64::try_from(i).unwrap_or(0),
                send_ns: *t,
                recv_ns: t + MS / 10,
            })
            .collect();
        (sent, received)
    }

    #[test]
    fn steady_flow_has_one_ms_gaps() {
        let (sent, received) = run(1000, 0, 0);
        let w = window_stats(&sent, &received, 100 * MS, 600 * MS);
        assert_eq!((w.sent, w.received), (500, 500));
        assert!((w.longest_gap_ms - 1.0).abs() < 1e-9, "{w:?}");
        assert!(w.flowing_at_end);
    }

    #[test]
    fn outage_after_the_event_is_measured_from_the_event() {
        // Event at 200 ms, probes sent 200..350 lost: the silence runs from
        // the event to the arrival of the probe sent at 350 (350.1 ms).
        let (sent, received) = run(1000, 200, 350);
        let w = window_stats(&sent, &received, 200 * MS, 800 * MS);
        assert_eq!((w.sent, w.received), (600, 450));
        assert!((w.longest_gap_ms - 150.1).abs() < 1e-6, "{w:?}");
        assert!(w.flowing_at_end);
        // The window before the event saw nothing of it.
        let before = window_stats(&sent, &received, 0, 200 * MS);
        assert!(before.longest_gap_ms < 1.5, "{before:?}");
    }

    #[test]
    fn outage_outlasting_the_window_counts_to_its_end_and_is_not_flowing() {
        let (sent, received) = run(1000, 200, 1000);
        let w = window_stats(&sent, &received, 200 * MS, 700 * MS);
        assert_eq!(w.received, 0);
        assert!((w.longest_gap_ms - 500.0).abs() < 1e-6, "{w:?}");
        assert!(!w.flowing_at_end);
        // The next window starts silent too: its gap runs from its start.
        let next = window_stats(&sent, &received, 700 * MS, 1000 * MS);
        assert!((next.longest_gap_ms - 300.0).abs() < 1e-6, "{next:?}");
    }

    #[test]
    fn packets_are_counted_by_send_time() {
        // Late arrival of a packet sent inside the window still counts.
        let sent = vec![0, 10 * MS];
        let received = vec![Received {
            seq: 1,
            send_ns: 10 * MS,
            recv_ns: 30 * MS,
        }];
        let w = window_stats(&sent, &received, 0, 20 * MS);
        assert_eq!((w.sent, w.received), (2, 1));
        assert!((w.longest_gap_ms - 20.0).abs() < 1e-9);
    }

    #[test]
    fn decode_rejects_foreign_datagrams() {
        assert_eq!(decode(b"hello"), None);
        assert_eq!(decode(&[0u8; 64]), None);
        let mut p = [0u8; 64];
        p[..4].copy_from_slice(&MAGIC);
        p[4..12].copy_from_slice(&7u64.to_be_bytes());
        p[12..20].copy_from_slice(&9u64.to_be_bytes());
        assert_eq!(decode(&p), Some((7, 9)));
    }
}
