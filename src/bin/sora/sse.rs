//! Reads a server-sent event stream as it arrives, in chunks that may split lines anywhere.

/// One event of the stream.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Event {
    pub(crate) id: Option<String>,
    pub(crate) event: Option<String>,
    pub(crate) data: String,
}

/// The most bytes one event may take, its lines together: a stream that sends more without
/// ending the event is not a node's.
pub(crate) const MAX_EVENT: usize = 8 << 20;

/// An event, or a line, past [`MAX_EVENT`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TooLong;

/// Turns chunks of bytes into events, as the HTML standard's event-stream parser does (comments
/// skipped, `data` lines joined with `\n`, an event dispatched at a blank line).
#[derive(Debug, Default)]
pub(crate) struct Parser {
    line: Vec<u8>,
    pending: Event,
    has_data: bool,
}

impl Parser {
    /// The events that `chunk` completes.
    ///
    /// # Errors
    ///
    /// [`TooLong`] once a line or an event is longer than [`MAX_EVENT`]: nothing more is read.
    pub(crate) fn feed(&mut self, chunk: &[u8]) -> Result<Vec<Event>, TooLong> {
        let mut events = Vec::new();
        for &byte in chunk {
            if byte != b'\n' {
                if self.line.len() + self.pending.data.len() >= MAX_EVENT {
                    return Err(TooLong);
                }
                self.line.push(byte);
                continue;
            }
            if self.line.last() == Some(&b'\r') {
                self.line.pop();
            }
            let line = std::mem::take(&mut self.line);
            if let Some(event) = self.line_done(&String::from_utf8_lossy(&line)) {
                events.push(event);
            }
        }
        Ok(events)
    }

    fn line_done(&mut self, line: &str) -> Option<Event> {
        if line.is_empty() {
            let event = std::mem::take(&mut self.pending);
            return std::mem::take(&mut self.has_data).then_some(event);
        }
        if line.starts_with(':') {
            return None;
        }
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line, ""),
        };
        match field {
            "id" => self.pending.id = Some(value.to_owned()),
            "event" => self.pending.event = Some(value.to_owned()),
            "data" => {
                if self.has_data {
                    self.pending.data.push('\n');
                }
                self.pending.data.push_str(value);
                self.has_data = true;
            }
            _ => {}
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_split_across_chunks_are_whole() {
        let stream = b": keep-alive\r\nid: 7\r\nevent: ticked\r\ndata: {\"a\":\r\ndata: 1}\r\n\r\nid: 8\ndata: x\n\n";
        for cut in 0..stream.len() {
            let mut parser = Parser::default();
            let mut events = parser.feed(&stream[..cut]).unwrap();
            events.extend(parser.feed(&stream[cut..]).unwrap());
            assert_eq!(
                events,
                vec![
                    Event {
                        id: Some("7".into()),
                        event: Some("ticked".into()),
                        data: "{\"a\":\n1}".into(),
                    },
                    Event {
                        id: Some("8".into()),
                        event: None,
                        data: "x".into(),
                    },
                ],
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn a_block_without_data_is_no_event() {
        let mut parser = Parser::default();
        assert!(parser.feed(b"id: 3\n\n: comment\n\n").unwrap().is_empty());
        let events = parser.feed(b"data\n\n").unwrap();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].data, "");
    }

    #[test]
    fn a_line_or_an_event_without_end_is_refused_at_the_limit() {
        let mut parser = Parser::default();
        let chunk = vec![b'x'; 1 << 20];
        let fed: Result<Vec<_>, _> = (0..9).map(|_| parser.feed(&chunk)).collect();
        assert_eq!(fed.unwrap_err(), TooLong);
        // Many data lines of one event, never dispatched, count together.
        let mut parser = Parser::default();
        let mut line = b"data: ".to_vec();
        line.extend(vec![b'y'; 1 << 20]);
        line.push(b'\n');
        let fed: Result<Vec<_>, _> = (0..9).map(|_| parser.feed(&line)).collect();
        assert_eq!(fed.unwrap_err(), TooLong);
    }

    proptest::proptest! {
        /// Bytes from a node, however they are cut: no panic; and a stream cut anywhere parses
        /// to the same events as whole.
        #[test]
        fn any_bytes_parse_and_cuts_change_nothing(
            bytes in proptest::collection::vec(
                proptest::prop_oneof![
                    proptest::strategy::Just(b'\n'),
                    proptest::strategy::Just(b':'),
                    proptest::strategy::Just(b'\r'),
                    proptest::prelude::any::<u8>(),
                ],
                0..400,
            ),
            cut in proptest::prelude::any::<proptest::sample::Index>(),
        ) {
            let whole = Parser::default().feed(&bytes).unwrap();
            let at = cut.index(bytes.len() + 1);
            let mut parser = Parser::default();
            let mut parts = parser.feed(&bytes[..at]).unwrap();
            parts.extend(parser.feed(&bytes[at..]).unwrap());
            proptest::prop_assert_eq!(whole, parts);
        }
    }
}
