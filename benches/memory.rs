//! Memory per idle service, against a plain ractor actor, and per event subscription, against a
//! `tokio::sync::broadcast` receiver on a task of its own; each measured in a fresh process.
//!
//! ```sh
//! cargo bench --bench memory
//! ```
//!
//! Each child process makes 10,000 of one thing (idle actors, idle services, subscriptions),
//! then reports the growth of its resident set divided by 10,000. The parent prints each and the
//! differences.

use std::process::Command as Process;

use ractor::{Actor, ActorProcessingErr, ActorRef};
use sora::{Runtime, Service};

const N: usize = 10_000;

struct Idle;

impl Actor for Idle {
    type Msg = ();
    type State = ();
    type Arguments = ();

    async fn pre_start(&self, _: ActorRef<()>, _: ()) -> Result<(), ActorProcessingErr> {
        Ok(())
    }
}

#[derive(Default)]
struct IdleService;
impl Service for IdleService {}

#[derive(serde::Serialize, serde::Deserialize)]
struct Ping;

impl sora::Event for Ping {
    const NAME: &'static str = "ping";
}

/// Emits `Ping`; subscriptions are counted against it.
#[derive(Default)]
struct Pinger;

impl Service for Pinger {
    fn define(def: &mut sora::Definition<Self>) {
        def.emits::<Ping>();
    }
}

/// The resident set size of this process, in bytes.
fn rss() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("read /proc/self/statm");
    let pages: usize = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .expect("statm resident pages");
    pages * 4096
}

fn child(kind: &str) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(async {
        // Warm up allocator and runtime so that the baseline excludes one-time costs.
        let warm = Actor::spawn(None, Idle, ()).await.expect("spawn").0;
        let pinger = Runtime::builder()
            .service(Pinger::default)
            .start()
            .await
            .expect("start");
        let (ping, _) = tokio::sync::broadcast::channel::<u64>(16);
        let before = rss();
        let mut actors = Vec::new();
        let mut runtime = None;
        let mut subscriptions = Vec::new();
        let mut streams = Vec::new();
        match kind {
            "sora-closure" | "sora-stream" => {
                let handle = pinger.service::<Pinger>().expect("service");
                for _ in 0..N {
                    let clause = handle.on::<Ping>();
                    if kind == "sora-closure" {
                        let chain = clause.run(|ping| async move { drop(ping) });
                        subscriptions.push(chain.subscribe().await.expect("subscribe"));
                    } else {
                        streams.push(clause.stream().await.expect("subscribe"));
                    }
                }
            }
            "broadcast" => {
                for _ in 0..N {
                    let mut rx = ping.subscribe();
                    tokio::spawn(async move { while rx.recv().await.is_ok() {} });
                }
            }
            "ractor" => {
                for _ in 0..N {
                    actors.push(Actor::spawn(None, Idle, ()).await.expect("spawn").0);
                }
            }
            _ => {
                let mut builder = Runtime::builder();
                for i in 0..N {
                    builder = builder.service_with(IdleService::default, move |def| {
                        def.name(format!("idle-{i}"));
                    });
                }
                runtime = Some(builder.start().await.expect("start"));
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        let per = (rss() - before) / N;
        println!("{per}");
        drop(actors);
        drop(runtime);
        drop((subscriptions, streams, ping));
        pinger.shutdown().await.expect("shutdown");
        warm.stop(None);
    });
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(pos) = args.iter().position(|a| a == "--child") {
        child(&args[pos + 1]);
        return;
    }
    let exe = std::env::current_exe().expect("current exe");
    let measure = |kind: &str| -> usize {
        let out = Process::new(&exe)
            .args(["--child", kind])
            .output()
            .expect("run child");
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .expect("child prints bytes per actor")
    };
    let ractor = measure("ractor");
    let sora = measure("sora");
    println!("memory per idle actor ({N} of them, resident set growth):");
    println!("  ractor actor:  {ractor:>6} bytes");
    println!("  sora service:  {sora:>6} bytes");
    println!(
        "  difference:    {:>6} bytes per service above ractor's own",
        sora as isize - ractor as isize
    );
    let broadcast = measure("broadcast");
    let closure = measure("sora-closure");
    let stream = measure("sora-stream");
    println!("memory per event subscription ({N} of them, resident set growth):");
    println!("  broadcast receiver + task:  {broadcast:>6} bytes");
    println!("  sora closure subscription:  {closure:>6} bytes (its task included)");
    println!("  sora stream subscription:   {stream:>6} bytes");
}
