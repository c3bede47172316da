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

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use sora::{Action, BoxError, Command, Context, Definition, Handler, Runtime, Service};

const OPS: u32 = 3_000_000;
const BURST: u32 = 1_000;

#[derive(Default)]
struct Noop;

struct Ping;

impl Action for Ping {
    const NAME: &'static str = "ping";
    type Reply = ();
}

impl Service for Noop {
    fn define(def: &mut Definition<Self>) {
        def.command(Command::CHECK_QUEUE);
    }

    async fn command(&self, _: Command, _: &Context) -> Result<(), BoxError> {
        Ok(())
    }
}

impl Handler<Ping> for Noop {
    async fn handle(&self, _: Ping, _: &Context) -> Result<(), BoxError> {
        Ok(())
    }
}

struct NoopActor;

enum Msg {
    Ping(RpcReplyPort<()>),
    Cast,
}

#[cfg(feature = "cluster")]
impl ractor::Message for Msg {}

impl Actor for NoopActor {
    type Msg = Msg;
    type State = ();
    type Arguments = ();

    async fn pre_start(&self, _: ActorRef<Msg>, _: ()) -> Result<(), ActorProcessingErr> {
        Ok(())
    }

    async fn handle(
        &self,
        _: ActorRef<Msg>,
        msg: Msg,
        _: &mut (),
    ) -> Result<(), ActorProcessingErr> {
        if let Msg::Ping(reply) = msg {
            let _ = reply.send(());
        }
        Ok(())
    }
}

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
            let sora = Runtime::builder().service(Noop::default).start().await?;
            let service = sora.service::<Noop>()?;
            let (actor, _) = Actor::spawn(None, NoopActor, ()).await?;
            let started = std::time::Instant::now();
            for i in 0..OPS {
                let closes_burst = i % BURST == BURST - 1;
                match op.as_str() {
                    "cast" => {
                        actor.cast(Msg::Cast)?;
                        if closes_burst {
                            ractor::call!(actor, Msg::Ping)?;
                        }
                    }
                    "tell" => {
                        service.tell(Command::CheckQueue)?;
                        if closes_burst {
                            service.act(Ping).await?;
                        }
                    }
                    "call" => ractor::call!(actor, Msg::Ping)?,
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
