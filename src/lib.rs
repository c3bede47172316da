#![doc = include_str!("../README.md")]
//!
//! # Feature flags
//!
//! | feature | what it adds |
//! |---|---|
//! | `http` (default) | the HTTP control plane ([`http`]), served by axum |
//! | `cluster` | services across nodes through `ractor_cluster` ([`cluster`]) |
//! | `cli` | the `sora` command-line client of the control plane |
#![cfg_attr(docsrs, feature(doc_cfg))]
#![doc(test(attr(deny(warnings))))]

pub mod action;
#[cfg(feature = "cluster")]
#[cfg_attr(docsrs, doc(cfg(feature = "cluster")))]
pub mod cluster;
pub mod codec;
pub mod config;
mod discovery;
mod error;
pub mod event;
pub mod handle;
mod host;
#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
pub mod http;
mod jobs;
mod planes;
mod registry;
#[cfg(feature = "cluster")]
mod remote;
pub mod runtime;
#[cfg(feature = "http")]
mod schema;
pub mod service;
mod state;
pub mod status;
pub mod store;
pub mod supervisor;
mod sync;
mod system;

pub use action::{Action, CallOptions, Handler};
pub use error::{BoxError, Error};
pub use event::record::Event;
pub use event::{Emitted, Overflow, Subscription};
pub use handle::{ServiceHandle, ServiceRef};
#[doc(hidden)]
pub use host::Internal;
pub use host::{Envelope, Query, ServiceMessage, Subscribe};
pub use jobs::JobOptions;
pub use runtime::{Jobs, Runtime, RuntimeBuilder, RuntimeHandle};
pub use service::environment::Environment;
pub use service::restart::{Backoff, Restart, RestartPolicy, Strategy};
pub use service::retry::{JobDead, Retry};
pub use service::{Command, Context, Definition, Health, MissedTick, Schedule, Service, Startup};
pub use state::{State, StateEntry};
pub use status::{ServiceInfo, ServiceKind, ServiceState, ServiceStatus};

pub use ractor;

/// What the [`register!`] macro expands to. Not public API.
#[doc(hidden)]
pub mod __private {
    pub use crate::discovery::{Discovered, Registered, discovered};
    pub use inventory;
}

/// The Rust snippets of the guides, compiled and run as doc tests so that they stay true.
#[cfg(doctest)]
#[doc = include_str!("../docs/getting-started.md")]
struct GettingStartedGuide;

#[cfg(doctest)]
#[doc = include_str!("../docs/events.md")]
struct EventsGuide;

#[cfg(doctest)]
#[doc = include_str!("../docs/configuration.md")]
struct ConfigurationGuide;

#[cfg(doctest)]
#[doc = include_str!("../docs/durability.md")]
struct DurabilityGuide;

#[cfg(all(doctest, feature = "http"))]
#[doc = include_str!("../docs/operations.md")]
struct OperationsGuide;

#[cfg(all(doctest, feature = "cluster"))]
#[doc = include_str!("../docs/cluster.md")]
struct ClusterGuide;
