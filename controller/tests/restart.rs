//! The real binary, SIGKILLed while agents are enrolled: after a restart no
//! enrolled node, approved prefix or token is lost, and nodes log in again
//! with the same addresses.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use freimesh_agent::controlplane::{Client, ClientConfig, ControllerEvent};
use freimesh_agent::identity::PrivateKey;
use freimesh_controller::store::Store;
use freimesh_proto::PublicKeyBytes;
use tokio::sync::mpsc;

const BIN: &str = env!("CARGO_BIN_EXE_freimesh-controller");

fn cli(args: &[&str]) -> String {
    let out = Command::new(BIN)
        .args(args)
        .output()
        .expect("run controller cli");
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .expect("utf8")
        .trim()
        .to_owned()
}

fn free_port() -> std::net::SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr")
}

fn spawn(db: &str, listen: std::net::SocketAddr) -> Child {
    Command::new(BIN)
        .args(["run", "--db", db, "--listen", &listen.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn controller")
}

async fn welcome(
    listen: std::net::SocketAddr,
    ctl: PublicKeyBytes,
    key: PrivateKey,
    token: Option<String>,
) -> ControllerEvent {
    let cfg = ClientConfig {
        controller_endpoints: vec![listen],
        controller_key: ctl,
        join_token: token,
        hostname: "n".into(),
        endpoints: vec![],
        prefixes: vec![],
        want_addresses: vec![],
        roles: Default::default(),
    };
    let (tx, mut rx) = mpsc::channel(64);
    let (_rep_tx, rep_rx) = mpsc::channel(1);
    let task = tokio::spawn(Client::new(cfg, key, tx, rep_rx).run(std::future::pending()));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let got = loop {
        match tokio::time::timeout_at(deadline, rx.recv())
            .await
            .expect("welcome in time")
        {
            Some(e @ ControllerEvent::Welcome(_)) => break e,
            Some(ControllerEvent::Refused(e)) => panic!("refused: {e}"),
            Some(_) => {}
            None => panic!("client stopped"),
        }
    };
    task.abort();
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_and_restart_lose_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("mesh.db");
    let db_s = db.to_str().expect("utf8 path");
    let ctl = PublicKeyBytes::from_base64(&cli(&[
        "init",
        "--ula",
        "fd12:3456:789a::/48",
        "--ipv4",
        "10.99.0.0/16",
        "--db",
        db_s,
    ]))
    .expect("init prints the public key");
    let listen = free_port();
    let mut child = spawn(db_s, listen);

    let keys: Vec<PrivateKey> = (0..3).map(|_| PrivateKey::generate()).collect();
    let mut welcomes = Vec::new();
    for key in &keys {
        let token = cli(&["token", "create", "--expires", "1h", "--db", db_s]);
        welcomes.push(welcome(listen, ctl, key.clone(), Some(token)).await);
    }
    cli(&["prefix", "approve", "1", "10.20.0.0/24", "--db", db_s]);
    let spare = cli(&["token", "create", "--expires", "1h", "--db", db_s]);
    let before = Store::open(&db).expect("open").dump().expect("dump");

    child.kill().expect("SIGKILL");
    let _ = child.wait();
    let after = Store::open(&db).expect("open").dump().expect("dump");
    assert_eq!(before, after, "nothing lost to SIGKILL");
    assert!(cli(&["node", "list", "--db", db_s]).lines().count() == 3);

    let mut child = spawn(db_s, listen);
    for (key, first) in keys.iter().zip(&welcomes) {
        // Key alone after the restart; same node id and addresses.
        assert_eq!(&welcome(listen, ctl, key.clone(), None).await, first);
    }
    // The spare token survived and still enrols exactly once.
    let ControllerEvent::Welcome(w) =
        welcome(listen, ctl, PrivateKey::generate(), Some(spare)).await
    else {
        unreachable!()
    };
    assert!(
        w.addresses.iter().any(|a| a.to_string() == "10.99.0.4/32"),
        "{w:?}"
    );
    child.kill().expect("kill");
    let _ = child.wait();
}
