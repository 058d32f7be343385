//! Ollama's shape: `POST /api/embed`, the legacy `POST /api/embeddings`
//! (Victor's), and the probes `GET /api/tags`, `GET /api/version`,
//! `POST /api/show`, `GET /api/ps` and `GET /`.
//!
//! `/api/embed` answers normalized vectors, as Ollama does, whatever the
//! model's own pipeline; `truncate` defaults to true, and false makes an
//! input over the model's length a 400. `keep_alive` and `options` are
//! accepted and have no effect: the host keeps its models loaded, and an
//! embedding model has no sampling options.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use serde::Deserialize;
use serde_json::{Value, json};

use super::caller::{Caller, shown_name};
use super::error::{ApiError, bytes_response};
use super::{State, body, embed, models};
use crate::model::Embedder;

/// The Ollama version the host answers `GET /api/version` with: one whose
/// API has everything served here (`/api/embed` with `dimensions`).
pub const OLLAMA_COMPAT_VERSION: &str = "0.12.0";

#[derive(Deserialize)]
struct EmbedRequest {
    model: Option<String>,
    input: Option<Value>,
    truncate: Option<bool>,
    dimensions: Option<i64>,
    #[serde(rename = "keep_alive")]
    _keep_alive: Option<Value>,
    #[serde(rename = "options")]
    _options: Option<Value>,
}

#[derive(Deserialize)]
struct EmbeddingsRequest {
    model: Option<String>,
    prompt: Option<String>,
    #[serde(rename = "keep_alive")]
    _keep_alive: Option<Value>,
    #[serde(rename = "options")]
    _options: Option<Value>,
}

fn required_model(model: Option<String>) -> Result<String, ApiError> {
    model.filter(|m| !m.trim().is_empty()).ok_or_else(|| ApiError::bad("model is required"))
}

/// `POST /api/embed`.
pub(crate) async fn embed(
    state: &Arc<State>,
    who: Caller,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, ApiError> {
    let started = Instant::now();
    let r: EmbedRequest = body::json(req, state.max_body_bytes).await?;
    let name = required_model(r.model)?;
    let model = models::resolve(&state.infer, who, Some(&name)).await?;
    let embedder = model.clone();
    let dims = embed::check_dimensions(r.dimensions, embedder.dim())?;
    // No input loads the model, as Ollama's preload: nothing to embed.
    let texts = body::texts(r.input, "input")?.unwrap_or_default();
    let mut out = embed::embed(state, who, model, texts, r.truncate.unwrap_or(true)).await?;
    match dims {
        Some(d) => out.cut(d),
        None if !embedder.normalizes() => out.normalize(),
        None => {}
    }
    let embeddings: Vec<&[f32]> = out.rows().collect();
    Ok(super::error::json(
        StatusCode::OK,
        &json!({
            "model": name,
            "embeddings": embeddings,
            "total_duration": started.elapsed().as_nanos() as u64,
            "load_duration": 0,
            "prompt_eval_count": out.total_tokens(),
        }),
    ))
}

/// `POST /api/embeddings` (legacy): `{"model", "prompt"}` → `{"embedding"}`,
/// the model's own output (Ollama does not normalize here). An empty prompt
/// is embedded like any text, as sentence-transformers does.
pub(crate) async fn embeddings(
    state: &Arc<State>,
    who: Caller,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, ApiError> {
    let r: EmbeddingsRequest = body::json(req, state.max_body_bytes).await?;
    let name = required_model(r.model)?;
    let prompt = r.prompt.ok_or_else(|| ApiError::bad("prompt is required"))?;
    let model = models::resolve(&state.infer, who, Some(&name)).await?;
    let out = embed::embed(state, who, model, vec![prompt], true).await?;
    let embedding = out.rows().next().unwrap_or(&[]);
    Ok(super::error::json(StatusCode::OK, &json!({ "embedding": embedding })))
}

/// One model as `/api/tags` and `/api/ps` list it, under `name`.
fn tag(m: &Embedder, name: &str) -> Value {
    let size = m.files.first().and_then(|f| std::fs::metadata(f).ok()).map_or(0, |md| md.len());
    json!({
        "name": name,
        "model": name,
        "modified_at": "1970-01-01T00:00:00Z",
        "size": size,
        "digest": m.sha256,
        "details": details(),
    })
}

fn details() -> Value {
    json!({
        "parent_model": "",
        "format": "safetensors",
        "family": "bert",
        "families": ["bert"],
        "parameter_size": "",
        "quantization_level": "F32",
    })
}

/// Every name a served model answers to, Ollama style (`:latest` on bare names).
fn tag_names(canonical: &str) -> Vec<String> {
    let mut names: Vec<String> = models::aliases_of(canonical)
        .into_iter()
        .map(|a| if a.contains(':') { a.to_string() } else { format!("{a}:latest") })
        .collect();
    names.push(canonical.to_string());
    names
}

/// `GET /api/tags` (and `GET /api/ps`: every model is always loaded).
pub(crate) fn tags(state: &State, who: Caller) -> Response<Full<Bytes>> {
    let mut list = Vec::new();
    for m in state.infer.models() {
        for name in tag_names(&shown_name(&m.name, &m.sha256, who)) {
            list.push(tag(&m, &name));
        }
    }
    super::error::json(StatusCode::OK, &json!({ "models": list }))
}

/// `POST /api/show`: the model's details, with its embedding length.
pub(crate) async fn show(
    state: &Arc<State>,
    who: Caller,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, ApiError> {
    #[derive(Deserialize)]
    struct Show {
        model: Option<String>,
        name: Option<String>,
    }
    let r: Show = body::json(req, state.max_body_bytes).await?;
    let name = required_model(r.model.or(r.name))?;
    let i = models::resolve(&state.infer, who, Some(&name)).await?;
    let m = i.clone();
    Ok(super::error::json(
        StatusCode::OK,
        &json!({
            "modelfile": "",
            "parameters": "",
            "template": "",
            "details": details(),
            "model_info": {
                "general.architecture": "bert",
                "general.basename": shown_name(&m.name, &m.sha256, who),
                "bert.embedding_length": m.dim(),
                "bert.context_length": m.max_seq_length(),
            },
            "capabilities": ["embedding"],
        }),
    ))
}

/// `GET /api/version`.
pub(crate) fn version() -> Response<Full<Bytes>> {
    super::error::json(StatusCode::OK, &json!({ "version": OLLAMA_COMPAT_VERSION }))
}

/// `GET /`: what Ollama answers, which clients probe for.
pub(crate) fn root() -> Response<Full<Bytes>> {
    bytes_response(StatusCode::OK, "text/plain; charset=utf-8", b"Ollama is running".to_vec())
}
