//! Whether the town is in a steady state: the controller has a route for
//! every pair of routers, and every router holds the routes the
//! controller computed for it:
//! the controller's admin API (`GET /nodes/{id}/routes`, read from inside
//! its namespace) against each agent's status. The town waits for this
//! before it kills the controller, so the headless restart starts from
//! state files of one moment (a router that restarts from an older
//! table than its neighbours disagrees with them about paths, and the
//! feasible-source rule drops what crosses the disagreement: see
//! `docs/benchmarks.md`, town).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

use super::net::Town;

/// Prints `{hostname: {prefix: [next hop hostnames]}}` for every node the
/// controller has routes for. Python because the lab process cannot
/// enter the controller's namespace without unsafe code.
const FETCH: &str = r#"
import json, sys, urllib.request
base, token = sys.argv[1], sys.argv[2]
def get(path):
    req = urllib.request.Request(base + path, headers={"Authorization": "Bearer " + token})
    with urllib.request.urlopen(req, timeout=5) as r:
        return json.load(r)
out = {}
for node in get("/api/v1/nodes"):
    routes = get("/api/v1/nodes/%d/routes" % node["id"])
    out[node["hostname"]] = {r["prefix"]: [v["hostname"] for v in r["via"]] for r in routes}
print(json.dumps(out))
"#;

/// Poll interval of [`wait_in_sync`].
const POLL: Duration = Duration::from_millis(500);

/// The controller's routes, by router name and prefix.
type Routes = BTreeMap<String, BTreeMap<String, Vec<String>>>;

fn controller_routes(town: &Town, api: &str, token: &str) -> anyhow::Result<Routes> {
    let out = town
        .lab
        .exec("ctl", &["python3", "-c", FETCH, api, token])
        .context("reading the controller's routes")?;
    serde_json::from_slice(&out.stdout).context("parsing the controller's routes")
}

/// Routes on which router and controller disagree, as
/// `"r3 fd99::5/128: agent [r1] controller [r1, r4]"`, for the routers
/// in `routers`, and pairs of them the controller has no route for.
/// Routes to a router's direct neighbours are not compared: discovery
/// keeps its own host routes to them.
pub fn differences(
    town: &Town,
    api: &str,
    token: &str,
    routers: &[usize],
) -> anyhow::Result<Vec<String>> {
    let wanted = controller_routes(town, api, token)?;
    let statuses: BTreeMap<usize, _> = routers
        .iter()
        .map(|i| Ok((*i, town.status(*i)?)))
        .collect::<anyhow::Result<_>>()?;
    let name_of_key: BTreeMap<&str, &str> = statuses
        .iter()
        .map(|(i, s)| (s.engine.public_key.as_str(), town.name(*i)))
        .collect();
    let owner_of_prefix: BTreeMap<String, &str> = statuses
        .iter()
        .flat_map(|(i, s)| s.addresses.iter().map(|a| (a.to_string(), town.name(*i))))
        .collect();
    let mut out = Vec::new();
    for (i, status) in &statuses {
        let name = town.name(*i);
        let Some(controller) = wanted.get(name) else {
            bail!("the controller has no routes for {name}");
        };
        let peer_of_link: BTreeMap<&str, &str> = status
            .engine
            .links
            .iter()
            .map(|l| {
                let peer = name_of_key.get(l.peer.as_str()).copied().unwrap_or("?");
                (l.name.as_str(), peer)
            })
            .collect();
        let neighbours: Vec<&str> = peer_of_link.values().copied().collect();
        let held: BTreeMap<String, Vec<String>> = status
            .engine
            .routes
            .iter()
            .map(|r| {
                let via = r
                    .via
                    .iter()
                    .map(|v| {
                        peer_of_link
                            .get(v.as_str())
                            .copied()
                            .unwrap_or(v)
                            .to_owned()
                    })
                    .collect();
                (r.prefix.to_string(), via)
            })
            .collect();
        // Steady state means every pair has a route: a router whose links
        // the controller holds down (a stale report still arriving after
        // a cut, say) has none, on either side.
        for (j, other) in &statuses {
            if j == i {
                continue;
            }
            for address in &other.addresses {
                if !controller.contains_key(&address.to_string()) {
                    out.push(format!(
                        "{name}: the controller has no route to {} ({address})",
                        town.name(*j)
                    ));
                }
            }
        }
        for (prefix, via) in controller {
            let Some(owner) = owner_of_prefix.get(prefix) else {
                continue;
            };
            if neighbours.contains(owner) {
                continue;
            }
            let agent = held.get(prefix);
            if agent != Some(via) {
                out.push(format!(
                    "{name} {prefix}: agent {agent:?} controller {via:?}"
                ));
            }
        }
    }
    Ok(out)
}

/// Waits until [`differences`] finds none; returns how long that took.
pub fn wait_in_sync(
    town: &Town,
    api: &str,
    token: &str,
    routers: &[usize],
    timeout: Duration,
) -> anyhow::Result<Duration> {
    let start = Instant::now();
    loop {
        let left = differences(town, api, token, routers)?;
        if left.is_empty() {
            return Ok(start.elapsed());
        }
        if start.elapsed() > timeout || crate::failover::runner::interrupted() {
            bail!(
                "{} routes still differ from the controller's after {timeout:?}: {}",
                left.len(),
                left.iter().take(8).cloned().collect::<Vec<_>>().join("; ")
            );
        }
        std::thread::sleep(POLL);
    }
}
