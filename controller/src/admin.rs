//! What the CLI subcommands do. Each opens the database, does one thing in
//! one transaction and returns what the binary prints (the admin API does
//! the same through the running server's hub instead). A running server
//! notices the change within [`crate::server::REGISTRY_POLL`].

use std::fs;
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use freimesh_proto::control::generate_keypair;
use freimesh_proto::{PublicKeyBytes, decode_key, encode_key};
use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use crate::store::{MeshSettings, NodeRecord, OperatorRecord, Store, StoreError};

/// Why an admin command failed.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("controller key file {path}: {cause}")]
    KeyFile {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("controller key file {path}: {message}")]
    KeyDecode { path: PathBuf, message: String },
    #[error("generating the controller key: {0}")]
    Keygen(String),
    #[error("{0:?} is not a duration (e.g. 30m, 24h, 7d)")]
    Duration(String),
}

/// The controller's private key lives next to the database: `mesh.db` →
/// `mesh.key`, mode 0600.
pub fn key_path(db: &Path) -> PathBuf {
    db.with_extension("key")
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Milliseconds since the Unix epoch: the admin API's time unit.
pub fn unix_now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Creates the mesh: settings in the database and a new controller key.
/// Returns the controller's public key, which every agent pins.
pub fn init(
    db: &Path,
    ula: Ipv6Net,
    ipv4: Ipv4Net,
    approval: bool,
) -> Result<PublicKeyBytes, AdminError> {
    let mut store = Store::open(db)?;
    if store.settings().is_ok() {
        return Err(StoreError::AlreadyInitialised.into());
    }
    let path = key_path(db);
    let (private, public) = generate_keypair().map_err(|e| AdminError::Keygen(e.to_string()))?;
    let settings = MeshSettings {
        ula,
        ipv4,
        approval,
        controller_public_key: public,
    };
    // Check the settings before leaving a key file behind.
    store.init(&settings)?;
    let key_err = |cause| AdminError::KeyFile {
        path: path.clone(),
        cause,
    };
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .map_err(key_err)?;
    writeln!(file, "{}", encode_key(&private)).map_err(key_err)?;
    file.sync_all().map_err(key_err)?;
    Ok(public)
}

/// Reads the controller's private key.
pub fn load_key(db: &Path) -> Result<[u8; 32], AdminError> {
    let path = key_path(db);
    let text = fs::read_to_string(&path).map_err(|cause| AdminError::KeyFile {
        path: path.clone(),
        cause,
    })?;
    decode_key(&text).map_err(|e| AdminError::KeyDecode {
        path,
        message: e.to_string(),
    })
}

/// Parses `30s`, `30m`, `24h`, `7d`.
pub fn parse_duration(text: &str) -> Result<Duration, AdminError> {
    let err = || AdminError::Duration(text.to_owned());
    let text = text.trim();
    let split = text.len().checked_sub(1).ok_or_else(err)?;
    let (num, unit) = text.split_at(split);
    let n: u64 = num.parse().map_err(|_| err())?;
    let secs = match unit {
        "s" => n,
        "m" => n.checked_mul(60).ok_or_else(err)?,
        "h" => n.checked_mul(3600).ok_or_else(err)?,
        "d" => n.checked_mul(86_400).ok_or_else(err)?,
        _ => return Err(err()),
    };
    if secs == 0 {
        return Err(err());
    }
    Ok(Duration::from_secs(secs))
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

/// Adds an operator of the admin API; returns its token, which is stored
/// only hashed and never shown again.
pub fn operator_add(db: &Path, name: &str) -> Result<String, AdminError> {
    let mut store = Store::open(db)?;
    store.settings()?;
    Ok(store.add_operator(name, unix_now())?)
}

pub fn operator_list(db: &Path) -> Result<Vec<OperatorRecord>, AdminError> {
    Ok(Store::open(db)?.operators()?)
}

/// Removes an operator: the API refuses its token within
/// [`crate::server::REGISTRY_POLL`].
pub fn operator_remove(db: &Path, name: &str) -> Result<(), AdminError> {
    Ok(Store::open(db)?.remove_operator(name)?)
}

/// One line per node for `node list`.
pub fn format_node(n: &NodeRecord) -> String {
    let addrs: Vec<String> = n.addresses.iter().map(ToString::to_string).collect();
    format!(
        "{:>5}  {:<8} {:<20} {}  {}{}",
        n.id,
        n.state.as_str(),
        n.hostname,
        n.public_key,
        if addrs.is_empty() {
            "-".to_owned()
        } else {
            addrs.join(" ")
        },
        if n.drained { "  drained" } else { "" }
    )
}
