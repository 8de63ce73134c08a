//! The failover lab's two input files, documented in `docs/testbed.md`:
//! a **topology** (nodes, links with a freimesh profile and a metric, probe
//! flows) and a **scenario** (timed events). Both are read in two steps,
//! like the agent's config: serde reads raw tables (unknown keys are
//! errors), then every value is checked and errors name the field
//! (`link[2].nodes`, `event[1].link`).

use std::path::Path;

use anyhow::{Context as _, bail};
use serde::Deserialize;

use crate::topology::Topology;

/// The profiles the agent accepts (`freimesh_agent::config::PROFILES`).
pub const PROFILES: [&str; 3] = ["fast", "default", "metered"];
/// Probe rate when a flow does not say: 1 kHz, one packet per millisecond,
/// so a gap in ms is also the number of packets it swallowed.
pub const DEFAULT_RATE: u32 = 1000;
/// Metric of a link that does not say (babeld rxcost = 10 × cost, OSPF cost).
pub const DEFAULT_COST: u32 = 10;
/// Interfaces are named `to-<peer>`: 15 bytes (IFNAMSIZ − 1) minus `to-`.
const MAX_NAME_LEN: usize = 12;
/// Overlay addresses are `10.99.0.<n+1>`, underlay subnets `172.31.<k>.0/24`.
const MAX_NODES: usize = 250;
const MAX_LINKS: usize = 250;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTopology {
    nodes: Vec<String>,
    #[serde(default)]
    link: Vec<RawLink>,
    #[serde(default)]
    flow: Vec<RawFlow>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLink {
    nodes: Vec<String>,
    profile: Option<String>,
    cost: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFlow {
    from: String,
    to: String,
    rate: Option<u32>,
}

/// One link of a lab topology.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkSpec {
    pub a: usize,
    pub b: usize,
    /// freimesh link profile on both ends.
    pub profile: String,
    /// Metric for babeld and OSPF (freimesh's static routes count hops).
    pub cost: u32,
}

/// One probe flow: UDP from `from`'s overlay address to `to`'s.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flow {
    pub from: usize,
    pub to: usize,
    /// Packets per second.
    pub rate: u32,
}

/// A checked topology file.
#[derive(Debug, Clone)]
pub struct LabTopology {
    /// Node names and links as pairs, in file order (link `k` = `link[k]`).
    pub topology: Topology,
    pub links: Vec<LinkSpec>,
    pub flows: Vec<Flow>,
}

impl LabTopology {
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        Self::parse(&text).with_context(|| path.display().to_string())
    }

    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let raw: RawTopology = toml::from_str(text).map_err(|e| anyhow::anyhow!("{e}"))?;
        if raw.nodes.is_empty() || raw.nodes.len() > MAX_NODES {
            bail!(
                "nodes: between 1 and {MAX_NODES} nodes, got {}",
                raw.nodes.len()
            );
        }
        for (i, name) in raw.nodes.iter().enumerate() {
            let ok = !name.is_empty()
                && name.len() <= MAX_NAME_LEN
                && name.starts_with(|c: char| c.is_ascii_lowercase())
                && name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
            if !ok {
                bail!(
                    "nodes[{i}]: {name:?} is not a node name (a–z then a–z/0–9, at most {MAX_NAME_LEN} characters)"
                );
            }
            if raw.nodes[..i].contains(name) {
                bail!("nodes[{i}]: {name:?} is listed twice");
            }
        }
        let names = raw.nodes;
        let index = |field: &str, name: &str| {
            names
                .iter()
                .position(|n| n == name)
                .with_context(|| format!("{field}: {name:?} is not in nodes"))
        };
        if raw.link.len() > MAX_LINKS {
            bail!("link: at most {MAX_LINKS} links, got {}", raw.link.len());
        }
        let mut links: Vec<LinkSpec> = Vec::new();
        for (k, link) in raw.link.iter().enumerate() {
            let field = format!("link[{k}].nodes");
            let [a, b] = link.nodes.as_slice() else {
                bail!("{field}: a link joins two nodes, got {}", link.nodes.len());
            };
            let (a, b) = (index(&field, a)?, index(&field, b)?);
            if a == b {
                bail!("{field}: a link joins two different nodes");
            }
            if links
                .iter()
                .any(|l| (l.a, l.b) == (a, b) || (l.a, l.b) == (b, a))
            {
                bail!("{field}: {}—{} is listed twice", names[a], names[b]);
            }
            let profile = link.profile.clone().unwrap_or_else(|| "default".into());
            if !PROFILES.contains(&profile.as_str()) {
                bail!(
                    "link[{k}].profile: unknown profile {profile:?}; known: {}",
                    PROFILES.join(", ")
                );
            }
            let cost = link.cost.unwrap_or(DEFAULT_COST);
            if !(1..=1000).contains(&cost) {
                bail!("link[{k}].cost: between 1 and 1000, got {cost}");
            }
            links.push(LinkSpec {
                a,
                b,
                profile,
                cost,
            });
        }
        let mut flows = Vec::new();
        for (i, flow) in raw.flow.iter().enumerate() {
            let from = index(&format!("flow[{i}].from"), &flow.from)?;
            let to = index(&format!("flow[{i}].to"), &flow.to)?;
            if from == to {
                bail!("flow[{i}].to: a flow needs two different nodes");
            }
            let rate = flow.rate.unwrap_or(DEFAULT_RATE);
            if !(1..=10_000).contains(&rate) {
                bail!("flow[{i}].rate: between 1 and 10000 packets per second, got {rate}");
            }
            flows.push(Flow { from, to, rate });
        }
        let topology = Topology {
            names,
            links: links.iter().map(|l| (l.a, l.b)).collect(),
        };
        for (i, flow) in flows.iter().enumerate() {
            if topology.distances_to(flow.to)[flow.from].is_none() {
                bail!(
                    "flow[{i}]: no path from {} to {}",
                    topology.names[flow.from],
                    topology.names[flow.to]
                );
            }
        }
        Ok(Self {
            topology,
            links,
            flows,
        })
    }

    pub fn name(&self, node: usize) -> &str {
        &self.topology.names[node]
    }

    /// `b—d`.
    pub fn link_name(&self, k: usize) -> String {
        format!(
            "{}—{}",
            self.name(self.links[k].a),
            self.name(self.links[k].b)
        )
    }

    fn link_index(&self, field: &str, nodes: &[String]) -> anyhow::Result<usize> {
        let [a, b] = nodes else {
            bail!("{field}: a link is two node names, got {}", nodes.len());
        };
        self.links
            .iter()
            .position(|l| {
                let (x, y) = (self.name(l.a), self.name(l.b));
                (x, y) == (a, b) || (x, y) == (b, a)
            })
            .with_context(|| format!("{field}: the topology has no link {a}—{b}"))
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScenario {
    #[serde(default)]
    description: String,
    event: Vec<RawEvent>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEvent {
    at_ms: u64,
    action: String,
    link: Option<Vec<String>>,
    node: Option<String>,
}

/// What happens at an event; links and nodes are indices into the
/// topology.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// nftables netdev ingress drop on both ends; carrier stays up.
    CutSilent(usize),
    /// `ip link set down` on the link's first end: both ends lose carrier.
    CutCarrier(usize),
    /// Undoes either cut.
    Restore(usize),
    /// SIGKILL the routing daemon and drop everything on the node's links.
    KillNode(usize),
    /// Remove the drop and start the daemon again.
    RestartNode(usize),
    /// Stop the probe flows; the report ends here.
    End,
}

impl Action {
    /// Whether this event breaks something (its window is a failover).
    pub fn is_failure(self) -> bool {
        matches!(
            self,
            Self::CutSilent(_) | Self::CutCarrier(_) | Self::KillNode(_)
        )
    }

    /// `cut-silent b—d`, as in reports.
    pub fn describe(self, topo: &LabTopology) -> String {
        match self {
            Self::CutSilent(k) => format!("cut-silent {}", topo.link_name(k)),
            Self::CutCarrier(k) => format!("cut-carrier {}", topo.link_name(k)),
            Self::Restore(k) => format!("restore {}", topo.link_name(k)),
            Self::KillNode(n) => format!("kill-node {}", topo.name(n)),
            Self::RestartNode(n) => format!("restart-node {}", topo.name(n)),
            Self::End => "end".into(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Event {
    /// Milliseconds after the probe flows start.
    pub at_ms: u64,
    pub action: Action,
}

/// A checked scenario: events in time order, the last one `end`.
#[derive(Debug, Clone)]
pub struct Scenario {
    pub name: String,
    pub description: String,
    pub events: Vec<Event>,
}

impl Scenario {
    /// Reads `path` and checks it against `topo`; the scenario is named
    /// after the file.
    pub fn load(path: &Path, topo: &LabTopology) -> anyhow::Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        Self::parse(&name, &text, topo).with_context(|| path.display().to_string())
    }

    pub fn parse(name: &str, text: &str, topo: &LabTopology) -> anyhow::Result<Self> {
        let raw: RawScenario = toml::from_str(text).map_err(|e| anyhow::anyhow!("{e}"))?;
        let mut events = Vec::new();
        let mut cut = vec![false; topo.links.len()];
        let mut down = vec![false; topo.topology.names.len()];
        let mut last_at = 0;
        for (i, ev) in raw.event.iter().enumerate() {
            if ev.at_ms < last_at {
                bail!(
                    "event[{i}].at_ms: {} is before the previous event ({last_at}); list events in time order",
                    ev.at_ms
                );
            }
            last_at = ev.at_ms;
            if events
                .last()
                .is_some_and(|e: &Event| e.action == Action::End)
            {
                bail!("event[{i}]: nothing may follow \"end\"");
            }
            let link = || -> anyhow::Result<usize> {
                if ev.node.is_some() {
                    bail!("event[{i}].node: {:?} takes a link, not a node", ev.action);
                }
                let nodes = ev.link.as_deref().with_context(|| {
                    format!(
                        "event[{i}].link: {:?} needs link = [\"x\", \"y\"]",
                        ev.action
                    )
                })?;
                topo.link_index(&format!("event[{i}].link"), nodes)
            };
            let node = || -> anyhow::Result<usize> {
                if ev.link.is_some() {
                    bail!("event[{i}].link: {:?} takes a node, not a link", ev.action);
                }
                let name = ev.node.as_deref().with_context(|| {
                    format!("event[{i}].node: {:?} needs node = \"x\"", ev.action)
                })?;
                topo.topology
                    .names
                    .iter()
                    .position(|n| n == name)
                    .with_context(|| format!("event[{i}].node: {name:?} is not in the topology"))
            };
            let action = match ev.action.as_str() {
                "cut-silent" | "cut-carrier" => {
                    let k = link()?;
                    if std::mem::replace(&mut cut[k], true) {
                        bail!("event[{i}].link: {} is already cut", topo.link_name(k));
                    }
                    if ev.action == "cut-silent" {
                        Action::CutSilent(k)
                    } else {
                        Action::CutCarrier(k)
                    }
                }
                "restore" => {
                    let k = link()?;
                    if !std::mem::replace(&mut cut[k], false) {
                        bail!("event[{i}].link: {} is not cut", topo.link_name(k));
                    }
                    Action::Restore(k)
                }
                "kill-node" => {
                    let n = node()?;
                    if std::mem::replace(&mut down[n], true) {
                        bail!("event[{i}].node: {} is already killed", topo.name(n));
                    }
                    Action::KillNode(n)
                }
                "restart-node" => {
                    let n = node()?;
                    if !std::mem::replace(&mut down[n], false) {
                        bail!("event[{i}].node: {} is not killed", topo.name(n));
                    }
                    Action::RestartNode(n)
                }
                "end" => {
                    if ev.link.is_some() || ev.node.is_some() {
                        bail!("event[{i}]: \"end\" takes neither link nor node");
                    }
                    Action::End
                }
                other => bail!(
                    "event[{i}].action: unknown action {other:?}; known: cut-silent, cut-carrier, restore, kill-node, restart-node, end"
                ),
            };
            events.push(Event {
                at_ms: ev.at_ms,
                action,
            });
        }
        if events.last().map(|e| e.action) != Some(Action::End) {
            bail!("event: the last event must be \"end\" (when the probe flows stop)");
        }
        Ok(Self {
            name: name.to_owned(),
            description: raw.description,
            events,
        })
    }

    /// When the probe flows stop.
    pub fn end_ms(&self) -> u64 {
        self.events.last().map_or(0, |e| e.at_ms)
    }
}

#[cfg(test)]
#[path = "files_tests.rs"]
mod tests;
