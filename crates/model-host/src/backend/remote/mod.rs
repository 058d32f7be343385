//! A remote model: an embedding service in the OpenAI, Ollama or TEI shape
//! ([`vembed_models::RemoteModel`]) as a [`Backend`] that reads texts and
//! runs its own calls: its [`Service`](service) makes each call (retries,
//! checks, counters), its [`lanes`] send a job's calls on the model's own
//! threads, so a slow service never holds up the batcher that runs local
//! models.

mod lanes;
mod service;
mod shape;

use std::sync::{Arc, OnceLock};

use vembed_models::RemoteModel;
use vembed_protocol::UpstreamStatus;

use super::{Backend, BackendError, Batch, Engine, Feed, Runner, Sink};
use lanes::Lanes;
use service::Service;

/// Why a remote model could not be set up.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum RemoteError {
    /// The API key could not be read.
    #[error("remote model {model}: {message}")]
    ApiKey {
        /// The model's name in settings.
        model: String,
        /// What is wrong (never the key).
        message: String,
    },
    /// Its dimension is not declared and the service could not tell it.
    #[error(
        "remote model {model}: cannot discover its dimension ({error}); declare `dimensions` \
         in [remote.{model}] to start without reaching the service"
    )]
    Discovery {
        /// The model's name in settings.
        model: String,
        /// The failed call (in the message, so not also a `source()`).
        error: BackendError,
    },
}

/// A remote model's service and, from its first job on, its lanes.
pub struct RemoteBackend {
    service: Arc<Service>,
    name: String,
    lanes: OnceLock<Lanes>,
}

impl RemoteBackend {
    /// Sets up the remote model `name`: reads its API key, and, unless
    /// `dimensions` is declared, calls the service once to learn it.
    pub fn connect(name: &str, config: &RemoteModel) -> Result<RemoteBackend, RemoteError> {
        let service = Arc::new(Service::connect(name, config)?);
        Ok(RemoteBackend { service, name: name.to_string(), lanes: OnceLock::new() })
    }
}

impl Backend for RemoteBackend {
    /// One call of the batch's texts (with its retries), on the calling thread.
    fn embed(&self, batch: Batch<'_>) -> Result<Vec<f32>, BackendError> {
        if batch.texts.is_empty() {
            return Ok(Vec::new());
        }
        self.service.call(batch.texts).map(|(v, _)| v)
    }

    fn dim(&self) -> usize {
        self.service.dim()
    }

    fn pads(&self) -> bool {
        false
    }

    fn engine(&self) -> Engine {
        Engine::Remote
    }

    fn runner(&self) -> Option<&dyn Runner> {
        Some(self)
    }

    fn upstream(&self) -> Option<UpstreamStatus> {
        Some(self.service.status())
    }
}

impl Runner for RemoteBackend {
    fn run(&self, texts: Vec<String>, sink: Box<dyn Sink>) {
        self.lanes.get_or_init(|| Lanes::start(&self.name, self.service.clone())).run(texts, sink);
    }

    fn feed(&self) -> Feed {
        self.service.feed()
    }
}

/// The identity of a remote model: provider, URL, model and dimension,
/// hashed as a local model's is (32 hex digits).
pub fn identity(config: &RemoteModel, dim: usize) -> String {
    use sha2::Digest;
    let key =
        format!("remote|{}|{}|{}|{dim}", config.provider.name(), config.public_url(), config.model);
    let digest = sha2::Sha256::digest(key.as_bytes());
    digest.iter().take(16).map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_is_provider_url_model_and_dim() {
        let m: RemoteModel = toml::from_str(
            "provider = \"openai\"\nurl = \"http://k:secret@h/v1\"\nmodel = \"m\"\n",
        )
        .unwrap();
        let a = identity(&m, 384);
        assert_eq!(a.len(), 32);
        assert_ne!(a, identity(&m, 256));
        let same_without_userinfo = RemoteModel { url: "http://h/v1/".into(), ..m.clone() };
        assert_eq!(a, identity(&same_without_userinfo, 384));
        assert_ne!(a, identity(&RemoteModel { model: "n".into(), ..m }, 384));
    }
}
