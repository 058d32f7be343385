//! The loaded models: one instance per distinct model, shared by every role
//! that names it.

use std::sync::Arc;

use vembed_models::Settings;
use vembed_protocol::{ModelInfo, ModelRef, Role};

use crate::model::{Embedder, ModelError};

/// The models a host serves.
pub struct Registry {
    /// One entry per loaded instance.
    pub models: Vec<Arc<Embedder>>,
    roles: Vec<(Role, usize)>,
}

impl Registry {
    /// Loads the models the settings name for each role, plus `extra` names.
    /// Names that resolve to the same model load once.
    pub fn load(settings: &Settings, extra: &[String]) -> Result<Registry, ModelError> {
        let mut wanted: Vec<(Option<Role>, String)> = vec![
            (Some(Role::Unified), settings.unified_embedding_model.clone()),
            (Some(Role::Tools), settings.tools_model().to_string()),
            (Some(Role::Code), settings.code_model().to_string()),
        ];
        wanted.extend(extra.iter().map(|n| (None, n.clone())));
        let mut models: Vec<Arc<Embedder>> = Vec::new();
        let mut roles = Vec::new();
        for (role, name) in wanted {
            let dir =
                vembed_models::resolve(&name).map_err(|e| ModelError::Store(e.to_string()))?;
            let sha = dir.sha256().map_err(|e| ModelError::Store(e.to_string()))?;
            // One instance per model folder; two folders with the same weights and
            // the same pipeline (a copy, or an HF snapshot and its import) share one too.
            let pipeline = || crate::model::read_pipeline(&dir.path).ok();
            let index = match models.iter().position(|m| {
                m.path == dir.path || (m.sha256 == sha && Some(m.pipeline()) == pipeline().as_ref())
            }) {
                Some(i) => i,
                None => {
                    let started = std::time::Instant::now();
                    let e = Embedder::load(&dir.name, &dir.path, sha)?;
                    tracing::info!(
                        "loaded {} from {} in {:?} (dim {}, max_seq_length {})",
                        e.name,
                        e.path.display(),
                        started.elapsed(),
                        e.dim(),
                        e.max_seq_length()
                    );
                    models.push(Arc::new(e));
                    models.len() - 1
                }
            };
            if let Some(role) = role {
                roles.push((role, index));
            }
        }
        Ok(Registry { models, roles })
    }

    /// The model index a request refers to.
    pub fn lookup(&self, model: &ModelRef) -> Option<usize> {
        match model {
            ModelRef::Role(role) => self.roles.iter().find(|(r, _)| r == role).map(|&(_, i)| i),
            ModelRef::Name(name) => {
                let canonical = vembed_models::canonical_name(name);
                self.models.iter().position(|m| {
                    m.name == *name
                        || m.name == canonical
                        || m.path.to_str() == Some(name.trim_end_matches('/'))
                        || m.sha256 == *name
                })
            }
        }
    }

    /// What the handshake and status report for each instance.
    pub fn infos(&self) -> Vec<ModelInfo> {
        self.models
            .iter()
            .enumerate()
            .map(|(i, m)| ModelInfo {
                name: m.name.clone(),
                sha256: m.sha256.clone(),
                dim: m.dim() as u32,
                max_seq_length: m.max_seq_length() as u32,
                roles: self.roles.iter().filter(|(_, j)| *j == i).map(|(r, _)| *r).collect(),
                path: m.path.display().to_string(),
            })
            .collect()
    }
}
