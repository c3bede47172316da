//! The control plane under load: requests per second of `POST /trigger` and of a small
//! `POST /actions/echo` round trip, beside a plain axum handler that answers at once, measured in
//! the same run, in the same process, by the same load generator.
//!
//! ```sh
//! cargo bench --bench http                         # 3 rounds of 3 s per target
//! SORA_BENCH_SECS=10 cargo bench --bench http      # longer rounds
//! ```
//!
//! The load generator is `CONNECTIONS` keep-alive HTTP/1.1 clients (reqwest), each sending its
//! next request as soon as the last one is answered, for the duration of a round. Servers and
//! clients share one two-worker tokio runtime, as they share the machine's two cores: every
//! target pays the same client cost, so the ratio is what to read. Rounds are interleaved
//! (plain, Sora, plain, Sora, …) so that a change in the machine's load hits both; the table
//! gives each target's median round.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Json;
use axum::http::StatusCode;
use axum::routing::post;
use serde::{Deserialize, Serialize};
use sora::http::HttpConfig;
use sora::{Action, BoxError, Context, Definition, Handler, Runtime, Schedule, Service};

const CONNECTIONS: usize = 32;
const ROUNDS: usize = 3;

/// Periodic, so that it can be triggered; its run does nothing.
#[derive(Default)]
struct Poked;

impl Service for Poked {
    fn define(def: &mut Definition<Self>) {
        def.name("poked")
            .periodic(Schedule::every(Duration::from_secs(3600)))
            .action::<Echo>()
            .concurrency(CONNECTIONS);
    }

    async fn tick(&self, _: &Context) -> Result<(), BoxError> {
        Ok(())
    }
}

/// A small action: its parameters come back as its reply.
#[derive(Serialize, Deserialize)]
struct Echo {
    text: String,
}

impl Action for Echo {
    const NAME: &'static str = "echo";
    type Reply = String;
}

impl Handler<Echo> for Poked {
    async fn handle(&self, echo: Echo, _: &Context) -> Result<String, BoxError> {
        Ok(echo.text)
    }
}

/// The baseline: plain axum handlers that answer at once.
async fn plain_server() -> SocketAddr {
    let app = axum::Router::new()
        .route("/trigger", post(|| async { StatusCode::NO_CONTENT }))
        .route("/echo", post(|| async { Json("hello") }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    address
}

/// Requests per second of `CONNECTIONS` clients posting to `url` for `secs`.
async fn load(client: &reqwest::Client, url: &str, body: Option<&str>, secs: Duration) -> f64 {
    let done = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let deadline = start + secs;
    let workers: Vec<_> = (0..CONNECTIONS)
        .map(|_| {
            let (client, url, done) = (client.clone(), url.to_owned(), done.clone());
            let body = body.map(str::to_owned);
            tokio::spawn(async move {
                while Instant::now() < deadline {
                    let mut request = client.post(&url);
                    if let Some(body) = &body {
                        request = request
                            .header("content-type", "application/json")
                            .body(body.clone());
                    }
                    let response = request.send().await.expect("the server answers");
                    assert!(response.status().is_success(), "{}", response.status());
                    response.bytes().await.expect("a whole body");
                    done.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await.unwrap();
    }
    done.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let secs = std::env::var("SORA_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .map_or(Duration::from_secs(3), Duration::from_secs);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    rt.block_on(async move {
        let sora = Runtime::builder()
            .service(Poked::default)
            .http(HttpConfig::local(0))
            .start()
            .await
            .expect("the runtime starts");
        let sora_base = format!("http://{}/api/services/poked", sora.http_address().unwrap());
        let plain_base = format!("http://{}", plain_server().await);
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(CONNECTIONS)
            .build()
            .unwrap();
        let body = r#"{"text":"hello"}"#;
        let targets: [(&str, String, Option<&str>); 4] = [
            ("trigger, plain axum", format!("{plain_base}/trigger"), None),
            ("trigger, Sora", format!("{sora_base}/trigger"), None),
            (
                "action, plain axum",
                format!("{plain_base}/echo"),
                Some(body),
            ),
            (
                "action, Sora",
                format!("{sora_base}/actions/echo"),
                Some(body),
            ),
        ];
        // Warm the connections and both servers.
        for (_, url, body) in &targets {
            load(&client, url, *body, Duration::from_millis(500)).await;
        }
        let mut rounds: Vec<Vec<f64>> = vec![Vec::new(); targets.len()];
        for _ in 0..ROUNDS {
            for (i, (_, url, body)) in targets.iter().enumerate() {
                rounds[i].push(load(&client, url, *body, secs).await);
            }
        }
        let medians: Vec<f64> = rounds.iter().cloned().map(median).collect();
        println!(
            "{CONNECTIONS} connections, {ROUNDS} rounds of {} s, median round",
            secs.as_secs()
        );
        println!("{:<22} {:>12}  rounds", "target", "requests/s");
        for (i, (name, _, _)) in targets.iter().enumerate() {
            let all: Vec<String> = rounds[i].iter().map(|r| format!("{r:.0}")).collect();
            println!("{name:<22} {:>12.0}  {}", medians[i], all.join(", "));
        }
        println!(
            "Sora / plain: trigger {:.2}, action {:.2}",
            medians[1] / medians[0],
            medians[3] / medians[2]
        );
        sora.shutdown().await.expect("a clean stop");
    });
}
