//! Control-channel frames as the controller and the agent read them. The
//! first byte picks the reader: 0 an agent frame (`AgentMsg`, and the
//! version peek the controller does first), 1 a controller frame
//! (`ControllerMsg`), 2 the bytes as Noise message 1 given to the
//! controller's responder (reachable before any authentication). A frame
//! that decodes must encode to bytes that decode to the same frame.
#![no_main]

use freimesh_proto::control::{self, AgentMsg, ControllerMsg};
use libfuzzer_sys::fuzz_target;

/// The controller's static key in this target: any fixed key will do, the
/// input cannot know it.
const CONTROLLER_SECRET: [u8; 32] = [0x42; 32];

fn round_trip<T>(bytes: &[u8])
where
    T: serde::Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
{
    if let Ok(msg) = control::decode::<T>(bytes) {
        let encoded = control::encode(&msg).expect("a decoded frame encodes");
        assert_eq!(control::decode::<T>(&encoded).as_ref(), Ok(&msg));
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, bytes)) = data.split_first() else {
        return;
    };
    match selector % 3 {
        0 => {
            let _ = control::hello_version(bytes);
            round_trip::<AgentMsg>(bytes);
        }
        1 => round_trip::<ControllerMsg>(bytes),
        _ => {
            let _ = control::respond(&CONTROLLER_SECRET, bytes);
        }
    }
});
