//! Two stacks wired back to back (A's `to_mesh` feeds B's `deliver` and vice
//! versa, through a relay hop) with real host sockets on 127.0.0.1.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use ipnet::IpNet;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::*;

const A4: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 1);
const B4: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 2);
const A6: Ipv6Addr = Ipv6Addr::new(0xfd99, 0, 0, 0, 0, 0, 0, 1);
const B6: Ipv6Addr = Ipv6Addr::new(0xfd99, 0, 0, 0, 0, 0, 0, 2);
const ECHO_PORT: u16 = 7000;
/// Every test finishes in well under a second; this only turns a hang
/// into a failure.
const TEST_TIMEOUT: Duration = Duration::from_secs(30);

fn settings(v4: Ipv4Addr, v6: Option<Ipv6Addr>) -> UserspaceSettings {
    let mut addresses = vec![IpNet::new(IpAddr::V4(v4), 32).expect("valid prefix")];
    if let Some(v6) = v6 {
        addresses.push(IpNet::new(IpAddr::V6(v6), 128).expect("valid prefix"));
    }
    UserspaceSettings {
        addresses,
        mtu: 1420,
        tcp_forwards: Vec::new(),
        tcp_exposes: Vec::new(),
    }
}

/// A forwards `127.0.0.1:0` to B's `port`, which B exposes to `host_target`.
fn forward_to(port: u16, host_target: SocketAddr) -> (UserspaceSettings, UserspaceSettings) {
    let mut a = settings(A4, Some(A6));
    a.tcp_forwards.push(TcpForward {
        listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
        target: SocketAddr::from((B4, port)),
    });
    let mut b = settings(B4, Some(B6));
    b.tcp_exposes.push(TcpExpose {
        port,
        target: host_target,
    });
    (a, b)
}

struct Pair {
    a: StackHandle,
    b: StackHandle,
    relays: Vec<JoinHandle<()>>,
}

impl Pair {
    /// The forward listener of A.
    fn entry(&self) -> SocketAddr {
        self.a.forward_addrs()[0]
    }

    async fn shutdown(self) {
        self.a.shutdown().await;
        self.b.shutdown().await;
        for relay in self.relays {
            relay.abort();
        }
    }
}

/// Carries packets from one stack to the other through an intermediate hop,
/// the way the engine would: bounded channels, `deliver` at the end.
fn relay(mut from: mpsc::Receiver<Vec<u8>>, to: PacketInlet) -> [JoinHandle<()>; 2] {
    let (hop_tx, mut hop_rx) = mpsc::channel::<Vec<u8>>(256);
    let first = tokio::spawn(async move {
        while let Some(packet) = from.recv().await {
            if hop_tx.send(packet).await.is_err() {
                return;
            }
        }
    });
    let second = tokio::spawn(async move {
        while let Some(packet) = hop_rx.recv().await {
            to.deliver(packet);
        }
    });
    [first, second]
}

fn wire(a: UserspaceSettings, b: UserspaceSettings) -> Pair {
    let (a_out, a_rx) = mpsc::channel(256);
    let (b_out, b_rx) = mpsc::channel(256);
    let a = spawn(a, a_out).expect("stack A starts");
    let b = spawn(b, b_out).expect("stack B starts");
    let mut relays = Vec::new();
    relays.extend(relay(a_rx, b.inlet()));
    relays.extend(relay(b_rx, a.inlet()));
    Pair { a, b, relays }
}

/// A host echo server: echoes each connection until EOF, then half-closes.
async fn echo_server() -> SocketAddr {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .expect("bind echo server");
    let addr = listener.local_addr().expect("echo server address");
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut read, mut write) = stream.into_split();
                if tokio::io::copy(&mut read, &mut write).await.is_ok() {
                    let _ = write.shutdown().await;
                }
            });
        }
    });
    addr
}

/// Deterministic test data, different for each `seed`.
fn pattern(len: usize, seed: u32) -> Vec<u8> {
    let mut state = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            state.to_le_bytes()[0]
        })
        .collect()
}

/// Sends `data` through the forward and returns what comes back until EOF.
async fn echo_through(entry: SocketAddr, data: Vec<u8>) -> Vec<u8> {
    let stream = TcpStream::connect(entry).await.expect("connect to forward");
    let (mut read, mut write) = stream.into_split();
    let writer = tokio::spawn(async move {
        write.write_all(&data).await.expect("write to forward");
        write.shutdown().await.expect("half-close forward");
    });
    let mut back = Vec::new();
    read.read_to_end(&mut back)
        .await
        .expect("read from forward");
    writer.await.expect("writer task");
    back
}

async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(
            start.elapsed() < TEST_TIMEOUT,
            "timed out waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn within<T>(future: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(TEST_TIMEOUT, future)
        .await
        .expect("test timed out")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ping_gets_replies_over_ipv4_and_ipv6() {
    let pair = wire(settings(A4, Some(A6)), settings(B4, Some(B6)));
    let interval = Duration::from_millis(20);
    let timeout = Duration::from_secs(2);
    for (from, target) in [(&pair.a, IpAddr::V4(B4)), (&pair.b, IpAddr::V6(A6))] {
        let report = within(from.ping(target, 3, interval, timeout))
            .await
            .expect("ping runs");
        assert_eq!(
            (report.target, report.sent, report.received),
            (target, 3, 3)
        );
        let mut seqs: Vec<u16> = report.replies.iter().map(|r| r.seq).collect();
        seqs.sort_unstable();
        assert_eq!(seqs, [0, 1, 2]);
        assert!(report.replies.iter().all(|r| r.rtt < timeout));
    }
    // Three requests and three replies each way, counted once published.
    wait_until("A counts its packets", || {
        let stats = pair.a.stats();
        stats.packets_out >= 6 && stats.packets_in >= 6
    })
    .await;
    pair.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ping_without_answer_or_source_address() {
    let pair = wire(settings(A4, None), settings(B4, Some(B6)));
    let silent = IpAddr::V4(Ipv4Addr::new(10, 99, 0, 77));
    let report = within(pair.a.ping(
        silent,
        2,
        Duration::from_millis(10),
        Duration::from_millis(200),
    ))
    .await
    .expect("ping runs");
    assert_eq!((report.sent, report.received), (2, 0));
    let no_v6 = within(
        pair.a
            .ping(IpAddr::V6(B6), 1, Duration::ZERO, Duration::from_secs(1)),
    )
    .await;
    assert!(
        matches!(no_v6, Err(UserspaceError::NoSourceAddress { .. })),
        "{no_v6:?}"
    );
    pair.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_mebibyte_echoes_through_forward_and_expose() {
    let (a, b) = forward_to(ECHO_PORT, echo_server().await);
    let pair = wire(a, b);
    let data = pattern(1 << 20, 1);
    let start = Instant::now();
    let back = within(echo_through(pair.entry(), data.clone())).await;
    let elapsed = start.elapsed();
    assert_eq!(back.len(), data.len());
    assert!(back == data, "echoed bytes differ");
    let mbit = 2.0 * 8.0 * (data.len() as f64) / elapsed.as_secs_f64() / 1e6;
    eprintln!(
        "1 MiB echo in {elapsed:?}: {mbit:.0} Mbit/s (both directions counted); A {:?}",
        pair.a.stats()
    );
    wait_until("connections are removed", || {
        pair.a.stats().open_connections == 0 && pair.b.stats().open_connections == 0
    })
    .await;
    pair.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_concurrent_connections() {
    let (a, b) = forward_to(ECHO_PORT, echo_server().await);
    let pair = wire(a, b);
    let entry = pair.entry();
    let clients: Vec<_> = (0..20)
        .map(|i| {
            let data = pattern(200 * 1024, i + 10);
            tokio::spawn(async move { (echo_through(entry, data.clone()).await, data) })
        })
        .collect();
    for client in futures::future::join_all(clients).await {
        let (back, data) = client.expect("client task");
        assert!(back == data, "echoed bytes differ");
    }
    wait_until("connections are removed", || {
        pair.a.stats().open_connections == 0 && pair.b.stats().open_connections == 0
    })
    .await;
    pair.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_stack_sleeps() {
    let (a, b) = forward_to(ECHO_PORT, echo_server().await);
    let pair = wire(a, b);
    let mut client = TcpStream::connect(pair.entry()).await.expect("connect");
    client.write_all(b"x").await.expect("write");
    let mut x = [0; 1];
    within(client.read_exact(&mut x)).await.expect("echo");
    // Let delayed ACKs go out, then count wake-ups of an idle connection.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let wakeups = || pair.a.stats().wakeups + pair.b.stats().wakeups;
    let before = wakeups();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle = wakeups() - before;
    assert!(idle < 10, "{idle} wake-ups in an idle second");
    drop(client);
    pair.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_close_travels_both_ways() {
    // The server reads until the client's FIN, then answers and closes.
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .expect("bind");
    let server_addr = listener.local_addr().expect("address");
    tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.expect("accept");
        let mut request = Vec::new();
        stream
            .read_to_end(&mut request)
            .await
            .expect("read request");
        let answer = format!("got {} bytes", request.len());
        stream.write_all(answer.as_bytes()).await.expect("answer");
    });
    let (a, b) = forward_to(8080, server_addr);
    let pair = wire(a, b);
    let back = within(echo_through(pair.entry(), b"hello".to_vec())).await;
    assert_eq!(back, b"got 5 bytes");
    pair.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_the_server_closes_the_client() {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .expect("bind");
    let server_addr = listener.local_addr().expect("address");
    tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.expect("accept");
        stream.write_all(b"bye").await.expect("write");
        // Dropping the stream closes the server's side.
    });
    let (a, b) = forward_to(8081, server_addr);
    let pair = wire(a, b);
    let mut client = TcpStream::connect(pair.entry()).await.expect("connect");
    let mut back = Vec::new();
    within(client.read_to_end(&mut back)).await.expect("EOF");
    assert_eq!(back, b"bye");
    drop(client);
    wait_until("connections are removed", || {
        pair.a.stats().open_connections == 0 && pair.b.stats().open_connections == 0
    })
    .await;
    pair.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_reset_resets_the_mesh_side() {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .expect("bind");
    let server_addr = listener.local_addr().expect("address");
    let (unread_tx, unread_rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.expect("accept");
        stream.write_all(b"bye").await.expect("write");
        let _ = unread_rx.await;
        // Closing with unread data makes the kernel send a reset.
    });
    let (a, b) = forward_to(8082, server_addr);
    let pair = wire(a, b);
    let mut client = TcpStream::connect(pair.entry()).await.expect("connect");
    client.write_all(b"never read").await.expect("write");
    let mut bye = [0; 3];
    within(client.read_exact(&mut bye)).await.expect("read");
    assert_eq!(&bye, b"bye");
    // Give the request time to reach the server before it closes.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let _ = unread_tx.send(());
    let mut rest = Vec::new();
    let closed = within(client.read_to_end(&mut rest)).await;
    assert!(rest.is_empty(), "{closed:?}");
    // The client still holds its socket: the reset alone cleans up.
    wait_until("connections are removed", || {
        pair.a.stats().open_connections == 0 && pair.b.stats().open_connections == 0
    })
    .await;
    pair.shutdown().await;
}

/// Connects and reads until the connection is closed (EOF or reset; a reset
/// may already fail the connect) and returns the bytes.
async fn read_until_closed(addr: SocketAddr) -> Vec<u8> {
    let mut back = Vec::new();
    if let Ok(mut stream) = TcpStream::connect(addr).await {
        let _ = within(stream.read_to_end(&mut back)).await;
    }
    back
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_close_the_other_side() {
    // The exposed port's host target refuses connections.
    let refusing = {
        let listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
        listener.local_addr().expect("address")
    };
    let (a, mut b) = forward_to(9000, refusing);
    // A second forward on A targets a port B does not expose: B resets.
    let mut a = a;
    a.tcp_forwards.push(TcpForward {
        listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
        target: SocketAddr::from((B4, 9999)),
    });
    b.tcp_exposes.push(TcpExpose {
        port: ECHO_PORT,
        target: echo_server().await,
    });
    let pair = wire(a, b);
    assert!(
        read_until_closed(pair.a.forward_addrs()[0])
            .await
            .is_empty()
    );
    assert!(
        read_until_closed(pair.a.forward_addrs()[1])
            .await
            .is_empty()
    );

    // Stopping A resets the connections it carries.
    let (a_out, _a_rx) = mpsc::channel(16);
    let mut lone = settings(A4, None);
    lone.tcp_forwards.push(TcpForward {
        listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
        target: SocketAddr::from((B4, ECHO_PORT)),
    });
    let lone = spawn(lone, a_out).expect("stack starts");
    let carried = TcpStream::connect(lone.forward_addrs()[0])
        .await
        .expect("connect");
    wait_until("the connection is carried", || {
        lone.stats().open_connections == 1
    })
    .await;
    lone.shutdown().await;
    let mut carried = carried;
    let mut back = Vec::new();
    let _ = within(carried.read_to_end(&mut back)).await;
    assert!(back.is_empty());
    wait_until("connections are removed", || {
        pair.a.stats().open_connections == 0 && pair.b.stats().open_connections == 0
    })
    .await;
    pair.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_name_the_address() {
    let taken = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
    let addr = taken.local_addr().expect("address");
    let mut s = settings(A4, None);
    s.tcp_forwards.push(TcpForward {
        listen: addr,
        target: SocketAddr::from((B4, 1)),
    });
    let (to_mesh, _rx) = mpsc::channel(1);
    let error = spawn(s, to_mesh.clone()).expect_err("port is taken");
    assert!(error.to_string().contains(&addr.to_string()), "{error}");

    let mut s = settings(A4, None);
    s.addresses.push("224.0.0.1/32".parse().expect("literal"));
    let error = spawn(s, to_mesh).expect_err("multicast is no node address");
    assert!(error.to_string().contains("224.0.0.1/32"), "{error}");
}
