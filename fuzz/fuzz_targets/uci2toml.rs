//! OpenWrt's UCI translation (`openwrt-package/freimesh/files/uci2toml`) run
//! with `busybox sh` on a UCI file built from the input; slow (it execs a
//! shell per input). See `freimesh_fuzz::uci` for the rules it checks.
#![no_main]

use std::sync::OnceLock;

use freimesh_fuzz::uci::Sandbox;
use libfuzzer_sys::fuzz_target;

static SANDBOX: OnceLock<Sandbox> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    SANDBOX
        .get_or_init(|| Sandbox::new().expect("create the uci2toml sandbox"))
        .check(data);
});
