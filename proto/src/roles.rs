//! What a node is for besides forwarding: requested in the Hello,
//! approved by an operator, vouched for in the membership credential.
//! Its own module because both the control protocol and the credential
//! use it.

use serde::{Deserialize, Serialize};

/// What a node is for, besides forwarding (v4).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Roles {
    /// It has an uplink to the internet and offers itself as a gateway.
    pub gateway: bool,
    /// It serves public Wi-Fi clients and needs a client /64 and IPv4
    /// subnet.
    pub public_wifi: bool,
}
