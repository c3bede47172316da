//! Ready-made Sora services, built only on Sora's public API.
//!
//! | service | kind | what it does |
//! |---|---|---|
//! | [`Heartbeat`] | periodic, with an action | beats on a schedule; [`Beats`] reads the count |
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use sora::Schedule;
//! use sora_actors::{Beats, Heartbeat};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), sora::Error> {
//! let runtime = sora::Runtime::builder()
//!     .service_with(Heartbeat::default, |def| {
//!         def.periodic(Schedule::every(Duration::from_secs(10)));
//!     })
//!     .start()
//!     .await?;
//! tokio::time::sleep(Duration::from_secs(35)).await;
//! let beats = runtime.service::<Heartbeat>()?.act(Beats).await?;
//! assert_eq!(beats, 3);
//! runtime.shutdown().await
//! # }
//! ```

mod heartbeat;

pub use heartbeat::{Beats, Heartbeat};
