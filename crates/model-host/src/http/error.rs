//! One error type for every handler, answered in the shape and with the
//! status the client of each API expects.

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Response, StatusCode, header};
use serde::Serialize;

use super::caller::{Private, SEE_THE_LOG};
use crate::infer::InferError;

/// Which API a request belongs to: it decides the error shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Api {
    /// `/v1/...`: `{"error": {"message", "type", "param", "code"}}`.
    OpenAi,
    /// `/api/...` and `/`: `{"error": "..."}`.
    Ollama,
    /// TEI's routes: `{"error": "...", "error_type": "..."}`.
    Tei,
}

/// What went wrong, independent of the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Malformed JSON, wrong types, missing or invalid fields.
    BadRequest,
    /// An empty list of inputs (TEI's `Empty`).
    Empty,
    /// A text longer than the model takes, with truncation turned off.
    TooLong,
    /// No bearer token, or the wrong one.
    Unauthorized,
    /// An anonymous caller asked for what only the host's user may have.
    Forbidden,
    /// No such route, or no such model.
    NotFound,
    /// A route asked with the wrong method.
    MethodNotAllowed,
    /// The body did not arrive in time.
    Timeout,
    /// The body, a text or the number of inputs is over a limit.
    TooLarge,
    /// The queue is full.
    Overloaded,
    /// The host is stopping.
    ShuttingDown,
    /// The host failed (a bug or broken weights, never the input).
    Internal,
    /// A remote model's service failed or could not be reached.
    Upstream,
}

/// A failed request: its kind and one line for a human.
#[derive(Debug, Clone)]
pub(crate) struct ApiError {
    pub kind: Kind,
    pub message: String,
}

impl ApiError {
    pub fn new(kind: Kind, message: impl Into<String>) -> ApiError {
        ApiError { kind, message: message.into() }
    }

    pub fn bad(message: impl Into<String>) -> ApiError {
        ApiError::new(Kind::BadRequest, message)
    }

    /// The status this error gets from `api`.
    pub fn status(&self, api: Api) -> StatusCode {
        match self.kind {
            Kind::BadRequest => StatusCode::BAD_REQUEST,
            Kind::Empty => StatusCode::BAD_REQUEST,
            // TEI answers its validation errors (an input over the model's
            // length) with 413; Ollama with 400.
            Kind::TooLong if api == Api::Tei => StatusCode::PAYLOAD_TOO_LARGE,
            Kind::TooLong => StatusCode::BAD_REQUEST,
            Kind::Unauthorized => StatusCode::UNAUTHORIZED,
            Kind::Forbidden => StatusCode::FORBIDDEN,
            Kind::NotFound => StatusCode::NOT_FOUND,
            Kind::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Kind::Timeout => StatusCode::REQUEST_TIMEOUT,
            Kind::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Kind::Overloaded => StatusCode::TOO_MANY_REQUESTS,
            Kind::ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
            Kind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            Kind::Upstream => StatusCode::BAD_GATEWAY,
        }
    }

    /// This error as an anonymous caller may see it: a failure inside the
    /// host (whose reason can name the user's files) only points to the
    /// host's log, where it is written whole; every other message has the
    /// user's paths redacted.
    pub fn for_anonymous(self, private: &Private) -> ApiError {
        match self.kind {
            Kind::Internal => {
                tracing::warn!("HTTP request of an anonymous caller failed: {}", self.message);
                ApiError::new(Kind::Internal, SEE_THE_LOG)
            }
            _ => ApiError::new(self.kind, private.redact(&self.message)),
        }
    }

    /// The response `api`'s clients expect for this error.
    pub fn respond(&self, api: Api) -> Response<Full<Bytes>> {
        let status = self.status(api);
        let message = self.message.as_str();
        let body = match api {
            Api::OpenAi => {
                let (kind, code) = match self.kind {
                    Kind::Unauthorized => ("invalid_request_error", Some("invalid_api_key")),
                    Kind::Forbidden => ("permission_error", Some("forbidden")),
                    Kind::NotFound => ("invalid_request_error", Some("model_not_found")),
                    Kind::Overloaded => ("rate_limit_error", Some("rate_limit_exceeded")),
                    Kind::Internal | Kind::ShuttingDown | Kind::Upstream => ("server_error", None),
                    _ => ("invalid_request_error", None),
                };
                serde_json::json!({
                    "error": { "message": message, "type": kind, "param": null, "code": code }
                })
            }
            Api::Ollama => serde_json::json!({ "error": message }),
            Api::Tei => {
                let kind = match self.kind {
                    Kind::Empty => "Empty",
                    Kind::Overloaded => "Overloaded",
                    Kind::ShuttingDown => "Unhealthy",
                    Kind::Internal | Kind::Upstream => "Backend",
                    Kind::Unauthorized => "Unauthorized",
                    Kind::Forbidden => "Forbidden",
                    _ => "Validation",
                };
                serde_json::json!({ "error": message, "error_type": kind })
            }
        };
        let mut response = json(status, &body);
        let headers = response.headers_mut();
        match self.kind {
            Kind::Unauthorized => {
                headers
                    .insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Bearer"));
            }
            // The openai SDK and others wait this long before retrying.
            Kind::Overloaded => {
                headers.insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
            }
            _ => {}
        }
        response
    }
}

impl From<InferError> for ApiError {
    fn from(e: InferError) -> ApiError {
        let kind = match &e {
            InferError::TooManyTexts { .. } | InferError::TextTooLarge { .. } => Kind::TooLarge,
            InferError::TooLong { .. } => Kind::TooLong,
            InferError::UnknownModel { .. } => Kind::NotFound,
            InferError::ShuttingDown => Kind::ShuttingDown,
            InferError::Overloaded { .. } => Kind::Overloaded,
            InferError::Job(j) => return ApiError::from(j.clone()),
            _ => Kind::Internal,
        };
        ApiError::new(kind, e.to_string())
    }
}

impl From<crate::queue::JobError> for ApiError {
    fn from(e: crate::queue::JobError) -> ApiError {
        use crate::backend::BackendError;
        let kind = match &e {
            crate::queue::JobError::Backend(BackendError::Upstream { .. }) => Kind::Upstream,
            _ => Kind::Internal,
        };
        ApiError::new(kind, e.to_string())
    }
}

/// A JSON response.
pub(crate) fn json(status: StatusCode, body: &impl Serialize) -> Response<Full<Bytes>> {
    match serde_json::to_vec(body) {
        Ok(bytes) => bytes_response(status, "application/json", bytes),
        Err(e) => bytes_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            "text/plain; charset=utf-8",
            format!("cannot encode the response: {e}").into_bytes(),
        ),
    }
}

/// A response with a body of `content_type`.
pub(crate) fn bytes_response(
    status: StatusCode,
    content_type: &'static str,
    body: Vec<u8>,
) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static(content_type));
    r
}
