use std::any::TypeId;
use std::collections::HashMap;
use std::sync::Arc;

use ractor::{Actor, ActorProcessingErr, ActorRef};

use super::messages::RegistryMessage;
use crate::host::ErasedService;
use crate::system::RuntimeShared;

pub(crate) struct Registry;

pub(crate) struct RegistryState {
    shared: Arc<RuntimeShared>,
    by_name: HashMap<String, Arc<dyn ErasedService>>,
    by_type: HashMap<TypeId, Arc<dyn ErasedService>>,
    order: Vec<Arc<dyn ErasedService>>,
}

impl Actor for Registry {
    type Msg = RegistryMessage;
    type State = RegistryState;
    type Arguments = Arc<RuntimeShared>;

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        shared: Arc<RuntimeShared>,
    ) -> Result<Self::State, ActorProcessingErr> {
        Ok(RegistryState {
            shared,
            by_name: HashMap::new(),
            by_type: HashMap::new(),
            order: Vec::new(),
        })
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            RegistryMessage::Register(service) => {
                let name = service.name().to_owned();
                let ty = service.service_type();
                // By type, the first registration of a type wins.
                state.shared.by_name.insert(name.clone(), service.clone());
                state
                    .shared
                    .by_type
                    .entry(ty)
                    .or_insert_with(|| service.clone());
                state.by_name.insert(name, service.clone());
                state.by_type.entry(ty).or_insert_with(|| service.clone());
                state.order.push(service);
            }
            RegistryMessage::ByName(name, reply) => {
                let _ = reply.send(state.by_name.get(&name).cloned());
            }
            RegistryMessage::ByType(ty, reply) => {
                let _ = reply.send(state.by_type.get(&ty).cloned());
            }
            RegistryMessage::List(reply) => {
                let _ = reply.send(state.order.clone());
            }
        }
        Ok(())
    }
}
