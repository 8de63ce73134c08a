//! The segments lab (issue 7): public Wi-Fi and the municipal intranet
//! are separate routing domains, and a standard WireGuard site joins the
//! intranet with the config `freimesh-controller site export` prints.
//!
//! On the city lab (`freimesh_testbed::gateway_lab`): the building `b1`
//! has its approved LAN with a host in `lan1`; the site `b2` runs only
//! wireguard-go, `wg` and `ip`. Then:
//! * positive controls: the public client reaches the internet host (ping,
//!   TCP, UDP); `lan1`'s host and the site reach each other's LAN both
//!   ways (ping, TCP, UDP), across the mesh and through the site link;
//! * from the public client, every intranet and infrastructure address
//!   (the LAN host, the site, every node's overlay address) is
//!   unreachable by ping, TCP and UDP, from its own address and from
//!   spoofed ones (an intranet address and an unassigned overlay-pool
//!   address it adds to its interface); nftables counters in every
//!   namespace past the client's node prove none of these even arrived;
//! * bad input through the real CLI (overlapping prefix, prefix in the
//!   mesh's own pools, a prefix claimed by two buildings, a site export
//!   of an unknown name) fails with a clear message and changes nothing
//!   the admin API shows.
//!
//! Root only.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context as _, bail};
use freimesh_testbed::gateway_lab::site::{self, SITE_NS, SITE_VIA, SiteBox};
use freimesh_testbed::gateway_lab::{
    AP, B1, CityLab, GW1, GW2, INTERNET_HOST, LAN1, LAN1_HOST, NAMES, SITE_HOST, SITE_LAN, T1,
};
use freimesh_testbed::traffic::{retry, wg};

const TESTBED: &str = env!("CARGO_BIN_EXE_freimesh-testbed");
const ECHO_PORT: u16 = 7000;
/// Sources the client spoofs: an intranet address (in b1's LAN) and an
/// unassigned one of the overlay pool.
const SPOOF_INTRANET: Ipv4Addr = Ipv4Addr::new(10, 20, 1, 99);
const SPOOF_OVERLAY: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 250);

/// Echo services (TCP and UDP on ECHO_PORT) in namespaces; stopped by
/// closing their stdin on drop.
struct Echoes(Vec<Child>);

impl Echoes {
    fn start(lab: &CityLab, where_: &[(&str, IpAddr)]) -> anyhow::Result<Self> {
        let mut children = Vec::new();
        for (ns, addr) in where_ {
            let at = SocketAddr::new(*addr, ECHO_PORT).to_string();
            children.push(
                Command::new("ip")
                    .args(["netns", "exec", &lab.mesh.lab.ns(ns), TESTBED, "echo-serve"])
                    .args(["--tcp", &at, "--udp", &at])
                    .stdin(Stdio::piped())
                    .spawn()
                    .context("starting echo-serve")?,
            );
        }
        std::thread::sleep(Duration::from_millis(300));
        Ok(Self(children))
    }
}

impl Drop for Echoes {
    fn drop(&mut self) {
        for mut c in self.0.drain(..) {
            drop(c.stdin.take());
            let _ = c.wait();
        }
    }
}

/// One reachability try: its description and whether it got an answer.
fn try_all(
    lab: &CityLab,
    from: &str,
    targets: &[IpAddr],
    source: Option<IpAddr>,
) -> anyhow::Result<Vec<(String, bool)>> {
    // All at once: each silent try waits out its timeout.
    let mut running = Vec::new();
    for target in targets {
        let src = source.map(|s| s.to_string());
        let mut ping = Command::new("ip");
        ping.args([
            "netns",
            "exec",
            &lab.mesh.lab.ns(from),
            "ping",
            "-n",
            "-q",
            "-c",
            "2",
        ])
        .args(["-i", "0.2", "-W", "1"]);
        if let Some(s) = &src {
            ping.args(["-I", s]);
        }
        ping.arg(target.to_string());
        running.push((format!("ping {target}"), ping));
        for proto in ["tcp", "udp"] {
            let mut reach = Command::new("ip");
            reach
                .args([
                    "netns",
                    "exec",
                    &lab.mesh.lab.ns(from),
                    TESTBED,
                    "reach",
                    proto,
                ])
                .arg(SocketAddr::new(*target, ECHO_PORT).to_string())
                .args(["--timeout-ms", "1000"]);
            if let Some(s) = &src {
                reach.args(["--from", s]);
            }
            running.push((format!("{proto} {target}:{ECHO_PORT}"), reach));
        }
    }
    let children = running
        .into_iter()
        .map(|(what, mut c)| {
            let child = c
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .with_context(|| format!("starting {what}"))?;
            Ok((what, child))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut out = Vec::new();
    for (what, child) in children {
        let output = child.wait_with_output()?;
        let what = match source {
            Some(s) => format!("{from}: {what} from {s}"),
            None => format!("{from}: {what}"),
        };
        let answered = if what.contains("ping ") {
            freimesh_testbed::netns_mesh::parse_ping_received(&output)? > 0
        } else {
            match output.status.code() {
                Some(0) => true,
                Some(1) => false,
                _ => bail!(
                    "{what}: the try failed: {}",
                    String::from_utf8_lossy(&output.stderr)
                ),
            }
        };
        out.push((what, answered));
    }
    Ok(out)
}

/// nftables counters of packets from the client's addresses to the
/// protected ones, in a namespace.
const WATCH: &str = "freimesh_watch";

fn watch(lab: &CityLab, ns: &str, sources: &[IpAddr], targets: &[IpAddr]) -> anyhow::Result<()> {
    let set = |a: &[IpAddr]| {
        a.iter()
            .filter(|a| a.is_ipv4())
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    };
    let script = format!(
        "add table inet {WATCH}\nadd chain inet {WATCH} pre {{ type filter hook prerouting priority -400; }}\nadd rule inet {WATCH} pre ip saddr {{ {} }} ip daddr {{ {} }} counter\n",
        set(sources),
        set(targets)
    );
    let path = lab.mesh.dir().join(format!("watch-{ns}.nft"));
    std::fs::write(&path, script)?;
    lab.mesh
        .lab
        .exec(ns, &["nft", "-f", &path.to_string_lossy()])
        .map(drop)
}

fn watched(lab: &CityLab, ns: &str) -> anyhow::Result<u64> {
    let out = lab
        .mesh
        .lab
        .exec(ns, &["nft", "list", "chain", "inet", WATCH, "pre"])?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.split("packets ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .with_context(|| format!("no counter in {text}"))
}

/// What the admin API shows of prefixes and sites.
fn registry(lab: &CityLab, token: &str) -> anyhow::Result<String> {
    let nodes = lab
        .mesh
        .api_call(Path::new(TESTBED), token, "GET", "/nodes")?;
    let nodes: Vec<freimesh_proto::api::Node> = serde_json::from_value(nodes)?;
    let sites = lab
        .mesh
        .api_call(Path::new(TESTBED), token, "GET", "/sites")?;
    let mut out: Vec<String> = nodes
        .iter()
        .map(|n| {
            format!(
                "{} {:?} {:?} {:?}",
                n.hostname, n.addresses, n.prefixes, n.client_prefixes
            )
        })
        .collect();
    out.sort();
    Ok(format!("{}\nsites: {sites}", out.join("\n")))
}

#[test]
fn public_clients_never_reach_the_intranet_and_sites_join_it() -> anyhow::Result<()> {
    if !freimesh_testbed::lab::require_root("segments_lab") {
        return Ok(());
    }
    let lab = CityLab::start("seg")?;
    let client = lab.lease()?;
    lab.wait_internet(Duration::from_secs(60))?;
    let controller = lab.mesh.controller.as_ref().context("controller")?;
    let ids = controller.node_ids()?;
    let id = |n: usize| {
        ids.get(NAMES[n])
            .map(ToString::to_string)
            .context("node id")
    };

    // The standard WireGuard site: its operator makes a key pair and gives
    // city IT the public half; city IT adds the site and sends the export.
    let site_key = wg(&["genkey"], None)?;
    let site_pub = wg(&["pubkey"], Some(&site_key))?;
    controller.cli_ok(&[
        "site",
        "add",
        "b2",
        "--via",
        &id(SITE_VIA)?,
        "--prefix",
        SITE_LAN,
        "--public-key",
        &site_pub,
    ])?;
    let endpoint = site::via_endpoint().to_string();
    let export = controller.cli_ok(&["site", "export", "b2", "--endpoint", &endpoint])?;
    eprintln!("site export b2:\n{export}");
    assert!(
        export.contains(&endpoint),
        "the export names the endpoint given"
    );
    let _site = SiteBox::start(&lab.mesh.lab, lab.mesh.dir(), &export, &site_key)?;

    let b1_overlay: Vec<IpAddr> = lab
        .overlay(B1)?
        .into_iter()
        .filter(IpAddr::is_ipv4)
        .collect();
    let mut infrastructure: Vec<IpAddr> = Vec::new();
    for n in [AP, T1, GW1, GW2, B1] {
        infrastructure.extend(lab.overlay(n)?.into_iter().filter(IpAddr::is_ipv4));
    }
    // Bound to the overlay address itself: a UDP answer from a wildcard
    // socket would leave with the outgoing interface's address.
    let mut echo_at: Vec<(&str, IpAddr)> = Vec::new();
    for n in [AP, T1, GW1, GW2, B1] {
        for a in lab.overlay(n)?.into_iter().filter(IpAddr::is_ipv4) {
            echo_at.push((NAMES[n], a));
        }
    }
    echo_at.extend([
        ("lan1", LAN1_HOST.into()),
        (SITE_NS, SITE_HOST.into()),
        ("inet", INTERNET_HOST.into()),
    ]);
    let _echoes = Echoes::start(&lab, &echo_at)?;

    // Positive controls (the site's come last: see the end).
    let mut controls = Vec::new();
    controls.extend(try_all(&lab, "client", &[INTERNET_HOST.into()], None)?);
    controls.extend(try_all(&lab, "lan1", &b1_overlay[..1], None)?);
    let failed: Vec<_> = controls.iter().filter(|(_, ok)| !ok).collect();
    assert!(
        failed.is_empty(),
        "positive controls failed: {failed:?}\n{}",
        lab.diagnose()
    );

    // The client's spoofed sources, on its own interface.
    // An unassigned address of the overlay pool: not one of the targets
    // (the client would answer itself), and one the segment policy alone
    // would let reach a router (internet → infrastructure): only the
    // anti-spoofing where the client enters the mesh stops it.
    let spoof_infra: IpAddr = SPOOF_OVERLAY.into();
    for s in [IpAddr::from(SPOOF_INTRANET), spoof_infra] {
        lab.mesh.lab.exec(
            "client",
            &["ip", "addr", "add", &format!("{s}/32"), "dev", "eth0"],
        )?;
    }
    let mut protected: Vec<IpAddr> = vec![LAN1_HOST.into(), SITE_HOST.into()];
    protected.extend(infrastructure.iter().copied());
    let sources = [client.addr().into(), SPOOF_INTRANET.into(), spoof_infra];
    // Everything past the client's own node: nothing may arrive there.
    let past_ap = ["t1", "gw1", "gw2", "b1", "lan1", SITE_NS];
    for ns in past_ap {
        watch(&lab, ns, &sources, &protected)?;
    }
    let mut answered = Vec::new();
    for source in [None, Some(SPOOF_INTRANET.into()), Some(spoof_infra)] {
        answered.extend(
            try_all(&lab, "client", &protected, source)?
                .into_iter()
                .filter(|(_, ok)| *ok)
                .map(|(what, _)| what),
        );
    }
    let mut arrived = Vec::new();
    for ns in past_ap {
        let n = watched(&lab, ns)?;
        if n > 0 {
            arrived.push(format!("{ns}: {n} packets"));
        }
    }
    assert!(
        answered.is_empty() && arrived.is_empty(),
        "public client reached protected addresses:\nanswered: {answered:#?}\narrived: {arrived:?}"
    );
    // The client is still fine: the internet is its segment.
    assert!(lab.ping("client", INTERNET_HOST.into(), None, 3)? >= 2);

    // Bad input through the real CLI: refused, clearly, nothing changed.
    let token = controller.operator_add("lab")?;
    // The running controller reads new operators from the database.
    let before = retry(Duration::from_secs(10), || registry(&lab, &token))?;
    let cases: Vec<(String, Vec<String>, &str)> = vec![
        (
            "a prefix overlapping b1's LAN".into(),
            vec![
                "prefix".into(),
                "approve".into(),
                id(GW1)?,
                "10.20.1.128/25".into(),
            ],
            "10.20.1",
        ),
        (
            "a prefix claimed by two buildings".into(),
            vec!["prefix".into(), "approve".into(), id(GW1)?, LAN1.into()],
            "10.20.1.0/24",
        ),
        (
            "a prefix inside the mesh's overlay pool".into(),
            vec![
                "prefix".into(),
                "approve".into(),
                id(GW1)?,
                "10.99.200.0/24".into(),
            ],
            "10.99.",
        ),
        (
            "a prefix inside the public client pool".into(),
            vec![
                "prefix".into(),
                "approve".into(),
                id(GW1)?,
                "10.100.200.0/24".into(),
            ],
            "10.100.",
        ),
        (
            "a site prefix overlapping b1's LAN".into(),
            vec![
                "site".into(),
                "add".into(),
                "b3".into(),
                "--via".into(),
                id(T1)?,
                "--prefix".into(),
                "10.20.1.0/25".into(),
            ],
            "10.20.1",
        ),
        (
            "a site prefix claimed by another site".into(),
            vec![
                "site".into(),
                "add".into(),
                "b4".into(),
                "--via".into(),
                id(T1)?,
                "--prefix".into(),
                SITE_LAN.into(),
            ],
            "10.20.2.0/24",
        ),
        (
            "an export for an unknown site".into(),
            vec!["site".into(), "export".into(), "nowhere".into()],
            "nowhere",
        ),
    ];
    let mut problems = Vec::new();
    for (what, args, mention) in &cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = controller.cli(&args)?;
        let stderr = String::from_utf8_lossy(&out.stderr).trim().to_owned();
        eprintln!("{what}: exit {:?}: {stderr}", out.status.code());
        if out.status.success() {
            problems.push(format!("{what}: accepted ({args:?})"));
        } else if !stderr.contains(mention) {
            problems.push(format!(
                "{what}: message does not name {mention:?}: {stderr}"
            ));
        }
    }
    let after = registry(&lab, &token)?;
    assert!(problems.is_empty(), "bad input: {problems:#?}");
    assert_eq!(before, after, "bad input changed the registry");
    // The standard WireGuard site and the building reach each other (last,
    // so a failure here still leaves the isolation checks' verdict). The
    // site link comes up when the site first sends.
    retry(Duration::from_secs(30), || {
        match lab.ping(SITE_NS, LAN1_HOST.into(), Some(SITE_HOST.into()), 1)? {
            0 => bail!("the site does not reach lan1 yet"),
            _ => Ok(()),
        }
    })
    .with_context(|| format!("site b2 never reached b1's LAN\n{}", lab.diagnose()))?;
    let mut controls = try_all(&lab, "lan1", &[SITE_HOST.into()], None)?;
    controls.extend(try_all(
        &lab,
        SITE_NS,
        &[LAN1_HOST.into()],
        Some(SITE_HOST.into()),
    )?);
    let failed: Vec<_> = controls.iter().filter(|(_, ok)| !ok).collect();
    assert!(
        failed.is_empty(),
        "the site and the building do not reach each other: {failed:?}\n{}",
        lab.diagnose()
    );
    Ok(())
}
