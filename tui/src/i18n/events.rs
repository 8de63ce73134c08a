//! Events in words, in both languages (split from `i18n.rs` for size).

use freimesh_proto::api::EventKind;

use super::{Lang, cause, role_name};

/// One event in words; `name` turns a node id into its hostname.
pub fn event(lang: Lang, kind: &EventKind, name: &dyn Fn(u32) -> String) -> String {
    use EventKind as K;
    match (lang, kind) {
        (Lang::En, K::LinkUp { a, b }) => format!("link {} – {} up", name(*a), name(*b)),
        (Lang::De, K::LinkUp { a, b }) => format!("Verbindung {} – {} aktiv", name(*a), name(*b)),
        (Lang::En, K::LinkDown { a, b }) => format!("link {} – {} down", name(*a), name(*b)),
        (Lang::De, K::LinkDown { a, b }) => {
            format!("Verbindung {} – {} ausgefallen", name(*a), name(*b))
        }
        (
            _,
            K::Failover {
                node,
                peer,
                cause: why,
                detection_ms,
                switch_us,
                rerouted,
                lost,
            },
        ) => match lang {
            Lang::En => format!(
                "failover on {} away from {} ({}): detected in {detection_ms} ms, switched in {switch_us} µs, {rerouted} rerouted, {lost} lost",
                name(*node),
                name(*peer),
                cause(lang, *why)
            ),
            Lang::De => format!(
                "Umschaltung auf {} weg von {} ({}): erkannt in {detection_ms} ms, umgeschaltet in {switch_us} µs, {rerouted} umgeleitet, {lost} verloren",
                name(*node),
                name(*peer),
                cause(lang, *why)
            ),
        },
        (Lang::En, K::Enrolled { node, hostname }) => format!("{hostname} (#{node}) enrolled"),
        (Lang::De, K::Enrolled { node, hostname }) => format!("{hostname} (#{node}) angemeldet"),
        (Lang::En, K::Approved { node }) => format!("{} approved", name(*node)),
        (Lang::De, K::Approved { node }) => format!("{} freigegeben", name(*node)),
        (Lang::En, K::Revoked { node }) => format!("{} revoked", name(*node)),
        (Lang::De, K::Revoked { node }) => format!("{} gesperrt", name(*node)),
        (Lang::En, K::Drained { node }) => format!("{} drained", name(*node)),
        (Lang::De, K::Drained { node }) => format!("{} entlastet", name(*node)),
        (Lang::En, K::Undrained { node }) => format!("{} undrained", name(*node)),
        (Lang::De, K::Undrained { node }) => format!("Entlastung von {} aufgehoben", name(*node)),
        (Lang::En, K::Connected { node }) => format!("{} connected", name(*node)),
        (Lang::De, K::Connected { node }) => format!("{} verbunden", name(*node)),
        (Lang::En, K::Disconnected { node }) => format!("{} disconnected", name(*node)),
        (Lang::De, K::Disconnected { node }) => format!("{} getrennt", name(*node)),
        (Lang::En, K::TokenCreated { id }) => format!("join token {id} created"),
        (Lang::De, K::TokenCreated { id }) => format!("Beitritts-Token {id} erstellt"),
        (Lang::En, K::AgentVersionChanged { node, from, to }) => {
            format!("{} runs agent {to} (was {from})", name(*node))
        }
        (Lang::De, K::AgentVersionChanged { node, from, to }) => {
            format!("{} läuft mit Agent {to} (vorher {from})", name(*node))
        }
        (Lang::En, K::Rebooted { node, .. }) => format!("{} rebooted", name(*node)),
        (Lang::De, K::Rebooted { node, .. }) => format!("{} neu gestartet", name(*node)),
        (Lang::En, K::UplinkUp { node }) => format!("uplink of {} up", name(*node)),
        (Lang::De, K::UplinkUp { node }) => format!("Uplink von {} wieder aktiv", name(*node)),
        (Lang::En, K::UplinkDown { node }) => format!("uplink of {} down", name(*node)),
        (Lang::De, K::UplinkDown { node }) => format!("Uplink von {} ausgefallen", name(*node)),
        (Lang::En, K::SiteAdded { name: site, via }) => {
            format!("site {site} added via {}", name(*via))
        }
        (Lang::De, K::SiteAdded { name: site, via }) => {
            format!("Standort {site} über {} hinzugefügt", name(*via))
        }
        (Lang::En, K::SiteRemoved { name: site }) => format!("site {site} removed"),
        (Lang::De, K::SiteRemoved { name: site }) => format!("Standort {site} entfernt"),
        (Lang::En, K::OperatorAdded { name, scope, .. }) => {
            format!("operator {name} added ({scope})")
        }
        (Lang::De, K::OperatorAdded { name, scope, .. }) => {
            format!("Betreiber {name} hinzugefügt ({scope})")
        }
        (Lang::En, K::OperatorRemoved { name }) => format!("operator {name} removed"),
        (Lang::De, K::OperatorRemoved { name }) => format!("Betreiber {name} entfernt"),
        (Lang::En, K::RoleAwaitsApproval { node, role }) => format!(
            "{} requests the {} role: awaits approval",
            name(*node),
            role_name(lang, *role)
        ),
        (Lang::De, K::RoleAwaitsApproval { node, role }) => format!(
            "{} fragt die Rolle {} an: wartet auf Freigabe",
            name(*node),
            role_name(lang, *role)
        ),
        (Lang::En, K::RoleApproved { node, role }) => {
            format!(
                "{} role approved for {}",
                role_name(lang, *role),
                name(*node)
            )
        }
        (Lang::De, K::RoleApproved { node, role }) => {
            format!(
                "Rolle {} für {} freigegeben",
                role_name(lang, *role),
                name(*node)
            )
        }
        (Lang::En, K::RoleRevoked { node, role }) => {
            format!(
                "{} role withdrawn from {}",
                role_name(lang, *role),
                name(*node)
            )
        }
        (Lang::De, K::RoleRevoked { node, role }) => {
            format!(
                "Rolle {} von {} entzogen",
                role_name(lang, *role),
                name(*node)
            )
        }
        (
            _,
            K::LinkDisputed {
                a,
                b,
                node,
                rtt_us,
                other_rtt_us,
            },
        ) => match lang {
            Lang::En => format!(
                "link {} – {}: {} claims {rtt_us} µs, the other end {other_rtt_us} µs; the larger is used",
                name(*a),
                name(*b),
                name(*node)
            ),
            Lang::De => format!(
                "Verbindung {} – {}: {} meldet {rtt_us} µs, die Gegenseite {other_rtt_us} µs; der größere Wert gilt",
                name(*a),
                name(*b),
                name(*node)
            ),
        },
    }
}
