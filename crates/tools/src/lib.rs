//! Semantic tool selection: rank a tool set against a request by embedding
//! similarity, with an optional lexical part.
//!
//! This crate is the one implementation of the scoring. The host runs it for
//! the `SelectTools` request (which every client, in any language, reaches),
//! and the Rust client runs the same code in process for evaluation. It has
//! no ML and no I/O: it says which texts to embed for a tool set
//! ([`texts_to_embed`]) and ranks tools given those vectors and a request's
//! ([`Ranker`]).
//!
//! A tool set in JSON is a list of tools:
//!
//! ```json
//! [{"name": "read_file",
//!   "description": "Read the contents of a file.",
//!   "parameters": ["path", "start_line"],
//!   "use_cases": ["show me what is in a source file", "open a config file"]}]
//! ```
//!
//! `parameters` and `use_cases` are optional; `use_cases` may also be one
//! string.
#![warn(missing_docs)]

mod rank;
mod set;
mod text;

pub use rank::{Ranker, SelectOptions, TOOL_TERM_SHARE};
pub use set::{MAX_TOOLS, ToolSet, ToolsError, validate};
pub use text::{split_identifier, split_text, texts_to_embed, tool_text};
pub use vembed_protocol::{ToolFallback as Fallback, ToolMethod as Method, ToolPick, ToolSpec};

/// Every scoring method, in the order `vembed tools eval` reports them.
pub const METHODS: [Method; 4] = [Method::Plain, Method::Split, Method::MaxSim, Method::Hybrid];

/// A method's name on the command line and in JSON: `plain`, `split`,
/// `max-sim`, `hybrid`.
pub fn method_name(m: Method) -> &'static str {
    match m {
        Method::Plain => "plain",
        Method::Split => "split",
        Method::MaxSim => "max-sim",
        Method::Hybrid => "hybrid",
    }
}

/// Parses a method name (see [`method_name`]).
pub fn parse_method(s: &str) -> Result<Method, String> {
    METHODS.into_iter().find(|m| method_name(*m) == s).ok_or_else(|| {
        let names: Vec<&str> = METHODS.iter().map(|m| method_name(*m)).collect();
        format!("unknown method {s:?}; one of: {}", names.join(", "))
    })
}

/// Parses a fallback name: `all` or `top-k`.
pub fn parse_fallback(s: &str) -> Result<Fallback, String> {
    match s {
        "all" => Ok(Fallback::All),
        "top-k" => Ok(Fallback::TopK),
        _ => Err(format!("unknown fallback {s:?}; one of: all, top-k")),
    }
}
