//! Who may do what: the bearer tokens of the control plane.
//!
//! With no token configured every route is open. With one, every route needs it, except the
//! probes (`/health…`, `/metrics`) while `open_probes` is on. A read-only token opens what
//! reads (the routes a `GET` reaches) and is refused, with 403, where the plane acts.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::header::AUTHORIZATION;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::ApiError;

/// What a route needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Access {
    /// To see: services, status, events, metrics.
    Read,
    /// To act: commands, actions, pause and resume.
    Act,
}

/// The tokens a plane takes, and what each opens.
#[derive(Clone)]
pub(crate) struct Tokens {
    pub(crate) act: Option<Arc<str>>,
    pub(crate) read: Option<Arc<str>>,
}

impl Tokens {
    /// Whether any token is configured, so that routes need one.
    pub(crate) fn guarded(&self) -> bool {
        self.act.is_some() || self.read.is_some()
    }

    /// What a request's `Authorization` header gives it.
    fn grant(&self, header: Option<&str>) -> Result<Access, ApiError> {
        let Some(header) = header else {
            return Err(ApiError::unauthorized(
                "this endpoint needs `Authorization: Bearer <token>`",
            ));
        };
        let given = bearer(header).ok_or_else(|| {
            ApiError::unauthorized("the Authorization header is not `Bearer <token>`")
        })?;
        let matches = |token: &Option<Arc<str>>| {
            token
                .as_deref()
                .is_some_and(|t| same(given.as_bytes(), t.as_bytes()))
        };
        if matches(&self.act) {
            Ok(Access::Act)
        } else if matches(&self.read) {
            Ok(Access::Read)
        } else {
            Err(ApiError::unauthorized("the bearer token is wrong"))
        }
    }
}

/// The token of a `Bearer` credential: the scheme is case-insensitive (RFC 9110, 11.1).
fn bearer(header: &str) -> Option<&str> {
    let (scheme, token) = header.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// Compares two secrets in time that does not depend on where they differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Refuses a request whose token does not open `needed`.
pub(crate) async fn require(
    State((tokens, needed)): State<(Tokens, Access)>,
    request: Request,
    next: Next,
) -> Response {
    let header = request
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    match tokens.grant(header) {
        Ok(granted) if granted >= needed => next.run(request).await,
        Ok(_) => ApiError::forbidden("this token can read, not act").into_response(),
        Err(err) => err.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens() -> Tokens {
        Tokens {
            act: Some(Arc::from("act-secret")),
            read: Some(Arc::from("read-secret")),
        }
    }

    #[test]
    fn the_scheme_is_case_insensitive_and_the_token_is_not() {
        let t = tokens();
        for header in [
            "Bearer act-secret",
            "bearer act-secret",
            "BEARER act-secret",
            "  Bearer   act-secret ",
        ] {
            assert_eq!(t.grant(Some(header)).unwrap(), Access::Act, "{header}");
        }
        assert_eq!(t.grant(Some("bearer read-secret")).unwrap(), Access::Read);
        for header in [
            "Bearer ACT-SECRET",
            "Basic act-secret",
            "Bearer",
            "act-secret",
            "",
        ] {
            assert!(t.grant(Some(header)).is_err(), "{header}");
        }
        assert!(t.grant(None).is_err());
    }

    #[test]
    fn an_unconfigured_token_opens_nothing() {
        let t = Tokens {
            act: Some(Arc::from("act-secret")),
            read: None,
        };
        assert!(t.grant(Some("Bearer ")).is_err());
        assert!(t.grant(Some("Bearer read-secret")).is_err());
    }
}
