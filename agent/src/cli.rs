//! The agent's command line, parsed by hand: a router's flash is small, and
//! a general argument parser cost this binary more than a tenth of its size
//! for six subcommands. Parsing is pure and tested here; `main.rs` only acts
//! on the result.

use std::ffi::OsString;
use std::net::IpAddr;
use std::path::PathBuf;

/// What the user asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Run the agent with a configuration file.
    Run {
        config: PathBuf,
    },
    /// Check a configuration file.
    Check {
        config: PathBuf,
    },
    /// Print a new private key.
    Genkey,
    /// Read a private key on stdin, print its public key.
    Pubkey,
    /// Show the running agent's links, routes and events.
    Status {
        target: SocketTarget,
        json: bool,
    },
    /// Ping an overlay address from the agent's own stack.
    Ping {
        target: SocketTarget,
        address: IpAddr,
        count: u16,
    },
    Version,
    Help,
}

/// How to find a running agent's control socket.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum SocketTarget {
    /// The default path.
    #[default]
    Default,
    Socket(PathBuf),
    /// Read the path from this configuration file.
    Config(PathBuf),
}

/// The usage text `--help` prints.
pub const USAGE: &str = "\
freimesh-agent: an encrypted multi-hop WireGuard mesh node

Usage: freimesh-agent <COMMAND>

Commands:
  run CONFIG                  run the agent (see docs/agent-config.md)
  check CONFIG                check a configuration file; names the first problem
  genkey                      print a new private key (WireGuard's base64 form)
  pubkey                      read a private key on stdin, print its public key
  status [TARGET] [--json]    show the running agent's links, routes and events
  ping [TARGET] [-c N] ADDR   ping ADDR from the agent's own stack (userspace backend)

TARGET: --socket PATH (the control socket) or --config FILE (take it from the config)

Options:
  -h, --help     print this help
  -V, --version  print the version";

/// A command line that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}\n\nRun `freimesh-agent --help` for usage.")]
pub struct UsageError(String);

fn usage(message: impl Into<String>) -> UsageError {
    UsageError(message.into())
}

/// Parses the arguments after the program name.
pub fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Command, UsageError> {
    let args: Vec<String> = args
        .into_iter()
        .map(|a| {
            a.into_string()
                .map_err(|a| usage(format!("argument {a:?} is not valid UTF-8")))
        })
        .collect::<Result<_, _>>()?;
    let mut rest = args.iter().map(String::as_str);
    let Some(command) = rest.next() else {
        return Err(usage("a command is missing"));
    };
    let rest: Vec<&str> = rest.collect();
    match command {
        "-V" | "--version" | "version" => no_more(Command::Version, &rest),
        "-h" | "--help" | "help" => Ok(Command::Help),
        "run" => Ok(Command::Run {
            config: one_path("run", &rest)?,
        }),
        "check" => Ok(Command::Check {
            config: one_path("check", &rest)?,
        }),
        "genkey" => no_more(Command::Genkey, &rest),
        "pubkey" => no_more(Command::Pubkey, &rest),
        "status" => {
            let mut target = SocketTarget::Default;
            let mut json = false;
            let mut words = rest.iter();
            while let Some(word) = words.next() {
                match *word {
                    "--json" => json = true,
                    "--socket" | "--config" => target = socket_target(word, words.next(), &target)?,
                    "-h" | "--help" => return Ok(Command::Help),
                    other => return Err(usage(format!("status: unexpected argument {other:?}"))),
                }
            }
            Ok(Command::Status { target, json })
        }
        "ping" => {
            let mut target = SocketTarget::Default;
            let mut count: u16 = 4;
            let mut address = None;
            let mut words = rest.iter();
            while let Some(word) = words.next() {
                match *word {
                    "--socket" | "--config" => target = socket_target(word, words.next(), &target)?,
                    "-c" | "--count" => {
                        let value = words
                            .next()
                            .ok_or_else(|| usage(format!("ping: {word} needs a number")))?;
                        count = value
                            .parse()
                            .ok()
                            .filter(|c| (1..=100).contains(c))
                            .ok_or_else(|| {
                                usage(format!("ping: {word} {value}: a count from 1 to 100"))
                            })?;
                    }
                    "-h" | "--help" => return Ok(Command::Help),
                    other if address.is_none() && !other.starts_with('-') => {
                        address =
                            Some(other.parse().map_err(|_| {
                                usage(format!("ping: {other:?} is not an IP address"))
                            })?);
                    }
                    other => return Err(usage(format!("ping: unexpected argument {other:?}"))),
                }
            }
            let address = address.ok_or_else(|| usage("ping: the address to ping is missing"))?;
            Ok(Command::Ping {
                target,
                address,
                count,
            })
        }
        other => Err(usage(format!("unknown command {other:?}"))),
    }
}

fn no_more(command: Command, rest: &[&str]) -> Result<Command, UsageError> {
    match rest.first() {
        None => Ok(command),
        Some(extra) => Err(usage(format!("unexpected argument {extra:?}"))),
    }
}

fn one_path(command: &str, rest: &[&str]) -> Result<PathBuf, UsageError> {
    match rest {
        [path] if !path.starts_with('-') => Ok(PathBuf::from(path)),
        [] => Err(usage(format!(
            "{command}: the configuration file is missing"
        ))),
        _ => Err(usage(format!(
            "{command} takes one configuration file, got {rest:?}"
        ))),
    }
}

fn socket_target(
    flag: &str,
    value: Option<&&str>,
    current: &SocketTarget,
) -> Result<SocketTarget, UsageError> {
    if *current != SocketTarget::Default {
        return Err(usage("give either --socket or --config, once"));
    }
    let path = PathBuf::from(value.ok_or_else(|| usage(format!("{flag} needs a path")))?);
    Ok(if flag == "--socket" {
        SocketTarget::Socket(path)
    } else {
        SocketTarget::Config(path)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(args: &[&str]) -> Result<Command, UsageError> {
        parse(args.iter().map(OsString::from))
    }

    #[test]
    fn parses_every_command() {
        assert_eq!(
            p(&["run", "a.toml"]),
            Ok(Command::Run {
                config: "a.toml".into()
            })
        );
        assert_eq!(
            p(&["check", "a.toml"]),
            Ok(Command::Check {
                config: "a.toml".into()
            })
        );
        assert_eq!(p(&["genkey"]), Ok(Command::Genkey));
        assert_eq!(p(&["pubkey"]), Ok(Command::Pubkey));
        assert_eq!(p(&["--version"]), Ok(Command::Version));
        assert_eq!(p(&["-V"]), Ok(Command::Version));
        assert_eq!(p(&["--help"]), Ok(Command::Help));
        assert_eq!(
            p(&["status", "--config", "a.toml", "--json"]),
            Ok(Command::Status {
                target: SocketTarget::Config("a.toml".into()),
                json: true
            })
        );
        assert_eq!(
            p(&["status"]),
            Ok(Command::Status {
                target: SocketTarget::Default,
                json: false
            })
        );
        // Options before or after the address, as the docs write them.
        assert_eq!(
            p(&["ping", "--config", "a.toml", "10.99.0.3", "-c", "3"]),
            Ok(Command::Ping {
                target: SocketTarget::Config("a.toml".into()),
                address: "10.99.0.3".parse().expect("ip"),
                count: 3
            })
        );
        assert_eq!(
            p(&["ping", "-c", "2", "--socket", "/run/a.sock", "fd99::4"]),
            Ok(Command::Ping {
                target: SocketTarget::Socket("/run/a.sock".into()),
                address: "fd99::4".parse().expect("ip"),
                count: 2
            })
        );
    }

    #[test]
    fn bad_command_lines_say_what_is_wrong() {
        for (args, expected) in [
            (&[][..], "command is missing"),
            (&["frobnicate"][..], "unknown command"),
            (&["run"][..], "configuration file is missing"),
            (&["run", "a", "b"][..], "takes one configuration file"),
            (&["genkey", "x"][..], "unexpected argument"),
            (&["ping"][..], "address to ping is missing"),
            (&["ping", "nowhere"][..], "not an IP address"),
            (&["ping", "-c", "0", "10.0.0.1"][..], "from 1 to 100"),
            (&["ping", "-c"][..], "needs a number"),
            (&["status", "--socket"][..], "needs a path"),
            (
                &["status", "--socket", "a", "--config", "b"][..],
                "either --socket or --config",
            ),
        ] {
            let err = p(args).expect_err("rejected").to_string();
            assert!(err.contains(expected), "{args:?}: {err}");
        }
    }
}
