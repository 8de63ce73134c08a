//! Tests of the topology and scenario parsers.

use super::*;

const DIAMOND: &str = r#"
    nodes = ["a", "b", "c", "d"]
    [[link]]
    nodes = ["a", "b"]
    [[link]]
    nodes = ["a", "c"]
    profile = "fast"
    cost = 11
    [[link]]
    nodes = ["b", "d"]
    [[link]]
    nodes = ["c", "d"]
    [[flow]]
    from = "a"
    to = "d"
"#;

fn err_topology(text: &str) -> String {
    format!(
        "{:#}",
        LabTopology::parse(text).expect_err("should be rejected")
    )
}

fn err_scenario(text: &str) -> String {
    let topo = LabTopology::parse(DIAMOND).expect("diamond parses");
    format!(
        "{:#}",
        Scenario::parse("t", text, &topo).expect_err("should be rejected")
    )
}

#[test]
fn topology_defaults_and_values() {
    let t = LabTopology::parse(DIAMOND).expect("parses");
    assert_eq!(t.topology.links, vec![(0, 1), (0, 2), (1, 3), (2, 3)]);
    assert_eq!(t.links[0].profile, "default");
    assert_eq!(t.links[0].cost, DEFAULT_COST);
    assert_eq!(t.links[1].profile, "fast");
    assert_eq!(t.links[1].cost, 11);
    assert_eq!(
        t.flows,
        vec![Flow {
            from: 0,
            to: 3,
            rate: 1000
        }]
    );
    assert_eq!(t.link_name(2), "b—d");
}

#[test]
fn bad_topologies_name_the_field() {
    let cases = [
        (DIAMOND.replace("\"fast\"", "\"warp\""), "link[1].profile"),
        (DIAMOND.replace("to = \"d\"", "to = \"x\""), "flow[0].to"),
        (
            DIAMOND.replace("nodes = [\"b\", \"d\"]", "nodes = [\"b\"]"),
            "link[2].nodes",
        ),
        (
            DIAMOND.replace("nodes = [\"c\", \"d\"]", "nodes = [\"d\", \"b\"]"),
            "link[3].nodes",
        ),
        (DIAMOND.replace("cost = 11", "cost = 0"), "link[1].cost"),
        (
            DIAMOND.replace("\"c\", \"d\"]\n", "\"c\", \"D\"]\n"),
            "nodes[3]",
        ),
        (DIAMOND.replace("cost = 11", "costs = 11"), "costs"),
        (
            DIAMOND.replace("to = \"d\"", "to = \"d\"\nrate = 0"),
            "flow[0].rate",
        ),
    ];
    for (text, field) in cases {
        let err = err_topology(&text);
        assert!(err.contains(field), "{field} not named in: {err}");
    }
}

#[test]
fn scenario_resolves_links_and_nodes() {
    let topo = LabTopology::parse(DIAMOND).expect("parses");
    let s = Scenario::parse(
        "s",
        r#"
        [[event]]
        at_ms = 2000
        action = "cut-silent"
        link = ["d", "b"]
        [[event]]
        at_ms = 3000
        action = "kill-node"
        node = "c"
        [[event]]
        at_ms = 5000
        action = "restore"
        link = ["b", "d"]
        [[event]]
        at_ms = 6000
        action = "restart-node"
        node = "c"
        [[event]]
        at_ms = 8000
        action = "end"
        "#,
        &topo,
    )
    .expect("parses");
    let actions: Vec<Action> = s.events.iter().map(|e| e.action).collect();
    assert_eq!(
        actions,
        vec![
            Action::CutSilent(2),
            Action::KillNode(2),
            Action::Restore(2),
            Action::RestartNode(2),
            Action::End
        ]
    );
    assert_eq!(s.end_ms(), 8000);
}

#[test]
fn bad_scenarios_name_the_field() {
    let ev = |at: u64, rest: &str| format!("[[event]]\nat_ms = {at}\n{rest}\n");
    let end = ev(9000, "action = \"end\"");
    let cases = [
        (
            ev(1, "action = \"cut-silent\"\nlink = [\"a\", \"d\"]") + &end,
            "event[0].link",
        ),
        (ev(1, "action = \"explode\"") + &end, "event[0].action"),
        (
            ev(1, "action = \"kill-node\"\nnode = \"q\"") + &end,
            "event[0].node",
        ),
        (
            ev(1, "action = \"restore\"\nlink = [\"a\", \"b\"]") + &end,
            "event[0].link",
        ),
        (
            ev(5, "action = \"kill-node\"\nnode = \"b\"")
                + &ev(4, "action = \"restart-node\"\nnode = \"b\"")
                + &end,
            "event[1].at_ms",
        ),
        (ev(1, "action = \"kill-node\"\nnode = \"b\""), "end"),
        (
            ev(1, "action = \"cut-carrier\"\nnode = \"b\"") + &end,
            "event[0].node",
        ),
        (ev(1, "action = \"end\"\nwhen = 3"), "when"),
    ];
    for (text, field) in cases {
        let err = err_scenario(&text);
        assert!(err.contains(field), "{field} not named in: {err}");
    }
}
