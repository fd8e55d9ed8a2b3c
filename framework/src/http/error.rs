//! The one error type at the HTTP edge. Every refusal has a status and a stable code; the
//! body is rendered later, in the format the request asked for (see `render_errors`).

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::business::Refusal;
use crate::codes;
use crate::interface::NegotiationError;
use crate::repr::BadBody;
use crate::store;

/// An error answer: status, stable code, and a message safe to show to the caller.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

/// What a `503` tells clients to wait before asking again, in seconds.
const RETRY_AFTER_SECS: &str = "2";

/// Put on error responses so the rendering middleware can write the body in the right format.
#[derive(Debug, Clone)]
pub(crate) struct ErrorReport {
    pub code: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn not_found(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, code, message)
    }

    pub fn forbidden(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, code, message)
    }

    /// A failure of ours: the detail goes to the log, never to the caller.
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        tracing::error!(%detail, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            codes::INTERNAL_ERROR,
            "the unit failed to answer; the incident is logged",
        )
    }

    pub fn unavailable(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, code, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = self.status.into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            // Every 503 is temporary by definition; tell clients when asking again makes sense.
            response.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from_static(RETRY_AFTER_SECS),
            );
        }
        response.extensions_mut().insert(ErrorReport {
            code: self.code,
            message: self.message,
        });
        response
    }
}

impl From<BadBody> for ApiError {
    fn from(bad: BadBody) -> Self {
        Self::bad_request(bad.code, bad.message)
    }
}

impl From<NegotiationError> for ApiError {
    fn from(error: NegotiationError) -> Self {
        match error {
            NegotiationError::NotAcceptable => Self::new(
                StatusCode::NOT_ACCEPTABLE,
                codes::NOT_ACCEPTABLE,
                "no media type in Accept is one this unit serves (XML or JSON)",
            ),
            NegotiationError::UnknownVersion(version) => Self::new(
                StatusCode::NOT_ACCEPTABLE,
                codes::UNKNOWN_INTERFACE_VERSION,
                format!("interface version {version} does not exist"),
            ),
            NegotiationError::Conflict => Self::new(
                StatusCode::NOT_ACCEPTABLE,
                codes::INTERFACE_VERSION_CONFLICT,
                "the URL prefix and the media type name different interface versions",
            ),
            NegotiationError::Retired(version) => Self::new(
                StatusCode::GONE,
                codes::INTERFACE_RETIRED,
                format!("interface version {version} has been retired"),
            ),
            NegotiationError::UnsupportedMediaType => Self::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                codes::UNSUPPORTED_MEDIA_TYPE,
                "send the body in UTF-8 as application/vnd.{sa}.v{N}+xml or +json (or application/xml, application/json)",
            ),
        }
    }
}

impl From<Refusal> for ApiError {
    fn from(refusal: Refusal) -> Self {
        match refusal {
            Refusal::Invalid { code, message } => Self::bad_request(code, message),
            Refusal::Conflict { code, message } => Self::new(StatusCode::CONFLICT, code, message),
            Refusal::Store(error) => error.into(),
        }
    }
}

impl From<store::Error> for ApiError {
    fn from(error: store::Error) -> Self {
        match error {
            store::Error::NotFound => Self::not_found(codes::NOT_FOUND, "no such resource"),
            store::Error::AspectNotFound => {
                Self::not_found(codes::ASPECT_NOT_FOUND, "the resource has no such aspect")
            }
            store::Error::PreconditionFailed { current } => Self::new(
                StatusCode::PRECONDITION_FAILED,
                codes::PRECONDITION_FAILED,
                format!("the resource is at version {current}; read it again before writing"),
            ),
            store::Error::UniqueTaken { name } => Self::new(
                StatusCode::CONFLICT,
                codes::ALREADY_TAKEN,
                format!("this {name} is already taken by another resource"),
            ),
            wrong @ store::Error::WrongHome { .. } => Self::new(
                StatusCode::MISDIRECTED_REQUEST,
                codes::WRONG_DATACENTER,
                wrong.to_string(),
            ),
            restoring @ (store::Error::Restoring { .. } | store::Error::Held { .. }) => {
                Self::unavailable(codes::RESTORING, restoring.to_string())
            }
            unavailable if unavailable.is_unavailable() => {
                tracing::warn!(error = %unavailable, "database unavailable");
                Self::unavailable(
                    codes::DATABASE_UNAVAILABLE,
                    "the service area's database cannot be reached right now; try again shortly",
                )
            }
            other => Self::internal(other),
        }
    }
}
