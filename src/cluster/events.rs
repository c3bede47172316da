//! Events across nodes.
//!
//! A subscriber node asks every node that serves a service to forward the events it wants
//! ([`Request::Subscribe`]), once per service and event name however many subscriptions here
//! take them: the [`Interests`] count them, and the last one to end lets go
//! ([`Request::Unsubscribe`]). A serving node keeps one [`Forwarder`] per subscriber node: a
//! subscription on its own bus to every event, which queues what that node wants, and a task
//! that encodes each event once per format (the record keeps the bytes for every other node)
//! and sends the events to the subscriber node's gateway, in the order its bus fanned them out,
//! a batch per message. That gateway puts them on its own bus as records of the remote service
//! ([`RemoteRecord`]), where subscriptions match, filter and take them as they take local
//! events: filters run on the subscriber's side, and `once` is enforced where its subscription
//! lives.

use std::any::{Any, TypeId};
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use arc_swap::ArcSwap;
use ractor::{ActorCell, ActorId, ActorRef};
use tokio::sync::Notify;

use super::gateway::GatewayMessage;
use super::node::{ClusterShared, Serving};
use super::wire::{self, Formats, Request, WireEvent, WireEvents};
use crate::Error;
use crate::codec::{Bincode, Codec, DecodeError, Format};
use crate::event::{
    ANY_EVENT, All, AnyRecord, Deliver, Ended, Event, Member, Meta, Offer, Record, Shared, Source,
    SubscriptionStats, Whole,
};

/// How many events a forwarder holds while its task encodes and sends them (a burst can be
/// emitted faster than that); beyond, the oldest is dropped and counted against the service that
/// emitted it. What the task has sent waits in ractor_cluster's session for the link.
const FORWARD_QUEUE: usize = 1 << 20;

/// How many events one message to a subscriber node carries at most.
const BATCH: usize = 256;

// ---------------------------------------------------------------------------------------------
// The subscriber's side.

/// How the events of another node are decoded here for the subscribers of one payload type:
/// captured where the type is known (`on::<E>()`), used where it is erased.
#[derive(Clone, Copy)]
pub(crate) struct TypedWire {
    type_id: TypeId,
    decode: fn(Meta, &[u8]) -> Result<Shared, DecodeError>,
    schema: fn() -> u64,
}

impl TypedWire {
    pub(crate) fn of<E: Event>() -> Self {
        TypedWire {
            type_id: TypeId::of::<E>(),
            decode: |meta, bytes| {
                let payload = Bincode::decode::<E>(bytes)?;
                Ok(Arc::new(Record::new(meta, payload)))
            },
            schema: crate::codec::typed::event_schema::<E>,
        }
    }
}

/// What one clause of a subscription asks of the nodes that serve its service.
#[derive(Clone)]
pub(crate) struct Wanted {
    /// The event's name, or `*` for every event.
    pub(crate) event: Arc<str>,
    /// For a typed clause: how its payload is decoded. A by-name clause takes JSON.
    pub(crate) typed: Option<TypedWire>,
}

/// A service's name and one of its event names (or `*`).
type Key = (Arc<str>, Arc<str>);

/// The events of other nodes that subscriptions of this node take.
#[derive(Default)]
pub(crate) struct Interests {
    /// Subscription id -> what it takes: its key, and its payload type if it is typed.
    by_sub: HashMap<u64, (Key, Option<TypeId>)>,
    /// Service -> event name -> who takes it.
    services: HashMap<Arc<str>, HashMap<Arc<str>, Interest>>,
    /// What this node counts about each service of another node whose events it receives.
    sources: HashMap<Arc<str>, Arc<Source>>,
}

/// The subscriptions of this node to one event of one service of other nodes.
#[derive(Default)]
struct Interest {
    /// By-name subscriptions (they take JSON).
    json: usize,
    /// Payload types of typed subscriptions (they take bincode): how to decode, the type's
    /// schema hash, how many subscriptions.
    typed: Vec<(TypedWire, u64, usize)>,
    /// The gateways that forward it here.
    at: HashMap<ActorId, ActorCell>,
    /// Gateways that refused to (another schema); not asked again while they last.
    refused: HashSet<ActorId>,
}

impl Interest {
    /// How many subscriptions take it.
    fn subs(&self) -> usize {
        self.json + self.typed.iter().map(|(.., count)| count).sum::<usize>()
    }

    fn formats(&self) -> Formats {
        Formats {
            bincode: !self.typed.is_empty(),
            json: self.json > 0,
        }
    }
}

/// An event of another node, as this node's bus carries it.
struct RemoteRecord {
    meta: Meta,
    bincode: Option<Arc<[u8]>>,
    json: Option<Arc<[u8]>>,
    /// The payload decoded once for each type that typed subscribers here take.
    typed: Vec<(TypeId, Shared)>,
}

impl AnyRecord for RemoteRecord {
    fn meta(&self) -> &Meta {
        &self.meta
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn into_any(self: Arc<Self>) -> Arc<dyn Any + Send + Sync> {
        self
    }

    fn encoded(&self, format: Format) -> Result<Arc<[u8]>, String> {
        let bytes = match format {
            Format::Json => &self.json,
            Format::Bincode => &self.bincode,
        };
        bytes.clone().ok_or_else(|| {
            format!(
                "the event came from another node without its {format:?} form (a subscription \
                 that asked for it had not reached that node yet)"
            )
        })
    }

    fn set_id(&self, id: u64) {
        self.meta.id.store(id, Ordering::Relaxed);
        for (_, typed) in &self.typed {
            typed.set_id(id);
        }
    }

    fn typed(&self, type_id: TypeId) -> Option<&Shared> {
        self.typed
            .iter()
            .find(|(t, _)| *t == type_id)
            .map(|(_, record)| record)
    }
}

impl ClusterShared {
    fn interests(&self) -> MutexGuard<'_, Interests> {
        self.interests.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Counts the clauses `(subscription id, what it takes)` as interests in `service`'s events,
    /// and asks every node that serves it to forward them here. Resolves once they have all
    /// answered: events they emit after that reach the clauses once they are on the bus.
    pub(crate) async fn subscribe_events(
        self: &Arc<Self>,
        service: &str,
        clauses: Vec<(u64, Wanted)>,
    ) -> Result<(), Error> {
        let ids: Vec<u64> = clauses.iter().map(|(id, _)| *id).collect();
        let keys = self.register(service, clauses);
        let serving = self.serving(service);
        if serving.is_empty() {
            self.forget_events(&ids);
            return Err(Error::ServiceUnavailable {
                service: service.to_owned(),
                reason: "no node of the cluster serves it".into(),
            });
        }
        let asks: Vec<_> = {
            let interests = self.interests();
            keys.iter()
                .filter_map(|key| interests.get(key).map(|i| (key, self.ask(key, i))))
                .flat_map(|(key, request)| {
                    serving
                        .iter()
                        .map(move |to| (key.clone(), to.clone(), request.clone()))
                })
                .collect()
        };
        let mut agreed = 0;
        let mut unavailable = None;
        let mut refused = None;
        for (key, to, reply) in self.ask_all(asks).await {
            match reply {
                Ok(()) => {
                    agreed += 1;
                    if let Some(interest) = self.interests().get_mut(&key) {
                        interest.at.insert(to.gateway.get_id(), to.gateway);
                    }
                }
                Err(err @ (Error::ServiceUnavailable { .. } | Error::Timeout { .. })) => {
                    unavailable.get_or_insert(err);
                }
                Err(err) => {
                    refused.get_or_insert(err);
                }
            }
        }
        if agreed > 0 {
            // `Cluster::forwarding` changed.
            self.bump();
        }
        match refused.or(if agreed == 0 { unavailable } else { None }) {
            Some(err) => {
                self.forget_events(&ids);
                Err(err)
            }
            None => Ok(()),
        }
    }

    /// Counts the clauses in; returns the keys they take.
    fn register(&self, service: &str, clauses: Vec<(u64, Wanted)>) -> Vec<Key> {
        let mut interests = self.interests();
        let service: Arc<str> = match interests.services.get_key_value(service) {
            Some((name, _)) => name.clone(),
            None => Arc::from(service),
        };
        let mut keys: Vec<Key> = Vec::new();
        for (id, wanted) in clauses {
            let key = (service.clone(), wanted.event);
            let interest = interests
                .services
                .entry(key.0.clone())
                .or_default()
                .entry(key.1.clone())
                .or_default();
            let type_id = match wanted.typed {
                Some(typed) => {
                    match interest
                        .typed
                        .iter_mut()
                        .find(|(t, ..)| t.type_id == typed.type_id)
                    {
                        Some((.., count)) => *count += 1,
                        None => interest.typed.push((typed, (typed.schema)(), 1)),
                    }
                    Some(typed.type_id)
                }
                None => {
                    interest.json += 1;
                    None
                }
            };
            interests.by_sub.insert(id, (key.clone(), type_id));
            if !keys.contains(&key) {
                keys.push(key);
            }
        }
        keys
    }

    /// The request that asks a node to forward the events of `key` here.
    fn ask(&self, key: &Key, interest: &Interest) -> Request {
        Request::Subscribe {
            service: key.0.to_string(),
            event: key.1.to_string(),
            node: self.node.clone(),
            formats: interest.formats(),
            schemas: interest
                .typed
                .iter()
                .map(|(_, schema, _)| *schema)
                .collect(),
        }
    }

    /// Sends every ask at once; each answer is bounded by the handshake timeout.
    async fn ask_all(
        self: &Arc<Self>,
        asks: Vec<(Key, Serving, Request)>,
    ) -> Vec<(Key, Serving, Result<(), Error>)> {
        let within = self.config.handshake_timeout;
        let asked = asks.into_iter().map(|(key, to, request)| {
            let reply = self.call(&to, request);
            async move {
                let reply = match tokio::time::timeout(within, reply).await {
                    Ok(reply) => reply.map(drop),
                    Err(_) => Err(Error::Timeout {
                        service: key.0.to_string(),
                        action: format!("subscribe to `{}`", key.1),
                        after: within,
                    }),
                };
                (key, to, reply)
            }
        });
        futures::future::join_all(asked).await
    }

    /// The nodes that forward events of `service` here now.
    pub(crate) fn forwarding(&self, service: &str) -> Vec<String> {
        let gateways: HashSet<ActorId> = self
            .interests()
            .services
            .get(service)
            .map(|events| events.values().flat_map(|i| i.at.keys().copied()).collect())
            .unwrap_or_default();
        super::node::node_names(
            self.serving(service)
                .into_iter()
                .filter(|s| gateways.contains(&s.gateway.get_id())),
        )
    }

    /// Takes the subscriptions `ids` out of the interests (they never reached the bus).
    pub(crate) fn forget_events(&self, ids: &[u64]) {
        for id in ids {
            self.subscription_ended(*id);
        }
    }

    /// A subscription of this runtime has ended: if it was the last to take events of another
    /// node's service, the nodes that forward them are told to stop.
    pub(crate) fn subscription_ended(&self, id: u64) {
        let gone = {
            let mut interests = self.interests();
            let Some((key, type_id)) = interests.by_sub.remove(&id) else {
                return;
            };
            let Some(interest) = interests.get_mut(&key) else {
                return;
            };
            match type_id {
                Some(type_id) => {
                    if let Some(at) = interest
                        .typed
                        .iter()
                        .position(|(t, ..)| t.type_id == type_id)
                    {
                        interest.typed[at].2 -= 1;
                        if interest.typed[at].2 == 0 {
                            interest.typed.swap_remove(at);
                        }
                    }
                }
                None => interest.json -= 1,
            }
            if interest.subs() > 0 {
                return;
            }
            let gone = interests.remove(&key);
            gone.map(|interest| (key, interest.at))
        };
        let Some((key, at)) = gone else { return };
        let request = Request::Unsubscribe {
            service: key.0.to_string(),
            event: key.1.to_string(),
            node: self.node.clone(),
        };
        let request = wire::encode_request(&self.node, &request);
        for gateway in at.into_values() {
            let gateway: ActorRef<GatewayMessage> = gateway.into();
            let _ = gateway.cast(GatewayMessage::Tell(request.clone()));
        }
    }

    /// Follows the nodes that serve the services whose events this node takes: a node that
    /// comes (or comes back) is asked to forward them, a node that is gone is forgotten.
    pub(super) async fn resubscribe(self: &Arc<Self>) {
        let asks: Vec<(Key, Serving, Request)> = {
            let mut interests = self.interests();
            let mut asks = Vec::new();
            for (service, events) in &mut interests.services {
                let serving = self.serving(service);
                let live: HashSet<ActorId> = serving.iter().map(|s| s.gateway.get_id()).collect();
                for (event, interest) in events.iter_mut() {
                    interest.at.retain(|id, _| live.contains(id));
                    interest.refused.retain(|id| live.contains(id));
                    let key = (service.clone(), event.clone());
                    for to in &serving {
                        let id = to.gateway.get_id();
                        if !interest.at.contains_key(&id) && !interest.refused.contains(&id) {
                            asks.push((key.clone(), to.clone(), self.ask(&key, interest)));
                        }
                    }
                }
            }
            asks
        };
        if asks.is_empty() {
            return;
        }
        let mut agreed = false;
        for (key, to, reply) in self.ask_all(asks).await {
            let mut interests = self.interests();
            let Some(interest) = interests.get_mut(&key) else {
                continue;
            };
            match reply {
                Ok(()) => {
                    interest.at.insert(to.gateway.get_id(), to.gateway);
                    agreed = true;
                }
                // Lost again, or slow: the next change asks again.
                Err(Error::ServiceUnavailable { .. } | Error::Timeout { .. }) => {}
                Err(err) => {
                    tracing::warn!(
                        node = %to.node,
                        service = %key.0,
                        event = %key.1,
                        %err,
                        "a node refuses to forward events to this one"
                    );
                    interest.refused.insert(to.gateway.get_id());
                }
            }
        }
        if agreed {
            self.bump();
        }
    }

    /// Puts events forwarded by another node on this runtime's bus.
    pub(crate) fn deliver(&self, bytes: &[u8]) {
        let batch: WireEvents = match wire::decode(bytes) {
            Ok(batch) => batch,
            Err(err) => {
                self.undecodable(wire::sender(bytes).as_deref(), "a batch of events", &err);
                return;
            }
        };
        let node: Arc<str> = Arc::from(batch.node);
        let names = batch.names;
        let bus = self.events();
        let mut unwanted: Vec<(String, String)> = Vec::new();
        let mut guard = self.interests();
        let interests = &mut *guard;
        for event in batch.events {
            let Some((service_name, event_name)) = names.get(event.name as usize) else {
                let err = format!("it names event {} of {}", event.name, names.len());
                self.undecodable(Some(&node), "an event", &err);
                continue;
            };
            let taken =
                interests
                    .services
                    .get_key_value(service_name.as_str())
                    .map(|(service, events)| {
                        (service, events.get_key_value(event_name.as_str()), events)
                    });
            let (service, named) = match taken {
                Some((service, named, events))
                    if named.is_some() || events.contains_key(ANY_EVENT) =>
                {
                    (service, named)
                }
                // Nobody here takes it any more: the last subscription ended while the node
                // was being asked for it.
                _ => {
                    let pair = (service_name.clone(), event_name.clone());
                    if !unwanted.contains(&pair) {
                        unwanted.push(pair);
                    }
                    continue;
                }
            };
            let source = interests
                .sources
                .entry(service.clone())
                .or_insert_with(|| Source::new(service.clone()))
                .clone();
            source.emitted.fetch_add(1, Ordering::Relaxed);
            let meta = Meta {
                source,
                name: named.map_or_else(|| Arc::from(event_name.as_str()), |(n, _)| n.clone()),
                correlation_id: event.correlation_id.map(Arc::from),
                node: Some(node.clone()),
                id: AtomicU64::new(0),
                at: event.at,
            };
            let mut typed = Vec::new();
            if let (Some((_, interest)), Some(bytes)) = (named, &event.bincode) {
                for (wire, ..) in &interest.typed {
                    match (wire.decode)(meta.clone(), bytes) {
                        Ok(record) => typed.push((wire.type_id, record)),
                        Err(err) => {
                            let what = format!(
                                "the event `{service}.{}` (for its subscribers' type)",
                                meta.name
                            );
                            self.undecodable(Some(&node), &what, &err);
                        }
                    }
                }
            }
            let record = RemoteRecord {
                meta,
                bincode: event.bincode.map(Arc::from),
                json: event.json.map(Arc::from),
                typed,
            };
            if !bus.publish(Arc::new(record)) {
                return;
            }
        }
        drop(guard);
        if unwanted.is_empty() {
            return;
        }
        let Some(gateway) = self.gateway_now(&node) else {
            return;
        };
        for (service, event) in unwanted {
            let request = Request::Unsubscribe {
                service,
                event,
                node: self.node.clone(),
            };
            let _ = gateway.cast(GatewayMessage::Tell(wire::encode_request(
                &self.node, &request,
            )));
        }
    }
}

impl Interests {
    fn get_mut(&mut self, key: &Key) -> Option<&mut Interest> {
        self.services.get_mut(&key.0)?.get_mut(&key.1)
    }

    fn get(&self, key: &Key) -> Option<&Interest> {
        self.services.get(&key.0)?.get(&key.1)
    }

    fn remove(&mut self, key: &Key) -> Option<Interest> {
        let events = self.services.get_mut(&key.0)?;
        let interest = events.remove(&key.1);
        if events.is_empty() {
            self.services.remove(&key.0);
        }
        interest
    }
}

// ---------------------------------------------------------------------------------------------
// The emitter's side.

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
    pub(super) fn drop_forwarder(&self, node: &str) {
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
