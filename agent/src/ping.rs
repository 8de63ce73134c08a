//! What a ping through the mesh reports (`freimesh-agent ping`): shared by
//! every local backend, whichever of them can send pings.

use std::net::IpAddr;
use std::time::Duration;

/// One echo reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PingReply {
    pub seq: u16,
    pub rtt: Duration,
}

/// The outcome of a ping: the userspace stack sends them
/// (`StackHandle::ping`); the TUN backend leaves pings to ping(8).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PingReport {
    pub target: IpAddr,
    pub sent: u16,
    pub received: u16,
    /// In arrival order.
    pub replies: Vec<PingReply>,
}
