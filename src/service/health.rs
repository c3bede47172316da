use serde::{Deserialize, Serialize};

/// The health of a service: what [`Service::health`](crate::Service::health) reports, combined
/// with what supervision knows.
#[cfg_attr(feature = "http", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", content = "reason", rename_all = "lowercase")]
pub enum Health {
    /// Working normally.
    Healthy,
    /// Working, with a problem worth a look.
    Degraded(String),
    /// Not working.
    Unhealthy(String),
}

impl Health {
    /// A degraded report with its reason.
    pub fn degraded(reason: impl Into<String>) -> Self {
        Health::Degraded(reason.into())
    }

    /// An unhealthy report with its reason.
    pub fn unhealthy(reason: impl Into<String>) -> Self {
        Health::Unhealthy(reason.into())
    }

    /// Whether the service can take work (healthy or degraded).
    pub fn is_up(&self) -> bool {
        !matches!(self, Health::Unhealthy(_))
    }

    /// The reason given with a degraded or unhealthy report.
    pub fn reason(&self) -> Option<&str> {
        match self {
            Health::Healthy => None,
            Health::Degraded(r) | Health::Unhealthy(r) => Some(r),
        }
    }
}
