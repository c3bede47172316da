//! A node of a cluster under attack: by a peer that holds the secret and sends what it likes,
//! by a seed that accepts and never answers, and by clients that connect and never
//! authenticate. The node under attack is a real process (see `support/node.rs`); the attacker
//! is this process, as a plain `ractor_cluster` node or a raw TCP client.
#![cfg(all(feature = "cluster", target_os = "linux"))]

#[path = "support/node.rs"]
mod node;

use std::time::Duration;

use node::*;
use ractor::{Actor, ActorRef, RpcReplyPort};
use serde::Serialize;
use sora::cluster::ractor_cluster;
use sora::cluster::ractor_cluster::node::NodeConnectionMode;
use sora::cluster::ractor_cluster::{NodeServer, NodeServerMessage, RactorClusterMessage};
use sora::codec::{Bincode, Codec, Format};
use sora::{CallOptions, Error};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Not a test of its own: the body of the other nodes (see `support/node.rs`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_process() {
    node_main().await;
}

/// What a Sora gateway takes, as any `ractor_cluster` node can name it: the variants' names
/// are what cross the wire.
#[derive(RactorClusterMessage)]
enum Gateway {
    #[rpc]
    Call(Vec<u8>, RpcReplyPort<Vec<u8>>),
    Tell(Vec<u8>),
    Events(Vec<u8>),
}

/// The one request the attacker also sends in good form, to see that the node still serves:
/// the first variant of Sora's request, with the same fields in the same order.
#[derive(Serialize)]
enum Request {
    Act {
        service: String,
        action: String,
        format: Format,
        params: Vec<u8>,
        options: CallOptions,
        schema: Option<u64>,
    },
}

const MALLORY: &str = "mallory@127.0.0.1";

/// A plain `ractor_cluster` node holding the secret, joined to the node on `port`.
struct Mallory {
    server: ActorRef<NodeServerMessage>,
}

impl Mallory {
    async fn join(port: u16) -> Mallory {
        let server = NodeServer::new(
            0,
            SECRET.into(),
            "mallory".into(),
            "127.0.0.1".into(),
            None,
            Some(NodeConnectionMode::Isolated),
        )
        .with_listen_addr([127, 0, 0, 1].into());
        let (server, _) = Actor::spawn(None, server, ()).await.expect("a node server");
        ractor_cluster::client_connect(&server, format!("127.0.0.1:{port}"))
            .await
            .expect("a connection");
        Mallory { server }
    }

    /// The gateway that serves `service`, once the node's process groups have arrived.
    async fn gateway(&self, service: &str) -> ActorRef<Gateway> {
        let group = format!("sora:sora:service:{service}");
        within("the node's groups", async {
            loop {
                let remote = ractor::pg::get_members(&group)
                    .into_iter()
                    .find(|cell| !cell.get_id().is_local());
                if let Some(cell) = remote {
                    return ActorRef::from(cell);
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
    }

    async fn leave(self) {
        self.server.stop(None);
        let _ = self.server.wait(Some(Duration::from_secs(5))).await;
    }
}

/// `from` as the first field of a message, then `rest`, as every message between nodes starts.
fn message(rest: &[u8]) -> Vec<u8> {
    let mut bytes = Bincode::encode(MALLORY).unwrap();
    bytes.extend_from_slice(rest);
    bytes
}

/// A bincode length prefix for a string of `len` bytes, without the bytes.
fn length(len: u64) -> Vec<u8> {
    let mut bytes = vec![0xfd];
    bytes.extend_from_slice(&len.to_le_bytes());
    bytes
}

async fn call(gateway: &ActorRef<Gateway>, bytes: Vec<u8>) -> Result<Vec<u8>, Error> {
    let reply = ractor::call_t!(gateway, Gateway::Call, 30_000, bytes).expect("an answer");
    Bincode::decode::<Result<Vec<u8>, Error>>(&reply).expect("a reply Sora can read")
}

/// Asks the node what it has seen, and waits until its log has caught up with the question.
async fn report(node: &mut Node) -> String {
    node.send("report");
    let said = node.next().await.expect("a report");
    let report = said.strip_prefix("report ").expect("a report").to_owned();
    node.logs(&format!("SORA-NODE-REPORT {report}")).await;
    report
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decoding_bombs_from_a_peer_are_refused_and_the_node_serves_on() {
    let _turn = THIS_NODE.lock().await;
    let mut victim = Node::start("victim", None, SECRET, &[]).await;
    let mallory = Mallory::join(victim.port).await;
    let gateway = mallory.gateway("Ledger").await;

    // A request whose service name claims 2^40 bytes, then one that claims u64::MAX: once these
    // aborted the process and panicked its gateway.
    for claimed in [1u64 << 40, u64::MAX] {
        let mut bomb = vec![0]; // `Act`
        bomb.extend(length(claimed));
        match call(&gateway, message(&bomb)).await {
            Err(Error::Incompatible { node, reason }) => {
                assert_eq!(node, "victim@127.0.0.1");
                assert!(reason.contains("limit"), "{reason}");
            }
            other => panic!("the bomb was not refused: {other:?}"),
        }
    }
    // The same in a request nobody answers, and in a batch of events (its node's name).
    let mut bomb = vec![0];
    bomb.extend(length(1 << 40));
    gateway.cast(Gateway::Tell(message(&bomb))).unwrap();
    gateway.cast(Gateway::Events(length(1 << 40))).unwrap();
    // Garbage, and nothing at all.
    gateway.cast(Gateway::Events(vec![0xff; 64])).unwrap();
    assert!(matches!(
        call(&gateway, Vec::new()).await,
        Err(Error::Incompatible { .. })
    ));

    // And the node serves on: a request in good form gets its answer.
    let request = Request::Act {
        service: "Ledger".into(),
        action: "add".into(),
        format: Format::Bincode,
        params: Bincode::encode(&Add { amount: 2 }).unwrap(),
        options: CallOptions::default(),
        schema: None,
    };
    let answer = call(&gateway, message(&Bincode::encode(&request).unwrap())).await;
    assert_eq!(Bincode::decode::<u64>(&answer.unwrap()).unwrap(), 2);
    assert!(victim.is_running());

    // Every one was counted; the peer that named itself was named in one warning, not six.
    assert_eq!(
        report(&mut victim).await,
        "undecodable=6 pending=0 turned_away=0"
    );
    let warned = |who: &str| {
        victim
            .log()
            .iter()
            .filter(|l| l.contains("WARN") && l.contains("could not be decoded") && l.contains(who))
            .count()
    };
    assert_eq!(warned(MALLORY), 1, "{:#?}", victim.log());
    assert_eq!(warned("did not name itself"), 1, "{:#?}", victim.log());
    mallory.leave().await;
    victim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_that_stops_is_restarted_and_serves_again() {
    let _turn = THIS_NODE.lock().await;
    let mut victim = Node::start("victim", None, SECRET, &[]).await;
    let (runtime, cluster) = translator_caller(this_node(&[victim.port], SECRET)).await;
    served_by_others(&cluster, "Translator").await;
    let translator = runtime.service::<Translator>().unwrap();
    translator.act(translate("before")).await.unwrap();

    victim.send("kill-gateway");
    let said = victim
        .next()
        .await
        .expect("the node's health while it is down");
    let health = said.strip_prefix("down ").expect("its health");
    assert!(health.contains("the gateway is down"), "{health}");
    victim.expect("back").await;
    victim
        .logs("the gateway is back and has joined its groups")
        .await;

    // Its groups are joined again: this node resolves the service to it and calls it.
    served_by_others(&cluster, "Translator").await;
    let reply = translator.act(translate("after")).await.unwrap();
    assert_eq!(reply.text, "[pt] after");
    runtime.shutdown().await.unwrap();
    victim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_over_the_limit_fails_its_call_and_the_link_stays() {
    use futures::StreamExt;
    let _turn = THIS_NODE.lock().await;
    let env = [("SORA_TEST_MAX_MESSAGE", std::ffi::OsStr::new("4096"))];
    let other = Node::start_with("other", None, SECRET, &[], &env).await;
    let config = this_node(&[other.port], SECRET).max_message_size(4096);
    let (runtime, cluster) = translator_caller(config).await;
    served_by_others(&cluster, "Translator").await;
    let translator = runtime.service::<Translator>().unwrap();
    // A request too large for one message is refused here, before it is sent.
    let large = Translate {
        text: "x".repeat(10_000),
        to: "pt".into(),
    };
    let err = translator.act(large).await.unwrap_err();
    assert!(
        matches!(&err, Error::BadParameters { message, .. } if message.contains("4096")),
        "{err:?}"
    );
    // A reply too large: the serving node says so instead of sending it.
    let err = translator.act(Blob(10_000)).await.unwrap_err();
    assert!(
        matches!(&err, Error::Encode { message, .. } if message.contains("more than the 4096")),
        "{err:?}"
    );
    // Neither closed the link: the next call crosses.
    assert_eq!(translator.act(Blob(100)).await.unwrap().len(), 100);
    // A burst of events larger than one message crosses in several, all of it, in order.
    // Room for the whole burst: a loaded machine may run the test slower than events come,
    // and the default queue (1024) would drop the oldest, as it should.
    let mut counted = translator
        .on::<Counted>()
        .queue(4096, sora::Overflow::DropOldest)
        .stream()
        .await
        .unwrap();
    translator
        .command(sora::Command::custom_with("count", &2000))
        .await
        .unwrap();
    for n in 0..2000 {
        let event = within("the next event", counted.next())
            .await
            .expect("an event");
        assert_eq!(event.n, n);
    }
    assert_eq!(cluster.peers().len(), 1, "the link stayed up");
    runtime.shutdown().await.unwrap();
    other.stop().await;
}

/// How many file descriptors process `pid` has open.
fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("the process's descriptors")
        .count()
}

/// The resident memory of process `pid`, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("its status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

/// Waits until `stream` is closed by its other end, and says whether it was.
async fn closed_by_peer(mut stream: TcpStream) -> bool {
    let mut sink = [0u8; 4096];
    loop {
        match stream.read(&mut sink).await {
            Ok(0) | Err(_) => return true,
            Ok(_) => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_seed_that_never_handshakes_is_closed_at_the_deadline_every_time() {
    // A seed that accepts every connection and never says a word.
    let mute = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = mute.local_addr().unwrap().port();
    let env = [("SORA_TEST_HANDSHAKE_MS", std::ffi::OsStr::new("200"))];
    let victim = Node::start_with("victim", None, SECRET, &[port], &env).await;
    let (closed_tx, mut closed) = tokio::sync::mpsc::unbounded_channel();
    let mut fds = Vec::new();
    for attempt in 1..=10 {
        let (stream, _) = within("the node's next attempt", mute.accept())
            .await
            .unwrap();
        let closed_tx = closed_tx.clone();
        tokio::spawn(async move {
            let _ = closed_tx.send(closed_by_peer(stream).await);
        });
        // The node closes each connection at its deadline, before it dials again.
        assert!(
            within("the close", closed.recv()).await.unwrap(),
            "attempt {attempt}"
        );
        fds.push(open_fds(victim.pid()));
    }
    // What the node holds does not grow with its attempts (it did: 11 to 21 over ten).
    eprintln!("open descriptors after each of ten attempts: {fds:?}");
    assert!(fds[9] <= fds[0] + 1, "open descriptors: {fds:?}");
    let warned = victim
        .log()
        .iter()
        .filter(|l| l.contains("did not complete a handshake") && l.contains(&port.to_string()))
        .count();
    assert!(warned >= 9, "{:#?}", victim.log());
    let misled = victim.log().iter().any(|l| l.contains("secrets the same"));
    assert!(
        !misled,
        "a mute seed is no wrong secret: {:#?}",
        victim.log()
    );
    victim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_that_never_authenticate_are_capped_and_closed_at_the_deadline() {
    let env = [
        ("SORA_TEST_HANDSHAKE_MS", std::ffi::OsStr::new("3000")),
        ("SORA_TEST_PENDING", std::ffi::OsStr::new("16")),
    ];
    let mut victim = Node::start_with("victim", None, SECRET, &[], &env).await;
    let before = open_fds(victim.pid());
    let mut connections = Vec::new();
    for _ in 0..200 {
        connections.push(
            TcpStream::connect(("127.0.0.1", victim.port))
                .await
                .unwrap(),
        );
    }
    let closes: Vec<_> = connections
        .into_iter()
        .map(|c| tokio::spawn(closed_by_peer(c)))
        .collect();
    // Sixteen wait for their deadline; the others were closed as they came.
    within("the cap", async {
        while report(&mut victim).await != "undecodable=0 pending=16 turned_away=184" {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(open_fds(victim.pid()) <= before + 16 + 2);
    // And at the deadline, those too.
    for close in closes {
        assert!(within("every close", close).await.unwrap());
    }
    within("the last slot given back", async {
        while report(&mut victim).await != "undecodable=0 pending=0 turned_away=184" {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(open_fds(victim.pid()) <= before + 1);
    victim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_frames_before_authentication_are_never_read() {
    let env = [
        ("SORA_TEST_HANDSHAKE_MS", std::ffi::OsStr::new("5000")),
        ("SORA_TEST_PENDING", std::ffi::OsStr::new("100")),
    ];
    let victim = Node::start_with("victim", None, SECRET, &[], &env).await;
    let before = rss_kib(victim.pid());
    // Seventy connections, each sending 15 MiB of a 16 MiB frame: once this held 1.09 GB.
    let body = std::sync::Arc::new(vec![0x42u8; 15 << 20]);
    let mut senders = Vec::new();
    for _ in 0..70 {
        let mut stream = TcpStream::connect(("127.0.0.1", victim.port))
            .await
            .unwrap();
        let body = body.clone();
        senders.push(tokio::spawn(async move {
            let header = ((16u64 << 20) - 1).to_be_bytes();
            let sent = async {
                stream.write_all(&header).await?;
                stream.write_all(&body).await
            };
            // The node reads none of the body, so the writes stall once the socket's buffers
            // are full; stop pushing after a while, and keep the connection.
            let _ = tokio::time::timeout(Duration::from_secs(2), sent).await;
            stream
        }));
    }
    let mut held = Vec::new();
    for sender in senders {
        held.push(sender.await.unwrap());
    }
    let during = rss_kib(victim.pid());
    assert!(
        during < before + 64 * 1024,
        "resident memory grew from {before} KiB to {during} KiB"
    );
    eprintln!("resident memory under the flood: {before} KiB before, {during} KiB during");
    // The deadline closes every one of them.
    for stream in held {
        assert!(within("every close", closed_by_peer(stream)).await);
    }
    victim.stop().await;
}
