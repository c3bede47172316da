use std::sync::Arc;

use super::*;
use crate::host::ErasedService;
use crate::system::RuntimeShared;

#[derive(Default)]
struct Alpha;
impl crate::Service for Alpha {}

#[tokio::test]
async fn registers_and_resolves_by_name_and_type() {
    let shared = RuntimeShared::for_tests();
    let cell: Arc<dyn ErasedService> = Arc::new(crate::host::ServiceCell::<Alpha>::new(
        crate::Definition::of(),
        Box::new(Alpha::default),
        true,
        false,
        shared.clone(),
    ));
    let (registry, join) = ractor::Actor::spawn(None, Registry, shared.clone())
        .await
        .unwrap();
    registry.cast(RegistryMessage::Register(cell)).unwrap();
    let found = ractor::call!(registry, RegistryMessage::ByName, "Alpha".to_owned()).unwrap();
    assert_eq!(found.map(|s| s.name().to_owned()).as_deref(), Some("Alpha"));
    let by_type = ractor::call!(
        registry,
        RegistryMessage::ByType,
        std::any::TypeId::of::<Alpha>()
    )
    .unwrap();
    assert!(by_type.is_some());
    assert!(
        ractor::call!(registry, RegistryMessage::ByName, "Beta".to_owned())
            .unwrap()
            .is_none()
    );
    // The mirror answers without the actor.
    assert!(shared.by_name.contains_key("Alpha"));
    registry.stop(None);
    join.await.unwrap();
}
