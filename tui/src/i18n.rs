//! Every string the TUI shows, in English and German.
//!
//! Each message is a variant of [`Msg`] and its text is one `match` arm
//! holding both languages, so a message without a translation does not
//! compile. Messages with numbers or names in them are functions below the
//! table, again with one arm per language.

use freimesh_proto::api::{DownCause, Role, Severity};

mod events;
mod telemetry;

pub use events::event;
pub use telemetry::{Field, low_memory_alert, version_drift_alert};

/// The language of the interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    En,
    De,
}

impl Lang {
    /// The language from the locale variables, in POSIX precedence
    /// (`LC_ALL`, then `LC_MESSAGES`, then `LANG`): German when the first
    /// one that is set and non-empty starts with `de`, English otherwise.
    pub fn from_locale(
        lc_all: Option<&str>,
        lc_messages: Option<&str>,
        lang: Option<&str>,
    ) -> Lang {
        let chosen = [lc_all, lc_messages, lang]
            .into_iter()
            .flatten()
            .find(|value| !value.is_empty());
        match chosen {
            Some(value) if value.starts_with("de") => Lang::De,
            _ => Lang::En,
        }
    }

    /// [`Lang::from_locale`] over this process's environment.
    pub fn from_env() -> Lang {
        let var = |name| std::env::var(name).ok();
        Lang::from_locale(
            var("LC_ALL").as_deref(),
            var("LC_MESSAGES").as_deref(),
            var("LANG").as_deref(),
        )
    }
}

/// A fixed piece of interface text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Msg {
    TabOverview,
    TabNodes,
    TabLinks,
    TabGateways,
    TabEvents,
    TabRedundancy,
    TabDetail,
    Mesh,
    Nodes,
    Online,
    Pending,
    Drained,
    Links,
    Up,
    Down,
    Gateways,
    Failovers,
    Sessions,
    Computation,
    Approval,
    Yes,
    No,
    Alerts,
    NoAlerts,
    RecentFailovers,
    NoFailovers,
    ColId,
    ColHostname,
    ColState,
    ColOnline,
    ColLinks,
    ColAddress,
    ColLastSeen,
    ColAgent,
    ColUptime,
    ColLoad,
    ColMemory,
    Telemetry,
    ColLink,
    ColRtt,
    ColLoss,
    ColMetric,
    ColOverride,
    ColTime,
    ColNode,
    ColPeer,
    ColCause,
    ColDetection,
    ColSwitch,
    ColRerouted,
    ColLost,
    ColPrefix,
    ColDestination,
    ColPrimary,
    ColAlternates,
    ColTx,
    ColRx,
    ColUplink,
    ColCutsOff,
    ColPrefixesCut,
    StatePending,
    StateActive,
    StateRevoked,
    FlagDrained,
    FlagGateway,
    Never,
    Unknown,
    Loading,
    NoNodes,
    NoMatch,
    NoLinks,
    NoGatewaysTitle,
    NoGatewaysHint,
    NoEvents,
    NoSpofTitle,
    NoSpofHint,
    CutNodes,
    CutLinks,
    Addresses,
    Prefixes,
    Endpoints,
    Routes,
    NoRoutes,
    Traffic,
    NoTraffic,
    RecentEvents,
    LinksOfNode,
    Trend,
    Filter,
    SortedBy,
    Ascending,
    Descending,
    Connecting,
    Connected,
    HelpHint,
    HelpTitle,
    HelpClose,
    KeyTabs,
    KeyNextTab,
    KeyMove,
    KeyPage,
    KeyOpen,
    KeyBack,
    KeyFilter,
    KeySort,
    KeySortDir,
    KeyDrain,
    KeyUndrain,
    KeyApprove,
    KeyRevoke,
    KeyToken,
    KeyRefresh,
    KeyHelp,
    KeyQuit,
    ConfirmTitle,
    RevokeTitle,
    ConfirmHint,
    TokenTitle,
    TokenTtlPrompt,
    TokenTtlHint,
    TokenShownTitle,
    TokenShownNote,
    TokenClose,
    TooSmall,
    SelectNodeFirst,
    TokenRefused,
    KeyRoleApprove,
    KeyRoleRevoke,
    NoRoleAwaits,
    NoRoleApproved,
    FlagAwaitsApproval,
    SevCritical,
    SevWarning,
    SevInfo,
}

impl Msg {
    /// Every message, for the completeness test.
    pub const ALL: &'static [Msg] = &[
        Msg::TabOverview,
        Msg::TabNodes,
        Msg::TabLinks,
        Msg::TabGateways,
        Msg::TabEvents,
        Msg::TabRedundancy,
        Msg::TabDetail,
        Msg::Mesh,
        Msg::Nodes,
        Msg::Online,
        Msg::Pending,
        Msg::Drained,
        Msg::Links,
        Msg::Up,
        Msg::Down,
        Msg::Gateways,
        Msg::Failovers,
        Msg::Sessions,
        Msg::Computation,
        Msg::Approval,
        Msg::Yes,
        Msg::No,
        Msg::Alerts,
        Msg::NoAlerts,
        Msg::RecentFailovers,
        Msg::NoFailovers,
        Msg::ColId,
        Msg::ColHostname,
        Msg::ColState,
        Msg::ColOnline,
        Msg::ColLinks,
        Msg::ColAddress,
        Msg::ColLastSeen,
        Msg::ColAgent,
        Msg::ColUptime,
        Msg::ColLoad,
        Msg::ColMemory,
        Msg::Telemetry,
        Msg::ColLink,
        Msg::ColRtt,
        Msg::ColLoss,
        Msg::ColMetric,
        Msg::ColOverride,
        Msg::ColTime,
        Msg::ColNode,
        Msg::ColPeer,
        Msg::ColCause,
        Msg::ColDetection,
        Msg::ColSwitch,
        Msg::ColRerouted,
        Msg::ColLost,
        Msg::ColPrefix,
        Msg::ColDestination,
        Msg::ColPrimary,
        Msg::ColAlternates,
        Msg::ColTx,
        Msg::ColRx,
        Msg::ColUplink,
        Msg::ColCutsOff,
        Msg::ColPrefixesCut,
        Msg::StatePending,
        Msg::StateActive,
        Msg::StateRevoked,
        Msg::FlagDrained,
        Msg::FlagGateway,
        Msg::Never,
        Msg::Unknown,
        Msg::Loading,
        Msg::NoNodes,
        Msg::NoMatch,
        Msg::NoLinks,
        Msg::NoGatewaysTitle,
        Msg::NoGatewaysHint,
        Msg::NoEvents,
        Msg::NoSpofTitle,
        Msg::NoSpofHint,
        Msg::CutNodes,
        Msg::CutLinks,
        Msg::Addresses,
        Msg::Prefixes,
        Msg::Endpoints,
        Msg::Routes,
        Msg::NoRoutes,
        Msg::Traffic,
        Msg::NoTraffic,
        Msg::RecentEvents,
        Msg::LinksOfNode,
        Msg::Trend,
        Msg::Filter,
        Msg::SortedBy,
        Msg::Ascending,
        Msg::Descending,
        Msg::Connecting,
        Msg::Connected,
        Msg::HelpHint,
        Msg::HelpTitle,
        Msg::HelpClose,
        Msg::KeyTabs,
        Msg::KeyNextTab,
        Msg::KeyMove,
        Msg::KeyPage,
        Msg::KeyOpen,
        Msg::KeyBack,
        Msg::KeyFilter,
        Msg::KeySort,
        Msg::KeySortDir,
        Msg::KeyDrain,
        Msg::KeyUndrain,
        Msg::KeyApprove,
        Msg::KeyRevoke,
        Msg::KeyToken,
        Msg::KeyRefresh,
        Msg::KeyHelp,
        Msg::KeyQuit,
        Msg::ConfirmTitle,
        Msg::RevokeTitle,
        Msg::ConfirmHint,
        Msg::TokenTitle,
        Msg::TokenTtlPrompt,
        Msg::TokenTtlHint,
        Msg::TokenShownTitle,
        Msg::TokenShownNote,
        Msg::TokenClose,
        Msg::TooSmall,
        Msg::SelectNodeFirst,
        Msg::TokenRefused,
        Msg::KeyRoleApprove,
        Msg::KeyRoleRevoke,
        Msg::NoRoleAwaits,
        Msg::NoRoleApproved,
        Msg::FlagAwaitsApproval,
        Msg::SevCritical,
        Msg::SevWarning,
        Msg::SevInfo,
    ];

    /// The text in `lang`.
    pub fn text(self, lang: Lang) -> &'static str {
        let (en, de) = self.pair();
        match lang {
            Lang::En => en,
            Lang::De => de,
        }
    }

    /// English and German, side by side so a reviewer sees both at once.
    fn pair(self) -> (&'static str, &'static str) {
        match self {
            Msg::TabOverview => ("Overview", "Übersicht"),
            Msg::TabNodes => ("Nodes", "Knoten"),
            Msg::TabLinks => ("Links", "Verbindungen"),
            Msg::TabGateways => ("Gateways", "Gateways"),
            Msg::TabEvents => ("Events", "Ereignisse"),
            Msg::TabRedundancy => ("Redundancy", "Redundanz"),
            Msg::TabDetail => ("Node detail", "Knotendetail"),
            Msg::Mesh => ("Mesh", "Netz"),
            Msg::Nodes => ("Nodes", "Knoten"),
            Msg::Online => ("online", "online"),
            Msg::Pending => ("pending", "wartend"),
            Msg::Drained => ("drained", "entlastet"),
            Msg::Links => ("Links", "Verbindungen"),
            Msg::Up => ("up", "aktiv"),
            Msg::Down => ("down", "ausgefallen"),
            Msg::Gateways => ("Gateways", "Gateways"),
            Msg::Failovers => ("Failovers", "Umschaltungen"),
            Msg::Sessions => ("Agent sessions", "Agent-Sitzungen"),
            Msg::Computation => ("Route computation", "Routenberechnung"),
            Msg::Approval => ("Approval required", "Freigabe nötig"),
            Msg::Yes => ("yes", "ja"),
            Msg::No => ("no", "nein"),
            Msg::Alerts => ("Alerts", "Warnungen"),
            Msg::NoAlerts => (
                "No alerts: all is well.",
                "Keine Warnungen: alles in Ordnung.",
            ),
            Msg::RecentFailovers => ("Recent failovers", "Letzte Umschaltungen"),
            Msg::NoFailovers => ("No failovers yet.", "Noch keine Umschaltungen."),
            Msg::ColId => ("ID", "ID"),
            Msg::ColHostname => ("Hostname", "Hostname"),
            Msg::ColState => ("State", "Status"),
            Msg::ColOnline => ("Online", "Online"),
            Msg::ColLinks => ("Links", "Verb."),
            Msg::ColAddress => ("Address", "Adresse"),
            Msg::ColLastSeen => ("Last seen", "Zuletzt gesehen"),
            Msg::ColAgent => ("Agent", "Agent"),
            Msg::ColUptime => ("Uptime", "Laufzeit"),
            Msg::ColLoad => ("Load", "Last"),
            Msg::ColMemory => ("Memory", "Speicher"),
            Msg::Telemetry => ("Telemetry", "Telemetrie"),
            Msg::ColLink => ("Link", "Verbindung"),
            Msg::ColRtt => ("RTT", "RTT"),
            Msg::ColLoss => ("Loss", "Verlust"),
            Msg::ColMetric => ("Metric", "Metrik"),
            Msg::ColOverride => ("Override", "Vorgabe"),
            Msg::ColTime => ("Time (UTC)", "Zeit (UTC)"),
            Msg::ColNode => ("Node", "Knoten"),
            Msg::ColPeer => ("Peer", "Nachbar"),
            Msg::ColCause => ("Cause", "Ursache"),
            Msg::ColDetection => ("Detection", "Erkennung"),
            Msg::ColSwitch => ("Switch", "Umschalten"),
            Msg::ColRerouted => ("Rerouted", "Umgeleitet"),
            Msg::ColLost => ("Lost", "Verloren"),
            Msg::ColPrefix => ("Prefix", "Präfix"),
            Msg::ColDestination => ("Destination", "Ziel"),
            Msg::ColPrimary => ("Primary", "Primär"),
            Msg::ColAlternates => ("Alternates", "Alternativen"),
            Msg::ColTx => ("Sent", "Gesendet"),
            Msg::ColRx => ("Received", "Empfangen"),
            Msg::ColUplink => ("Uplink", "Uplink"),
            Msg::ColCutsOff => ("Cuts off", "Trennt ab"),
            Msg::ColPrefixesCut => ("Buildings/prefixes cut", "Abgetrennte Gebäude/Präfixe"),
            Msg::StatePending => ("pending", "wartend"),
            Msg::StateActive => ("active", "aktiv"),
            Msg::StateRevoked => ("revoked", "gesperrt"),
            Msg::FlagDrained => ("drained", "entlastet"),
            Msg::FlagGateway => ("gateway", "Gateway"),
            Msg::Never => ("never", "nie"),
            Msg::Unknown => ("unknown", "unbekannt"),
            Msg::Loading => ("loading…", "wird geladen…"),
            Msg::NoNodes => ("No nodes enrolled yet.", "Noch keine Knoten angemeldet."),
            Msg::NoMatch => (
                "No node matches the filter.",
                "Kein Knoten passt zum Filter.",
            ),
            Msg::NoLinks => ("No links yet.", "Noch keine Verbindungen."),
            Msg::NoGatewaysTitle => ("No gateways yet.", "Noch keine Gateways."),
            Msg::NoGatewaysHint => (
                "Gateways are nodes with an uplink to the internet. They appear here once a node is configured as a gateway.",
                "Gateways sind Knoten mit einem Uplink ins Internet. Sie erscheinen hier, sobald ein Knoten als Gateway eingerichtet ist.",
            ),
            Msg::NoEvents => ("No events yet.", "Noch keine Ereignisse."),
            Msg::NoSpofTitle => (
                "No single point of failure.",
                "Keine einzelne Schwachstelle.",
            ),
            Msg::NoSpofHint => (
                "Every node and every link can fail without cutting anyone off.",
                "Jeder Knoten und jede Verbindung kann ausfallen, ohne jemanden abzutrennen.",
            ),
            Msg::CutNodes => (
                "Nodes whose failure cuts off others",
                "Knoten, deren Ausfall andere abtrennt",
            ),
            Msg::CutLinks => (
                "Links whose failure cuts off others",
                "Verbindungen, deren Ausfall andere abtrennt",
            ),
            Msg::Addresses => ("Addresses", "Adressen"),
            Msg::Prefixes => ("Prefixes", "Präfixe"),
            Msg::Endpoints => ("Endpoints", "Endpunkte"),
            Msg::Routes => ("Routes", "Routen"),
            Msg::NoRoutes => ("No routes.", "Keine Routen."),
            Msg::Traffic => ("Traffic per link", "Verkehr je Verbindung"),
            Msg::NoTraffic => ("No traffic reported.", "Kein Verkehr gemeldet."),
            Msg::RecentEvents => ("Recent events", "Letzte Ereignisse"),
            Msg::LinksOfNode => ("Links", "Verbindungen"),
            Msg::Trend => ("trend", "Verlauf"),
            Msg::Filter => ("Filter", "Filter"),
            Msg::SortedBy => ("sorted by", "sortiert nach"),
            Msg::Ascending => ("ascending", "aufsteigend"),
            Msg::Descending => ("descending", "absteigend"),
            Msg::Connecting => (
                "connecting to the controller…",
                "verbinde mit dem Controller…",
            ),
            Msg::Connected => ("connected", "verbunden"),
            Msg::HelpHint => ("? help  q quit", "? Hilfe  q Ende"),
            Msg::HelpTitle => ("Keys", "Tasten"),
            Msg::HelpClose => (
                "any key closes this help",
                "beliebige Taste schließt die Hilfe",
            ),
            Msg::KeyTabs => ("switch screen", "Ansicht wechseln"),
            Msg::KeyNextTab => ("next / previous screen", "nächste / vorige Ansicht"),
            Msg::KeyMove => ("move the selection", "Auswahl bewegen"),
            Msg::KeyPage => ("page up / down", "seitenweise blättern"),
            Msg::KeyOpen => ("open node detail", "Knotendetails öffnen"),
            Msg::KeyBack => ("back / cancel", "zurück / abbrechen"),
            Msg::KeyFilter => (
                "filter: hostname, id, address; v:0.2 agent; lowmem",
                "Filter: Hostname, ID, Adresse; v:0.2 Agent; lowmem",
            ),
            Msg::KeySort => (
                "sort by next column (… agent, uptime, load, memory)",
                "nächste Spalte (… Agent, Laufzeit, Last, Speicher)",
            ),
            Msg::KeySortDir => ("reverse the sort order", "Sortierung umkehren"),
            Msg::KeyDrain => ("drain node (maintenance)", "Knoten entlasten (Wartung)"),
            Msg::KeyUndrain => ("undrain node", "Entlastung aufheben"),
            Msg::KeyApprove => ("approve pending node", "wartenden Knoten freigeben"),
            Msg::KeyRevoke => ("revoke node", "Knoten sperren"),
            Msg::KeyToken => ("create a join token", "Beitritts-Token erstellen"),
            Msg::KeyRefresh => ("refresh now", "sofort aktualisieren"),
            Msg::KeyHelp => ("this help", "diese Hilfe"),
            Msg::KeyQuit => ("quit", "beenden"),
            Msg::ConfirmTitle => ("Confirm", "Bestätigen"),
            Msg::RevokeTitle => ("Revoke: cannot be undone", "Sperren: nicht umkehrbar"),
            Msg::ConfirmHint => ("y confirm   n cancel", "j/y bestätigen   n abbrechen"),
            Msg::TokenTitle => ("New join token", "Neues Beitritts-Token"),
            Msg::TokenTtlPrompt => (
                "Valid for (e.g. 30m, 24h, 7d):",
                "Gültig für (z. B. 30m, 24h, 7d):",
            ),
            Msg::TokenTtlHint => (
                "Enter create   Esc cancel",
                "Enter erstellen   Esc abbrechen",
            ),
            Msg::TokenShownTitle => ("Join token created", "Beitritts-Token erstellt"),
            Msg::TokenShownNote => (
                "Copy it now: it is shown only this once and cannot be shown again.",
                "Jetzt kopieren: Es wird nur dieses eine Mal angezeigt und kann nicht erneut angezeigt werden.",
            ),
            Msg::TokenClose => ("Enter or Esc closes", "Enter oder Esc schließt"),
            Msg::TooSmall => ("terminal too small", "Terminal zu klein"),
            Msg::SelectNodeFirst => ("select a node first", "erst einen Knoten auswählen"),
            Msg::TokenRefused => (
                "the controller refused the operator token",
                "der Controller lehnt das Operator-Token ab",
            ),
            Msg::KeyRoleApprove => (
                "approve a role the node requests",
                "angefragte Rolle freigeben",
            ),
            Msg::KeyRoleRevoke => ("withdraw an approved role", "freigegebene Rolle entziehen"),
            Msg::NoRoleAwaits => (
                "no role of this node awaits approval",
                "keine Rolle dieses Knotens wartet auf Freigabe",
            ),
            Msg::NoRoleApproved => (
                "no role is approved for this node",
                "für diesen Knoten ist keine Rolle freigegeben",
            ),
            Msg::FlagAwaitsApproval => ("awaits approval", "wartet auf Freigabe"),
            Msg::SevCritical => ("CRITICAL", "KRITISCH"),
            Msg::SevWarning => ("WARNING", "WARNUNG"),
            Msg::SevInfo => ("INFO", "INFO"),
        }
    }
}

/// The status bar while the controller cannot be reached.
pub fn unreachable(lang: Lang, retry_in_s: u64) -> String {
    match lang {
        Lang::En => format!("controller unreachable, retrying in {retry_in_s}s"),
        Lang::De => format!("Controller nicht erreichbar, neuer Versuch in {retry_in_s} s"),
    }
}

/// A node action the operator can take; the dialog and result texts depend on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeAction {
    Drain,
    Undrain,
    Approve,
    Revoke,
    /// Approve a role the node requests (it takes effect at once).
    ApproveRole(Role),
    /// Withdraw a role's approval.
    RevokeRole(Role),
}

/// A role's name for people.
pub fn role_name(lang: Lang, role: Role) -> &'static str {
    match (lang, role) {
        (_, Role::Gateway) => "Gateway",
        (Lang::En, Role::PublicWifi) => "public Wi-Fi",
        (Lang::De, Role::PublicWifi) => "öffentliches WLAN",
    }
}

/// The question in the confirmation dialog.
pub fn confirm_question(lang: Lang, action: NodeAction, host: &str, id: u32) -> String {
    match (lang, action) {
        (Lang::En, NodeAction::Drain) => format!(
            "Drain {host} (#{id})? Routes move away from it first; it stays in the mesh for maintenance."
        ),
        (Lang::De, NodeAction::Drain) => format!(
            "{host} (#{id}) entlasten? Die Routen werden zuerst umgelegt; der Knoten bleibt für die Wartung im Netz."
        ),
        (Lang::En, NodeAction::Undrain) => {
            format!("Undrain {host} (#{id})? It carries transit traffic again.")
        }
        (Lang::De, NodeAction::Undrain) => {
            format!("Entlastung von {host} (#{id}) aufheben? Er leitet wieder Verkehr weiter.")
        }
        (Lang::En, NodeAction::Approve) => {
            format!("Approve {host} (#{id})? It joins the mesh and gets addresses.")
        }
        (Lang::De, NodeAction::Approve) => {
            format!("{host} (#{id}) freigeben? Er tritt dem Netz bei und erhält Adressen.")
        }
        (Lang::En, NodeAction::Revoke) => format!(
            "REVOKE {host} (#{id})? It is cut off from the mesh at once and for good; its key is never accepted again. It can only come back by enrolling anew with a new key."
        ),
        (Lang::De, NodeAction::Revoke) => format!(
            "{host} (#{id}) SPERREN? Er wird sofort und endgültig vom Netz getrennt; sein Schlüssel wird nie wieder angenommen. Zurück nur durch neue Anmeldung mit neuem Schlüssel."
        ),
        (Lang::En, NodeAction::ApproveRole(Role::Gateway)) => format!(
            "Approve the Gateway role for {host} (#{id})? From now on the mesh may send internet traffic through it: only approve a node you set up as a gateway."
        ),
        (Lang::De, NodeAction::ApproveRole(Role::Gateway)) => format!(
            "Gateway-Rolle für {host} (#{id}) freigeben? Ab sofort kann das Netz Internetverkehr über ihn leiten: nur freigeben, wenn Sie ihn als Gateway eingerichtet haben."
        ),
        (Lang::En, NodeAction::ApproveRole(Role::PublicWifi)) => format!(
            "Approve the public Wi-Fi role for {host} (#{id})? It gets client subnets and serves public Wi-Fi clients at once."
        ),
        (Lang::De, NodeAction::ApproveRole(Role::PublicWifi)) => format!(
            "Rolle öffentliches WLAN für {host} (#{id}) freigeben? Er erhält sofort Client-Netze und versorgt öffentliche WLAN-Clients."
        ),
        (Lang::En, NodeAction::RevokeRole(role)) => format!(
            "Withdraw the {} role from {host} (#{id})? It is an ordinary node again at once.",
            role_name(lang, role)
        ),
        (Lang::De, NodeAction::RevokeRole(role)) => format!(
            "Rolle {} von {host} (#{id}) entziehen? Er ist sofort wieder ein gewöhnlicher Knoten.",
            role_name(lang, role)
        ),
    }
}

/// The status line after an action succeeded.
pub fn action_done(lang: Lang, action: NodeAction, host: &str) -> String {
    match (lang, action) {
        (Lang::En, NodeAction::Drain) => format!("{host} drained"),
        (Lang::De, NodeAction::Drain) => format!("{host} entlastet"),
        (Lang::En, NodeAction::Undrain) => format!("{host} undrained"),
        (Lang::De, NodeAction::Undrain) => format!("Entlastung von {host} aufgehoben"),
        (Lang::En, NodeAction::Approve) => format!("{host} approved"),
        (Lang::De, NodeAction::Approve) => format!("{host} freigegeben"),
        (Lang::En, NodeAction::Revoke) => format!("{host} revoked"),
        (Lang::De, NodeAction::Revoke) => format!("{host} gesperrt"),
        (Lang::En, NodeAction::ApproveRole(r)) => {
            format!("{} role approved for {host}", role_name(lang, r))
        }
        (Lang::De, NodeAction::ApproveRole(r)) => {
            format!("Rolle {} für {host} freigegeben", role_name(lang, r))
        }
        (Lang::En, NodeAction::RevokeRole(r)) => {
            format!("{} role withdrawn from {host}", role_name(lang, r))
        }
        (Lang::De, NodeAction::RevokeRole(r)) => {
            format!("Rolle {} von {host} entzogen", role_name(lang, r))
        }
    }
}

/// The status line after an action failed; `reason` is the client's error.
pub fn action_failed(lang: Lang, reason: &str) -> String {
    match lang {
        Lang::En => format!("action failed: {reason}"),
        Lang::De => format!("Aktion fehlgeschlagen: {reason}"),
    }
}

/// The status line when the list of nodes is filtered.
pub fn filtered(lang: Lang, shown: usize, total: usize) -> String {
    match lang {
        Lang::En => format!("{shown} of {total} nodes"),
        Lang::De => format!("{shown} von {total} Knoten"),
    }
}

/// "N nodes" in the redundancy tables.
pub fn node_count(lang: Lang, n: usize) -> String {
    match (lang, n) {
        (Lang::En, 1) => "1 node".to_string(),
        (Lang::En, _) => format!("{n} nodes"),
        (Lang::De, _) => format!("{n} Knoten"),
    }
}

/// How long ago, in the largest sensible unit.
pub fn ago(lang: Lang, ms: i64) -> String {
    let s = ms.max(0) / 1000;
    let (n, unit_en, unit_de) = match s {
        0..60 => (s, "s", "s"),
        60..3600 => (s / 60, "min", "min"),
        3600..86_400 => (s / 3600, "h", "h"),
        _ => (s / 86_400, "d", "d"),
    };
    match lang {
        Lang::En => format!("{n} {unit_en} ago"),
        Lang::De => format!("vor {n} {unit_de}"),
    }
}

pub fn severity(lang: Lang, severity: Severity) -> &'static str {
    match severity {
        Severity::Critical => Msg::SevCritical.text(lang),
        Severity::Warning => Msg::SevWarning.text(lang),
        Severity::Info => Msg::SevInfo.text(lang),
    }
}

pub fn cause(lang: Lang, cause: DownCause) -> &'static str {
    match (lang, cause) {
        (Lang::En, DownCause::Silence) => "silence",
        (Lang::De, DownCause::Silence) => "Stille",
        (Lang::En, DownCause::Carrier) => "carrier lost",
        (Lang::De, DownCause::Carrier) => "Träger weg",
        (Lang::En, DownCause::Neighbour) => "neighbour",
        (Lang::De, DownCause::Neighbour) => "Nachbar",
        (Lang::En, DownCause::Wireguard) => "WireGuard",
        (Lang::De, DownCause::Wireguard) => "WireGuard",
        (Lang::En, DownCause::Removed) => "removed",
        (Lang::De, DownCause::Removed) => "entfernt",
    }
}

/// Translates an alert by its machine-readable kind; unknown kinds (from a
/// newer controller) fall back to the controller's English message.
pub fn alert(lang: Lang, kind: &str, node: &str, peer: &str, message: &str) -> String {
    match (lang, kind) {
        (Lang::En, "node-offline") => format!("{node} is offline"),
        (Lang::De, "node-offline") => format!("{node} ist offline"),
        (Lang::En, "link-down") => format!("link {node} – {peer} is down"),
        (Lang::De, "link-down") => format!("Verbindung {node} – {peer} ist ausgefallen"),
        (Lang::En, "node-pending") => format!("{node} waits for approval"),
        (Lang::De, "node-pending") => format!("{node} wartet auf Freigabe"),
        (Lang::En, "role-awaits-approval") => {
            format!("{node} requests a role: awaits approval")
        }
        (Lang::De, "role-awaits-approval") => {
            format!("{node} fragt eine Rolle an: wartet auf Freigabe")
        }
        (Lang::En, "single-point-of-failure") => {
            format!("{node} is a single point of failure")
        }
        (Lang::De, "single-point-of-failure") => format!("{node} ist eine einzelne Schwachstelle"),
        (Lang::En, "gateway-down") => format!("gateway {node} is down"),
        (Lang::De, "gateway-down") => format!("Gateway {node} ist ausgefallen"),
        _ => message.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_message_has_text_in_both_languages() {
        for msg in Msg::ALL {
            let (en, de) = msg.pair();
            assert!(!en.trim().is_empty(), "{msg:?} has no English text");
            assert!(!de.trim().is_empty(), "{msg:?} has no German text");
        }
    }

    #[test]
    fn the_message_list_is_complete_and_without_duplicates() {
        // `pair` is exhaustive, so this catches a variant left out of ALL:
        // count the variants by their discriminants.
        let mut seen: Vec<String> = Msg::ALL.iter().map(|m| format!("{m:?}")).collect();
        seen.sort();
        seen.dedup();
        assert_eq!(seen.len(), Msg::ALL.len(), "duplicates in Msg::ALL");
        assert_eq!(
            Msg::ALL.len(),
            Msg::SevInfo as usize + 1,
            "Msg::ALL misses variants"
        );
    }

    #[test]
    fn most_messages_are_actually_translated() {
        // Some words are the same in both languages (ID, RTT, Gateway); if
        // more than a handful are equal, someone pasted English into German.
        let same = Msg::ALL
            .iter()
            .filter(|m| m.text(Lang::En) == m.text(Lang::De))
            .count();
        assert!(same <= 12, "{same} messages are identical in en and de");
    }

    #[test]
    fn locale_picks_german_by_precedence() {
        assert_eq!(Lang::from_locale(None, None, Some("de_DE.UTF-8")), Lang::De);
        assert_eq!(
            Lang::from_locale(Some("C"), None, Some("de_DE.UTF-8")),
            Lang::En
        );
        assert_eq!(
            Lang::from_locale(Some(""), Some("de_AT"), Some("en_GB")),
            Lang::De
        );
        assert_eq!(Lang::from_locale(None, None, None), Lang::En);
    }

    #[test]
    fn ago_picks_units() {
        assert_eq!(ago(Lang::En, 5_000), "5 s ago");
        assert_eq!(ago(Lang::De, 7_200_000), "vor 2 h");
        assert_eq!(ago(Lang::En, -1), "0 s ago");
    }
}
