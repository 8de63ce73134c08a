//! Fuzz test of the stack core: whatever the mesh delivers, the stack neither
//! panics nor stops answering.

use std::cell::RefCell;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, TestRng, TestRunner};
use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{
    Icmpv4Packet, Icmpv4Repr, Icmpv6Packet, IpAddress, IpProtocol, Ipv4Packet, Ipv4Repr,
    Ipv6Packet, Ipv6Repr, TcpPacket, UdpPacket,
};
use tokio::sync::mpsc;

use super::stack::{Shared, Stack};
use super::{TcpExpose, UserspaceSettings};

const A4: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 1);
const B4: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 2);
const B6: Ipv6Addr = Ipv6Addr::new(0xfd99, 0, 0, 0, 0, 0, 0, 2);
const EXPOSED_PORT: u16 = 7000;

/// Garbage, and packets that are well-formed up to a random transport
/// payload (with valid checksums, so they reach TCP and ICMP parsing).
fn mesh_packet() -> impl Strategy<Value = Vec<u8>> {
    let any_v4 = prop_oneof![
        Just(Ipv4Addr::UNSPECIFIED),
        Just(Ipv4Addr::BROADCAST),
        Just(Ipv4Addr::new(224, 0, 0, 1)),
        Just(A4),
        any::<[u8; 4]>().prop_map(Ipv4Addr::from),
    ];
    let any_v6 = prop_oneof![
        Just(Ipv6Addr::UNSPECIFIED),
        Just(Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1)),
        Just(B6),
        any::<[u8; 16]>().prop_map(Ipv6Addr::from),
    ];
    let protocol = prop_oneof![Just(1u8), Just(6), Just(17), Just(58), any::<u8>()];
    let payload = (
        proptest::collection::vec(any::<u8>(), 0..300),
        any::<bool>(),
    );
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..1600),
        (any_v4, protocol.clone(), payload.clone(), any::<u8>())
            .prop_map(|(src, proto, (payload, aim), ttl)| ipv4(src, proto, payload, aim, ttl)),
        (any_v6, protocol, payload, any::<u8>())
            .prop_map(|(src, proto, (payload, aim), hops)| ipv6(src, proto, payload, aim, hops)),
    ]
}

/// `aim`: point a TCP segment at the exposed port with a plausible header.
fn transport(proto: u8, payload: &mut [u8], src: IpAddress, dst: IpAddress, aim: bool) {
    match proto {
        6 if payload.len() >= 20 => {
            if aim {
                payload[2..4].copy_from_slice(&EXPOSED_PORT.to_be_bytes());
                payload[12] = 0x50;
            }
            TcpPacket::new_unchecked(payload).fill_checksum(&src, &dst);
        }
        17 if payload.len() >= 8 => {
            let len = u16::try_from(payload.len()).unwrap_or(u16::MAX);
            payload[4..6].copy_from_slice(&len.to_be_bytes());
            UdpPacket::new_unchecked(payload).fill_checksum(&src, &dst);
        }
        1 if payload.len() >= 8 => Icmpv4Packet::new_unchecked(payload).fill_checksum(),
        58 if payload.len() >= 8 => {
            if let (IpAddress::Ipv6(src), IpAddress::Ipv6(dst)) = (src, dst) {
                Icmpv6Packet::new_unchecked(payload).fill_checksum(&src, &dst);
            }
        }
        _ => {}
    }
}

fn ipv4(src: Ipv4Addr, proto: u8, mut payload: Vec<u8>, aim: bool, ttl: u8) -> Vec<u8> {
    transport(proto, &mut payload, src.into(), B4.into(), aim);
    let repr = Ipv4Repr {
        src_addr: src,
        dst_addr: B4,
        next_header: IpProtocol::from(proto),
        payload_len: payload.len(),
        hop_limit: ttl,
    };
    let mut packet = vec![0; repr.buffer_len()];
    repr.emit(
        &mut Ipv4Packet::new_unchecked(&mut packet),
        &ChecksumCapabilities::default(),
    );
    packet.extend_from_slice(&payload);
    packet
}

fn ipv6(src: Ipv6Addr, proto: u8, mut payload: Vec<u8>, aim: bool, hops: u8) -> Vec<u8> {
    transport(proto, &mut payload, src.into(), B6.into(), aim);
    let repr = Ipv6Repr {
        src_addr: src,
        dst_addr: B6,
        next_header: IpProtocol::from(proto),
        payload_len: payload.len(),
        hop_limit: hops,
    };
    let mut packet = vec![0; repr.buffer_len()];
    repr.emit(&mut Ipv6Packet::new_unchecked(&mut packet));
    packet.extend_from_slice(&payload);
    packet
}

fn echo_request(src: Ipv4Addr) -> Vec<u8> {
    let repr = Icmpv4Repr::EchoRequest {
        ident: 7,
        seq_no: 1,
        data: b"still alive?",
    };
    let mut icmp = vec![0; repr.buffer_len()];
    repr.emit(
        &mut Icmpv4Packet::new_unchecked(&mut icmp),
        &ChecksumCapabilities::default(),
    );
    ipv4(src, 1, icmp, false, 64)
}

#[test]
fn garbage_from_the_mesh_never_panics() {
    // Connection tasks are spawned but never run: this exercises the core.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let _guard = runtime.enter();
    let (to_mesh, from_stack) = mpsc::channel(16);
    let b = UserspaceSettings {
        addresses: vec![
            "10.99.0.2/32".parse().expect("literal"),
            "fd99::2/128".parse().expect("literal"),
        ],
        mtu: 1420,
        tcp_forwards: Vec::new(),
        tcp_exposes: vec![TcpExpose {
            port: EXPOSED_PORT,
            target: SocketAddr::from((Ipv4Addr::LOCALHOST, 9)),
        }],
    };
    let stack = Stack::new(&b, to_mesh, Arc::new(Shared::default())).expect("stack");
    let state = RefCell::new((stack, from_stack));
    let config = ProptestConfig {
        cases: 4096,
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    let rng = TestRng::deterministic_rng(config.rng_algorithm);
    let mut runner = TestRunner::new_with_rng(config, rng);
    let result = runner.run(&mesh_packet(), |packet| {
        let (stack, from_stack) = &mut *state.borrow_mut();
        stack.ingest(packet);
        stack.drive();
        while from_stack.try_recv().is_ok() {}
        Ok(())
    });
    result.expect("no panic, no failure");

    // And the stack still answers.
    let (stack, from_stack) = &mut *state.borrow_mut();
    stack.ingest(echo_request(A4));
    stack.drive();
    let reply = from_stack.try_recv().expect("an echo reply");
    let reply = Ipv4Packet::new_checked(&reply[..]).expect("IPv4");
    assert_eq!((reply.src_addr(), reply.dst_addr()), (B4, A4));
}
