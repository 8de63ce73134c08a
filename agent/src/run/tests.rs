//! The shell against the backend test double, without root: a real agent
//! ([`run_with_backend`]) on a loopback UDP socket, and a neighbour that is
//! a bare [`Engine`] driven by the test over its own loopback socket.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use freimesh_proto::PublicKeyBytes;
use ipnet::IpNet;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};

use super::backend::{KernelDevice, LocalBackend, TestBackend, TestHost};
use super::shell::CarrierRule;
use super::*;
use crate::control::{AgentStatus, Request, Response};
use crate::core::packet::tests::ipv4_packet;
use crate::core::{Hop, LinkSpec, Output};
use crate::linux::CarrierEvent;

mod cold_start;

/// Long enough for a handshake and the first heartbeats on a busy machine.
const PATIENCE: Duration = Duration::from_secs(20);
/// How often a test re-sends a packet while waiting for a path.
const RETRY: Duration = Duration::from_millis(50);
/// The interface the double says reaches the neighbour.
const UNDERLAY_IFINDEX: u32 = 7;

fn agent_overlay() -> Ipv4Addr {
    Ipv4Addr::new(10, 99, 0, 1)
}

fn neighbour_overlay() -> Ipv4Addr {
    Ipv4Addr::new(10, 99, 0, 2)
}

fn host_route(addr: Ipv4Addr) -> IpNet {
    IpNet::from(IpAddr::V4(addr))
}

/// The neighbour: an engine on a loopback socket, run by a test task.
/// Packets it delivers locally come out of `delivered`; packets put into
/// `send` it routes toward the agent.
struct Neighbour {
    key: PrivateKey,
    addr: SocketAddr,
    delivered: mpsc::Receiver<Vec<u8>>,
    send: mpsc::Sender<Vec<u8>>,
}

impl Neighbour {
    async fn spawn(agent: PublicKeyBytes) -> Self {
        let key = PrivateKey::generate();
        let udp = UdpSocket::bind("127.0.0.1:0").await.expect("loopback");
        let addr = udp.local_addr().expect("bound");
        let now = Instant::now();
        let link = LinkSpec {
            name: "agent".into(),
            peer: agent,
            // Learnt from the agent's first handshake.
            endpoint: None,
            keepalive: None,
            allowed_sources: Vec::new(),
            profile: "default".into(),
        };
        let mut engine = Engine::new(key.bytes(), vec![link], 42, now).expect("engine");
        let to_agent = Hop::Link(engine.link_id("agent").expect("link"));
        engine
            .insert_route(host_route(neighbour_overlay()), vec![Hop::Local])
            .expect("own route");
        engine
            .insert_route(host_route(agent_overlay()), vec![to_agent])
            .expect("route");
        engine.start(now);
        let (delivered_tx, delivered) = mpsc::channel(64);
        let (send, mut to_send) = mpsc::channel::<Vec<u8>>(64);
        tokio::spawn(async move {
            let mut buf = vec![0u8; 65_536];
            loop {
                let deadline = engine
                    .poll_timeout()
                    .map_or_else(|| tokio::time::Instant::now() + Engine::TICK, Into::into);
                tokio::select! {
                    received = udp.recv_from(&mut buf) => {
                        if let Ok((len, from)) = received {
                            engine.handle_datagram(from, &buf[..len], Instant::now());
                        }
                    }
                    packet = to_send.recv() => {
                        let Some(mut packet) = packet else { return };
                        engine.handle_local_packet(&mut packet, Instant::now());
                    }
                    () = tokio::time::sleep_until(deadline) => engine.handle_timeout(Instant::now()),
                }
                while let Some(output) = engine.poll_output() {
                    match output {
                        Output::Transmit { to, datagram } => {
                            let _ = udp.send_to(&datagram, to).await;
                        }
                        Output::Local(packet) => {
                            let _ = delivered_tx.try_send(packet);
                        }
                        Output::ResolveUnderlay { .. } => {}
                    }
                }
            }
        });
        Self {
            key,
            addr,
            delivered,
            send,
        }
    }
}

/// An agent on `127.0.0.1` with one link, to `neighbour`, and the config
/// files in `dir`.
fn agent_config(dir: &Path, key: &PrivateKey, neighbour: &Neighbour) -> AgentConfig {
    let key_file = dir.join("private.key");
    key.write_new(&key_file).expect("key file");
    let text = format!(
        r#"
[node]
name = "shell-test"
private_key_file = "{key_file}"
control_socket = "{socket}"
listen = "127.0.0.1:0"
backend = "userspace"
addresses = ["{agent}/32"]

[[link]]
name = "neighbour"
public_key = "{peer}"
endpoint = "{endpoint}"
profile = "default"

[[route]]
prefix = "{neighbour_overlay}/32"
via = ["neighbour"]
"#,
        key_file = key_file.display(),
        socket = socket_path(dir).display(),
        agent = agent_overlay(),
        peer = neighbour.key.public().to_base64(),
        endpoint = neighbour.addr,
        neighbour_overlay = neighbour_overlay(),
    );
    AgentConfig::from_toml(&text).expect("config")
}

fn socket_path(dir: &Path) -> PathBuf {
    dir.join("agent.sock")
}

/// A running agent over the double.
struct Agent {
    host: TestHost,
    socket: PathBuf,
    stop: oneshot::Sender<()>,
    ended: tokio::task::JoinHandle<Result<(), RunError>>,
}

impl Agent {
    async fn start(
        dir: &Path,
        neighbour: &Neighbour,
        key: &PrivateKey,
        kernel_device: Option<KernelDevice>,
    ) -> Self {
        let config = agent_config(dir, key, neighbour);
        let (backend, host) = TestBackend::new(kernel_device);
        host.route_underlay(neighbour.addr.ip(), UNDERLAY_IFINDEX);
        let (stop, stopped) = oneshot::channel();
        let ended = tokio::spawn(run_with_backend(
            config,
            move |_| async move { Ok(Box::new(backend) as Box<dyn LocalBackend>) },
            async move {
                let _ = stopped.await;
            },
        ));
        let socket = socket_path(dir);
        tokio::time::timeout(PATIENCE, async {
            while !socket.exists() {
                tokio::time::sleep(RETRY).await;
            }
        })
        .await
        .expect("control socket appears");
        Self {
            host,
            socket,
            stop,
            ended,
        }
    }

    async fn status(&self) -> AgentStatus {
        match crate::control::request(&self.socket, &Request::Status).await {
            Ok(Response::Status(status)) => *status,
            other => panic!("status: {other:?}"),
        }
    }

    /// Stops the agent; it must end cleanly and close the backend.
    async fn stop(self) {
        let _ = self.stop.send(());
        let ended = tokio::time::timeout(PATIENCE, self.ended)
            .await
            .expect("agent stops");
        ended.expect("agent task").expect("agent ends cleanly");
        assert!(self.host.requests().closed, "backend closed at shutdown");
    }
}

/// Sends packets from the agent's host until the neighbour delivers one
/// (the link must first come up): the path host → engine → UDP works.
async fn host_reaches_neighbour(agent: &Agent, neighbour: &mut Neighbour) -> Vec<u8> {
    let packet = ipv4_packet(agent_overlay(), neighbour_overlay(), 64, b"from the host");
    tokio::time::timeout(PATIENCE, async {
        loop {
            agent.host.send(packet.clone()).await;
            if let Ok(Some(got)) = tokio::time::timeout(RETRY, neighbour.delivered.recv()).await {
                return got;
            }
        }
    })
    .await
    .expect("the neighbour receives the host's packet")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn packets_cross_between_the_double_and_a_neighbour_over_loopback_udp() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = PrivateKey::generate();
    let mut neighbour = Neighbour::spawn(key.public()).await;
    let agent = Agent::start(dir.path(), &neighbour, &key, None).await;

    let got = host_reaches_neighbour(&agent, &mut neighbour).await;
    assert_eq!(
        got,
        ipv4_packet(agent_overlay(), neighbour_overlay(), 64, b"from the host")
    );

    // And back: the engine delivers the neighbour's packet to the double.
    let reply = ipv4_packet(neighbour_overlay(), agent_overlay(), 64, b"to the host");
    neighbour.send.send(reply.clone()).await.expect("neighbour");
    let requests = tokio::time::timeout(PATIENCE, agent.host.wait_for(|r| !r.delivered.is_empty()))
        .await
        .expect("the host receives the neighbour's packet");
    assert_eq!(requests.delivered[0], reply);

    let status = agent.status().await;
    assert_eq!(status.backend, "test");
    assert!(status.engine.counters.sent_from_local >= 1);
    assert!(status.engine.counters.delivered_local >= 1);
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn carrier_loss_reported_by_the_double_takes_the_link_down() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = PrivateKey::generate();
    let mut neighbour = Neighbour::spawn(key.public()).await;
    let device = KernelDevice {
        name: "fm-test".into(),
        ifindex: 3,
    };
    let agent = Agent::start(dir.path(), &neighbour, &key, Some(device)).await;

    // The engine asked which interface reaches the neighbour and was told.
    let requests = tokio::time::timeout(
        PATIENCE,
        agent
            .host
            .wait_for(|r| r.resolved.contains(&neighbour.addr.ip())),
    )
    .await
    .expect("ResolveUnderlay answered");
    assert!(requests.resolved.contains(&neighbour.addr.ip()));

    // A first report of "down" is not a loss (operstate lags behind).
    agent.host.carrier(UNDERLAY_IFINDEX, "veth0", false).await;
    agent.host.carrier(UNDERLAY_IFINDEX, "veth0", true).await;
    host_reaches_neighbour(&agent, &mut neighbour).await;
    let status = agent.status().await;
    assert_eq!(status.backend, "test (fm-test)");
    assert_eq!(
        status.engine.links[0].state, "up",
        "{:?}",
        status.engine.links
    );
    assert!(
        !status.engine.events.iter().any(|e| e.kind == "link-down"),
        "no link-down before the real carrier loss: {:?}",
        status.engine.events
    );

    agent.host.carrier(UNDERLAY_IFINDEX, "veth0", false).await;
    let down = tokio::time::timeout(PATIENCE, async {
        loop {
            let status = agent.status().await;
            if let Some(event) = status.engine.events.iter().find(|e| e.kind == "link-down") {
                return event.clone();
            }
            tokio::time::sleep(RETRY).await;
        }
    })
    .await
    .expect("the link goes down");
    assert!(down.detail.contains("carrier loss"), "{down:?}");
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ping_goes_to_the_backend_and_its_refusal_to_the_operator() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = PrivateKey::generate();
    let neighbour = Neighbour::spawn(key.public()).await;
    let agent = Agent::start(dir.path(), &neighbour, &key, None).await;
    let target = IpAddr::V4(neighbour_overlay());
    let answer = crate::control::request(&agent.socket, &Request::Ping { target, count: 1 })
        .await
        .expect("answer");
    let Response::Error { message } = answer else {
        panic!("{answer:?}");
    };
    assert!(message.contains("ping(8)"), "{message}");
    assert_eq!(agent.host.requests().pings, vec![target]);
    agent.stop().await;
}

#[test]
fn only_a_carrier_loss_seen_happening_counts() {
    let event = |ifindex, carrier_up| CarrierEvent {
        ifindex,
        name: format!("if{ifindex}"),
        carrier_up,
    };
    let mut rule = CarrierRule::default();
    assert_eq!(rule.lost(&event(1, false)), None, "first report: no loss");
    assert_eq!(rule.lost(&event(1, true)), None, "regained: nothing to do");
    assert_eq!(rule.lost(&event(1, false)), Some(1));
    assert_eq!(rule.lost(&event(1, false)), None, "reported once");
    assert_eq!(rule.lost(&event(2, false)), None, "another interface");
    assert_eq!(rule.lost(&event(2, true)), None);
    assert_eq!(rule.lost(&event(2, false)), Some(2));
}
