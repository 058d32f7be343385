//! Semantic tool selection: rank a tool set against a request by embedding
//! similarity, on the host's tool-selection model (`embedding_model`, the
//! unified model by default).
//!
//! The scoring is [`vembed_tools`], the one implementation every client
//! reaches. [`Client::select_tools`] runs it in the host (the `SelectTools`
//! request, which is what `vembed tools select` and the Python package
//! send); [`Selector`] runs the same code in this process, for evaluating
//! methods on many requests. Either way the tools' vectors come from the
//! host's embedding cache, so a process that has just started pays only for
//! its query's embedding once any process has embedded the tool set.

pub use vembed_tools::{
    Fallback, MAX_TOOLS, METHODS, Method, Ranker, SelectOptions, TOOL_TERM_SHARE, ToolPick,
    ToolSet, ToolSpec as Tool, ToolsError, method_name, parse_fallback, parse_method,
    split_identifier, texts_to_embed,
};

use vembed_protocol::{SelectToolsRequest, ToolSelections};

use crate::{Client, ModelRef, Role};

/// A selected tool.
pub type Selection = ToolPick;

/// A tool set with its vectors, ranked in this process.
pub struct Selector {
    ranker: Ranker,
}

impl Selector {
    /// Embeds the tool set (from the host's cache where it can) with the
    /// tool-selection model.
    pub fn new(client: &mut Client, set: &ToolSet, method: Method) -> crate::Result<Selector> {
        let (texts, owner) = texts_to_embed(&set.tools, method);
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let e = client.embed_cached(&ModelRef::Role(Role::Tools), &refs)?;
        Ok(Selector { ranker: Ranker::new(&set.tools, method, owner, e.dim as usize, e.data) })
    }

    /// The tool names, in tool set order.
    pub fn names(&self) -> &[String] {
        self.ranker.names()
    }

    /// Every tool's score for a request, in tool set order.
    pub fn scores(&self, query: &str, query_vector: &[f32]) -> Vec<f32> {
        self.ranker.scores(query, query_vector)
    }

    /// Ranks tools for a request whose embedding is already known.
    pub fn rank(&self, query: &str, query_vector: &[f32], opts: &SelectOptions) -> Vec<Selection> {
        self.ranker.rank(query, query_vector, opts)
    }

    /// Embeds a request (one query embedding from the host) and ranks tools.
    pub fn select(
        &self,
        client: &mut Client,
        query: &str,
        opts: &SelectOptions,
    ) -> crate::Result<Vec<Selection>> {
        let e = client.embed_with(&ModelRef::Role(Role::Tools), &[query])?;
        Ok(self.rank(query, &e.data, opts))
    }
}

impl Client {
    /// Ranks `set` against each of `queries` in the host, on the
    /// tool-selection model: one selection per query, in order. The host
    /// keeps the set's vectors, so the next call with the same set costs the
    /// queries' embeddings only.
    pub fn select_tools(
        &mut self,
        set: &ToolSet,
        method: Method,
        queries: &[&str],
        opts: &SelectOptions,
    ) -> crate::Result<ToolSelections> {
        self.select_tools_request(SelectToolsRequest {
            model: ModelRef::Role(Role::Tools),
            tools: set.tools.clone(),
            method,
            queries: queries.iter().map(|q| q.to_string()).collect(),
            k: opts.k.min(u32::MAX as usize) as u32,
            threshold: opts.threshold,
            fallback: opts.fallback,
        })
    }
}
