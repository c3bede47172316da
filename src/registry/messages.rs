use std::any::TypeId;
use std::sync::Arc;

use ractor::RpcReplyPort;

use crate::host::ErasedService;

pub(crate) enum RegistryMessage {
    Register(Arc<dyn ErasedService>),
    ByName(String, RpcReplyPort<Option<Arc<dyn ErasedService>>>),
    ByType(TypeId, RpcReplyPort<Option<Arc<dyn ErasedService>>>),
    List(RpcReplyPort<Vec<Arc<dyn ErasedService>>>),
}

#[cfg(feature = "cluster")]
impl ractor::Message for RegistryMessage {}
