//! Which handler answers a method and path; the bearer token, who the
//! caller is and what it may ask for; metrics.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode, header};

use super::caller::{Caller, OWNER_ONLY, Peer};
use super::error::{Api, ApiError, Kind, bytes_response};
use super::{State, metrics, ollama, openai, search, tei};

/// The routes, each with the label its metrics carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    OpenAiEmbeddings,
    OpenAiModels,
    OpenAiModel,
    OllamaEmbed,
    OllamaEmbeddings,
    OllamaTags,
    OllamaPs,
    OllamaShow,
    OllamaVersion,
    OllamaRoot,
    TeiEmbed,
    TeiTokenize,
    TeiInfo,
    TeiHealth,
    Metrics,
    VembedSearch,
    Unknown(Api),
}

impl Route {
    /// The route and the method it takes.
    fn of(path: &str) -> (Route, &'static [Method]) {
        const GET: &[Method] = &[Method::GET, Method::HEAD];
        const POST: &[Method] = &[Method::POST];
        match path {
            "/v1/embeddings" | "/embeddings" => (Route::OpenAiEmbeddings, POST),
            "/v1/models" => (Route::OpenAiModels, GET),
            p if p.starts_with("/v1/models/") => (Route::OpenAiModel, GET),
            "/api/embed" => (Route::OllamaEmbed, POST),
            "/api/embeddings" => (Route::OllamaEmbeddings, POST),
            "/api/tags" => (Route::OllamaTags, GET),
            "/api/ps" => (Route::OllamaPs, GET),
            "/api/show" => (Route::OllamaShow, POST),
            "/api/version" => (Route::OllamaVersion, GET),
            "/" => (Route::OllamaRoot, GET),
            "/embed" => (Route::TeiEmbed, POST),
            "/tokenize" => (Route::TeiTokenize, POST),
            "/info" => (Route::TeiInfo, GET),
            "/health" => (Route::TeiHealth, GET),
            "/metrics" => (Route::Metrics, GET),
            "/vembed/v1/search" => (Route::VembedSearch, POST),
            p if p.starts_with("/v1/") => (Route::Unknown(Api::OpenAi), GET),
            p if p.starts_with("/api/") => (Route::Unknown(Api::Ollama), GET),
            _ => (Route::Unknown(Api::Tei), GET),
        }
    }

    /// Whether this route reads the user's files, indexes or paths, and so
    /// is served to the host's user only ([`Caller::Owner`]). Every route
    /// added that touches them must answer true here.
    fn owner_only(self) -> bool {
        matches!(self, Route::VembedSearch)
    }

    /// The API whose error shape this route answers in.
    fn api(self) -> Api {
        match self {
            Route::OpenAiEmbeddings
            | Route::OpenAiModels
            | Route::OpenAiModel
            | Route::VembedSearch => Api::OpenAi,
            Route::OllamaEmbed
            | Route::OllamaEmbeddings
            | Route::OllamaTags
            | Route::OllamaPs
            | Route::OllamaShow
            | Route::OllamaVersion
            | Route::OllamaRoot => Api::Ollama,
            Route::TeiEmbed
            | Route::TeiTokenize
            | Route::TeiInfo
            | Route::TeiHealth
            | Route::Metrics => Api::Tei,
            Route::Unknown(api) => api,
        }
    }

    /// The `endpoint` label of its metrics: the path pattern, never the raw path.
    fn label(self) -> &'static str {
        match self {
            Route::OpenAiEmbeddings => "/v1/embeddings",
            Route::OpenAiModels => "/v1/models",
            Route::OpenAiModel => "/v1/models/{id}",
            Route::OllamaEmbed => "/api/embed",
            Route::OllamaEmbeddings => "/api/embeddings",
            Route::OllamaTags => "/api/tags",
            Route::OllamaPs => "/api/ps",
            Route::OllamaShow => "/api/show",
            Route::OllamaVersion => "/api/version",
            Route::OllamaRoot => "/",
            Route::TeiEmbed => "/embed",
            Route::TeiTokenize => "/tokenize",
            Route::TeiInfo => "/info",
            Route::TeiHealth => "/health",
            Route::Metrics => "/metrics",
            Route::VembedSearch => "/vembed/v1/search",
            Route::Unknown(_) => "unknown",
        }
    }
}

/// Answers one request from `peer`; never fails (errors are responses).
pub(crate) async fn handle(
    state: Arc<State>,
    peer: Peer,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let started = Instant::now();
    let path = req.uri().path().to_string();
    let (route, methods) = Route::of(&path);
    let api = route.api();
    let caller = Caller::of(peer, state.token.is_some());
    let result = if !authorized(&state, &req) {
        Err(ApiError::new(
            Kind::Unauthorized,
            "this vembed host asks for a bearer token: send Authorization: Bearer <the token in its http_token_file>",
        ))
    } else if matches!(route, Route::Unknown(_)) {
        Err(ApiError::new(Kind::NotFound, format!("no endpoint {} {path}", req.method())))
    } else if route.owner_only() && !caller.is_owner() {
        Err(ApiError::new(Kind::Forbidden, OWNER_ONLY))
    } else if !methods.contains(req.method()) {
        Err(ApiError::new(
            Kind::MethodNotAllowed,
            format!("{path} takes {}, not {}", methods[0], req.method()),
        ))
    } else {
        dispatch(route, &state, caller, req, &path).await
    };
    let mut response = result.unwrap_or_else(|e| match caller {
        Caller::Owner => e.respond(api),
        Caller::Anonymous => e.for_anonymous(&state.private_paths()).respond(api),
    });
    response.headers_mut().insert(
        header::SERVER,
        header::HeaderValue::from_static(concat!("vembed/", env!("CARGO_PKG_VERSION"))),
    );
    state.metrics.record(route.label(), response.status().as_u16(), started.elapsed());
    Ok(response)
}

async fn dispatch(
    route: Route,
    state: &Arc<State>,
    who: Caller,
    req: Request<Incoming>,
    path: &str,
) -> Result<Response<Full<Bytes>>, ApiError> {
    match route {
        Route::OpenAiEmbeddings => openai::embeddings(state, who, req).await,
        Route::OpenAiModels => Ok(openai::list(state, who)),
        Route::OpenAiModel => openai::get(state, who, path.trim_start_matches("/v1/models/")).await,
        Route::OllamaEmbed => ollama::embed(state, who, req).await,
        Route::OllamaEmbeddings => ollama::embeddings(state, who, req).await,
        Route::OllamaTags | Route::OllamaPs => Ok(ollama::tags(state, who)),
        Route::OllamaShow => ollama::show(state, who, req).await,
        Route::OllamaVersion => Ok(ollama::version()),
        Route::OllamaRoot => Ok(ollama::root()),
        Route::TeiEmbed => tei::embed(state, who, req).await,
        Route::TeiTokenize => tei::tokenize(state, who, req).await,
        Route::TeiInfo => tei::info(state, who).await,
        Route::TeiHealth => Ok(tei::health(state)),
        Route::Metrics => Ok(bytes_response(
            StatusCode::OK,
            "text/plain; version=0.0.4; charset=utf-8",
            metrics::render(state, who).into_bytes(),
        )),
        Route::VembedSearch => search::search(state, req).await,
        Route::Unknown(_) => Err(ApiError::new(Kind::NotFound, "no such endpoint")),
    }
}

/// Whether `req` carries the configured token (or none is configured).
fn authorized(state: &State, req: &Request<Incoming>) -> bool {
    let Some(token) = &state.token else { return true };
    let sent = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(str::trim)
        .unwrap_or("");
    constant_time_eq(sent.as_bytes(), token.as_bytes())
}

/// Compares without an early exit, so timing does not tell how much matched.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = a.len() ^ b.len();
    for i in 0..a.len().max(b.len()) {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        diff |= usize::from(x ^ y);
    }
    diff == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_and_labels() {
        assert_eq!(Route::of("/v1/embeddings").0, Route::OpenAiEmbeddings);
        assert_eq!(Route::of("/v1/models/all-minilm").0.label(), "/v1/models/{id}");
        assert_eq!(Route::of("/v1/nope").0.api(), Api::OpenAi);
        assert_eq!(Route::of("/api/nope").0.api(), Api::Ollama);
        assert_eq!(Route::of("/x?y").0.label(), "unknown");
        assert!(Route::of("/vembed/v1/search").0.owner_only());
        assert!(
            !Route::of("/v1/embeddings").0.owner_only() && !Route::of("/metrics").0.owner_only()
        );
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd") && !constant_time_eq(b"ab", b"abc"));
    }
}
