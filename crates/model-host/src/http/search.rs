//! vembed's own `POST /vembed/v1/search`: a repository's code index searched
//! in the host, ranked exactly as `vembed search`, the Rust API and the
//! socket's `SearchRanked` rank it, for programs that speak only HTTP.
//!
//! It reads the user's code, so it is served to the host's user only (the
//! token, or the Unix-socket listener: [`super::caller`]), and it opens no
//! path the caller names: `repo` must be a repository this host has
//! indexed for its user ([`crate::indexer::Indexer::search_registered`]), and there is no
//! `index_dir` (an index kept elsewhere is searched over the socket).
//!
//! The body is `{"repo": "/abs/path", "query": "...", "k": 10, "mode":
//! "hybrid" | "semantic" | "lexical"}` (`k` and `mode` optional). The
//! answer is `{"mode": ..., "hits": [...]}`, each
//! hit flat as `vembed search --json` prints it: `path`, `start_line`,
//! `end_line`, `symbol`, `score` (the mode's), `text`, `semantic_rank`,
//! `semantic_score`, `lexical_rank`, `lexical_score`. Errors take the
//! OpenAI shape, `{"error": {"message", "type", ...}}`.

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use serde::Deserialize;
use serde_json::json;
use vembed_protocol::{RankedSearchRequest, SearchMode};

use super::error::{ApiError, Kind};
use super::{State, body};
use crate::indexer::IndexerError;

/// Results when the body names no `k`.
const DEFAULT_K: u32 = 10;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SearchBody {
    repo: String,
    query: String,
    k: Option<u32>,
    mode: Option<String>,
    /// Refused with a reason (rather than as an unknown field): an index
    /// at a path of the caller's choosing is not opened from HTTP.
    index_dir: Option<serde_json::Value>,
}

/// `POST /vembed/v1/search`.
pub(crate) async fn search(
    state: &Arc<State>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, ApiError> {
    let b: SearchBody = body::json(req, state.max_body_bytes).await?;
    let mode = match b.mode.as_deref() {
        None => SearchMode::default(),
        Some(m) => SearchMode::from_name(m).ok_or_else(|| {
            ApiError::bad(format!("mode {m:?} is not one of \"hybrid\", \"semantic\", \"lexical\""))
        })?,
    };
    if b.index_dir.is_some() {
        return Err(ApiError::bad(
            "`index_dir` is not accepted over HTTP: name the repository, which must have its \
             index at the default place (`vembed index REPO`); search an index kept elsewhere \
             over the vembed socket (vembed search --index-dir)",
        ));
    }
    if !Path::new(&b.repo).is_absolute() {
        return Err(ApiError::bad("`repo` must be an absolute path"));
    }
    if b.query.len() > state.infer.limits().max_text_bytes as usize {
        return Err(ApiError::new(
            Kind::TooLarge,
            format!(
                "the query is {} bytes; the most is {}",
                b.query.len(),
                state.infer.limits().max_text_bytes
            ),
        ));
    }
    let request = RankedSearchRequest {
        repo: b.repo,
        index_dir: None,
        query: b.query,
        k: b.k.unwrap_or(DEFAULT_K),
        mode,
    };
    let indexer = state.indexer.clone();
    let hits = tokio::task::spawn_blocking(move || indexer.search_registered(&request))
        .await
        .map_err(|e| ApiError::new(Kind::Internal, format!("the search failed: {e}")))?
        .map_err(api_error)?;
    let hits: Vec<serde_json::Value> = hits
        .into_iter()
        .map(|h| {
            let s = h.hit;
            json!({
                "path": s.path,
                "start_line": s.start_line,
                "end_line": s.end_line,
                "symbol": s.symbol,
                "score": s.score,
                "text": s.text,
                "semantic_rank": h.semantic.map(|r| r.rank),
                "semantic_score": h.semantic.map(|r| r.score),
                "lexical_rank": h.lexical.map(|r| r.rank),
                "lexical_score": h.lexical.map(|r| r.score),
            })
        })
        .collect();
    Ok(super::error::json(StatusCode::OK, &json!({ "mode": mode.name(), "hits": hits })))
}

/// What an HTTP client is told of a failed search.
fn api_error(e: IndexerError) -> ApiError {
    use vembed_index::IndexError as I;
    let kind = match &e {
        IndexerError::NoIndex { .. }
        | IndexerError::NotRegistered { .. }
        | IndexerError::NoCodeModel => Kind::NotFound,
        IndexerError::Repo { .. } => Kind::BadRequest,
        IndexerError::Index(
            I::TooMany { .. } | I::ModelMismatch { .. } | I::Schema { .. } | I::Missing(_),
        ) => Kind::BadRequest,
        // The query's embedding: answered as the embedding doors answer it.
        IndexerError::Infer(e) => return ApiError::from(e.clone()),
        IndexerError::Stopped => Kind::ShuttingDown,
        _ => Kind::Internal,
    };
    ApiError::new(kind, e.to_string())
}
