//! A controller on loopback and control-plane clients for the tests.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use freimesh_agent::controlplane::{Client, ClientConfig, ControllerEvent, Upstream};
use freimesh_agent::identity::PrivateKey;
use freimesh_controller::{admin, server};
use freimesh_proto::PublicKeyBytes;
use tokio::sync::{mpsc, oneshot};

pub struct Mesh {
    pub dir: tempfile::TempDir,
    pub db: PathBuf,
    pub addr: SocketAddr,
    pub controller_key: PublicKeyBytes,
    stop: Option<oneshot::Sender<()>>,
}

impl Mesh {
    pub async fn start(approval: bool) -> Self {
        Self::start_with_limits(approval, server::Limits::default()).await
    }

    pub async fn start_with_limits(approval: bool, limits: server::Limits) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = dir.path().join("mesh.db");
        let controller_key = admin::init(
            &db,
            "fd12:3456:789a::/48".parse().expect("ula"),
            "10.99.0.0/16".parse().expect("v4"),
            approval,
        )
        .expect("init");
        let opts = server::Options {
            db: db.clone(),
            listen: "127.0.0.1:0".parse().expect("addr"),
            require_approval: false,
        };
        let mut srv = server::Server::bind(&opts).await.expect("bind");
        srv.set_limits(limits);
        let addr = srv.local_addr().expect("addr");
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(srv.run(async move {
            let _ = stopped.await;
        }));
        Self {
            dir,
            db,
            addr,
            controller_key,
            stop: Some(stop),
        }
    }

    pub fn token(&self) -> String {
        admin::token_create(&self.db, Duration::from_secs(3600), &[]).expect("token")
    }

    pub fn client(&self, name: &str, token: Option<String>) -> Agent {
        let key = PrivateKey::generate();
        self.client_with_key(name, token, key)
    }

    pub fn client_with_key(&self, name: &str, token: Option<String>, key: PrivateKey) -> Agent {
        self.client_with_roles(name, token, key, Default::default())
    }

    /// A client whose Hello requests `roles`.
    pub fn client_with_roles(
        &self,
        name: &str,
        token: Option<String>,
        key: PrivateKey,
        roles: freimesh_proto::control::Roles,
    ) -> Agent {
        let public = key.public();
        let cfg = ClientConfig {
            controller_endpoints: vec![self.addr],
            controller_key: self.controller_key,
            join_token: token,
            hostname: name.to_owned(),
            endpoints: vec!["192.0.2.1:51820".parse().expect("ep")],
            prefixes: vec![],
            want_addresses: vec![],
            roles,
        };
        let (ev_tx, events) = mpsc::channel(256);
        let (reports, rep_rx) = mpsc::channel(16);
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(Client::new(cfg, key, ev_tx, rep_rx).run(async move {
            let _ = stopped.await;
        }));
        Agent {
            public,
            events,
            reports,
            _stop: stop,
        }
    }
}

impl Drop for Mesh {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

pub struct Agent {
    pub public: PublicKeyBytes,
    pub events: mpsc::Receiver<ControllerEvent>,
    pub reports: mpsc::Sender<Upstream>,
    _stop: oneshot::Sender<()>,
}

impl Agent {
    /// The next event matching `pred`, skipping others; panics after 10 s.
    pub async fn wait_for(
        &mut self,
        what: &str,
        pred: impl Fn(&ControllerEvent) -> bool,
    ) -> ControllerEvent {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Ok(Some(e)) if pred(&e) => return e,
                Ok(Some(_)) => {}
                Ok(None) => panic!("client stopped while waiting for {what}"),
                Err(_) => panic!("timed out waiting for {what}"),
            }
        }
    }
}

/// Handshakes as `key`, sends `frame` (plaintext, any bytes) as the first
/// frame and returns every frame the controller sends until it closes.
pub async fn raw_exchange(
    mesh: &Mesh,
    key: &PrivateKey,
    frames: &[Vec<u8>],
) -> Vec<freimesh_proto::control::ControllerMsg> {
    use freimesh_proto::control::{self, ControllerMsg};
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    let mut stream = tokio::net::TcpStream::connect(mesh.addr)
        .await
        .expect("connect");
    let (init, msg1) =
        control::Initiator::start(&key.bytes(), &mesh.controller_key).expect("start");
    let write = |m: &[u8]| {
        let mut v = u16::try_from(m.len()).expect("len").to_be_bytes().to_vec();
        v.extend_from_slice(m);
        v
    };
    stream.write_all(&write(&msg1)).await.expect("msg1");
    let len = stream.read_u16().await.expect("msg2 len");
    let mut msg2 = vec![0; usize::from(len)];
    stream.read_exact(&mut msg2).await.expect("msg2");
    let mut t = init.finish(&msg2).expect("finish");
    for frame in frames {
        let sealed = t.seal(frame).expect("seal");
        stream.write_all(&write(&sealed)).await.expect("frame");
    }
    let mut got = Vec::new();
    loop {
        let read = tokio::time::timeout(Duration::from_secs(10), stream.read_u16())
            .await
            .expect("controller answers or closes");
        let Ok(len) = read else { return got };
        let mut buf = vec![0; usize::from(len)];
        if stream.read_exact(&mut buf).await.is_err() {
            return got;
        }
        let plain = t.open(&buf).expect("open");
        let msg: ControllerMsg = control::decode(&plain).expect("controller frames decode");
        let is_err = matches!(msg, ControllerMsg::Error(_));
        got.push(msg);
        if is_err {
            // After an Error the controller must close: the next read ends.
            let mut rest = [0u8; 1];
            let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut rest))
                .await
                .expect("closed in time")
                .unwrap_or(0);
            assert_eq!(n, 0, "connection closed after the Error");
            return got;
        }
    }
}

pub fn dump(mesh: &Mesh) -> String {
    freimesh_controller::store::Store::open(&mesh.db)
        .expect("open")
        .dump()
        .expect("dump")
}
