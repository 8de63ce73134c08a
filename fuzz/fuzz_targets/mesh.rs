//! In-tunnel mesh messages (`proto/src/mesh.rs`) as an agent receives them
//! from a neighbour: decoding never panics, and what decodes encodes to a
//! packet that decodes to the same message.
#![no_main]

use freimesh_proto::mesh::MeshPacket;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = MeshPacket::is_mesh_packet(data);
    if let Ok(packet) = MeshPacket::decode(data) {
        assert_eq!(MeshPacket::decode(&packet.encode()).as_ref(), Ok(&packet));
    }
});
