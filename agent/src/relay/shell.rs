//! The relay's byte pump: a TCP listener on [`CONTROL_RELAY_PORT`], one
//! task per relayed connection copying bytes to the upstream the
//! [`RelayCore`] names and back. Every decision (who, how many, how fast,
//! how long idle) is the core's.
//!
//! [`CONTROL_RELAY_PORT`]: freimesh_proto::discovery::CONTROL_RELAY_PORT

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use freimesh_proto::PublicKeyBytes;
use freimesh_proto::relay::RelayPreamble;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, watch};

use super::core::{Origin, RelayCore, RelayId, Upstream};
use crate::clock;

/// Connecting to the upstream must finish within this: the controller or
/// the exit is reachable within a few round trips or not at all, and the
/// client on the other side gives up after its own connect timeout.
pub const UPSTREAM_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// One read's worth of bytes.
const CHUNK: usize = 16 * 1024;
/// With no connection open, the idle check sleeps this long at most.
const IDLE_CHECK: Duration = Duration::from_secs(60);

/// What the relay serves and as whom.
#[derive(Debug, Clone)]
pub struct RelaySite {
    /// This node's key: named in the preamble to the controller.
    pub own_key: PublicKeyBytes,
    /// The interfaces whose link-local addresses are served.
    pub mesh_interfaces: Vec<String>,
    /// This node's overlay addresses (served).
    pub overlay: Vec<IpAddr>,
}

impl RelaySite {
    /// Where a connection to `local` (this side's address) arrived.
    pub fn origin_of(&self, local: SocketAddr) -> Origin {
        self.origin_with_sysfs(local, Path::new("/sys/class/net"))
    }

    fn origin_with_sysfs(&self, local: SocketAddr, sysfs: &Path) -> Origin {
        let ip = local.ip().to_canonical();
        if self.overlay.contains(&ip) {
            return Origin::Overlay;
        }
        let SocketAddr::V6(v6) = local else {
            return Origin::Other;
        };
        if !crate::discovery::shell::is_link_local(v6.ip()) || v6.scope_id() == 0 {
            return Origin::Other;
        }
        self.mesh_interfaces
            .iter()
            .find(|name| ifindex(sysfs, name) == Some(v6.scope_id()))
            .map_or(Origin::Other, |name| Origin::MeshInterface(name.clone()))
    }
}

fn ifindex(sysfs: &Path, name: &str) -> Option<u32> {
    std::fs::read_to_string(sysfs.join(name).join("ifindex"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

fn lock(core: &Mutex<RelayCore>) -> std::sync::MutexGuard<'_, RelayCore> {
    // Each core call is one step: the state stays consistent.
    core.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Serves the relay until the task is dropped. `upstream` says where this
/// node's own control session runs (the client publishes it).
pub async fn serve(
    listener: TcpListener,
    site: RelaySite,
    core: RelayCore,
    mut upstream: watch::Receiver<Option<Upstream>>,
) {
    let core = Arc::new(Mutex::new(core));
    lock(&core).handle_upstream(*upstream.borrow_and_update());
    let (ended_tx, mut ended) = mpsc::unbounded_channel::<RelayId>();
    let mut open: BTreeMap<RelayId, oneshot::Sender<()>> = BTreeMap::new();
    loop {
        let wake = lock(&core)
            .poll_timeout()
            .unwrap_or_else(|| clock::now() + IDLE_CHECK);
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, peer)) = accepted else {
                    // Descriptor exhaustion and the like: pause, keep serving.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                };
                let origin = stream.local_addr().map_or(Origin::Other, |local| site.origin_of(local));
                let decided = lock(&core).handle_accept(origin.clone(), peer.ip().to_canonical(), clock::now());
                let (id, to) = match decided {
                    Ok(d) => d,
                    Err(refusal) => {
                        tracing::debug!(%peer, ?origin, %refusal, "relay connection refused");
                        continue;
                    }
                };
                tracing::debug!(%peer, ?origin, upstream = %to.addr(), "relaying a control connection");
                let (close_tx, close_rx) = oneshot::channel();
                open.insert(id, close_tx);
                let core = core.clone();
                let ended_tx = ended_tx.clone();
                let own_key = site.own_key;
                tokio::spawn(async move {
                    if let Err(err) = relay_one(stream, to, own_key, id, &core, close_rx).await {
                        tracing::debug!(%peer, upstream = %to.addr(), %err, "relayed connection ended");
                    }
                    let _ = ended_tx.send(id);
                });
            }
            Some(id) = ended.recv() => {
                open.remove(&id);
                lock(&core).handle_closed(id);
            }
            Ok(()) = upstream.changed() => {
                lock(&core).handle_upstream(*upstream.borrow_and_update());
            }
            () = tokio::time::sleep_until(wake.into()) => {
                let mut core = lock(&core);
                core.handle_tick(clock::now());
                while let Some(id) = core.poll_close() {
                    tracing::debug!(?id, "relayed connection idle; closed");
                    if let Some(close) = open.remove(&id) {
                        let _ = close.send(());
                    }
                }
            }
        }
    }
}

async fn relay_one(
    downstream: TcpStream,
    to: Upstream,
    own_key: PublicKeyBytes,
    id: RelayId,
    core: &Mutex<RelayCore>,
    close: oneshot::Receiver<()>,
) -> std::io::Result<()> {
    let mut up = tokio::time::timeout(UPSTREAM_CONNECT_TIMEOUT, TcpStream::connect(to.addr()))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "upstream connect"))??;
    let _ = up.set_nodelay(true);
    let _ = downstream.set_nodelay(true);
    if let Upstream::Controller(_) = to {
        up.write_all(&RelayPreamble { relay_key: own_key }.encode())
            .await?;
    }
    let (down_r, down_w) = downstream.into_split();
    let (up_r, up_w) = up.into_split();
    tokio::select! {
        r = pump(down_r, up_w, id, core) => r,
        r = pump(up_r, down_w, id, core) => r,
        _ = close => Ok(()),
    }
}

/// Copies `from` to `to` at the pace the core allows, until either ends.
async fn pump(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    id: RelayId,
    core: &Mutex<RelayCore>,
) -> std::io::Result<()> {
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = from.read(&mut buf).await?;
        if n == 0 {
            let _ = to.shutdown().await;
            return Ok(());
        }
        let Some(wait) = lock(core).handle_transfer(id, n, clock::now()) else {
            return Ok(());
        };
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        to.write_all(&buf[..n]).await?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_follow_the_local_address() {
        let dir = tempfile::tempdir().expect("dir");
        std::fs::create_dir_all(dir.path().join("mesh0")).expect("dir");
        std::fs::write(dir.path().join("mesh0/ifindex"), "7\n").expect("write");
        let site = RelaySite {
            own_key: PublicKeyBytes([1; 32]),
            mesh_interfaces: vec!["mesh0".into()],
            overlay: vec![
                "fd00::1".parse().expect("ip"),
                "10.99.0.1".parse().expect("ip"),
            ],
        };
        let origin = |addr: &str| site.origin_with_sysfs(addr.parse().expect("addr"), dir.path());
        assert_eq!(
            origin("[fe80::1%7]:51819"),
            Origin::MeshInterface("mesh0".into())
        );
        assert_eq!(
            origin("[fe80::1%8]:51819"),
            Origin::Other,
            "not a mesh interface"
        );
        assert_eq!(origin("[fe80::1]:51819"), Origin::Other, "no scope");
        assert_eq!(origin("[fd00::1]:51819"), Origin::Overlay);
        assert_eq!(
            origin("[::ffff:10.99.0.1]:51819"),
            Origin::Overlay,
            "mapped IPv4"
        );
        assert_eq!(origin("10.99.0.1:51819"), Origin::Overlay);
        assert_eq!(origin("192.0.2.1:51819"), Origin::Other, "the underlay");
        assert_eq!(origin("[2001:db8::1]:51819"), Origin::Other);
    }
}
