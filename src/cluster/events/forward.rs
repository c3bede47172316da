//! The emitter's side of events across nodes: one forwarder per subscriber node, queueing what
//! that node wants and sending it, encoded once per format, a batch per message.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use arc_swap::ArcSwap;
use ractor::{ActorCell, ActorRef};
use tokio::sync::Notify;

use super::super::gateway::GatewayMessage;
use super::super::node::ClusterShared;
use super::super::wire::{self, Formats, WireEvent, WireEvents};
use crate::Error;
use crate::codec::Format;
use crate::event::{
    ANY_EVENT, All, Deliver, Ended, Member, Meta, Offer, Shared, SubscriptionStats, Whole,
};

/// How many events a forwarder holds while its task encodes and sends them (a burst can be
/// emitted faster than that); beyond, the oldest is dropped and counted against the service that
/// emitted it. What the task has sent waits in ractor_cluster's session for the link.
const FORWARD_QUEUE: usize = 1 << 20;

/// How many events one message to a subscriber node carries at most.
const BATCH: usize = 256;

/// Service -> event name (or `*`) -> the formats a subscriber node takes it in.
type Wants = HashMap<String, HashMap<String, Formats>>;

/// What this node forwards to one subscriber node: a subscription on its bus to every event,
/// which queues those the node wants for the task that sends them.
pub(crate) struct Forwarder {
    id: u64,
    /// The subscriber node.
    node: String,
    wants: ArcSwap<Wants>,
    /// Events to send, each with the formats the node wanted it in when it was emitted.
    queue: Mutex<VecDeque<(Shared, Formats)>>,
    wake: Notify,
    ended: AtomicBool,
    forwarded: AtomicU64,
    dropped: AtomicU64,
}

impl Forwarder {
    fn queue(&self) -> MutexGuard<'_, VecDeque<(Shared, Formats)>> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn formats(&self, meta: &Meta) -> Option<Formats> {
        let wants = self.wants.load();
        let events = wants.get(&*meta.source.name)?;
        match (events.get(&*meta.name), events.get(ANY_EVENT)) {
            (None, None) => None,
            (named, any) => Some(
                named
                    .copied()
                    .unwrap_or_default()
                    .union(any.copied().unwrap_or_default()),
            ),
        }
    }

    /// The next events to send, oldest first; `None` once the forwarder has ended.
    async fn next_batch(&self) -> Option<Vec<(Shared, Formats)>> {
        loop {
            {
                let mut queue = self.queue();
                if !queue.is_empty() {
                    let n = queue.len().min(BATCH);
                    return Some(queue.drain(..n).collect());
                }
                if self.ended.load(Ordering::Acquire) {
                    return None;
                }
            }
            // A wake-up sent since the queue was looked at is kept: this returns at once.
            self.wake.notified().await;
        }
    }
}

impl Deliver for Forwarder {
    fn id(&self) -> u64 {
        self.id
    }

    fn event(&self) -> &str {
        ANY_EVENT
    }

    fn offer(&self, record: &Shared) -> Offer {
        if self.ended.load(Ordering::Acquire) {
            return Offer::Remove;
        }
        let meta = record.meta();
        // Events of other nodes are forwarded by the node that emitted them.
        if meta.node.is_some() {
            return Offer::Keep;
        }
        let Some(formats) = self.formats(meta) else {
            return Offer::Keep;
        };
        let mut queue = self.queue();
        if queue.len() >= FORWARD_QUEUE {
            if let Some((oldest, _)) = queue.pop_front() {
                oldest.meta().source.dropped.fetch_add(1, Ordering::Relaxed);
                let dropped = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                if dropped.is_power_of_two() {
                    tracing::warn!(
                        node = %self.node,
                        dropped,
                        "a node does not keep up with the events forwarded to it; dropping the oldest"
                    );
                }
            }
        }
        queue.push_back((record.clone(), formats));
        drop(queue);
        self.wake.notify_one();
        Offer::Keep
    }

    fn end(&self, _why: Ended) {
        self.ended.store(true, Ordering::Release);
        self.queue().clear();
        self.wake.notify_one();
    }

    fn end_after_queue(&self, _why: Ended) {
        self.ended.store(true, Ordering::Release);
        self.wake.notify_one();
    }

    fn is_ended(&self) -> bool {
        self.ended.load(Ordering::Acquire)
    }

    fn actor(&self) -> Option<ActorCell> {
        None
    }

    fn stats(&self) -> SubscriptionStats {
        SubscriptionStats {
            id: self.id,
            event: ANY_EVENT.to_owned(),
            service: None,
            delivered: self.forwarded.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
            failed: 0,
            undecodable: 0,
            last_error: None,
            queued: self.queue().len(),
            ended: self.is_ended().then_some(Ended::Disposed),
        }
    }
}

impl ClusterShared {
    fn forwarders(&self) -> MutexGuard<'_, HashMap<String, Arc<Forwarder>>> {
        self.forwarders.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Forwards `service`'s events called `event` (`*`: all) to `node` in `formats`, from
    /// now on: the forwarder's subscription is on the bus before this returns.
    pub(crate) fn forward(
        self: &Arc<Self>,
        node: &str,
        service: &str,
        event: &str,
        formats: Formats,
    ) -> Result<(), Error> {
        let bus = self.events();
        if bus.is_closed() {
            return Err(Error::ShuttingDown);
        }
        let mut forwarders = self.forwarders();
        let forwarder = match forwarders.get(node) {
            Some(forwarder) if !forwarder.is_ended() => forwarder.clone(),
            _ => {
                let forwarder = Arc::new(Forwarder {
                    id: bus.next_subscription_id(),
                    node: node.to_owned(),
                    wants: ArcSwap::default(),
                    queue: Mutex::new(VecDeque::new()),
                    wake: Notify::new(),
                    ended: AtomicBool::new(false),
                    forwarded: AtomicU64::new(0),
                    dropped: AtomicU64::new(0),
                });
                bus.add(vec![Member::new::<Whole, All>(
                    forwarder.clone(),
                    None,
                    All,
                )]);
                tokio::spawn(send_forwarded(Arc::downgrade(self), forwarder.clone()));
                forwarders.insert(node.to_owned(), forwarder.clone());
                forwarder
            }
        };
        forwarder.wants.rcu(|wants| {
            let mut wants = Wants::clone(wants);
            let formats_now = wants
                .entry(service.to_owned())
                .or_default()
                .entry(event.to_owned())
                .or_default();
            *formats_now = formats_now.union(formats);
            wants
        });
        tracing::info!(%node, %service, %event, "forwards events to another node");
        Ok(())
    }

    /// `node` no longer takes `service`'s events called `event`.
    pub(crate) fn unforward(&self, node: &str, service: &str, event: &str) {
        let mut forwarders = self.forwarders();
        let Some(forwarder) = forwarders.get(node).cloned() else {
            return;
        };
        forwarder.wants.rcu(|wants| {
            let mut wants = Wants::clone(wants);
            if let Some(events) = wants.get_mut(service) {
                events.remove(event);
                if events.is_empty() {
                    wants.remove(service);
                }
            }
            wants
        });
        tracing::info!(%node, %service, %event, "no longer forwards events to another node");
        if forwarder.wants.load().is_empty() {
            forwarders.remove(node);
            drop(forwarders);
            self.events().remove(&*forwarder, Ended::Disposed);
        }
    }

    /// A subscriber node is gone: what was forwarded to it ends.
    pub(in crate::cluster) fn drop_forwarder(&self, node: &str) {
        let Some(forwarder) = self.forwarders().remove(node) else {
            return;
        };
        tracing::info!(%node, "no longer forwards events to a node that left");
        self.events().remove(&*forwarder, Ended::Disposed);
    }
}

/// Sends what `forwarder` queues to its node's gateway, a batch per message, in queue order.
async fn send_forwarded(cluster: Weak<ClusterShared>, forwarder: Arc<Forwarder>) {
    let mut gateway: Option<ActorRef<GatewayMessage>> = None;
    while let Some(batch) = forwarder.next_batch().await {
        let Some(cluster) = cluster.upgrade() else {
            return;
        };
        let mut names: Vec<(String, String)> = Vec::new();
        let events: Vec<WireEvent> = batch
            .iter()
            .filter_map(|(record, formats)| {
                let meta = record.meta();
                let name = match names
                    .iter()
                    .position(|(s, e)| *s == *meta.source.name && *e == *meta.name)
                {
                    Some(at) => at,
                    None => {
                        names.push((meta.source.name.to_string(), meta.name.to_string()));
                        names.len() - 1
                    }
                };
                encode(record, u32::try_from(name).ok()?, *formats)
            })
            .collect();
        if events.is_empty() {
            continue;
        }
        let count = events.len() as u64;
        if gateway.is_none() {
            gateway = cluster.gateway_of(&forwarder.node).await;
        }
        let Some(to) = &gateway else {
            tracing::warn!(node = %forwarder.node, "the node that asked for events has no gateway; not forwarding to it");
            cluster.drop_forwarder(&forwarder.node);
            return;
        };
        let limit = cluster.config.max_message_size;
        let (sent, dropped) = send_events(to, &cluster.node, &names, events, limit);
        forwarder.dropped.fetch_add(dropped, Ordering::Relaxed);
        if sent.is_ok() {
            forwarder
                .forwarded
                .fetch_add(count - dropped, Ordering::Relaxed);
        } else {
            // Its session is gone; a session that replaces it finds the gateway again.
            forwarder
                .dropped
                .fetch_add(count - dropped, Ordering::Relaxed);
            gateway = None;
        }
    }
}

/// Sends `events` to `to` in batches that each fit the largest message a node takes, halving a
/// batch that does not; an event too large to cross on its own is dropped with a warning. The
/// outcome of the sends, and how many events were dropped.
fn send_events(
    to: &ActorRef<GatewayMessage>,
    node: &str,
    names: &[(String, String)],
    mut events: Vec<WireEvent>,
    limit: usize,
) -> (Result<(), ()>, u64) {
    let message = WireEvents {
        node: node.to_owned(),
        names: names.to_vec(),
        events: std::mem::take(&mut events),
    };
    match wire::fits(wire::encode(&message), limit) {
        Ok(bytes) => (to.cast(GatewayMessage::Events(bytes)).map_err(drop), 0),
        Err(len) if message.events.len() == 1 => {
            let event = &message.events[0];
            let (service, name) = names.get(event.name as usize).cloned().unwrap_or_default();
            tracing::warn!(
                service,
                event = name,
                bytes = len,
                limit,
                "an event too large to cross to another node in one message; not forwarded"
            );
            (Ok(()), 1)
        }
        Err(_) => {
            let mut first = message.events;
            let second = first.split_off(first.len() / 2);
            let (a, dropped_a) = send_events(to, node, names, first, limit);
            if a.is_err() {
                return (a, dropped_a);
            }
            let (b, dropped_b) = send_events(to, node, names, second, limit);
            (b, dropped_a + dropped_b)
        }
    }
}

/// One event as it crosses, in `formats`.
fn encode(record: &Shared, name: u32, formats: Formats) -> Option<WireEvent> {
    let meta = record.meta();
    let bytes = |format: Format, wanted: bool| -> Result<Option<Vec<u8>>, String> {
        if !wanted {
            return Ok(None);
        }
        record.encoded(format).map(|b| Some(b.to_vec()))
    };
    let encoded = bytes(Format::Bincode, formats.bincode)
        .and_then(|bincode| Ok((bincode, bytes(Format::Json, formats.json)?)));
    match encoded {
        Ok((bincode, json)) => Some(WireEvent {
            name,
            correlation_id: meta.correlation_id.as_deref().map(str::to_owned),
            at: meta.at,
            bincode,
            json,
        }),
        Err(err) => {
            tracing::warn!(service = %meta.source.name, event = %meta.name, %err, "an event could not be encoded for another node");
            None
        }
    }
}
