//! The request and answer shapes of the three kinds of embedding service:
//! OpenAI's `/embeddings`, Ollama's `/api/embed` and TEI's `/embed`. Pure
//! functions: bytes in, vectors or a message out.

use base64::Engine as _;
use serde::Deserialize;
use serde_json::json;
use vembed_models::Provider;

/// The path a provider's embeddings endpoint has below the base URL.
pub(super) fn endpoint(provider: Provider) -> &'static str {
    match provider {
        Provider::Openai => "/embeddings",
        Provider::Ollama => "/api/embed",
        Provider::Tei => "/embed",
    }
}

/// The JSON body of one call. `dimensions` is sent to OpenAI-shaped
/// services only (text-embedding-3 models shorten their vectors to it).
pub(super) fn request(
    provider: Provider,
    model: &str,
    dimensions: Option<u32>,
    texts: &[&str],
) -> Vec<u8> {
    let body = match provider {
        Provider::Openai => {
            let mut b = json!({"model": model, "input": texts, "encoding_format": "float"});
            if let Some(d) = dimensions {
                b["dimensions"] = json!(d);
            }
            b
        }
        Provider::Ollama => json!({"model": model, "input": texts, "truncate": true}),
        Provider::Tei => json!({"inputs": texts, "truncate": true, "normalize": true}),
    };
    serde_json::to_vec(&body).expect("a JSON value serializes")
}

#[derive(Deserialize)]
struct OpenAiAnswer {
    data: Vec<OpenAiRow>,
}

#[derive(Deserialize)]
struct OpenAiRow {
    index: usize,
    embedding: Floats,
}

/// A vector as floats, or as base64 of little-endian f32 (OpenAI's
/// `encoding_format: "base64"`, which some servers send regardless).
#[derive(Deserialize)]
#[serde(untagged)]
enum Floats {
    List(Vec<f32>),
    Base64(String),
}

impl Floats {
    fn into_vec(self) -> Result<Vec<f32>, String> {
        match self {
            Floats::List(v) => Ok(v),
            Floats::Base64(s) => {
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(s.as_bytes())
                    .map_err(|e| format!("an embedding is neither floats nor base64: {e}"))?;
                if bytes.len() % 4 != 0 {
                    return Err("a base64 embedding is not a whole number of f32".into());
                }
                Ok(bytes
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                    .collect())
            }
        }
    }
}

#[derive(Deserialize)]
struct OllamaAnswer {
    embeddings: Vec<Vec<f32>>,
}

/// The vectors of an answer, one row per text, checked: as many rows as
/// texts, each `dim` floats (or, with `dim` none, all the same length),
/// finite and not all zero. Returns the rows flat and the dimension.
pub(super) fn vectors(
    provider: Provider,
    body: &[u8],
    texts: usize,
    dim: Option<usize>,
) -> Result<(Vec<f32>, usize), String> {
    let bad_json = |e: serde_json::Error| {
        format!("the answer is not {} embeddings JSON ({e}): {}", provider.name(), excerpt(body))
    };
    let rows: Vec<Vec<f32>> = match provider {
        Provider::Openai => {
            let mut a: OpenAiAnswer = serde_json::from_slice(body).map_err(bad_json)?;
            a.data.sort_by_key(|r| r.index);
            if a.data.iter().enumerate().any(|(i, r)| r.index != i) {
                return Err("the answer's data indices are not 0..n".into());
            }
            a.data.into_iter().map(|r| r.embedding.into_vec()).collect::<Result<_, _>>()?
        }
        Provider::Ollama => {
            serde_json::from_slice::<OllamaAnswer>(body).map_err(bad_json)?.embeddings
        }
        Provider::Tei => serde_json::from_slice(body).map_err(bad_json)?,
    };
    if rows.len() != texts {
        return Err(format!("{} vectors came back for {texts} texts", rows.len()));
    }
    let dim = dim.or_else(|| rows.first().map(Vec::len)).unwrap_or(0);
    let mut flat = Vec::with_capacity(texts * dim);
    for (i, row) in rows.iter().enumerate() {
        if row.len() != dim || dim == 0 {
            return Err(format!(
                "vector {i} has {} floats; the model's dimension is {dim}",
                row.len()
            ));
        }
        if !row.iter().all(|x| x.is_finite()) {
            return Err(format!("vector {i} holds NaN or infinity"));
        }
        if row.iter().all(|&x| x == 0.0) {
            return Err(format!("vector {i} is all zeros"));
        }
        flat.extend_from_slice(row);
    }
    Ok((flat, dim))
}

/// What a failed call's body says: OpenAI's `error.message`, Ollama's and
/// TEI's `error`, or the start of the body.
pub(super) fn error_message(body: &[u8]) -> String {
    let said = serde_json::from_slice::<serde_json::Value>(body).ok().and_then(|v| {
        let e = v.get("error")?;
        e.get("message").and_then(|m| m.as_str()).or(e.as_str()).map(str::to_string)
    });
    said.unwrap_or_else(|| excerpt(body))
}

/// The first 300 bytes of a body, as text.
fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(300)]).trim().to_string();
    if body.len() > 300 { format!("{text}...") } else { text }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shape_reads_its_answer() {
        let (v, d) = vectors(
            Provider::Openai,
            br#"{"data":[{"index":1,"embedding":[0,1]},{"index":0,"embedding":[1,0]}]}"#,
            2,
            None,
        )
        .unwrap();
        assert_eq!((v, d), (vec![1.0, 0.0, 0.0, 1.0], 2));
        let b64 = base64::engine::general_purpose::STANDARD
            .encode([1f32, 2.0].iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>());
        let body = format!(r#"{{"data":[{{"index":0,"embedding":"{b64}"}}]}}"#);
        assert_eq!(vectors(Provider::Openai, body.as_bytes(), 1, Some(2)).unwrap().0, [1.0, 2.0]);
        let ollama = br#"{"model":"m","embeddings":[[0.5,0.5]]}"#;
        assert_eq!(vectors(Provider::Ollama, ollama, 1, Some(2)).unwrap().0, [0.5, 0.5]);
        assert_eq!(vectors(Provider::Tei, b"[[3,4]]", 1, None).unwrap().1, 2);
    }

    #[test]
    fn wrong_answers_are_refused() {
        let tei = |b: &[u8], n, d| vectors(Provider::Tei, b, n, d).unwrap_err();
        assert!(tei(b"[[1,0]]", 2, None).contains("1 vectors came back for 2 texts"));
        assert!(tei(b"[[1,0]]", 1, Some(3)).contains("dimension is 3"));
        assert!(tei(b"[[0,0]]", 1, None).contains("all zeros"));
        assert!(tei(b"[[1,0],[1]]", 2, None).contains("vector 1 has 1 floats"));
        assert!(tei(b"<html>", 1, None).contains("not tei embeddings JSON"));
        assert_eq!(error_message(br#"{"error":{"message":"bad key"}}"#), "bad key");
        assert_eq!(error_message(br#"{"error":"model not found"}"#), "model not found");
        assert_eq!(error_message(b"Bad Gateway"), "Bad Gateway");
    }

    #[test]
    fn requests_have_each_shape() {
        let v = |p, d| -> serde_json::Value {
            serde_json::from_slice(&request(p, "m", d, &["a", "b"])).unwrap()
        };
        assert_eq!(v(Provider::Openai, Some(256))["dimensions"], 256);
        assert!(v(Provider::Openai, None).get("dimensions").is_none());
        assert_eq!(v(Provider::Ollama, None)["input"][1], "b");
        assert_eq!(v(Provider::Tei, None)["inputs"][0], "a");
    }
}
