//! ICMP and ICMPv6 echo ("ping") from the stack's own addresses.
//!
//! The timing lives in [`run`], on the caller's task: it asks the stack task
//! to open an ICMP socket bound to a fresh echo identifier, then to send each
//! request, and collects the replies the stack task forwards. The stack task
//! only stamps send and receive times ([`Ping`]), so it needs no ping timers
//! of its own. Answering pings needs nothing here: smoltcp replies to echo
//! requests for its addresses itself (`auto-icmp-echo-reply`).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use smoltcp::iface::{SocketHandle, SocketSet};
use smoltcp::phy::ChecksumCapabilities;
use smoltcp::socket::icmp;
use smoltcp::wire::{
    Icmpv4Message, Icmpv4Packet, Icmpv4Repr, Icmpv6Message, Icmpv6Packet, Icmpv6Repr, IpAddress,
    Ipv6Address,
};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::UserspaceError;
use super::stack::Command;
pub use crate::ping::{PingReply, PingReport};

/// Echo payload size: the classic `ping` default.
const PAYLOAD_LEN: usize = 56;

/// Replies the stack may queue for one ping before dropping (counted lost).
const REPLY_QUEUE: usize = 64;

/// Packets each ICMP socket buffers in either direction.
const SOCKET_PACKETS: usize = 16;

/// Sends the requests and gathers the report; see `StackHandle::ping`.
pub(super) async fn run(
    commands: &mpsc::Sender<Command>,
    target: IpAddr,
    count: u16,
    interval: Duration,
    timeout: Duration,
) -> Result<PingReport, UserspaceError> {
    let stopped = || UserspaceError::PingStopped { target };
    let mut report = PingReport {
        target,
        sent: 0,
        received: 0,
        replies: Vec::new(),
    };
    if count == 0 {
        return Ok(report);
    }
    let (replies_tx, mut replies) = mpsc::channel(REPLY_QUEUE);
    let (ack, opened) = oneshot::channel();
    let open = Command::PingOpen {
        target,
        replies: replies_tx,
        ack,
    };
    commands.send(open).await.map_err(|_| stopped())?;
    // Dropping `replies` (on return) tells the stack to close the socket.
    let ident = opened.await.map_err(|_| stopped())??;

    let mut next_send = Instant::now();
    let mut deadline = next_send;
    loop {
        let wake_at = if report.sent < count {
            next_send
        } else {
            deadline
        };
        tokio::select! {
            () = tokio::time::sleep_until(wake_at) => {
                if report.sent == count {
                    break;
                }
                let seq = report.sent;
                commands
                    .send(Command::PingSend { ident, seq })
                    .await
                    .map_err(|_| stopped())?;
                report.sent += 1;
                next_send += interval;
                deadline = Instant::now() + timeout;
            }
            reply = replies.recv() => {
                let reply = reply.ok_or_else(stopped)?;
                if reply.rtt <= timeout {
                    report.received += 1;
                    report.replies.push(reply);
                }
                if report.received == count {
                    break;
                }
            }
        }
    }
    Ok(report)
}

/// The stack task's side of the running pings.
#[derive(Debug)]
pub(super) struct Pings {
    running: Vec<Ping>,
    next_ident: u16,
}

impl Pings {
    pub(super) fn new(seed: u64) -> Self {
        Self {
            running: Vec::new(),
            next_ident: u16::try_from(seed >> 48).unwrap_or(1),
        }
    }

    /// Opens an ICMP socket for a new ping; returns its echo identifier.
    pub(super) fn open(
        &mut self,
        sockets: &mut SocketSet<'static>,
        target: IpAddr,
        replies: mpsc::Sender<PingReply>,
    ) -> Result<u16, UserspaceError> {
        let mut ident = None;
        for _ in 0..=u16::MAX {
            let candidate = self.next_ident;
            self.next_ident = self.next_ident.wrapping_add(1);
            if !self.running.iter().any(|p| p.ident == candidate) {
                ident = Some(candidate);
                break;
            }
        }
        let ident = ident.ok_or(UserspaceError::PingBusy { target })?;
        let socket = sockets.add(Ping::new_socket(ident));
        self.running.push(Ping {
            ident,
            target: target.into(),
            socket,
            replies,
            outstanding: BTreeMap::new(),
        });
        Ok(ident)
    }

    pub(super) fn send(&mut self, sockets: &mut SocketSet<'static>, ident: u16, seq: u16) {
        if let Some(ping) = self.running.iter_mut().find(|p| p.ident == ident) {
            ping.send(sockets.get_mut::<icmp::Socket<'_>>(ping.socket), seq);
        }
    }

    /// Forwards replies; closes the sockets of pings whose caller is gone.
    /// Returns whether any packet was read.
    pub(super) fn service(&mut self, sockets: &mut SocketSet<'static>) -> bool {
        let mut progress = false;
        for ping in &mut self.running {
            progress |= ping.service(sockets.get_mut::<icmp::Socket<'_>>(ping.socket));
        }
        self.running.retain(|ping| {
            // The caller dropped its receiver: finished or given up.
            let abandoned = ping.replies.is_closed();
            if abandoned {
                sockets.remove(ping.socket);
            }
            !abandoned
        });
        progress
    }
}

/// One running ping.
#[derive(Debug)]
struct Ping {
    ident: u16,
    target: IpAddress,
    socket: SocketHandle,
    replies: mpsc::Sender<PingReply>,
    /// Send time of each request still unanswered, by sequence number.
    outstanding: BTreeMap<u16, Instant>,
}

impl Ping {
    fn new_socket(ident: u16) -> icmp::Socket<'static> {
        let buffer = || {
            icmp::PacketBuffer::new(
                vec![icmp::PacketMetadata::EMPTY; SOCKET_PACKETS],
                vec![0; SOCKET_PACKETS * 2 * PAYLOAD_LEN.max(64)],
            )
        };
        let mut socket = icmp::Socket::new(buffer(), buffer());
        // Cannot fail: the identifier endpoint is specified and the socket new.
        let _ = socket.bind(icmp::Endpoint::Ident(ident));
        socket
    }

    /// Queues echo request `seq` in the socket.
    fn send(&mut self, socket: &mut icmp::Socket<'_>, seq: u16) {
        let data = [0xa5; PAYLOAD_LEN];
        // smoltcp parses the queued message and emits it afresh, with the
        // real source address and checksum: no checksum is needed here.
        let caps = ChecksumCapabilities::ignored();
        let queued = match self.target {
            IpAddress::Ipv4(_) => {
                let repr = Icmpv4Repr::EchoRequest {
                    ident: self.ident,
                    seq_no: seq,
                    data: &data,
                };
                socket
                    .send(repr.buffer_len(), self.target)
                    .map(|buf| repr.emit(&mut Icmpv4Packet::new_unchecked(buf), &caps))
            }
            IpAddress::Ipv6(dst) => {
                let repr = Icmpv6Repr::EchoRequest {
                    ident: self.ident,
                    seq_no: seq,
                    data: &data,
                };
                socket.send(repr.buffer_len(), self.target).map(|buf| {
                    let src = Ipv6Address::UNSPECIFIED;
                    repr.emit(&src, &dst, &mut Icmpv6Packet::new_unchecked(buf), &caps);
                })
            }
        };
        match queued {
            Ok(()) => {
                self.outstanding.insert(seq, Instant::now());
            }
            Err(error) => {
                tracing::debug!(target = %self.target, seq, ?error, "userspace ping: request not queued");
            }
        }
    }

    /// Forwards the echo replies waiting in the socket. Returns whether any
    /// packet was read.
    fn service(&mut self, socket: &mut icmp::Socket<'_>) -> bool {
        let mut progress = false;
        while let Ok((payload, from)) = socket.recv() {
            progress = true;
            if from != self.target {
                continue;
            }
            let Some((ident, seq)) = parse_echo_reply(payload, from) else {
                continue;
            };
            if ident != self.ident {
                continue;
            }
            // Duplicates and replies to unknown requests are ignored.
            if let Some(sent) = self.outstanding.remove(&seq) {
                let rtt = sent.elapsed();
                let _ = self.replies.try_send(PingReply { seq, rtt });
            }
        }
        progress
    }
}

/// `(ident, seq)` of an ICMP or ICMPv6 echo reply; `None` for anything else.
fn parse_echo_reply(payload: &[u8], from: IpAddress) -> Option<(u16, u16)> {
    match from {
        IpAddress::Ipv4(_) => {
            let packet = Icmpv4Packet::new_checked(payload).ok()?;
            (packet.msg_type() == Icmpv4Message::EchoReply)
                .then(|| (packet.echo_ident(), packet.echo_seq_no()))
        }
        IpAddress::Ipv6(_) => {
            let packet = Icmpv6Packet::new_checked(payload).ok()?;
            (packet.msg_type() == Icmpv6Message::EchoReply)
                .then(|| (packet.echo_ident(), packet.echo_seq_no()))
        }
    }
}
