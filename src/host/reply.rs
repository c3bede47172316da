//! Where the result of a call goes.

use ractor::RpcReplyPort;

use crate::Error;

/// The reply channel of a handle's call: its error is boxed, so that a reply moves the size of
/// its value rather than that of [`Error`] (96 bytes) at every step of its way back.
pub(crate) type Slim<R> = oneshot::Sender<Result<R, Box<Error>>>;

/// The receiving end of a [`Slim`] reply channel.
pub(crate) type SlimReceiver<R> = oneshot::Receiver<Result<R, Box<Error>>>;

/// A new reply channel for a handle's call.
pub(crate) fn slim<R>() -> (Slim<R>, SlimReceiver<R>) {
    oneshot::channel()
}

/// Where a call's result goes: back to a handle, or to the reply port of a call sent with
/// ractor's `call` to the service's actor.
pub(crate) enum ReplyTo<R> {
    Handle(Slim<R>),
    Port(RpcReplyPort<Result<R, Error>>),
}

impl<R> ReplyTo<R> {
    /// Sends the result; a caller that stopped waiting is not an error.
    pub(crate) fn send(self, result: Result<R, Box<Error>>) {
        match self {
            ReplyTo::Handle(tx) => {
                let _ = tx.send(result);
            }
            ReplyTo::Port(port) => {
                let _ = port.send(result.map_err(|e| *e));
            }
        }
    }

    /// Answers with `err`.
    pub(crate) fn fail(self, err: Error) {
        self.send(Err(Box::new(err)));
    }
}

impl<R> From<RpcReplyPort<Result<R, Error>>> for ReplyTo<R> {
    fn from(port: RpcReplyPort<Result<R, Error>>) -> Self {
        ReplyTo::Port(port)
    }
}

impl<R> From<Slim<R>> for ReplyTo<R> {
    fn from(tx: Slim<R>) -> Self {
        ReplyTo::Handle(tx)
    }
}
