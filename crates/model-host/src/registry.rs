//! The loaded models: one instance per distinct model, shared by every role
//! that names it. A request may name a model the host did not start with; it
//! is then loaded on the spot (if it is on disk) and kept.

use std::sync::{Arc, Mutex, RwLock};

use vembed_models::Settings;
use vembed_protocol::{ModelInfo, ModelRef, Role};

use crate::backend::Engine;
use crate::model::{Embedder, ModelError};
use crate::pipeline::read_pipeline;
use crate::precision::Precision;

/// Most models one host keeps loaded (each is ~100 MB or more).
pub const MAX_MODELS: usize = 8;

/// The models a host serves.
pub struct Registry {
    models: RwLock<Vec<Arc<Embedder>>>,
    roles: Vec<(Role, usize)>,
    /// Serializes loads, so two requests for a new model load it once.
    loading: Mutex<()>,
    engine: Engine,
    precision: Precision,
    /// The remote models settings define, by name.
    remote: std::collections::BTreeMap<String, vembed_models::RemoteModel>,
}

impl Registry {
    /// Loads the models the settings name for each role, plus `extra` names.
    /// Names that resolve to the same model load once.
    pub fn load(settings: &Settings, extra: &[String]) -> Result<Registry, ModelError> {
        let registry = Registry {
            models: RwLock::new(Vec::new()),
            roles: Vec::new(),
            loading: Mutex::new(()),
            engine: settings.engine.parse().map_err(ModelError::Store)?,
            precision: settings.weights.parse().map_err(ModelError::Store)?,
            remote: settings.remote.clone(),
        };
        let mut roles = Vec::new();
        for (role, name) in [
            (Role::Unified, settings.unified_embedding_model.as_str()),
            (Role::Tools, settings.tools_model()),
            (Role::Code, settings.code_model()),
        ] {
            roles.push((role, registry.load_named(name)?));
        }
        for name in extra {
            registry.load_named(name)?;
        }
        Ok(Registry { roles, ..registry })
    }

    /// The model at `index`.
    pub fn get(&self, index: usize) -> Arc<Embedder> {
        self.read()[index].clone()
    }

    /// Every loaded model.
    pub fn all(&self) -> Vec<Arc<Embedder>> {
        self.read().clone()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Vec<Arc<Embedder>>> {
        self.models.read().unwrap_or_else(|p| p.into_inner())
    }

    /// The index of a loaded model a request refers to.
    pub fn lookup(&self, model: &ModelRef) -> Option<usize> {
        match model {
            ModelRef::Role(role) => self.roles.iter().find(|(r, _)| r == role).map(|&(_, i)| i),
            ModelRef::Name(name) => {
                let canonical = vembed_models::canonical_name(name);
                self.read().iter().position(|m| {
                    m.name == *name
                        || m.name == canonical
                        || m.path.to_str() == Some(name.trim_end_matches('/'))
                        || m.sha256 == *name
                })
            }
        }
    }

    /// The index of the model a request refers to, loading it from disk if
    /// it is not loaded yet.
    pub fn lookup_or_load(&self, model: &ModelRef) -> Result<usize, ModelError> {
        if let Some(i) = self.lookup(model) {
            return Ok(i);
        }
        match model {
            ModelRef::Name(name) => self.load_named(name),
            ModelRef::Role(role) => {
                Err(ModelError::Store(format!("no model is configured for {}", role.setting())))
            }
        }
    }

    /// Loads a model by name or path, unless the same model (the same
    /// folder, or the same weights with the same pipeline) is loaded.
    fn load_named(&self, name: &str) -> Result<usize, ModelError> {
        let _one_at_a_time = self.loading.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(config) = self.remote.get(name) {
            return self.load_remote(name, config);
        }
        let dir = vembed_models::resolve(name).map_err(|e| ModelError::Store(e.to_string()))?;
        let sha = dir.sha256().map_err(|e| ModelError::Store(e.to_string()))?;
        let pipeline = read_pipeline(&dir.path).ok();
        if let Some(i) = self.read().iter().position(|m| {
            m.path == dir.path
                || (m.sha256 == sha && m.pipeline().is_some() && m.pipeline() == pipeline.as_ref())
        }) {
            return Ok(i);
        }
        if self.read().len() >= MAX_MODELS {
            return Err(ModelError::Store(format!(
                "{MAX_MODELS} models are loaded already; run `vembed stop` to start afresh"
            )));
        }
        let started = std::time::Instant::now();
        let e = Embedder::load(&dir.name, &dir.path, sha, self.engine, self.precision)?;
        tracing::info!(
            "loaded {} from {} in {:?} ({:?} engine, {} weights, {} kernels{}, dim {}, max_seq_length {})",
            e.name,
            e.path.display(),
            started.elapsed(),
            e.engine(),
            e.precision.name(),
            crate::bert::simd::level().name(),
            match e.precision {
                crate::Precision::Int8Dynamic => {
                    format!(", {} integer products", crate::bert::qdyn::kernel().name())
                }
                _ => String::new(),
            },
            e.dim(),
            e.max_seq_length()
        );
        let mut models = self.models.write().unwrap_or_else(|p| p.into_inner());
        models.push(Arc::new(e));
        Ok(models.len() - 1)
    }

    /// Sets up a remote model, unless it is set up already.
    fn load_remote(
        &self,
        name: &str,
        config: &vembed_models::RemoteModel,
    ) -> Result<usize, ModelError> {
        if let Some(i) = self.read().iter().position(|m| m.name == name) {
            return Ok(i);
        }
        if self.read().len() >= MAX_MODELS {
            return Err(ModelError::Store(format!("{MAX_MODELS} models are loaded already")));
        }
        let started = std::time::Instant::now();
        let e = Embedder::remote(name, config)?;
        tracing::info!(
            "remote model {name}: {} service at {} (model {:?}), dim {} ({}), max input {} tokens ({}), {} texts per call, {} calls in flight, set up in {:?}",
            config.provider.name(),
            config.public_url(),
            config.model,
            e.dim(),
            if config.dimensions.is_some() { "declared" } else { "discovered" },
            e.max_seq_length(),
            if e.counts_exactly() { "counted exactly" } else { "estimated at 4 bytes per token" },
            config.max_texts_per_call,
            config.concurrency,
            started.elapsed()
        );
        let mut models = self.models.write().unwrap_or_else(|p| p.into_inner());
        models.push(Arc::new(e));
        Ok(models.len() - 1)
    }

    /// The remote models' services and counters.
    pub fn upstreams(&self) -> Vec<vembed_protocol::UpstreamStatus> {
        self.read().iter().filter_map(|m| m.upstream()).collect()
    }

    /// What the handshake and status report for each instance.
    pub fn infos(&self) -> Vec<ModelInfo> {
        self.read()
            .iter()
            .enumerate()
            .map(|(i, m)| ModelInfo {
                name: m.name.clone(),
                sha256: m.sha256.clone(),
                dim: m.dim() as u32,
                max_seq_length: m.max_seq_length() as u32,
                roles: self.roles.iter().filter(|(_, j)| *j == i).map(|(r, _)| *r).collect(),
                path: m.path.display().to_string(),
                identity: m.identity.clone(),
            })
            .collect()
    }
}
