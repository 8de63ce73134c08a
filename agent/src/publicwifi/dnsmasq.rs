//! dnsmasq for the client interface: DHCPv4 over the node's IPv4 client
//! subnet and router advertisements (SLAAC) for its /64. The config is
//! rendered here (deterministic, tested) and dnsmasq runs as a child of
//! the agent in the foreground, restarted with backoff if it dies and
//! stopped with the agent.
//!
//! Privacy: dnsmasq logs every DHCP exchange with the client's MAC and
//! address by default. The config turns routine logging off (`quiet-dhcp`,
//! `quiet-dhcp6`, `quiet-ra`, never `log-dhcp` or `log-queries`) and sends
//! what is left to `/dev/null` (`log-facility`), because some warnings
//! (e.g. "no address available") still name the client. Fatal start-up
//! errors still reach the agent's stderr, and they name no client.
//!
//! DNS: with `[public_wifi] dns` set, dnsmasq's DNS is off (`port=0`) and
//! clients get those servers; with it empty, dnsmasq answers DNS on the
//! client address (not on loopback, so it never collides with the host's
//! own resolver) by forwarding to the host's resolvers, without
//! `/etc/hosts` (intranet names are no business of public clients).

use std::{
    net::IpAddr,
    path::{Path, PathBuf},
    process::Stdio,
    time::{Duration, Instant},
};

use ipnet::IpNet;
use tokio::{process::Command, sync::watch, task::JoinHandle};

use super::PublicWifiError;

/// The first wait before restarting a dnsmasq that died.
const RESTART_MIN: Duration = Duration::from_secs(1);
/// The longest wait between restarts.
const RESTART_MAX: Duration = Duration::from_secs(60);
/// dnsmasq refuses leases under two minutes.
const MIN_LEASE: Duration = Duration::from_secs(120);

/// What dnsmasq serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsmasqSettings {
    /// The dnsmasq program (a name looked up in `PATH`, or a path).
    pub binary: PathBuf,
    /// The client interface.
    pub interface: String,
    /// The node's addresses on it, with the client prefix length
    /// (`10.100.4.1/24`, `fd99:0:0:104::1/64`).
    pub node_addresses: Vec<IpNet>,
    /// DNS servers for clients; empty = dnsmasq answers itself.
    pub dns: Vec<IpAddr>,
    pub lease_time: Duration,
    /// Where the config and the lease file go.
    pub state_dir: PathBuf,
}

impl DnsmasqSettings {
    pub fn config_file(&self) -> PathBuf {
        self.state_dir
            .join(format!("dnsmasq-{}.conf", self.interface))
    }

    pub fn lease_file(&self) -> PathBuf {
        self.state_dir
            .join(format!("dnsmasq-{}.leases", self.interface))
    }

    /// Where the agent notes the pid of the dnsmasq it runs, so the next
    /// start can end one a killed agent left behind.
    pub fn pid_file(&self) -> PathBuf {
        self.state_dir
            .join(format!("dnsmasq-{}.pid", self.interface))
    }
}

/// Ends a dnsmasq that a previous agent (killed with SIGKILL, so it could
/// not stop its child) left running with our config: it would hold the
/// DHCP port and the interface. Only a process whose command line names
/// our config file is touched.
fn end_stale(settings: &DnsmasqSettings) {
    let pid_file = settings.pid_file();
    let Ok(text) = std::fs::read_to_string(&pid_file) else {
        return;
    };
    let _ = std::fs::remove_file(&pid_file);
    let Ok(pid) = text.trim().parse::<u32>() else {
        return;
    };
    let ours = format!("--conf-file={}", settings.config_file().display());
    let runs_ours = |pid: u32| {
        std::fs::read(format!("/proc/{pid}/cmdline"))
            .map(|cmdline| cmdline.split(|b| *b == 0).any(|arg| arg == ours.as_bytes()))
            .unwrap_or(false)
    };
    if !runs_ours(pid) {
        return;
    }
    tracing::warn!(pid, "ending the dnsmasq a previous agent left running");
    for signal in ["-TERM", "-KILL"] {
        let _ = std::process::Command::new("kill")
            .arg(signal)
            .arg(pid.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        for _ in 0..20 {
            if !runs_ours(pid) {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
}

fn note_pid(pid_file: &Path, child: &tokio::process::Child) {
    if let Some(pid) = child.id()
        && let Err(err) = std::fs::write(pid_file, format!("{pid}\n"))
    {
        tracing::warn!(%err, path = %pid_file.display(), "cannot note dnsmasq's pid");
    }
}

/// The dnsmasq config for `settings`.
pub fn render_config(settings: &DnsmasqSettings) -> String {
    let interface = &settings.interface;
    let lease = settings.lease_time.max(MIN_LEASE).as_secs();
    let mut c = String::new();
    let mut line = |text: &str| {
        c.push_str(text);
        c.push('\n');
    };
    line("# Written by freimesh-agent on every start; changes are lost.");
    line(&format!("interface={interface}"));
    line("except-interface=lo");
    line("bind-interfaces");
    line("pid-file=");
    line("dhcp-authoritative");
    line("quiet-dhcp");
    line("quiet-dhcp6");
    line("quiet-ra");
    line("log-facility=/dev/null");
    line("no-hosts");
    line(&format!(
        "dhcp-leasefile={}",
        settings.lease_file().display()
    ));
    let (v4, v6) = super::dns_by_family(&settings.dns);
    let dns_v4: Vec<String> = v4.iter().map(ToString::to_string).collect();
    let dns_v6: Vec<String> = v6.iter().map(|ip| format!("[{ip}]")).collect();
    if settings.dns.is_empty() {
        line("port=53");
    } else {
        line("port=0");
    }
    for address in &settings.node_addresses {
        match address {
            IpNet::V4(net) => {
                let own = net.addr();
                let Some((first, last)) = pool(*net) else {
                    continue;
                };
                line(&format!(
                    "dhcp-range={first},{last},{},{lease}",
                    net.netmask()
                ));
                line(&format!("dhcp-option=option:router,{own}"));
                if settings.dns.is_empty() {
                    line(&format!("dhcp-option=option:dns-server,{own}"));
                } else if !dns_v4.is_empty() {
                    line(&format!(
                        "dhcp-option=option:dns-server,{}",
                        dns_v4.join(",")
                    ));
                }
            }
            IpNet::V6(net) => {
                line("enable-ra");
                line(&format!(
                    "dhcp-range=::,constructor:{interface},ra-only,{},{lease}",
                    net.prefix_len()
                ));
                if settings.dns.is_empty() {
                    line(&format!("dhcp-option=option6:dns-server,[{}]", net.addr()));
                } else if !dns_v6.is_empty() {
                    line(&format!(
                        "dhcp-option=option6:dns-server,{}",
                        dns_v6.join(",")
                    ));
                }
            }
        }
    }
    c
}

/// The addresses dnsmasq may hand out in the node's IPv4 subnet: every
/// host but the node's own (the first, by construction, or the last).
pub(super) fn pool(net: ipnet::Ipv4Net) -> Option<(std::net::Ipv4Addr, std::net::Ipv4Addr)> {
    if net.prefix_len() >= 31 {
        return None;
    }
    let own = u32::from(net.addr());
    let mut first = u32::from(net.network()) + 1;
    let mut last = u32::from(net.broadcast()) - 1;
    if own == first {
        first += 1;
    }
    if own == last {
        last -= 1;
    }
    (first <= last).then(|| (first.into(), last.into()))
}

/// dnsmasq running as a child of the agent.
#[derive(Debug)]
pub struct Dnsmasq {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
    lease_file: PathBuf,
}

impl Dnsmasq {
    /// Writes the config and starts dnsmasq. A dnsmasq that cannot be
    /// started at all (not installed) is an error here; one that dies
    /// later is restarted with backoff.
    pub async fn start(settings: &DnsmasqSettings) -> Result<Self, PublicWifiError> {
        std::fs::create_dir_all(&settings.state_dir).map_err(|cause| {
            PublicWifiError::StateDir {
                path: settings.state_dir.display().to_string(),
                cause,
            }
        })?;
        let config_file = settings.config_file();
        std::fs::write(&config_file, render_config(settings)).map_err(|cause| {
            PublicWifiError::StateDir {
                path: config_file.display().to_string(),
                cause,
            }
        })?;
        end_stale(settings);
        let binary = settings.binary.clone();
        let pid_file = settings.pid_file();
        let child = spawn(&binary, &config_file)?;
        note_pid(&pid_file, &child);
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(supervise(binary, config_file, pid_file, child, stopped));
        tracing::info!(interface = %settings.interface, "dnsmasq started");
        Ok(Self {
            stop,
            task,
            lease_file: settings.lease_file(),
        })
    }

    /// The lease file dnsmasq writes.
    pub fn lease_file(&self) -> &Path {
        &self.lease_file
    }

    /// Stops dnsmasq and waits for it to exit.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

fn spawn(binary: &Path, config_file: &Path) -> Result<tokio::process::Child, PublicWifiError> {
    Command::new(binary)
        .arg("--keep-in-foreground")
        .arg(format!("--conf-file={}", config_file.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        // Only fatal start-up errors reach stderr (see the module docs).
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .map_err(|cause| PublicWifiError::Dnsmasq {
            binary: binary.display().to_string(),
            cause,
        })
}

/// Waits for dnsmasq to exit and restarts it, waiting longer after each
/// quick death (1 s doubling to 60 s; back to 1 s after a minute of
/// running), until told to stop.
async fn supervise(
    binary: PathBuf,
    config_file: PathBuf,
    pid_file: PathBuf,
    mut child: tokio::process::Child,
    mut stopped: watch::Receiver<bool>,
) {
    let mut backoff = RESTART_MIN;
    loop {
        let started = Instant::now();
        tokio::select! {
            status = child.wait() => {
                tracing::warn!(?status, "dnsmasq exited; restarting in {backoff:?}");
            }
            _ = stopped.changed() => {
                let _ = child.start_kill();
                let _ = child.wait().await;
                let _ = std::fs::remove_file(&pid_file);
                tracing::info!("dnsmasq stopped");
                return;
            }
        }
        if started.elapsed() > RESTART_MAX {
            backoff = RESTART_MIN;
        }
        tokio::select! {
            () = tokio::time::sleep(backoff) => {}
            _ = stopped.changed() => return,
        }
        backoff = (backoff * 2).min(RESTART_MAX);
        child = loop {
            match spawn(&binary, &config_file) {
                Ok(child) => {
                    note_pid(&pid_file, &child);
                    break child;
                }
                Err(err) => {
                    tracing::warn!(%err, "restarting dnsmasq failed; retrying in {backoff:?}");
                    tokio::select! {
                        () = tokio::time::sleep(backoff) => {}
                        _ = stopped.changed() => return,
                    }
                    backoff = (backoff * 2).min(RESTART_MAX);
                }
            }
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dnsmasq_left_by_a_killed_agent_is_ended_and_nothing_else() {
        let dir = tempfile::tempdir().expect("tempdir");
        let settings = DnsmasqSettings {
            state_dir: dir.path().to_owned(),
            ..settings(&[])
        };
        // Stand-ins whose command lines do and do not name our config.
        // `; true` keeps the shell from exec'ing sleep (which would drop
        // our argument from the command line); wait until the shell runs.
        let spawn_with = |arg: String| {
            let child = std::process::Command::new("sh")
                .args(["-c", "sleep 30; true", &arg])
                .spawn()
                .expect("sh");
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
            while !std::fs::read(format!("/proc/{}/cmdline", child.id()))
                .is_ok_and(|c| c.split(|b| *b == 0).any(|a| a == arg.as_bytes()))
            {
                assert!(std::time::Instant::now() < deadline, "sh never started");
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            child
        };
        let mut ours = spawn_with(format!("--conf-file={}", settings.config_file().display()));
        let mut other = spawn_with("--conf-file=/elsewhere.conf".into());
        std::fs::write(settings.pid_file(), format!("{}\n", ours.id())).expect("pid file");
        end_stale(&settings);
        let status = ours.wait().expect("wait");
        assert!(!status.success(), "ended by a signal");
        assert!(!settings.pid_file().exists(), "pid file consumed");
        // Another process under a recycled pid is left alone.
        std::fs::write(settings.pid_file(), format!("{}\n", other.id())).expect("pid file");
        end_stale(&settings);
        assert!(
            other.try_wait().expect("try_wait").is_none(),
            "still running"
        );
        other.kill().expect("kill");
        let _ = other.wait();
    }

    fn settings(dns: &[&str]) -> DnsmasqSettings {
        DnsmasqSettings {
            binary: "dnsmasq".into(),
            interface: "wlan0".into(),
            node_addresses: ["10.100.4.1/24", "fd99:0:0:104::1/64"]
                .iter()
                .filter_map(|s| s.parse().ok())
                .collect(),
            dns: dns.iter().filter_map(|s| s.parse().ok()).collect(),
            lease_time: Duration::from_secs(3600),
            state_dir: "/var/lib/freimesh".into(),
        }
    }

    #[test]
    fn config_with_dns_servers() {
        assert_eq!(
            render_config(&settings(&["9.9.9.9", "2620:fe::fe", "1.1.1.1"])),
            "# Written by freimesh-agent on every start; changes are lost.
interface=wlan0
except-interface=lo
bind-interfaces
pid-file=
dhcp-authoritative
quiet-dhcp
quiet-dhcp6
quiet-ra
log-facility=/dev/null
no-hosts
dhcp-leasefile=/var/lib/freimesh/dnsmasq-wlan0.leases
port=0
dhcp-range=10.100.4.2,10.100.4.254,255.255.255.0,3600
dhcp-option=option:router,10.100.4.1
dhcp-option=option:dns-server,9.9.9.9,1.1.1.1
enable-ra
dhcp-range=::,constructor:wlan0,ra-only,64,3600
dhcp-option=option6:dns-server,[2620:fe::fe]
"
        );
    }

    #[test]
    fn without_dns_servers_dnsmasq_answers_on_the_client_address() {
        let config = render_config(&settings(&[]));
        assert!(config.contains("\nport=53\n"));
        assert!(config.contains("\ndhcp-option=option:dns-server,10.100.4.1\n"));
        assert!(config.contains("\ndhcp-option=option6:dns-server,[fd99:0:0:104::1]\n"));
        assert!(!config.contains("log-dhcp"));
        assert!(!config.contains("log-queries"));
    }

    #[test]
    fn short_leases_are_raised_to_dnsmasqs_minimum() {
        let mut short = settings(&["9.9.9.9"]);
        short.lease_time = Duration::from_secs(30);
        assert!(render_config(&short).contains(",255.255.255.0,120\n"));
    }

    #[test]
    fn pool_skips_the_node_and_tiny_subnets_have_none() {
        let net = |s: &str| s.parse::<ipnet::Ipv4Net>().unwrap_or_default();
        assert_eq!(
            pool(net("10.100.4.1/24")),
            Some(([10, 100, 4, 2].into(), [10, 100, 4, 254].into()))
        );
        assert_eq!(
            pool(net("10.100.4.254/24")),
            Some(([10, 100, 4, 1].into(), [10, 100, 4, 253].into()))
        );
        assert_eq!(
            pool(net("10.100.4.1/30")),
            Some(([10, 100, 4, 2].into(), [10, 100, 4, 2].into()))
        );
        assert_eq!(pool(net("10.100.4.1/31")), None);
    }

    #[test]
    fn config_is_accepted_by_dnsmasq_when_installed() {
        if std::process::Command::new("dnsmasq")
            .arg("--version")
            .output()
            .is_err()
        {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI must have dnsmasq installed (Debian package dnsmasq-base)"
            );
            return;
        }
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let mut s = settings(&["9.9.9.9", "2620:fe::fe"]);
        s.state_dir = dir.path().to_owned();
        let file = s.config_file();
        std::fs::write(&file, render_config(&s)).unwrap_or_else(|e| panic!("write: {e}"));
        let output = std::process::Command::new("dnsmasq")
            .arg("--test")
            .arg(format!("--conf-file={}", file.display()))
            .output()
            .unwrap_or_else(|e| panic!("dnsmasq: {e}"));
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
}
