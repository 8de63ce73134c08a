//! The underlay socket, the I/O half of batched underlay I/O: WireGuard
//! datagrams to and from the neighbours, many per system call.
//!
//! quinn-udp does the system calls: `recvmmsg` with UDP GRO on receive
//! (one call hands up to [`RECV_SLOTS`] buffers, each up to 64 datagrams
//! the kernel coalesced), `sendmsg` with UDP GSO on send (one call sends a
//! [`SendRun`] of up to 64 datagrams). Where the kernel or the device does
//! not offer GSO, quinn-udp notices (`EIO`/`EINVAL`) and stops using it; the
//! send that found out is repeated here one datagram at a time, so nothing
//! is lost to the fallback. Which datagrams form a run is decided in
//! [`super::batch`], which is pure and tested on its own.
//!
//! quinn-udp sets the don't-fragment bit on every datagram (QUIC probes
//! path MTUs itself). WireGuard does not: a tunnel over a path with a
//! smaller MTU than its interface (PPPoE, a VPN uplink) relies on the
//! kernel's path-MTU discovery and fragmentation, as the kernel's and
//! wireguard-go's sockets do. [`allow_fragmentation`] puts the kernel's
//! defaults back after quinn-udp has configured the socket.

use std::io::{self, IoSliceMut};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::time::Duration;

use quinn_udp::{RecvMeta, Transmit, UdpSocketState};
use tokio::io::Interest;
use tokio::net::UdpSocket;

use super::batch::{SendRun, gro_datagrams};

/// Receive buffers filled by one `recvmmsg`. Eight, not quinn-udp's 32:
/// each is 64 KiB (a full GRO buffer), and eight already take a whole
/// window of one TCP stream per call.
pub(super) const RECV_SLOTS: usize = 8;
/// One receive buffer: the largest UDP payload the kernel hands up, one
/// GRO-coalesced buffer included.
const SLOT_BYTES: usize = 65_536;
/// How long a send may wait for room in a full socket buffer.
const SEND_WAIT: Duration = Duration::from_millis(2);

/// Where one `recvmmsg` lands: [`RECV_SLOTS`] buffers and what the kernel
/// said about each. Allocated once per reader and reused.
pub(super) struct RecvBatch {
    buffers: Vec<u8>,
    meta: [RecvMeta; RECV_SLOTS],
    filled: usize,
}

impl RecvBatch {
    pub(super) fn new() -> Self {
        Self {
            buffers: vec![0; RECV_SLOTS * SLOT_BYTES],
            meta: [RecvMeta::default(); RECV_SLOTS],
            filled: 0,
        }
    }

    /// Every datagram of the last receive, in the order it arrived, with
    /// its sender.
    pub(super) fn datagrams(&self) -> impl Iterator<Item = (SocketAddr, &[u8])> {
        self.meta[..self.filled]
            .iter()
            .zip(self.buffers.chunks(SLOT_BYTES))
            .flat_map(|(meta, slot)| {
                let data = &slot[..meta.len.min(slot.len())];
                gro_datagrams(data, meta.stride).map(move |datagram| (meta.addr, datagram))
            })
    }
}

impl std::fmt::Debug for RecvBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecvBatch")
            .field("filled", &self.filled)
            .finish_non_exhaustive()
    }
}

/// The WireGuard socket with quinn-udp's per-socket state (GSO support
/// found so far, GRO on).
#[derive(Debug)]
pub(super) struct UnderlaySocket {
    socket: UdpSocket,
    state: UdpSocketState,
}

impl UnderlaySocket {
    /// Configures `socket` for batched I/O: UDP GRO on, GSO probed, and the
    /// kernel's fragmentation defaults kept (module docs).
    pub(super) fn new(socket: UdpSocket) -> io::Result<Self> {
        let state = UdpSocketState::new((&socket).into())?;
        allow_fragmentation(&socket)?;
        Ok(Self { socket, state })
    }

    pub(super) fn local_addr(&self) -> io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    /// Waits for datagrams and takes in as many as one `recvmmsg` returns.
    pub(super) async fn recv(&self, batch: &mut RecvBatch) -> io::Result<()> {
        loop {
            self.socket.readable().await?;
            match self.try_recv(batch) {
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => continue,
                result => return result,
            }
        }
    }

    /// Takes in what is waiting without waiting (`WouldBlock` if nothing).
    pub(super) fn try_recv(&self, batch: &mut RecvBatch) -> io::Result<()> {
        batch.filled = 0;
        let mut slots = batch.buffers.chunks_mut(SLOT_BYTES);
        let mut iovs: [IoSliceMut<'_>; RECV_SLOTS] =
            std::array::from_fn(|_| IoSliceMut::new(slots.next().unwrap_or_default()));
        let filled = self.socket.try_io(Interest::READABLE, || {
            self.state
                .recv((&self.socket).into(), &mut iovs, &mut batch.meta)
        })?;
        batch.filled = filled.min(RECV_SLOTS);
        Ok(())
    }

    /// The most datagrams one GSO send may carry on this socket now (1
    /// when GSO is unavailable).
    pub(super) fn max_segments(&self) -> usize {
        self.state.max_gso_segments()
    }

    /// Sends one run: `contents` is the run's datagrams back to back. A
    /// full socket buffer gets a moment to drain (a burst clears in
    /// microseconds); past that the run is dropped, as a router drops at a
    /// full queue, rather than holding up every other link behind one that
    /// cannot send.
    pub(super) async fn send(&self, run: &SendRun, contents: &[u8]) {
        let transmit = Transmit {
            destination: run.to,
            ecn: None,
            contents,
            segment_size: run.gso_segment(),
            src_ip: None,
        };
        match self.send_waiting(&transmit).await {
            Ok(()) => {}
            Err(err)
                if transmit.segment_size.is_some() && err.kind() != io::ErrorKind::TimedOut =>
            {
                // GSO refused: quinn-udp has switched it off for the
                // socket; these datagrams go one by one.
                tracing::debug!(to = %run.to, %err, "GSO send failed: sending one by one");
                for datagram in contents.chunks(run.segment) {
                    let single = Transmit {
                        contents: datagram,
                        segment_size: None,
                        ..transmit
                    };
                    if let Err(err) = self.send_waiting(&single).await {
                        tracing::debug!(to = %run.to, %err, "underlay send failed");
                    }
                }
            }
            Err(err) => tracing::debug!(to = %run.to, %err, "underlay send failed"),
        }
    }

    async fn send_waiting(&self, transmit: &Transmit<'_>) -> io::Result<()> {
        match self.try_send(transmit) {
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => {}
            result => return result,
        }
        let wait = async {
            loop {
                self.socket.writable().await?;
                match self.try_send(transmit) {
                    Err(err) if err.kind() == io::ErrorKind::WouldBlock => continue,
                    result => return result,
                }
            }
        };
        tokio::time::timeout(SEND_WAIT, wait)
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "socket full: dropped"))?
    }

    fn try_send(&self, transmit: &Transmit<'_>) -> io::Result<()> {
        self.socket.try_io(Interest::WRITABLE, || {
            self.state.try_send((&self.socket).into(), transmit)
        })
    }
}

/// Puts the kernel's path-MTU defaults back on `socket` (`IP_PMTUDISC_WANT`;
/// for IPv6 also `IPV6_PMTUDISC_WANT` and fragmentation allowed), undoing
/// quinn-udp's don't-fragment settings (module docs).
fn allow_fragmentation(socket: &UdpSocket) -> io::Result<()> {
    let ipv6 = socket.local_addr()?.is_ipv6();
    // An IPv6 socket carries IPv4 too when it is dual-stack (the IPv4
    // option then applies to the IPv4-mapped peers).
    set_int_option(
        socket,
        libc::IPPROTO_IP,
        libc::IP_MTU_DISCOVER,
        libc::IP_PMTUDISC_WANT,
    )
    .or_else(|err| if ipv6 { Ok(()) } else { Err(err) })?;
    if ipv6 {
        set_int_option(
            socket,
            libc::IPPROTO_IPV6,
            libc::IPV6_MTU_DISCOVER,
            libc::IPV6_PMTUDISC_WANT,
        )?;
        set_int_option(socket, libc::IPPROTO_IPV6, libc::IPV6_DONTFRAG, 0)?;
    }
    Ok(())
}

/// `setsockopt` with an `int` value: neither socket2 nor nix offers the
/// path-MTU options.
#[allow(unsafe_code)]
fn set_int_option(
    socket: &UdpSocket,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    let len =
        libc::socklen_t::try_from(std::mem::size_of::<libc::c_int>()).map_err(io::Error::other)?;
    // SAFETY: the descriptor is open for as long as `socket` is borrowed;
    // the kernel reads exactly `len` bytes from a live `c_int` and keeps no
    // pointer to it.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            level,
            name,
            std::ptr::from_ref(&value).cast(),
            len,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::batch::plan_runs;

    /// Real sockets on loopback: one step's mixed datagrams (handshake-,
    /// data- and garbage-sized, to three neighbours, interleaved) sent in
    /// runs (one GSO send each, or one by one where GSO is refused) arrive
    /// at each neighbour as the same datagrams in the same order, however
    /// GRO coalesced them: what the engine would have seen had each been
    /// sent and received on its own.
    #[tokio::test]
    async fn a_batch_of_mixed_datagrams_arrives_as_sent_one_at_a_time() {
        let bind = || async {
            UnderlaySocket::new(UdpSocket::bind("127.0.0.1:0").await.expect("loopback"))
                .expect("quinn-udp state")
        };
        let sender = bind().await;
        let receivers = [bind().await, bind().await, bind().await];
        let addresses: Vec<SocketAddr> = receivers
            .iter()
            .map(|r| r.local_addr().expect("bound"))
            .collect();
        // A deterministic mix: runs of full data datagrams to one
        // neighbour, handshake sizes (148, 92, 64), a short keepalive (32)
        // and odd garbage sizes, switching neighbours now and then.
        let mut state = 0x9e37_79b9_u32;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            state
        };
        let sizes = [1_452, 1_452, 1_452, 148, 92, 64, 32, 1, 777, 1_452];
        let mut step: Vec<(SocketAddr, Vec<u8>)> = Vec::new();
        let mut to = 0;
        for i in 0..200u32 {
            if next() % 7 == 0 {
                to = (to + 1) % addresses.len();
            }
            let len = sizes[usize::try_from(next()).unwrap_or(0) % sizes.len()];
            let fill = u8::try_from(i % 251).unwrap_or(0);
            step.push((addresses[to], vec![fill; len]));
        }
        let runs = plan_runs(
            step.iter().map(|(to, d)| (*to, d.len())),
            sender.max_segments(),
        );
        assert!(
            runs.iter().any(|r| r.count > 1),
            "some datagrams go together"
        );
        let mut sent = 0;
        for run in &runs {
            let contents: Vec<u8> = step[sent..sent + run.count]
                .iter()
                .flat_map(|(_, d)| d.iter().copied())
                .collect();
            sent += run.count;
            sender.send(run, &contents).await;
        }
        let from = sender.local_addr().expect("bound");
        for (receiver, address) in receivers.iter().zip(&addresses) {
            let expected: Vec<&Vec<u8>> = step
                .iter()
                .filter(|(to, _)| to == address)
                .map(|(_, d)| d)
                .collect();
            let mut batch = RecvBatch::new();
            let mut received: Vec<Vec<u8>> = Vec::new();
            while received.len() < expected.len() {
                tokio::time::timeout(Duration::from_secs(5), receiver.recv(&mut batch))
                    .await
                    .expect("datagrams arrive")
                    .expect("receive");
                for (sender_address, datagram) in batch.datagrams() {
                    assert_eq!(sender_address, from);
                    received.push(datagram.to_vec());
                }
            }
            let received: Vec<&Vec<u8>> = received.iter().collect();
            assert_eq!(received, expected, "to {address}");
        }
    }

    /// `getsockopt` with an `int` value, to read back what is set.
    #[allow(unsafe_code)]
    fn int_option(socket: &UdpSocket, level: libc::c_int, name: libc::c_int) -> libc::c_int {
        let mut value: libc::c_int = -1;
        let mut len = libc::socklen_t::try_from(std::mem::size_of::<libc::c_int>()).expect("4");
        // SAFETY: a live descriptor, a live `c_int` and its length.
        let rc = unsafe {
            libc::getsockopt(
                socket.as_raw_fd(),
                level,
                name,
                std::ptr::from_mut(&mut value).cast(),
                &mut len,
            )
        };
        assert_eq!(rc, 0, "getsockopt: {}", io::Error::last_os_error());
        value
    }

    #[tokio::test]
    async fn fragmentation_stays_allowed_after_quinn_udp_configured_the_socket() {
        let v4 = UnderlaySocket::new(UdpSocket::bind("127.0.0.1:0").await.expect("loopback"))
            .expect("configured");
        assert_eq!(
            int_option(&v4.socket, libc::IPPROTO_IP, libc::IP_MTU_DISCOVER),
            libc::IP_PMTUDISC_WANT
        );
        // No IPv6 loopback on some hosts: then only IPv4 is checked.
        if let Ok(socket) = UdpSocket::bind("[::1]:0").await {
            let v6 = UnderlaySocket::new(socket).expect("configured");
            assert_eq!(
                int_option(&v6.socket, libc::IPPROTO_IPV6, libc::IPV6_MTU_DISCOVER),
                libc::IPV6_PMTUDISC_WANT
            );
            assert_eq!(
                int_option(&v6.socket, libc::IPPROTO_IPV6, libc::IPV6_DONTFRAG),
                0
            );
        }
    }
}
