//! Server-Sent Events: the line parser and a reader that follows the
//! controller's event stream, reconnecting with backoff and resuming from
//! the last event it saw.
//!
//! The parser follows the WHATWG rules that matter here: `field: value`
//! lines (one optional space after the colon), `data` lines joined with
//! `\n`, comment lines starting with `:`, a blank line ends a message.

use std::io::{BufRead, BufReader};
use std::time::Duration;

use freimesh_proto::api::Event;

use crate::client::{Client, ClientError};

/// First wait after a lost stream; doubles up to [`MAX_BACKOFF`].
pub const MIN_BACKOFF: Duration = Duration::from_secs(1);
/// A controller that is down for maintenance should not be hammered, but an
/// operator waiting for it should not wait long either.
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// One complete SSE message.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Message {
    pub id: Option<String>,
    pub event: Option<String>,
    pub data: String,
}

/// Feeds lines, yields messages.
#[derive(Debug, Default)]
pub struct Parser {
    id: Option<String>,
    event: Option<String>,
    data: Option<String>,
}

impl Parser {
    /// Takes one line without its line ending; returns a message when the
    /// line was the blank one that ends it.
    pub fn line(&mut self, line: &str) -> Option<Message> {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.is_empty() {
            let data = self.data.take();
            let event = self.event.take();
            let id = self.id.take();
            // A message without data is not dispatched (the spec's rule);
            // a bare `id:` still counts as seen by the caller's next message.
            return data.map(|data| Message { id, event, data });
        }
        if line.starts_with(':') {
            return None;
        }
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line, ""),
        };
        match field {
            "data" => match &mut self.data {
                Some(data) => {
                    data.push('\n');
                    data.push_str(value);
                }
                None => self.data = Some(value.to_string()),
            },
            "event" => self.event = Some(value.to_string()),
            "id" if !value.contains('\0') => self.id = Some(value.to_string()),
            _ => {}
        }
        None
    }
}

/// Why the stream stopped.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("event stream: reading: {0}")]
    Read(std::io::Error),
    #[error("event stream: event {id:?} is not an event: {reason}")]
    Decode { id: Option<String>, reason: String },
}

/// Reads one connection of the stream, calling `on_event` for each event,
/// until the connection ends. Returns the last sequence number seen (so the
/// caller resumes from it) alongside why it stopped.
pub fn follow_once(
    client: &Client,
    since: u64,
    on_event: &mut dyn FnMut(Event),
) -> (u64, StreamError) {
    let body = match client.open_stream(since) {
        Ok(body) => body,
        Err(e) => return (since, e.into()),
    };
    let reader = BufReader::new(body.into_reader());
    read_events(reader, since, on_event)
}

/// The reading half of [`follow_once`], over any byte source.
pub fn read_events(
    reader: impl BufRead,
    since: u64,
    on_event: &mut dyn FnMut(Event),
) -> (u64, StreamError) {
    let mut last = since;
    let mut parser = Parser::default();
    for line in reader.lines() {
        let line = match line {
            Ok(line) => line,
            Err(e) => return (last, StreamError::Read(e)),
        };
        let Some(message) = parser.line(&line) else {
            continue;
        };
        match serde_json::from_str::<Event>(&message.data) {
            Ok(event) => {
                // After a reconnect the controller may repeat what we had.
                if event.seq > last || last == 0 {
                    last = event.seq;
                    on_event(event);
                }
            }
            Err(e) => {
                return (
                    last,
                    StreamError::Decode {
                        id: message.id,
                        reason: e.to_string(),
                    },
                );
            }
        }
    }
    (
        last,
        StreamError::Read(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "the controller closed the stream",
        )),
    )
}

/// The next wait after `current`: doubled, capped.
pub fn next_backoff(current: Duration) -> Duration {
    (current * 2).clamp(MIN_BACKOFF, MAX_BACKOFF)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(parser: &mut Parser, text: &str) -> Vec<Message> {
        text.split('\n').filter_map(|l| parser.line(l)).collect()
    }

    #[test]
    fn parses_id_event_and_multi_line_data() {
        let mut p = Parser::default();
        let got = feed(&mut p, "id: 7\nevent: link-up\ndata: {\"a\":\ndata:1}\n\n");
        assert_eq!(
            got,
            vec![Message {
                id: Some("7".into()),
                event: Some("link-up".into()),
                data: "{\"a\":\n1}".into(),
            }]
        );
    }

    #[test]
    fn comments_and_data_less_messages_are_skipped() {
        let mut p = Parser::default();
        assert!(feed(&mut p, ": keep-alive\n\n: another\r\n\r\n").is_empty());
        assert!(feed(&mut p, "event: x\n\n").is_empty());
        // The dropped message's fields do not leak into the next one.
        let got = feed(&mut p, "data:x\n\n");
        assert_eq!(
            got,
            vec![Message {
                id: None,
                event: None,
                data: "x".into()
            }]
        );
    }

    #[test]
    fn only_one_space_after_the_colon_is_stripped() {
        let mut p = Parser::default();
        let got = feed(&mut p, "data:  two\n\n");
        assert_eq!(got[0].data, " two");
    }

    #[test]
    fn reader_yields_events_and_remembers_the_last_seq() {
        let stream = concat!(
            ": keep-alive\n\n",
            "id: 4\nevent: drained\ndata: {\"seq\":4,\"at_ms\":1,\"kind\":\"drained\",\"node\":2}\n\n",
            "id: 5\nevent: connected\ndata: {\"seq\":5,\"at_ms\":2,\"kind\":\"connected\",\"node\":3}\n\n",
        );
        let mut seen = Vec::new();
        let (last, why) = read_events(stream.as_bytes(), 3, &mut |e| seen.push(e.seq));
        assert_eq!(seen, vec![4, 5]);
        assert_eq!(last, 5);
        assert!(matches!(why, StreamError::Read(_)), "{why}");
    }

    #[test]
    fn repeated_events_after_a_reconnect_are_dropped() {
        let stream = "data: {\"seq\":4,\"at_ms\":1,\"kind\":\"drained\",\"node\":2}\n\n";
        let mut seen = Vec::new();
        let (last, _) = read_events(stream.as_bytes(), 4, &mut |e| seen.push(e.seq));
        assert!(seen.is_empty());
        assert_eq!(last, 4);
    }

    #[test]
    fn garbage_data_stops_with_a_decode_error() {
        let stream = "id: 9\ndata: {\"seq\":9}\n\n";
        let (last, why) = read_events(stream.as_bytes(), 1, &mut |_| {});
        assert_eq!(last, 1);
        assert!(matches!(why, StreamError::Decode { .. }), "{why}");
    }

    #[test]
    fn backoff_doubles_and_caps() {
        assert_eq!(next_backoff(Duration::ZERO), MIN_BACKOFF);
        assert_eq!(next_backoff(Duration::from_secs(4)), Duration::from_secs(8));
        assert_eq!(next_backoff(Duration::from_secs(20)), MAX_BACKOFF);
    }
}
