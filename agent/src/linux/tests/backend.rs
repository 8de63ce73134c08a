//! The backend against the kernel: configuration, restart after a crash,
//! clean shutdown, error messages, and packets through the TUN.

use std::{
    error::Error,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
};

use tokio::{net::UdpSocket, time::timeout};

use super::*;
use crate::linux::{Change, LinuxBackend, LinuxError};

#[test]
fn open_reconciles_restart_and_close_cleans_up() {
    in_netns("open_reconciles_restart_and_close_cleans_up", || async {
        let netlink = Netlink::connect()?;
        set_up(&netlink, "lo", true).await?;
        let lo = ifindex(&netlink, "lo").await?.ok_or("no lo")?;
        // Left by an earlier agent: an old prefix, and the current one on
        // the wrong device (which blocks adding ours until removed: EEXIST).
        for stale in [our("10.98.0.0/16", lo), our("10.99.0.0/16", lo)] {
            netlink.apply(&Change::AddRoute(stale), lo, "lo").await?;
        }

        let mut first = LinuxBackend::open(settings(
            "fm0",
            &["10.99.0.1/32", "fd99::1/128"],
            // Host bits set on purpose: the kernel would say EINVAL.
            &["10.99.0.0/16", "fd99::/64", "10.100.1.1/24"],
        ))
        .await?;
        let tun = first.ifindex();
        assert_eq!(
            tagged(&netlink).await?,
            vec![
                our("10.99.0.0/16", tun),
                our("10.100.1.0/24", tun),
                our("fd99::/64", tun)
            ]
        );
        let state = netlink.state(tun, "fm0").await?;
        assert!(state.addresses.contains(&net("10.99.0.1/32")));
        assert!(state.addresses.contains(&net("fd99::1/128")));
        let link = netlink.link_by_name("fm0").await?.ok_or("fm0 vanished")?;
        assert_eq!(link.index, tun);
        assert_ne!(link.flags & wire::IFF_UP, 0);
        assert_eq!(link.mtu, Some(u32::from(DEFAULT_MTU)));

        // Nothing to do when asked for what is there.
        let same = first
            .update(
                &nets(&["10.99.0.1/32", "fd99::1/128"]),
                &nets(&["10.99.0.0/16", "fd99::/64", "10.100.1.0/24"]),
            )
            .await?;
        assert_eq!(same, vec![]);

        // Crash: no close. The device and everything on it goes with the
        // fd; a tagged route elsewhere survives.
        drop(first);
        assert_eq!(ifindex(&netlink, "fm0").await?, None);
        netlink
            .apply(&Change::AddRoute(our("10.97.0.0/16", lo)), lo, "lo")
            .await?;

        // Restart with a changed route set.
        let mut second = LinuxBackend::open(settings(
            "fm0",
            &["10.99.0.1/32", "fd99::1/128"],
            &["10.99.0.0/16", "fd99::/64", "10.101.0.0/16"],
        ))
        .await?;
        let tun = second.ifindex();
        assert_eq!(
            tagged(&netlink).await?,
            vec![
                our("10.99.0.0/16", tun),
                our("10.101.0.0/16", tun),
                our("fd99::/64", tun)
            ]
        );

        // An update changes only the difference.
        let changes = second
            .update(&nets(&["10.99.0.1/32"]), &nets(&["10.99.0.0/16"]))
            .await?;
        assert_eq!(
            changes,
            vec![
                Change::RemoveRoute(our("10.101.0.0/16", tun)),
                Change::RemoveRoute(our("fd99::/64", tun)),
                Change::RemoveAddress(net("fd99::1/128")),
            ]
        );
        assert_eq!(tagged(&netlink).await?, vec![our("10.99.0.0/16", tun)]);

        second.close().await?;
        assert_eq!(tagged(&netlink).await?, vec![]);
        assert_eq!(ifindex(&netlink, "fm0").await?, None);
        Ok(())
    });
}

#[test]
fn kernel_errors_name_operation_and_prefix() {
    in_netns("kernel_errors_name_operation_and_prefix", || async {
        let netlink = Netlink::connect()?;
        set_up(&netlink, "lo", true).await?;
        let lo = ifindex(&netlink, "lo").await?.ok_or("no lo")?;
        let route = Change::AddRoute(our("10.99.0.0/16", lo));
        netlink.apply(&route, lo, "lo").await?;
        let Err(error) = netlink.apply(&route, lo, "lo").await else {
            return Err("adding a route twice succeeded".into());
        };
        assert_eq!(
            error.to_string(),
            "adding route 10.99.0.0/16 via lo: File exists (os error 17)"
        );
        Ok(())
    });
}

#[test]
fn packets_flow_through_the_tun() {
    in_netns("packets_flow_through_the_tun", || async {
        let backend = LinuxBackend::open(settings(
            "fm0",
            &["10.99.0.1/32", "fd99::1/128"],
            &["10.99.0.0/16", "fd99::/64"],
        ))
        .await?;
        let device = backend.device();
        let socket = UdpSocket::bind("0.0.0.0:0").await?;

        // Out: a local program sends into the mesh; the agent reads it.
        socket.send_to(b"to the mesh", "10.99.0.7:9999").await?;
        let packet = read_until(&device, |p| udp_v4_to(p, [10, 99, 0, 7], 9999)).await?;
        assert_eq!(
            &packet[12..16],
            &[10, 99, 0, 1],
            "source is the node's address"
        );
        assert_eq!(&packet[28..], b"to the mesh");

        let socket6 = UdpSocket::bind("[::]:0").await?;
        socket6
            .send_to(b"v6", "[fd99::7]:9999")
            .await
            .map_err(|e| format!("sending to fd99::7: {e}"))?;
        let fd99_7 = Ipv6Addr::new(0xfd99, 0, 0, 0, 0, 0, 0, 7);
        let packet = read_until(&device, |p| udp_v6_to(p, fd99_7, 9999)).await?;
        assert_eq!(&packet[48..], b"v6");

        // In: the agent writes a packet for this node; a local program gets it.
        let receiver = UdpSocket::bind("10.99.0.1:5555")
            .await
            .map_err(|e| format!("binding 10.99.0.1:5555: {e}"))?;
        let packet = ipv4_udp([10, 99, 0, 7], 4444, [10, 99, 0, 1], 5555, b"from the mesh");
        device.send(&packet).await?;
        let mut buf = [0u8; 64];
        let (len, from) = timeout(KERNEL_TIMEOUT, receiver.recv_from(&mut buf)).await??;
        assert_eq!(&buf[..len], b"from the mesh");
        assert_eq!(
            from,
            SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 99, 0, 7)), 4444)
        );

        // Close ends the I/O loops: a read pending on a clone of the device
        // fails once the device is deleted, instead of hanging.
        let reader = tokio::spawn(async move {
            let mut buf = vec![0u8; 65535];
            loop {
                if let Err(e) = device.recv(&mut buf).await {
                    return e;
                }
            }
        });
        tokio::task::yield_now().await;
        backend.close().await?;
        let error = timeout(KERNEL_TIMEOUT, reader).await??;
        assert_eq!(error.raw_os_error(), Some(libc::EBADFD), "{error}");
        Ok(())
    });
}

#[test]
fn settings_the_kernel_would_reject_are_refused_up_front() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build();
    let Ok(runtime) = runtime else {
        panic!("building tokio runtime");
    };
    runtime.block_on(async {
        let long = settings("freimesh-tunnel0", &[], &[]);
        let Err(error) = LinuxBackend::open(long).await else {
            panic!("a 16-byte interface name was accepted");
        };
        assert!(matches!(error, LinuxError::InvalidName { .. }));

        let mut small = settings("fm0", &["fd99::1/128"], &[]);
        small.mtu = 1200;
        let Err(error) = LinuxBackend::open(small).await else {
            panic!("IPv6 on MTU 1200 was accepted");
        };
        assert_eq!(
            error.to_string(),
            "MTU 1200 of fm0 is below 1280, which IPv6 needs"
        );
    });
}

/// Reads packets from the TUN until one matches; the kernel also sends its
/// own (IPv6 router solicitations, MLD reports) when the device comes up.
async fn read_until(
    device: &tun_rs::AsyncDevice,
    matches: impl Fn(&[u8]) -> bool,
) -> Result<Vec<u8>, Box<dyn Error>> {
    let mut buf = vec![0u8; 65535];
    loop {
        let len = timeout(KERNEL_TIMEOUT, device.recv(&mut buf)).await??;
        if matches(&buf[..len]) {
            return Ok(buf[..len].to_vec());
        }
    }
}

fn udp_v4_to(packet: &[u8], destination: [u8; 4], port: u16) -> bool {
    // Without options the UDP header starts at 20.
    packet.len() >= 28
        && packet[0] == 0x45
        && packet[9] == 17
        && packet[16..20] == destination
        && packet[22..24] == port.to_be_bytes()
}

fn udp_v6_to(packet: &[u8], destination: Ipv6Addr, port: u16) -> bool {
    packet.len() >= 48
        && packet[0] >> 4 == 6
        && packet[6] == 17
        && packet[24..40] == destination.octets()
        && packet[42..44] == port.to_be_bytes()
}

/// A minimal IPv4/UDP packet (UDP checksum 0: "none", allowed for IPv4).
fn ipv4_udp(src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16, payload: &[u8]) -> Vec<u8> {
    let total = 28 + payload.len();
    let total16 = u16::try_from(total).unwrap_or(u16::MAX);
    let udp_len = total16 - 20;
    let mut packet = vec![0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, 17, 0, 0];
    packet[2..4].copy_from_slice(&total16.to_be_bytes());
    packet.extend_from_slice(&src);
    packet.extend_from_slice(&dst);
    let checksum = !packet
        .chunks(2)
        .map(|pair| u32::from(u16::from_be_bytes([pair[0], pair[1]])))
        .fold(0u32, |sum, word| {
            let sum = sum + word;
            (sum & 0xffff) + (sum >> 16)
        });
    packet[10..12].copy_from_slice(&u16::try_from(checksum & 0xffff).unwrap_or(0).to_be_bytes());
    packet.extend_from_slice(&sport.to_be_bytes());
    packet.extend_from_slice(&dport.to_be_bytes());
    packet.extend_from_slice(&udp_len.to_be_bytes());
    packet.extend_from_slice(&[0, 0]);
    packet.extend_from_slice(payload);
    packet
}
