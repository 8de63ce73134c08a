//! The local control socket behind `freimesh-agent status` and
//! `freimesh-agent ping`.
//!
//! A Unix stream socket, mode 0600, so only the agent's own user (root on a
//! router) can ask. One request per connection: a JSON line in, a JSON line
//! out. JSON keeps it debuggable with `socat` and costs the agent nothing it
//! does not already carry.

use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::{UnixListener, UnixStream};

use crate::core::EngineStatus;

/// Longest a client waits for an answer (a ping of many packets may take
/// this long).
const CLIENT_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("control socket {path}: {operation}: {cause}")]
    Io {
        path: PathBuf,
        operation: &'static str,
        cause: std::io::Error,
    },
    #[error("control socket {path}: another agent is already listening there")]
    InUse { path: PathBuf },
    #[error("control socket {path}: unreadable answer: {message}")]
    Protocol { path: PathBuf, message: String },
    #[error("control socket {path}: no answer within {CLIENT_TIMEOUT:?}")]
    Timeout { path: PathBuf },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "request", rename_all = "snake_case")]
pub enum Request {
    /// The status as data ([`Response::Status`]), for programs.
    Status,
    /// The status as `freimesh-agent status` prints it, rendered by the
    /// agent ([`Response::Report`]): the command-line client then needs
    /// no deserializer for the whole status (≈ 20 KB of the router
    /// binary; `status --json` prints [`Response::Status`] as it comes).
    StatusReport,
    /// Echo requests from this node's own stack (userspace backend).
    Ping { target: IpAddr, count: u16 },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "response", rename_all = "snake_case")]
pub enum Response {
    Status(Box<AgentStatus>),
    Ping(PingSummary),
    /// Text to print as it is.
    Report {
        text: String,
    },
    Error {
        message: String,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PingSummary {
    pub target: IpAddr,
    pub sent: u16,
    pub received: u16,
    pub rtts_us: Vec<u64>,
}

/// What `freimesh-agent status` shows.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AgentStatus {
    pub name: String,
    pub version: String,
    pub backend: String,
    pub listen: SocketAddr,
    pub addresses: Vec<IpNet>,
    pub uptime_s: u64,
    /// Neighbour discovery's totals, with `mesh_interfaces` (absent
    /// without them and from older agents).
    #[serde(default)]
    pub discovery: Option<crate::discovery::DiscoveryCounters>,
    /// respondd's totals, with `respondd = true` (absent otherwise and
    /// from older agents).
    #[serde(default)]
    pub respondd: Option<crate::respondd::RespondCounters>,
    pub engine: EngineStatus,
    /// State file writes since the agent started (under a controller).
    #[serde(default)]
    pub state_writes: Option<u32>,
    /// Credential and revocation list, under a controller (absent in
    /// static mode and from agents before protocol v5).
    #[serde(default)]
    pub membership: Option<MembershipStatus>,
}

/// This node's membership as `status` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MembershipStatus {
    /// When this node's credential expires (Unix seconds); `None` before
    /// the controller sent one.
    pub credential_expires_unix_s: Option<u64>,
    /// Seconds until then by this router's clock (negative: expired).
    pub credential_valid_for_s: Option<i64>,
    /// The serial of the newest complete revocation list (0: none).
    pub revocation_serial: u64,
    /// Keys revoked.
    pub revoked: usize,
}

/// A bound control socket.
#[derive(Debug)]
pub struct ControlServer {
    listener: UnixListener,
    path: PathBuf,
}

impl ControlServer {
    /// Binds `path` (mode 0600), replacing a stale socket file left by a
    /// crashed agent but refusing to steal one that answers.
    pub async fn bind(path: &Path) -> Result<Self, ControlError> {
        let io = |operation, cause| ControlError::Io {
            path: path.to_owned(),
            operation,
            cause,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| io("creating its directory", e))?;
        }
        if path.exists() {
            if UnixStream::connect(path).await.is_ok() {
                return Err(ControlError::InUse {
                    path: path.to_owned(),
                });
            }
            std::fs::remove_file(path).map_err(|e| io("removing the stale socket", e))?;
        }
        let listener = UnixListener::bind(path).map_err(|e| io("binding", e))?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| io("restricting it to mode 0600", e))?;
        Ok(Self {
            listener,
            path: path.to_owned(),
        })
    }

    /// Answers requests with `handler` until the task is dropped.
    pub async fn serve<F, Fut>(self, handler: F)
    where
        F: Fn(Request) -> Fut + Clone + Send + Sync + 'static,
        Fut: std::future::Future<Output = Response> + Send,
    {
        loop {
            let stream = match self.listener.accept().await {
                Ok((stream, _)) => stream,
                Err(err) => {
                    tracing::warn!(path = %self.path.display(), %err, "control socket accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let handler = handler.clone();
            tokio::spawn(async move {
                if let Err(err) = answer(stream, handler).await {
                    tracing::debug!(%err, "control connection ended early");
                }
            });
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

async fn answer<F, Fut>(stream: UnixStream, handler: F) -> std::io::Result<()>
where
    F: Fn(Request) -> Fut,
    Fut: std::future::Future<Output = Response>,
{
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    // A request is a few dozen bytes; refuse to buffer an endless line.
    BufReader::new(read.take(64 * 1024))
        .read_line(&mut line)
        .await?;
    let response = match serde_json::from_str::<Request>(&line) {
        Ok(request) => handler(request).await,
        Err(err) => Response::Error {
            message: format!("bad request: {err}"),
        },
    };
    let mut out = serde_json::to_vec(&response).unwrap_or_else(|_| b"{}".to_vec());
    out.push(b'\n');
    write.write_all(&out).await?;
    write.shutdown().await
}

/// Sends one request to the agent listening on `path`.
pub async fn request(path: &Path, request: &Request) -> Result<Response, ControlError> {
    let answer = request_text(path, request).await?;
    parse_response(&answer).map_err(|e| ControlError::Protocol {
        path: path.to_owned(),
        message: e.to_string(),
    })
}

/// Sends one request and returns the answer as the agent wrote it (one
/// JSON line), for a caller that prints it: `status --json`.
pub async fn request_text(path: &Path, request: &Request) -> Result<String, ControlError> {
    let io = |operation, cause| ControlError::Io {
        path: path.to_owned(),
        operation,
        cause,
    };
    let exchange = async {
        let mut stream = UnixStream::connect(path)
            .await
            .map_err(|e| io("connecting", e))?;
        let mut line = serde_json::to_vec(request).map_err(|e| ControlError::Protocol {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        line.push(b'\n');
        stream
            .write_all(&line)
            .await
            .map_err(|e| io("sending", e))?;
        let mut answer = String::new();
        BufReader::new(stream)
            .read_line(&mut answer)
            .await
            .map_err(|e| io("reading", e))?;
        Ok(answer)
    };
    tokio::time::timeout(CLIENT_TIMEOUT, exchange)
        .await
        .map_err(|_| ControlError::Timeout {
            path: path.to_owned(),
        })?
}

/// What an answer read with [`read_answer`] may be instead of the one
/// expected.
#[derive(Debug, thiserror::Error)]
pub enum AnswerError {
    /// The agent answered with an error.
    #[error("{0}")]
    Agent(String),
    #[error("the agent answered {found:?}, not {expected:?}")]
    Unexpected {
        expected: &'static str,
        found: String,
    },
    #[error("the agent's answer is not readable: {0}")]
    Malformed(#[from] serde_json::Error),
}

/// Reads an answer of the kind `expected` (the `response` tag) as `T`, the
/// variant's fields, without linking a deserializer for every other
/// answer: the command-line client reads only what it asked for.
pub fn read_answer<T: serde::de::DeserializeOwned>(
    answer: &str,
    expected: &'static str,
) -> Result<T, AnswerError> {
    let tagged: Tagged = serde_json::from_str(answer)?;
    if tagged.response == expected {
        Ok(serde_json::from_str(answer)?)
    } else if tagged.response == "error" {
        Err(AnswerError::Agent(tagged.message.unwrap_or_default()))
    } else {
        Err(AnswerError::Unexpected {
            expected,
            found: tagged.response,
        })
    }
}

/// An answer's kind (its `response` tag) and, for an error, its message;
/// every other field is skipped unread.
#[derive(Deserialize)]
struct Tagged {
    response: String,
    #[serde(default)]
    message: Option<String>,
}

/// The fields of [`Response::Report`], for [`read_answer`].
#[derive(Debug, Deserialize)]
pub struct ReportText {
    pub text: String,
}

/// Any answer's own fields, for [`read_answer`] when only its kind matters.
#[derive(Debug, Deserialize)]
pub struct AnyFields {}

/// Reads an answer as deserializing [`Response`] would, without serde's
/// buffering of internally tagged enums (≈ 20 KB of the router binary for
/// one command-line client): the tag first, then the variant's own fields
/// from the same text, where the tag is one more field to ignore.
fn parse_response(answer: &str) -> serde_json::Result<Response> {
    #[derive(Deserialize)]
    struct Message {
        message: String,
    }
    let tag: Tagged = serde_json::from_str(answer)?;
    Ok(match tag.response.as_str() {
        "status" => Response::Status(Box::new(serde_json::from_str(answer)?)),
        "ping" => Response::Ping(serde_json::from_str(answer)?),
        "report" => Response::Report {
            text: serde_json::from_str::<ReportText>(answer)?.text,
        },
        "error" => Response::Error {
            message: serde_json::from_str::<Message>(answer)?.message,
        },
        other => {
            return Err(serde::de::Error::unknown_variant(
                other,
                &["status", "ping", "report", "error"],
            ));
        }
    })
}

fn age(ms: Option<u64>) -> String {
    match ms {
        None => "never".to_owned(),
        Some(ms) if ms < 10_000 => format!("{:.1}s ago", ms as f64 / 1000.0),
        Some(ms) => format!("{}s ago", ms / 1000),
    }
}

fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// Renders a status the way `ip route` renders the kernel's: one line per
/// thing, aligned, nothing hidden.
pub fn render_status(status: &AgentStatus) -> String {
    let mut out = String::new();
    let e = &status.engine;
    let _ = writeln!(
        out,
        "node {}  (freimesh-agent {}, {} backend, up {}s)",
        status.name, status.version, status.backend, status.uptime_s
    );
    let _ = writeln!(out, "  public key  {}", e.public_key);
    let _ = writeln!(out, "  listening   {}", status.listen);
    let addresses: Vec<String> = status.addresses.iter().map(ToString::to_string).collect();
    let _ = writeln!(out, "  addresses   {}", addresses.join(" "));
    if let Some(writes) = status.state_writes {
        let _ = writeln!(out, "  state file  {writes} writes since start");
    }
    if let Some(m) = &status.membership {
        let credential = match (m.credential_expires_unix_s, m.credential_valid_for_s) {
            (Some(at), Some(left)) if left > 0 => {
                format!("expires at {at} (in {}h)", left / 3_600)
            }
            (Some(at), _) => format!("EXPIRED at {at}"),
            (None, _) => "none yet".to_owned(),
        };
        let _ = writeln!(out, "  credential  {credential}");
        let _ = writeln!(
            out,
            "  revocations serial {}, {} revoked",
            m.revocation_serial, m.revoked
        );
    }
    let _ = writeln!(out, "\nlinks");
    let _ = writeln!(
        out,
        "  {:<16} {:<22} {:<8} {:<16} {:>8} {:<11} {:<10} {:>10} {:>10}",
        "NAME", "ENDPOINT", "PROFILE", "STATE", "RTT", "HANDSHAKE", "LAST RX", "RX", "TX"
    );
    for link in &e.links {
        let endpoint = link
            .endpoint
            .map_or_else(|| "(unknown)".to_owned(), |a| a.to_string());
        let _ = writeln!(
            out,
            "  {:<16} {:<22} {:<8} {:<16} {:>8} {:<11} {:<10} {:>10} {:>10}",
            link.name,
            endpoint,
            link.profile,
            link.state,
            link.rtt_us.map_or_else(
                || "-".to_owned(),
                |us| format!("{:.2}ms", us as f64 / 1000.0)
            ),
            age(link.handshake_age_ms),
            age(link.last_rx_age_ms),
            bytes(link.counters.rx_bytes),
            bytes(link.counters.tx_bytes),
        );
    }
    let _ = writeln!(out, "\nroutes");
    for route in &e.routes {
        let hops: Vec<String> = route
            .via
            .iter()
            .map(|hop| {
                if route.active.as_ref() == Some(hop) {
                    format!("{hop}*")
                } else {
                    hop.clone()
                }
            })
            .collect();
        let state = if route.active.is_none() {
            "  (unreachable)"
        } else {
            ""
        };
        let _ = writeln!(out, "  {} via {}{state}", route.prefix, hops.join(" "));
    }
    let _ = writeln!(
        out,
        "\npackets  forwarded {}  delivered {}  from local {}  datagrams in {}  u-turns {}",
        e.counters.forwarded,
        e.counters.delivered_local,
        e.counters.sent_from_local,
        e.counters.datagrams_in,
        e.counters.u_turns
    );
    let drops: Vec<String> = e
        .drops
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(reason, n)| format!("{reason} {n}"))
        .collect();
    let _ = writeln!(
        out,
        "dropped  {}",
        if drops.is_empty() {
            "none".to_owned()
        } else {
            drops.join("  ")
        }
    );
    if e.withdrawals_over_cap > 0 {
        // A neighbour withdrew more specific prefixes than one link may
        // make us hold (see the engine's `MAX_DERIVED_ROUTES_PER_LINK`).
        let _ = writeln!(
            out,
            "ignored  {} withdrawals over the per-link cap",
            e.withdrawals_over_cap
        );
    }
    if let Some(d) = &status.discovery {
        let _ = writeln!(
            out,
            "discovery  beacons {} sent ({} bytes), {} heard; links {} up, {} down; refused {}, revoked {}, unenrolled {}, rate-limited {}, table full {}; revocation pages {} in, {} out",
            d.beacons_sent,
            d.beacon_bytes_sent,
            d.beacons_received,
            d.links_up,
            d.links_down,
            d.refused,
            d.revoked,
            d.unenrolled,
            d.rate_limited,
            d.table_full,
            d.revocation_pages_received,
            d.revocation_pages_sent
        );
    }
    if let Some(r) = &status.respondd {
        let _ = writeln!(
            out,
            "respondd  {} answered; refused {} (source), {} (malformed), {} (rate limit), {} dropped",
            r.answered, r.refused_source, r.malformed, r.rate_limited, r.dropped
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_read_back_as_the_response_they_were_written_from() {
        for response in [
            Response::Error {
                message: "no".into(),
            },
            Response::Report {
                text: "fm0\n".into(),
            },
            Response::Ping(PingSummary {
                target: IpAddr::from([10, 99, 0, 1]),
                sent: 3,
                received: 2,
                rtts_us: vec![100, 200],
            }),
        ] {
            let text = serde_json::to_string(&response).expect("serialises");
            let back = parse_response(&text).expect("parses");
            assert_eq!(serde_json::to_string(&back).expect("serialises"), text);
        }
        let error = serde_json::to_string(&Response::Error {
            message: "no".into(),
        })
        .expect("serialises");
        let refused = read_answer::<ReportText>(&error, "report").expect_err("an error");
        assert!(
            matches!(refused, AnswerError::Agent(ref m) if m == "no"),
            "{refused}"
        );
        let report = r#"{"response":"report","text":"x"}"#;
        let read: ReportText = read_answer(report, "report").expect("a report");
        assert_eq!(read.text, "x");
        // `status --json` checks only the kind of a whole status answer.
        let status = r#"{"response":"status","name":"a","engine":{"links":[],"routes":[]}}"#;
        read_answer::<AnyFields>(status, "status").expect("a status, fields not read");
        let other = read_answer::<ReportText>(report, "ping").expect_err("not a ping");
        assert!(matches!(other, AnswerError::Unexpected { .. }), "{other}");
        let err = parse_response(r#"{"response":"reboot"}"#).expect_err("unknown");
        assert!(err.to_string().contains("reboot"), "{err}");
        assert!(parse_response("{}").is_err());
    }

    #[tokio::test]
    async fn serves_requests_with_mode_0600_and_refuses_to_steal() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("run/agent.sock");
        let server = ControlServer::bind(&path).await.expect("bind");
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let task = tokio::spawn(server.serve(|request| async move {
            match request {
                Request::Ping { target, count } => Response::Ping(PingSummary {
                    target,
                    sent: count,
                    received: 0,
                    rtts_us: vec![],
                }),
                Request::Status | Request::StatusReport => Response::Error {
                    message: "no status in this test".into(),
                },
            }
        }));
        let answer = request(
            &path,
            &Request::Ping {
                target: "10.99.0.2".parse().expect("ip"),
                count: 3,
            },
        )
        .await
        .expect("answer");
        assert!(matches!(
            answer,
            Response::Ping(PingSummary { sent: 3, .. })
        ));
        assert!(matches!(
            ControlServer::bind(&path).await,
            Err(ControlError::InUse { .. })
        ));
        task.abort();
        let _ = task.await;
        // The listener is gone: a new agent may replace the stale file.
        ControlServer::bind(&path)
            .await
            .expect("stale socket replaced");
    }

    #[tokio::test]
    async fn a_missing_agent_is_a_clear_error() {
        let err = request(Path::new("/nonexistent/agent.sock"), &Request::Status)
            .await
            .expect_err("no agent");
        assert!(err.to_string().contains("/nonexistent/agent.sock"), "{err}");
    }
}
