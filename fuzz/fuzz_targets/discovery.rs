//! Discovery datagrams (`proto/src/discovery.rs`) as an agent hears them on
//! a mesh interface from anyone on the air: decoding never panics, what
//! decodes encodes to a datagram that decodes to the same message, and the
//! discovery core (`agent/src/discovery`) takes any datagram without
//! panicking or growing past its bounds.
#![no_main]

use std::net::{Ipv6Addr, SocketAddrV6};
use std::time::{Duration, Instant};

use freimesh_agent::discovery::{
    Discovery, MAX_NEIGHBOURS_PER_INTERFACE, MAX_REJECTED_PER_INTERFACE,
};
use freimesh_agent::membership::Membership;
use freimesh_proto::PublicKeyBytes;
use freimesh_proto::credential::SigningKeyBytes;
use freimesh_proto::discovery::{DISCOVERY_PORT, DiscoveryMessage};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(message) = DiscoveryMessage::decode(data) {
        let again = message.encode().expect("what decodes encodes");
        assert_eq!(DiscoveryMessage::decode(&again).as_ref(), Ok(&message));
    }
    let now = Instant::now();
    let interfaces = ["mesh0".to_owned()];
    let mut core = Discovery::new(PublicKeyBytes([1; 32]), 51820, 8, &interfaces, now);
    let mut membership = Membership::new();
    // The Ed25519 base point's encoding: a valid public key nobody signs with.
    let mut signer = [0x66; 32];
    signer[0] = 0x58;
    membership.set_signing_key(SigningKeyBytes(signer));
    let src = SocketAddrV6::new(
        Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 2),
        DISCOVERY_PORT,
        0,
        3,
    );
    for chunk in data.chunks(1_200).take(4) {
        core.handle_datagram(&mut membership, "mesh0", src, chunk, now, 1_800_000_000);
    }
    core.handle_tick(
        &membership,
        now + Duration::from_secs(30),
        Some(1_800_000_030),
    );
    while core.poll_transmit().is_some() {}
    while core.poll_action().is_some() {}
    assert!(core.neighbours("mesh0") <= MAX_NEIGHBOURS_PER_INTERFACE);
    assert!(core.rejected("mesh0") <= MAX_REJECTED_PER_INTERFACE);
});
