//! TEI's shape (text-embeddings-inference): `POST /embed`, `POST /tokenize`,
//! `GET /info`, `GET /health`. `GET /metrics` is shared by every API.
//!
//! `/embed` takes `inputs` (a string or a list), `normalize` (default true)
//! and `truncate` (default false, as TEI without `--auto-truncate`: an input
//! over the model's length is a 413). `normalize: false` is refused for a
//! model whose own pipeline ends in `Normalize`: the host serves the model
//! as sentence-transformers runs it and never holds the raw vectors.

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use serde::Deserialize;
use serde_json::{Value, json};

use super::caller::{Caller, shown_name};
use super::error::{ApiError, Kind, bytes_response};
use super::{MAX_CONNECTIONS, MAX_INPUTS, State, body, embed, models};

#[derive(Deserialize)]
struct EmbedRequest {
    inputs: Option<Value>,
    normalize: Option<bool>,
    truncate: Option<bool>,
    truncation_direction: Option<String>,
    prompt_name: Option<String>,
}

#[derive(Deserialize)]
struct TokenizeRequest {
    inputs: Option<Value>,
    add_special_tokens: Option<bool>,
    truncate: Option<bool>,
}

/// `inputs` as texts: a string or a non-empty list of strings.
fn texts(inputs: Option<Value>) -> Result<Vec<String>, ApiError> {
    match body::texts(inputs, "inputs")? {
        None => Err(ApiError::bad("`inputs` is required")),
        Some(t) if t.is_empty() => Err(ApiError::new(Kind::Empty, "`inputs` cannot be empty")),
        Some(t) => Ok(t),
    }
}

/// `POST /embed`.
pub(crate) async fn embed(
    state: &Arc<State>,
    who: Caller,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, ApiError> {
    let r: EmbedRequest = body::json(req, state.max_body_bytes).await?;
    if let Some(d) = r.truncation_direction.as_deref().filter(|d| !d.eq_ignore_ascii_case("right"))
    {
        return Err(ApiError::bad(format!(
            "truncation_direction {d:?} is not supported: the model truncates on the right, as sentence-transformers does"
        )));
    }
    if let Some(p) = r.prompt_name {
        return Err(ApiError::bad(format!(
            "prompt_name {p:?} is not supported: put the prompt in the input text"
        )));
    }
    let texts = texts(r.inputs)?;
    let model = models::resolve(&state.infer, who, None).await?;
    let normalizes = model.clone().normalizes();
    let normalize = r.normalize.unwrap_or(true);
    if !normalize && normalizes {
        return Err(ApiError::bad(
            "normalize: false is not available for this model: its sentence-transformers \
             pipeline (modules.json) ends in Normalize, and the host serves it as that pipeline runs it",
        ));
    }
    let mut out = embed::embed(state, who, model, texts, r.truncate.unwrap_or(false)).await?;
    if normalize && !normalizes {
        out.normalize();
    }
    let rows: Vec<&[f32]> = out.rows().collect();
    Ok(super::error::json(StatusCode::OK, &rows))
}

/// `POST /tokenize`: the model's tokens of each input.
pub(crate) async fn tokenize(
    state: &Arc<State>,
    who: Caller,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, ApiError> {
    let r: TokenizeRequest = body::json(req, state.max_body_bytes).await?;
    let texts = texts(r.inputs)?;
    let max = state.infer.limits().max_texts_per_request as usize;
    state.infer.check(&texts, max).map_err(ApiError::from)?;
    let model = models::resolve(&state.infer, who, None).await?;
    let embedder = model.clone();
    let special = r.add_special_tokens.unwrap_or(true);
    let truncate = r.truncate.unwrap_or(false);
    let lists = tokio::task::spawn_blocking(move || {
        texts
            .iter()
            .map(|t| {
                let tokens = embedder
                    .tokens_of(t, special, truncate)
                    .map_err(|e| ApiError::new(Kind::Internal, e.to_string()))?;
                Ok(tokens
                    .into_iter()
                    .map(|t| {
                        json!({
                            "id": t.id,
                            "text": t.text,
                            "special": t.special,
                            "start": t.range.map(|r| r.0),
                            "stop": t.range.map(|r| r.1),
                        })
                    })
                    .collect::<Vec<Value>>())
            })
            .collect::<Result<Vec<_>, ApiError>>()
    })
    .await
    .map_err(|e| ApiError::new(Kind::Internal, e.to_string()))??;
    Ok(super::error::json(StatusCode::OK, &lists))
}

/// `GET /info`: the unified model, in TEI's fields.
pub(crate) async fn info(state: &State, who: Caller) -> Result<Response<Full<Bytes>>, ApiError> {
    let model = models::resolve(&state.infer, who, None).await?;
    let m = model.clone();
    // A remote model's pooling is its service's business.
    let pooling = m.pipeline().map_or_else(
        || "remote".to_string(),
        |p| {
            let p = p.pooling;
            [(p.cls, "cls"), (p.max, "max"), (p.mean, "mean"), (p.mean_sqrt_len, "mean_sqrt_len")]
                .iter()
                .filter(|(on, _)| *on)
                .map(|(_, name)| *name)
                .collect::<Vec<_>>()
                .join("+")
        },
    );
    let limits = state.infer.limits();
    Ok(super::error::json(
        StatusCode::OK,
        &json!({
            "model_id": shown_name(&m.name, &m.sha256, who),
            "model_sha": m.sha256,
            "model_dtype": "float32",
            "model_type": { "embedding": { "pooling": pooling } },
            "max_concurrent_requests": MAX_CONNECTIONS,
            "max_input_length": m.max_seq_length(),
            "max_batch_tokens": limits.max_batch_tokens,
            "max_batch_requests": null,
            "max_client_batch_size": MAX_INPUTS,
            "auto_truncate": false,
            "tokenization_workers": crate::threads(),
            "version": env!("CARGO_PKG_VERSION"),
            "sha": null,
            "docker_label": null,
            "served_by": "vembed",
        }),
    ))
}

/// `GET /health`: 200 while the host takes work, 503 once it is stopping.
pub(crate) fn health(state: &State) -> Response<Full<Bytes>> {
    if state.infer.stopping() {
        return ApiError::new(Kind::ShuttingDown, "the host is shutting down")
            .respond(super::error::Api::Tei);
    }
    bytes_response(StatusCode::OK, "text/plain; charset=utf-8", Vec::new())
}
