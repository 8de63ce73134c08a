//! What the CLI subcommands do. Each opens the database, does one thing in
//! one transaction and returns what the binary prints (the admin API does
//! the same through the running server's hub instead). A running server
//! notices the change within [`crate::server::REGISTRY_POLL`].

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use freimesh_proto::control::generate_keypair;
use freimesh_proto::{PublicKeyBytes, encode_key};
use ipnet::{IpNet, Ipv4Net, Ipv6Net};

pub use crate::clock::{BadDuration, parse_duration, unix_now, unix_now_ms};
use crate::export::wgquick::{self, EndpointText, SiteConfig};
pub use crate::keyfile::{KeyFileError, key_path, load_key, write_key_file};
use crate::store::{
    DEFAULT_CLIENT_SUBNET_LEN, MeshSettings, NodeRecord, NodeState, OperatorRecord, OperatorScope,
    SiteKey, SiteRecord, Store, StoreError, database_files,
};

/// Why an admin command failed.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    KeyFile(#[from] KeyFileError),
    #[error("generating the controller key: {0}")]
    Keygen(String),
    #[error(transparent)]
    Duration(#[from] BadDuration),
    #[error("site {site:?}: its via node {via} announced no endpoint; pass --endpoint HOST:PORT")]
    NoEndpoint { site: String, via: u32 },
}

/// The public Wi-Fi client pool chosen at `init` (or later with `pool
/// clients`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientPool {
    pub ipv4: Ipv4Net,
    /// Each public node's IPv4 subnet length.
    pub subnet_len: u8,
}

/// Creates the mesh: settings in the database and a new controller key.
/// Returns the controller's public key, which every agent pins.
pub fn init(
    db: &Path,
    ula: Ipv6Net,
    ipv4: Ipv4Net,
    approval: bool,
) -> Result<PublicKeyBytes, AdminError> {
    init_with_clients(db, ula, ipv4, approval, None)
}

/// [`init`] with a public Wi-Fi client pool.
///
/// All or nothing: the key file is written first (atomically), the settings
/// are committed last, and if any step fails the database and key files
/// this call created are removed again, so a second `init` starts clean.
/// Files that existed before are never removed.
pub fn init_with_clients(
    db: &Path,
    ula: Ipv6Net,
    ipv4: Ipv4Net,
    approval: bool,
    clients: Option<ClientPool>,
) -> Result<PublicKeyBytes, AdminError> {
    let path = key_path(db);
    if path.exists() {
        return Err(AdminError::KeyFile(KeyFileError::Io {
            path,
            cause: std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                "a controller key exists already; remove it only if it belongs to no mesh",
            ),
        }));
    }
    // Only a database this call creates is removed on failure, with the
    // -wal and -shm files SQLite made for it: another process may have an
    // existing one open.
    let created: Vec<PathBuf> = if db.exists() {
        Vec::new()
    } else {
        database_files(db).into_iter().collect()
    };
    let result = init_steps(db, &path, ula, ipv4, approval, clients);
    if result.is_err() {
        // The store is closed by now (it lived in init_steps).
        for file in created.iter().chain(std::iter::once(&path)) {
            if let Err(e) = fs::remove_file(file)
                && e.kind() != std::io::ErrorKind::NotFound
            {
                tracing::error!(file = %file.display(), error = %e, "init failed and could not remove a file it created");
            }
        }
    }
    result
}

fn init_steps(
    db: &Path,
    key_file: &Path,
    ula: Ipv6Net,
    ipv4: Ipv4Net,
    approval: bool,
    clients: Option<ClientPool>,
) -> Result<PublicKeyBytes, AdminError> {
    let mut store = Store::open(db)?;
    if store.settings().is_ok() {
        return Err(StoreError::AlreadyInitialised.into());
    }
    let (private, public) = generate_keypair().map_err(|e| AdminError::Keygen(e.to_string()))?;
    let settings = MeshSettings {
        ula,
        ipv4,
        approval,
        controller_public_key: public,
        clients_ipv4: clients.map(|c| c.ipv4),
        client_subnet_len: clients.map_or(DEFAULT_CLIENT_SUBNET_LEN, |c| c.subnet_len),
    };
    write_key_file(key_file, &encode_key(&private))?;
    // Last: once the settings are committed the mesh exists, with its key.
    store.init(&settings)?;
    Ok(public)
}

/// Creates a one-time join token valid for `valid`; `prefixes` are approved
/// for the node that enrols with it (e.g. a building's LAN).
pub fn token_create(db: &Path, valid: Duration, prefixes: &[IpNet]) -> Result<String, AdminError> {
    let mut store = Store::open(db)?;
    store.settings()?;
    let now = unix_now();
    let expires = now.saturating_add(i64::try_from(valid.as_secs()).unwrap_or(i64::MAX));
    Ok(store.create_token(expires, prefixes, now)?)
}

/// [`token_create`] whose node also gets `roles` approved.
pub fn token_create_with_roles(
    db: &Path,
    valid: Duration,
    prefixes: &[IpNet],
    roles: &[freimesh_proto::api::Role],
) -> Result<String, AdminError> {
    let mut store = Store::open(db)?;
    store.settings()?;
    let now = unix_now();
    let expires = now.saturating_add(i64::try_from(valid.as_secs()).unwrap_or(i64::MAX));
    let roles = freimesh_proto::api::Role::to_roles(roles);
    Ok(store.create_token_with_roles(expires, prefixes, roles, now)?)
}

/// Approves (`approved`) or withdraws `role` for node `id` (`role approve`,
/// `role revoke`); a running controller applies it within
/// [`crate::server::REGISTRY_POLL`].
pub fn role_approve(
    db: &Path,
    id: u32,
    role: freimesh_proto::api::Role,
    approved: bool,
) -> Result<NodeRecord, AdminError> {
    Ok(Store::open(db)?.set_role_approval(id, role, approved)?)
}

/// The controller's public keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ControllerKeys {
    /// The Noise key agents pin (`[controller] public_key`).
    pub control: PublicKeyBytes,
    /// The Ed25519 key credentials and revocation pages verify against.
    pub signing: freimesh_proto::credential::SigningKeyBytes,
}

/// The controller's public keys (`keys`); creates the signing key if no
/// controller has run on this database yet, so it can be pinned before
/// the first start.
pub fn keys(db: &Path) -> Result<ControllerKeys, AdminError> {
    let mut store = Store::open(db)?;
    let control = store.settings()?.controller_public_key;
    let signing = freimesh_proto::credential::SigningKeyBytes::of(&store.signing_key(unix_now())?);
    Ok(ControllerKeys { control, signing })
}

pub fn node_list(db: &Path) -> Result<Vec<NodeRecord>, AdminError> {
    Ok(Store::open(db)?.nodes()?)
}

pub fn node_approve(db: &Path, id: u32) -> Result<NodeRecord, AdminError> {
    Ok(Store::open(db)?.approve(id)?)
}

pub fn node_revoke(db: &Path, id: u32) -> Result<(), AdminError> {
    Ok(Store::open(db)?.revoke(id)?)
}

pub fn node_drain(db: &Path, id: u32, drained: bool) -> Result<(), AdminError> {
    Ok(Store::open(db)?.set_drained(id, drained)?)
}

/// Sets or clears the operator's cost of the link between nodes `a` and `b`.
pub fn link_cost(db: &Path, a: u32, b: u32, cost: Option<u32>) -> Result<(), AdminError> {
    Ok(Store::open(db)?.set_link_cost(a, b, cost)?)
}

pub fn prefix_approve(db: &Path, id: u32, prefix: IpNet) -> Result<(), AdminError> {
    Ok(Store::open(db)?.approve_prefix(id, prefix)?)
}

/// Sets the client pool of a mesh initialised without one (`pool clients`).
pub fn pool_clients(db: &Path, pool: ClientPool) -> Result<(), AdminError> {
    Ok(Store::open(db)?.set_client_pool(pool.ipv4, pool.subnet_len)?)
}

/// Adds a standard WireGuard site behind node `via`. Without `public_key`
/// the controller generates the site's keypair and keeps the private key
/// for `site export`.
pub fn site_add(
    db: &Path,
    name: &str,
    via: u32,
    prefixes: &[IpNet],
    public_key: Option<PublicKeyBytes>,
) -> Result<SiteRecord, AdminError> {
    let mut store = Store::open(db)?;
    let key = match public_key {
        Some(public) => SiteKey {
            public,
            private: None,
        },
        None => {
            let (private, public) =
                generate_keypair().map_err(|e| AdminError::Keygen(e.to_string()))?;
            SiteKey {
                public,
                private: Some(encode_key(&private)),
            }
        }
    };
    Ok(store.add_site(name, via, prefixes, &key, unix_now())?)
}

pub fn site_list(db: &Path) -> Result<Vec<SiteRecord>, AdminError> {
    Ok(Store::open(db)?.sites()?)
}

pub fn site_remove(db: &Path, name: &str) -> Result<(), AdminError> {
    Ok(Store::open(db)?.remove_site(name)?)
}

/// The wg-quick config of site `name`; `endpoint` overrides the via node's
/// first announced endpoint (and is required if it announced none).
pub fn site_export(db: &Path, name: &str, endpoint: Option<&str>) -> Result<String, AdminError> {
    let store = Store::open(db)?;
    let settings = store.settings()?;
    let site = store.site(name)?;
    let via = store.node(site.via)?;
    let endpoint = match (endpoint, via.endpoints.first()) {
        (Some(text), _) => EndpointText::Given(text),
        (None, Some(addr)) => EndpointText::Announced(*addr),
        (None, None) => {
            return Err(AdminError::NoEndpoint {
                site: site.name.clone(),
                via: site.via,
            });
        }
    };
    let active: Vec<u32> = store
        .nodes()?
        .iter()
        .filter(|n| n.state == NodeState::Active)
        .map(|n| n.id)
        .collect();
    let mut allowed_ips = vec![IpNet::V4(settings.ipv4)];
    allowed_ips.extend(
        store
            .prefixes()?
            .into_iter()
            .filter(|(node, _)| active.contains(node))
            .map(|(_, p)| p),
    );
    for other in store.sites()?.iter().filter(|s| s.name != site.name) {
        allowed_ips.extend(other.prefixes.iter().copied());
    }
    Ok(wgquick::render(&SiteConfig {
        name: &site.name,
        private_key: site.private_key.as_deref(),
        address: site.address,
        via_hostname: &via.hostname,
        via_key: via.public_key,
        endpoint,
        allowed_ips,
    }))
}

/// One line per site for `site list`.
pub fn format_site(s: &SiteRecord) -> String {
    let prefixes: Vec<String> = s.prefixes.iter().map(ToString::to_string).collect();
    format!(
        "{:<20} via {:>5}  {}  {}  {}",
        s.name,
        s.via,
        s.public_key,
        s.address,
        prefixes.join(" ")
    )
}

/// Adds an operator of the admin API with full scope and no expiry;
/// returns its token, which is stored only hashed and never shown again.
pub fn operator_add(db: &Path, name: &str) -> Result<String, AdminError> {
    operator_add_scoped(db, name, OperatorScope::Full, None)
}

/// Adds an operator of the admin API with `scope`, its token valid for
/// `valid` (or until removed); returns the token, shown only this once.
pub fn operator_add_scoped(
    db: &Path,
    name: &str,
    scope: OperatorScope,
    valid: Option<Duration>,
) -> Result<String, AdminError> {
    let mut store = Store::open(db)?;
    store.settings()?;
    let now = unix_now();
    let expires_at =
        valid.map(|v| now.saturating_add(i64::try_from(v.as_secs()).unwrap_or(i64::MAX)));
    Ok(store.add_operator(name, scope, expires_at, now)?)
}

/// One line per operator for `operator list`.
pub fn format_operator(op: &OperatorRecord, now: i64) -> String {
    let expiry = match op.expires_at {
        None => "no expiry".to_owned(),
        Some(at) if at <= now => format!("expired at {at}"),
        Some(at) => format!("expires at {at}"),
    };
    format!(
        "{:<20} {:<4}  created {}  {expiry}",
        terminal_safe(&op.name),
        op.scope.as_str(),
        op.created_at
    )
}

pub fn operator_list(db: &Path) -> Result<Vec<OperatorRecord>, AdminError> {
    Ok(Store::open(db)?.operators()?)
}

/// Removes an operator: the API refuses its token within
/// [`crate::server::REGISTRY_POLL`].
pub fn operator_remove(db: &Path, name: &str) -> Result<(), AdminError> {
    Ok(Store::open(db)?.remove_operator(name)?)
}

/// Characters that are not control characters but still change how a
/// terminal shows the line: zero-width and bidirectional overrides.
fn is_invisible_format(c: char) -> bool {
    matches!(c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// `text` as it may reach a terminal: control characters (escape
/// sequences, carriage returns), zero-width and bidi characters and the
/// backslash itself are written as Rust escapes (`\u{1b}`), so a hostname
/// an old database holds can neither move the cursor nor pass for another.
pub fn terminal_safe(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() || c == '\\' || is_invisible_format(c) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// One line per node for `node list`; the hostname is escaped
/// ([`terminal_safe`]).
pub fn format_node(n: &NodeRecord) -> String {
    let addrs: Vec<String> = n.addresses.iter().map(ToString::to_string).collect();
    format!(
        "{:>5}  {:<8} {:<20} {}  {}{}",
        n.id,
        n.state.as_str(),
        terminal_safe(&n.hostname),
        n.public_key,
        if addrs.is_empty() {
            "-".to_owned()
        } else {
            addrs.join(" ")
        },
        if n.drained { "  drained" } else { "" }
    ) + &roles_suffix(n)
}

/// Each role the node requests or an operator approved: `gateway` when in
/// effect, `gateway(awaits-approval)` when only requested,
/// `gateway(approved-not-requested)` when only approved.
fn roles_suffix(n: &NodeRecord) -> String {
    use freimesh_proto::api::Role;
    let mut out = String::new();
    for role in Role::ALL {
        let requested = role.is_in(&n.requested_roles);
        let approved = role.is_in(&n.approved_roles);
        match (requested, approved) {
            (true, true) => {
                out.push_str("  ");
                out.push_str(role.as_str());
            }
            (true, false) => out.push_str(&format!("  {role}(awaits-approval)")),
            (false, true) => out.push_str(&format!("  {role}(approved-not-requested)")),
            (false, false) => {}
        }
        if role == Role::PublicWifi && n.public_wifi {
            for p in &n.client_prefixes {
                out.push(' ');
                out.push_str(&p.to_string());
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostnames_with_escape_sequences_reach_the_terminal_escaped() {
        assert_eq!(terminal_safe("rathaus-1"), "rathaus-1");
        assert_eq!(terminal_safe("bäckerei"), "bäckerei", "letters stay");
        assert_eq!(terminal_safe("x\u{1b}[2J\r\ny"), "x\\u{1b}[2J\\r\\ny");
        assert_eq!(
            terminal_safe("a\\b"),
            "a\\\\b",
            "a backslash cannot fake an escape"
        );
        assert_eq!(terminal_safe("evil\u{202E}txt"), "evil\\u{202e}txt");
        let safe = terminal_safe("\u{1b}]0;pwned\u{7}\u{9b}31m");
        assert!(!safe.chars().any(char::is_control), "{safe:?}");
    }

    #[test]
    fn node_list_lines_carry_no_control_characters_even_from_an_old_database() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = dir.path().join("mesh.db");
        init(
            &db,
            "fd12:3456:789a::/48".parse().expect("ula"),
            "10.99.0.0/16".parse().expect("v4"),
            true,
        )
        .expect("init");
        // Written straight to the store, as a release without the
        // hostname rule did.
        let raw = "evil\u{1b}[31mred\u{7}";
        Store::open(&db)
            .expect("open")
            .add_pending(PublicKeyBytes([9; 32]), raw, &[], Default::default(), 0)
            .expect("pending");
        let nodes = node_list(&db).expect("list");
        let line = format_node(&nodes[0]);
        assert!(!line.chars().any(char::is_control), "{line:?}");
        assert!(line.contains("evil\\u{1b}[31mred\\u{7}"), "{line}");
    }
}
