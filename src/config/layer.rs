//! One source of configuration, as figment sees it, with service keys made comparable.
//!
//! A service is configured under its name in the form environment variables can spell
//! (`DataCleanup` and `data-cleanup` both under `data_cleanup`), so that a file and a variable
//! that name the same service merge into one table instead of two.

use figment::value::{Dict, Map, Value};
use figment::{Error, Metadata, Profile, Provider};

use super::service_key;

/// The prefix of the variables that mirror the file's keys.
pub(crate) const ENV_PREFIX: &str = "SORA__";

/// The name given to the variables' source; errors from it name the variable instead.
pub(crate) const ENV_NAME: &str = "environment variable";

/// The name of the `SORA_ENV` variable's source, which is also how errors name it.
pub(crate) const SORA_ENV: &str = "environment variable SORA_ENV";

/// A provider whose `services` table has its keys in service-key form.
pub(crate) struct Layer<P> {
    inner: P,
    /// The source's name in errors; the provider's own when `None`.
    name: Option<&'static str>,
}

impl<P: Provider> Layer<P> {
    pub(crate) fn file(inner: P) -> Self {
        Layer { inner, name: None }
    }

    /// The `SORA__` variables.
    pub(crate) fn env(inner: P) -> Self {
        Layer {
            inner,
            name: Some(ENV_NAME),
        }
    }

    /// A source known by `name`.
    pub(crate) fn named(inner: P, name: &'static str) -> Self {
        Layer {
            inner,
            name: Some(name),
        }
    }
}

impl<P: Provider> Provider for Layer<P> {
    fn metadata(&self) -> Metadata {
        match self.name {
            Some(name) => Metadata::named(name),
            None => self.inner.metadata(),
        }
    }

    fn data(&self) -> Result<Map<Profile, Dict>, Error> {
        let mut data = self.inner.data()?;
        for dict in data.values_mut() {
            if let Some(Value::Dict(tag, services)) = dict.remove("services") {
                let mut keyed = Dict::new();
                for (name, table) in services {
                    let key = service_key(&name);
                    if keyed.insert(key.clone(), table).is_some() {
                        return Err(Error::from(format!(
                            "service `{key}` is configured twice under different spellings"
                        ))
                        .with_path(&format!("services.{name}")));
                    }
                }
                dict.insert("services".into(), Value::Dict(tag, keyed));
            }
        }
        Ok(data)
    }
}
