//! Tests against the real kernel. Each runs on its own thread in a fresh,
//! unnamed network namespace (`unshare(CLONE_NEWNET)` on that thread), with
//! a current-thread tokio runtime, so the netlink sockets and TUN devices it
//! opens live there. The namespace dies with the thread: nothing is left on
//! the host, even when a test fails halfway.
//!
//! They need root (CAP_SYS_ADMIN for the namespace, CAP_NET_ADMIN inside).
//! Without it they are skipped with a notice, except when `CI` is set: CI
//! must run them, so there they fail.

mod backend;
mod policy;
mod underlay;

use std::{error::Error, io, io::Write as _, time::Duration};

use ipnet::IpNet;

use super::{DEFAULT_MTU, LinuxSettings, ROUTE_METRIC, netlink::Netlink, reconcile::Route, wire};

pub(crate) type TestResult = Result<(), Box<dyn Error>>;

/// How long to wait for the kernel: it answers in microseconds, but a
/// loaded 2-core CI machine may not schedule the test task for a while.
pub(crate) const KERNEL_TIMEOUT: Duration = Duration::from_secs(5);

enum Outcome {
    Ran(Result<(), String>),
    Unprivileged(io::Error),
}

/// Runs `test` in a throwaway network namespace (see the module docs).
pub(crate) fn in_netns<F, Fut>(name: &str, test: F)
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = TestResult>,
{
    let thread = std::thread::spawn(move || {
        if let Err(e) = unshare_network_namespace() {
            return Outcome::Unprivileged(e);
        }
        let runtime = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(runtime) => runtime,
            Err(e) => return Outcome::Ran(Err(format!("building tokio runtime: {e}"))),
        };
        Outcome::Ran(runtime.block_on(test()).map_err(|e| e.to_string()))
    });
    match thread.join() {
        Err(panic) => std::panic::resume_unwind(panic),
        Ok(Outcome::Ran(Ok(()))) => {}
        Ok(Outcome::Ran(Err(e))) => panic!("{name}: {e}"),
        Ok(Outcome::Unprivileged(e)) if std::env::var_os("CI").is_some() => panic!(
            "{name}: cannot create a network namespace ({e}); CI must run the linux \
             backend tests as root (CAP_SYS_ADMIN and CAP_NET_ADMIN)"
        ),
        Ok(Outcome::Unprivileged(e)) => {
            // Straight to stderr: the test harness captures `eprintln!` of
            // passing tests, and a skip must be seen.
            let _ = writeln!(
                io::stderr(),
                "skipping {name}: needs root to create a network namespace ({e}); \
                 run as root, or set CI=1 to make this a failure"
            );
        }
    }
}

/// Moves the calling thread (only it) into a new network namespace.
#[allow(unsafe_code)]
fn unshare_network_namespace() -> io::Result<()> {
    // SAFETY: unshare takes no pointers and touches no memory of ours;
    // CLONE_NEWNET changes only the calling thread's network namespace,
    // which is the test thread that owns everything opened afterwards.
    let rc = unsafe { libc::unshare(libc::CLONE_NEWNET) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

pub(super) fn net(s: &str) -> IpNet {
    match s.parse() {
        Ok(net) => net,
        Err(e) => panic!("bad test prefix {s}: {e}"),
    }
}

pub(super) fn nets(list: &[&str]) -> Vec<IpNet> {
    list.iter().map(|s| net(s)).collect()
}

pub(super) fn settings(name: &str, addresses: &[&str], routes: &[&str]) -> LinuxSettings {
    LinuxSettings {
        tun_name: name.to_owned(),
        mtu: DEFAULT_MTU,
        addresses: nets(addresses),
        routes: nets(routes),
        // These tests read and write the device as bare IP packets.
        offload: false,
    }
}

pub(super) fn our(prefix: &str, ifindex: u32) -> Route {
    Route {
        prefix: net(prefix),
        ifindex,
        metric: ROUTE_METRIC,
    }
}

pub(crate) async fn ifindex(netlink: &Netlink, name: &str) -> Result<Option<u32>, Box<dyn Error>> {
    Ok(netlink.link_by_name(name).await?.map(|link| link.index))
}

pub(super) async fn set_up(netlink: &Netlink, name: &str, up: bool) -> TestResult {
    let index = ifindex(netlink, name)
        .await?
        .ok_or_else(|| format!("no interface {name}"))?;
    netlink
        .request(&wire::set_link(index, None, Some(up)))
        .await?;
    Ok(())
}

/// A veth pair `a`–`b`, both down.
pub(super) async fn add_veth(a: &str, b: &str) -> TestResult {
    sh("ip", &["link", "add", a, "type", "veth", "peer", "name", b]).await
}

/// Tagged routes, sorted, duplicates kept.
pub(super) async fn tagged(netlink: &Netlink) -> Result<Vec<Route>, Box<dyn Error>> {
    let mut routes = netlink.tagged_routes().await?;
    routes.sort();
    Ok(routes)
}

/// A command the test needs (`ip`, `nft`); its failure is the test's.
pub(crate) async fn sh(program: &str, args: &[&str]) -> TestResult {
    let output = tokio::process::Command::new(program)
        .args(args)
        .output()
        .await
        .map_err(|e| format!("running {program}: {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{program} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        )
        .into())
    }
}

/// A second, named network namespace for a test that needs a peer on the
/// far end of a veth pair (a namespace's own addresses are always
/// delivered locally, never over the wire). Named, because `ip` reaches it
/// by name; deleted on drop, so a failing test leaves nothing behind.
pub(crate) struct PeerNamespace {
    pub(crate) name: String,
}

impl PeerNamespace {
    pub(crate) fn create(tag: &str) -> Result<Self, Box<dyn Error>> {
        let name = format!("fmtest-{tag}-{}", std::process::id());
        let status = std::process::Command::new("ip")
            .args(["netns", "add", &name])
            .status()?;
        if !status.success() {
            return Err(format!("ip netns add {name} failed").into());
        }
        Ok(Self { name })
    }

    /// Runs `program args…` inside the namespace.
    pub(crate) async fn exec(&self, program: &str, args: &[&str]) -> TestResult {
        let mut full = vec!["netns", "exec", &self.name, program];
        full.extend_from_slice(args);
        sh("ip", &full).await
    }
}

impl Drop for PeerNamespace {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// An rtnetlink socket for tests outside this module.
pub(crate) fn netlink() -> Result<Netlink, Box<dyn Error>> {
    Ok(Netlink::connect()?)
}
