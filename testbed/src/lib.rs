//! # freimesh-testbed
//!
//! Everything that runs real freimesh agents for people and tests: the demo
//! mesh on loopback, network-namespace labs with veth links, and the traffic
//! that proves a mesh forwards. Labs only touch namespaces they create, keep
//! every address inside them, and remove them again on drop.
//!
//! Unlike the agent, the testbed may shell out to `ip`, `ping`, `iperf3` and
//! `wg`: it is test infrastructure, and those are the tools operators trust.

pub mod api;
pub mod bench;
pub mod controller;
pub mod demo;
pub mod event_bench;
pub mod failover;
pub mod gateway_lab;
pub mod lab;
pub mod mesh;
pub mod netns_mesh;
pub mod process;
pub mod radio;
pub mod reach;
pub mod relay;
pub mod schedule;
pub mod sim;
pub mod topology;
pub mod town;
pub mod traffic;
