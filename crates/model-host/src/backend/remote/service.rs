//! One embedding service: its endpoint, API key and HTTP agent, one call
//! with its retries, and its counters for `vembed status`. A call that
//! fails on the way or gets 408, 429 or 5xx is retried with exponential
//! backoff and jitter; one that times out is not (it has had its time).
//! Every answer is checked (count, dimension, finite, not zero) before a
//! vector is used: a failure is [`BackendError::Upstream`], never a
//! made-up vector. The API key goes in the `Authorization` header only,
//! and is cut out of every message.

use std::io::Read;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use vembed_models::RemoteModel;
use vembed_protocol::UpstreamStatus;

use super::RemoteError;
use super::shape;
use crate::backend::{BackendError, Feed};

/// Largest answer body read, in bytes (64 texts × 4096 floats as JSON is
/// about 6 MB).
const MAX_ANSWER_BYTES: u64 = 256 << 20;
/// The first retry's delay; each next one doubles, up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// An embedding service and its counters.
pub struct Service {
    name: String,
    config: RemoteModel,
    /// The full URL of the embeddings endpoint (user info and query kept:
    /// some services take a key or an API version there).
    endpoint: String,
    /// The same without secrets, for messages.
    public_endpoint: String,
    key: Option<Secret>,
    agent: ureq::Agent,
    dim: usize,
    stats: CallStats,
}

/// An API key. Its `Debug` shows nothing of it.
struct Secret(String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

#[derive(Default)]
struct CallStats {
    calls: AtomicU64,
    texts: AtomicU64,
    errors: AtomicU64,
    retries: AtomicU64,
    in_flight: AtomicU64,
    latencies: crate::stats::Latencies,
    last_error: Mutex<Option<String>>,
}

impl Service {
    /// Sets up the remote model `name`: reads its API key, and, unless
    /// `dimensions` is declared, calls the service once to learn it.
    pub fn connect(name: &str, config: &RemoteModel) -> Result<Service, RemoteError> {
        let key_error = |message: String| RemoteError::ApiKey { model: name.into(), message };
        let key = match (&config.api_key_env, &config.api_key_file) {
            (Some(var), _) => match std::env::var(var) {
                Ok(k) if !k.trim().is_empty() => Some(Secret(k.trim().to_string())),
                _ => return Err(key_error(format!("api_key_env {var} is not set or empty"))),
            },
            (None, Some(path)) => Some(Secret(
                vembed_models::private_dir::read_secret(path)
                    .map_err(|why| key_error(format!("api_key_file {}: {why}", path.display())))?,
            )),
            (None, None) => None,
        };
        let (base, query) = config.url.trim().split_once('?').unwrap_or((config.url.trim(), ""));
        let path = shape::endpoint(config.provider);
        let base = base.trim_end_matches('/');
        let endpoint = if query.is_empty() {
            format!("{base}{path}")
        } else {
            format!("{base}{path}?{query}")
        };
        let timeout = Duration::from_millis(config.timeout_ms);
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(timeout.min(Duration::from_secs(10)))
            .timeout(timeout)
            .max_idle_connections_per_host(config.concurrency as usize)
            .user_agent(concat!("vembed/", env!("CARGO_PKG_VERSION")))
            .build();
        let mut backend = Service {
            name: name.to_string(),
            public_endpoint: format!("{}{path}", config.public_url()),
            endpoint,
            config: config.clone(),
            key,
            agent,
            dim: config.dimensions.unwrap_or(0) as usize,
            stats: CallStats::default(),
        };
        if backend.dim == 0 {
            let (_, dim) = backend
                .call(&["vembed dimension probe"])
                .map_err(|error| RemoteError::Discovery { model: name.into(), error })?;
            backend.dim = dim;
        }
        Ok(backend)
    }

    /// Floats per embedding.
    pub(super) fn dim(&self) -> usize {
        self.dim
    }

    /// How its calls are cut and how many run at once.
    pub(super) fn feed(&self) -> Feed {
        Feed {
            texts_per_call: self.config.max_texts_per_call as usize,
            concurrency: self.config.concurrency as usize,
        }
    }

    /// Its service and counters, for `vembed status`.
    pub(super) fn status(&self) -> UpstreamStatus {
        let s = &self.stats;
        let (p50, p99) = s.latencies.percentiles();
        UpstreamStatus {
            model: self.name.clone(),
            provider: self.config.provider.name().to_string(),
            url: self.config.public_url(),
            remote_model: self.config.model.clone(),
            dim: self.dim as u32,
            concurrency: self.config.concurrency,
            calls: s.calls.load(Ordering::Relaxed),
            texts: s.texts.load(Ordering::Relaxed),
            errors: s.errors.load(Ordering::Relaxed),
            retries: s.retries.load(Ordering::Relaxed),
            in_flight: s.in_flight.load(Ordering::Relaxed) as u32,
            latency_p50_us: p50,
            latency_p99_us: p99,
            last_error: s.last_error.lock().unwrap_or_else(|p| p.into_inner()).clone(),
        }
    }

    /// One call with its retries, all within `timeout_ms`: the vectors
    /// (flat) and the dimension.
    pub(super) fn call(&self, texts: &[&str]) -> Result<(Vec<f32>, usize), BackendError> {
        let body =
            shape::request(self.config.provider, &self.config.model, self.config.dimensions, texts);
        let started = Instant::now();
        let deadline = started + Duration::from_millis(self.config.timeout_ms);
        self.stats.in_flight.fetch_add(1, Ordering::Relaxed);
        let mut attempt = 0;
        let result = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.once(&body, texts.len(), left) {
                Ok(v) => break Ok(v),
                Err(Failure { error, retry: Some(after) }) if attempt < self.config.retries => {
                    let wait = after.unwrap_or_else(|| backoff(attempt + 1));
                    // A retry must have time left to run in.
                    if Instant::now() + wait >= deadline {
                        break Err(error);
                    }
                    attempt += 1;
                    self.stats.retries.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!("{}: retry {attempt} in {wait:?} after: {error}", self.name);
                    std::thread::sleep(wait);
                }
                Err(Failure { error, .. }) => break Err(error),
            }
        };
        self.stats.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.record(texts.len(), started.elapsed(), result.as_ref().err());
        result
    }

    /// One HTTP request, given `left` to finish.
    fn once(
        &self,
        body: &[u8],
        texts: usize,
        left: Duration,
    ) -> Result<(Vec<f32>, usize), Failure> {
        let mut req = self
            .agent
            .post(&self.endpoint)
            .set("Content-Type", "application/json")
            .timeout(left.max(Duration::from_millis(1)));
        if let Some(Secret(key)) = &self.key {
            req = req.set("Authorization", &format!("Bearer {key}"));
        }
        let read = |r: ureq::Response| -> Result<Vec<u8>, String> {
            let mut buf = Vec::new();
            r.into_reader()
                .take(MAX_ANSWER_BYTES)
                .read_to_end(&mut buf)
                .map_err(|e| format!("reading the answer: {e}"))?;
            Ok(buf)
        };
        let fail = |status, message: String, retry| Failure {
            error: BackendError::Upstream {
                status,
                message: format!("{}: {}", self.public_endpoint, self.redact(&message)),
            },
            retry,
        };
        match req.send_bytes(body) {
            Ok(r) => {
                let status = r.status();
                let bytes = read(r).map_err(|m| fail(Some(status), m, Some(None)))?;
                shape::vectors(self.config.provider, &bytes, texts, self.dim_known())
                    .map_err(|m| fail(Some(status), m, None))
            }
            Err(ureq::Error::Status(code, r)) => {
                let retry_after = r
                    .header("Retry-After")
                    .and_then(|s| s.trim().parse::<u64>().ok())
                    .map(|s| Duration::from_secs(s).min(MAX_BACKOFF));
                let said = read(r).map(|b| shape::error_message(&b)).unwrap_or_else(|e| e);
                let hint = match code {
                    401 | 403 => " (check the API key: api_key_env or api_key_file)",
                    404 => " (check url and model)",
                    _ => "",
                };
                let retry = matches!(code, 408 | 429 | 500..=599).then_some(retry_after);
                Err(fail(Some(code), format!("{said}{hint}"), retry))
            }
            Err(ureq::Error::Transport(t)) => {
                // A timed-out call is not tried again: it has had its time.
                let timed_out = t.kind() == ureq::ErrorKind::Io
                    && std::error::Error::source(&t)
                        .and_then(|s| s.downcast_ref::<std::io::Error>())
                        .is_some_and(|e| {
                            matches!(
                                e.kind(),
                                std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock
                            )
                        });
                let message = match t.message() {
                    Some(m) => format!("{}: {m}", t.kind()),
                    None => t.kind().to_string(),
                };
                let message = match std::error::Error::source(&t) {
                    Some(s) => format!("{message}: {s}"),
                    None => message,
                };
                Err(fail(None, message, (!timed_out).then_some(None)))
            }
        }
    }

    fn dim_known(&self) -> Option<usize> {
        (self.dim > 0).then_some(self.dim)
    }

    /// `text` with the API key cut out.
    fn redact(&self, text: &str) -> String {
        match &self.key {
            Some(Secret(k)) if k.len() >= 4 => text.replace(k.as_str(), "***"),
            _ => text.to_string(),
        }
    }

    fn record(&self, texts: usize, took: Duration, error: Option<&BackendError>) {
        let s = &self.stats;
        match error {
            None => {
                s.calls.fetch_add(1, Ordering::Relaxed);
                s.texts.fetch_add(texts as u64, Ordering::Relaxed);
            }
            Some(e) => {
                s.errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!("remote model {}: {e}", self.name);
                *s.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(e.to_string());
            }
        }
        s.latencies.record(took);
    }
}

/// A failed request, and whether to retry it (after the given delay, or
/// the backoff's when none).
struct Failure {
    error: BackendError,
    retry: Option<Option<Duration>>,
}

/// The delay before retry `attempt` (1-based): 100 ms doubling, capped,
/// with ±50% jitter so many clients do not retry in step.
fn backoff(attempt: u32) -> Duration {
    let base =
        FIRST_BACKOFF.saturating_mul(1 << attempt.saturating_sub(1).min(16)).min(MAX_BACKOFF);
    // Jitter from the clock's nanoseconds: no RNG needed for spreading retries.
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let factor = 0.5 + f64::from(nanos % 1000) / 1000.0;
    base.mul_f64(factor)
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_and_is_capped() {
        for attempt in 1..6 {
            let base = FIRST_BACKOFF * (1 << (attempt - 1));
            let d = backoff(attempt);
            assert!(d >= base / 2 && d <= base * 3 / 2, "{attempt}: {d:?}");
        }
        assert!(backoff(40) <= MAX_BACKOFF * 3 / 2);
    }

    /// A service on a loopback port that answers its connections, one
    /// request each, with `answers` (status, body) in turn.
    pub(in crate::backend::remote) fn scripted(answers: Vec<(u16, &'static str)>) -> String {
        use std::io::{BufRead, BufReader, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        std::thread::spawn(move || {
            for (status, body) in answers {
                let (stream, _) = listener.accept().unwrap();
                let mut reader = BufReader::new(stream);
                let mut length = 0;
                loop {
                    let mut line = String::new();
                    reader.read_line(&mut line).unwrap();
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        length = v.trim().parse().unwrap();
                    }
                    if line == "\r\n" {
                        break;
                    }
                }
                let mut request = vec![0; length];
                std::io::Read::read_exact(&mut reader, &mut request).unwrap();
                let mut stream = reader.into_inner();
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        url
    }

    pub(in crate::backend::remote) fn tei(url: String, retries: u32) -> RemoteModel {
        RemoteModel {
            retries,
            dimensions: Some(2),
            ..toml::from_str(&format!("provider = \"tei\"\nurl = \"{url}\"\n")).unwrap()
        }
    }

    #[test]
    fn failed_calls_are_retried_then_reported_with_the_status() {
        let url = scripted(vec![(503, r#"{"error":"busy"}"#), (500, "oops"), (200, "[[0.6,0.8]]")]);
        let b = Service::connect("t", &tei(url, 2)).unwrap();
        assert_eq!(b.call(&["x"]).unwrap().0, [0.6, 0.8]);
        let s = b.status();
        assert_eq!((s.calls, s.retries, s.errors), (1, 2, 0));

        let url = scripted(vec![(503, r#"{"error":"busy"}"#), (502, "bad gateway")]);
        let b = Service::connect("t", &tei(url.clone(), 1)).unwrap();
        match b.call(&["x"]).unwrap_err() {
            BackendError::Upstream { status: Some(502), message } => {
                assert!(
                    message.contains(&format!("{url}/embed")) && message.contains("bad gateway")
                );
            }
            other => panic!("{other:?}"),
        }
        // Not retried: a refusal of the request itself, and a wrong answer.
        let url = scripted(vec![(401, r#"{"error":"no key"}"#), (200, "[[0,0]]")]);
        let b = Service::connect("t", &tei(url, 3)).unwrap();
        let e = b.call(&["x"]).unwrap_err().to_string();
        assert!(e.contains("HTTP 401") && e.contains("no key") && e.contains("API key"), "{e}");
        let e = b.call(&["x"]).unwrap_err().to_string();
        assert!(e.contains("all zeros"), "{e}");
        assert_eq!(b.status().retries, 0);

        // Retries stop when the call's time is up: 300 ms leaves room for
        // two backoffs at most (100 ms, then 200 ms, each ±50%).
        let url = scripted(vec![(503, "busy"); 6]);
        let b = Service::connect("t", &RemoteModel { timeout_ms: 300, ..tei(url, 5) }).unwrap();
        let e = b.call(&["x"]).unwrap_err();
        assert!(matches!(e, BackendError::Upstream { status: Some(503), .. }), "{e}");
        assert!(b.status().retries <= 2, "{:?}", b.status());
    }

    #[test]
    fn keys_never_show() {
        let s = Secret("sk-123456".into());
        assert_eq!(format!("{s:?}"), "Secret(***)");
    }
}
