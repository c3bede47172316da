//! A remote action round trip against a raw `ractor_cluster` call, and events forwarded from one
//! node to the other against raw `ractor_cluster` casts, between the same two processes, over the
//! same link, in the same run.
//!
//! ```text
//! cargo bench --bench cluster --features cluster
//! ```
//!
//! This binary starts itself again as the other node (`SORA_BENCH_NODE`). That node runs a Sora
//! service with a no-op action and a plain ractor actor that answers the same bytes; this node
//! calls each in turn: one call at a time (latency), then 64 in flight (throughput). Then events:
//! the service emits `EVENTS` events that a subscription here takes, against the raw actor
//! casting as many messages of the same bytes to a plain actor here. Rounds alternate and the
//! median of each is reported.

use std::io::{BufRead, BufReader};
use std::process::{Command as Process, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use ractor_cluster::RactorClusterMessage;
use serde::{Deserialize, Serialize};
use sora::cluster::ClusterConfig;
use sora::{Action, BoxError, Context, Definition, Handler, Runtime, Service};

const SECRET: &str = "bench-secret";
const RAW_GROUP: &str = "bench:raw";
const ROUNDS: usize = 5;
const SEQUENTIAL: usize = 3_000;
const CONCURRENT: usize = 20_000;
const IN_FLIGHT: usize = 64;
const EVENTS: u64 = 100_000;
const SINK_GROUP: &str = "bench:sink";

/// What the service emits, and the raw actor casts the bytes of.
#[derive(Debug, Serialize, Deserialize)]
struct Tick {
    n: u64,
}

impl sora::Event for Tick {
    const NAME: &'static str = "tick";
}

#[derive(Debug, Serialize, Deserialize)]
struct Echo {
    text: String,
}

impl Action for Echo {
    const NAME: &'static str = "echo";
    type Reply = String;
}

#[derive(Default)]
struct Echoer;

impl Service for Echoer {
    fn define(def: &mut Definition<Self>) {
        def.action::<Echo>()
            .concurrency(IN_FLIGHT)
            .command("emit")
            .emits::<Tick>();
    }

    async fn command(&self, command: sora::Command, ctx: &Context) -> Result<(), BoxError> {
        if let sora::Command::Custom {
            args: Some(args), ..
        } = command
        {
            for n in 0..args.parse::<u64>()? {
                ctx.emit(Tick { n })?;
            }
        }
        Ok(())
    }
}

impl Handler<Echo> for Echoer {
    async fn handle(&self, echo: Echo, _: &Context) -> Result<String, BoxError> {
        Ok(echo.text)
    }
}

/// The baseline: a plain actor answering bytes through ractor_cluster's own rpc.
#[derive(RactorClusterMessage)]
enum RawMessage {
    #[rpc]
    Echo(Vec<u8>, RpcReplyPort<Vec<u8>>),
    /// Casts this many messages to the sink of the other node.
    Blast(u64),
}

/// The raw baseline's receiving end: counts messages, and says when it has had `target`.
#[derive(RactorClusterMessage)]
enum SinkMessage {
    Event(Vec<u8>),
}

struct Sink;

impl Actor for Sink {
    type Msg = SinkMessage;
    type State = (u64, Arc<tokio::sync::watch::Sender<u64>>);
    type Arguments = Arc<tokio::sync::watch::Sender<u64>>;

    async fn pre_start(
        &self,
        me: ActorRef<SinkMessage>,
        counted: Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        ractor::pg::join(SINK_GROUP.into(), vec![me.get_cell()]);
        Ok((0, counted))
    }

    async fn handle(
        &self,
        _: ActorRef<SinkMessage>,
        message: SinkMessage,
        (count, counted): &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let SinkMessage::Event(bytes) = message;
        let _: (Tick, usize) =
            bincode::serde::decode_from_slice(&bytes, bincode::config::standard())?;
        *count += 1;
        counted.send_replace(*count);
        Ok(())
    }
}

struct Raw;

impl Actor for Raw {
    type Msg = RawMessage;
    type State = ();
    type Arguments = ();

    async fn pre_start(&self, me: ActorRef<RawMessage>, _: ()) -> Result<(), ActorProcessingErr> {
        ractor::pg::join(RAW_GROUP.into(), vec![me.get_cell()]);
        Ok(())
    }

    async fn handle(
        &self,
        _: ActorRef<RawMessage>,
        message: RawMessage,
        _: &mut (),
    ) -> Result<(), ActorProcessingErr> {
        match message {
            RawMessage::Echo(bytes, reply) => {
                let _ = reply.send(bytes);
            }
            RawMessage::Blast(count) => {
                let sink: ActorRef<SinkMessage> = ractor::pg::get_members(&SINK_GROUP.to_owned())
                    .into_iter()
                    .find(|m| !m.get_id().is_local())
                    .ok_or("no sink")?
                    .into();
                for n in 0..count {
                    let bytes =
                        bincode::serde::encode_to_vec(Tick { n }, bincode::config::standard())?;
                    sink.cast(SinkMessage::Event(bytes))?;
                }
            }
        }
        Ok(())
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    if let Ok(port) = std::env::var("SORA_BENCH_NODE") {
        serve(port.parse().expect("a port")).await;
        return;
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let mut child = Process::new(std::env::current_exe().expect("this binary"))
        .env("SORA_BENCH_NODE", port.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("the other node");
    let mut lines = BufReader::new(child.stdout.take().expect("piped")).lines();
    assert_eq!(
        lines.next().and_then(Result::ok).as_deref(),
        Some("ready"),
        "the other node did not start"
    );

    let runtime = Runtime::builder()
        .remote::<Echoer>()
        .cluster(
            ClusterConfig::new("caller", SECRET)
                .listen("127.0.0.1:0".parse().unwrap())
                .seed(format!("127.0.0.1:{port}")),
        )
        .start()
        .await
        .expect("this node");
    let cluster = runtime.cluster().expect("a node");
    let found = cluster.wait_until(|c| {
        c.serves("Echoer")
            && ractor::pg::get_members(&RAW_GROUP.to_owned())
                .iter()
                .any(|m| !m.get_id().is_local())
    });
    tokio::time::timeout(Duration::from_secs(30), found)
        .await
        .expect("the other node's actors");
    let echoer = runtime.service::<Echoer>().expect("declared");
    let raw: ActorRef<RawMessage> = ractor::pg::get_members(&RAW_GROUP.to_owned())
        .into_iter()
        .find(|m| !m.get_id().is_local())
        .expect("the raw actor")
        .into();

    let text = "a short payload".to_owned();
    let raw_call = {
        let raw = raw.clone();
        let bytes = bincode::serde::encode_to_vec(&text, bincode::config::standard()).unwrap();
        move || {
            let raw = raw.clone();
            let bytes = bytes.clone();
            async move {
                let out = raw
                    .call(|port| RawMessage::Echo(bytes, port), None)
                    .await
                    .expect("the raw actor answers");
                assert!(out.is_success());
            }
        }
    };
    let sora_call = {
        let echoer = echoer.clone();
        move || {
            let echoer = echoer.clone();
            let text = text.clone();
            async move {
                let out = echoer
                    .act(Echo { text })
                    .await
                    .expect("the service answers");
                assert!(!out.is_empty());
            }
        }
    };
    // Warm both paths up.
    for _ in 0..500 {
        raw_call().await;
        sora_call().await;
    }

    let mut raw_seq = Vec::new();
    let mut sora_seq = Vec::new();
    let mut raw_conc = Vec::new();
    let mut sora_conc = Vec::new();
    for _ in 0..ROUNDS {
        raw_seq.push(sequential(&raw_call).await);
        sora_seq.push(sequential(&sora_call).await);
        raw_conc.push(concurrent(&raw_call).await);
        sora_conc.push(concurrent(&sora_call).await);
    }
    let (raw_seq, sora_seq) = (median(raw_seq), median(sora_seq));
    let (raw_conc, sora_conc) = (median(raw_conc), median(sora_conc));
    println!("remote round trip over loopback, median of {ROUNDS} interleaved rounds");
    println!("| calls | raw ractor_cluster | Sora | Sora / raw |");
    println!("|---|---:|---:|---:|");
    println!(
        "| one at a time ({SEQUENTIAL}) | {:.0}/s ({:.0} µs) | {:.0}/s ({:.0} µs) | {:.2} |",
        raw_seq,
        1e6 / raw_seq,
        sora_seq,
        1e6 / sora_seq,
        sora_seq / raw_seq
    );
    println!(
        "| {IN_FLIGHT} in flight ({CONCURRENT}) | {:.0}/s | {:.0}/s | {:.2} |",
        raw_conc,
        sora_conc,
        sora_conc / raw_conc
    );

    // Events: the service's, forwarded to a subscription here, against raw casts to a sink here.
    let (counted, mut sunk) = tokio::sync::watch::channel(0u64);
    let (sink, _) = Actor::spawn(None, Sink, Arc::new(counted))
        .await
        .expect("the sink");
    let mut ticks = echoer
        .on::<Tick>()
        .queue(EVENTS as usize, sora::Overflow::DropNewest)
        .stream()
        .await
        .expect("a subscription");
    let (mut raw_events, mut sora_events) = (Vec::new(), Vec::new());
    for round in 0..=ROUNDS {
        let start = Instant::now();
        raw.cast(RawMessage::Blast(EVENTS)).expect("the raw actor");
        let target = EVENTS * (round as u64 + 1);
        sunk.wait_for(|n| *n >= target)
            .await
            .expect("the sink counts");
        let raw_rate = EVENTS as f64 / start.elapsed().as_secs_f64();

        let start = Instant::now();
        echoer
            .tell(sora::Command::custom_with("emit", &EVENTS))
            .expect("the service");
        for n in 0..EVENTS {
            let tick = ticks.next().await.expect("the subscription lasts");
            assert_eq!(tick.n, n, "in emission order");
        }
        let sora_rate = EVENTS as f64 / start.elapsed().as_secs_f64();
        // The first round warms both paths up.
        if round > 0 {
            raw_events.push(raw_rate);
            sora_events.push(sora_rate);
        }
    }
    let (raw_events, sora_events) = (median(raw_events), median(sora_events));
    println!();
    println!(
        "events from the other node, {EVENTS} per round, median of {ROUNDS} interleaved rounds"
    );
    println!("| raw ractor_cluster casts | Sora events to a subscription | Sora / raw |");
    println!("|---:|---:|---:|");
    println!(
        "| {raw_events:.0}/s | {sora_events:.0}/s | {:.2} |",
        sora_events / raw_events
    );
    println!(
        "events the service dropped on the way: {}",
        echoer.status().await.expect("its status").events_dropped
    );

    drop(ticks);
    sink.stop(None);
    runtime.shutdown().await.expect("an orderly stop");
    drop(child.stdin.take());
    let _ = child.wait();
}

/// Calls per second, one at a time.
async fn sequential<F, Fut>(call: &F) -> f64
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let start = Instant::now();
    for _ in 0..SEQUENTIAL {
        call().await;
    }
    SEQUENTIAL as f64 / start.elapsed().as_secs_f64()
}

/// Calls per second with `IN_FLIGHT` outstanding.
async fn concurrent<F, Fut>(call: &F) -> f64
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let start = Instant::now();
    futures::stream::iter(0..CONCURRENT)
        .map(|_| call())
        .buffer_unordered(IN_FLIGHT)
        .collect::<()>()
        .await;
    CONCURRENT as f64 / start.elapsed().as_secs_f64()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// The other node: serves the service and the raw actor until stdin closes.
async fn serve(port: u16) {
    let runtime = Runtime::builder()
        .service(Echoer::default)
        .cluster(
            ClusterConfig::new("server", SECRET)
                .listen(format!("127.0.0.1:{port}").parse().unwrap()),
        )
        .start()
        .await
        .expect("the serving node");
    let (raw, _) = Actor::spawn(None, Raw, ()).await.expect("the raw actor");
    println!("ready");
    let _ = tokio::task::spawn_blocking(|| {
        let mut sink = String::new();
        while std::io::stdin().read_line(&mut sink).is_ok_and(|n| n > 0) {}
    })
    .await;
    raw.stop(None);
    runtime.shutdown().await.expect("an orderly stop");
}
