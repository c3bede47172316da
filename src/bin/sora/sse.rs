//! Reads a server-sent event stream as it arrives, in chunks that may split lines anywhere.

/// One event of the stream.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Event {
    pub(crate) id: Option<String>,
    pub(crate) event: Option<String>,
    pub(crate) data: String,
}

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
    pub(crate) fn feed(&mut self, chunk: &[u8]) -> Vec<Event> {
        let mut events = Vec::new();
        for &byte in chunk {
            if byte != b'\n' {
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
        events
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
            let mut events = parser.feed(&stream[..cut]);
            events.extend(parser.feed(&stream[cut..]));
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
        assert!(parser.feed(b"id: 3\n\n: comment\n\n").is_empty());
        let events = parser.feed(b"data\n\n");
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].data, "");
    }
}
