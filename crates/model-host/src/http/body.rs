//! Reading a request body: at most the size limit, within the body
//! deadline, then JSON with a message that says what is wrong.

use http_body_util::{BodyExt, Limited};
use hyper::Request;
use hyper::body::Incoming;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::BODY_TIMEOUT;
use super::error::{ApiError, Kind};

/// The body of `req`, parsed as JSON into `T`.
pub(crate) async fn json<T: DeserializeOwned>(
    req: Request<Incoming>,
    limit: usize,
) -> Result<T, ApiError> {
    let bytes = read(req, limit).await?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad("the request body is empty; send a JSON object"));
    }
    serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::bad(format!("the request body is not valid for this endpoint: {e}")))
}

/// The raw body of `req`, refused past `limit` bytes or [`BODY_TIMEOUT`].
pub(crate) async fn read(req: Request<Incoming>, limit: usize) -> Result<bytes::Bytes, ApiError> {
    let too_large = || {
        ApiError::new(
            Kind::TooLarge,
            format!("the request body is over {} MiB, the limit; split the request", limit >> 20),
        )
    };
    let declared = req
        .headers()
        .get(hyper::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    let body = Limited::new(req.into_body(), limit);
    match tokio::time::timeout(BODY_TIMEOUT, body.collect()).await {
        Err(_) => Err(ApiError::new(
            Kind::Timeout,
            format!("the request body did not arrive within {} s", BODY_TIMEOUT.as_secs()),
        )),
        Ok(Err(e)) if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() => {
            Err(too_large())
        }
        Ok(Err(e)) => Err(ApiError::bad(format!("reading the request body failed: {e}"))),
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
    }
}

/// `value` as texts: a string (one text) or an array of strings; `None`
/// when the field is absent or null. `field` names it in the error.
pub(crate) fn texts(value: Option<Value>, field: &str) -> Result<Option<Vec<String>>, ApiError> {
    let wrong = |found: &Value| {
        ApiError::bad(format!("`{field}` must be a string or an array of strings; found {found}"))
    };
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(vec![s])),
        Some(Value::Array(items)) => items
            .into_iter()
            .map(|v| match v {
                Value::String(s) => Ok(s),
                other => Err(wrong(&other)),
            })
            .collect::<Result<_, _>>()
            .map(Some),
        Some(other) => Err(wrong(&other)),
    }
}
