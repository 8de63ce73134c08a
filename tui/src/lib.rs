//! # freimesh-tui
//!
//! The operators' fleet view over the controller's admin API (see
//! `ARCHITECTURE.md`, "Terminal UI", and `docs/tui.md`): k9s-style screens
//! for the overview, nodes, one node's detail, links, gateways, live events
//! and redundancy, with drain/undrain, approve, revoke and join tokens.
//!
//! The crate is a pure view over a client library:
//!
//! * [`client`] is a blocking HTTP client (ureq, rustls with ring) with one
//!   method per endpoint; [`sse`] follows the event stream.
//! * [`worker`] runs the refresher and stream threads; they send
//!   [`app::Update`]s over `std::sync::mpsc`.
//! * [`app::App`] is the one state; keys change it and may produce an
//!   [`app::Command`] for the refresher.
//! * [`render::draw`] draws an `App` at a given time, one function per pane.
//! * [`i18n`] holds every visible string in English and German.
//! * [`telemetry`] reads the nodes' fleet telemetry (versions, uptime,
//!   memory) for the panes and the overview's alerts.
//!
//! ```
//! use freimesh_tui::{app::Screen, fixture, i18n::Lang, render};
//! use ratatui::{Terminal, backend::TestBackend};
//!
//! let app = fixture::app(Lang::En, Screen::Nodes);
//! let mut terminal = Terminal::new(TestBackend::new(80, 24)).unwrap();
//! terminal.draw(|f| render::draw(f, &app, fixture::NOW_MS)).unwrap();
//! ```

pub mod app;
pub mod client;
pub mod fixture;
pub mod i18n;
pub mod render;
pub mod sse;
pub mod telemetry;
pub mod term;
pub mod worker;

pub use term::{Config, RunError, run};

/// The protocol version the TUI expects from the controller.
pub const SPEAKS_PROTOCOL: u16 = freimesh_proto::PROTOCOL_VERSION;
