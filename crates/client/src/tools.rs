//! Semantic tool selection: rank a tool set against a request by embedding
//! similarity, on the host's tool-selection model (`embedding_model`, the
//! unified model by default).
//!
//! A tool set is a JSON list of tools:
//!
//! ```json
//! [{"name": "read_file",
//!   "description": "Read the contents of a file.",
//!   "parameters": ["path", "start_line"],
//!   "use_cases": ["show me what is in a source file", "open a config file"]}]
//! ```
//!
//! `parameters` and `use_cases` are optional; `use_cases` may also be one
//! string. The tools' vectors come from the host's embedding cache
//! ([`Client::embed_cached`]), so a process that has just started pays only
//! for its query's embedding once any process has embedded the tool set.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::{Client, ModelRef, Role};

/// Most tools in one tool set.
pub const MAX_TOOLS: usize = 1000;

/// A tool set that cannot be used, and why.
#[derive(Debug, thiserror::Error)]
pub enum ToolsError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The error.
        source: std::io::Error,
    },
    /// Not a JSON list of tools.
    #[error("invalid tool set JSON at line {line}, column {column}: {message}")]
    Json {
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// What serde_json says.
        message: String,
    },
    /// Two tools share a name.
    #[error("duplicate tool name {0:?}")]
    Duplicate(String),
    /// A tool without a name.
    #[error("tool {0} has an empty name")]
    EmptyName(usize),
    /// A tool without a description.
    #[error("tool {0:?} has an empty description")]
    EmptyDescription(String),
    /// No tools at all.
    #[error("the tool set is empty")]
    Empty,
    /// Too many tools.
    #[error("{0} tools; a tool set holds at most {MAX_TOOLS}")]
    TooMany(usize),
}

/// One tool.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tool {
    /// Its name, as the LLM calls it.
    pub name: String,
    /// What it does.
    pub description: String,
    /// Its parameters' names.
    #[serde(default)]
    pub parameters: Vec<String>,
    /// Requests it serves, in the words a user would use.
    #[serde(default, deserialize_with = "one_or_many")]
    pub use_cases: Vec<String>,
}

fn one_or_many<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match Option::<OneOrMany>::deserialize(d)? {
        None => Vec::new(),
        Some(OneOrMany::One(s)) => vec![s],
        Some(OneOrMany::Many(v)) => v,
    })
}

impl Tool {
    /// The text embedded for the tool, as Victor builds it:
    /// `name. description. Parameters: a, b. Use for: x; y.`
    pub fn text(&self) -> String {
        self.text_with(&self.name)
    }

    /// [`Tool::text`] with the name and parameters split into words
    /// (`read_file` → `read file`, `startLine` → `start line`).
    pub fn split_text(&self) -> String {
        let mut t = self.clone();
        t.parameters = t.parameters.iter().map(|p| split_identifier(p)).collect();
        t.text_with(&split_identifier(&self.name))
    }

    fn text_with(&self, name: &str) -> String {
        let mut s = format!("{name}. {}", self.description.trim().trim_end_matches('.'));
        if !self.parameters.is_empty() {
            s.push_str(&format!(". Parameters: {}", self.parameters.join(", ")));
        }
        if !self.use_cases.is_empty() {
            s.push_str(&format!(". Use for: {}", self.use_cases.join("; ")));
        }
        s.push('.');
        s
    }
}

/// `read_file` → `read file`, `getHTTPResponse` → `get http response`.
pub fn split_identifier(id: &str) -> String {
    let mut words: Vec<String> = Vec::new();
    let mut cur = String::new();
    let chars: Vec<char> = id.chars().collect();
    for (i, &c) in chars.iter().enumerate() {
        if !c.is_alphanumeric() {
            if !cur.is_empty() {
                words.push(std::mem::take(&mut cur));
            }
            continue;
        }
        let boundary = c.is_uppercase()
            && !cur.is_empty()
            && (chars[i - 1].is_lowercase() || chars.get(i + 1).is_some_and(|n| n.is_lowercase()));
        if boundary {
            words.push(std::mem::take(&mut cur));
        }
        cur.extend(c.to_lowercase());
    }
    if !cur.is_empty() {
        words.push(cur);
    }
    words.join(" ")
}

/// A validated tool set.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolSet {
    /// The tools, in file order.
    pub tools: Vec<Tool>,
}

impl ToolSet {
    /// Parses and checks a tool set.
    pub fn from_json(text: &str) -> Result<ToolSet, ToolsError> {
        let tools: Vec<Tool> = serde_json::from_str(text).map_err(|e| ToolsError::Json {
            line: e.line(),
            column: e.column(),
            message: e.to_string(),
        })?;
        ToolSet::new(tools)
    }

    /// Reads and checks a tool set file.
    pub fn load(path: &Path) -> Result<ToolSet, ToolsError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| ToolsError::Io { path: path.display().to_string(), source })?;
        ToolSet::from_json(&text)
    }

    /// Checks tools: names non-empty and unique, descriptions non-empty,
    /// between 1 and [`MAX_TOOLS`] of them.
    pub fn new(tools: Vec<Tool>) -> Result<ToolSet, ToolsError> {
        if tools.is_empty() {
            return Err(ToolsError::Empty);
        }
        if tools.len() > MAX_TOOLS {
            return Err(ToolsError::TooMany(tools.len()));
        }
        let mut seen = HashSet::new();
        for (i, t) in tools.iter().enumerate() {
            if t.name.trim().is_empty() {
                return Err(ToolsError::EmptyName(i));
            }
            if !seen.insert(t.name.as_str()) {
                return Err(ToolsError::Duplicate(t.name.clone()));
            }
            if t.description.trim().is_empty() {
                return Err(ToolsError::EmptyDescription(t.name.clone()));
            }
        }
        Ok(ToolSet { tools })
    }
}

/// How tools are scored against a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Method {
    /// Victor's: cosine with one text per tool ([`Tool::text`]).
    Plain,
    /// Cosine with one text per tool, identifiers split into words.
    Split,
    /// The best cosine over the tool's text (split) and each use case alone.
    MaxSim,
    /// `max-sim` plus a lexical score: the idf-weighted share of the
    /// request's words found in the tool's text.
    Hybrid,
}

/// What to return when no tool reaches the threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Fallback {
    /// Every tool, ranked (Victor's choice: let the LLM decide).
    All,
    /// The top k, whatever their scores.
    TopK,
}

/// Selection options. The defaults follow Victor: k 5, threshold 0.15,
/// fallback all.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SelectOptions {
    /// Most tools returned (when some pass the threshold).
    pub k: usize,
    /// Least score kept.
    pub threshold: f32,
    /// When none passes.
    pub fallback: Fallback,
}

impl Default for SelectOptions {
    fn default() -> Self {
        SelectOptions { k: 5, threshold: 0.15, fallback: Fallback::All }
    }
}

/// A selected tool.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Selection {
    /// The tool's name.
    pub name: String,
    /// Its score (cosine for the plain methods).
    pub score: f32,
}

/// Weight of the lexical score in [`Method::Hybrid`].
pub const LEXICAL_WEIGHT: f32 = 0.3;

/// A tool set with its vectors, ready to rank requests.
pub struct Selector {
    names: Vec<String>,
    method: Method,
    dim: usize,
    /// Row-major vectors; `owner[i]` is the tool of row i.
    vectors: Vec<f32>,
    owner: Vec<usize>,
    /// Lexical terms of each tool, and every term's idf.
    terms: Vec<HashSet<String>>,
    idf: HashMap<String, f32>,
}

impl Selector {
    /// Embeds the tool set (from the host's cache where it can) with the
    /// tool-selection model.
    pub fn new(client: &mut Client, set: &ToolSet, method: Method) -> crate::Result<Selector> {
        let mut texts: Vec<String> = Vec::new();
        let mut owner = Vec::new();
        for (i, t) in set.tools.iter().enumerate() {
            match method {
                Method::Plain => texts.push(t.text()),
                Method::Split => texts.push(t.split_text()),
                Method::MaxSim | Method::Hybrid => {
                    texts.push(t.split_text());
                    owner.push(i);
                    texts.extend(t.use_cases.iter().cloned());
                    owner.extend(std::iter::repeat_n(i, t.use_cases.len()));
                    continue;
                }
            }
            owner.push(i);
        }
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let e = client.embed_cached(&ModelRef::Role(Role::Tools), &refs)?;
        let terms: Vec<HashSet<String>> =
            set.tools.iter().map(|t| lexical_terms(&t.split_text())).collect();
        let mut df: HashMap<String, usize> = HashMap::new();
        for ts in &terms {
            for t in ts {
                *df.entry(t.clone()).or_default() += 1;
            }
        }
        let n = set.tools.len() as f32;
        let idf = df.into_iter().map(|(t, d)| (t, (1.0 + n / d as f32).ln())).collect();
        Ok(Selector {
            names: set.tools.iter().map(|t| t.name.clone()).collect(),
            method,
            dim: e.dim as usize,
            vectors: e.data,
            owner,
            terms,
            idf,
        })
    }

    /// The tool names, in tool set order.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// Every tool's score for a request, in tool set order. `query_vector`
    /// is the request's (normalized) embedding from the same model.
    pub fn scores(&self, query: &str, query_vector: &[f32]) -> Vec<f32> {
        let mut best = vec![f32::NEG_INFINITY; self.names.len()];
        for (row, &tool) in self.vectors.chunks_exact(self.dim.max(1)).zip(&self.owner) {
            best[tool] = best[tool].max(dot(row, query_vector));
        }
        if self.method == Method::Hybrid {
            let q = lexical_terms(query);
            let total: f32 = q.iter().map(|t| self.idf.get(t).copied().unwrap_or(0.0)).sum();
            if total > 0.0 {
                for (b, terms) in best.iter_mut().zip(&self.terms) {
                    let hit: f32 = q
                        .iter()
                        .filter(|t| terms.contains(*t))
                        .map(|t| self.idf.get(t).copied().unwrap_or(0.0))
                        .sum();
                    *b += LEXICAL_WEIGHT * hit / total;
                }
            }
        }
        best
    }

    /// Ranks tools for a request whose embedding is already known.
    pub fn rank(&self, query: &str, query_vector: &[f32], opts: &SelectOptions) -> Vec<Selection> {
        let scores = self.scores(query, query_vector);
        let mut order: Vec<usize> = (0..scores.len()).collect();
        order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b)));
        let pick = |i: &usize| Selection { name: self.names[*i].clone(), score: scores[*i] };
        let passing: Vec<Selection> =
            order.iter().take(opts.k).filter(|&&i| scores[i] >= opts.threshold).map(pick).collect();
        if !passing.is_empty() {
            return passing;
        }
        match opts.fallback {
            Fallback::All => order.iter().map(pick).collect(),
            Fallback::TopK => order.iter().take(opts.k).map(pick).collect(),
        }
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

/// A dot product in 16 independent lanes, which the compiler vectorizes
/// (a plain `sum()` of products is one serial chain of additions).
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 16];
    let (ca, cb) = (a.chunks_exact(16), b.chunks_exact(16));
    let tail: f32 = ca.remainder().iter().zip(cb.remainder()).map(|(x, y)| x * y).sum();
    for (x, y) in ca.zip(cb) {
        for i in 0..16 {
            acc[i] += x[i] * y[i];
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// Lower-case word stems of a text, without stop words: the lexical score's
/// terms.
fn lexical_terms(text: &str) -> HashSet<String> {
    const STOP: &[&str] = &[
        "a", "an", "the", "and", "or", "of", "to", "in", "on", "for", "with", "by", "is", "are",
        "be", "it", "this", "that", "these", "my", "me", "i", "we", "our", "what", "which", "how",
        "do", "does", "did", "from", "at", "as", "all", "any", "its", "use", "can", "you", "show",
        "there", "here", "where", "who", "when", "whose", "into", "up", "out", "so", "if", "not",
    ];
    split_identifier(text)
        .split_whitespace()
        .filter(|w| w.len() > 1 && !STOP.contains(w))
        .map(stem)
        .collect()
}

/// A crude English stemmer: enough to match "tests"/"test", "running"/"run".
fn stem(w: &str) -> String {
    for suffix in ["ing", "ies", "es", "ed", "s"] {
        if let Some(s) = w.strip_suffix(suffix)
            && s.len() >= 3
        {
            return s.to_string();
        }
    }
    w.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_split() {
        assert_eq!(split_identifier("read_file"), "read file");
        assert_eq!(split_identifier("getHTTPResponse"), "get http response");
        assert_eq!(split_identifier("git-diff"), "git diff");
    }

    #[test]
    fn text_follows_victor() {
        let t = Tool {
            name: "read_file".into(),
            description: "Read a file.".into(),
            parameters: vec!["path".into(), "start_line".into()],
            use_cases: vec!["open a file".into()],
        };
        assert_eq!(
            t.text(),
            "read_file. Read a file. Parameters: path, start_line. Use for: open a file."
        );
        assert_eq!(
            t.split_text(),
            "read file. Read a file. Parameters: path, start line. Use for: open a file."
        );
    }

    #[test]
    fn bad_tool_sets_say_why() {
        let err = |s: &str| ToolSet::from_json(s).unwrap_err().to_string();
        assert!(err("[{\"name\": \"a\",").contains("invalid tool set JSON at line 1"));
        assert!(err("{}").contains("invalid tool set JSON"));
        let two = r#"[{"name":"a","description":"x"},{"name":"a","description":"y"}]"#;
        assert_eq!(err(two), "duplicate tool name \"a\"");
        assert_eq!(
            err(r#"[{"name":"a","description":"  "}]"#),
            "tool \"a\" has an empty description"
        );
        assert_eq!(err("[]"), "the tool set is empty");
        let many: Vec<serde_json::Value> = (0..10_000)
            .map(|i| serde_json::json!({"name": format!("t{i}"), "description": "d"}))
            .collect();
        assert_eq!(
            err(&serde_json::to_string(&many).unwrap()),
            "10000 tools; a tool set holds at most 1000"
        );
        let one =
            ToolSet::from_json(r#"[{"name":"a","description":"x","use_cases":"y"}]"#).unwrap();
        assert_eq!(one.tools[0].use_cases, ["y"]);
    }
}
