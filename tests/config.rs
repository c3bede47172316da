//! Configuration: each override level, environments, typed settings, and every bad-configuration
//! case with its message.
//!
//! Tests that set environment variables or files run inside `figment::Jail`, which sandboxes
//! both (a temporary working directory, variables restored afterwards) and lets one test in at a
//! time; the others read only the text they are given and never the environment.

#[path = "support/common.rs"]
mod support;

use std::future::Future;
use std::time::Duration;

use figment::Jail;
use serde::Deserialize;
use sora::config::{Config, Environment};
use sora::{
    Action, BoxError, Context, Definition, Error, Handler, Health, Restart, RestartPolicy, Runtime,
    RuntimeBuilder, Schedule, Service, ServiceState, Startup,
};
use support::*;

/// The cleanup's own settings, the seeds' `RetentionDays` and `BatchSize`.
#[derive(Debug, Deserialize)]
struct CleanupOptions {
    retention_days: u32,
    #[serde(default = "default_batch")]
    batch_size: usize,
}

fn default_batch() -> usize {
    100
}

/// Periodic, with typed settings; records its start in a journal.
struct Cleanup {
    journal: Journal,
}

/// Answers with the settings the service sees.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct ReadOptions;

impl Action for ReadOptions {
    const NAME: &'static str = "read-options";
    type Reply = Option<(u32, usize)>;
}

impl Service for Cleanup {
    fn define(def: &mut Definition<Self>) {
        def.name("cleanup")
            .periodic(Schedule::every(Duration::from_secs(3600)))
            .settings::<CleanupOptions>()
            .action::<ReadOptions>();
    }

    async fn start(&self, _: &Context) -> Result<(), BoxError> {
        self.journal.push("start:cleanup");
        Ok(())
    }
}

impl Handler<ReadOptions> for Cleanup {
    async fn handle(
        &self,
        _: ReadOptions,
        ctx: &Context,
    ) -> Result<Option<(u32, usize)>, BoxError> {
        Ok(ctx
            .settings::<CleanupOptions>()
            .map(|o| (o.retention_days, o.batch_size)))
    }
}

fn cleanup(journal: &Journal) -> impl Fn() -> Cleanup + Send + Sync + 'static {
    with_journal(journal, |journal| Cleanup { journal })
}

/// Neither periodic nor start-up, no settings; runs in development only.
struct DevTools {
    journal: Journal,
}

impl Service for DevTools {
    fn define(def: &mut Definition<Self>) {
        def.name("dev-tools")
            .run_in([Environment::Development])
            .action::<WhoAmI>();
    }

    async fn start(&self, _: &Context) -> Result<(), BoxError> {
        self.journal.push("start:dev-tools");
        Ok(())
    }
}

impl Handler<WhoAmI> for DevTools {
    async fn handle(&self, _: WhoAmI, ctx: &Context) -> Result<Option<String>, BoxError> {
        Ok(ctx.correlation_id().map(str::to_owned))
    }
}

fn dev_tools(journal: &Journal) -> impl Fn() -> DevTools + Send + Sync + 'static {
    with_journal(journal, |journal| DevTools { journal })
}

/// A start-up service, so that start-up keys apply to it.
struct Migrations {
    journal: Journal,
}

impl Service for Migrations {
    fn define(def: &mut Definition<Self>) {
        def.name("migrations").startup(Startup::order(10));
    }

    async fn start(&self, _: &Context) -> Result<(), BoxError> {
        self.journal.push("start:migrations");
        Ok(())
    }
}

fn migrations(journal: &Journal) -> impl Fn() -> Migrations + Send + Sync + 'static {
    with_journal(journal, |journal| Migrations { journal })
}

/// A factory for a service that holds nothing but a journal.
fn with_journal<S: 'static>(
    journal: &Journal,
    make: fn(Journal) -> S,
) -> impl Fn() -> S + Send + Sync + 'static {
    let journal = journal.clone();
    move || make(journal.clone())
}

/// The three services, registered with nothing pinned.
fn builder(journal: &Journal) -> RuntimeBuilder {
    Runtime::builder()
        .service(cleanup(journal))
        .service(dev_tools(journal))
        .service(migrations(journal))
        .environment(Environment::Development)
}

/// Runs `test` in a figment jail: its own working directory and environment variables.
#[allow(clippy::result_large_err)] // figment's own error type
fn jailed(test: impl FnOnce(&mut Jail)) {
    Jail::expect_with(|jail| {
        test(jail);
        Ok(())
    });
}

/// Runs `fut` on a paused-clock runtime: for the tests inside a jail, which is synchronous.
fn block_on<F: Future>(fut: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap()
        .block_on(fut)
}

/// The configuration error a start returns; the test fails if it started.
async fn config_error(builder: RuntimeBuilder) -> (String, String, String) {
    match builder.start().await {
        Err(Error::Config {
            origin,
            key,
            message,
        }) => (origin, key, message),
        Err(other) => panic!("expected a configuration error, got {other:?}"),
        Ok(runtime) => {
            runtime.shutdown().await.unwrap();
            panic!("a bad configuration started");
        }
    }
}

const SETTINGS: &str = "[services.cleanup]\nsettings = { retention_days = 30 }\n";

#[tokio::test(start_paused = true)]
async fn typed_settings_reach_the_service() {
    let journal = Journal::default();
    let config =
        Config::toml("[services.cleanup.settings]\nretention_days = 30\nbatch_size = 500\n");
    let runtime = builder(&journal).config(config).start().await.unwrap();
    let service = runtime.service::<Cleanup>().unwrap();
    assert_eq!(service.act(ReadOptions).await.unwrap(), Some((30, 500)));

    // The settings survive a restart: they belong to the service, not to an incarnation.
    let handle = runtime.service::<Cleanup>().unwrap();
    handle.actor_ref().unwrap().stop(None);
    let again = within(async {
        loop {
            if let Ok(v) = handle.act(ReadOptions).await {
                break v;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert_eq!(again, Some((30, 500)));
    assert_eq!(handle.status().await.unwrap().restarts, 1);
    runtime.shutdown().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn settings_fields_with_serde_defaults_may_be_left_out() {
    let journal = Journal::default();
    let runtime = builder(&journal)
        .config(Config::toml(SETTINGS))
        .start()
        .await
        .unwrap();
    let reply = runtime.service::<Cleanup>().unwrap().act(ReadOptions).await;
    assert_eq!(reply.unwrap(), Some((30, 100)));
    runtime.shutdown().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn the_file_overrides_what_the_service_declares() {
    let journal = Journal::default();
    let config = Config::toml(
        r#"
        [services.cleanup]
        interval = "2h"
        initial_delay = "90s"
        concurrency = 3
        queue_limit = 500
        priority = 7
        critical = true
        restart = { policy = "transient", max_restarts = 2, within = "1m" }
        settings = { retention_days = 30 }

        [services.migrations]
        startup_order = 3
        start_timeout = "5s"
        continue_on_failure = true
        "#,
    );
    let runtime = builder(&journal).config(config).start().await.unwrap();
    let info = runtime.service::<Cleanup>().unwrap().info().await.unwrap();
    let schedule = info.schedule.unwrap();
    assert_eq!(schedule.period, Duration::from_secs(7200));
    assert_eq!(schedule.initial_delay, Duration::from_secs(90));
    assert_eq!(info.concurrency, 3);
    assert_eq!(info.queue_limit, Some(500));
    assert_eq!(info.priority, 7);
    assert!(info.critical);
    assert_eq!(info.restart.policy, RestartPolicy::Transient);
    assert_eq!(info.restart.max_restarts, 2);
    assert_eq!(info.restart.within, Duration::from_secs(60));
    let status = runtime
        .service::<Cleanup>()
        .unwrap()
        .status()
        .await
        .unwrap();
    assert_eq!(status.next_run_in, Some(Duration::from_secs(90)));

    let startup = runtime
        .service::<Migrations>()
        .unwrap()
        .info()
        .await
        .unwrap();
    let startup = startup.startup.unwrap();
    assert_eq!(startup.get_order(), 3);
    runtime.shutdown().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn start_order_follows_configured_order_and_priority() {
    let journal = Journal::default();
    // dev-tools outranks cleanup; migrations, a start-up service, goes first whatever they say.
    let config = Config::toml(&format!(
        "{SETTINGS}priority = 1\n[services.dev-tools]\npriority = 5\n"
    ));
    let runtime = builder(&journal).config(config).start().await.unwrap();
    assert_eq!(
        journal.entries(),
        ["start:migrations", "start:dev-tools", "start:cleanup"]
    );
    runtime.shutdown().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn the_builder_overrides_the_file() {
    let journal = Journal::default();
    let config = Config::toml(&format!(
        "shutdown_timeout = \"1s\"\nenvironment = \"production\"\n{SETTINGS}interval = \"2h\"\nconcurrency = 3\n"
    ));
    let runtime = Runtime::builder()
        .service_with(cleanup(&journal), |def| {
            def.periodic(Schedule::every(Duration::from_secs(10)))
                .restart(Restart::temporary());
        })
        .config(config)
        .environment(Environment::Development)
        .start()
        .await
        .unwrap();
    let info = runtime.service::<Cleanup>().unwrap().info().await.unwrap();
    assert!(info.enabled);
    // Pinned in code: the file's interval does not apply.
    assert_eq!(info.schedule.unwrap().period, Duration::from_secs(10));
    assert_eq!(info.restart.policy, RestartPolicy::Temporary);
    // Not pinned: the file's value does.
    assert_eq!(info.concurrency, 3);
    assert_eq!(runtime.environment(), Environment::Development);
    runtime.shutdown().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn settings_set_in_code_outrank_the_file() {
    let journal = Journal::default();
    let runtime = Runtime::builder()
        .service_with(cleanup(&journal), |def| {
            def.settings_value(CleanupOptions {
                retention_days: 7,
                batch_size: 1,
            });
        })
        .config(Config::toml(SETTINGS))
        .start()
        .await
        .unwrap();
    let reply = runtime.service::<Cleanup>().unwrap().act(ReadOptions).await;
    assert_eq!(reply.unwrap(), Some((7, 1)));
    runtime.shutdown().await.unwrap();
}

#[test]
fn environment_variables_override_the_file_and_the_builder_overrides_them() {
    jailed(|jail| {
        jail.create_file(
            "sora.toml",
            r#"
            environment = "development"
            [services.cleanup]
            interval = "2h"
            concurrency = 2
            settings = { retention_days = 30, batch_size = 10 }
            "#,
        )
        .unwrap();
        jail.set_env("SORA__SERVICES__CLEANUP__INTERVAL", "5m");
        jail.set_env("SORA__SERVICES__CLEANUP__SETTINGS__BATCH_SIZE", "20");
        jail.set_env("SORA__SERVICES__DEV_TOOLS__ENABLED", "false");
        block_on(async {
            let journal = Journal::default();
            let runtime = Runtime::builder()
                .service(cleanup(&journal))
                .service(dev_tools(&journal))
                .service_with(migrations(&journal), |def| {
                    def.concurrency(4);
                })
                .config(Config::load())
                .start()
                .await
                .unwrap();
            assert_eq!(runtime.environment(), Environment::Development);
            let cleanup = runtime.service::<Cleanup>().unwrap();
            let info = cleanup.info().await.unwrap();
            assert_eq!(info.schedule.unwrap().period, Duration::from_secs(300));
            assert_eq!(
                info.concurrency, 2,
                "the file's value, which no variable changes"
            );
            // Settings merge key by key: the file's retention, the variable's batch size.
            assert_eq!(cleanup.act(ReadOptions).await.unwrap(), Some((30, 20)));
            // A service's table is found under its name in either spelling.
            let dev = runtime.service::<DevTools>().unwrap();
            assert_eq!(dev.status().await.unwrap().state, ServiceState::Disabled);
            runtime.shutdown().await.unwrap();
        });
    });
}

#[test]
fn sora_env_chooses_the_environment_and_gates_services() {
    jailed(|jail| {
        jail.create_file(
            "sora.toml",
            &format!("environment = \"development\"\n{SETTINGS}"),
        )
        .unwrap();
        jail.set_env("SORA_ENV", "production");
        block_on(async {
            let journal = Journal::default();
            let runtime = Runtime::builder()
                .service(cleanup(&journal))
                .service(dev_tools(&journal))
                .config(Config::load())
                .start()
                .await
                .unwrap();
            assert_eq!(runtime.environment(), Environment::Production);
            let dev = runtime.service::<DevTools>().unwrap();
            assert_eq!(dev.status().await.unwrap().state, ServiceState::Disabled);
            let info = dev.info().await.unwrap();
            assert!(!info.enabled);
            assert_eq!(info.run_in, [Environment::Development]);
            assert_eq!(dev.health().await.unwrap(), Health::Healthy);
            assert!(matches!(
                dev.act(WhoAmI).await,
                Err(Error::ServiceDisabled { service }) if service == "dev-tools"
            ));
            assert_eq!(
                journal.entries(),
                ["start:cleanup"],
                "dev-tools never started"
            );
            runtime.shutdown().await.unwrap();
        });
    });
}

#[tokio::test(start_paused = true)]
async fn testing_runs_only_services_declared_for_it() {
    // The seeds' default: services run in development and production, not in testing.
    let journal = Journal::default();
    let runtime = builder(&journal)
        .config(Config::toml(SETTINGS))
        .environment(Environment::Testing)
        .start()
        .await
        .unwrap();
    for service in runtime.services() {
        let status = service.status().await.unwrap();
        assert_eq!(status.state, ServiceState::Disabled, "{}", service.name());
    }
    assert!(journal.entries().is_empty());
    runtime.shutdown().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn the_runtime_wide_switch_disables_every_service() {
    let journal = Journal::default();
    let config = Config::toml(&format!("enabled = false\n{SETTINGS}"));
    let runtime = builder(&journal).config(config).start().await.unwrap();
    for service in runtime.services() {
        assert!(!service.info().await.unwrap().enabled, "{}", service.name());
    }
    assert!(journal.entries().is_empty());
    assert!(runtime.is_ready().await);
    runtime.shutdown().await.unwrap();
}

#[test]
fn the_default_file_and_sora_config_are_found() {
    jailed(|jail| {
        jail.create_file("sora.toml", "[services.dev-tools]\nenabled = false\n")
            .unwrap();
        jail.create_file("other.toml", "[services.dev-tools]\nenabled = true\n")
            .unwrap();
        block_on(async {
            let journal = Journal::default();
            let build = || {
                Runtime::builder()
                    .service(dev_tools(&journal))
                    .environment(Environment::Development)
            };
            let runtime = build().config(Config::load()).start().await.unwrap();
            let dev = runtime.service::<DevTools>().unwrap();
            assert!(!dev.info().await.unwrap().enabled, "sora.toml was read");
            runtime.shutdown().await.unwrap();

            let runtime = build().config(Config::file("other.toml")).start().await;
            let runtime = runtime.unwrap();
            let dev = runtime.service::<DevTools>().unwrap();
            assert!(dev.info().await.unwrap().enabled, "the named file was read");
            runtime.shutdown().await.unwrap();
        });
        jail.set_env("SORA_CONFIG", "other.toml");
        block_on(async {
            let journal = Journal::default();
            let runtime = Runtime::builder()
                .service(dev_tools(&journal))
                .environment(Environment::Development)
                .config(Config::load())
                .start()
                .await
                .unwrap();
            let dev = runtime.service::<DevTools>().unwrap();
            assert!(
                dev.info().await.unwrap().enabled,
                "SORA_CONFIG named the file"
            );
            runtime.shutdown().await.unwrap();
        });
    });
}

#[test]
fn a_missing_file_is_an_error_only_when_named() {
    jailed(|_jail| {
        block_on(async {
            let journal = Journal::default();
            // No sora.toml: `load` goes on with code defaults.
            let runtime = Runtime::builder()
                .service(dev_tools(&journal))
                .config(Config::load())
                .start()
                .await
                .unwrap();
            runtime.shutdown().await.unwrap();
            let builder = Runtime::builder()
                .service(dev_tools(&journal))
                .config(Config::file("missing.toml"));
            let (origin, _, message) = config_error(builder).await;
            assert_eq!(origin, "missing.toml");
            assert!(message.contains("does not exist"), "{message}");
        });
    });
}

#[tokio::test(start_paused = true)]
async fn an_unknown_service_name_is_refused_with_the_known_ones() {
    let journal = Journal::default();
    let builder = builder(&journal).config(Config::toml("[services.cleanpu]\nenabled = false\n"));
    let (_, key, message) = config_error(builder).await;
    assert_eq!(key, "services.cleanpu");
    assert!(message.contains("no service is registered"), "{message}");
    assert!(
        message.contains("cleanup, dev_tools, migrations"),
        "{message}"
    );
    assert!(journal.entries().is_empty(), "nothing started");
}

#[test]
fn every_bad_value_names_its_file_key_and_expectation() {
    jailed(|jail| {
        let cases: &[(&str, &str, &str)] = &[
            // (file, key, part of the message)
            (
                "[services.cleanup]\nenabled = \"yes\"",
                "services.cleanup.enabled",
                "expected a boolean",
            ),
            (
                "[services.cleanup]\ninterval = \"five minutes\"",
                "services.cleanup.interval",
                "expected a duration such as \"90s\", \"5m\" or \"1h30m\", found \"five minutes\"",
            ),
            (
                "[services.cleanup]\nconcurrency = 0",
                "services.cleanup.concurrency",
                "expected at least 1, found 0",
            ),
            (
                "[services.cleanup]\nintervall = \"5m\"",
                "services.cleanup.intervall",
                "unknown field",
            ),
            (
                "[services.cleanup.settings]\nretention_days = \"thirty\"",
                "services.cleanup.settings.retention_days",
                "expected u32",
            ),
            (
                "[services.dev-tools]\ninterval = \"5m\"",
                "services.dev_tools.interval",
                "service `dev-tools` is not periodic, so it has no `interval`",
            ),
            (
                "[services.cleanup]\nstartup_order = 1",
                "services.cleanup.startup_order",
                "not a start-up service",
            ),
            (
                "[services.dev-tools.settings]\nlevel = 3",
                "services.dev_tools.settings",
                "takes no settings",
            ),
            (
                "environment = \"staging\"",
                "environment",
                "unknown variant",
            ),
            (
                "shutdown_timeout = 30",
                "shutdown_timeout",
                "expected a duration such as",
            ),
            (
                "[services.cleanup.restart]\npolicy = \"sometimes\"",
                "services.cleanup.restart.policy",
                "unknown variant",
            ),
        ];
        for (text, want_key, want) in cases {
            jail.create_file("sora.toml", text).unwrap();
            block_on(async {
                let journal = Journal::default();
                let builder = builder(&journal).config(Config::load());
                let (origin, key, message) = config_error(builder).await;
                assert!(origin.ends_with("sora.toml"), "{text}: origin {origin}");
                assert_eq!(key, *want_key, "{text}: {message}");
                assert!(message.contains(want), "{text}: {message}");
                assert!(journal.entries().is_empty(), "{text}: something started");
            });
        }
    });
}

#[test]
fn a_bad_variable_is_named_in_the_error() {
    jailed(|jail| {
        jail.set_env("SORA__SERVICES__CLEANUP__ENABLED", "maybe");
        block_on(async {
            let journal = Journal::default();
            let builder = builder(&journal).config(Config::load());
            let (origin, key, message) = config_error(builder).await;
            assert_eq!(
                origin,
                "environment variable SORA__SERVICES__CLEANUP__ENABLED"
            );
            assert_eq!(key, "services.cleanup.enabled");
            assert!(message.contains("expected a boolean"), "{message}");
        });
        jail.set_env("SORA__SERVICES__CLEANUP__ENABLED", "true");
        jail.set_env("SORA_ENV", "staging");
        block_on(async {
            let journal = Journal::default();
            let builder = builder(&journal).config(Config::load());
            let (origin, key, message) = config_error(builder).await;
            assert_eq!(origin, "environment variable SORA_ENV");
            assert_eq!(key, "environment");
            assert!(message.contains("found `staging`"), "{message}");
        });
    });
}

#[tokio::test(start_paused = true)]
async fn required_settings_missing_everywhere_stop_the_start() {
    let journal = Journal::default();
    let (origin, key, message) = config_error(builder(&journal)).await;
    assert_eq!(key, "services.cleanup.settings");
    assert_eq!(origin, "no file or variable sets it");
    assert!(
        message.contains("missing field `retention_days`"),
        "{message}"
    );
    assert!(journal.entries().is_empty(), "nothing started");
}

#[tokio::test(start_paused = true)]
async fn the_error_renders_all_three_parts() {
    let journal = Journal::default();
    let builder = builder(&journal).config(Config::toml("[services.cleanup]\ninterval = \"soon\""));
    let err = builder.start().await.unwrap_err();
    assert_eq!(err.code(), "bad_config");
    let text = err.to_string();
    assert!(
        text.starts_with("bad configuration at `services.cleanup.interval` (TOML source string): expected a duration"),
        "{text}"
    );
}

/// Hangs in its start until the runtime gives up.
struct Slow;

impl Service for Slow {
    fn define(def: &mut Definition<Self>) {
        def.start_timeout(Duration::from_secs(600));
    }

    async fn start(&self, _: &Context) -> Result<(), BoxError> {
        std::future::pending::<()>().await;
        Ok(())
    }
}

#[tokio::test(start_paused = true)]
async fn the_runtime_start_up_timeout_bounds_the_whole_start() {
    let journal = Journal::default();
    let config = Config::toml(&format!("startup_timeout = \"2s\"\n{SETTINGS}"));
    let started = tokio::time::Instant::now();
    let err = builder(&journal)
        .service(|| Slow)
        .config(config)
        .start()
        .await
        .unwrap_err();
    match err {
        Error::StartupFailed { service, reason } => {
            assert_eq!(service, "Slow");
            assert!(reason.contains("start-up timeout of 2s"), "{reason}");
        }
        other => panic!("expected StartupFailed, got {other:?}"),
    }
    // Virtual time: the start gave up at the runtime's deadline, not the service's 600 s.
    assert!(started.elapsed() < Duration::from_secs(3));
}

/// A build that cannot join a cluster says so rather than ignore the table.
#[cfg(not(feature = "cluster"))]
#[tokio::test]
async fn a_cluster_table_is_refused_without_the_cluster_feature() {
    let config = Config::toml("[cluster]\nnode = \"alpha\"\nsecret = \"s\"\n");
    let err = Runtime::builder().config(config).start().await.unwrap_err();
    assert!(
        matches!(&err, Error::Config { key, message, .. }
            if key == "cluster" && message.contains("`cluster` feature")),
        "{err}"
    );
}
