//! The two background threads: the refresher (polls the API, runs
//! actions) and the event stream follower. Both talk to the UI loop only
//! through `std::sync::mpsc` messages ([`Update`]); the UI tells the
//! refresher what to do through [`Command`]s.

use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, channel};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use freimesh_proto::api::CreateToken;

use crate::app::{Command, NodeAction, Status, Update};
use crate::client::{Client, ClientError};
use crate::i18n::{self, Lang};
use crate::sse;

/// How often the fleet view is refreshed without events: often enough that
/// counts feel live, rare enough that 1,000 nodes cost the controller little.
pub const REFRESH_INTERVAL: Duration = Duration::from_secs(2);
/// A stream that stayed up this long was healthy: start backing off afresh.
const STREAM_HEALTHY: Duration = Duration::from_secs(60);

/// Now as Unix milliseconds (the API's time unit).
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Starts the refresher; returns where to send it commands.
pub fn spawn_refresher(
    client: Client,
    updates: Sender<Update>,
    lang: Lang,
) -> std::io::Result<Sender<Command>> {
    let (tx, rx) = channel();
    thread::Builder::new()
        .name("refresh".into())
        .spawn(move || refresher(&client, &rx, &updates, lang))?;
    Ok(tx)
}

/// Starts the event stream follower; it also pokes the refresher after
/// each event so counts follow the event at once.
pub fn spawn_stream(
    client: Client,
    updates: Sender<Update>,
    commands: Sender<Command>,
) -> std::io::Result<()> {
    thread::Builder::new()
        .name("events".into())
        .spawn(move || follower(&client, &updates, &commands))?;
    Ok(())
}

fn refresher(client: &Client, rx: &Receiver<Command>, updates: &Sender<Update>, lang: Lang) {
    let mut watch: Option<u32> = None;
    let mut backoff = Duration::ZERO;
    loop {
        let wait = if backoff.is_zero() {
            REFRESH_INTERVAL
        } else {
            backoff
        };
        match rx.recv_timeout(wait) {
            Ok(command) => {
                let mut next = Some(command);
                // Many events arrive in bursts: one refresh covers them all.
                while let Some(command) = next {
                    run_command(client, command, &mut watch, updates, lang);
                    next = rx.try_recv().ok();
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
        let update = match refresh(client, watch, updates) {
            Ok(()) => {
                backoff = Duration::ZERO;
                Update::Reachable
            }
            Err(e @ ClientError::Unauthorized { .. }) => {
                backoff = sse::MAX_BACKOFF;
                Update::Refused {
                    reason: e.to_string(),
                }
            }
            Err(e) => {
                backoff = sse::next_backoff(backoff);
                Update::Unreachable {
                    reason: e.to_string(),
                    retry_at_ms: now_ms()
                        + i64::try_from(backoff.as_millis()).unwrap_or(i64::MAX / 2),
                }
            }
        };
        if updates.send(update).is_err() {
            return;
        }
    }
}

fn run_command(
    client: &Client,
    command: Command,
    watch: &mut Option<u32>,
    updates: &Sender<Update>,
    lang: Lang,
) {
    let status = match command {
        Command::Refresh => return,
        Command::Watch(node) => {
            *watch = node;
            return;
        }
        Command::Node {
            action,
            node,
            hostname,
        } => {
            let result = match action {
                NodeAction::Drain => client.drain(node),
                NodeAction::Undrain => client.undrain(node),
                NodeAction::Approve => client.approve(node),
                NodeAction::Revoke => client.revoke(node),
                NodeAction::ApproveRole(role) => client.set_role(node, role, true),
                NodeAction::RevokeRole(role) => client.set_role(node, role, false),
            };
            match result {
                Ok(_) => Status {
                    text: i18n::action_done(lang, action, &hostname),
                    ok: true,
                },
                Err(e) => Status {
                    text: i18n::action_failed(lang, &e.to_string()),
                    ok: false,
                },
            }
        }
        Command::CreateToken { ttl } => {
            let request = CreateToken {
                ttl,
                prefixes: Vec::new(),
                roles: Vec::new(),
            };
            match client.create_token(&request) {
                Ok(token) => {
                    let _ = updates.send(Update::TokenCreated(token));
                    return;
                }
                Err(e) => Status {
                    text: i18n::action_failed(lang, &e.to_string()),
                    ok: false,
                },
            }
        }
    };
    let _ = updates.send(Update::Status(status));
}

fn refresh(
    client: &Client,
    watch: Option<u32>,
    updates: &Sender<Update>,
) -> Result<(), ClientError> {
    // A closed channel means the UI is gone; the next send in the loop
    // notices and ends the thread.
    let _ = updates.send(Update::Overview(client.overview()?));
    let _ = updates.send(Update::Nodes(client.nodes()?));
    let _ = updates.send(Update::Links(client.links()?));
    let _ = updates.send(Update::Gateways(client.gateways()?));
    let _ = updates.send(Update::Redundancy(client.redundancy()?));
    if let Some(id) = watch {
        match client.node(id) {
            Ok(detail) => {
                let _ = updates.send(Update::Detail(detail));
            }
            // The node may have been removed; the rest of the view is fine.
            Err(ClientError::NotFound { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn follower(client: &Client, updates: &Sender<Update>, commands: &Sender<Command>) {
    let mut since = 0;
    let mut backoff = Duration::ZERO;
    loop {
        let started = Instant::now();
        let mut open = true;
        let (last, _why) = sse::follow_once(client, since, &mut |event| {
            open &= updates.send(Update::Event(event)).is_ok();
            open &= commands.send(Command::Refresh).is_ok();
        });
        if !open {
            return;
        }
        since = last;
        // The refresher reports unreachability; the stream just retries.
        if started.elapsed() > STREAM_HEALTHY {
            backoff = Duration::ZERO;
        }
        backoff = sse::next_backoff(backoff);
        thread::sleep(backoff);
    }
}
