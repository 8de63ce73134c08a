//! # freimesh-tui
//!
//! The operator's fleet view over the controller's admin API (see
//! `ARCHITECTURE.md`, "Terminal UI"). It arrives with the operations issue; the
//! crate exists now so the workspace has its final shape.

/// The protocol version the TUI expects from the controller.
pub const SPEAKS_PROTOCOL: u16 = freimesh_proto::PROTOCOL_VERSION;
