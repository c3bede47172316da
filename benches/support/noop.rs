//! The no-op targets every throughput benchmark compares: a raw ractor actor and the same no-op
//! as a Sora service. Shared by `benches/runtime.rs` and `benches/ops.rs`.

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use sora::{Action, BoxError, Command, Context, Definition, Handler, Service};

/// The raw baseline: an actor that answers at once.
pub(crate) struct NoopActor;

pub(crate) enum NoopMsg {
    Ping(RpcReplyPort<()>),
    Cast,
}

#[cfg(feature = "cluster")]
impl ractor::Message for NoopMsg {}

impl Actor for NoopActor {
    type Msg = NoopMsg;
    type State = ();
    type Arguments = ();

    async fn pre_start(&self, _: ActorRef<NoopMsg>, _: ()) -> Result<(), ActorProcessingErr> {
        Ok(())
    }

    async fn handle(
        &self,
        _: ActorRef<NoopMsg>,
        msg: NoopMsg,
        _: &mut (),
    ) -> Result<(), ActorProcessingErr> {
        if let NoopMsg::Ping(reply) = msg {
            let _ = reply.send(());
        }
        Ok(())
    }
}

/// The same no-op as a Sora service.
#[derive(Default)]
pub(crate) struct NoopService;

pub(crate) struct Ping;

impl Action for Ping {
    const NAME: &'static str = "ping";
    type Reply = ();
}

impl Service for NoopService {
    fn define(def: &mut Definition<Self>) {
        def.command(Command::CHECK_QUEUE);
    }

    async fn command(&self, _: Command, _: &Context) -> Result<(), BoxError> {
        Ok(())
    }
}

impl Handler<Ping> for NoopService {
    async fn handle(&self, _: Ping, _: &Context) -> Result<(), BoxError> {
        Ok(())
    }
}
