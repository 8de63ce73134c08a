//! The agent engine fed with whole datagrams and packets: outer WireGuard
//! datagrams, inner packets decrypted from a real session (mesh messages,
//! source checks, forwarding), packets from the TUN device and time passing.
//! See `freimesh_fuzz::engine` for the topology and the input format.
#![no_main]

use freimesh_fuzz::engine::Harness;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    Harness::new().run(data);
});
