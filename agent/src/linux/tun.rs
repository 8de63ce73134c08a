//! Opening the TUN device. The kernel cannot create TUN devices over
//! rtnetlink, so this is the one ioctl path (`TUNSETIFF` through tun-rs);
//! everything after it (MTU, up, addresses, routes) goes over rtnetlink.

use tun_rs::{AsyncDevice, DeviceBuilder};

use super::LinuxError;

/// Creates the TUN device `name`, or attaches to it if a persistent TUN
/// device of that name exists.
///
/// `IFF_NO_PI` (no 4-byte packet-information prefix), and with `offload`
/// `IFF_VNET_HDR` with TSO and checksum offload: every read and write then
/// starts with a virtio header, and a read may be one TCP segment of up to
/// 64 KiB that tun-rs splits into MTU-sized packets (`recv_multiple`);
/// without, one read is one bare IP packet. The device is neither addressed nor brought up here: tun-rs is built
/// without `address-management` and told to leave the up/down state alone,
/// so netlink owns all configuration and nothing is done twice.
///
/// The device is not persistent: it disappears when its last file
/// descriptor closes. Must be called inside a tokio runtime (the device
/// registers with its reactor).
pub(crate) fn create(name: &str, offload: bool) -> Result<AsyncDevice, LinuxError> {
    DeviceBuilder::new()
        .name(name)
        .with(|options| {
            options.packet_information(false);
            options.offload(offload);
            options.multi_queue(false);
        })
        .inherit_enable_state()
        .build_async()
        .map_err(|cause| LinuxError::CreateTun {
            device: name.to_owned(),
            cause,
        })
}
