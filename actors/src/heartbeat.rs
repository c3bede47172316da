use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sora::{Action, BoxError, Context, Definition, Handler, Schedule, Service};

/// A periodic service that beats on a schedule and counts its beats: the smallest proof that
/// the runtime is alive, and a liveness signal for dashboards.
///
/// It beats every 30 seconds; a registration changes that with
/// [`RuntimeBuilder::service_with`](sora::RuntimeBuilder::service_with).
#[derive(Debug, Default)]
pub struct Heartbeat {
    beats: AtomicU64,
}

impl Heartbeat {
    /// The default period between beats.
    pub const PERIOD: Duration = Duration::from_secs(30);
}

/// Reads how many beats a [`Heartbeat`] has made since it (last) started.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct Beats;

impl Action for Beats {
    const NAME: &'static str = "beats";
    type Reply = u64;
}

impl Service for Heartbeat {
    fn define(def: &mut Definition<Self>) {
        def.periodic(Schedule::every(Heartbeat::PERIOD))
            .action::<Beats>();
    }

    async fn tick(&self, ctx: &Context) -> Result<(), BoxError> {
        let n = self.beats.fetch_add(1, Ordering::Relaxed) + 1;
        tracing::debug!(service = ctx.name(), beat = n, "heartbeat");
        Ok(())
    }
}

impl Handler<Beats> for Heartbeat {
    async fn handle(&self, _: Beats, _ctx: &Context) -> Result<u64, BoxError> {
        Ok(self.beats.load(Ordering::Relaxed))
    }
}
