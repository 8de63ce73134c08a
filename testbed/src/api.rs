//! A small blocking client for the controller's admin API (`docs/api.md`),
//! for the demo, the labs and the event-latency bench: JSON requests with
//! the operator token, and a Server-Sent Events subscriber that hands each
//! event to a channel with the instant it arrived.

use std::io::{BufRead as _, BufReader};
use std::net::SocketAddr;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use freimesh_proto::api::{API_PREFIX, Event, Node};
use serde::de::DeserializeOwned;

/// How long one ordinary request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// The admin API of one controller, with an operator token.
#[derive(Debug, Clone)]
pub struct ApiClient {
    base: String,
    token: String,
    agent: ureq::Agent,
}

impl ApiClient {
    /// A client for the API on `addr` (plain HTTP, as the demo runs it).
    pub fn new(addr: SocketAddr, token: &str) -> Self {
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(REQUEST_TIMEOUT))
            .http_status_as_error(false)
            .build()
            .into();
        Self {
            base: format!("http://{addr}"),
            token: token.to_owned(),
            agent,
        }
    }

    /// The base URL, as `freimesh-tui --api` takes it.
    pub fn base(&self) -> &str {
        &self.base
    }

    fn url(&self, path: &str) -> String {
        format!("{}{API_PREFIX}{path}", self.base)
    }

    fn bearer(&self) -> String {
        format!("Bearer {}", self.token)
    }

    /// `GET /api/v1{path}` as JSON.
    pub fn get<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        let url = self.url(path);
        let response = self
            .agent
            .get(&url)
            .header("Authorization", &self.bearer())
            .call()
            .with_context(|| format!("GET {url}"))?;
        decode(&url, response)
    }

    /// `POST /api/v1{path}` without a body, answer as JSON.
    pub fn post<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        let url = self.url(path);
        let response = self
            .agent
            .post(&url)
            .header("Authorization", &self.bearer())
            .send_empty()
            .with_context(|| format!("POST {url}"))?;
        decode(&url, response)
    }

    /// `method` (GET or POST) on `/api/v1{path}`, the answer as JSON.
    pub fn call(&self, method: &str, path: &str) -> anyhow::Result<serde_json::Value> {
        match method {
            "GET" => self.get(path),
            "POST" => self.post(path),
            other => bail!("unsupported method {other}"),
        }
    }

    /// Waits until the controller accepts the token: it loads operator
    /// tokens with the registry, a moment after `operator add`.
    pub fn wait_authorized(&self, timeout: Duration) -> anyhow::Result<()> {
        crate::traffic::retry(timeout, || {
            self.get::<freimesh_proto::api::Overview>("/overview")
                .map(drop)
        })
        .context("the admin API never accepted the operator token")
    }

    /// Every node, sorted by id.
    pub fn nodes(&self) -> anyhow::Result<Vec<Node>> {
        self.get("/nodes")
    }

    /// `POST /nodes/{id}/drain` (or `/undrain`): the node afterwards.
    pub fn drain(&self, id: u32, drained: bool) -> anyhow::Result<Node> {
        let action = if drained { "drain" } else { "undrain" };
        self.post(&format!("/nodes/{id}/{action}"))
    }

    /// Events after `since`, oldest first.
    pub fn events(&self, since: u64) -> anyhow::Result<Vec<Event>> {
        self.get(&format!("/events?since={since}&limit=1000"))
    }

    /// The newest event's sequence number (0 if there is none yet).
    pub fn last_seq(&self) -> anyhow::Result<u64> {
        let mut since = 0;
        loop {
            let page = self.events(since)?;
            match page.last() {
                Some(last) => since = last.seq,
                None => return Ok(since),
            }
        }
    }

    /// Subscribes to `GET /events/stream?since=SEQ` in a background thread.
    /// Each event arrives on the channel with the instant its `data:` line
    /// was read; the thread ends when the stream or the receiver does.
    pub fn subscribe(&self, since: u64) -> anyhow::Result<mpsc::Receiver<Arrived>> {
        let url = self.url(&format!("/events/stream?since={since}"));
        // No global timeout: the stream stays open; keep-alives every 15 s.
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        let response = agent
            .get(&url)
            .header("Authorization", &self.bearer())
            .header("Accept", "text/event-stream")
            .call()
            .with_context(|| format!("GET {url}"))?;
        if !response.status().is_success() {
            bail!("GET {url}: {}", response.status());
        }
        let reader = BufReader::new(response.into_body().into_reader());
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in reader.lines() {
                let Ok(line) = line else { return };
                let Some(data) = line.strip_prefix("data:") else {
                    continue;
                };
                let at = Instant::now();
                let received_ms = crate::failover::probe::now_ns() / 1_000_000;
                let Ok(event) = serde_json::from_str::<Event>(data.trim()) else {
                    continue;
                };
                let arrived = Arrived {
                    event,
                    at,
                    received_ms,
                };
                if tx.send(arrived).is_err() {
                    return;
                }
            }
        });
        Ok(rx)
    }
}

/// An event off the stream and when it came.
#[derive(Debug, Clone)]
pub struct Arrived {
    pub event: Event,
    pub at: Instant,
    /// Wall clock (Unix ms) at arrival, comparable with `event.at_ms`.
    pub received_ms: u64,
}

fn decode<T: DeserializeOwned>(
    url: &str,
    mut response: ureq::http::Response<ureq::Body>,
) -> anyhow::Result<T> {
    let status = response.status();
    let body = response
        .body_mut()
        .read_to_string()
        .with_context(|| format!("reading the answer of {url}"))?;
    if !status.is_success() {
        bail!("{url}: {status}: {body}");
    }
    serde_json::from_str(&body).with_context(|| format!("{url}: unexpected answer {body}"))
}

/// One line describing an event, for the demo's and the labs' output.
pub fn describe(event: &Event, name: &dyn Fn(u32) -> String) -> String {
    use freimesh_proto::api::EventKind as K;
    match &event.kind {
        K::Failover {
            node,
            peer,
            cause,
            detection_ms,
            switch_us,
            rerouted,
            lost,
        } => format!(
            "failover on {}: link to {} down ({}), detected in {detection_ms} ms, \
             switched in {switch_us} µs, {rerouted} prefixes rerouted, {lost} lost",
            name(*node),
            name(*peer),
            // The API's own word for the cause (`silence`, `carrier`, …).
            serde_json::to_value(cause)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default()
        ),
        K::LinkUp { a, b } => format!("link {}–{} up", name(*a), name(*b)),
        K::LinkDown { a, b } => format!("link {}–{} down", name(*a), name(*b)),
        K::Enrolled { node, hostname } => format!("{} enrolled as {hostname}", name(*node)),
        K::Approved { node } => format!("{} approved", name(*node)),
        K::Revoked { node } => format!("{} revoked", name(*node)),
        K::Drained { node } => format!("{} drained", name(*node)),
        K::Undrained { node } => format!("{} undrained", name(*node)),
        K::Connected { node } => format!("{} connected", name(*node)),
        K::Disconnected { node } => format!("{} disconnected", name(*node)),
        K::TokenCreated { id } => format!("join token {id} created"),
        K::UplinkUp { node } => format!("uplink of gateway {} up", name(*node)),
        K::UplinkDown { node } => format!("uplink of gateway {} down", name(*node)),
        K::SiteAdded { name: site, via } => format!("site {site} added via {}", name(*via)),
        K::SiteRemoved { name: site } => format!("site {site} removed"),
        K::OperatorAdded { name, scope, .. } => format!("operator {name} added ({scope})"),
        K::OperatorRemoved { name } => format!("operator {name} removed"),
        K::RoleAwaitsApproval { node, role } => {
            format!(
                "{} requests the {role} role; it awaits approval",
                name(*node)
            )
        }
        K::RoleApproved { node, role } => format!("{role} role approved for {}", name(*node)),
        K::AgentVersionChanged { node, from, to } => {
            format!("{} runs agent {to} (was {from})", name(*node))
        }
        K::Rebooted { node, .. } => format!("{} rebooted", name(*node)),
        K::RoleRevoked { node, role } => format!("{role} role withdrawn from {}", name(*node)),
        K::LinkDisputed {
            a,
            b,
            node,
            rtt_us,
            other_rtt_us,
        } => format!(
            "link {}–{}: {} claims {rtt_us} µs, the other end {other_rtt_us} µs; the larger is used",
            name(*a),
            name(*b),
            name(*node)
        ),
    }
}
