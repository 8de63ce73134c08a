//! The gateway and public Wi-Fi roles: what they set up in the kernel
//! around the local device, and the tasks that report their state to the
//! engine and the controller.

use std::sync::Arc;

use tokio::sync::mpsc;
use tokio::task::JoinSet;

use super::RunError;
use super::backend::KernelDevice;
use super::shell::{Outputs, Shared};
use crate::clock;
use crate::config::{AgentConfig, Backend};
use crate::controlplane::Upstream;
use crate::gateway::{CheckerSettings, Nat, UplinkProbe, UplinkSettings};
use crate::publicwifi::{self, DhcpMode, DhcpService, PublicWifi, PublicWifiSettings};

/// Verdicts of the uplink checker and client counts waiting for their
/// task: they change every few seconds at most.
const ROLE_QUEUE: usize = 8;

/// Gateways and public Wi-Fi need the kernel: refuse them early elsewhere.
pub(super) fn check_roles(config: &AgentConfig) -> Result<(), RunError> {
    if config.backend != Backend::Linux {
        if config.gateway.is_some() {
            return Err(RunError::NeedsLinux { section: "gateway" });
        }
        if config.public_wifi.is_some() {
            return Err(RunError::NeedsLinux {
                section: "public_wifi",
            });
        }
    }
    if config.public_wifi.is_some() && config.controller.is_none() {
        return Err(RunError::PublicWifiNeedsController);
    }
    Ok(())
}

/// What the gateway and public Wi-Fi roles set up in the kernel, to be
/// removed at shutdown.
#[derive(Default)]
pub(super) struct Roles {
    nat: Option<Nat>,
    public_wifi: Option<PublicWifi>,
}

impl Roles {
    pub(super) async fn stop(self) {
        if let Some(public_wifi) = self.public_wifi
            && let Err(err) = public_wifi.stop().await
        {
            tracing::warn!(%err, "public Wi-Fi cleanup");
        }
        if let Some(nat) = self.nat
            && let Err(err) = nat.remove().await
        {
            tracing::warn!(%err, "NAT cleanup");
        }
    }
}

/// Starts the gateway side (NAT, uplink checker) and the public Wi-Fi
/// side (client interface, firewall, dnsmasq or the system's DHCP/RA via
/// UCI, client count) as configured, around the kernel `device`.
pub(super) async fn start_roles(
    config: &AgentConfig,
    device: &KernelDevice,
    client_prefixes: &[ipnet::IpNet],
    shared: &Arc<Shared>,
    tasks: &mut JoinSet<()>,
) -> Result<Roles, RunError> {
    let mut roles = Roles::default();
    if let Some(gateway) = &config.gateway {
        let probe = UplinkProbe::open(UplinkSettings {
            interface: gateway.uplink.clone(),
            targets: gateway.check.clone(),
            checker: CheckerSettings {
                interval: gateway.check_interval,
                misses: gateway.check_misses,
            },
        })?;
        if gateway.nat {
            roles.nat = Some(Nat::install(&gateway.uplink, &config.linux.kernel_routes).await?);
        }
        let (tx, rx) = mpsc::channel(ROLE_QUEUE);
        tasks.spawn(probe.run(tx));
        tasks.spawn(uplink_task(shared.clone(), rx));
    }
    if let Some(public_wifi) = &config.public_wifi {
        // Clients' traffic is routed from their interface into the mesh.
        if let Err(err) = crate::gateway::nat::enable_forwarding() {
            roles.stop().await;
            return Err(err.into());
        }
        let state_dir = config
            .private_key_file
            .parent()
            .map(ToOwned::to_owned)
            .unwrap_or_default();
        let started = PublicWifi::start(&PublicWifiSettings {
            interface: public_wifi.interface.clone(),
            tun_name: device.name.clone(),
            tun_ifindex: device.ifindex,
            client_prefixes: client_prefixes.to_vec(),
            dhcp: match public_wifi.dhcp {
                DhcpMode::Dnsmasq => DhcpService::Dnsmasq {
                    binary: public_wifi.dnsmasq.clone(),
                },
                DhcpMode::OpenWrt => DhcpService::OpenWrt {
                    uci: public_wifi.uci.clone(),
                    init_dir: publicwifi::uci::DEFAULT_INIT_DIR.into(),
                    lease_file: publicwifi::uci::DEFAULT_LEASE_FILE.into(),
                    network: public_wifi.network.clone(),
                },
            },
            dns: public_wifi.dns.clone(),
            lease_time: public_wifi.lease_time,
            state_dir,
        })
        .await;
        let started = match started {
            Ok(started) => started,
            Err(err) => {
                roles.stop().await;
                return Err(err.into());
            }
        };
        let (tx, rx) = mpsc::channel(ROLE_QUEUE);
        tasks.spawn(publicwifi::watch_clients(
            started.lease_file().to_owned(),
            started.client_prefixes().to_vec(),
            tx,
        ));
        tasks.spawn(clients_task(shared.clone(), rx));
        roles.public_wifi = Some(started);
    }
    Ok(roles)
}

/// Hands the uplink checker's verdicts to the engine (which withdraws or
/// restores the default routes) and to the controller.
async fn uplink_task(shared: Arc<Shared>, mut verdicts: mpsc::Receiver<bool>) {
    let mut outputs = Outputs::default();
    while let Some(up) = verdicts.recv().await {
        if up {
            tracing::info!("uplink up");
        } else {
            tracing::warn!("uplink down");
        }
        shared
            .with_engine(&mut outputs, |engine| engine.set_uplink(up, clock::now()))
            .await;
        if let Some(upstream) = &shared.upstream
            && upstream.try_send(Upstream::Uplink(up)).is_err()
        {
            tracing::debug!("controller queue full: uplink state not reported");
        }
    }
}

/// Sends the public Wi-Fi client count to the controller when it changes
/// (and keeps it for respondd).
async fn clients_task(shared: Arc<Shared>, mut counts: mpsc::Receiver<u32>) {
    while let Some(count) = counts.recv().await {
        shared
            .public_wifi_clients
            .store(count, std::sync::atomic::Ordering::Relaxed);
        if let Some(upstream) = &shared.upstream
            && upstream.try_send(Upstream::Clients(count)).is_err()
        {
            tracing::debug!("controller queue full: client count not reported");
        }
    }
}
