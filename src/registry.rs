//! The registry: resolves services by name and by type.
//!
//! A registry actor holds the authoritative table; every registration is mirrored into
//! `DashMap`s that handles read without a message, so a call never waits on the registry after
//! the service has been resolved once. Each runtime has its own registry: ractor's process-wide
//! named registry is not used, so several runtimes in one process never see each other's names.

mod actor;
mod messages;

pub(crate) use actor::Registry;
pub(crate) use messages::RegistryMessage;

#[cfg(test)]
mod tests;
