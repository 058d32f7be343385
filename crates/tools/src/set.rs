//! Tool sets: parsing and the checks every tool set passes.

use std::collections::HashSet;
use std::path::Path;

use serde::Deserialize;

use crate::ToolSpec;

/// Most tools in one tool set.
pub const MAX_TOOLS: usize = 1000;

/// A tool set that cannot be used, and why.
#[derive(Debug, thiserror::Error)]
pub enum ToolsError {
    /// The file could not be read (the reason is the source).
    #[error("cannot read tool set {path}")]
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

/// A tool in JSON: `parameters` and `use_cases` optional, `use_cases` one
/// string or a list.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonTool {
    name: String,
    description: String,
    #[serde(default)]
    parameters: Vec<String>,
    #[serde(default, deserialize_with = "one_or_many")]
    use_cases: Vec<String>,
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

/// A validated tool set.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolSet {
    /// The tools, in file order.
    pub tools: Vec<ToolSpec>,
}

impl ToolSet {
    /// Parses and checks a tool set.
    pub fn from_json(text: &str) -> Result<ToolSet, ToolsError> {
        let tools: Vec<JsonTool> = serde_json::from_str(text).map_err(|e| ToolsError::Json {
            line: e.line(),
            column: e.column(),
            message: e.to_string(),
        })?;
        ToolSet::new(
            tools
                .into_iter()
                .map(|t| ToolSpec {
                    name: t.name,
                    description: t.description,
                    parameters: t.parameters,
                    use_cases: t.use_cases,
                })
                .collect(),
        )
    }

    /// Reads and checks a tool set file.
    pub fn load(path: &Path) -> Result<ToolSet, ToolsError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| ToolsError::Io { path: path.display().to_string(), source })?;
        ToolSet::from_json(&text)
    }

    /// Checks tools (see [`validate`]).
    pub fn new(tools: Vec<ToolSpec>) -> Result<ToolSet, ToolsError> {
        validate(&tools)?;
        Ok(ToolSet { tools })
    }
}

/// Checks tools: names non-empty and unique, descriptions non-empty,
/// between 1 and [`MAX_TOOLS`] of them.
pub fn validate(tools: &[ToolSpec]) -> Result<(), ToolsError> {
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
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

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
