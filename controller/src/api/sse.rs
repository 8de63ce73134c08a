//! `GET /api/v1/events/stream`: events as Server-Sent Events.
//!
//! A stream first replays the history after `since` (or `Last-Event-ID`)
//! from the store, page by page, then follows the hub's live broadcast. It
//! subscribes *before* reading the history and skips what it already sent,
//! so nothing falls between the two; a subscriber too slow for the live
//! buffer goes back to the store for what it missed instead of skipping it.
//!
//! A stream ends within [`OPERATOR_RECHECK`] (plus the hub's registry poll)
//! once its operator is removed or its token expires.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::time::Duration;

use axum::Extension;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use freimesh_proto::api::Event;
use futures::Stream;
use serde::Deserialize;
use tokio::sync::broadcast;

use super::Failure;
use super::auth::Operator;
use super::handlers::MAX_EVENT_LIMIT;
use crate::clock::unix_now;
use crate::hub_api::{AdminHandle, Authorization};
use crate::store::kind_name;

/// How often an idle stream sends `: keep-alive`: proxies and NATs close
/// connections that stay silent for about a minute.
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// How often a quiet stream checks that its operator still exists and
/// its token has not expired: a removed operator stops reading within
/// about a second, for the cost of one lock and hash compare per second.
pub const OPERATOR_RECHECK: Duration = Duration::from_secs(1);

#[derive(Debug, Deserialize)]
pub struct StreamQuery {
    since: Option<u64>,
}

/// Where a stream is: replaying stored events, or following live ones.
struct Feed {
    handle: AdminHandle,
    live: broadcast::Receiver<Event>,
    backlog: VecDeque<Event>,
    /// The newest seq sent (or, before the first, the one to start after).
    last: u64,
    catching_up: bool,
    /// The hash of the token the stream was opened with.
    token_hash: [u8; 32],
}

impl Feed {
    fn operator_valid(&self) -> bool {
        matches!(
            self.handle.authorize_hash(&self.token_hash, unix_now()),
            Authorization::Granted { .. }
        )
    }

    async fn next(&mut self) -> Option<Event> {
        loop {
            if !self.operator_valid() {
                tracing::info!("event stream ended: its operator was removed or expired");
                return None;
            }
            if let Some(e) = self.backlog.pop_front() {
                self.last = e.seq;
                return Some(e);
            }
            if self.catching_up {
                match self.handle.events_since(self.last, MAX_EVENT_LIMIT).await {
                    Ok(page) if page.is_empty() => self.catching_up = false,
                    Ok(page) => self.backlog = page.into(),
                    Err(e) => {
                        // The client reconnects with Last-Event-ID.
                        tracing::warn!(error = %e, "event stream: reading the history failed");
                        return None;
                    }
                }
                continue;
            }
            // `recv` is cancel-safe: a recheck loses no event.
            let got = tokio::select! {
                got = self.live.recv() => got,
                () = tokio::time::sleep(OPERATOR_RECHECK) => continue,
            };
            match got {
                Ok(e) if e.seq <= self.last => {}
                Ok(e) => {
                    self.last = e.seq;
                    return Some(e);
                }
                Err(broadcast::error::RecvError::Lagged(_)) => self.catching_up = true,
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }
}

fn sse_event(e: &Event) -> SseEvent {
    let data = serde_json::to_string(e).unwrap_or_else(|_| "{}".to_owned());
    SseEvent::default()
        .id(e.seq.to_string())
        .event(kind_name(&e.kind))
        .data(data)
}

fn events(feed: Feed) -> impl Stream<Item = Result<SseEvent, Infallible>> {
    futures::stream::unfold(feed, |mut feed| async move {
        let e = feed.next().await?;
        Some((Ok(sse_event(&e)), feed))
    })
}

pub async fn stream(
    State(h): State<AdminHandle>,
    Extension(op): Extension<Operator>,
    headers: HeaderMap,
    query: Result<Query<StreamQuery>, QueryRejection>,
) -> Result<Response, Failure> {
    let Query(q) = query.map_err(|e| {
        Failure::bad_request(format!(
            "{} (since is a non-negative integer)",
            e.body_text()
        ))
    })?;
    let last_event_id = match headers.get("last-event-id") {
        Some(v) => Some(
            v.to_str()
                .ok()
                .and_then(|s| s.trim().parse::<u64>().ok())
                .ok_or_else(|| Failure::bad_request("Last-Event-ID is not an event seq"))?,
        ),
        None => None,
    };
    // Subscribe first: whatever happens from here on is either in the
    // history read below or in the live feed.
    let live = h.subscribe();
    let (last, catching_up) = match last_event_id.or(q.since) {
        Some(since) => (since, true),
        None => (h.last_event_seq().await?, false),
    };
    let feed = Feed {
        handle: h,
        live,
        backlog: VecDeque::new(),
        last,
        catching_up,
        token_hash: op.token_hash,
    };
    Ok(Sse::new(events(feed))
        .keep_alive(KeepAlive::new().interval(KEEP_ALIVE).text("keep-alive"))
        .into_response())
}
