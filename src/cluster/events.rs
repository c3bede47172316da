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
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, MutexGuard};

use ractor::{ActorCell, ActorId, ActorRef};

use super::gateway::GatewayMessage;
use super::node::{ClusterShared, Serving};
use super::wire::{self, Formats, Request, WireEvents};
use crate::Error;
use crate::codec::Format;
use crate::event::{ANY_EVENT, AnyRecord, Meta, Shared, Source};
use crate::remote::{TypedWire, Wanted};

mod forward;

pub(crate) use forward::Forwarder;

// The subscriber's side; the emitter's is in `forward`.

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
