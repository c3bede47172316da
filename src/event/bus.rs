//! The event bus: a supervised actor that holds the subscription table and fans events out.
//!
//! Emitters and subscribers do not talk to the actor's mailbox directly. They push their work
//! (publish, add, remove) into one lock-free queue that outlives the actor, and ring a doorbell
//! through the mailbox only when nobody has rung it since the bus last emptied the queue; a burst
//! of emits costs one mailbox message. One queue for all three keeps them in order: an event
//! emitted after `subscribe` returned is fanned out after the subscription is in the table.
//!
//! The table lives beside the actor too ([`EventsShared::subs`]): a restarted bus rebuilds its
//! index from it and takes up the queue where the last one stopped, so no subscriber has to
//! subscribe again and no emitted event is lost.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwapOption;
use ractor::{Actor, ActorCell, ActorId, ActorProcessingErr, ActorRef, SupervisionEvent};

use super::index::{Index, Member};
use super::record::Shared;
use super::subscription::{Deliver, Ended};
use super::work::WorkQueue;

/// How many pieces of work the bus takes in one turn before it lets its mailbox through.
const TURN: usize = 1024;

/// Work for the bus, in the order it was pushed.
pub(crate) enum Work {
    Publish(Shared),
    Add(Member),
    Remove(u64),
    /// Answered when everything pushed before it has been done.
    Flush(tokio::sync::oneshot::Sender<()>),
}

/// The only message of the bus's mailbox: there is work in the queue.
#[derive(Debug)]
pub(crate) struct Wake;

#[cfg(feature = "cluster")]
impl ractor::Message for Wake {}

/// What the bus shares with emitters and subscribers; one per runtime, outliving bus restarts.
pub(crate) struct EventsShared {
    bus: ArcSwapOption<ActorRef<Wake>>,
    work: WorkQueue<Work>,
    /// Every active subscription, by id.
    subs: Mutex<HashMap<u64, Arc<dyn Deliver>>>,
    /// The bus's own state. It lives here, not in the actor, so that a restarted bus goes on
    /// with it: no subscriber has to subscribe again. Only the bus locks it.
    index: Mutex<BusIndex>,
    next_sub: AtomicU64,
    last_event: AtomicU64,
    pub(crate) restarts: AtomicU64,
    closed: AtomicBool,
    /// Told the id of every subscription that leaves the table: a cluster node lets go of the
    /// events of other nodes that nobody here takes any more.
    on_removed: std::sync::OnceLock<Box<dyn Fn(u64) + Send + Sync>>,
}

impl std::fmt::Debug for EventsShared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventsShared")
            .field("last_event", &self.last_event)
            .finish_non_exhaustive()
    }
}

impl EventsShared {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(EventsShared {
            bus: ArcSwapOption::empty(),
            work: WorkQueue::new(),
            subs: Mutex::new(HashMap::new()),
            index: Mutex::new(BusIndex::default()),
            next_sub: AtomicU64::new(1),
            last_event: AtomicU64::new(0),
            restarts: AtomicU64::new(0),
            closed: AtomicBool::new(false),
            on_removed: std::sync::OnceLock::new(),
        })
    }

    pub(crate) fn next_subscription_id(&self) -> u64 {
        self.next_sub.fetch_add(1, Ordering::Relaxed)
    }

    fn table(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<dyn Deliver>>> {
        self.subs.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether the bus has stopped for good: emits are refused.
    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Queues an event for fan-out. `false` once the runtime's bus has stopped for good.
    pub(crate) fn publish(&self, record: Shared) -> bool {
        if self.is_closed() {
            return false;
        }
        self.push(Work::Publish(record));
        true
    }

    /// Adds subscriptions: events published after this returns reach them.
    pub(crate) fn add(&self, members: Vec<Member>) {
        let mut table = self.table();
        for member in &members {
            table.insert(member.sub.id(), member.sub.clone());
        }
        drop(table);
        if self.is_closed() {
            for member in &members {
                self.remove(member.sub.as_ref(), Ended::RuntimeStopped);
            }
            return;
        }
        for member in members {
            self.push(Work::Add(member));
        }
    }

    /// Ends a subscription and takes it out of the table.
    pub(crate) fn remove(&self, sub: &dyn Deliver, why: Ended) {
        sub.end(why);
        if self.table().remove(&sub.id()).is_some() {
            self.removed(sub.id());
            if !self.is_closed() {
                self.push(Work::Remove(sub.id()));
            }
        }
    }

    /// Sets what is told of every subscription that leaves the table (once per runtime).
    #[cfg(feature = "cluster")]
    pub(crate) fn on_removed(&self, hook: Box<dyn Fn(u64) + Send + Sync>) {
        let _ = self.on_removed.set(hook);
    }

    fn removed(&self, id: u64) {
        if let Some(hook) = self.on_removed.get() {
            hook(id);
        }
    }

    /// Resolves once everything pushed before it has been done: every event emitted before is
    /// in its subscribers' queues. `false` if the bus has stopped for good.
    pub(crate) async fn flush(&self) -> bool {
        if self.is_closed() {
            return false;
        }
        let (done, flushed) = tokio::sync::oneshot::channel();
        self.push(Work::Flush(done));
        flushed.await.is_ok()
    }

    /// The number of the last event fanned out.
    pub(crate) fn last_event(&self) -> u64 {
        self.last_event.load(Ordering::Relaxed)
    }

    /// The bus actor, while there is one.
    pub(crate) fn actor(&self) -> Option<ActorCell> {
        self.bus.load().as_ref().map(|b| b.get_cell())
    }

    /// How many subscriptions are active.
    pub(crate) fn subscriptions(&self) -> usize {
        self.table().len()
    }

    fn push(&self, work: Work) {
        if self.work.push(work)
            && let Some(bus) = self.bus.load().as_ref()
        {
            // A bus that is gone is being restarted: its successor empties the queue at start.
            let _ = bus.cast(Wake);
        }
    }

    /// Stops taking emits, and ends every subscription once it has delivered what its queue
    /// holds. Called by the supervisor after every service has stopped and the bus has emptied
    /// its queue.
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::Release);
        let subs: Vec<_> = self.table().drain().map(|(_, sub)| sub).collect();
        for sub in subs {
            sub.end_after_queue(Ended::RuntimeStopped);
        }
        self.work.clear();
    }
}

/// The event bus actor.
pub(crate) struct Bus;

pub(crate) struct BusState {
    me: ActorCell,
    shared: Arc<EventsShared>,
}

/// What the bus keeps across its restarts.
#[derive(Default)]
struct BusIndex {
    subs: Index,
    /// Subscriber actors the bus monitors, with how many subscriptions each has.
    watched: HashMap<ActorId, (ActorCell, usize)>,
}

impl Actor for Bus {
    type Msg = Wake;
    type State = BusState;
    type Arguments = Arc<EventsShared>;

    async fn pre_start(
        &self,
        myself: ActorRef<Wake>,
        shared: Arc<EventsShared>,
    ) -> Result<Self::State, ActorProcessingErr> {
        let state = BusState {
            me: myself.get_cell(),
            shared: shared.clone(),
        };
        // The subscriber actors watched the bus that came before; this one watches them now.
        for (cell, _) in state.index().watched.values() {
            state.me.monitor(cell.clone());
        }
        shared.bus.store(Some(Arc::new(myself.clone())));
        // Whatever was pushed while there was no bus (or before this one listened) waits in the
        // queue, and the bell may be rung with nobody to hear it: look now.
        myself.cast(Wake)?;
        Ok(state)
    }

    async fn handle(
        &self,
        myself: ActorRef<Wake>,
        _wake: Wake,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let shared = state.shared.clone();
        let mut index = state.index();
        if shared.work.turn(TURN, |work| state.run(&mut index, work)) {
            // The bell stays rung: this message brings the bus back for the rest.
            myself.cast(Wake)?;
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        _myself: ActorRef<Wake>,
        event: SupervisionEvent,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        if let SupervisionEvent::ActorTerminated(cell, ..)
        | SupervisionEvent::ActorFailed(cell, _) = &event
        {
            let mut index = state.index();
            state.subscriber_stopped(&mut index, cell.get_id());
        }
        Ok(())
    }

    async fn post_stop(
        &self,
        myself: ActorRef<Wake>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        for (cell, _) in state.index().watched.values() {
            myself.get_cell().unmonitor(cell.clone());
        }
        let me = myself.get_id();
        state
            .shared
            .bus
            .rcu(|bus| bus.clone().filter(|b| b.get_id() != me));
        Ok(())
    }
}

impl BusState {
    fn index(&self) -> std::sync::MutexGuard<'_, BusIndex> {
        // A bus that failed mid-turn leaves the index whole: each change is one `Vec` or map
        // operation.
        self.shared.index.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn run(&self, index: &mut BusIndex, work: Work) {
        match work {
            Work::Publish(record) => {
                let id = self.shared.last_event.fetch_add(1, Ordering::Relaxed) + 1;
                record.set_id(id);
                for sub in index.subs.fan_out(&record) {
                    self.forget(index, &sub);
                }
            }
            Work::Add(member) => self.add(index, member),
            Work::Remove(id) => {
                if let Some(sub) = index.subs.remove(id) {
                    self.unwatch(index, &sub);
                }
            }
            Work::Flush(done) => {
                let _ = done.send(());
            }
        }
    }

    fn add(&self, index: &mut BusIndex, member: Member) {
        let sub = member.sub.clone();
        if sub.is_ended() || index.subs.contains(sub.id()) {
            return;
        }
        index.subs.insert(member);
        let Some(cell) = sub.actor() else { return };
        let entry = index
            .watched
            .entry(cell.get_id())
            .or_insert_with(|| (cell.clone(), 0));
        if entry.1 == 0 {
            self.me.monitor(cell.clone());
        }
        entry.1 += 1;
        if cell.get_status() >= ractor::ActorStatus::Stopping {
            // It stopped before the monitor was in place; its stop event will not come.
            self.subscriber_stopped(index, cell.get_id());
        }
    }

    /// A subscription left the index by itself (it ended while offered an event).
    fn forget(&self, index: &mut BusIndex, sub: &Arc<dyn Deliver>) {
        if self.shared.table().remove(&sub.id()).is_some() {
            self.shared.removed(sub.id());
        }
        self.unwatch(index, sub);
    }

    fn unwatch(&self, index: &mut BusIndex, sub: &Arc<dyn Deliver>) {
        let Some(cell) = sub.actor() else { return };
        if let Some(entry) = index.watched.get_mut(&cell.get_id()) {
            entry.1 -= 1;
            if entry.1 == 0 {
                index.watched.remove(&cell.get_id());
                self.me.unmonitor(cell);
            }
        }
    }

    fn subscriber_stopped(&self, index: &mut BusIndex, actor: ActorId) {
        if index.watched.remove(&actor).is_none() {
            return;
        }
        let gone = index
            .subs
            .remove_where(|s| s.actor().is_some_and(|c| c.get_id() == actor));
        for sub in gone {
            self.shared.remove(sub.as_ref(), Ended::SubscriberStopped);
        }
    }
}
