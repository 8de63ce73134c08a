//! A mesh of linux-backend agents, one network namespace per node, one veth
//! pair per link: the closest this machine gets to routers on a wire.
//!
//! Link `k` of the topology gets the underlay subnet `172.31.k.0/24`, its
//! first node `.1`, its second `.2`; inside node `x`'s namespace the
//! interface towards node `y` is called `to-y`. Every agent listens on UDP
//! 51820 and owns `10.99.0.<n>` / `fd99::<n>` on its TUN device `fm0`.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::Output;
use std::time::Duration;

use anyhow::{Context as _, bail};

use crate::controller::ControllerProcess;
use crate::lab::Lab;
use crate::mesh::{self, Backend, ControllerPlan, PlannedNode, Underlay};
use crate::process::{AgentProcess, wait_for_path};
use crate::topology::Topology;

/// Overlay index offset of the addresses the first and last node of a
/// controlled lab ask for.
pub const CONTROLLED_FIXED_BASE: usize = 100;

/// Where the controller of a controlled lab listens (TCP).
pub const CONTROLLER_PORT: u16 = 7700;

/// Where the controller of a controlled lab serves its admin API, on
/// loopback inside its namespace (`freimesh-testbed api-call` run there
/// reaches it).
pub const CONTROLLER_API_PORT: u16 = 7780;

/// The UDP port every lab agent listens on.
pub const LAB_PORT: u16 = 51820;

/// Underlay addressing of a namespace lab.
#[derive(Debug, Clone)]
pub struct VethUnderlay {
    links: Vec<(usize, usize)>,
}

impl VethUnderlay {
    /// The addressing of `links` (pairs of node indices), link `k` on
    /// `172.31.k.0/24`.
    pub fn new(links: Vec<(usize, usize)>) -> Self {
        Self { links }
    }

    /// The underlay address of `node` on link `k`.
    pub fn address(&self, k: usize, node: usize) -> Ipv4Addr {
        let third = u8::try_from(k).unwrap_or(u8::MAX);
        let host = if self.links[k].0 == node { 1 } else { 2 };
        Ipv4Addr::new(172, 31, third, host)
    }

    fn link_between(&self, a: usize, b: usize) -> Option<usize> {
        self.links
            .iter()
            .position(|&(x, y)| (x, y) == (a, b) || (x, y) == (b, a))
    }
}

impl Underlay for VethUnderlay {
    fn listen(&self, _node: usize) -> SocketAddr {
        SocketAddr::from(([0, 0, 0, 0], LAB_PORT))
    }
    fn endpoint(&self, from: usize, to: usize) -> SocketAddr {
        let k = self.link_between(from, to).unwrap_or(0);
        SocketAddr::new(IpAddr::V4(self.address(k, to)), LAB_PORT)
    }
}

/// What a controlled lab adds to the defaults: arguments for
/// `freimesh-controller init` (`--clients-ipv4 …`), prefixes approved with
/// a node's join token, and TOML appended to a node's config (`[gateway]`,
/// `[public_wifi]`), by node index.
#[derive(Debug, Clone, Default)]
pub struct ControlledOptions {
    pub init_args: Vec<String>,
    pub token_prefixes: std::collections::BTreeMap<usize, Vec<String>>,
    pub extra: std::collections::BTreeMap<usize, String>,
}

/// A running namespace mesh. Dropping it kills the agents, then removes the
/// namespaces.
#[derive(Debug)]
pub struct NetnsMesh {
    // Declared first so they are dropped (killed) before the lab goes.
    agents: Vec<Option<AgentProcess>>,
    pub nodes: Vec<PlannedNode>,
    pub topology: Topology,
    pub underlay: VethUnderlay,
    /// The controller, for meshes started with one (killed before the lab
    /// goes, like the agents).
    pub controller: Option<ControllerProcess>,
    pub lab: Lab,
    scratch: tempfile::TempDir,
}

impl NetnsMesh {
    /// The node `from`'s route for `prefix`: the neighbour it forwards to
    /// now (`None` if none is live) and every neighbour the route lists,
    /// primary first, as node indices.
    pub fn route_of(
        &self,
        from: usize,
        prefix: ipnet::IpNet,
    ) -> anyhow::Result<(Option<usize>, Vec<usize>)> {
        let s = crate::traffic::status(&self.nodes[from].socket)?;
        let route = s
            .engine
            .routes
            .iter()
            .find(|r| r.prefix == prefix)
            .with_context(|| format!("{} has no route for {prefix}", self.name(from)))?;
        let node_of = |link: &str| -> Option<usize> {
            let peer = &s.engine.links.iter().find(|l| l.name == link)?.peer;
            self.nodes.iter().position(|n| &n.public_key == peer)
        };
        Ok((
            route.active.as_deref().and_then(node_of),
            route.via.iter().filter_map(|l| node_of(l)).collect(),
        ))
    }

    /// Builds the namespaces and links, writes configs and starts an agent
    /// in every namespace.
    pub fn start(tag: &str, topology: Topology) -> anyhow::Result<Self> {
        Self::start_with(tag, topology, false)
    }

    /// Like [`NetnsMesh::start`], with a controller in its own namespace
    /// `ctl`, joined to every node by a management veth (`172.30.<i>.0/24`,
    /// the controller at `.1`): the control channel never depends on the
    /// mesh it controls. Agents enrol with join tokens; only the first and
    /// last node ask for fixed addresses (`overlay_v4` of
    /// `CONTROLLED_FIXED_BASE` plus their index, clear of what the
    /// controller hands out first), the others take what it assigns.
    pub fn start_controlled(tag: &str, topology: Topology) -> anyhow::Result<Self> {
        Self::start_with(tag, topology, true)
    }

    fn start_with(tag: &str, topology: Topology, controlled: bool) -> anyhow::Result<Self> {
        let options = controlled.then(ControlledOptions::default);
        let mut this = Self::prepare(tag, topology, options)?;
        this.start_agents()?;
        Ok(this)
    }

    /// Builds the namespaces, links and configs (and the controller, with
    /// `controlled`) without starting any agent: the caller adds what its
    /// lab needs around the mesh (uplinks, client and LAN namespaces, whose
    /// interfaces the agents' configs name), then calls
    /// [`NetnsMesh::start_agents`].
    pub fn prepare(
        tag: &str,
        topology: Topology,
        controlled: Option<ControlledOptions>,
    ) -> anyhow::Result<Self> {
        let mut lab = Lab::new(tag);
        for name in &topology.names {
            lab.add_namespace(name)?;
        }
        let underlay = VethUnderlay {
            links: topology.links.clone(),
        };
        for (k, &(a, b)) in topology.links.iter().enumerate() {
            let (na, nb) = (&topology.names[a], &topology.names[b]);
            lab.veth(
                na,
                &format!("to-{nb}"),
                &format!("{}/24", underlay.address(k, a)),
                nb,
                &format!("to-{na}"),
                &format!("{}/24", underlay.address(k, b)),
            )?;
        }
        let dir = tempfile::Builder::new().prefix("freimesh-lab-").tempdir()?;
        let (nodes, controller) = if let Some(options) = controlled {
            lab.add_namespace("ctl")?;
            for (i, name) in topology.names.iter().enumerate() {
                lab.veth(
                    "ctl",
                    &format!("m-{name}"),
                    &format!("172.30.{i}.1/24"),
                    name,
                    "mgmt",
                    &format!("172.30.{i}.2/24"),
                )?;
            }
            let init_extra: Vec<&str> = options.init_args.iter().map(String::as_str).collect();
            let controller = ControllerProcess::start_with_init(
                &dir.path().join("controller"),
                SocketAddr::from(([0, 0, 0, 0], CONTROLLER_PORT)),
                Some(SocketAddr::from(([127, 0, 0, 1], CONTROLLER_API_PORT))),
                Some(&lab.ns("ctl")),
                &init_extra,
            )?;
            let tokens = topology
                .names
                .iter()
                .enumerate()
                .map(|(i, _)| {
                    let prefixes = options.token_prefixes.get(&i).cloned().unwrap_or_default();
                    // The lab's operator approves exactly the roles its
                    // nodes are configured to request.
                    let extra = options.extra.get(&i).map(String::as_str).unwrap_or("");
                    let roles: Vec<&str> =
                        [("[gateway]", "gateway"), ("[public_wifi]", "public-wifi")]
                            .into_iter()
                            .filter(|(section, _)| extra.contains(section))
                            .map(|(_, role)| role)
                            .collect();
                    controller.token_with_roles(&prefixes, &roles)
                })
                .collect::<Result<Vec<_>, _>>()?;
            let last = topology.names.len() - 1;
            let fixed = move |i: usize| (i == 0 || i == last).then_some(CONTROLLED_FIXED_BASE + i);
            let endpoint = |i: usize| {
                SocketAddr::from((
                    [172, 30, u8::try_from(i).unwrap_or(u8::MAX), 1],
                    CONTROLLER_PORT,
                ))
            };
            let plan = ControllerPlan {
                endpoint: &endpoint,
                public_key: controller.public_key.clone(),
                tokens,
                fixed_address: &fixed,
            };
            let extra = |i: usize| options.extra.get(&i).cloned().unwrap_or_default();
            let nodes = mesh::write_controlled_configs(
                dir.path(),
                &topology,
                Backend::Linux,
                &underlay,
                &plan,
                &extra,
            )?;
            (nodes, Some(controller))
        } else {
            let nodes =
                mesh::write_configs(dir.path(), &topology, Backend::Linux, &underlay, &|_| {
                    String::new()
                })?;
            (nodes, None)
        };
        Ok(Self {
            agents: Vec::new(),
            nodes,
            topology,
            underlay,
            controller,
            lab,
            scratch: dir,
        })
    }

    /// Starts an agent in every node's namespace (after
    /// [`NetnsMesh::prepare`]) and waits until each is up.
    pub fn start_agents(&mut self) -> anyhow::Result<()> {
        for i in 0..self.nodes.len() {
            let agent = self.spawn(i)?;
            self.agents.push(Some(agent));
        }
        for i in 0..self.nodes.len() {
            self.wait_ready(i)?;
        }
        Ok(())
    }

    /// The lab's scratch directory (configs, logs, keys).
    pub fn dir(&self) -> &Path {
        self.scratch.path()
    }

    fn spawn(&self, node: usize) -> anyhow::Result<AgentProcess> {
        let n = &self.nodes[node];
        let _ = std::fs::remove_file(&n.socket);
        AgentProcess::start(&n.name, &n.config, &n.log, Some(&self.lab.ns(&n.name)))
    }

    fn wait_ready(&self, node: usize) -> anyhow::Result<()> {
        let n = &self.nodes[node];
        wait_for_path(&n.socket, Duration::from_secs(10))
            .with_context(|| format!("agent {} did not come up:\n{}", n.name, self.log(node)))
    }

    /// The agent's log so far (for failure messages).
    pub fn log(&self, node: usize) -> String {
        std::fs::read_to_string(&self.nodes[node].log).unwrap_or_default()
    }

    pub fn name(&self, node: usize) -> &str {
        &self.nodes[node].name
    }

    /// `ping` from `from`'s namespace to `to`'s overlay address; returns
    /// how many of `count` replies came back.
    pub fn ping(&self, from: usize, to: IpAddr, count: u32) -> anyhow::Result<u32> {
        let output = self.lab.try_exec(
            self.name(from),
            &[
                "ping",
                "-n",
                "-q",
                "-c",
                &count.to_string(),
                "-i",
                "0.2",
                "-W",
                "1",
                &to.to_string(),
            ],
        )?;
        parse_ping_received(&output)
    }

    /// Pings until one reply arrives or `timeout` passes.
    pub fn wait_reachable(&self, from: usize, to: IpAddr, timeout: Duration) -> anyhow::Result<()> {
        crate::traffic::retry(timeout, || match self.ping(from, to, 1)? {
            0 => bail!("{to} unreachable from {}", self.name(from)),
            _ => Ok(()),
        })
    }

    /// Stops an agent cleanly (SIGTERM).
    pub fn stop(&mut self, node: usize) -> anyhow::Result<()> {
        if let Some(agent) = self.agents[node].take() {
            agent
                .stop(Duration::from_secs(5))
                .with_context(|| self.log(node))?;
        }
        Ok(())
    }

    /// Kills an agent (SIGKILL), as a crash would.
    pub fn kill(&mut self, node: usize) {
        if let Some(agent) = self.agents[node].take() {
            agent.kill();
        }
    }

    /// Starts a stopped or killed agent again and waits for its socket.
    pub fn restart(&mut self, node: usize) -> anyhow::Result<()> {
        self.stop(node)?;
        let agent = self.spawn(node)?;
        self.agents[node] = Some(agent);
        self.wait_ready(node)
    }

    /// One admin API request from inside the controller's namespace
    /// (`freimesh-testbed api-call`, the testbed binary `testbed`): the
    /// JSON answer, or the error status and body.
    pub fn api_call(
        &self,
        testbed: &Path,
        token: &str,
        method: &str,
        path: &str,
    ) -> anyhow::Result<serde_json::Value> {
        let api = SocketAddr::from(([127, 0, 0, 1], CONTROLLER_API_PORT)).to_string();
        let testbed = testbed.to_string_lossy();
        let output = self.lab.try_exec(
            "ctl",
            &[
                &testbed, "api-call", "--api", &api, "--token", token, method, path,
            ],
        )?;
        if !output.status.success() {
            bail!(
                "{method} {path}: {}",
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        serde_json::from_slice(&output.stdout).with_context(|| format!("{method} {path}: not JSON"))
    }

    /// Runs a command in `node`'s namespace.
    pub fn exec(&self, node: usize, args: &[&str]) -> anyhow::Result<Output> {
        self.lab.exec(self.name(node), args)
    }

    pub fn config_path(&self, node: usize) -> &Path {
        &self.nodes[node].config
    }
}

/// Reads "N received" from ping's summary line.
pub fn parse_ping_received(output: &Output) -> anyhow::Result<u32> {
    let text = String::from_utf8_lossy(&output.stdout);
    text.lines()
        .find_map(|line| {
            let (_, rest) = line.split_once(" transmitted, ")?;
            rest.split_whitespace().next()?.parse().ok()
        })
        .with_context(|| format!("unexpected ping output: {text}"))
}
