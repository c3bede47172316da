//! The control plane's error body: a stable code, a message, and the field at fault if known.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::Error;

/// An error as the control plane answers it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub(crate) struct ApiError {
    #[serde(skip)]
    pub(crate) status: StatusCode,
    /// Stable and machine-readable: `unknown_service`, `bad_parameters`, `timeout`, …
    #[schema(value_type = String, example = "unknown_action")]
    pub(crate) code: &'static str,
    /// What went wrong, for people.
    pub(crate) message: String,
    /// The field at fault, when known (`file_id`, `batchSize`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) field: Option<String>,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            field: None,
        }
    }

    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    pub(crate) fn not_found() -> Self {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such endpoint")
    }

    pub(crate) fn method_not_allowed() -> Self {
        ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "this endpoint does not take that method",
        )
    }

    pub(crate) fn unauthorized(message: &str) -> Self {
        ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    pub(crate) fn forbidden(message: &str) -> Self {
        ApiError::new(StatusCode::FORBIDDEN, "forbidden", message)
    }
}

impl From<Error> for ApiError {
    fn from(err: Error) -> Self {
        let status = match &err {
            Error::UnknownService { .. }
            | Error::UnknownAction { .. }
            | Error::UnknownCommand { .. }
            | Error::UnknownEvent { .. }
            | Error::UnknownJob { .. } => StatusCode::NOT_FOUND,
            Error::BadParameters { .. } | Error::NotDurable { .. } | Error::BadState { .. } => {
                StatusCode::BAD_REQUEST
            }
            Error::Timeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            // The service is off, or stopping with its runtime: the call conflicts with its state.
            Error::ServiceDisabled { .. }
            | Error::ShuttingDown
            | Error::JobConflict { .. }
            | Error::NoState { .. } => StatusCode::CONFLICT,
            Error::Overloaded { .. } => StatusCode::TOO_MANY_REQUESTS,
            Error::ServiceUnavailable { .. }
            | Error::ServiceFailed { .. }
            | Error::StartupFailed { .. }
            | Error::CriticalFailure { .. } => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        let field = match &err {
            Error::BadParameters { field, .. } => field.clone(),
            _ => None,
        };
        let message = match &err {
            // What the handler said is the service's answer; anything else internal stays
            // in the logs.
            Error::ActionFailed { .. } => err.to_string(),
            Error::Encode {
                service, action, ..
            } => {
                tracing::error!(%err, "control plane: could not encode a reply");
                format!("the reply of `{service}.{action}` could not be encoded")
            }
            _ => err.to_string(),
        };
        ApiError {
            status,
            code: err.code(),
            message,
            field,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(&self)).into_response()
    }
}
