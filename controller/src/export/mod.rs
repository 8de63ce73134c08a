//! Read-only views of the mesh for other tools: Prometheus metrics and a
//! meshviewer-compatible JSON for Freifunk community maps. Pure functions
//! over the admin API's types; the API shell serves what they render.

pub mod meshviewer;
pub mod metrics;
