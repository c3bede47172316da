//! Nodes of a cluster, each a real process on 127.0.0.1 (see `support/node.rs`).
#![cfg(feature = "cluster")]

#[path = "support/node.rs"]
mod node;
#[path = "support/temp_store.rs"]
mod temp_store;

use std::time::Duration;

use futures::StreamExt;
use node::*;
use sora::cluster::{PeerState, SeedState};
use sora::config::Config;
use sora::{Command, Error, Runtime};

/// Not a test of its own: the body of the other nodes (see `support/node.rs`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_process() {
    node_main().await;
}

// ---------------------------------------------------------------------------------------------
// The tests.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_and_by_name_calls_reach_a_service_on_another_node() {
    let _turn = THIS_NODE.lock().await;
    let mut other = Node::start("other", None, SECRET, &[]).await;
    let runtime = Runtime::builder()
        .remote::<Translator>()
        .cluster(this_node(&[other.port], SECRET))
        .http(sora::http::HttpConfig::local(0))
        .start()
        .await
        .unwrap();
    let cluster = runtime.cluster().unwrap();
    within("the seed's handshake", cluster.ready()).await;
    assert!(runtime.is_ready().await);
    assert_eq!(cluster.seeds()[0].state, SeedState::Ready);
    served_by_others(&cluster, "Ledger").await;

    // A typed call, with its options, to the service declared here and run there.
    let translator = runtime.service::<Translator>().unwrap();
    assert!(translator.is_remote());
    assert!(runtime.service_by_name("Translator").unwrap().is_remote());
    let reply = translator
        .act(translate("hello"))
        .priority(5)
        .correlation_id("upload-42")
        .timeout(Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(
        reply,
        Translated {
            text: "[pt] hello".into(),
            correlation_id: Some("upload-42".into()),
            node: "other@127.0.0.1".into(),
        }
    );
    // The handler's error comes back as the same typed error.
    let failed = translator
        .act(Translate {
            text: "hello".into(),
            to: String::new(),
        })
        .await
        .unwrap_err();
    assert!(
        matches!(&failed, Error::ActionFailed { service, action, message, .. }
            if service == "Translator" && action == "translate" && message == "no target language"),
        "{failed:?}"
    );

    // A command, and the status the other node keeps.
    translator.command(Command::custom("bump")).await.unwrap();
    other.expect("bumped 1").await;
    let status = translator.status().await.unwrap();
    assert!(status.calls >= 3, "{status:?}");
    let info = translator.info().await.unwrap();
    assert!(info.enabled && info.actions.contains(&"hold".to_owned()));
    assert_eq!(translator.health().await.unwrap(), sora::Health::Healthy);

    // By name: a service that this node does not know at all.
    let ledger = runtime.service_by_name("Ledger").unwrap();
    assert!(ledger.is_remote());
    let total = ledger
        .act_json("add", serde_json::json!({"amount": 5}), Default::default())
        .await
        .unwrap();
    assert_eq!(total, 5);
    // The control plane's routes by name reach it the same way.
    let plane = format!("http://{}", runtime.http_address().unwrap());
    let http = reqwest::Client::new();
    let answer = http
        .post(format!("{plane}/api/services/Ledger/actions/add"))
        .json(&serde_json::json!({"amount": 3}))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    assert_eq!(answer.json::<serde_json::Value>().await.unwrap(), 8);
    let status: serde_json::Value = http
        .get(format!("{plane}/api/services/Ledger/status"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(status["calls"], 2, "{status}");
    let unknown = http
        .post(format!("{plane}/api/services/Ledger/actions/subtract"))
        .json(&serde_json::json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);
    // An event the other node's service does not emit is refused there, naming what it emits.
    let refused = translator
        .untyped()
        .on_named::<serde_json::Value>("translated")
        .stream()
        .await
        .unwrap_err();
    assert!(
        matches!(&refused, Error::UnknownEvent { service, event, emits }
            if service == "Translator" && event == "translated" && emits == &["counted"]),
        "{refused:?}"
    );
    let refused = ledger
        .on_named::<serde_json::Value>("added")
        .stream()
        .await
        .unwrap_err();
    assert!(
        matches!(&refused, Error::UnknownEvent { service, emits, .. }
            if service == "Ledger" && emits.is_empty()),
        "{refused:?}"
    );
    let unknown = ledger
        .act_json("subtract", serde_json::json!({}), Default::default())
        .await
        .unwrap_err();
    assert!(
        matches!(&unknown, Error::UnknownAction { service, action } if service == "Ledger" && action == "subtract"),
        "{unknown:?}"
    );
    let bad = ledger
        .act_json(
            "add",
            serde_json::json!({"amount": "five"}),
            Default::default(),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&bad, Error::BadParameters { field: Some(f), .. } if f == "amount"),
        "{bad:?}"
    );
    assert!(matches!(
        runtime.service_by_name("Nobody"),
        Err(Error::UnknownService { .. })
    ));

    // The caller's timeout holds across the wire, and the handler there is cancelled.
    let held = translator
        .act(Hold)
        .timeout(Duration::from_millis(300))
        .await
        .unwrap_err();
    assert!(matches!(held, Error::Timeout { .. }), "{held:?}");
    other.expect("holding").await;

    runtime.shutdown().await.unwrap();
    other.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_and_calls_from_one_caller_arrive_in_the_order_they_were_made() {
    let _turn = THIS_NODE.lock().await;
    let other = Node::start("ordered", None, SECRET, &[]).await;
    let runtime = Runtime::builder()
        .remote::<Recorder>()
        .cluster(this_node(&[other.port], SECRET))
        .start()
        .await
        .unwrap();
    let cluster = runtime.cluster().unwrap();
    served_by_others(&cluster, "Recorder").await;
    let recorder = runtime.service::<Recorder>().unwrap();
    // Fire and forget, then a call: the call is served after every command before it.
    for i in 0..200u64 {
        recorder.tell(Command::custom_with("record", &i)).unwrap();
    }
    let seen = recorder.act(Recorded).await.unwrap();
    assert_eq!(seen, (0..200).collect::<Vec<_>>());
    runtime.shutdown().await.unwrap();
    other.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_of_services_on_other_nodes_reach_subscribers_filtered_once_and_in_order() {
    use std::future::IntoFuture;
    let _turn = THIS_NODE.lock().await;
    let mut a = Node::start("a", None, SECRET, &[]).await;
    let mut b = Node::start("b", None, SECRET, &[]).await;
    let (runtime, cluster) = translator_caller(this_node(&[a.port, b.port], SECRET)).await;
    within("both seeds", cluster.ready()).await;
    within(
        "Translator on both",
        cluster.wait_until(|c| c.nodes_serving("Translator").len() == 2),
    )
    .await;
    let translator = runtime.service::<Translator>().unwrap();
    // A typed clause with a filter, a typed `once`, and a clause by name, on both nodes.
    let mut evens = translator
        .on::<Counted>()
        .filter(|c| c.n % 2 == 0)
        .stream()
        .await
        .unwrap();
    let mut first = translator.on::<Counted>().once().stream().await.unwrap();
    let mut named = runtime
        .service_by_name("Translator")
        .unwrap()
        .on_named::<serde_json::Value>("counted")
        .stream()
        .await
        .unwrap();
    // A subscription to every service of this runtime takes this runtime's events only.
    let mut here = runtime.on::<Counted>().stream().await.unwrap();

    // Both nodes emit 100 events at once (calls take turns between the two).
    let counts = [
        translator
            .command(Command::custom_with("count", &100))
            .correlation_id("count-1")
            .into_future(),
        translator
            .command(Command::custom_with("count", &100))
            .correlation_id("count-2")
            .into_future(),
    ];
    for ran in futures::future::join_all(counts).await {
        ran.unwrap();
    }

    // Per emitter, the filtered clause sees the even numbers in order.
    let mut by_node: std::collections::BTreeMap<String, Vec<u64>> = Default::default();
    for _ in 0..100 {
        let event = within("an even event", evens.next()).await.unwrap();
        assert_eq!(event.service(), "Translator");
        assert!(event.correlation_id().unwrap().starts_with("count-"));
        by_node
            .entry(event.node().unwrap().to_owned())
            .or_default()
            .push(event.n);
    }
    let evens_sent: Vec<u64> = (0..100).step_by(2).collect();
    assert_eq!(
        by_node.keys().collect::<Vec<_>>(),
        ["a@127.0.0.1", "b@127.0.0.1"]
    );
    for numbers in by_node.values() {
        assert_eq!(numbers, &evens_sent);
    }
    // By name, every event in JSON, in order per emitter.
    let mut by_node: std::collections::BTreeMap<String, Vec<u64>> = Default::default();
    for _ in 0..200 {
        let event = within("an event by name", named.next()).await.unwrap();
        by_node
            .entry(event.node().unwrap().to_owned())
            .or_default()
            .push(event["n"].as_u64().unwrap());
    }
    for numbers in by_node.values() {
        assert_eq!(numbers, &(0..100).collect::<Vec<_>>());
    }
    // Two nodes emitted concurrently; `once` took exactly one event and ended.
    let once = within("the one event", first.next()).await.unwrap();
    assert_eq!(once.n, 0);
    assert!(within("the end of `once`", first.next()).await.is_none());
    assert_eq!(first.stats().delivered, 1);
    assert_eq!(evens.try_next().map(|e| e.n), None);
    runtime.events().flush().await.unwrap();
    assert!(here.try_next().is_none());

    // The last subscription to end lets go: both nodes stop forwarding.
    drop((evens, first, named, here));
    a.logs("no longer forwards events to another node").await;
    b.logs("no longer forwards events to another node").await;
    runtime.shutdown().await.unwrap();
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_share_the_calls_and_the_local_service_comes_first() {
    let _turn = THIS_NODE.lock().await;
    let mut b = Node::start("b", None, SECRET, &[]).await;
    let c = Node::start("c", None, SECRET, &[]).await;
    // This node runs its own Ledger; b and c run one each too, and a Translator each.
    let runtime = Runtime::builder()
        .remote::<Translator>()
        .service(Ledger::default)
        .cluster(this_node(&[b.port, c.port], SECRET))
        .start()
        .await
        .unwrap();
    let cluster = runtime.cluster().unwrap();
    within("both seeds", cluster.ready()).await;
    assert_eq!(cluster.peers().len(), 2, "{:?}", cluster.peers());
    let translator = runtime.service::<Translator>().unwrap();
    let mut served_by = std::collections::BTreeSet::new();
    for i in 0..20 {
        let reply = translator.act(translate(format!("#{i}"))).await.unwrap();
        served_by.insert(reply.node);
    }
    assert_eq!(
        served_by.into_iter().collect::<Vec<_>>(),
        ["b@127.0.0.1", "c@127.0.0.1"]
    );

    // A service that runs here is called here, though others serve it too.
    let ledger = runtime.service_by_name("Ledger").unwrap();
    assert!(!ledger.is_remote());
    for _ in 0..3 {
        ledger
            .act_json("add", serde_json::json!({"amount": 1}), Default::default())
            .await
            .unwrap();
    }
    let local = runtime.service::<Ledger>().unwrap();
    assert_eq!(local.status().await.unwrap().calls, 3);

    // Without b, every call goes to c.
    b.kill();
    within("b's loss", cluster.wait_until(|c| !c.is_ready())).await;
    for i in 0..10 {
        let reply = translator
            .act(translate(format!("after #{i}")))
            .await
            .unwrap();
        assert_eq!(reply.node, "c@127.0.0.1");
    }
    runtime.shutdown().await.unwrap();
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_that_list_each_other_as_seeds_both_join() {
    let _turn = THIS_NODE.lock().await;
    // Both bound at once, so that they differ.
    let (a, b) = (bind_any(), bind_any());
    let (p, q) = (
        a.local_addr().unwrap().port(),
        b.local_addr().unwrap().port(),
    );
    drop((a, b));
    let mut first = Node::start("first", Some(p), SECRET, &[q]).await;
    let mut second = Node::start("second", Some(q), SECRET, &[p]).await;
    first.expect("joined").await;
    second.expect("joined").await;
    // This node joins both, and reaches each.
    let (runtime, cluster) = translator_caller(this_node(&[p, q], SECRET)).await;
    within("both seeds", cluster.ready()).await;
    let translator = runtime.service::<Translator>().unwrap();
    let mut served_by = std::collections::BTreeSet::new();
    for i in 0..10 {
        served_by.insert(
            translator
                .act(translate(format!("#{i}")))
                .await
                .unwrap()
                .node,
        );
    }
    assert_eq!(served_by.len(), 2, "{served_by:?}");
    runtime.shutdown().await.unwrap();
    first.stop().await;
    second.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_with_another_secret_is_refused_on_both_sides() {
    let _turn = THIS_NODE.lock().await;
    let mut other = Node::start("guarded", None, SECRET, &[]).await;
    let (runtime, cluster) = translator_caller(this_node(&[other.port], "not-the-secret")).await;
    within(
        "the refusal",
        cluster.wait_until(|c| matches!(c.seeds()[0].state, SeedState::Refused { .. })),
    )
    .await;
    assert!(!cluster.is_ready());
    assert!(!runtime.is_ready().await);
    assert!(!cluster.serves("Translator"));
    let err = runtime
        .service::<Translator>()
        .unwrap()
        .act(translate("hi"))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::ServiceUnavailable { .. }), "{err:?}");
    // The other side says why too.
    other.logs("did not authenticate").await;
    runtime.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_mid_call_fails_the_call_fast_and_comes_back_when_restarted() {
    let _turn = THIS_NODE.lock().await;
    let mut other = Node::start("fragile", None, SECRET, &[]).await;
    let port = other.port;
    let runtime = Runtime::builder()
        .remote::<Translator>()
        .cluster(this_node(&[port], SECRET))
        .http(sora::http::HttpConfig::local(0))
        .start()
        .await
        .unwrap();
    let health_url = format!("http://{}/health", runtime.http_address().unwrap());
    let cluster = runtime.cluster().unwrap();
    within("the seed's handshake", cluster.ready()).await;
    served_by_others(&cluster, "Translator").await;
    let translator = runtime.service::<Translator>().unwrap();
    let mut counted = translator.on::<Counted>().stream().await.unwrap();

    // A call in flight when the node dies fails at once, long before its timeout.
    let call = tokio::spawn({
        let translator = translator.clone();
        async move {
            translator
                .act(Hold)
                .timeout(Duration::from_secs(3600))
                .await
        }
    });
    other.expect("holding").await;
    other.kill();
    let err = within("the failed call", call).await.unwrap().unwrap_err();
    assert!(
        matches!(&err, Error::ServiceUnavailable { service, reason }
            if service == "Translator" && reason.contains("fragile@127.0.0.1")),
        "{err:?}"
    );
    within(
        "the lost node's services to go",
        cluster.wait_until(|c| !c.serves("Translator") && !c.is_ready()),
    )
    .await;
    // The node keeps dialing it, and says what it finds.
    within(
        "the seed to show unreachable",
        cluster.wait_until(|c| matches!(c.seeds()[0].state, SeedState::Unreachable { .. })),
    )
    .await;
    // Health names the lost peer: this node works, degraded.
    let report: serde_json::Value = reqwest::get(&health_url)
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(report["status"], "degraded", "{report}");
    assert_eq!(
        report["cluster"]["health"]["status"], "degraded",
        "{report}"
    );
    assert_eq!(
        report["cluster"]["schema_mismatches"],
        serde_json::json!([])
    );
    let reason = report["cluster"]["health"]["reason"].as_str().unwrap();
    assert!(
        reason.contains(&format!("127.0.0.1:{port} unreachable")),
        "{reason}"
    );
    let err = translator.act(translate("hi")).await.unwrap_err();
    assert!(matches!(err, Error::ServiceUnavailable { .. }), "{err:?}");

    // Restarted on the same address, it is found again without restarting this node.
    let back = Node::start("fragile", Some(port), SECRET, &[]).await;
    within("the reconnection", cluster.ready()).await;
    served_by_others(&cluster, "Translator").await;
    let reply = translator.act(translate("again")).await.unwrap();
    assert_eq!(reply.text, "[pt] again");
    // The subscription made before the crash takes the events of the restarted node, as soon
    // as this node has asked it for them again.
    within(
        "the subscription to reach the restarted node",
        cluster.wait_until(|c| c.forwarding("Translator").len() == 1),
    )
    .await;
    translator
        .command(Command::custom_with("count", &3))
        .await
        .unwrap();
    for n in 0..3 {
        let event = within("an event of the restarted node", counted.next()).await;
        assert_eq!(event.map(|e| e.n), Some(n));
    }
    assert_eq!(cluster.health(), sora::Health::Healthy);
    runtime.shutdown().await.unwrap();
    back.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_configuration_file_makes_a_node_that_others_join() {
    let _turn = THIS_NODE.lock().await;
    let port = free_port();
    let text = format!(
        "[cluster]\nnode = \"filed\"\nsecret = \"{SECRET}\"\nlisten = \"127.0.0.1:{port}\"\n\
         reconnect_min = \"50ms\"\n"
    );
    let runtime = Runtime::builder()
        .config(Config::toml(&text))
        .start()
        .await
        .unwrap();
    let cluster = runtime.cluster().unwrap();
    assert_eq!(cluster.node(), "filed@127.0.0.1");
    // No seeds: ready at once. Another node that lists this one as its seed joins it, and its
    // services resolve from here as well as this node's from there.
    assert!(cluster.is_ready());
    let mut joiner = Node::start("joiner", None, SECRET, &[port]).await;
    joiner.expect("joined").await;
    within(
        "the joiner's session",
        cluster.wait_until(|c| {
            c.peers().iter().any(|p| {
                p.state == PeerState::Ready && p.node.as_deref() == Some("joiner@127.0.0.1")
            })
        }),
    )
    .await;
    served_by_others(&cluster, "Ledger").await;
    let total = runtime
        .service_by_name("Ledger")
        .unwrap()
        .act_json("add", serde_json::json!({"amount": 2}), Default::default())
        .await
        .unwrap();
    assert_eq!(total, 2);
    runtime.shutdown().await.unwrap();
    joiner.stop().await;

    // A table without a secret names the key that is missing.
    let err = Runtime::builder()
        .config(Config::toml("[cluster]\nnode = \"alpha\"\n"))
        .start()
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::Config { key, .. } if key == "cluster.secret"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_speak_over_tls_and_a_node_without_it_is_refused() {
    let _turn = THIS_NODE.lock().await;
    let certificate = certificate_dir();
    let env = [("SORA_TEST_TLS", certificate.as_os_str())];
    let secured = Node::start_with("secured", None, SECRET, &[], &env).await;

    // Without TLS, the handshake never starts: refused.
    let (plain, cluster) = translator_caller(this_node(&[secured.port], SECRET)).await;
    within(
        "the refusal",
        cluster.wait_until(|c| matches!(c.seeds()[0].state, SeedState::Refused { .. })),
    )
    .await;
    assert!(!cluster.serves("Translator"));
    plain.shutdown().await.unwrap();

    // With it, calls cross.
    let (runtime, cluster) =
        translator_caller(this_node(&[secured.port], SECRET).tls(tls_from(&certificate))).await;
    within("the TLS handshake", cluster.ready()).await;
    served_by_others(&cluster, "Translator").await;
    let reply = runtime
        .service::<Translator>()
        .unwrap()
        .act(translate("sealed"))
        .await
        .unwrap();
    assert_eq!(reply.node, "secured@127.0.0.1");
    runtime.shutdown().await.unwrap();
    secured.stop().await;
    let _ = std::fs::remove_dir_all(certificate);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_action_whose_types_differ_between_nodes_is_refused_as_incompatible() {
    let _turn = THIS_NODE.lock().await;
    let env = [("SORA_TEST_VARIANT", std::ffi::OsStr::new("v2"))];
    let other = Node::start_with("newer", None, SECRET, &[], &env).await;
    let (runtime, cluster) = translator_caller(this_node(&[other.port], SECRET)).await;
    served_by_others(&cluster, "Translator").await;
    // The nodes compare what they serve as they join: both differences are known before any
    // call, and health says so.
    within(
        "the comparison of the schemas",
        cluster.wait_until(|c| !c.schema_mismatches().is_empty()),
    )
    .await;
    let found: Vec<String> = cluster
        .schema_mismatches()
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        found,
        [
            "event `Translator.counted` on newer@127.0.0.1",
            "action `Translator.translate` on newer@127.0.0.1"
        ]
    );
    assert!(
        matches!(cluster.health(), sora::Health::Degraded(reason)
            if reason.contains("types differ from this node's: event `Translator.counted`")),
        "{:?}",
        cluster.health()
    );
    let err = runtime
        .service::<Translator>()
        .unwrap()
        .act(translate("hi"))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::Incompatible { node, reason }
            if node == "newer@127.0.0.1" && reason.contains("`Translator.translate` has another schema")),
        "{err:?}"
    );
    // So is a subscription to an event whose payload differs.
    let err = runtime
        .service::<Translator>()
        .unwrap()
        .on::<Counted>()
        .stream()
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::Incompatible { node, reason }
            if node == "newer@127.0.0.1" && reason.contains("`Translator.counted` has another schema")),
        "{err:?}"
    );
    // By name, the serving node's own decoder speaks: the missing field is named.
    let err = runtime
        .service_by_name("Translator")
        .unwrap()
        .act_json(
            "translate",
            serde_json::json!({"text": "hi", "to": "pt"}),
            Default::default(),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::BadParameters { message, .. } if message.contains("pages")),
        "{err:?}"
    );
    runtime.shutdown().await.unwrap();
    other.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_node_in_one_process_is_refused() {
    let _turn = THIS_NODE.lock().await;
    let first = Runtime::builder()
        .cluster(this_node(&[], SECRET))
        .start()
        .await
        .unwrap();
    let second = Runtime::builder()
        .cluster(this_node(&[], SECRET))
        .start()
        .await
        .unwrap_err();
    assert!(
        matches!(&second, Error::StartupFailed { service, .. } if service == "cluster"),
        "{second:?}"
    );
    first.shutdown().await.unwrap();
    // Once the first has left, the process may be a node again.
    let again = Runtime::builder()
        .cluster(this_node(&[], SECRET))
        .start()
        .await
        .unwrap();
    again.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_durable_action_of_a_service_on_another_node_is_committed_and_followed_there() {
    let _turn = THIS_NODE.lock().await;
    let file = temp_store::TempStore::new("remote-jobs");
    let store = [("SORA_TEST_STORE", file.0.as_os_str())];
    let mut keeper = Node::start_with("keeper", None, SECRET, &[], &store).await;
    let port = keeper.port;
    let runtime = Runtime::builder()
        .remote::<Bank>()
        .cluster(this_node(&[port], SECRET))
        .start()
        .await
        .unwrap();
    assert!(
        runtime.jobs().is_none(),
        "this node keeps no store of its own"
    );
    let cluster = runtime.cluster().unwrap();
    within("the seed's handshake", cluster.ready()).await;
    served_by_others(&cluster, "Bank").await;
    let bank = runtime.service::<Bank>().unwrap();

    let ticket = bank
        .enqueue(Deposit { amount: 5 })
        .key("d-1")
        .await
        .unwrap();
    assert!(ticket.is_new());
    let node = ticket.node().expect("kept on the other node").to_owned();
    assert!(node.starts_with("keeper@"), "{node}");
    assert_eq!(within("the job's reply", ticket.result()).await.unwrap(), 5);
    let again = bank
        .enqueue(Deposit { amount: 5 })
        .key("d-1")
        .await
        .unwrap();
    assert!(!again.is_new(), "its key names the job kept there");
    assert_eq!(again.id(), ticket.id());
    let err = ticket.job().unwrap_err();
    assert!(
        matches!(&err, Error::ServiceUnavailable { reason, .. } if reason.contains(&node)),
        "{err:?}"
    );
    // By name, as the control plane enqueues.
    let by_name = runtime.service_by_name("Bank").unwrap();
    let enqueued = by_name
        .enqueue_json(
            "deposit",
            serde_json::json!({ "amount": 7 }),
            sora::JobOptions::default(),
        )
        .await
        .unwrap();
    assert!(matches!(enqueued, sora::store::Enqueued::Created(_)));
    let bad = by_name
        .enqueue_json(
            "deposit",
            serde_json::json!({ "amount": "seven" }),
            sora::JobOptions::default(),
        )
        .await
        .unwrap_err();
    assert!(matches!(bad, Error::BadParameters { .. }), "{bad:?}");

    // Acknowledged means committed there: killed right after, the node runs the job when it
    // is back, and the wait goes to it again.
    let delayed = bank
        .enqueue(Deposit { amount: 9 })
        .delay(Duration::from_millis(300))
        .await
        .unwrap();
    keeper.kill();
    within(
        "the lost node's services to go",
        cluster.wait_until(|c| !c.serves("Bank")),
    )
    .await;
    let err = delayed.result().await.unwrap_err();
    assert!(matches!(err, Error::ServiceUnavailable { .. }), "{err:?}");
    let back = Node::start_with("keeper", Some(port), SECRET, &[], &store).await;
    within("the reconnection", cluster.ready()).await;
    served_by_others(&cluster, "Bank").await;
    assert_eq!(
        within("the delayed job's reply", delayed.result())
            .await
            .unwrap(),
        9
    );
    runtime.shutdown().await.unwrap();
    back.stop().await;
}
