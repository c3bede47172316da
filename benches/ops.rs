//! A fixed number of operations of one kind, for counting instructions per operation: a figure
//! that does not move with the load of a shared machine, as throughput does.
//!
//! ```sh
//! cargo bench --bench ops --no-run
//! BIN=$(ls -t target/release/deps/ops-* | grep -v '\.d$' | head -1)
//! for op in cast tell call act; do perf stat -e instructions "$BIN" $op; done
//! ```
//!
//! Each run performs 3,000,000 operations on a one-thread tokio runtime and prints the time per
//! operation; divide perf's instruction count by 3,000,000. `cast` and `tell` go in bursts of
//! 1,000 closed by one awaited call, as in `benches/runtime.rs`.

use ractor::Actor;
use sora::{Command, Runtime};

#[path = "support/noop.rs"]
mod noop;
use noop::{NoopActor, NoopMsg, NoopService, Ping};

const OPS: u32 = 3_000_000;
const BURST: u32 = 1_000;

fn main() {
    // `cargo bench` passes `--bench`; the operation is the first other argument.
    let op = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .unwrap_or_else(|| "tell".to_owned());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    rt.block_on(async move {
        tokio::spawn(async move {
            let sora = Runtime::builder()
                .service(NoopService::default)
                .start()
                .await?;
            let service = sora.service::<NoopService>()?;
            let (actor, _) = Actor::spawn(None, NoopActor, ()).await?;
            let started = std::time::Instant::now();
            for i in 0..OPS {
                let closes_burst = i % BURST == BURST - 1;
                match op.as_str() {
                    "cast" => {
                        actor.cast(NoopMsg::Cast)?;
                        if closes_burst {
                            ractor::call!(actor, NoopMsg::Ping)?;
                        }
                    }
                    "tell" => {
                        service.tell(Command::CheckQueue)?;
                        if closes_burst {
                            service.act(Ping).await?;
                        }
                    }
                    "call" => ractor::call!(actor, NoopMsg::Ping)?,
                    "act" => service.act(Ping).await?,
                    other => {
                        return Err(
                            format!("unknown operation {other}: cast, tell, call or act").into(),
                        );
                    }
                }
            }
            println!("{op}: {:?} per operation", started.elapsed() / OPS);
            actor.stop(None);
            sora.shutdown().await?;
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
        })
        .await
        .expect("the benchmark task")
    })
    .expect("the benchmark");
}
