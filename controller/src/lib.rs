//! # freimesh-controller
//!
//! The controller owns the mesh registry, assigns addresses and computes
//! routes with loop-free alternates (`ARCHITECTURE.md`, "Control plane").
//!
//! * [`records`]: the registry's record types, plain data shared by the
//!   store and the core.
//! * [`store`]: the registry in embedded SQLite (WAL, migrations, IPAM).
//! * [`core`]: the sans-IO decision core: enrolment outcomes, link
//!   assignment, routes and deltas per node.
//! * [`routing`]: route computation (primaries and loop-free alternates).
//! * [`server`]: the hub's decisions as a synchronous sans-IO type
//!   ([`server::HubCore`]: store + core, `handle_*(…, now_ms)` in,
//!   `poll_output`/`poll_event` out; what the whole-mesh simulator drives),
//!   and the tokio shell around it: TCP + Noise IK sessions
//!   (`docs/protocol.md`), one task per connection, one hub task.
//! * [`admin`]: what the CLI subcommands do (`init`, `token create`,
//!   `node list|approve|revoke`, `prefix approve`, `operator add`, `pool
//!   clients`, `site add|export|list|remove`).
//! * [`hub_api`]: typed admin requests and replies between the API and
//!   the hub, shared by both.
//! * [`warnings`]: accept-loop pause and warning limiter, shared by the
//!   agent listener and the API.
//! * [`api`]: the admin HTTP API (`docs/api.md`) over the server's hub:
//!   JSON, a live event stream, Prometheus metrics, a meshviewer export.
//! * [`clock`], [`keyfile`]: wall-clock and key-file helpers for the shells.
//! * [`export`]: metrics and meshviewer rendering, pure functions.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use freimesh_controller::{admin, api, server};
//! let db = std::path::Path::new("/var/lib/freimesh/mesh.db");
//! admin::init(db, "fd12:3456:789a::/48".parse()?, "10.99.0.0/16".parse()?, false)?;
//! let opts = server::Options { db: db.to_owned(), listen: "0.0.0.0:7700".parse()?, require_approval: false };
//! let api = api::ApiOptions::plain(api::DEFAULT_LISTEN.parse()?);
//! server::run(opts, Some(api), std::future::pending()).await?;
//! # Ok(()) }
//! ```

pub mod admin;
pub mod api;
pub mod clock;
pub mod core;
pub mod export;
pub mod hub_api;
pub mod keyfile;
pub mod records;
pub mod routing;
pub mod server;
pub mod store;
pub mod warnings;

/// The protocol version the controller speaks with agents.
pub const SPEAKS_PROTOCOL: u16 = freimesh_proto::PROTOCOL_VERSION;
