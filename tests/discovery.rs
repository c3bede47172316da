//! Zero-configuration discovery: services registered where they are defined, in other modules,
//! started by one builder call. Every service `register!`ed in this test binary is discovered by
//! every test here, so each test asserts on the set as a whole.

use sora::{Action, Definition, Error, Runtime, Service, ServiceState};

/// Says which factory built the service.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Origin;

impl Action for Origin {
    const NAME: &'static str = "origin";
    type Reply = String;
}

mod billing {
    use std::time::Duration;

    use sora::{Definition, Schedule, Service};

    /// Registered with `Default`.
    #[derive(Default)]
    pub(crate) struct Invoicer;

    impl Service for Invoicer {
        fn define(def: &mut Definition<Self>) {
            def.name("invoicer")
                .periodic(Schedule::every(Duration::from_secs(60)));
        }
    }

    sora::register!(Invoicer);
}

mod mail {
    use super::Origin;
    use sora::{BoxError, Context, Definition, Handler, Service};

    /// Registered with its own factory.
    pub(crate) struct Mailer {
        pub(crate) built_by: &'static str,
    }

    impl Service for Mailer {
        fn define(def: &mut Definition<Self>) {
            def.name("mailer").action::<Origin>();
        }
    }

    impl Handler<Origin> for Mailer {
        async fn handle(&self, _: Origin, _: &Context) -> Result<String, BoxError> {
            Ok(self.built_by.to_owned())
        }
    }

    sora::register!(Mailer, || Mailer {
        built_by: "register!"
    });
}

/// Registered, but declared disabled: discovered, reported, never started.
#[derive(Default)]
struct Dormant;

impl Service for Dormant {
    fn define(def: &mut Definition<Self>) {
        def.enabled(false);
    }
}

sora::register!(Dormant);

/// Not registered: discovery must not find it.
#[derive(Default)]
struct Unlisted;

impl Service for Unlisted {}

fn names(runtime: &Runtime) -> Vec<String> {
    let mut names: Vec<String> = runtime
        .services()
        .iter()
        .map(|s| s.name().to_owned())
        .collect();
    names.sort();
    names
}

#[tokio::test(start_paused = true)]
async fn discover_starts_every_registered_service_from_every_module() {
    let runtime = Runtime::builder().discover().start().await.unwrap();
    assert_eq!(names(&runtime), ["Dormant", "invoicer", "mailer"]);
    let mailer = runtime.service::<mail::Mailer>().unwrap();
    assert_eq!(mailer.act(Origin).await.unwrap(), "register!");
    let invoicer = runtime.service::<billing::Invoicer>().unwrap();
    assert_eq!(invoicer.status().await.unwrap().state, ServiceState::Idle);
    assert!(matches!(
        runtime.service::<Unlisted>(),
        Err(Error::UnknownService { .. })
    ));
    runtime.shutdown().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_disabled_discovered_service_is_listed_but_never_started() {
    let runtime = Runtime::builder().discover().start().await.unwrap();
    let dormant = runtime.service::<Dormant>().unwrap();
    assert_eq!(
        dormant.status().await.unwrap().state,
        ServiceState::Disabled
    );
    assert!(!dormant.info().await.unwrap().enabled);
    assert!(
        runtime.is_ready().await,
        "a disabled service does not hold readiness"
    );
    runtime.shutdown().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn an_explicit_registration_wins_over_the_discovered_one() {
    // Before or after `discover`, the program's own factory is the one used.
    for explicit_first in [true, false] {
        let mut builder = Runtime::builder();
        let mailer = || mail::Mailer {
            built_by: "explicit",
        };
        if explicit_first {
            builder = builder.service(mailer).discover();
        } else {
            builder = builder.discover().service(mailer);
        }
        let runtime = builder.start().await.unwrap();
        let reply = runtime.service::<mail::Mailer>().unwrap().act(Origin).await;
        assert_eq!(reply.unwrap(), "explicit");
        assert_eq!(names(&runtime), ["Dormant", "invoicer", "mailer"]);
        runtime.shutdown().await.unwrap();
    }
}

#[tokio::test(start_paused = true)]
async fn without_leaves_a_service_out_by_name() {
    let runtime = Runtime::builder()
        .discover()
        .without("invoicer")
        .without("Dormant")
        .start()
        .await
        .unwrap();
    assert_eq!(names(&runtime), ["mailer"]);
    assert!(matches!(
        runtime.service_by_name("invoicer"),
        Err(Error::UnknownService { .. })
    ));
    runtime.shutdown().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn without_discover_only_explicit_services_run() {
    let runtime = Runtime::builder()
        .service(Unlisted::default)
        .start()
        .await
        .unwrap();
    assert_eq!(names(&runtime), ["Unlisted"]);
    runtime.shutdown().await.unwrap();
}
