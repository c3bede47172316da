//! The bus's index of subscriptions, laid out so that an event a subscriber's filter rejects
//! costs one inlined predicate call on memory the bus reads in order.
//!
//! Subscriptions to one event name are kept in groups, one group per kind of clause: the event
//! type and the filter's type. Clauses written at one place in the code share a group, however
//! many subscriptions they make. A group is a `Vec` of slots that hold the filter itself (not a
//! pointer to it), so the bus downcasts the event once per group and then walks the slots
//! without an indirect call or a visit to a subscription that does not take the event.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::marker::PhantomData;
use std::sync::Arc;

use super::Event;
use super::chain::Filter;
use super::record::{Record, Shared};
use super::subscription::{Deliver, Offer};

/// How a group looks at an event before its filters run.
pub(crate) trait View: 'static {
    type Payload;

    fn view(record: &Shared) -> Option<&Self::Payload>;
}

/// The typed payload of an event of type `E`.
pub(crate) struct ByType<E>(PhantomData<fn() -> E>);

impl<E: Event> View for ByType<E> {
    type Payload = E;

    fn view(record: &Shared) -> Option<&E> {
        let record = match record.as_any().downcast_ref::<Record<E>>() {
            Some(local) => local,
            // An event of another node, decoded here for subscribers of this type.
            None => record
                .typed(TypeId::of::<E>())?
                .as_any()
                .downcast_ref::<Record<E>>()?,
        };
        Some(&record.payload)
    }
}

/// Any event of the name; the subscription looks at it itself (by-name subscriptions decode it
/// first).
pub(crate) struct Whole;

impl View for Whole {
    type Payload = ();

    fn view(_: &Shared) -> Option<&()> {
        Some(&())
    }
}

/// One subscription in a group.
struct Slot<F> {
    filter: F,
    source: Option<Arc<str>>,
    sub: Arc<dyn Deliver>,
}

/// Subscriptions to one event name whose clauses view it alike and filter it with the same
/// type of filter.
struct Group<V, F> {
    slots: Vec<Slot<F>>,
    view: PhantomData<fn() -> V>,
}

/// A group, type-erased for the index.
trait AnyGroup: Send + 'static {
    fn fan_out(&mut self, record: &Shared, gone: &mut Vec<Arc<dyn Deliver>>);
    fn remove(&mut self, id: u64) -> Option<Arc<dyn Deliver>>;
    fn retain(&mut self, keep: &mut dyn FnMut(&Arc<dyn Deliver>) -> bool);
    fn is_empty(&self) -> bool;
    fn as_any_mut(&mut self) -> &mut dyn Any;
}

impl<V, F> AnyGroup for Group<V, F>
where
    V: View,
    F: Filter<V::Payload>,
{
    fn fan_out(&mut self, record: &Shared, gone: &mut Vec<Arc<dyn Deliver>>) {
        let Some(payload) = V::view(record) else {
            return;
        };
        let from = &record.meta().source.name;
        // An event of another node is here because a subscription asked for its service; a
        // subscription to every service takes the events of this runtime only.
        let remote = record.meta().node.is_some();
        let mut i = 0;
        while i < self.slots.len() {
            let slot = &self.slots[i];
            let mine = match &slot.source {
                Some(s) => Arc::ptr_eq(s, from) || **s == **from,
                None => !remote,
            };
            if mine && slot.filter.test(payload) && slot.sub.offer(record) == Offer::Remove {
                gone.push(self.slots.swap_remove(i).sub);
                continue;
            }
            i += 1;
        }
    }

    fn remove(&mut self, id: u64) -> Option<Arc<dyn Deliver>> {
        let pos = self.slots.iter().position(|s| s.sub.id() == id)?;
        Some(self.slots.swap_remove(pos).sub)
    }

    fn retain(&mut self, keep: &mut dyn FnMut(&Arc<dyn Deliver>) -> bool) {
        self.slots.retain(|s| keep(&s.sub));
    }

    fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}

/// A subscription on its way into the index.
pub(crate) struct Member {
    pub(crate) sub: Arc<dyn Deliver>,
    key: TypeId,
    slot: Box<dyn Joining>,
}

/// A slot that knows its group's type.
trait Joining: Send {
    /// Joins `group`, which is of the slot's kind.
    fn join(self: Box<Self>, group: &mut dyn Any);

    /// Starts a group of the slot's kind.
    fn found(self: Box<Self>) -> Box<dyn AnyGroup>;
}

struct Pending<V, F>(Slot<F>, PhantomData<fn() -> V>);

impl<V, F> Joining for Pending<V, F>
where
    V: View,
    F: Filter<V::Payload>,
{
    fn join(self: Box<Self>, group: &mut dyn Any) {
        if let Some(group) = group.downcast_mut::<Group<V, F>>() {
            group.slots.push(self.0);
        }
    }

    fn found(self: Box<Self>) -> Box<dyn AnyGroup> {
        Box::new(Group::<V, F> {
            slots: vec![self.0],
            view: PhantomData,
        })
    }
}

impl Member {
    /// A member of the group of its kind: events seen through `V`, filtered by `F`.
    pub(crate) fn new<V, F>(sub: Arc<dyn Deliver>, source: Option<Arc<str>>, filter: F) -> Self
    where
        V: View,
        F: Filter<V::Payload>,
    {
        let slot = Slot {
            filter,
            source,
            sub: sub.clone(),
        };
        Member {
            sub,
            key: TypeId::of::<Group<V, F>>(),
            slot: Box::new(Pending::<V, F>(slot, PhantomData)),
        }
    }
}

/// The groups of one event name, each with the type id of its kind.
type Groups = Vec<(TypeId, Box<dyn AnyGroup>)>;

/// Event name -> its groups; subscription id -> where it is.
/// The name under which a subscription takes events of every name.
pub(crate) const ANY_EVENT: &str = "*";

#[derive(Default)]
pub(crate) struct Index {
    events: HashMap<Arc<str>, Groups>,
    places: HashMap<u64, (Arc<str>, TypeId)>,
}

impl Index {
    pub(crate) fn contains(&self, id: u64) -> bool {
        self.places.contains_key(&id)
    }

    pub(crate) fn insert(&mut self, member: Member) {
        let event: Arc<str> = Arc::from(member.sub.event());
        self.places
            .insert(member.sub.id(), (event.clone(), member.key));
        let groups = self.events.entry(event).or_default();
        match groups.iter_mut().find(|(key, _)| *key == member.key) {
            Some((_, group)) => member.slot.join(group.as_any_mut()),
            None => groups.push((member.key, member.slot.found())),
        }
    }

    /// Offers `record` to every subscription of its name and to every subscription of any
    /// name; returns those that have ended.
    pub(crate) fn fan_out(&mut self, record: &Shared) -> Vec<Arc<dyn Deliver>> {
        let mut gone = Vec::new();
        for name in [&*record.meta().name, ANY_EVENT] {
            if let Some(groups) = self.events.get_mut(name) {
                for (_, group) in groups.iter_mut() {
                    group.fan_out(record, &mut gone);
                }
            }
        }
        for sub in &gone {
            self.places.remove(&sub.id());
        }
        gone
    }

    pub(crate) fn remove(&mut self, id: u64) -> Option<Arc<dyn Deliver>> {
        let (event, key) = self.places.remove(&id)?;
        let groups = self.events.get_mut(&event)?;
        let at = groups.iter().position(|(k, _)| *k == key)?;
        let sub = groups[at].1.remove(id);
        if groups[at].1.is_empty() {
            groups.swap_remove(at);
        }
        sub
    }

    /// Takes out every subscription for which `theirs` is true.
    pub(crate) fn remove_where(
        &mut self,
        mut theirs: impl FnMut(&Arc<dyn Deliver>) -> bool,
    ) -> Vec<Arc<dyn Deliver>> {
        let mut gone = Vec::new();
        for groups in self.events.values_mut() {
            for (_, group) in groups.iter_mut() {
                group.retain(&mut |sub| {
                    let out = theirs(sub);
                    if out {
                        gone.push(sub.clone());
                    }
                    !out
                });
            }
            groups.retain(|(_, g)| !g.is_empty());
        }
        for sub in &gone {
            self.places.remove(&sub.id());
        }
        gone
    }
}
