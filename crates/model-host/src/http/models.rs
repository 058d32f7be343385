//! The names HTTP clients send, mapped to the models the host serves.
//!
//! A name is matched without regard to case and with Ollama's `:latest`
//! tag dropped, in this order:
//! 1. a role: `unified`, `tools`, `code` (also `vembed:unified`, ...), or
//!    none at all (TEI sends none): the unified model;
//! 2. [`ALIASES`]: Ollama's library names and short names of the
//!    sentence-transformers models, such as `all-minilm`;
//! 3. a served model's canonical name (`sentence-transformers/all-MiniLM-L6-v2`)
//!    or its part after the `/` (`all-MiniLM-L6-v2`), or the `local-…` name
//!    an anonymous caller sees for a model loaded from a folder
//!    ([`shown_name`]);
//! 4. a Hugging Face name (`org/name`) of a model on disk, which is loaded
//!    as the socket would load it.
//!
//! Anything else is 404, in the API's error shape, listing what is served.

use std::sync::Arc;

use vembed_protocol::{ModelRef, Role};

use super::caller::{Caller, shown_name};
use super::error::{ApiError, Kind};
use crate::infer::Infer;
use crate::model::Embedder;

/// What clients send (lower case) → the model it means.
pub const ALIASES: &[(&str, &str)] = &[
    ("all-minilm", "sentence-transformers/all-MiniLM-L6-v2"),
    ("all-minilm:l6-v2", "sentence-transformers/all-MiniLM-L6-v2"),
    ("all-minilm:22m", "sentence-transformers/all-MiniLM-L6-v2"),
    ("all-minilm-l6-v2", "sentence-transformers/all-MiniLM-L6-v2"),
    ("all-minilm:l12-v2", "sentence-transformers/all-MiniLM-L12-v2"),
    ("all-minilm:33m", "sentence-transformers/all-MiniLM-L12-v2"),
    ("all-minilm-l12-v2", "sentence-transformers/all-MiniLM-L12-v2"),
    ("bge-small", "BAAI/bge-small-en-v1.5"),
    ("bge-small-en-v1.5", "BAAI/bge-small-en-v1.5"),
    ("e5-small-v2", "intfloat/e5-small-v2"),
];

/// Role names → roles.
const ROLES: &[(&str, Role)] =
    &[("unified", Role::Unified), ("tools", Role::Tools), ("code", Role::Code)];

/// The model `requested` names (`None` or empty: the
/// unified model). A model that must first be loaded from disk is loaded
/// on a blocking thread, not on the reactor.
pub(crate) async fn resolve(
    infer: &Arc<Infer>,
    who: Caller,
    requested: Option<&str>,
) -> Result<Arc<Embedder>, ApiError> {
    match find(infer, who, requested)? {
        Found::Loaded(m) => Ok(m),
        Found::Load(name) => {
            let (infer, raw) = (infer.clone(), requested.unwrap_or("").trim().to_string());
            tokio::task::spawn_blocking(move || {
                infer.model(&ModelRef::Name(name)).map_err(|e| {
                    // Why a load failed names the folders searched: the user's.
                    let reason = match who {
                        Caller::Owner => short_reason(&e.to_string()),
                        Caller::Anonymous => "not on this host's disk, or it failed to load".into(),
                    };
                    not_found(&infer, who, &raw, &reason)
                })
            })
            .await
            .map_err(|e| ApiError::new(Kind::Internal, format!("loading the model failed: {e}")))?
        }
    }
}

/// What a name comes to: a loaded model, or a Hugging Face name to load.
enum Found {
    Loaded(Arc<Embedder>),
    Load(String),
}

fn find(infer: &Infer, who: Caller, requested: Option<&str>) -> Result<Found, ApiError> {
    let raw = requested.map(str::trim).unwrap_or("");
    let name = raw.to_lowercase();
    let name = name.strip_suffix(":latest").unwrap_or(&name);
    let role = if name.is_empty() {
        Some(Role::Unified)
    } else {
        let bare = name.strip_prefix("vembed:").unwrap_or(name);
        ROLES.iter().find(|(n, _)| *n == bare).map(|&(_, r)| r)
    };
    if let Some(role) = role {
        return infer
            .model(&ModelRef::Role(role))
            .map(Found::Loaded)
            .map_err(|e| not_found(infer, who, raw, &e.to_string()));
    }
    let canonical = ALIASES.iter().find(|(a, _)| *a == name).map(|&(_, c)| c.to_lowercase());
    let wanted = canonical.as_deref().unwrap_or(name);
    for m in infer.models() {
        let full = shown_name(&m.name, &m.sha256, who).to_lowercase();
        let local = shown_name(&m.name, &m.sha256, Caller::Anonymous).to_lowercase();
        let short = full.rsplit('/').next().unwrap_or(&full).to_string();
        if full == wanted || local == wanted || (canonical.is_none() && short == wanted) {
            return Ok(Found::Loaded(m));
        }
    }
    // A Hugging Face name the host has not loaded: load it if it is on disk.
    // Paths are not taken from HTTP clients (any local user may reach a
    // loopback port).
    let hf_name = match canonical {
        Some(_) => ALIASES.iter().find(|(a, _)| *a == name).map(|&(_, c)| c.to_string()),
        None => Some(raw.to_string()).filter(|n| looks_like_hub_name(n)),
    };
    hf_name.map(Found::Load).ok_or_else(|| not_found(infer, who, raw, "no such model or alias"))
}

/// `org/name`: two plain parts, no path.
fn looks_like_hub_name(n: &str) -> bool {
    let mut parts = n.split('/');
    let ok = |p: Option<&str>| {
        p.is_some_and(|p| {
            !p.is_empty()
                && p != "."
                && p != ".."
                && p.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        })
    };
    ok(parts.next()) && ok(parts.next()) && parts.next().is_none()
}

/// The first clause of a load error, without the list of served models the
/// inference layer adds (the 404 lists them itself).
fn short_reason(reason: &str) -> String {
    reason.split(" (serving:").next().unwrap_or(reason).to_string()
}

fn not_found(infer: &Infer, who: Caller, requested: &str, reason: &str) -> ApiError {
    ApiError::new(
        Kind::NotFound,
        format!(
            "model {requested:?} is not served here ({reason}); served: {}",
            served_list(infer, who)
        ),
    )
}

/// "name (also a, b), ...; roles: unified, tools, code", as `who` sees the names.
pub(crate) fn served_list(infer: &Infer, who: Caller) -> String {
    let models: Vec<String> = infer
        .models()
        .iter()
        .map(|m| {
            let name = shown_name(&m.name, &m.sha256, who);
            let aliases = aliases_of(&m.name);
            if aliases.is_empty() {
                name.into_owned()
            } else {
                format!("{name} (also {})", aliases.join(", "))
            }
        })
        .collect();
    format!("{}; or a role: unified, tools, code", models.join(", "))
}

/// The aliases that name `canonical`.
pub(crate) fn aliases_of(canonical: &str) -> Vec<&'static str> {
    ALIASES.iter().filter(|(_, c)| c.eq_ignore_ascii_case(canonical)).map(|&(a, _)| a).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hub_names_only() {
        assert!(looks_like_hub_name("BAAI/bge-small-en-v1.5"));
        for n in ["/etc/x", "../x/y", "a/b/c", "x", "a/..", "./a"] {
            assert!(!looks_like_hub_name(n), "{n}");
        }
        assert_eq!(aliases_of("sentence-transformers/all-MiniLM-L6-v2").len(), 4);
        assert!(ALIASES.iter().all(|(a, _)| a.to_lowercase() == *a));
    }
}
