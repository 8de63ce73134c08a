//! The agent's TOML configuration (`AgentConfig::from_toml`: parse and
//! every check): any text gets an answer, never a panic.
#![no_main]

use freimesh_agent::config::AgentConfig;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = AgentConfig::from_toml(text);
    }
});
