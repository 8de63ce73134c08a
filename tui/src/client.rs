//! A small blocking client for the controller's admin API (`docs/api.md`).
//!
//! One method per endpoint, typed answers from `freimesh_proto::api`, and
//! errors that say which request failed and whether the token was refused,
//! the controller could not be reached, or it answered something we could
//! not read. The event stream lives in [`crate::sse`].

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use freimesh_proto::api::{
    self, ApiError, CreateToken, CreatedToken, Event, Gateway, Link, Node, NodeDetail, Overview,
    Redundancy, Role, RoleChange, Route, Token,
};
use serde::de::DeserializeOwned;
use ureq::tls::{Certificate, PemItem, RootCerts, TlsConfig, TlsProvider};
use ureq::{Agent, Body};

/// A plain request gets this long in total; the UI refreshes every 2 s, so
/// a hung controller should show as unreachable quickly rather than freeze
/// the refresh loop.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Connecting takes milliseconds on a LAN; longer means the host is gone.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// The stream gets a keep-alive comment every 15 s; two missed ones mean
/// the connection is dead even if TCP has not noticed.
pub const STREAM_IDLE_TIMEOUT: Duration = Duration::from_secs(35);
/// Where Debian-like systems keep the system's CA bundle, for https without
/// `--ca-cert`.
const SYSTEM_CA_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/cert.pem",
];

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("{request}: the controller refused the operator token (401 unauthorized)")]
    Unauthorized { request: String },
    #[error("{request}: not found: {message}")]
    NotFound { request: String, message: String },
    #[error("{request}: rejected ({status} {error}): {message}")]
    Rejected {
        request: String,
        status: u16,
        error: String,
        message: String,
    },
    #[error("{request}: controller unreachable: {reason}")]
    Unreachable { request: String, reason: String },
    #[error("{request}: unexpected answer: {reason}")]
    BadAnswer { request: String, reason: String },
    #[error("reading the CA certificate {path}: {reason}")]
    CaCert { path: PathBuf, reason: String },
}

impl ClientError {
    /// True when retrying later may help (as opposed to a refused token or a
    /// rejected action).
    pub fn is_unreachable(&self) -> bool {
        matches!(self, ClientError::Unreachable { .. })
    }
}

/// The admin API client. Cheap to clone (the connection pool is shared).
#[derive(Debug, Clone)]
pub struct Client {
    base: String,
    auth: String,
    agent: Agent,
    stream_agent: Agent,
}

impl Client {
    /// A client for the controller at `base_url` (`http://127.0.0.1:7780`),
    /// authenticating with `token`. For https, `ca_cert` is a PEM file with
    /// the CA (or self-signed certificate) to trust; without it the system's
    /// CA bundle is used.
    pub fn new(base_url: &str, token: &str, ca_cert: Option<&Path>) -> Result<Client, ClientError> {
        let tls = tls_config(base_url, ca_cert)?;
        let build = |total: Option<Duration>| {
            Agent::config_builder()
                .http_status_as_error(false)
                .tls_config(tls.clone())
                .timeout_connect(Some(CONNECT_TIMEOUT))
                .timeout_global(total)
                .user_agent(concat!("freimesh-tui/", env!("CARGO_PKG_VERSION")))
                .build()
                .new_agent()
        };
        Ok(Client {
            base: base_url.trim_end_matches('/').to_string(),
            auth: format!("{} {token}", api::AUTH_SCHEME),
            agent: build(Some(REQUEST_TIMEOUT)),
            stream_agent: build(None),
        })
    }

    /// The base URL without a trailing slash.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    pub fn overview(&self) -> Result<Overview, ClientError> {
        self.get("/overview")
    }

    pub fn nodes(&self) -> Result<Vec<Node>, ClientError> {
        self.get("/nodes")
    }

    pub fn node(&self, id: u32) -> Result<NodeDetail, ClientError> {
        self.get(&format!("/nodes/{id}"))
    }

    pub fn routes(&self, id: u32) -> Result<Vec<Route>, ClientError> {
        self.get(&format!("/nodes/{id}/routes"))
    }

    pub fn drain(&self, id: u32) -> Result<Node, ClientError> {
        self.post_empty(&format!("/nodes/{id}/drain"))
    }

    pub fn undrain(&self, id: u32) -> Result<Node, ClientError> {
        self.post_empty(&format!("/nodes/{id}/undrain"))
    }

    pub fn approve(&self, id: u32) -> Result<Node, ClientError> {
        self.post_empty(&format!("/nodes/{id}/approve"))
    }

    pub fn revoke(&self, id: u32) -> Result<Node, ClientError> {
        self.post_empty(&format!("/nodes/{id}/revoke"))
    }

    pub fn links(&self) -> Result<Vec<Link>, ClientError> {
        self.get("/links")
    }

    pub fn gateways(&self) -> Result<Vec<Gateway>, ClientError> {
        self.get("/gateways")
    }

    pub fn tokens(&self) -> Result<Vec<Token>, ClientError> {
        self.get("/tokens")
    }

    pub fn create_token(&self, request: &CreateToken) -> Result<CreatedToken, ClientError> {
        self.post_json("/tokens", request)
    }

    /// Approves (`approved`) or withdraws `role` for node `id`.
    pub fn set_role(&self, id: u32, role: Role, approved: bool) -> Result<Node, ClientError> {
        self.post_json(
            &format!("/nodes/{id}/roles"),
            &RoleChange { role, approved },
        )
    }

    fn post_json<T: DeserializeOwned>(
        &self,
        path: &str,
        request: &impl serde::Serialize,
    ) -> Result<T, ClientError> {
        let what = format!("POST {path}");
        let body = serde_json::to_vec(request).map_err(|e| ClientError::BadAnswer {
            request: what.clone(),
            reason: format!("encoding the request: {e}"),
        })?;
        let result = self
            .agent
            .post(self.url(path))
            .header("Authorization", &self.auth)
            .header("Content-Type", "application/json")
            .send(&body[..]);
        decode(&what, result)
    }

    /// Events with `seq > since`, oldest first, at most `limit`.
    pub fn events(&self, since: u64, limit: u32) -> Result<Vec<Event>, ClientError> {
        self.get(&format!("/events?since={since}&limit={limit}"))
    }

    pub fn redundancy(&self) -> Result<Redundancy, ClientError> {
        self.get("/redundancy")
    }

    /// Opens the event stream from `since`; the body is read line by line
    /// by [`crate::sse::EventStream`].
    pub fn open_stream(&self, since: u64) -> Result<Body, ClientError> {
        let path = format!("/events/stream?since={since}");
        let what = format!("GET {path}");
        let response = self
            .stream_agent
            .get(self.url(&path))
            .header("Authorization", &self.auth)
            .header("Accept", "text/event-stream")
            .call()
            .map_err(|e| transport(&what, e))?;
        let status = response.status().as_u16();
        let mut body = response.into_body();
        if status == 200 {
            Ok(body)
        } else {
            Err(status_error(&what, status, &mut body))
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{}{path}", self.base, api::API_PREFIX)
    }

    fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        let what = format!("GET {path}");
        let result = self
            .agent
            .get(self.url(path))
            .header("Authorization", &self.auth)
            .call();
        decode(&what, result)
    }

    fn post_empty<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        let what = format!("POST {path}");
        let result = self
            .agent
            .post(self.url(path))
            .header("Authorization", &self.auth)
            .send_empty();
        decode(&what, result)
    }
}

/// Maps an answer to the typed value or the error that says what went wrong.
fn decode<T: DeserializeOwned>(
    what: &str,
    result: Result<ureq::http::Response<Body>, ureq::Error>,
) -> Result<T, ClientError> {
    let response = result.map_err(|e| transport(what, e))?;
    let status = response.status().as_u16();
    let mut body = response.into_body();
    if !(200..300).contains(&status) {
        return Err(status_error(what, status, &mut body));
    }
    let text = body.read_to_string().map_err(|e| transport(what, e))?;
    serde_json::from_str(&text).map_err(|e| ClientError::BadAnswer {
        request: what.to_string(),
        reason: format!("HTTP {status} with a body that is not the expected JSON: {e}"),
    })
}

fn status_error(what: &str, status: u16, body: &mut Body) -> ClientError {
    let request = what.to_string();
    // The body is an `ApiError` from our controller; anything else (a proxy's
    // HTML page) is still reported, shortened.
    let text = body.read_to_string().unwrap_or_default();
    let (error, message) = match serde_json::from_str::<ApiError>(&text) {
        Ok(e) => (e.error, e.message),
        Err(_) => (String::new(), text.chars().take(120).collect()),
    };
    match status {
        401 => ClientError::Unauthorized { request },
        404 => ClientError::NotFound { request, message },
        400..500 => ClientError::Rejected {
            request,
            status,
            error,
            message,
        },
        _ => ClientError::BadAnswer {
            request,
            reason: format!("HTTP {status} {error} {message}")
                .trim_end()
                .to_string(),
        },
    }
}

fn transport(what: &str, error: ureq::Error) -> ClientError {
    let request = what.to_string();
    match error {
        ureq::Error::Io(_)
        | ureq::Error::Timeout(_)
        | ureq::Error::HostNotFound
        | ureq::Error::ConnectionFailed
        | ureq::Error::Tls(_)
        | ureq::Error::Rustls(_)
        | ureq::Error::Protocol(_) => ClientError::Unreachable {
            request,
            reason: error.to_string(),
        },
        other => ClientError::BadAnswer {
            request,
            reason: other.to_string(),
        },
    }
}

fn tls_config(base_url: &str, ca_cert: Option<&Path>) -> Result<TlsConfig, ClientError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = TlsConfig::builder()
        .provider(TlsProvider::Rustls)
        .unversioned_rustls_crypto_provider(provider);
    let pem_path = match ca_cert {
        Some(path) => Some(path.to_path_buf()),
        None if base_url.starts_with("https://") => SYSTEM_CA_BUNDLES
            .iter()
            .map(PathBuf::from)
            .find(|p| p.exists()),
        None => None,
    };
    let Some(path) = pem_path else {
        if base_url.starts_with("https://") {
            return Err(ClientError::CaCert {
                path: PathBuf::from(SYSTEM_CA_BUNDLES[0]),
                reason: "no system CA bundle found; pass --ca-cert".to_string(),
            });
        }
        // Plain http: no certificates are ever checked, but ureq needs a
        // root setting that does not depend on a bundled root store.
        return Ok(builder.root_certs(RootCerts::new_with_certs(&[])).build());
    };
    let pem = std::fs::read(&path).map_err(|e| ClientError::CaCert {
        path: path.clone(),
        reason: e.to_string(),
    })?;
    let certs: Vec<Certificate<'static>> = ureq::tls::parse_pem(&pem)
        .filter_map(|item| match item {
            Ok(PemItem::Certificate(cert)) => Some(cert),
            _ => None,
        })
        .collect();
    if certs.is_empty() {
        return Err(ClientError::CaCert {
            path,
            reason: "no PEM certificate in the file".to_string(),
        });
    }
    Ok(builder
        .root_certs(RootCerts::new_with_certs(&certs))
        .build())
}

#[cfg(test)]
mod tests {
    use std::io::{BufRead, BufReader, Write};
    use std::net::TcpListener;

    use super::*;

    /// Serves one canned HTTP answer per connection and returns the request
    /// lines it saw.
    fn serve(
        answers: Vec<(&'static str, &'static str)>,
    ) -> (String, std::thread::JoinHandle<Vec<String>>) {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let handle = std::thread::spawn(move || {
            let mut seen = Vec::new();
            for (status, body) in answers {
                let (mut stream, _) = listener.accept().expect("accept");
                let mut reader = BufReader::new(stream.try_clone().expect("clone"));
                let mut head = String::new();
                loop {
                    let mut line = String::new();
                    reader.read_line(&mut line).expect("read");
                    if line == "\r\n" || line.is_empty() {
                        break;
                    }
                    head.push_str(&line);
                }
                seen.push(head);
                write!(
                    stream,
                    "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                )
                .expect("write");
            }
            seen
        });
        (format!("http://{addr}"), handle)
    }

    const NODE: &str = r#"{"id":3,"node_id":"ab12","public_key":"k","hostname":"rathaus","state":"active","online":true,"drained":true,"gateway":false,"addresses":["fd00:1::3/128"],"prefixes":[],"endpoints":[],"links_up":1,"links_total":2,"last_seen_ms":5}"#;

    #[test]
    fn ok_answers_decode_and_carry_the_token() {
        let (url, server) = serve(vec![("200 OK", NODE)]);
        let client = Client::new(&url, "sekrit", None).expect("client");
        let node = client.drain(3).expect("drain");
        assert_eq!(node.hostname, "rathaus");
        assert!(node.drained);
        let seen = server.join().expect("server");
        assert!(
            seen[0].starts_with("POST /api/v1/nodes/3/drain "),
            "{}",
            seen[0]
        );
        assert!(
            seen[0]
                .to_ascii_lowercase()
                .contains("authorization: bearer sekrit"),
            "{}",
            seen[0]
        );
    }

    #[test]
    fn status_codes_map_to_typed_errors() {
        let (url, server) = serve(vec![
            (
                "401 Unauthorized",
                r#"{"error":"unauthorized","message":"no"}"#,
            ),
            (
                "404 Not Found",
                r#"{"error":"not-found","message":"no node 9"}"#,
            ),
            (
                "409 Conflict",
                r#"{"error":"conflict","message":"already active"}"#,
            ),
            ("200 OK", r#"{"not":"a node"}"#),
        ]);
        let client = Client::new(&url, "t", None).expect("client");
        let e = client.nodes().expect_err("401");
        assert!(matches!(e, ClientError::Unauthorized { .. }), "{e}");
        assert!(e.to_string().contains("GET /nodes"), "{e}");
        let e = client.node(9).expect_err("404");
        match &e {
            ClientError::NotFound { request, message } => {
                assert_eq!(request, "GET /nodes/9");
                assert_eq!(message, "no node 9");
            }
            other => panic!("expected NotFound, got {other:?}"),
        }
        let e = client.approve(3).expect_err("409");
        assert!(
            matches!(&e, ClientError::Rejected { status: 409, error, .. } if error == "conflict"),
            "{e:?}"
        );
        let e = client.overview().expect_err("bad json");
        assert!(matches!(e, ClientError::BadAnswer { .. }), "{e:?}");
        assert!(!e.is_unreachable());
        server.join().expect("server");
    }

    #[test]
    fn a_closed_port_is_unreachable() {
        // Bind then drop to get a port nobody listens on.
        let port = TcpListener::bind("127.0.0.1:0")
            .expect("bind")
            .local_addr()
            .expect("addr")
            .port();
        let client = Client::new(&format!("http://127.0.0.1:{port}"), "t", None).expect("client");
        let e = client.overview().expect_err("nobody listens");
        assert!(e.is_unreachable(), "{e:?}");
        assert!(
            e.to_string()
                .contains("GET /overview: controller unreachable"),
            "{e}"
        );
    }

    #[test]
    fn a_missing_ca_file_is_a_clear_error() {
        let e = Client::new("https://x", "t", Some(Path::new("/nonexistent/ca.pem")))
            .expect_err("missing file");
        assert!(e.to_string().contains("/nonexistent/ca.pem"), "{e}");
    }
}
