//! Cold start from the state file against the backend double: the agent
//! comes up with the addresses, links and routes the file holds while the
//! controller does not answer, and stays up when a controller (a minimal
//! one over loopback, speaking the real protocol) welcomes it back. Also
//! what the controller's answers do to the file (a revoked node loses it)
//! and how the client walks its list of controller endpoints.

use freimesh_proto::NodeId;
use freimesh_proto::control::{
    self, AgentMsg, ControllerMsg, LinkAssignment, Route, Transport, Welcome,
};
use freimesh_proto::segment::Segment;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

use super::*;
use crate::membership::MembershipSnapshot;
use crate::statefile::{self, Loaded, NodeState};

fn saved_state(key: &PrivateKey, controller: &PrivateKey, neighbour: &Neighbour) -> NodeState {
    NodeState {
        node_key: key.public(),
        controller_key: controller.public(),
        membership: MembershipSnapshot::default(),
        welcome: Some(Welcome {
            node_id: NodeId::of(&key.public()),
            addresses: vec![host_route(agent_overlay())],
            mesh_prefixes: vec!["10.99.0.0/16".parse().expect("net")],
            client_prefixes: Vec::new(),
            signing_key: freimesh_proto::credential::SigningKeyBytes([5; 32]),
        }),
        links: vec![LinkAssignment {
            peer: neighbour.key.public(),
            endpoint: Some(neighbour.addr),
            profile: "default".into(),
            allowed_sources: Vec::new(),
        }],
        routes: vec![Route {
            upstreams: Vec::new(),
            prefix: host_route(neighbour_overlay()),
            via: vec![neighbour.key.public()],
            segment: Segment::Infrastructure,
        }],
        controller_endpoints: Vec::new(),
        control_exits: Vec::new(),
    }
}

/// A node with nothing but its key, the controller and a state file.
fn controlled_config(
    dir: &Path,
    key: &PrivateKey,
    controller: SocketAddr,
    controller_key: &PrivateKey,
) -> AgentConfig {
    let key_file = dir.join("private.key");
    key.write_new(&key_file).expect("key file");
    let text = format!(
        r#"
[node]
name = "cold-start"
private_key_file = "{key_file}"
control_socket = "{socket}"
listen = "127.0.0.1:0"
backend = "userspace"
state_file = "{state}"
state_write_interval_s = 10

[controller]
endpoint = "{controller}"
public_key = "{controller_key}"
"#,
        key_file = key_file.display(),
        socket = socket_path(dir).display(),
        state = dir.join("state").display(),
        controller_key = controller_key.public().to_base64(),
    );
    AgentConfig::from_toml(&text).expect("config")
}

async fn read_frame(stream: &mut TcpStream) -> Vec<u8> {
    let len = stream.read_u16().await.expect("length");
    let mut buf = vec![0u8; usize::from(len)];
    stream.read_exact(&mut buf).await.expect("frame");
    buf
}

async fn send(stream: &mut TcpStream, transport: &mut Transport, msg: &ControllerMsg) {
    for frame in control::encode_controller_frames(msg).expect("encode") {
        let sealed = transport.seal(&frame).expect("seal");
        let framed = control::length_prefixed(&sealed).expect("length");
        stream.write_all(&framed).await.expect("send");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_comes_up_from_its_state_file_and_the_controller_changes_only_what_differs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = PrivateKey::generate();
    let controller_key = PrivateKey::generate();
    let mut neighbour = Neighbour::spawn(key.public()).await;
    // The controller's port is open but nobody answers yet: the agent's
    // handshake waits, as behind a controller that is away.
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("listen");
    let controller = listener.local_addr().expect("bound");
    let config = controlled_config(dir.path(), &key, controller, &controller_key);
    let saved = saved_state(&key, &controller_key, &neighbour);
    let state_path = config.state_file.path.clone();
    statefile::write_atomic(
        &state_path,
        &statefile::format::encode(&saved).expect("encode"),
    )
    .expect("state file");

    let (backend, host) = TestBackend::new(None);
    host.route_underlay(neighbour.addr.ip(), UNDERLAY_IFINDEX);
    let (stop, stopped) = oneshot::channel();
    let ended = tokio::spawn(run_with_backend(
        config,
        move |_| async move { Ok(Box::new(backend) as Box<dyn LocalBackend>) },
        async move {
            let _ = stopped.await;
        },
    ));
    let socket = socket_path(dir.path());
    tokio::time::timeout(PATIENCE, async {
        while !socket.exists() {
            tokio::time::sleep(RETRY).await;
        }
    })
    .await
    .expect("the agent starts without its controller");
    let agent = Agent {
        host,
        socket,
        stop,
        ended,
    };
    let status = agent.status().await;
    assert_eq!(status.addresses, vec![host_route(agent_overlay())]);
    assert_eq!(status.state_writes, Some(0), "the file holds this state");
    // The link and the route from the file carry traffic.
    host_reaches_neighbour(&agent, &mut neighbour).await;

    // The controller answers: same Welcome and links, one route more.
    let (mut stream, _) = tokio::time::timeout(PATIENCE, listener.accept())
        .await
        .expect("the agent dials its controller")
        .expect("accept");
    let msg1 = read_frame(&mut stream).await;
    let (mut transport, peer, msg2) =
        control::respond(&controller_key.bytes(), &msg1).expect("handshake");
    assert_eq!(peer, key.public());
    stream
        .write_all(&control::length_prefixed(&msg2).expect("length"))
        .await
        .expect("msg2");
    let hello = transport
        .open(&read_frame(&mut stream).await)
        .expect("open");
    assert!(matches!(
        control::decode::<AgentMsg>(&hello),
        Ok(AgentMsg::Hello(_))
    ));
    let extra = Route {
        upstreams: Vec::new(),
        prefix: "10.99.0.3/32".parse().expect("net"),
        via: vec![neighbour.key.public()],
        segment: Segment::Infrastructure,
    };
    let welcome = saved.welcome.clone().expect("welcome");
    send(
        &mut stream,
        &mut transport,
        &ControllerMsg::Welcome(welcome),
    )
    .await;
    send(
        &mut stream,
        &mut transport,
        &ControllerMsg::Links {
            links: saved.links.clone(),
            last: true,
        },
    )
    .await;
    let mut routes = saved.routes.clone();
    routes.push(extra.clone());
    send(
        &mut stream,
        &mut transport,
        &ControllerMsg::Routes { routes, last: true },
    )
    .await;

    // The new route is applied and saved once (after the settle time);
    // traffic on the unchanged link keeps flowing meanwhile.
    tokio::time::timeout(PATIENCE, async {
        loop {
            host_reaches_neighbour(&agent, &mut neighbour).await;
            if agent.status().await.state_writes == Some(1) {
                return;
            }
            tokio::time::sleep(RETRY).await;
        }
    })
    .await
    .expect("the changed state is written");
    let status = agent.status().await;
    assert_eq!(status.engine.links.len(), 1, "the same one link");
    let Loaded::Usable { state, .. } =
        statefile::load(&state_path, &key.public(), &controller_key.public())
    else {
        panic!("state file unusable after the write");
    };
    assert_eq!(state.routes.len(), 2);
    assert!(state.routes.contains(&extra));
    // The agent still stops cleanly (its last save finds nothing new).
    agent.stop().await;
    drop(stream);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_node_loses_its_state_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = PrivateKey::generate();
    let controller_key = PrivateKey::generate();
    let neighbour = Neighbour::spawn(key.public()).await;
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("listen");
    let controller = listener.local_addr().expect("bound");
    let config = controlled_config(dir.path(), &key, controller, &controller_key);
    let state_path = config.state_file.path.clone();
    let saved = saved_state(&key, &controller_key, &neighbour);
    statefile::write_atomic(
        &state_path,
        &statefile::format::encode(&saved).expect("encode"),
    )
    .expect("state file");
    let (backend, _host) = TestBackend::new(None);
    let (stop, stopped) = oneshot::channel::<()>();
    let ended = tokio::spawn(run_with_backend(
        config,
        move |_| async move { Ok(Box::new(backend) as Box<dyn LocalBackend>) },
        async move {
            let _ = stopped.await;
        },
    ));

    let (mut stream, _) = tokio::time::timeout(PATIENCE, listener.accept())
        .await
        .expect("the agent dials its controller")
        .expect("accept");
    let msg1 = read_frame(&mut stream).await;
    let (mut transport, _, msg2) =
        control::respond(&controller_key.bytes(), &msg1).expect("handshake");
    stream
        .write_all(&control::length_prefixed(&msg2).expect("length"))
        .await
        .expect("msg2");
    let _hello = read_frame(&mut stream).await;
    send(
        &mut stream,
        &mut transport,
        &ControllerMsg::Error(control::ErrorMsg {
            code: control::ErrorCode::Revoked,
            message: "revoked by the operator".into(),
        }),
    )
    .await;
    tokio::time::timeout(PATIENCE, async {
        while state_path.exists() {
            tokio::time::sleep(RETRY).await;
        }
    })
    .await
    .expect("the state file is removed");
    let _ = stop.send(());
    tokio::time::timeout(PATIENCE, ended)
        .await
        .expect("agent stops")
        .expect("agent task")
        .expect("agent ends cleanly");
    assert!(!state_path.exists(), "not written again at shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_first_endpoint_passes_the_agent_on_to_the_next() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = PrivateKey::generate();
    let controller_key = PrivateKey::generate();
    let dead = {
        let closed = TcpListener::bind("127.0.0.1:0").await.expect("listen");
        closed.local_addr().expect("bound")
    };
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("listen");
    let live = listener.local_addr().expect("bound");
    let mut config = controlled_config(dir.path(), &key, dead, &controller_key);
    config
        .controller
        .as_mut()
        .expect("controller")
        .endpoints
        .push(live);
    let (backend, _host) = TestBackend::new(None);
    let (stop, stopped) = oneshot::channel::<()>();
    let ended = tokio::spawn(run_with_backend(
        config,
        move |_| async move { Ok(Box::new(backend) as Box<dyn LocalBackend>) },
        async move {
            let _ = stopped.await;
        },
    ));
    // No state file: the agent waits for a Welcome, which only the second
    // endpoint gives; the first refuses at once, and the next is tried
    // after a short pause, not after the backoff.
    let started = Instant::now();
    let (mut stream, _) = tokio::time::timeout(PATIENCE, listener.accept())
        .await
        .expect("the agent dials the second endpoint")
        .expect("accept");
    assert!(
        started.elapsed() < crate::controlplane::CONNECT_TIMEOUT,
        "{:?}",
        started.elapsed()
    );
    let msg1 = read_frame(&mut stream).await;
    let (mut transport, _, msg2) =
        control::respond(&controller_key.bytes(), &msg1).expect("handshake");
    stream
        .write_all(&control::length_prefixed(&msg2).expect("length"))
        .await
        .expect("msg2");
    let _hello = read_frame(&mut stream).await;
    let welcome = Welcome {
        node_id: NodeId::of(&key.public()),
        addresses: vec![host_route(agent_overlay())],
        mesh_prefixes: vec!["10.99.0.0/16".parse().expect("net")],
        client_prefixes: Vec::new(),
        signing_key: freimesh_proto::credential::SigningKeyBytes([5; 32]),
    };
    send(
        &mut stream,
        &mut transport,
        &ControllerMsg::Welcome(welcome),
    )
    .await;
    let socket = socket_path(dir.path());
    tokio::time::timeout(PATIENCE, async {
        while !socket.exists() {
            tokio::time::sleep(RETRY).await;
        }
    })
    .await
    .expect("the agent starts once welcomed");
    let _ = stop.send(());
    tokio::time::timeout(PATIENCE, ended)
        .await
        .expect("agent stops")
        .expect("agent task")
        .expect("agent ends cleanly");
}
