//! DHCPv4 and router advertisements on OpenWrt: instead of running its own
//! dnsmasq, the agent configures the system's dnsmasq (DHCPv4) and odhcpd
//! (RA, SLAAC only) through UCI (`[public_wifi] dhcp = "openwrt"`).
//!
//! On start it writes one `dhcp` section, `dhcp.freimesh_<interface>`
//! (characters UCI does not allow in a name become `_`), for the OpenWrt
//! network of the client interface, with `uci batch` (commands on stdin)
//! and `uci commit dhcp`, then reloads `/etc/init.d/dnsmasq` and
//! `/etc/init.d/odhcpd`. On stop it deletes that section, commits and
//! reloads again. A section left by an agent that was killed is replaced
//! on the next start. The command list is rendered here (deterministic,
//! tested).
//!
//! The section: a DHCPv4 pool over the node's IPv4 client subnet without
//! the node's own address (`start`/`limit`, offsets from the network
//! address as OpenWrt's dnsmasq init script takes them), `leasetime`,
//! `dhcp_option` 3 (router) and 6 (DNS), and for the /64 `ra=server`,
//! `ra_management=0` / `ra_flags=none` (SLAAC only; the first for OpenWrt
//! before 23.05, the second since), `ra_default=1` (announce a default
//! route although the main table may have none: clients are routed into
//! the mesh by policy routing) and `dhcpv6=disabled`. DNS: the
//! `[public_wifi] dns` servers, or else the node's own address on the
//! client interface (the system dnsmasq answers there).
//!
//! Counting clients: the system dnsmasq's lease file (`/tmp/dhcp.leases`)
//! holds the leases of every network it serves, so only leases inside the
//! client prefixes are counted ([`super::leases::count_leases_within`]).
//! Nothing else about clients is read, and no command here names a client.

use std::{
    net::IpAddr,
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

use ipnet::IpNet;
use tokio::{io::AsyncWriteExt, process::Command};

use super::PublicWifiError;
use super::dnsmasq::pool;

/// Where OpenWrt keeps its init scripts.
pub const DEFAULT_INIT_DIR: &str = "/etc/init.d";
/// The system dnsmasq's lease file on OpenWrt.
pub const DEFAULT_LEASE_FILE: &str = "/tmp/dhcp.leases";
/// dnsmasq refuses leases under two minutes.
const MIN_LEASE: Duration = Duration::from_secs(120);

/// What the UCI driver configures, and with which programs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UciSettings {
    /// The `uci` program (a name looked up in `PATH`, or a path).
    pub uci: PathBuf,
    /// Where the `dnsmasq` and `odhcpd` init scripts are.
    pub init_dir: PathBuf,
    /// The system dnsmasq's lease file.
    pub lease_file: PathBuf,
    /// The client interface (a device, e.g. `br-client`).
    pub interface: String,
    /// The OpenWrt network whose device it is (e.g. `client`).
    pub network: String,
    /// The node's addresses on it, with the client prefix length.
    pub node_addresses: Vec<IpNet>,
    /// DNS servers for clients; empty = the node's own address.
    pub dns: Vec<IpAddr>,
    pub lease_time: Duration,
}

/// The UCI section name for `interface`: `freimesh_` and the name with
/// every character but ASCII letters, digits and `_` turned into `_`.
pub fn section_name(interface: &str) -> String {
    let name: String = interface
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    format!("freimesh_{name}")
}

/// A lease time as UCI's `leasetime` takes it: whole weeks, days, hours or
/// minutes with their unit, else seconds; at least two minutes.
pub fn format_lease_time(lease: Duration) -> String {
    let secs = lease.max(MIN_LEASE).as_secs();
    for (unit, size) in [('w', 604_800), ('d', 86_400), ('h', 3600), ('m', 60)] {
        if secs.is_multiple_of(size) {
            return format!("{}{unit}", secs / size);
        }
    }
    secs.to_string()
}

/// The `uci batch` commands that create the section for `settings`.
pub fn batch_commands(settings: &UciSettings) -> Vec<String> {
    let s = format!("dhcp.{}", section_name(&settings.interface));
    let mut c = vec![
        format!("set {s}=dhcp"),
        format!("set {s}.interface='{}'", settings.network),
        format!("set {s}.ignore='0'"),
    ];
    let (v4, v6) = super::dns_by_family(&settings.dns);
    let dns_v4: Vec<String> = v4.iter().map(ToString::to_string).collect();
    let dns_v6: Vec<String> = v6.iter().map(ToString::to_string).collect();
    for address in &settings.node_addresses {
        match address {
            IpNet::V4(net) => {
                let Some((first, last)) = pool(*net) else {
                    continue;
                };
                let network = u32::from(net.network());
                let start = u32::from(first) - network;
                let limit = u32::from(last) - u32::from(first) + 1;
                let own = net.addr();
                c.push(format!("set {s}.start='{start}'"));
                c.push(format!("set {s}.limit='{limit}'"));
                c.push(format!(
                    "set {s}.leasetime='{}'",
                    format_lease_time(settings.lease_time)
                ));
                // Serve at once, without probing for another DHCP server.
                c.push(format!("set {s}.force='1'"));
                c.push(format!("add_list {s}.dhcp_option='3,{own}'"));
                if settings.dns.is_empty() {
                    c.push(format!("add_list {s}.dhcp_option='6,{own}'"));
                } else if !dns_v4.is_empty() {
                    c.push(format!("add_list {s}.dhcp_option='6,{}'", dns_v4.join(",")));
                }
            }
            IpNet::V6(net) => {
                c.push(format!("set {s}.ra='server'"));
                c.push(format!("set {s}.ra_management='0'"));
                c.push(format!("add_list {s}.ra_flags='none'"));
                c.push(format!("set {s}.ra_default='1'"));
                c.push(format!("set {s}.dhcpv6='disabled'"));
                if settings.dns.is_empty() {
                    c.push(format!("add_list {s}.dns='{}'", net.addr()));
                } else {
                    for dns in &dns_v6 {
                        c.push(format!("add_list {s}.dns='{dns}'"));
                    }
                }
            }
        }
    }
    c
}

/// The section the agent wrote, while public Wi-Fi runs.
#[derive(Debug)]
pub struct UciDhcp {
    uci: PathBuf,
    init_dir: PathBuf,
    section: String,
    lease_file: PathBuf,
}

impl UciDhcp {
    /// Replaces the section (one an earlier agent left is deleted first),
    /// commits and reloads dnsmasq and odhcpd.
    pub async fn apply(settings: &UciSettings) -> Result<Self, PublicWifiError> {
        let this = Self {
            uci: settings.uci.clone(),
            init_dir: settings.init_dir.clone(),
            section: section_name(&settings.interface),
            lease_file: settings.lease_file.clone(),
        };
        // Usually there is none to delete.
        this.delete_section().await?;
        let mut batch = batch_commands(settings).join("\n");
        batch.push('\n');
        run(&this.uci, &["batch"], Some(&batch)).await?;
        run(&this.uci, &["commit", "dhcp"], None).await?;
        this.reload().await?;
        tracing::info!(
            interface = %settings.interface,
            section = %this.section,
            "DHCP and router advertisements configured through UCI"
        );
        Ok(this)
    }

    /// The lease file of the system dnsmasq.
    pub fn lease_file(&self) -> &Path {
        &self.lease_file
    }

    /// Deletes the section, commits and reloads dnsmasq and odhcpd.
    pub async fn remove(self) -> Result<(), PublicWifiError> {
        if !self.delete_section().await? {
            tracing::warn!(section = %self.section, "the UCI section was already gone");
        }
        run(&self.uci, &["commit", "dhcp"], None).await?;
        self.reload().await
    }

    /// `uci -q delete dhcp.<section>`: `Ok(false)` when there was none
    /// (uci exits 1), an error only when uci cannot be run at all.
    async fn delete_section(&self) -> Result<bool, PublicWifiError> {
        let key = format!("dhcp.{}", self.section);
        match run(&self.uci, &["-q", "delete", &key], None).await {
            Ok(()) => Ok(true),
            Err(PublicWifiError::Uci { .. }) => Ok(false),
            Err(err) => Err(err),
        }
    }

    /// Reloads dnsmasq, then odhcpd (if installed: without it there are
    /// no router advertisements, which is logged).
    async fn reload(&self) -> Result<(), PublicWifiError> {
        run(&self.init_dir.join("dnsmasq"), &["reload"], None).await?;
        let odhcpd = self.init_dir.join("odhcpd");
        if odhcpd.exists() {
            run(&odhcpd, &["reload"], None).await?;
        } else {
            tracing::warn!(
                path = %odhcpd.display(),
                "odhcpd is not installed: no router advertisements for public Wi-Fi clients"
            );
        }
        Ok(())
    }
}

/// Runs `program args`, with `stdin` fed to it if given. A program that
/// cannot be started is [`PublicWifiError::UciSpawn`]; one that fails is
/// [`PublicWifiError::Uci`] with its stderr.
async fn run(program: &Path, args: &[&str], stdin: Option<&str>) -> Result<(), PublicWifiError> {
    let command = std::iter::once(program.display().to_string())
        .chain(args.iter().map(|a| (*a).to_owned()))
        .collect::<Vec<_>>()
        .join(" ");
    let mut child = Command::new(program)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|cause| PublicWifiError::UciSpawn {
            command: command.clone(),
            cause,
        })?;
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(text.as_bytes())
            .await
            .map_err(|cause| PublicWifiError::UciSpawn {
                command: command.clone(),
                cause,
            })?;
        drop(pipe);
    }
    let output = child
        .wait_with_output()
        .await
        .map_err(|cause| PublicWifiError::UciSpawn {
            command: command.clone(),
            cause,
        })?;
    if output.status.success() {
        Ok(())
    } else {
        Err(PublicWifiError::Uci {
            command,
            status: output.status.to_string(),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(dns: &[&str]) -> UciSettings {
        UciSettings {
            uci: "uci".into(),
            init_dir: DEFAULT_INIT_DIR.into(),
            lease_file: DEFAULT_LEASE_FILE.into(),
            interface: "br-client".into(),
            network: "client".into(),
            node_addresses: ["10.100.4.1/24", "fd99:0:0:104::1/64"]
                .iter()
                .filter_map(|s| s.parse().ok())
                .collect(),
            dns: dns.iter().filter_map(|s| s.parse().ok()).collect(),
            lease_time: Duration::from_secs(3600),
        }
    }

    #[test]
    fn commands_with_default_dns_point_clients_at_the_node() {
        assert_eq!(
            batch_commands(&settings(&[])).join("\n"),
            "set dhcp.freimesh_br_client=dhcp
set dhcp.freimesh_br_client.interface='client'
set dhcp.freimesh_br_client.ignore='0'
set dhcp.freimesh_br_client.start='2'
set dhcp.freimesh_br_client.limit='253'
set dhcp.freimesh_br_client.leasetime='1h'
set dhcp.freimesh_br_client.force='1'
add_list dhcp.freimesh_br_client.dhcp_option='3,10.100.4.1'
add_list dhcp.freimesh_br_client.dhcp_option='6,10.100.4.1'
set dhcp.freimesh_br_client.ra='server'
set dhcp.freimesh_br_client.ra_management='0'
add_list dhcp.freimesh_br_client.ra_flags='none'
set dhcp.freimesh_br_client.ra_default='1'
set dhcp.freimesh_br_client.dhcpv6='disabled'
add_list dhcp.freimesh_br_client.dns='fd99:0:0:104::1'"
        );
    }

    #[test]
    fn commands_with_dns_servers_split_them_by_family() {
        let commands = batch_commands(&settings(&["9.9.9.9", "2620:fe::fe", "1.1.1.1"]));
        let dns: Vec<&str> = commands
            .iter()
            .map(String::as_str)
            .filter(|c| c.contains(".dns=") || c.contains("'6,"))
            .collect();
        assert_eq!(
            dns,
            [
                "add_list dhcp.freimesh_br_client.dhcp_option='6,9.9.9.9,1.1.1.1'",
                "add_list dhcp.freimesh_br_client.dns='2620:fe::fe'",
            ]
        );
        // Only IPv6 servers: IPv4 clients get no DNS option from us.
        let v6_only = batch_commands(&settings(&["2620:fe::fe"]));
        assert!(!v6_only.iter().any(|c| c.contains("'6,")), "{v6_only:?}");
    }

    #[test]
    fn only_the_families_assigned_are_configured() {
        let mut v4 = settings(&[]);
        v4.node_addresses.retain(|n| matches!(n, IpNet::V4(_)));
        let commands = batch_commands(&v4);
        assert!(commands.iter().any(|c| c.ends_with(".start='2'")));
        assert!(!commands.iter().any(|c| c.contains(".ra")), "{commands:?}");
        let mut v6 = settings(&[]);
        v6.node_addresses.retain(|n| matches!(n, IpNet::V6(_)));
        let commands = batch_commands(&v6);
        assert!(commands.iter().any(|c| c.ends_with(".ra='server'")));
        assert!(
            !commands.iter().any(|c| c.contains(".start")),
            "{commands:?}"
        );
    }

    #[test]
    fn pool_offsets_skip_the_node_at_either_end() {
        let mut last = settings(&[]);
        last.node_addresses = vec!["10.100.4.254/24".parse().unwrap_or_else(|e| panic!("{e}"))];
        let commands = batch_commands(&last);
        assert!(commands.contains(&"set dhcp.freimesh_br_client.start='1'".to_owned()));
        assert!(commands.contains(&"set dhcp.freimesh_br_client.limit='253'".to_owned()));
        let mut small = settings(&[]);
        small.node_addresses = vec!["10.100.4.65/26".parse().unwrap_or_else(|e| panic!("{e}"))];
        let commands = batch_commands(&small);
        assert!(commands.contains(&"set dhcp.freimesh_br_client.start='2'".to_owned()));
        assert!(commands.contains(&"set dhcp.freimesh_br_client.limit='61'".to_owned()));
    }

    #[test]
    fn lease_times_use_the_largest_whole_unit() {
        let f = |s| format_lease_time(Duration::from_secs(s));
        assert_eq!(f(3600), "1h");
        assert_eq!(f(1800), "30m");
        assert_eq!(f(86_400 * 2), "2d");
        assert_eq!(f(604_800), "1w");
        assert_eq!(f(150), "150");
        assert_eq!(f(30), "2m", "raised to dnsmasq's minimum");
    }

    #[test]
    fn section_names_are_valid_uci_names() {
        assert_eq!(section_name("br-client"), "freimesh_br_client");
        assert_eq!(section_name("wlan0.1"), "freimesh_wlan0_1");
        assert_eq!(section_name("phy0_ap"), "freimesh_phy0_ap");
    }

    /// A stub `uci` and init scripts that log their arguments (and `uci
    /// batch`'s stdin) to `log`; `uci -q delete` fails unless the section
    /// was "created" by a batch, like the real one.
    fn stubs(dir: &Path) -> UciSettings {
        use std::os::unix::fs::PermissionsExt;
        let log = dir.join("log");
        let write = |name: &str, body: String| {
            let path = dir.join(name);
            std::fs::write(&path, body).unwrap_or_else(|e| panic!("write {name}: {e}"));
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
                .unwrap_or_else(|e| panic!("chmod {name}: {e}"));
        };
        let log_s = log.display();
        let state = dir.join("created").display().to_string();
        write(
            "uci",
            format!(
                "#!/bin/sh\necho \"uci $*\" >> {log_s}\n\
                 case \"$*\" in\n\
                 batch) sed 's/^/  /' >> {log_s}; touch {state} ;;\n\
                 '-q delete '*) [ -e {state} ] || exit 1; rm {state} ;;\n\
                 esac\n"
            ),
        );
        std::fs::create_dir(dir.join("init.d")).unwrap_or_else(|e| panic!("mkdir: {e}"));
        for service in ["dnsmasq", "odhcpd"] {
            write(
                &format!("init.d/{service}"),
                format!("#!/bin/sh\necho \"{service} $*\" >> {log_s}\n"),
            );
        }
        UciSettings {
            uci: dir.join("uci"),
            init_dir: dir.join("init.d"),
            lease_file: dir.join("dhcp.leases"),
            ..settings(&["9.9.9.9"])
        }
    }

    #[tokio::test]
    async fn apply_and_remove_drive_uci_and_reload_the_services() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let s = stubs(dir.path());
        let dhcp = UciDhcp::apply(&s)
            .await
            .unwrap_or_else(|e| panic!("apply: {e}"));
        assert_eq!(dhcp.lease_file(), dir.path().join("dhcp.leases"));
        let log = || std::fs::read_to_string(dir.path().join("log")).unwrap_or_default();
        let batch: String = batch_commands(&s)
            .iter()
            .map(|c| format!("  {c}\n"))
            .collect();
        assert_eq!(
            log(),
            format!(
                "uci -q delete dhcp.freimesh_br_client\nuci batch\n{batch}\
                 uci commit dhcp\ndnsmasq reload\nodhcpd reload\n"
            )
        );
        std::fs::remove_file(dir.path().join("log")).unwrap_or_else(|e| panic!("rm: {e}"));
        dhcp.remove()
            .await
            .unwrap_or_else(|e| panic!("remove: {e}"));
        assert_eq!(
            log(),
            "uci -q delete dhcp.freimesh_br_client\nuci commit dhcp\ndnsmasq reload\nodhcpd reload\n"
        );
        assert!(!dir.path().join("created").exists(), "section deleted");
    }

    #[tokio::test]
    async fn failures_name_the_command() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let s = stubs(dir.path());
        // A dnsmasq init script that fails.
        std::fs::write(
            dir.path().join("init.d/dnsmasq"),
            "#!/bin/sh\necho 'no such service' >&2\nexit 3\n",
        )
        .unwrap_or_else(|e| panic!("write: {e}"));
        let err = UciDhcp::apply(&s)
            .await
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        let script = dir.path().join("init.d/dnsmasq");
        assert!(
            err.contains(&format!("{} reload", script.display()))
                && err.contains("no such service"),
            "{err}"
        );
        // No uci at all.
        let missing = UciSettings {
            uci: dir.path().join("nope"),
            ..s
        };
        let err = UciDhcp::apply(&missing)
            .await
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            err.contains("nope -q delete dhcp.freimesh_br_client"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn without_odhcpd_dnsmasq_is_still_configured() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let s = stubs(dir.path());
        std::fs::remove_file(dir.path().join("init.d/odhcpd")).unwrap_or_else(|e| panic!("{e}"));
        let dhcp = UciDhcp::apply(&s)
            .await
            .unwrap_or_else(|e| panic!("apply: {e}"));
        let log = std::fs::read_to_string(dir.path().join("log")).unwrap_or_default();
        assert!(log.ends_with("uci commit dhcp\ndnsmasq reload\n"), "{log}");
        dhcp.remove()
            .await
            .unwrap_or_else(|e| panic!("remove: {e}"));
    }
}
