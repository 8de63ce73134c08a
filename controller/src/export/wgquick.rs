//! `site export`: a wg-quick configuration that joins a standard WireGuard
//! site (a building that cannot run the agent) to the mesh through its via
//! node. Pure text rendering; `admin::site_export` gathers the inputs.

use std::fmt::Write as _;
use std::net::SocketAddr;

use freimesh_proto::PublicKeyBytes;
use ipnet::IpNet;

/// What is printed when the operator brought the site's own key: the
/// controller never saw the private half.
pub const PRIVATE_KEY_PLACEHOLDER: &str = "<the site's own key>";

/// Keepalives hold the via node's NAT mapping open: the site connects,
/// the mesh never dials it.
pub const PERSISTENT_KEEPALIVE_S: u16 = 25;

/// Everything one site's config says.
#[derive(Debug, Clone)]
pub struct SiteConfig<'a> {
    pub name: &'a str,
    /// Base64, or `None` when only the site holds it.
    pub private_key: Option<&'a str>,
    /// The site's overlay /32.
    pub address: IpNet,
    pub via_hostname: &'a str,
    pub via_key: PublicKeyBytes,
    pub endpoint: EndpointText<'a>,
    /// What the site sends into the tunnel: the mesh pool and every other
    /// building and site.
    pub allowed_ips: Vec<IpNet>,
}

/// The via node's endpoint: an address it announced or the operator's
/// `--endpoint HOST:PORT` (a host name is fine for wg-quick).
#[derive(Debug, Clone, Copy)]
pub enum EndpointText<'a> {
    Announced(SocketAddr),
    Given(&'a str),
}

impl std::fmt::Display for EndpointText<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Announced(a) => write!(f, "{a}"),
            Self::Given(text) => f.write_str(text),
        }
    }
}

/// Renders the wg-quick file.
pub fn render(c: &SiteConfig<'_>) -> String {
    let mut out = String::new();
    let allowed: Vec<String> = c.allowed_ips.iter().map(ToString::to_string).collect();
    // Writing to a String cannot fail.
    let _ = writeln!(
        out,
        "# freimesh site {:?} via {} (freimesh-controller site export)",
        c.name, c.via_hostname
    );
    let _ = writeln!(out, "[Interface]");
    let _ = writeln!(
        out,
        "PrivateKey = {}",
        c.private_key.unwrap_or(PRIVATE_KEY_PLACEHOLDER)
    );
    let _ = writeln!(out, "Address = {}", c.address);
    let _ = writeln!(out);
    let _ = writeln!(out, "[Peer]");
    let _ = writeln!(out, "PublicKey = {}", c.via_key.to_base64());
    let _ = writeln!(out, "Endpoint = {}", c.endpoint);
    let _ = writeln!(out, "AllowedIPs = {}", allowed.join(", "));
    let _ = writeln!(out, "PersistentKeepalive = {PERSISTENT_KEEPALIVE_S}");
    out
}
