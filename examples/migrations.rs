//! Start-up services: database migrations that must finish before anything else starts.
//!
//! `Migrations` runs first (order 1), then `SeedData` (order 2), each within its own timeout.
//! `WarmCache` may fail without stopping the start (`continue_on_failure`), and `SearchIndex`
//! gates readiness until its index is loaded. Only then does `Api`, an ordinary service, start.
//!
//! ```sh
//! cargo run --example migrations
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use sora::{BoxError, Context, Definition, Runtime, Service, ServiceState, Startup};

#[derive(Default)]
struct Migrations;

impl Service for Migrations {
    fn define(def: &mut Definition<Self>) {
        def.startup(Startup::order(1).timeout(Duration::from_secs(60)));
    }

    async fn start(&self, ctx: &Context) -> Result<(), BoxError> {
        for migration in ["0001_users", "0002_files", "0003_translations"] {
            tokio::time::sleep(Duration::from_millis(30)).await;
            println!("[{}] applied {migration}", ctx.name());
        }
        Ok(())
    }
}

#[derive(Default)]
struct SeedData;

impl Service for SeedData {
    fn define(def: &mut Definition<Self>) {
        def.startup(Startup::order(2).timeout(Duration::from_secs(10)));
    }

    async fn start(&self, ctx: &Context) -> Result<(), BoxError> {
        println!("[{}] inserted the default languages", ctx.name());
        Ok(())
    }
}

#[derive(Default)]
struct WarmCache;

impl Service for WarmCache {
    fn define(def: &mut Definition<Self>) {
        def.startup(
            Startup::order(3)
                .timeout(Duration::from_secs(5))
                .continue_on_failure(),
        );
    }

    async fn start(&self, ctx: &Context) -> Result<(), BoxError> {
        println!("[{}] cache server not reachable; starting cold", ctx.name());
        Err("connection refused".into())
    }
}

struct SearchIndex {
    loaded: Arc<AtomicBool>,
}

impl Service for SearchIndex {
    fn define(def: &mut Definition<Self>) {
        def.startup(Startup::order(4));
    }

    async fn run(&self, ctx: &Context) -> Result<(), BoxError> {
        tokio::time::sleep(Duration::from_millis(200)).await;
        self.loaded.store(true, Ordering::SeqCst);
        println!("[{}] index loaded", ctx.name());
        ctx.cancelled().await;
        Ok(())
    }

    async fn ready(&self, _ctx: &Context) -> bool {
        self.loaded.load(Ordering::SeqCst)
    }
}

#[derive(Default)]
struct Api;

impl Service for Api {
    async fn start(&self, ctx: &Context) -> Result<(), BoxError> {
        println!("[{}] accepting requests", ctx.name());
        Ok(())
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let loaded = Arc::new(AtomicBool::new(false));
    let runtime = Runtime::builder()
        .service(Api::default)
        .service(move || SearchIndex {
            loaded: loaded.clone(),
        })
        .service(WarmCache::default)
        .service(SeedData::default)
        .service(Migrations::default)
        .start()
        .await?;

    let cache = runtime.service::<WarmCache>()?.status().await?;
    assert_eq!(cache.state, ServiceState::Failed);
    println!(
        "WarmCache: {:?} ({})",
        cache.state,
        cache.last_failure.unwrap_or_default()
    );

    // Readiness waits for every service; WarmCache failed, so it is not counted as ready...
    println!("ready right after start: {}", runtime.is_ready().await);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let index_ready = runtime.service::<SearchIndex>()?.status().await?;
    println!("SearchIndex after loading: {:?}", index_ready.state);
    // ...so the runtime as a whole reports not ready, and a probe would say why.
    for (name, health) in runtime.health().await {
        println!("  {name:<12} {health:?}");
    }
    runtime.shutdown().await?;
    Ok(())
}
