//! The admin API's JSON vocabulary (`docs/api.md`): what the controller's
//! HTTP API serves and the terminal UI (or any script) reads.
//!
//! The types are plain data with serde derives; field names are the JSON
//! keys. Times are Unix epoch milliseconds (`*_ms`) so a client never
//! guesses a time zone; durations carry their unit in the name. Node ids are
//! the controller's registry ids (`u32`), the same numbers the CLI prints.
//!
//! Adding a field is compatible (clients ignore unknown keys; new optional
//! fields default); renaming or removing one needs a new API prefix.

use std::net::SocketAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

pub use crate::segment::Segment;

/// Every endpoint lives under this prefix.
pub const API_PREFIX: &str = "/api/v1";
/// The request header carrying the operator token: `Authorization: Bearer <token>`.
pub const AUTH_SCHEME: &str = "Bearer";

/// `GET /api/v1/overview`: the fleet at a glance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Overview {
    pub mesh: MeshInfo,
    pub nodes_total: u32,
    pub nodes_online: u32,
    pub nodes_pending: u32,
    pub nodes_drained: u32,
    pub links_total: u32,
    pub links_up: u32,
    pub gateways_total: u32,
    pub gateways_up: u32,
    /// Failovers reported by agents since the controller started.
    pub failovers_total: u64,
    /// Things an operator should look at, most severe first.
    pub alerts: Vec<Alert>,
    /// The newest failover events, newest first (at most 10).
    pub recent_failovers: Vec<Event>,
    pub controller: ControllerInfo,
}

/// The mesh's address plan and enrolment mode.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MeshInfo {
    pub ula: IpNet,
    pub ipv4: IpNet,
    /// Nodes without a token wait for an operator's approval.
    pub approval: bool,
}

/// The controller process itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ControllerInfo {
    pub version: String,
    pub started_at_ms: i64,
    /// Agents currently connected over the control channel.
    pub sessions: u32,
    /// How long the last route computation took.
    pub last_computation_us: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Critical,
    Warning,
    Info,
}

/// Something wrong with the fleet, in words, with what it concerns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Alert {
    pub severity: Severity,
    /// Stable machine-readable kind: `node-offline`, `link-down`,
    /// `node-pending`, `single-point-of-failure`, `gateway-down`,
    /// `role-awaits-approval`.
    pub kind: String,
    pub node: Option<u32>,
    pub peer: Option<u32>,
    /// One line in English; clients may translate by `kind`.
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeState {
    Pending,
    Active,
    Revoked,
}

/// `GET /api/v1/nodes` (a list) and part of `GET /api/v1/nodes/{id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node {
    pub id: u32,
    /// The short stable identity derived from the key (`NodeId`).
    pub node_id: String,
    /// WireGuard public key, base64.
    pub public_key: String,
    pub hostname: String,
    pub state: NodeState,
    /// Connected to the controller right now.
    pub online: bool,
    pub drained: bool,
    pub gateway: bool,
    /// Overlay host prefixes (/128, /32).
    pub addresses: Vec<IpNet>,
    /// Approved prefixes (e.g. a building's LAN).
    pub prefixes: Vec<IpNet>,
    pub endpoints: Vec<SocketAddr>,
    pub links_up: u32,
    pub links_total: u32,
    /// Last time the node was connected (now, if online); `None` if never.
    pub last_seen_ms: Option<i64>,
    /// Serves public Wi-Fi clients.
    #[serde(default)]
    pub public_wifi: bool,
    /// A public Wi-Fi node's client /64 and IPv4 subnet.
    #[serde(default)]
    pub client_prefixes: Vec<IpNet>,
    /// Public Wi-Fi clients holding a lease, as the node last reported
    /// (a count only: no client identifier ever leaves a router).
    #[serde(default)]
    pub clients: Option<u32>,
    /// Roles the node asks for in its Hello. `gateway` and `public_wifi`
    /// above are the roles in effect: requested and approved.
    #[serde(default)]
    pub roles_requested: Vec<Role>,
    /// Roles an operator approved for the node (`role approve`, a join
    /// token's `roles`); they take effect once the node requests them.
    #[serde(default)]
    pub roles_approved: Vec<Role>,
    /// What the node reported about itself (issue 15), and when (boxed:
    /// most code handling nodes never looks at it).
    #[serde(default)]
    pub telemetry: Box<NodeTelemetry>,
}

/// A node's fleet telemetry as the controller keeps it: the newest
/// `NodeInfo` and `Statistics` the node sent (`docs/protocol.md`), its
/// enrolment time and its boot time by the controller's clock. The
/// contact is in here even when not shared: the admin API is for
/// operators; only public exports honour `share_contact`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct NodeTelemetry {
    /// When the node enrolled (its first Hello with a join token).
    #[serde(default)]
    pub first_seen_ms: Option<i64>,
    #[serde(default)]
    pub info: Option<crate::telemetry::NodeInfo>,
    /// When the node last sent `info`.
    #[serde(default)]
    pub info_at_ms: Option<i64>,
    #[serde(default)]
    pub stats: Option<crate::telemetry::Statistics>,
    /// When the node last sent `stats`.
    #[serde(default)]
    pub stats_at_ms: Option<i64>,
    /// `stats_at_ms − uptime`: when the node booted, by the controller's
    /// clock (a router's own clock may be wrong before NTP).
    #[serde(default)]
    pub boot_time_ms: Option<i64>,
}

/// A role a node can ask for and an operator approves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// Offers its uplink: default routes may point toward it.
    Gateway,
    /// Serves public Wi-Fi: gets a client /64 and IPv4 subnet.
    PublicWifi,
}

impl Role {
    pub const ALL: [Role; 2] = [Role::Gateway, Role::PublicWifi];

    /// The name in JSON, on the command line and in the store.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Gateway => "gateway",
            Role::PublicWifi => "public-wifi",
        }
    }

    /// Is this role set in `roles`?
    pub fn is_in(self, roles: &crate::control::Roles) -> bool {
        match self {
            Role::Gateway => roles.gateway,
            Role::PublicWifi => roles.public_wifi,
        }
    }

    /// Sets or clears this role in `roles`.
    pub fn set_in(self, roles: &mut crate::control::Roles, on: bool) {
        match self {
            Role::Gateway => roles.gateway = on,
            Role::PublicWifi => roles.public_wifi = on,
        }
    }

    /// The roles set in `roles`, in [`Role::ALL`] order.
    pub fn list(roles: &crate::control::Roles) -> Vec<Role> {
        Self::ALL.into_iter().filter(|r| r.is_in(roles)).collect()
    }

    /// The [`crate::control::Roles`] with exactly `roles` set.
    pub fn to_roles(roles: &[Role]) -> crate::control::Roles {
        let mut out = crate::control::Roles::default();
        for r in roles {
            r.set_in(&mut out, true);
        }
        out
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A role name that is neither `gateway` nor `public-wifi`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown role {0:?} (roles: gateway, public-wifi)")]
pub struct UnknownRole(pub String);

impl std::str::FromStr for Role {
    type Err = UnknownRole;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "gateway" => Ok(Role::Gateway),
            "public-wifi" | "public_wifi" => Ok(Role::PublicWifi),
            other => Err(UnknownRole(other.to_owned())),
        }
    }
}

/// `POST /api/v1/nodes/{id}/roles` body: approve or revoke one role.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoleChange {
    pub role: Role,
    /// `true` approves the role, `false` revokes the approval.
    pub approved: bool,
}

/// `GET /api/v1/nodes/{id}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeDetail {
    pub node: Node,
    pub links: Vec<Link>,
    pub routes: Vec<Route>,
    /// Bytes through the node's links as it last reported them.
    pub traffic: Vec<LinkTraffic>,
    /// The node's newest events, newest first.
    pub events: Vec<Event>,
}

/// One end's view of a link: the far node and what crossed the link.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkTraffic {
    pub peer: u32,
    pub tx_bytes: u64,
    pub rx_bytes: u64,
    /// When the node reported these counters.
    pub reported_at_ms: i64,
}

/// `GET /api/v1/links`: a link between two nodes (`a < b`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Link {
    pub a: u32,
    pub b: u32,
    pub a_hostname: String,
    pub b_hostname: String,
    pub up: bool,
    pub rtt_us: Option<u32>,
    pub loss_ppm: Option<u32>,
    /// The routing metric in use (measured or the operator's override).
    pub metric: u32,
    pub override_cost: Option<u32>,
    /// The last measurements, oldest first (for sparklines); at most 60.
    pub rtt_history_us: Vec<u32>,
    pub loss_history_ppm: Vec<u32>,
}

/// A route on one node: destination prefix, primary next hop, then the
/// loop-free alternates in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    pub prefix: IpNet,
    /// The node that owns the prefix.
    pub destination: u32,
    pub destination_hostname: String,
    /// Next hops, primary first (node ids of neighbours).
    pub via: Vec<Hop>,
    /// Total metric along the primary path.
    pub metric: Option<u32>,
    /// The destination's routing domain.
    pub segment: Segment,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hop {
    pub node: u32,
    pub hostname: String,
}

/// `GET /api/v1/gateways`: nodes with an uplink to the internet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Gateway {
    pub node: u32,
    pub hostname: String,
    pub online: bool,
    /// The uplink check against the far side; `None` until reported.
    pub uplink_up: Option<bool>,
}

/// `GET /api/v1/sites`: a standard WireGuard site (a building that cannot
/// run the agent) joined through a freimesh node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Site {
    pub name: String,
    /// The node the site's tunnel ends on.
    pub via: u32,
    pub via_hostname: String,
    /// The site's WireGuard public key, base64.
    pub public_key: String,
    /// The site's overlay address (/32) and its LAN prefixes.
    pub addresses: Vec<IpNet>,
    pub prefixes: Vec<IpNet>,
}

/// `GET /api/v1/tokens`: a join token as stored (its value is never shown
/// again after creation; `id` is the first 8 bytes of its hash in hex).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Token {
    pub id: String,
    pub created_at_ms: i64,
    pub expires_at_ms: i64,
    pub used_at_ms: Option<i64>,
    pub used_by: Option<u32>,
    pub prefixes: Vec<IpNet>,
    /// Roles approved for whoever enrols with the token.
    #[serde(default)]
    pub roles: Vec<Role>,
}

/// `POST /api/v1/tokens` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateToken {
    /// Lifetime like `30m`, `24h`, `7d`.
    pub ttl: String,
    /// Prefixes approved for whoever enrols with the token.
    #[serde(default)]
    pub prefixes: Vec<IpNet>,
    /// Roles approved for whoever enrols with the token.
    #[serde(default)]
    pub roles: Vec<Role>,
}

/// `POST /api/v1/tokens` answer: the only time the token's value is shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreatedToken {
    pub token: String,
    pub id: String,
    pub expires_at_ms: i64,
}

/// Why a link went down, as the agent that saw it says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DownCause {
    /// Heartbeats stopped (silent loss, crashed neighbour).
    Silence,
    /// The underlay interface lost carrier.
    Carrier,
    /// The neighbour said it no longer hears us.
    Neighbour,
    /// WireGuard's own timers gave up (links without heartbeats).
    Wireguard,
    /// The link was removed by configuration or the controller.
    Removed,
}

/// What happened. Tagged by `kind` in JSON:
/// `{"kind":"failover","node":3,"peer":4,...}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum EventKind {
    /// The controller learned that a link works again.
    LinkUp {
        a: u32,
        b: u32,
    },
    /// The controller learned that a link is down.
    LinkDown {
        a: u32,
        b: u32,
    },
    /// An agent lost a link and switched its traffic to the alternates
    /// itself, before any controller was involved.
    Failover {
        node: u32,
        peer: u32,
        cause: DownCause,
        /// From the last sign of life to the decision (0 for carrier loss
        /// seen directly).
        detection_ms: u32,
        /// How long the agent took to switch its forwarding table.
        switch_us: u32,
        /// Prefixes moved to an alternate next hop.
        rerouted: u32,
        /// Prefixes left with no live path (withdrawn from neighbours).
        lost: u32,
    },
    Enrolled {
        node: u32,
        hostname: String,
    },
    Approved {
        node: u32,
    },
    Revoked {
        node: u32,
    },
    Drained {
        node: u32,
    },
    Undrained {
        node: u32,
    },
    Connected {
        node: u32,
    },
    Disconnected {
        node: u32,
    },
    TokenCreated {
        id: String,
    },
    /// A gateway reported its uplink working again (v4).
    UplinkUp {
        node: u32,
    },
    /// A gateway reported its uplink failed: its default routes moved to
    /// other gateways (v4).
    UplinkDown {
        node: u32,
    },
    /// A standard WireGuard site was added behind node `via` (v4).
    SiteAdded {
        name: String,
        via: u32,
    },
    SiteRemoved {
        name: String,
    },
    /// A node asks for a role no operator approved for it: it stays an
    /// ordinary node until `role approve`.
    RoleAwaitsApproval {
        node: u32,
        role: Role,
    },
    /// An operator approved a role for a node.
    RoleApproved {
        node: u32,
        role: Role,
    },
    /// An operator withdrew a role's approval.
    RoleRevoked {
        node: u32,
        role: Role,
    },
    /// The two ends of a link measured wildly different RTTs; the larger
    /// is used. `node` is the end that claimed the smaller one.
    LinkDisputed {
        a: u32,
        b: u32,
        node: u32,
        rtt_us: u32,
        other_rtt_us: u32,
    },
    /// An operator of the admin API was added (`scope`: `read` or `full`).
    OperatorAdded {
        name: String,
        scope: String,
        /// When its token stops working; `None`: never.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        expires_at_ms: Option<i64>,
    },
    /// An operator was removed: its token and event streams end.
    OperatorRemoved {
        name: String,
    },
    /// A node reported another agent version than before (issue 15).
    AgentVersionChanged {
        node: u32,
        from: String,
        to: String,
    },
    /// A node's boot time moved: it rebooted (issue 15).
    Rebooted {
        node: u32,
        boot_time_ms: i64,
    },
}

impl EventKind {
    /// Is this an audit event: a change of who belongs to the mesh or who
    /// may operate it? Audit events are also kept in the audit log
    /// (`GET /api/v1/audit`), which is never pruned. Every kind is listed
    /// on purpose, without a wildcard: a new kind must be classified.
    pub fn is_audit(&self) -> bool {
        match self {
            Self::Enrolled { .. }
            | Self::Approved { .. }
            | Self::Revoked { .. }
            | Self::TokenCreated { .. }
            | Self::OperatorAdded { .. }
            | Self::OperatorRemoved { .. }
            | Self::RoleAwaitsApproval { .. }
            | Self::RoleApproved { .. }
            | Self::RoleRevoked { .. } => true,
            Self::LinkUp { .. }
            | Self::LinkDown { .. }
            | Self::Failover { .. }
            | Self::Drained { .. }
            | Self::Undrained { .. }
            | Self::Connected { .. }
            | Self::Disconnected { .. }
            | Self::UplinkUp { .. }
            | Self::UplinkDown { .. }
            | Self::SiteAdded { .. }
            | Self::SiteRemoved { .. }
            | Self::LinkDisputed { .. }
            | Self::AgentVersionChanged { .. }
            | Self::Rebooted { .. } => false,
        }
    }
}

/// One event. `seq` grows by one per event, so a client that reconnects
/// to the stream asks for `?since=<last seq>` and misses nothing that is
/// still in the controller's history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub seq: u64,
    pub at_ms: i64,
    #[serde(flatten)]
    pub kind: EventKind,
    /// The operator who caused it: an admin API operator's name, `cli` for
    /// the command line; absent for what nodes and the controller did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operator: Option<String>,
}

/// `GET /api/v1/redundancy`: what a single failure would cut off.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Redundancy {
    /// Nodes whose failure disconnects others (articulation points).
    pub nodes: Vec<CutNode>,
    /// Links whose failure disconnects nodes (bridges).
    pub links: Vec<CutLink>,
}

/// A node whose failure would cut off others from the largest remaining
/// part of the mesh.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CutNode {
    pub node: u32,
    pub hostname: String,
    /// The nodes that would be cut off (not counting the failed one).
    pub cuts_off: Vec<u32>,
    /// Approved prefixes (buildings) of the nodes cut off.
    pub prefixes_cut: Vec<IpNet>,
}

/// A link whose failure would cut the mesh in two.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CutLink {
    pub a: u32,
    pub b: u32,
    /// The nodes on the smaller side.
    pub cuts_off: Vec<u32>,
    pub prefixes_cut: Vec<IpNet>,
}

/// Every 4xx/5xx answer's body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiError {
    /// Machine-readable: `unauthorized`, `forbidden`, `not-found`,
    /// `bad-request`, `conflict`, `internal`.
    pub error: String,
    /// What went wrong, for a human.
    pub message: String,
}

/// `POST /api/v1/nodes/{id}/{action}` answer: the node after the action.
pub type ActionResult = Node;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_tagged_by_kind_and_round_trip() {
        let event = Event {
            seq: 7,
            at_ms: 1_700_000_000_000,
            kind: EventKind::Failover {
                node: 3,
                peer: 4,
                cause: DownCause::Silence,
                detection_ms: 150,
                switch_us: 12,
                rerouted: 5,
                lost: 0,
            },
            operator: None,
        };
        let json = serde_json::to_string(&event).expect("serialises");
        assert!(
            !json.contains("operator"),
            "absent operator stays absent: {json}"
        );
        assert!(json.contains(r#""kind":"failover""#), "{json}");
        assert!(json.contains(r#""cause":"silence""#), "{json}");
        let back: Event = serde_json::from_str(&json).expect("parses");
        assert_eq!(back, event);
    }

    #[test]
    fn an_acting_operator_round_trips_and_old_events_parse_without_one() {
        let event = Event {
            seq: 8,
            at_ms: 1,
            kind: EventKind::Approved { node: 4 },
            operator: Some("city-it".into()),
        };
        let json = serde_json::to_string(&event).expect("serialises");
        assert!(json.contains(r#""operator":"city-it""#), "{json}");
        assert_eq!(serde_json::from_str::<Event>(&json).expect("parses"), event);
        let old = r#"{"seq":1,"at_ms":0,"kind":"approved","node":4}"#;
        assert_eq!(
            serde_json::from_str::<Event>(old).expect("parses").operator,
            None
        );
    }

    #[test]
    fn membership_and_operator_changes_are_audit_events_failovers_are_not() {
        assert!(
            EventKind::Enrolled {
                node: 1,
                hostname: "a".into()
            }
            .is_audit()
        );
        assert!(EventKind::Revoked { node: 1 }.is_audit());
        assert!(EventKind::OperatorRemoved { name: "x".into() }.is_audit());
        assert!(EventKind::TokenCreated { id: "ab".into() }.is_audit());
        assert!(!EventKind::Connected { node: 1 }.is_audit());
        assert!(!EventKind::LinkDown { a: 1, b: 2 }.is_audit());
    }

    #[test]
    fn unknown_event_kinds_are_an_error_not_a_panic() {
        let json = r#"{"seq":1,"at_ms":0,"kind":"meteor-strike"}"#;
        assert!(serde_json::from_str::<Event>(json).is_err());
    }
}
