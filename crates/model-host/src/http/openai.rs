//! OpenAI's shape: `POST /v1/embeddings`, `GET /v1/models`, `GET /v1/models/{id}`.
//!
//! - `input`: a string, a list of strings, a list of token ids, or a list of
//!   lists of token ids. Token ids are cl100k_base (see [`super::cl100k`]).
//! - `encoding_format`: `float` (the default) or `base64` (little-endian
//!   f32, what the openai SDK sends and decodes).
//! - `dimensions`: the first `dimensions` floats of each vector, renormalized,
//!   as OpenAI does; 400 outside 1..=dim.
//! - `usage.prompt_tokens`: the model's own tokens (after truncation).
//! - Inputs longer than the model's `max_seq_length` are truncated, as
//!   sentence-transformers does.

use std::sync::Arc;

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::caller::{Caller, shown_name};
use super::error::{ApiError, json};
use super::{State, body, cl100k, embed, models};

#[derive(Deserialize)]
struct EmbeddingsRequest {
    input: Option<Value>,
    model: Option<String>,
    encoding_format: Option<String>,
    dimensions: Option<i64>,
}

#[derive(Serialize)]
struct EmbeddingsResponse<'a> {
    object: &'static str,
    data: Vec<Item<'a>>,
    model: &'a str,
    usage: Usage,
}

#[derive(Serialize)]
struct Item<'a> {
    object: &'static str,
    index: usize,
    embedding: Vector<'a>,
}

#[derive(Serialize)]
#[serde(untagged)]
enum Vector<'a> {
    Float(&'a [f32]),
    Base64(String),
}

#[derive(Serialize)]
struct Usage {
    prompt_tokens: u64,
    total_tokens: u64,
}

/// What `input` holds.
enum Inputs {
    Texts(Vec<String>),
    Ids(Vec<Vec<u32>>),
}

fn inputs(v: Option<Value>) -> Result<Inputs, ApiError> {
    const SHAPES: &str = "input must be a string, an array of strings, an array of token ids, \
                          or an array of arrays of token ids";
    let ids = |v: &[Value]| -> Option<Vec<u32>> {
        v.iter().map(|x| x.as_u64().and_then(|n| u32::try_from(n).ok())).collect()
    };
    match v {
        None | Some(Value::Null) => Err(ApiError::bad("input is required")),
        Some(Value::String(s)) => Ok(Inputs::Texts(vec![s])),
        Some(Value::Array(items)) => {
            if items.is_empty() {
                return Err(ApiError::bad("input must not be an empty array"));
            }
            if items.iter().all(Value::is_string) {
                let texts = items
                    .into_iter()
                    .map(|v| match v {
                        Value::String(s) => s,
                        _ => unreachable!("all checked to be strings"),
                    })
                    .collect();
                return Ok(Inputs::Texts(texts));
            }
            if let Some(one) = ids(&items) {
                return Ok(Inputs::Ids(vec![one]));
            }
            let many: Option<Vec<Vec<u32>>> =
                items.iter().map(|v| v.as_array().and_then(|a| ids(a))).collect();
            many.map(Inputs::Ids).ok_or_else(|| ApiError::bad(SHAPES))
        }
        Some(_) => Err(ApiError::bad(SHAPES)),
    }
}

/// `POST /v1/embeddings`.
pub(crate) async fn embeddings(
    state: &Arc<State>,
    who: Caller,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, ApiError> {
    let r: EmbeddingsRequest = body::json(req, state.max_body_bytes).await?;
    let base64 = match r.encoding_format.as_deref() {
        None | Some("float") => false,
        Some("base64") => true,
        Some(other) => {
            return Err(ApiError::bad(format!(
                "encoding_format must be \"float\" or \"base64\", got {other:?}"
            )));
        }
    };
    let model = models::resolve(&state.infer, who, r.model.as_deref()).await?;
    let dims = embed::check_dimensions(r.dimensions, model.clone().dim())?;
    let texts = match inputs(r.input)? {
        Inputs::Texts(t) => t,
        Inputs::Ids(lists) => {
            if lists.len() > super::MAX_INPUTS {
                return Err(ApiError::new(
                    super::error::Kind::TooLarge,
                    format!("{} inputs; the limit is {}", lists.len(), super::MAX_INPUTS),
                ));
            }
            // Building cl100k's tables the first time takes a while: off the reactor.
            tokio::task::spawn_blocking(move || {
                lists.iter().map(|ids| cl100k::decode(ids)).collect::<Result<Vec<_>, _>>()
            })
            .await
            .map_err(|e| ApiError::new(super::error::Kind::Internal, e.to_string()))??
        }
    };
    let mut out = embed::embed(state, who, model, texts, true).await?;
    if let Some(d) = dims {
        out.cut(d);
    }
    let data = out
        .rows()
        .enumerate()
        .map(|(index, row)| Item {
            object: "embedding",
            index,
            embedding: if base64 {
                let bytes: Vec<u8> = row.iter().flat_map(|f| f.to_le_bytes()).collect();
                Vector::Base64(base64::engine::general_purpose::STANDARD.encode(bytes))
            } else {
                Vector::Float(row)
            },
        })
        .collect();
    let tokens = out.total_tokens();
    Ok(json(
        StatusCode::OK,
        &EmbeddingsResponse {
            object: "list",
            data,
            model: &out.model,
            usage: Usage { prompt_tokens: tokens, total_tokens: tokens },
        },
    ))
}

/// One entry of `GET /v1/models`.
fn model_entry(id: &str) -> Value {
    serde_json::json!({ "id": id, "object": "model", "created": 0, "owned_by": "vembed" })
}

/// `GET /v1/models`: every served model, under its canonical name.
pub(crate) fn list(state: &State, who: Caller) -> Response<Full<Bytes>> {
    let data: Vec<Value> = state
        .infer
        .models()
        .iter()
        .map(|m| model_entry(&shown_name(&m.name, &m.sha256, who)))
        .collect();
    json(StatusCode::OK, &serde_json::json!({ "object": "list", "data": data }))
}

/// `GET /v1/models/{id}`: one model, by any name the host answers to.
pub(crate) async fn get(
    state: &State,
    who: Caller,
    id: &str,
) -> Result<Response<Full<Bytes>>, ApiError> {
    let i = models::resolve(&state.infer, who, Some(id)).await?;
    let m = i.clone();
    Ok(json(StatusCode::OK, &model_entry(&shown_name(&m.name, &m.sha256, who))))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(v: Value) -> Result<Inputs, ApiError> {
        inputs(Some(v))
    }

    #[test]
    fn input_shapes() {
        use serde_json::json;
        assert!(matches!(parse(json!("a")), Ok(Inputs::Texts(t)) if t == ["a"]));
        assert!(matches!(parse(json!(["a", ""])), Ok(Inputs::Texts(t)) if t.len() == 2));
        assert!(matches!(parse(json!([1, 2])), Ok(Inputs::Ids(v)) if v == [vec![1, 2]]));
        assert!(matches!(parse(json!([[1], [2, 3]])), Ok(Inputs::Ids(v)) if v.len() == 2));
        for bad in [json!([]), json!(5), json!(["a", 1]), json!([-1]), json!([[1], "a"]), json!({})]
        {
            assert!(parse(bad.clone()).is_err(), "{bad}");
        }
        assert!(inputs(None).is_err());
    }
}
