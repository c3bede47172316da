use ractor::RpcReplyPort;

use crate::Error;

pub(crate) enum SupervisorMessage {
    /// Start every service: start-up services first, in order, then the rest.
    Start(RpcReplyPort<Result<(), Error>>),
    /// Restart these slots (each with the generation it had when its restart was scheduled).
    Restart(Vec<(usize, u64)>),
    /// Stop every service in reverse start order, then stop.
    Shutdown(RpcReplyPort<()>),
}

#[cfg(feature = "cluster")]
impl ractor::Message for SupervisorMessage {}
