//! Read-only views of the mesh for other tools: Prometheus metrics, a
//! meshviewer-compatible JSON for Freifunk community maps and wg-quick
//! configs for standard WireGuard sites. Pure functions; the API shell and
//! the CLI serve what they render.

pub mod meshviewer;
pub mod metrics;
pub mod wgquick;
