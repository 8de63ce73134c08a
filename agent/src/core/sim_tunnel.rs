//! A WireGuard session for the whole-mesh simulator (cargo feature `sim`):
//! the shape of boringtun's `Tunn` (handshake initiation and response,
//! receiver indices, packets queued until the session is up, a retry every
//! [`REKEY_TIMEOUT`], giving up after [`REKEY_ATTEMPT_TIME`]) with no
//! cryptography and with timers that follow the `now` it is given.
//!
//! Its datagrams reuse WireGuard's message type numbers in the first byte
//! (the engine tells a handshake's proof of life by them) but not its
//! layout, so they can never be mistaken for real WireGuard: an engine uses
//! one kind of tunnel for all its links (`TunnelKind`).
//!
//! ```text
//! init      [1, 0, 0, 0][sender index: u32 LE][sender public key: 32]
//! response  [2, 0, 0, 0][sender index: u32 LE][receiver index: u32 LE]
//! data      [4, 0, 0, 0][receiver index: u32 LE][inner packet (empty = keepalive)]
//! ```
//!
//! What it leaves out, on purpose: key rotation (a session lives until the
//! peer's engine is replaced, which changes its indices), the cookie
//! mechanism and boringtun's passive keepalive (the engine's own heartbeats
//! are far more frequent).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use boringtun::noise::TunnResult;
use boringtun::noise::errors::WireGuardError;
use freimesh_proto::PublicKeyBytes;

/// WireGuard's handshake retry interval.
pub const REKEY_TIMEOUT: Duration = Duration::from_secs(5);
/// How long WireGuard keeps retrying a handshake before it gives up.
pub const REKEY_ATTEMPT_TIME: Duration = Duration::from_secs(90);
/// Packets held while a handshake is in flight (boringtun's queue depth).
const MAX_QUEUE_DEPTH: usize = 256;

const HEADER: usize = 4;
pub const INIT_LEN: usize = HEADER + 4 + 32;
pub const RESPONSE_LEN: usize = HEADER + 4 + 4;
pub const DATA_HEADER_LEN: usize = HEADER + 4;

/// A parsed simulated datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SimMessage {
    Init { sender: u32, key: PublicKeyBytes },
    Response { sender: u32, receiver: u32 },
    Data { receiver: u32 },
}

impl SimMessage {
    /// Parses the header of a simulated datagram.
    pub fn parse(datagram: &[u8]) -> Option<Self> {
        let word = |at: usize| -> Option<u32> {
            Some(u32::from_le_bytes(
                datagram.get(at..at + 4)?.try_into().ok()?,
            ))
        };
        if datagram.get(1..HEADER)? != [0, 0, 0] {
            return None;
        }
        match datagram[0] {
            1 if datagram.len() == INIT_LEN => Some(SimMessage::Init {
                sender: word(HEADER)?,
                key: PublicKeyBytes(datagram[HEADER + 4..].try_into().ok()?),
            }),
            2 if datagram.len() == RESPONSE_LEN => Some(SimMessage::Response {
                sender: word(HEADER)?,
                receiver: word(HEADER + 4)?,
            }),
            4 if datagram.len() >= DATA_HEADER_LEN => Some(SimMessage::Data {
                receiver: word(HEADER)?,
            }),
            _ => None,
        }
    }
}

/// One simulated session; see the module docs.
#[derive(Debug)]
pub struct SimTunnel {
    own_key: PublicKeyBytes,
    /// Our receiver index as it appears on the wire (`index << 8`, as
    /// boringtun's).
    local_index: u32,
    /// The peer's receiver index, once a handshake completed.
    peer_index: Option<u32>,
    /// When the last initiation of the handshake in flight went out.
    handshake_sent: Option<Instant>,
    /// When the current series of attempts started.
    attempts_since: Option<Instant>,
    last_handshake: Option<Instant>,
    queue: VecDeque<Vec<u8>>,
    keepalive: Option<Duration>,
    last_sent: Option<Instant>,
}

impl SimTunnel {
    pub fn new(own_key: PublicKeyBytes, index: u32, keepalive: Option<u16>) -> Self {
        Self {
            own_key,
            local_index: index << 8,
            peer_index: None,
            handshake_sent: None,
            attempts_since: None,
            last_handshake: None,
            queue: VecDeque::new(),
            keepalive: keepalive.map(|s| Duration::from_secs(u64::from(s))),
            last_sent: None,
        }
    }

    fn write<'a>(
        &mut self,
        dst: &'a mut [u8],
        kind: u8,
        words: &[u32],
        tail: &[u8],
        now: Instant,
    ) -> TunnResult<'a> {
        let len = HEADER + 4 * words.len() + tail.len();
        let Some(out) = dst.get_mut(..len) else {
            return TunnResult::Err(WireGuardError::DestinationBufferTooSmall);
        };
        out[..HEADER].copy_from_slice(&[kind, 0, 0, 0]);
        for (i, w) in words.iter().enumerate() {
            out[HEADER + 4 * i..HEADER + 4 * i + 4].copy_from_slice(&w.to_le_bytes());
        }
        out[HEADER + 4 * words.len()..].copy_from_slice(tail);
        self.last_sent = Some(now);
        TunnResult::WriteToNetwork(out)
    }

    fn data<'a>(
        &mut self,
        peer: u32,
        src: &[u8],
        dst: &'a mut [u8],
        now: Instant,
    ) -> TunnResult<'a> {
        self.write(dst, 4, &[peer], src, now)
    }

    pub fn encapsulate<'a>(
        &mut self,
        src: &[u8],
        dst: &'a mut [u8],
        now: Instant,
    ) -> TunnResult<'a> {
        if let Some(peer) = self.peer_index {
            return self.data(peer, src, dst, now);
        }
        if !src.is_empty() && self.queue.len() < MAX_QUEUE_DEPTH {
            self.queue.push_back(src.to_vec());
        }
        self.format_handshake_initiation(dst, false, now)
    }

    pub fn format_handshake_initiation<'a>(
        &mut self,
        dst: &'a mut [u8],
        force: bool,
        now: Instant,
    ) -> TunnResult<'a> {
        if self.handshake_sent.is_some() && !force {
            return TunnResult::Done;
        }
        if self.handshake_sent.is_none() || force && self.attempts_since.is_none() {
            self.attempts_since = Some(now);
        }
        self.handshake_sent = Some(now);
        let key = self.own_key.0;
        let index = self.local_index;
        self.write(dst, 1, &[index], &key, now)
    }

    pub fn decapsulate<'a>(
        &mut self,
        datagram: &[u8],
        dst: &'a mut [u8],
        now: Instant,
    ) -> TunnResult<'a> {
        if datagram.is_empty() {
            return match (self.peer_index, self.queue.pop_front()) {
                (Some(peer), Some(packet)) => self.data(peer, &packet, dst, now),
                _ => TunnResult::Done,
            };
        }
        match SimMessage::parse(datagram) {
            None => TunnResult::Err(WireGuardError::InvalidPacket),
            Some(SimMessage::Init { sender, .. }) => {
                self.established(sender, now);
                let index = self.local_index;
                self.write(dst, 2, &[index, sender], &[], now)
            }
            Some(SimMessage::Response { sender, receiver }) => {
                if receiver != self.local_index {
                    return TunnResult::Err(WireGuardError::WrongIndex);
                }
                if self.handshake_sent.is_none() {
                    return TunnResult::Err(WireGuardError::UnexpectedPacket);
                }
                self.established(sender, now);
                // boringtun confirms a response with a keepalive.
                self.data(sender, &[], dst, now)
            }
            Some(SimMessage::Data { receiver }) => {
                if receiver != self.local_index {
                    return TunnResult::Err(WireGuardError::WrongIndex);
                }
                if self.peer_index.is_none() {
                    return TunnResult::Err(WireGuardError::NoCurrentSession);
                }
                let inner = &datagram[DATA_HEADER_LEN..];
                if inner.is_empty() {
                    return TunnResult::Done;
                }
                let Some(out) = dst.get_mut(..inner.len()) else {
                    return TunnResult::Err(WireGuardError::DestinationBufferTooSmall);
                };
                out.copy_from_slice(inner);
                match inner[0] >> 4 {
                    4 => TunnResult::WriteToTunnelV4(out, std::net::Ipv4Addr::UNSPECIFIED),
                    6 => TunnResult::WriteToTunnelV6(out, std::net::Ipv6Addr::UNSPECIFIED),
                    _ => TunnResult::Err(WireGuardError::InvalidPacket),
                }
            }
        }
    }

    fn established(&mut self, peer: u32, now: Instant) {
        self.peer_index = Some(peer);
        self.handshake_sent = None;
        self.attempts_since = None;
        self.last_handshake = Some(now);
    }

    pub fn update_timers<'a>(&mut self, dst: &'a mut [u8], now: Instant) -> TunnResult<'a> {
        if let Some(sent) = self.handshake_sent
            && now.saturating_duration_since(sent) >= REKEY_TIMEOUT
        {
            if self
                .attempts_since
                .is_some_and(|t| now.saturating_duration_since(t) >= REKEY_ATTEMPT_TIME)
            {
                self.handshake_sent = None;
                self.attempts_since = None;
                self.queue.clear();
                return TunnResult::Err(WireGuardError::ConnectionExpired);
            }
            return self.format_handshake_initiation(dst, true, now);
        }
        if let (Some(every), Some(peer)) = (self.keepalive, self.peer_index)
            && self
                .last_sent
                .is_none_or(|t| now.saturating_duration_since(t) >= every)
        {
            return self.data(peer, &[], dst, now);
        }
        TunnResult::Done
    }

    /// Time since the last completed handshake.
    pub fn since_handshake(&self, now: Instant) -> Option<Duration> {
        self.last_handshake
            .map(|t| now.saturating_duration_since(t))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn buf() -> Vec<u8> {
        vec![0; 2048]
    }

    #[test]
    fn a_handshake_then_data_both_ways_and_queued_packets_follow() {
        let now = Instant::now();
        let mut a = SimTunnel::new(PublicKeyBytes([1; 32]), 7, None);
        let mut b = SimTunnel::new(PublicKeyBytes([2; 32]), 9, None);
        let (mut da, mut db) = (buf(), buf());
        let packet = [
            0x45, 0, 0, 20, 0, 0, 0, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
        ];
        let TunnResult::WriteToNetwork(init) = a.encapsulate(&packet, &mut da, now) else {
            panic!("no initiation")
        };
        assert_eq!(
            SimMessage::parse(init),
            Some(SimMessage::Init {
                sender: 7 << 8,
                key: PublicKeyBytes([1; 32])
            })
        );
        let init = init.to_vec();
        let TunnResult::WriteToNetwork(resp) = b.decapsulate(&init, &mut db, now) else {
            panic!("no response")
        };
        assert_eq!(resp[0], 2);
        let resp = resp.to_vec();
        let TunnResult::WriteToNetwork(keepalive) = a.decapsulate(&resp, &mut da, now) else {
            panic!("no keepalive")
        };
        assert_eq!(keepalive[0], 4);
        let keepalive = keepalive.to_vec();
        assert!(matches!(
            b.decapsulate(&keepalive, &mut db, now),
            TunnResult::Done
        ));
        let TunnResult::WriteToNetwork(queued) = a.decapsulate(&[], &mut da, now) else {
            panic!("queued packet not sent")
        };
        let queued = queued.to_vec();
        assert!(matches!(a.decapsulate(&[], &mut da, now), TunnResult::Done));
        match b.decapsulate(&queued, &mut db, now) {
            TunnResult::WriteToTunnelV4(p, _) => assert_eq!(p, &packet[..]),
            _ => panic!("not delivered"),
        }
    }

    #[test]
    fn retries_every_rekey_timeout_and_gives_up_after_the_attempt_time() {
        let start = Instant::now();
        let mut a = SimTunnel::new(PublicKeyBytes([1; 32]), 1, None);
        let mut d = buf();
        assert!(matches!(
            a.format_handshake_initiation(&mut d, false, start),
            TunnResult::WriteToNetwork(_)
        ));
        assert!(matches!(
            a.update_timers(&mut d, start + Duration::from_secs(1)),
            TunnResult::Done
        ));
        assert!(matches!(
            a.update_timers(&mut d, start + REKEY_TIMEOUT),
            TunnResult::WriteToNetwork(_)
        ));
        let mut t = start + REKEY_TIMEOUT;
        let expired = loop {
            t += REKEY_TIMEOUT;
            match a.update_timers(&mut d, t) {
                TunnResult::Err(WireGuardError::ConnectionExpired) => break t,
                TunnResult::WriteToNetwork(_) => {}
                _ => panic!("unexpected result"),
            }
        };
        assert_eq!(expired, start + REKEY_ATTEMPT_TIME);
    }

    #[test]
    fn data_for_another_index_or_before_a_session_is_refused() {
        let now = Instant::now();
        let mut a = SimTunnel::new(PublicKeyBytes([1; 32]), 1, None);
        let mut d = buf();
        let data = [4, 0, 0, 0, 0, 1, 0, 0, 0x45];
        assert!(matches!(
            a.decapsulate(&data, &mut d, now),
            TunnResult::Err(WireGuardError::NoCurrentSession)
        ));
        let wrong = [4, 0, 0, 0, 0, 2, 0, 0, 0x45];
        assert!(matches!(
            a.decapsulate(&wrong, &mut d, now),
            TunnResult::Err(WireGuardError::WrongIndex)
        ));
        assert!(SimMessage::parse(&[9, 0, 0, 0, 1, 2, 3, 4]).is_none());
    }
}
