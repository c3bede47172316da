//! Applying what was read to the services, and turning figment's errors into Sora's.

use figment::{Figment, Metadata, Source};

use super::layer::{ENV_NAME, ENV_PREFIX};
use super::schema::{FileConfig, Secret, ServiceFile};
use super::service_key;
use crate::Error;
use crate::service::{Definition, Field, Service};

/// The configuration, read and checked against the schema.
#[derive(Default)]
pub(crate) struct Loaded {
    pub(crate) figment: Figment,
    pub(crate) file: FileConfig,
    /// `SORA_TOKEN`, which outranks `http.token`.
    #[cfg_attr(not(feature = "http"), allow(dead_code))]
    pub(crate) token: Option<Secret>,
}

impl Loaded {
    /// Refuses an `[http]` table in a build without the control plane.
    #[cfg(not(feature = "http"))]
    pub(crate) fn refuse_http(&self) -> Result<(), Error> {
        match &self.file.http {
            Some(_) => Err(self.error_at(
                &["http".to_owned()],
                "this build has no HTTP control plane (the `http` feature is off)".into(),
            )),
            None => Ok(()),
        }
    }

    /// Refuses a `[cluster]` table in a build without the `cluster` feature.
    #[cfg(not(feature = "cluster"))]
    pub(crate) fn refuse_cluster(&self) -> Result<(), Error> {
        match &self.file.cluster {
            Some(_) => Err(self.error_at(
                &["cluster".to_owned()],
                "this build cannot join a cluster (the `cluster` feature is off)".into(),
            )),
            None => Ok(()),
        }
    }

    /// The `[services.KEY]` tables that name no registered service.
    pub(crate) fn unknown_services<'a>(
        &'a self,
        known: &'a [String],
    ) -> impl Iterator<Item = Error> + 'a {
        self.file
            .services
            .keys()
            .filter(|key| !known.contains(key))
            .map(|key| {
                let path = ["services".to_owned(), key.clone()];
                let mut names = known.to_vec();
                names.sort();
                Error::Config {
                    origin: self.origin_of(&path),
                    key: path.join("."),
                    message: format!(
                        "no service is registered under this name (known: {})",
                        names.join(", ")
                    ),
                }
            })
    }

    fn origin_of(&self, path: &[String]) -> String {
        origin(nearest_metadata(&self.figment, path), path)
    }

    pub(crate) fn error_at(&self, path: &[String], message: String) -> Error {
        Error::Config {
            origin: self.origin_of(path),
            key: path.join("."),
            message,
        }
    }
}

/// What configuration overrides on one service (the service's table, its key).
pub(crate) struct ServiceOverrides<'a> {
    pub(crate) loaded: &'a Loaded,
    pub(crate) key: String,
}

impl<'a> ServiceOverrides<'a> {
    pub(crate) fn new(loaded: &'a Loaded, name: &str) -> Self {
        ServiceOverrides {
            loaded,
            key: service_key(name),
        }
    }

    fn table(&self) -> Option<&'a ServiceFile> {
        self.loaded.file.services.get(&self.key)
    }

    fn path(&self, field: &str) -> Vec<String> {
        vec!["services".to_owned(), self.key.clone(), field.to_owned()]
    }

    fn error(&self, field: &str, message: String) -> Error {
        self.loaded.error_at(&self.path(field), message)
    }

    /// Refuses the first of `keys` that is set: they belong to services that are `what`, and
    /// service `name` is not.
    fn refuse(&self, name: &str, what: &str, keys: &[(&str, bool)]) -> Result<(), Error> {
        match keys.iter().find(|(_, set)| *set) {
            Some((key, _)) => Err(self.error(
                key,
                format!("service `{name}` is not {what}, so it has no `{key}`"),
            )),
            None => Ok(()),
        }
    }
}

/// Sets `value` on the definition unless the program pinned the field.
fn over<S: Service, T: Copy>(
    def: &mut Definition<S>,
    field: Field,
    value: Option<T>,
    set: impl FnOnce(&mut Definition<S>, T),
) {
    match value {
        Some(value) if !def.is_pinned(field) => set(def, value),
        _ => {}
    }
}

/// Applies the service's table to its definition (fields the program pinned stay as they are).
pub(crate) fn apply<S: Service>(
    def: &mut Definition<S>,
    at: &ServiceOverrides<'_>,
) -> Result<(), Error> {
    let Some(table) = at.table() else {
        return Ok(());
    };
    over(def, Field::Enabled, table.enabled, |d, v| d.enabled = v);
    over(def, Field::Priority, table.priority, |d, v| d.priority = v);
    over(def, Field::Critical, table.critical, |d, v| d.critical = v);
    match &table.run_in {
        Some(run_in) if !def.is_pinned(Field::RunIn) => def.run_in.clone_from(run_in),
        _ => {}
    }
    if let Some(limit) = table.concurrency {
        if limit == 0 {
            return Err(at.error("concurrency", "expected at least 1, found 0".into()));
        }
        over(def, Field::Concurrency, Some(limit), |d, v| {
            d.concurrency = v
        });
    }
    over(def, Field::QueueLimit, table.queue_limit, |d, v| {
        d.queue_limit = Some(v)
    });
    if table.settings.is_some() && def.settings.is_none() {
        return Err(at.error(
            "settings",
            format!(
                "service `{}` takes no settings (declare their type with `Definition::settings`)",
                def.name
            ),
        ));
    }
    apply_schedule(def, at, table)?;
    apply_startup(def, at, table)?;
    over(def, Field::StopTimeout, table.stop_timeout, |d, v| {
        d.stop_timeout = v;
    });
    if let (Some(restart), false) = (&table.restart, def.is_pinned(Field::Restart)) {
        let r = &mut def.restart;
        r.policy = restart.policy.unwrap_or(r.policy);
        r.max_restarts = restart.max_restarts.unwrap_or(r.max_restarts);
        r.within = restart.within.unwrap_or(r.within);
        if let Some(b) = &restart.backoff {
            let backoff = &mut r.backoff;
            backoff.initial = b.initial.unwrap_or(backoff.initial);
            backoff.max = b.max.unwrap_or(backoff.max);
            backoff.factor = b.factor.unwrap_or(backoff.factor);
            backoff.jitter = b.jitter.unwrap_or(backoff.jitter);
            backoff.reset_after = b.reset_after.unwrap_or(backoff.reset_after);
        }
    }
    Ok(())
}

fn apply_schedule<S: Service>(
    def: &mut Definition<S>,
    at: &ServiceOverrides<'_>,
    table: &ServiceFile,
) -> Result<(), Error> {
    if table.interval.is_some_and(|i| i.is_zero()) {
        return Err(at.error("interval", "expected a duration above zero".into()));
    }
    let pinned = def.is_pinned(Field::Schedule);
    let Some(schedule) = &mut def.schedule else {
        let keys = [
            ("interval", table.interval.is_some()),
            ("initial_delay", table.initial_delay.is_some()),
            ("run_on_start", table.run_on_start.is_some()),
        ];
        return at.refuse(&def.name, "periodic", &keys);
    };
    if !pinned {
        schedule.period = table.interval.unwrap_or(schedule.period);
        schedule.initial_delay = table.initial_delay.unwrap_or(schedule.initial_delay);
        schedule.run_on_start = table.run_on_start.unwrap_or(schedule.run_on_start);
    }
    Ok(())
}

fn apply_startup<S: Service>(
    def: &mut Definition<S>,
    at: &ServiceOverrides<'_>,
    table: &ServiceFile,
) -> Result<(), Error> {
    let pinned = def.is_pinned(Field::Startup);
    match &mut def.startup {
        None => {
            let keys = [
                ("startup_order", table.startup_order.is_some()),
                ("continue_on_failure", table.continue_on_failure.is_some()),
            ];
            at.refuse(&def.name, "a start-up service", &keys)?;
        }
        Some(startup) if !pinned => {
            startup.order = table.startup_order.unwrap_or(startup.order);
            startup.continue_on_failure = table
                .continue_on_failure
                .unwrap_or(startup.continue_on_failure);
        }
        Some(_) => {}
    }
    if let (Some(timeout), false) = (table.start_timeout, def.is_pinned(Field::StartTimeout)) {
        def.start_timeout = timeout;
        if let Some(startup) = &mut def.startup {
            startup.timeout = timeout;
        }
    }
    Ok(())
}

/// Reads the service's typed settings, if it declared a type for them.
pub(crate) fn read_settings<S: Service>(
    def: &mut Definition<S>,
    at: &ServiceOverrides<'_>,
) -> Result<(), Error> {
    let has_table = at.table().is_some_and(|t| t.settings.is_some());
    let pinned = def.is_pinned(Field::Settings);
    let Some(settings) = &mut def.settings else {
        return Ok(());
    };
    if pinned || (settings.value.is_some() && !has_table) {
        return Ok(());
    }
    let figment = &at.loaded.figment;
    let prefix = ["services", at.key.as_str(), "settings"];
    let value = (settings.read)(&figment.focus(&prefix.join(".")))
        .map_err(|e| config_error(figment, &prefix, *e))?;
    settings.value = Some(value);
    Ok(())
}

/// Sora's error for figment's first error, with the key in full and where the value came from.
pub(crate) fn config_error(figment: &Figment, prefix: &[&str], err: figment::Error) -> Error {
    let err = err
        .into_iter()
        .next()
        .unwrap_or_else(|| "unknown error".into());
    let path: Vec<String> = prefix
        .iter()
        .map(|s| (*s).to_owned())
        .chain(err.path.iter().cloned())
        .collect();
    let meta = err
        .metadata
        .as_ref()
        .or_else(|| nearest_metadata(figment, &path));
    Error::Config {
        origin: origin(meta, &path),
        key: path.join("."),
        message: err.kind.to_string(),
    }
}

/// The source of the value at `path`, or of the nearest table that holds it.
fn nearest_metadata<'a>(figment: &'a Figment, path: &[String]) -> Option<&'a Metadata> {
    (1..=path.len())
        .rev()
        .find_map(|n| figment.find_metadata(&path[..n].join(".")))
}

/// Where a value came from, in words: a file's path, or the variable that set it.
fn origin(meta: Option<&Metadata>, path: &[String]) -> String {
    match meta {
        Some(m) if m.name == ENV_NAME => format!(
            "environment variable {ENV_PREFIX}{}",
            path.join("__").to_ascii_uppercase()
        ),
        Some(m) => match &m.source {
            Some(Source::File(path)) => path.display().to_string(),
            _ => m.name.to_string(),
        },
        None => "no file or variable sets it".to_owned(),
    }
}
