//! Shared by the admin API tests: a controller with its API on loopback
//! over a seeded database, an HTTP client, an SSE reader and a raw agent.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use freimesh_agent::identity::PrivateKey;
use freimesh_controller::api::{ApiLimits, ApiOptions, TlsFiles};
use freimesh_controller::store::{LinkRecord, Store};
use freimesh_controller::{admin, server};
use freimesh_proto::api;
use freimesh_proto::control::{self, AgentMsg, ControllerMsg, Hello};
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _};
use tokio::sync::oneshot;

/// A controller with the admin API on loopback and one operator.
pub struct Api {
    pub _dir: Option<tempfile::TempDir>,
    pub db: PathBuf,
    pub agents: SocketAddr,
    pub addr: SocketAddr,
    pub token: String,
    pub controller_key: freimesh_proto::PublicKeyBytes,
    pub stop: Option<oneshot::Sender<()>>,
    pub tls: bool,
}

/// A fresh database: nodes 1 – 2 – 3 active and linked (measured), node 4
/// pending; one operator.
pub fn seeded() -> (
    tempfile::TempDir,
    PathBuf,
    String,
    freimesh_proto::PublicKeyBytes,
) {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("mesh.db");
    let key = admin::init(
        &db,
        "fd12:3456:789a::/48".parse().expect("ula"),
        "10.99.0.0/16".parse().expect("v4"),
        false,
    )
    .expect("init");
    let mut store = Store::open(&db).expect("open");
    for i in 1..=4u8 {
        let k = freimesh_proto::PublicKeyBytes([i; 32]);
        let rec = store
            .add_pending(k, &format!("node{i}"), &[], Default::default(), 0)
            .expect("pending");
        if i < 4 {
            store.approve(rec.id).expect("approve");
        }
    }
    store
        .approve_prefix(3, "10.20.0.0/24".parse().expect("prefix"))
        .expect("prefix");
    let link = |a, b, rtt| LinkRecord {
        a,
        b,
        rtt_us: Some(rtt),
        loss_ppm: Some(0),
        up: true,
        override_cost: None,
    };
    store
        .save_links(&[link(1, 2, 800), link(2, 3, 900)], 0)
        .expect("links");
    drop(store);
    let token = admin::operator_add(&db, "city-it").expect("operator");
    (dir, db, token, key)
}

impl Api {
    pub async fn start() -> Self {
        let (dir, db, token, key) = seeded();
        let mut api = Self::on(&db, token, key, None).await;
        api._dir = Some(dir);
        api
    }

    /// [`Api::start`] with the given control server and API limits.
    pub async fn start_with_limits(limits: server::Limits, api_limits: ApiLimits) -> Self {
        let (dir, db, token, key) = seeded();
        let mut api = Self::on_with(&db, token, key, None, limits, api_limits).await;
        api._dir = Some(dir);
        api
    }

    pub async fn on(
        db: &Path,
        token: String,
        controller_key: freimesh_proto::PublicKeyBytes,
        tls: Option<TlsFiles>,
    ) -> Self {
        Self::on_with(
            db,
            token,
            controller_key,
            tls,
            server::Limits::default(),
            ApiLimits::default(),
        )
        .await
    }

    pub async fn on_with(
        db: &Path,
        token: String,
        controller_key: freimesh_proto::PublicKeyBytes,
        tls: Option<TlsFiles>,
        limits: server::Limits,
        api_limits: ApiLimits,
    ) -> Self {
        let opts = server::Options {
            db: db.to_owned(),
            listen: "127.0.0.1:0".parse().expect("addr"),
            require_approval: false,
        };
        let mut srv = server::Server::bind(&opts).await.expect("bind");
        srv.set_limits(limits);
        let is_tls = tls.is_some();
        let addr = srv
            .bind_api(&ApiOptions {
                tls,
                limits: api_limits,
                ..ApiOptions::plain("127.0.0.1:0".parse().expect("addr"))
            })
            .expect("bind api")
            .expect("api addr");
        let agents = srv.local_addr().expect("agents addr");
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(srv.run(async move {
            let _ = stopped.await;
        }));
        Self {
            _dir: None,
            db: db.to_owned(),
            agents,
            addr,
            token,
            controller_key,
            stop: Some(stop),
            tls: is_tls,
        }
    }

    pub fn url(&self, path: &str) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}{path}", self.addr)
    }

    /// `(status, body)` of a request with `auth` as the Authorization header.
    pub async fn raw(
        &self,
        method: &str,
        path: &str,
        auth: Option<String>,
        body: Option<&str>,
    ) -> (u16, String) {
        let url = self.url(path);
        let method = method.to_owned();
        let body = body.map(str::to_owned);
        tokio::task::spawn_blocking(move || {
            let agent = ureq::Agent::config_builder()
                .http_status_as_error(false)
                .timeout_global(Some(Duration::from_secs(10)))
                .build()
                .new_agent();
            let mut resp = match (method.as_str(), body) {
                ("GET", _) => {
                    let mut req = agent.get(&url);
                    if let Some(a) = &auth {
                        req = req.header("Authorization", a);
                    }
                    req.call()
                }
                (_, body) => {
                    let mut req = agent.post(&url).header("Content-Type", "application/json");
                    if let Some(a) = &auth {
                        req = req.header("Authorization", a);
                    }
                    req.send(body.unwrap_or_default())
                }
            }
            .expect("request");
            let status = resp.status().as_u16();
            let text = resp.body_mut().read_to_string().expect("body");
            (status, text)
        })
        .await
        .expect("blocking request")
    }

    pub async fn get(&self, path: &str) -> (u16, String) {
        self.raw("GET", path, Some(format!("Bearer {}", self.token)), None)
            .await
    }

    pub async fn post(&self, path: &str, body: Option<&str>) -> (u16, String) {
        self.raw("POST", path, Some(format!("Bearer {}", self.token)), body)
            .await
    }

    pub async fn json<T: serde::de::DeserializeOwned>(&self, path: &str) -> T {
        let (status, body) = self.get(path).await;
        assert_eq!(status, 200, "GET {path}: {body}");
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path}: {e}: {body}"))
    }

    pub fn dump(&self) -> String {
        Store::open(&self.db).expect("open").dump().expect("dump")
    }
}

impl Drop for Api {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

pub fn error_of(body: &str) -> api::ApiError {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("ApiError body: {e}: {body}"))
}

pub async fn routes_len(api: &Api, id: u32) -> usize {
    api.json::<Vec<api::Route>>(&format!("/api/v1/nodes/{id}/routes"))
        .await
        .len()
}

pub fn kinds(events: &[api::Event]) -> Vec<api::EventKind> {
    events.iter().map(|e| e.kind.clone()).collect()
}

/// An SSE client over a plain TCP socket: the lines it reads.
pub struct Stream {
    lines: tokio::io::Lines<tokio::io::BufReader<tokio::net::TcpStream>>,
}

impl Stream {
    pub async fn open(api: &Api, query: &str, headers: &[(&str, &str)]) -> Self {
        let mut s = tokio::net::TcpStream::connect(api.addr)
            .await
            .expect("connect");
        let mut req = format!(
            "GET /api/v1/events/stream{query} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n",
            api.token
        );
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        s.write_all(req.as_bytes()).await.expect("request");
        let mut lines = tokio::io::BufReader::new(s).lines();
        let status = lines.next_line().await.expect("read").expect("status line");
        assert!(status.contains(" 200 "), "{status}");
        Self { lines }
    }

    /// The next event (its `id:`, `event:` and parsed `data:`), within 5 s.
    pub async fn next(&mut self) -> (String, String, api::Event) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        let (mut id, mut kind) = (String::new(), String::new());
        loop {
            let line = tokio::time::timeout_at(deadline, self.lines.next_line())
                .await
                .expect("an event in time")
                .expect("read")
                .expect("stream open");
            if let Some(v) = line.strip_prefix("id: ") {
                id = v.to_owned();
            } else if let Some(v) = line.strip_prefix("event: ") {
                kind = v.to_owned();
            } else if let Some(v) = line.strip_prefix("data: ") {
                let event = serde_json::from_str(v).expect("event JSON on one line");
                return (id, kind, event);
            }
        }
    }
}

/// An agent speaking the control protocol frame by frame.
pub struct RawAgent {
    tx: tokio::net::tcp::OwnedWriteHalf,
    rx: tokio::net::tcp::OwnedReadHalf,
    transport: control::Transport,
}

impl RawAgent {
    pub async fn connect(api: &Api, key: &PrivateKey, token: Option<String>, name: &str) -> Self {
        let stream = tokio::net::TcpStream::connect(api.agents)
            .await
            .expect("connect");
        let (mut rx, mut tx) = stream.into_split();
        let (init, msg1) =
            control::Initiator::start(&key.bytes(), &api.controller_key).expect("start");
        tx.write_all(&control::length_prefixed(&msg1).expect("len"))
            .await
            .expect("msg1");
        let len = rx.read_u16().await.expect("msg2 len");
        let mut msg2 = vec![0; usize::from(len)];
        rx.read_exact(&mut msg2).await.expect("msg2");
        let transport = init.finish(&msg2).expect("finish");
        let mut agent = Self { tx, rx, transport };
        agent
            .send(&AgentMsg::Hello(Hello {
                version: freimesh_proto::PROTOCOL_VERSION,
                join_token: token,
                hostname: name.to_owned(),
                endpoints: vec![],
                prefixes: vec![],
                want_addresses: vec![],
                roles: Default::default(),
            }))
            .await;
        match agent.recv().await {
            ControllerMsg::Welcome(_) => agent,
            other => panic!("{name}: expected Welcome, got {other:?}"),
        }
    }

    pub async fn send(&mut self, msg: &AgentMsg) {
        let frame = control::encode(msg).expect("encode");
        let sealed = self.transport.seal(&frame).expect("seal");
        self.tx
            .write_all(&control::length_prefixed(&sealed).expect("len"))
            .await
            .expect("send");
    }

    pub async fn recv(&mut self) -> ControllerMsg {
        let len = tokio::time::timeout(Duration::from_secs(10), self.rx.read_u16())
            .await
            .expect("a frame in time")
            .expect("read");
        let mut buf = vec![0; usize::from(len)];
        self.rx.read_exact(&mut buf).await.expect("frame");
        let plain = self.transport.open(&buf).expect("open");
        control::decode(&plain).expect("decode")
    }
}
