//! A stranger on the air: a namespace in one cell that beacons like a
//! router, with a credential the town must refuse (forged: signed by a key
//! that is not the controller's; expired: signed by the controller's own
//! key, but expired yesterday), and listens on its WireGuard port for any
//! router that would bring a link up to it (a handshake initiation).
//!
//! The beacons are built here with the protocol crate's own types, so they
//! differ from a real router's only in the credential. Sending runs in
//! Python inside the namespace, like the beacon capture: the lab process
//! cannot enter a namespace without unsafe code, and the beacons need a
//! hop limit of 255 on a chosen interface, which std sockets cannot set.

use std::io::Read as _;
use std::net::IpAddr;
use std::process::{Child, Command, Stdio};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, bail};
use ed25519_dalek::SigningKey;
use freimesh_proto::credential::{Credential, SignedCredential};
use freimesh_proto::discovery::{Beacon, DISCOVERY_GROUP, DISCOVERY_PORT, DiscoveryMessage};
use freimesh_proto::{NodeId, PublicKeyBytes};
use rand_core::{OsRng, RngCore as _};

use crate::lab::Lab;

/// The stranger's WireGuard port (where a router would send a handshake).
pub const STRANGER_WG_PORT: u16 = 51820;
const DAY_S: u64 = 24 * 3_600;

/// Sends the beacon (hex, argv[3]) every 200 ms on interface argv[1] to
/// the group and port argv[2], counts datagrams arriving on the WireGuard
/// port argv[4] and how many of them are handshake initiations (type 1),
/// and prints both counts when stdin closes.
const STRANGER: &str = r#"
import select, socket, sys
iface, port, beacon, wg_port = sys.argv[1], int(sys.argv[2]), bytes.fromhex(sys.argv[3]), int(sys.argv[4])
group = sys.argv[5]
idx = socket.if_nametoindex(iface)
tx = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
tx.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, 255)
tx.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, 255)
tx.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, idx)
rx = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
rx.bind(("::", wg_port))
datagrams = initiations = 0
print("ready", flush=True)
while True:
    try:
        tx.sendto(beacon, (group, port, 0, idx))
    except OSError:
        pass
    readable, _, _ = select.select([rx, sys.stdin], [], [], 0.2)
    if sys.stdin in readable and sys.stdin.readline() == "":
        break
    if rx in readable:
        data, _ = rx.recvfrom(2048)
        datagrams += 1
        if len(data) >= 4 and data[0] == 1:
            initiations += 1
print(datagrams, initiations, flush=True)
"#;

/// What is wrong with the stranger's credential.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forgery {
    /// Signed by a key of the stranger's own making.
    ForeignSigner,
    /// Signed by the controller's key, expired a day ago.
    Expired,
}

impl Forgery {
    pub fn label(self) -> &'static str {
        match self {
            Self::ForeignSigner => "forged",
            Self::Expired => "expired",
        }
    }
}

fn unix_s() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn random_bytes() -> [u8; 32] {
    let mut bytes = [0u8; 32];
    OsRng.fill_bytes(&mut bytes);
    bytes
}

/// The controller's signing key, read from its database (the lab runs the
/// controller and may): only to sign the expired credential.
pub fn controller_signing_key(db: &std::path::Path) -> anyhow::Result<SigningKey> {
    let mut store = freimesh_controller::store::Store::open(db)
        .with_context(|| format!("opening {}", db.display()))?;
    let now = i64::try_from(unix_s()).unwrap_or(i64::MAX);
    Ok(store.signing_key(now)?)
}

/// A beacon for a new random key carrying a credential with `forgery`;
/// returns the key (base64, as status shows peers) and the datagram.
pub fn beacon(
    forgery: Forgery,
    controller_key: &SigningKey,
    addresses: &[IpAddr],
) -> anyhow::Result<(String, Vec<u8>)> {
    let node_key = PublicKeyBytes(random_bytes());
    let now = unix_s();
    let (signer, issued, expires) = match forgery {
        Forgery::ForeignSigner => (
            SigningKey::from_bytes(&random_bytes()),
            now,
            now + 7 * DAY_S,
        ),
        Forgery::Expired => (controller_key.clone(), now - 8 * DAY_S, now - DAY_S),
    };
    let credential = Credential {
        node_key,
        node_id: NodeId::of(&node_key),
        addresses: addresses.iter().map(|a| ipnet::IpNet::from(*a)).collect(),
        roles: freimesh_proto::roles::Roles::default(),
        prefixes: Vec::new(),
        issued_unix_s: issued,
        expires_unix_s: expires,
    };
    let signed: SignedCredential = credential.sign(&signer)?;
    let datagram = DiscoveryMessage::Beacon(Beacon {
        node_key,
        wg_port: STRANGER_WG_PORT,
        credential: Some(signed),
        revocation_serial: 0,
        wants_reply: true,
    })
    .encode()?;
    Ok((freimesh_proto::encode_key(&node_key.0), datagram))
}

/// A stranger beaconing in a namespace until [`Stranger::finish`].
#[derive(Debug)]
pub struct Stranger {
    child: Child,
    stdout: std::process::ChildStdout,
}

impl Stranger {
    /// Starts beaconing `datagram` on `ifname` in namespace `ns`.
    pub fn start(lab: &Lab, ns: &str, ifname: &str, datagram: &[u8]) -> anyhow::Result<Self> {
        let hex: String = datagram.iter().map(|b| format!("{b:02x}")).collect();
        let mut child = Command::new("ip")
            .args([
                "netns",
                "exec",
                &lab.ns(ns),
                "python3",
                "-c",
                STRANGER,
                ifname,
            ])
            .arg(DISCOVERY_PORT.to_string())
            .arg(hex)
            .arg(STRANGER_WG_PORT.to_string())
            .arg(DISCOVERY_GROUP.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting the stranger (python3)")?;
        let mut stdout = child.stdout.take().context("stranger stdout")?;
        let mut ready = [0u8; 6];
        stdout
            .read_exact(&mut ready)
            .context("the stranger did not start")?;
        if &ready != b"ready\n" {
            bail!("the stranger said {:?}", String::from_utf8_lossy(&ready));
        }
        Ok(Self { child, stdout })
    }

    /// Stops it; returns the datagrams that reached its WireGuard port and
    /// how many of them were handshake initiations.
    pub fn finish(mut self) -> anyhow::Result<(u64, u64)> {
        drop(self.child.stdin.take());
        let mut text = String::new();
        self.stdout.read_to_string(&mut text)?;
        let _ = self.child.wait();
        let mut counts = text.split_whitespace().map(str::parse::<u64>);
        match (counts.next(), counts.next()) {
            (Some(Ok(datagrams)), Some(Ok(initiations))) => Ok((datagrams, initiations)),
            _ => bail!("the stranger reported {text:?}"),
        }
    }
}

impl Drop for Stranger {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use freimesh_proto::credential::SigningKeyBytes;

    #[test]
    fn forged_and_expired_beacons_decode_and_fail_the_check_they_are_meant_to() {
        let controller = SigningKey::from_bytes(&[7; 32]);
        let pinned = SigningKeyBytes::of(&controller);
        let address: IpAddr = "10.99.255.1".parse().expect("address");
        for forgery in [Forgery::ForeignSigner, Forgery::Expired] {
            let (_, datagram) = beacon(forgery, &controller, &[address]).expect("beacon");
            let Ok(DiscoveryMessage::Beacon(b)) = DiscoveryMessage::decode(&datagram) else {
                panic!("{forgery:?}: not a beacon");
            };
            let credential = b.credential.expect("credential");
            match forgery {
                Forgery::ForeignSigner => {
                    assert!(credential.verify_ignoring_expiry(&pinned).is_err());
                }
                Forgery::Expired => {
                    assert!(credential.verify_ignoring_expiry(&pinned).is_ok());
                    assert!(credential.verify(&pinned, unix_s()).is_err());
                }
            }
        }
    }
}
