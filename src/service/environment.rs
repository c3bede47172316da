//! The environments a runtime runs in, which decide the services it starts.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Where the runtime runs; a service runs only in the environments it is declared for
/// ([`Definition::run_in`](crate::Definition::run_in)).
///
/// Chosen by the `environment` key, the `SORA_ENV` variable, or
/// [`RuntimeBuilder::environment`](crate::RuntimeBuilder::environment); the default is
/// `production`, so that a forgotten setting never runs development-only services in production.
#[cfg_attr(feature = "http", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Environment {
    /// A developer's machine.
    #[serde(alias = "dev")]
    Development,
    /// The real thing (the default).
    #[default]
    #[serde(alias = "prod")]
    Production,
    /// Test runs.
    #[serde(alias = "test")]
    Testing,
}

impl Environment {
    /// Every environment, in declaration order.
    pub const ALL: [Environment; 3] = [
        Environment::Development,
        Environment::Production,
        Environment::Testing,
    ];

    /// The name used in files and variables (`development`, `production`, `testing`).
    pub fn as_str(self) -> &'static str {
        match self {
            Environment::Development => "development",
            Environment::Production => "production",
            Environment::Testing => "testing",
        }
    }
}

impl fmt::Display for Environment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Environment {
    type Err = String;

    /// The names and aliases of the configuration: `production`, `prod`…, in any case.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        use serde::de::IntoDeserializer;
        let name = s.trim().to_ascii_lowercase();
        Environment::deserialize(name.into_deserializer())
            .map_err(|e: serde::de::value::Error| e.to_string())
    }
}
