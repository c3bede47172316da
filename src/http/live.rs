//! Live events: every event the services emit, kept in a bounded ring and streamed to clients
//! as server-sent events; a client that reconnects with `Last-Event-ID` gets what it missed.
//!
//! An event's SSE id is `<incarnation>-<sequence>`: the bus numbers events from 1 each time the
//! node starts, so the incarnation (a random number drawn at start) tells a client that comes
//! back after a restart that its id belongs to the node's previous life. It then gets every
//! event still kept, after a `gap` that says so (`"restarted": true`).

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::UNIX_EPOCH;

use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::IntoResponse;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use futures::{Stream, StreamExt, stream};
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use super::error::ApiError;
use super::routes::Api;
use crate::runtime::RuntimeHandle;

/// How many recent events the ring keeps for clients that reconnect.
pub(crate) const RING: usize = 1024;

/// One event as the stream sends it: the `data` of each server-sent event.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct LiveEvent {
    /// The SSE `id`: `<incarnation>-<sequence>`, what `Last-Event-ID` resumes after.
    id: String,
    /// The bus-wide sequence number of the event in this incarnation of the node, from 1.
    seq: u64,
    /// The emitting service.
    service: String,
    /// The event's name, also the SSE `event`.
    event: String,
    /// The correlation id of the action that emitted it, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    correlation_id: Option<String>,
    /// Milliseconds since the Unix epoch.
    emitted_at_ms: u64,
    /// The payload's JSON as the event record encoded it, passed through untouched.
    #[schema(value_type = Object)]
    payload: Box<serde_json::value::RawValue>,
    /// The JSON of all of the above, rendered once for every client.
    #[serde(skip)]
    json: String,
}

/// The ring of recent events and the channel of new ones.
pub(crate) struct Live {
    /// This incarnation of the node, as its event ids carry it.
    incarnation: u32,
    state: Mutex<Ring>,
}

/// An id a client resumes after: of this incarnation, or of another one (or of none: a bare
/// number).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct LastId {
    incarnation: Option<u32>,
    seq: u64,
}

impl LastId {
    fn parse(text: &str) -> Option<LastId> {
        let text = text.trim();
        match text.split_once('-') {
            Some((incarnation, seq)) => Some(LastId {
                incarnation: Some(u32::from_str_radix(incarnation, 16).ok()?),
                seq: seq.parse().ok()?,
            }),
            None => Some(LastId {
                incarnation: None,
                seq: text.parse().ok()?,
            }),
        }
    }
}

struct Ring {
    events: VecDeque<Arc<LiveEvent>>,
    /// The newest id seen, kept when the ring is empty.
    newest: u64,
    /// Closed (taken) when the runtime's events end, which ends every client's stream.
    tx: Option<broadcast::Sender<Arc<LiveEvent>>>,
}

impl Live {
    /// Subscribes to every event of `runtime` and keeps the ring.
    pub(crate) fn start(runtime: &RuntimeHandle) -> Arc<Live> {
        let (tx, _) = broadcast::channel(RING);
        let live = Arc::new(Live {
            incarnation: fastrand::u32(..),
            state: Mutex::new(Ring {
                events: VecDeque::with_capacity(RING),
                newest: 0,
                tx: Some(tx),
            }),
        });
        let feed = runtime
            .on_any::<Box<serde_json::value::RawValue>>()
            .queue(RING * 4, crate::Overflow::DropOldest)
            .stream_now();
        let feeder = live.clone();
        let incarnation = live.incarnation;
        match feed {
            Ok(mut events) => {
                tokio::spawn(async move {
                    while let Some(e) = events.next().await {
                        let at = e
                            .emitted_at()
                            .duration_since(UNIX_EPOCH)
                            .unwrap_or_default();
                        let mut event = LiveEvent {
                            id: format!("{incarnation:08x}-{}", e.id()),
                            seq: e.id(),
                            service: e.service().to_owned(),
                            event: e.name().to_owned(),
                            correlation_id: e.correlation_id().map(str::to_owned),
                            emitted_at_ms: u64::try_from(at.as_millis()).unwrap_or(u64::MAX),
                            payload: e.payload().to_owned(),
                            json: String::new(),
                        };
                        event.json = serde_json::to_string(&event).unwrap_or_default();
                        feeder.push(Arc::new(event));
                    }
                    feeder.close();
                });
            }
            Err(err) => {
                tracing::warn!(%err, "control plane: no live events");
                live.close();
            }
        }
        live
    }

    fn ring(&self) -> std::sync::MutexGuard<'_, Ring> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn push(&self, event: Arc<LiveEvent>) {
        let mut ring = self.ring();
        if ring.events.len() == RING {
            ring.events.pop_front();
        }
        ring.newest = event.seq;
        ring.events.push_back(event.clone());
        if let Some(tx) = &ring.tx {
            let _ = tx.send(event);
        }
    }

    fn close(&self) {
        self.ring().tx = None;
    }

    /// What a client gets: the events after `last` still in the ring, the gap if some are gone,
    /// and the channel of new ones (opened under the same lock, so nothing falls between).
    fn attach(&self, last: Option<LastId>) -> Attached {
        let ring = self.ring();
        // Any id a client sends is taken: arithmetic saturates instead of overflowing.
        let oldest_kept = ring
            .events
            .front()
            .map_or(ring.newest.saturating_add(1), |e| e.seq);
        let (backlog, gap) = match last {
            None => (Vec::new(), None),
            // Of this incarnation: what came after it.
            Some(LastId {
                incarnation: Some(incarnation),
                seq,
            }) if incarnation == self.incarnation => {
                let backlog: Vec<_> = ring
                    .events
                    .iter()
                    .filter(|e| e.seq > seq)
                    .cloned()
                    .collect();
                let first_missed = seq.saturating_add(1);
                let gap = (first_missed < oldest_kept && seq < ring.newest).then(|| Gap {
                    from: Some(first_missed),
                    to: Some(oldest_kept - 1),
                    missed: None,
                    restarted: None,
                });
                (backlog, gap)
            }
            // Of the node's previous life: whatever came after it there is gone, and so is
            // what this life emitted before the oldest event kept.
            Some(_) => {
                let lost = oldest_kept > 1;
                let gap = Gap {
                    from: lost.then_some(1),
                    to: lost.then(|| oldest_kept - 1),
                    missed: None,
                    restarted: Some(true),
                };
                (ring.events.iter().cloned().collect(), Some(gap))
            }
        };
        Attached {
            backlog,
            gap,
            rx: ring.tx.as_ref().map(broadcast::Sender::subscribe),
        }
    }
}

struct Attached {
    backlog: Vec<Arc<LiveEvent>>,
    gap: Option<Gap>,
    rx: Option<broadcast::Receiver<Arc<LiveEvent>>>,
}

/// Events a client cannot get: older than the ring, or dropped because it read too slowly.
#[derive(Debug, Serialize)]
struct Gap {
    /// The first id missed, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    from: Option<u64>,
    /// The last id missed, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    to: Option<u64>,
    /// How many were missed, when the ids are not known.
    #[serde(skip_serializing_if = "Option::is_none")]
    missed: Option<u64>,
    /// The id resumed after is of the node's previous incarnation: what came after it there is
    /// lost (`from` and `to` are then of this incarnation).
    #[serde(skip_serializing_if = "Option::is_none")]
    restarted: Option<bool>,
}

impl Gap {
    fn event(&self) -> SseEvent {
        SseEvent::default()
            .event("gap")
            .data(serde_json::to_string(self).unwrap_or_default())
    }
}

/// `GET /api/events?service=S&event=E`.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct EventsQuery {
    /// Only this service's events.
    service: Option<String>,
    /// Only events of this name.
    event: Option<String>,
}

enum Item {
    Event(Arc<LiveEvent>),
    Lagged(u64),
}

/// Live events as server-sent events: `id` the event id, `event` its name, `data` a
/// [`LiveEvent`]; `event: gap` says which ids were missed. `Last-Event-ID` resumes after an id.
#[utoipa::path(get, path = "/api/events", tag = "events",
    params(
        EventsQuery,
        ("Last-Event-ID" = Option<String>, Header,
            description = "Resume after this id (`<incarnation>-<sequence>`): the kept events \
                           after it come first; an id of the node's previous incarnation gets \
                           every kept event, after a `gap` with `\"restarted\": true`"),
    ),
    responses(
        (status = 200, content_type = "text/event-stream", body = LiveEvent,
            description = "The stream; each event's `data` is a LiveEvent"),
        (status = 400, body = super::error::ApiError, description = "A malformed query or Last-Event-ID"),
        (status = 404, body = super::error::ApiError, description = "No such service"),
    ))]
pub(crate) async fn events(
    State(api): State<Api>,
    query: Result<Query<EventsQuery>, axum::extract::rejection::QueryRejection>,
    headers: HeaderMap,
) -> Result<impl IntoResponse, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    if let Some(name) = &query.service {
        api.runtime.service_by_name(name)?;
    }
    let last = match headers.get("last-event-id") {
        Some(value) => Some(
            value
                .to_str()
                .ok()
                .and_then(LastId::parse)
                .ok_or_else(|| ApiError::bad_request("Last-Event-ID must be an event id"))?,
        ),
        None => None,
    };
    let Attached { backlog, gap, rx } = api.live.attach(last);
    let live = stream::unfold(rx, |rx| async move {
        let mut rx = rx?;
        match rx.recv().await {
            Ok(event) => Some((Item::Event(event), Some(rx))),
            Err(broadcast::error::RecvError::Lagged(n)) => Some((Item::Lagged(n), Some(rx))),
            Err(broadcast::error::RecvError::Closed) => None,
        }
    });
    let wanted = move |e: &LiveEvent| {
        query.service.as_deref().is_none_or(|s| s == e.service)
            && query.event.as_deref().is_none_or(|n| n == e.event)
    };
    let items = stream::iter(backlog.into_iter().map(Item::Event)).chain(live);
    let events = items.filter_map(move |item| {
        let out = match item {
            Item::Event(e) if wanted(&e) => {
                Some(SseEvent::default().id(&e.id).event(&e.event).data(&e.json))
            }
            Item::Event(_) => None,
            Item::Lagged(n) => Some(
                Gap {
                    from: None,
                    to: None,
                    missed: Some(n),
                    restarted: None,
                }
                .event(),
            ),
        };
        std::future::ready(out)
    });
    let stream = stream::iter(gap.map(|g| g.event()))
        .chain(events)
        .map(Ok::<_, Infallible>);
    Ok(
        Sse::new(Box::pin(stream) as std::pin::Pin<Box<dyn Stream<Item = _> + Send>>)
            .keep_alive(KeepAlive::default()),
    )
}
