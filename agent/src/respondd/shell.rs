//! The respondd socket: UDP [`RESPONDD_PORT`] on every IPv6 address
//! (unicast over the mesh, and link-local), joined to [`RESPONDD_GROUP`]
//! on the mesh interfaces only. Joining the group is what makes multicast
//! requests arrive; the core's source policy is what keeps everyone else
//! (the public Wi-Fi interface included) from getting answers.

use std::net::{Ipv6Addr, SocketAddr, SocketAddrV6};

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::UdpSocket;

pub use super::RESPONDD_PORT;
use super::{Answer, MAX_REQUEST_BYTES, RESPONDD_GROUP};

/// The respondd socket.
#[derive(Debug)]
pub struct RespondSocket {
    socket: UdpSocket,
}

impl RespondSocket {
    /// Binds `[::]:port` (IPv6 only; [`RESPONDD_PORT`] outside tests).
    pub fn open(port: u16) -> std::io::Result<Self> {
        let socket = Socket::new(Domain::IPV6, Type::DGRAM, Some(Protocol::UDP))?;
        socket.set_only_v6(true)?;
        socket.set_reuse_address(true)?;
        socket.set_multicast_loop_v6(false)?;
        socket.set_nonblocking(true)?;
        let bind = SocketAddr::from(SocketAddrV6::new(Ipv6Addr::UNSPECIFIED, port, 0, 0));
        socket.bind(&bind.into())?;
        Ok(Self {
            socket: UdpSocket::from_std(socket.into())?,
        })
    }

    /// Joins [`RESPONDD_GROUP`] on interface `ifindex`.
    pub fn join(&self, ifindex: u32) -> std::io::Result<()> {
        socket2::SockRef::from(&self.socket).join_multicast_v6(&RESPONDD_GROUP, ifindex)
    }

    /// The next datagram and its source. A datagram longer than
    /// [`MAX_REQUEST_BYTES`] arrives cut to one byte more, which the core
    /// refuses as too long.
    pub async fn recv(&self, buf: &mut [u8; MAX_REQUEST_BYTES + 1]) -> (usize, SocketAddr) {
        loop {
            match self.socket.recv_from(buf).await {
                Ok(received) => return received,
                Err(err) => tracing::trace!(%err, "respondd receive error"),
            }
        }
    }

    /// Sends one answer; a failure is logged (the asker went away).
    pub async fn send(&self, answer: &Answer) {
        if let Err(err) = self.socket.send_to(&answer.datagram, answer.to).await {
            tracing::debug!(to = %answer.to, %err, "respondd answer not sent");
        }
    }
}
