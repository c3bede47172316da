//! Configuration: a TOML file and environment variables that tune the services without a rebuild.
//!
//! A service declares its defaults in code ([`Service::define`](crate::Service::define)); an
//! operator overrides them in `sora.toml` and in `SORA__` environment variables; a program may pin
//! any of them in code with [`RuntimeBuilder::service_with`](crate::RuntimeBuilder::service_with).
//! The precedence, lowest first:
//!
//! 1. what the service declares in `define`;
//! 2. the configuration file;
//! 3. environment variables (`SORA__SERVICES__CLEANUP__ENABLED=false`, and `SORA_ENV`);
//! 4. what the program sets on the [`RuntimeBuilder`](crate::RuntimeBuilder).
//!
//! The whole schema, with defaults and variable names, is in `docs/configuration.md`.
//!
//! Everything is read and checked in [`RuntimeBuilder::start`](crate::RuntimeBuilder::start),
//! before any service starts: a bad key, a wrong type, a malformed duration, an unknown service
//! or settings that do not fit the service's type stop the start with [`Error::Config`], which
//! names the file (or variable), the key and what was expected.
//!
//! # Examples
//!
//! ```
//! use std::time::Duration;
//! use serde::Deserialize;
//! use sora::{BoxError, Context, Definition, Schedule, Service};
//! use sora::config::Config;
//!
//! /// The cleanup's own settings, read from `[services.cleanup.settings]`.
//! #[derive(Debug, Deserialize)]
//! struct CleanupOptions {
//!     retention_days: u32,
//!     #[serde(default = "default_batch")]
//!     batch_size: usize,
//! }
//! fn default_batch() -> usize { 100 }
//!
//! #[derive(Default)]
//! struct Cleanup;
//!
//! impl Service for Cleanup {
//!     fn define(def: &mut Definition<Self>) {
//!         def.name("cleanup")
//!             .periodic(Schedule::every(Duration::from_secs(3600)))
//!             .settings::<CleanupOptions>();
//!     }
//!
//!     async fn tick(&self, ctx: &Context) -> Result<(), BoxError> {
//!         let options = ctx.settings::<CleanupOptions>().ok_or("no settings")?;
//!         tracing::info!(options.retention_days, options.batch_size, "cleaning up");
//!         Ok(())
//!     }
//! }
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), sora::Error> {
//! let config = Config::toml(r#"
//!     [services.cleanup]
//!     interval = "2h"
//!     settings = { retention_days = 30 }
//! "#);
//! let runtime = sora::Runtime::builder().service(Cleanup::default).config(config).start().await?;
//! let status = runtime.service::<Cleanup>()?.status().await?;
//! assert_eq!(status.next_run_in, Some(Duration::from_secs(7200)));
//! # runtime.shutdown().await }
//! ```

mod layer;
mod resolve;
mod schema;

use std::fmt;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Toml};

use crate::Error;
pub use crate::service::environment::Environment;
use layer::Layer;
pub(crate) use resolve::{Loaded, ServiceOverrides, apply, read_settings};
use schema::Secret;

/// The file [`Config::load`] reads when `SORA_CONFIG` does not name another.
pub const DEFAULT_FILE: &str = "sora.toml";

/// Where the configuration comes from: a file, environment variables, or text. Handed to
/// [`RuntimeBuilder::config`](crate::RuntimeBuilder::config), read when the runtime starts.
///
/// # Examples
///
/// ```no_run
/// # async fn run() -> Result<(), sora::Error> {
/// // sora.toml (or the file SORA_CONFIG names), then SORA__ variables and SORA_ENV.
/// let runtime = sora::Runtime::builder()
///     .discover()
///     .config(sora::config::Config::load())
///     .start()
///     .await?;
/// # runtime.shutdown().await }
/// # fn main() { let _ = run; }
/// ```
#[derive(Clone)]
#[must_use = "a configuration is read only when given to the runtime builder"]
pub struct Config {
    figment: Figment,
    /// Read from `SORA_TOKEN`, which outranks the file.
    token: Option<Secret>,
    /// A file that was asked for by name and is missing.
    missing: Option<PathBuf>,
}

impl Config {
    /// The usual sources: the file that `SORA_CONFIG` names (it must exist) or else `sora.toml`
    /// in the working directory (if there is one), then the environment.
    pub fn load() -> Self {
        match std::env::var_os("SORA_CONFIG") {
            Some(path) => Config::file(path),
            None => Config::with_file(Path::new(DEFAULT_FILE), false),
        }
    }

    /// This file (it must exist), then the environment.
    pub fn file(path: impl AsRef<Path>) -> Self {
        Config::with_file(path.as_ref(), true)
    }

    /// TOML text, and nothing from the environment: for tests and for configuration embedded
    /// in a program.
    pub fn toml(text: &str) -> Self {
        Config {
            figment: Figment::from(Layer::file(Toml::string(text))),
            token: None,
            missing: None,
        }
    }

    fn with_file(path: &Path, required: bool) -> Self {
        let exists = path.is_file();
        let missing = (required && !exists).then(|| path.to_owned());
        let mut figment = Figment::new();
        if exists {
            figment = figment.merge(Layer::file(Toml::file_exact(path)));
        }
        // `SORA_ENV` is the `environment` key, above the file and the `SORA__` variables.
        let sora_env = Env::raw().only(&["SORA_ENV"]).map(|_| "environment".into());
        let figment = figment
            .merge(Layer::env(Env::prefixed(layer::ENV_PREFIX).split("__")))
            .merge(Layer::named(sora_env, layer::SORA_ENV));
        let token = std::env::var("SORA_TOKEN")
            .ok()
            .filter(|t| !t.is_empty())
            .map(Secret);
        Config {
            figment,
            token,
            missing,
        }
    }

    /// Reads and checks the sources.
    pub(crate) fn read(&self) -> Result<Loaded, Error> {
        if let Some(path) = &self.missing {
            return Err(Error::Config {
                origin: path.display().to_string(),
                key: String::new(),
                message: "the configuration file does not exist".into(),
            });
        }
        let file = self
            .figment
            .extract()
            .map_err(|e| resolve::config_error(&self.figment, &[], e))?;
        Ok(Loaded {
            figment: self.figment.clone(),
            file,
            token: self.token.clone(),
        })
    }
}

impl fmt::Debug for Config {
    /// The sources only: values (tokens among them) are never shown.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sources: Vec<String> = self
            .figment
            .metadata()
            .map(|m| match &m.source {
                Some(figment::Source::File(path)) => path.display().to_string(),
                _ => m.name.to_string(),
            })
            .collect();
        f.debug_struct("Config")
            .field("sources", &sources)
            .field("token", &self.token)
            .field("missing", &self.missing)
            .finish()
    }
}

impl Default for Config {
    /// No file and no variables: everything from code.
    fn default() -> Self {
        Config {
            figment: Figment::new(),
            token: None,
            missing: None,
        }
    }
}

/// The key a service's name takes in the file and in variables: lowercase, `-` as `_`.
pub(crate) fn service_key(name: &str) -> String {
    name.chars()
        .map(|c| match c {
            '-' => '_',
            c => c.to_ascii_lowercase(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::Environment;

    #[test]
    fn environments_parse_by_name_and_alias_in_any_case() {
        assert_eq!("Production".parse(), Ok(Environment::Production));
        assert_eq!(" dev ".parse(), Ok(Environment::Development));
        assert_eq!("TEST".parse(), Ok(Environment::Testing));
        let err = "staging".parse::<Environment>().unwrap_err();
        assert!(err.contains("unknown variant `staging`"), "{err}");
    }
}
