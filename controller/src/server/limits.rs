//! The bounds of the control server: how many peers may sit in the
//! handshake, how long they may take, how long a write to an agent may
//! block, how far an agent may fall behind, and the process's descriptor
//! limit that all of this has to fit in.
//!
//! Unauthenticated peers cost a descriptor and a task each; without a cap,
//! 300 idle TCP connections exhausted a 256-descriptor controller and stalled
//! its admin API (issue 12). Enrolled agents are bounded too: a session that
//! stops reading ends instead of growing the controller's memory.

use std::time::Duration;

use nix::sys::resource::{RLIM_INFINITY, Resource, getrlimit, setrlimit};

/// A peer must deliver Noise message 1 (about 100 bytes, sent right after
/// connecting) within this time. An agent on a slow radio path or behind a
/// satellite link (600 ms RTT) needs well under a second; an idle connection
/// is gone after two.
pub const FIRST_MESSAGE_WAIT: Duration = Duration::from_secs(2);

/// At most this many connections may be in the handshake (or before their
/// Hello) at once. A thousand routers reconnecting after a controller restart
/// spread over the agents' 1 – 30 s backoff, and each handshake takes a few
/// round trips: 256 admits that with room, and keeps the descriptor cost small.
pub const MAX_UNAUTHENTICATED: usize = 256;

/// At most this many of them from one source (one IPv4 address or one IPv6
/// /64, what one host controls). A router reaching the controller through a
/// NAT shares its address with the other routers behind it; 16 covers a
/// building's worth reconnecting at once.
pub const MAX_UNAUTHENTICATED_PER_SOURCE: usize = 16;

/// At most this many of them through one relay (a router that relays its
/// neighbours' control channels through the mesh and names itself in a
/// relay preamble, checked against its own direct session from the same
/// address). A district of routers behind one exit reconnecting after a
/// controller restart needs more than one source's share; a flood through
/// one relay stays bounded by this (and by the relay's own caps).
pub const MAX_UNAUTHENTICATED_PER_RELAY: usize = 64;

/// The descriptor budget for unauthenticated peers is at most this fraction
/// (1 / n) of the process's `RLIMIT_NOFILE`: the rest stays for enrolled
/// sessions, the admin API and SQLite.
pub const UNAUTHENTICATED_SHARE_OF_DESCRIPTORS: u64 = 4;

/// One transport message (at most 64 KiB) to an agent must be written
/// within this time. At 100 kbit/s, the slowest mesh path we plan for, 64 KiB
/// take about 5 s; a peer that accepts nothing for 20 s is not reading.
pub const WRITE_DEADLINE: Duration = Duration::from_secs(20);

/// The kernel send buffer of an agent connection (Linux doubles it for its
/// bookkeeping). Autotuning would let it grow to `tcp_wmem`'s maximum (4 MiB
/// by default) for a peer that stops reading, kernel memory pinned per
/// session, and the write deadline would only start once that much is
/// queued. 256 KiB holds a large node's full route sync and still carries
/// 20 Mbit/s on a 100 ms path, far more than the control channel needs.
pub const SEND_BUFFER_BYTES: usize = 256 * 1024;

/// How many messages the hub may queue for one session before the session
/// ends. A full state sync is a handful of messages (Welcome, Links, Routes,
/// Credential, Revocations, each split into frames only when written), and a registry change or a
/// report queues a few per node; an agent 1024 messages behind is minutes of
/// churn behind and is better served by reconnecting and resynchronising.
pub const OUT_QUEUE_MESSAGES: usize = 1024;

pub use crate::warnings::{ACCEPT_ERROR_PAUSE, WARNING_INTERVAL};

/// What the control server enforces; [`Limits::default`] is the production
/// setting, tests lower the numbers to reach them quickly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    pub max_unauthenticated: usize,
    pub max_unauthenticated_per_source: usize,
    pub max_unauthenticated_per_relay: usize,
    pub first_message_wait: Duration,
    /// The whole handshake and the Hello.
    pub handshake_timeout: Duration,
    /// Time without any frame from the agent after which the session ends.
    pub idle_timeout: Duration,
    pub write_deadline: Duration,
    /// The kernel send buffer of each agent connection
    /// ([`SEND_BUFFER_BYTES`]). A write to an agent that stops reading
    /// blocks only once this much is queued, so tests that need a blocked
    /// write lower it instead of flooding megabytes.
    pub send_buffer_bytes: usize,
    pub out_queue_messages: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_unauthenticated: MAX_UNAUTHENTICATED,
            max_unauthenticated_per_source: MAX_UNAUTHENTICATED_PER_SOURCE,
            max_unauthenticated_per_relay: MAX_UNAUTHENTICATED_PER_RELAY,
            first_message_wait: FIRST_MESSAGE_WAIT,
            handshake_timeout: super::HANDSHAKE_TIMEOUT,
            idle_timeout: super::IDLE_TIMEOUT,
            write_deadline: WRITE_DEADLINE,
            send_buffer_bytes: SEND_BUFFER_BYTES,
            out_queue_messages: OUT_QUEUE_MESSAGES,
        }
    }
}

impl Limits {
    /// The default limits, with the unauthenticated cap lowered to fit a
    /// process allowed `descriptors` open files.
    pub fn for_descriptors(descriptors: u64) -> Self {
        let share = descriptors / UNAUTHENTICATED_SHARE_OF_DESCRIPTORS;
        let share = usize::try_from(share).unwrap_or(usize::MAX).max(1);
        let max_unauthenticated = MAX_UNAUTHENTICATED.min(share);
        Self {
            max_unauthenticated,
            max_unauthenticated_per_source: MAX_UNAUTHENTICATED_PER_SOURCE.min(max_unauthenticated),
            max_unauthenticated_per_relay: MAX_UNAUTHENTICATED_PER_RELAY.min(max_unauthenticated),
            ..Self::default()
        }
    }
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit and returns the new
/// soft limit. Distributions start services with a soft limit of 1024 (or
/// 256 on some routers) while allowing far more: every agent session holds a
/// descriptor, so a city mesh needs the higher one.
pub fn raise_descriptor_limit() -> Result<u64, nix::Error> {
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
    // An unlimited hard limit still stops at the kernel's `fs.nr_open`.
    let target = if hard == RLIM_INFINITY {
        std::fs::read_to_string("/proc/sys/fs/nr_open")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(soft)
    } else {
        hard
    };
    if soft < target {
        setrlimit(Resource::RLIMIT_NOFILE, target, hard)?;
    }
    Ok(getrlimit(Resource::RLIMIT_NOFILE)?.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_small_descriptor_limit_lowers_the_unauthenticated_caps() {
        let small = Limits::for_descriptors(256);
        assert_eq!(small.max_unauthenticated, 64);
        assert_eq!(small.max_unauthenticated_per_source, 16);
        let tiny = Limits::for_descriptors(20);
        assert_eq!(tiny.max_unauthenticated, 5);
        assert_eq!(tiny.max_unauthenticated_per_source, 5);
        let large = Limits::for_descriptors(1 << 20);
        assert_eq!(large, Limits::default());
    }

    #[test]
    fn raising_the_descriptor_limit_reaches_the_hard_limit() {
        let raised = raise_descriptor_limit().expect("raise");
        let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).expect("getrlimit");
        assert_eq!(raised, soft);
        if hard != RLIM_INFINITY {
            assert_eq!(soft, hard);
        }
    }
}
