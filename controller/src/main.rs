//! `freimesh-controller`: parses the command line, sets up logging and calls
//! the library (`freimesh_controller::{admin, server}`).

use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use freimesh_controller::{admin, api, server};
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

#[derive(Debug, Parser)]
#[command(
    name = "freimesh-controller",
    version,
    about = "freimesh controller: registry, addresses, routes"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create the mesh database and the controller key; prints the public key.
    Init {
        #[arg(long)]
        ula: Ipv6Net,
        #[arg(long)]
        ipv4: Ipv4Net,
        #[arg(long)]
        db: PathBuf,
        /// Nodes without a token wait for `node approve`.
        #[arg(long)]
        approval: bool,
        /// The public Wi-Fi client pool (e.g. 10.100.0.0/16): each public
        /// node gets one subnet of it (and a /64 from the ULA).
        #[arg(long)]
        clients_ipv4: Option<Ipv4Net>,
        /// The length of each public node's IPv4 subnet.
        #[arg(long, default_value_t = freimesh_controller::store::DEFAULT_CLIENT_SUBNET_LEN)]
        client_subnet_len: u8,
    },
    /// Serve agents.
    Run {
        #[arg(long)]
        db: PathBuf,
        #[arg(long, default_value = "0.0.0.0:7700")]
        listen: std::net::SocketAddr,
        #[arg(long)]
        require_approval: bool,
        /// Where the admin API listens (`docs/api.md`), or `off`; default
        /// 127.0.0.1:7780. If the default address is taken the controller
        /// serves agents without the API; an address given here must bind.
        #[arg(long)]
        api: Option<String>,
        /// Serve the admin API over TLS with this PEM certificate chain.
        #[arg(long, requires = "api_tls_key")]
        api_tls_cert: Option<PathBuf>,
        /// The PEM private key of --api-tls-cert.
        #[arg(long, requires = "api_tls_cert")]
        api_tls_key: Option<PathBuf>,
        /// Allow the admin API over plain HTTP on a non-loopback --api
        /// address (operator tokens then cross the network in clear text).
        #[arg(long)]
        insecure_plain_http: bool,
        /// How long a node's membership credential is valid (renewed when
        /// half is left): the longest a revoked node that no agent heard
        /// of can still link while the controller is away.
        #[arg(long, default_value = "7d", value_parser = admin::parse_duration)]
        credential_lifetime: std::time::Duration,
    },
    /// Print the controller's public keys: the control key agents pin
    /// (`[controller] public_key`) and the signing key credentials verify
    /// against.
    Keys {
        #[arg(long)]
        db: PathBuf,
    },
    /// Operators of the admin API and their tokens.
    Operator {
        #[command(subcommand)]
        command: OperatorCommand,
    },
    /// Join tokens.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Nodes.
    Node {
        #[command(subcommand)]
        command: NodeCommand,
    },
    /// Node roles (gateway, public Wi-Fi): a node's Hello only requests
    /// them; they take effect once approved here.
    Role {
        #[command(subcommand)]
        command: RoleCommand,
    },
    /// Approved extra prefixes.
    Prefix {
        #[command(subcommand)]
        command: PrefixCommand,
    },
    /// Links between nodes (operator policy).
    Link {
        #[command(subcommand)]
        command: LinkCommand,
    },
    /// Address pools.
    Pool {
        #[command(subcommand)]
        command: PoolCommand,
    },
    /// Standard WireGuard sites (buildings without the agent).
    Site {
        #[command(subcommand)]
        command: SiteCommand,
    },
}

#[derive(Debug, Subcommand)]
enum PoolCommand {
    /// Set the public Wi-Fi client pool of a mesh created without one.
    Clients {
        #[arg(long)]
        ipv4: Ipv4Net,
        /// The length of each public node's IPv4 subnet.
        #[arg(long, default_value_t = freimesh_controller::store::DEFAULT_CLIENT_SUBNET_LEN)]
        subnet_len: u8,
        #[arg(long)]
        db: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum SiteCommand {
    /// Add a site behind node --via with its LAN prefixes.
    Add {
        name: String,
        #[arg(long)]
        via: u32,
        /// A LAN prefix of the site (repeatable, at least one).
        #[arg(long, required = true)]
        prefix: Vec<IpNet>,
        /// The site's own WireGuard public key; without it the controller
        /// generates a keypair and `site export` prints the private key.
        #[arg(long)]
        public_key: Option<String>,
        #[arg(long)]
        db: PathBuf,
    },
    /// Print the site's wg-quick config.
    Export {
        name: String,
        /// The via node's address as the site reaches it (default: the
        /// first endpoint the node announced).
        #[arg(long)]
        endpoint: Option<String>,
        #[arg(long)]
        db: PathBuf,
    },
    List {
        #[arg(long)]
        db: PathBuf,
    },
    Remove {
        name: String,
        #[arg(long)]
        db: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum TokenCommand {
    /// Print a new one-time join token.
    Create {
        #[arg(long)]
        db: PathBuf,
        /// How long the token stays valid: 30m, 24h, 7d.
        #[arg(long, default_value = "24h")]
        expires: String,
        /// A prefix approved for the node enrolling with this token (repeatable).
        #[arg(long)]
        prefix: Vec<IpNet>,
        /// Roles approved for the node enrolling with this token:
        /// `gateway`, `public-wifi` (comma-separated or repeated).
        #[arg(long, value_delimiter = ',')]
        roles: Vec<freimesh_proto::api::Role>,
    },
}

#[derive(Debug, Subcommand)]
enum RoleCommand {
    /// Approve a role for a node: it takes effect at once if the node
    /// requests it, or as soon as it does.
    Approve {
        node: u32,
        /// `gateway` or `public-wifi`.
        role: freimesh_proto::api::Role,
        #[arg(long)]
        db: PathBuf,
    },
    /// Withdraw a role's approval: the node is an ordinary node again.
    Revoke {
        node: u32,
        /// `gateway` or `public-wifi`.
        role: freimesh_proto::api::Role,
        #[arg(long)]
        db: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum OperatorCommand {
    /// Add an operator; prints its API token (shown only this once).
    Add {
        name: String,
        #[arg(long)]
        db: PathBuf,
        /// `read`: GET endpoints, event stream, /metrics, meshviewer export
        /// only (for Prometheus, maps, dashboards); `full`: actions too.
        #[arg(long, default_value = "full", value_parser = ["read", "full"])]
        scope: String,
        /// How long the token works: 30m, 24h, 90d (default: until removed).
        #[arg(long)]
        expires: Option<String>,
    },
    List {
        #[arg(long)]
        db: PathBuf,
    },
    /// Remove an operator: its token stops working.
    Remove {
        name: String,
        #[arg(long)]
        db: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum NodeCommand {
    List {
        #[arg(long)]
        db: PathBuf,
    },
    Approve {
        id: u32,
        #[arg(long)]
        db: PathBuf,
    },
    /// Revoke a node: its key is refused and its links are torn down.
    Revoke {
        id: u32,
        #[arg(long)]
        db: PathBuf,
    },
    /// Drain a node (no transit traffic) or undrain it with --off.
    Drain {
        id: u32,
        #[arg(long)]
        db: PathBuf,
        #[arg(long)]
        off: bool,
    },
}

#[derive(Debug, Subcommand)]
enum LinkCommand {
    /// Set a link's cost (operator policy: prefer the municipal backbone,
    /// avoid a metered uplink); it replaces the cost measured from RTT and
    /// loss. `--clear` goes back to the measured cost.
    Cost {
        a: u32,
        b: u32,
        /// 1 to 262144; a hop on a clean, fast link costs about 1000.
        #[arg(required_unless_present = "clear", value_parser = clap::value_parser!(u32).range(1..=262_144))]
        cost: Option<u32>,
        #[arg(long)]
        clear: bool,
        #[arg(long)]
        db: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum PrefixCommand {
    Approve {
        node: u32,
        prefix: IpNet,
        #[arg(long)]
        db: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // `RUST_LOG` takes `target=level` pairs, as in the agent.
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|spec| spec.parse::<tracing_subscriber::filter::Targets>().ok())
        .unwrap_or_else(|| {
            tracing_subscriber::filter::Targets::new().with_default(tracing::Level::INFO)
        });
    tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(
                    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none(),
                ),
        )
        .with(filter)
        .init();
    match execute(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // The whole chain, once, without a backtrace.
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn execute(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Init {
            ula,
            ipv4,
            db,
            approval,
            clients_ipv4,
            client_subnet_len,
        } => {
            let clients = clients_ipv4.map(|ipv4| admin::ClientPool {
                ipv4,
                subnet_len: client_subnet_len,
            });
            let public = admin::init_with_clients(&db, ula, ipv4, approval, clients)
                .with_context(|| format!("initialising {}", db.display()))?;
            // Created now, so it can be pinned before the first start;
            // stdout stays the one key agents must pin.
            let keys = admin::keys(&db).with_context(|| format!("reading {}", db.display()))?;
            eprintln!("credential signing key: {}", keys.signing.to_base64());
            println!("{public}");
        }
        Command::Run {
            db,
            listen,
            require_approval,
            api,
            api_tls_cert,
            api_tls_key,
            insecure_plain_http,
            credential_lifetime,
        } => {
            // Every session holds a descriptor: take what the system allows.
            let descriptors = match server::limits::raise_descriptor_limit() {
                Ok(d) => {
                    tracing::info!(descriptors = d, "open file limit (RLIMIT_NOFILE)");
                    Some(d)
                }
                Err(e) => {
                    tracing::warn!(error = %e, "could not raise the open file limit (RLIMIT_NOFILE)");
                    None
                }
            };
            let tls = api_tls_cert
                .zip(api_tls_key)
                .map(|(cert, key)| api::TlsFiles { cert, key });
            let api_options = |listen| api::ApiOptions {
                listen,
                tls: tls.clone(),
                insecure_plain_http,
                limits: descriptors
                    .map_or_else(api::ApiLimits::default, api::ApiLimits::for_descriptors),
            };
            let (api, required) = match api.as_deref() {
                Some("off") => (None, false),
                Some(addr) => {
                    let listen = addr
                        .parse()
                        .with_context(|| format!("--api {addr}: an address:port or `off`"))?;
                    (Some(api_options(listen)), true)
                }
                None => {
                    let listen = api::DEFAULT_LISTEN.parse().context("default API address")?;
                    (Some(api_options(listen)), false)
                }
            };
            let limits = match descriptors {
                Some(d) => server::Limits::for_descriptors(d),
                None => server::Limits::default(),
            };
            let rt = tokio::runtime::Runtime::new().context("starting the tokio runtime")?;
            let opts = server::Options {
                db,
                listen,
                require_approval,
            };
            rt.block_on(async {
                let mut server =
                    server::Server::bind_with_lifetime(&opts, credential_lifetime).await?;
                server.set_limits(limits);
                if let Some(api) = &api {
                    match server.bind_api(api) {
                        Ok(_) => {}
                        // The control channel matters more than the API: a
                        // second controller on one host still serves agents.
                        Err(e @ server::ServerError::Api(api::ApiError::Bind { .. }))
                            if !required =>
                        {
                            tracing::error!("{e}; serving agents without the admin API (--api ADDR to choose another address)");
                        }
                        Err(e) => return Err(e),
                    }
                }
                server
                    .run(async {
                        let _ = tokio::signal::ctrl_c().await;
                    })
                    .await
            })
            .context("controller server")?;
        }
        Command::Keys { db } => {
            let keys = admin::keys(&db).with_context(|| format!("reading {}", db.display()))?;
            println!("control {}", keys.control);
            println!("signing {}", keys.signing.to_base64());
        }
        Command::Operator { command } => match command {
            OperatorCommand::Add {
                name,
                db,
                scope,
                expires,
            } => {
                let scope = scope.parse().context("--scope")?;
                let valid = expires
                    .as_deref()
                    .map(admin::parse_duration)
                    .transpose()
                    .context("--expires")?;
                println!("{}", admin::operator_add_scoped(&db, &name, scope, valid)?);
            }
            OperatorCommand::List { db } => {
                let now = admin::unix_now();
                for op in admin::operator_list(&db)? {
                    println!("{}", admin::format_operator(&op, now));
                }
            }
            OperatorCommand::Remove { name, db } => admin::operator_remove(&db, &name)?,
        },
        Command::Token {
            command:
                TokenCommand::Create {
                    db,
                    expires,
                    prefix,
                    roles,
                },
        } => {
            let valid = admin::parse_duration(&expires).context("--expires")?;
            println!(
                "{}",
                admin::token_create_with_roles(&db, valid, &prefix, &roles)?
            );
        }
        Command::Role { command } => {
            let node = match command {
                RoleCommand::Approve { node, role, db } => {
                    admin::role_approve(&db, node, role, true)?
                }
                RoleCommand::Revoke { node, role, db } => {
                    admin::role_approve(&db, node, role, false)?
                }
            };
            println!("{}", admin::format_node(&node));
        }
        Command::Node { command } => match command {
            NodeCommand::List { db } => {
                for node in admin::node_list(&db)? {
                    println!("{}", admin::format_node(&node));
                }
            }
            NodeCommand::Approve { id, db } => {
                let node = admin::node_approve(&db, id)?;
                println!("{}", admin::format_node(&node));
            }
            NodeCommand::Revoke { id, db } => admin::node_revoke(&db, id)?,
            NodeCommand::Drain { id, db, off } => admin::node_drain(&db, id, !off)?,
        },
        Command::Prefix {
            command: PrefixCommand::Approve { node, prefix, db },
        } => {
            admin::prefix_approve(&db, node, prefix)?;
        }
        Command::Link {
            command:
                LinkCommand::Cost {
                    a,
                    b,
                    cost,
                    clear,
                    db,
                },
        } => {
            admin::link_cost(&db, a, b, if clear { None } else { cost })?;
        }
        Command::Pool {
            command:
                PoolCommand::Clients {
                    ipv4,
                    subnet_len,
                    db,
                },
        } => admin::pool_clients(&db, admin::ClientPool { ipv4, subnet_len })?,
        Command::Site { command } => match command {
            SiteCommand::Add {
                name,
                via,
                prefix,
                public_key,
                db,
            } => {
                let key = public_key
                    .map(|k| freimesh_proto::PublicKeyBytes::from_base64(&k))
                    .transpose()
                    .map_err(|e| anyhow::anyhow!("--public-key: {e}"))?;
                let site = admin::site_add(&db, &name, via, &prefix, key)?;
                println!("{}", admin::format_site(&site));
            }
            SiteCommand::Export { name, endpoint, db } => {
                print!("{}", admin::site_export(&db, &name, endpoint.as_deref())?);
            }
            SiteCommand::List { db } => {
                for site in admin::site_list(&db)? {
                    println!("{}", admin::format_site(&site));
                }
            }
            SiteCommand::Remove { name, db } => admin::site_remove(&db, &name)?,
        },
    }
    Ok(())
}
