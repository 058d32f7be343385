//! The texts embedded for a tool.

use crate::{Method, ToolSpec};

/// The text embedded for a tool, as Victor builds it:
/// `name. description. Parameters: a, b. Use for: x; y.`
pub fn tool_text(t: &ToolSpec) -> String {
    text_with(t, &t.name, &t.parameters)
}

/// [`tool_text`] with the name and parameters split into words
/// (`read_file` → `read file`, `startLine` → `start line`).
pub fn split_text(t: &ToolSpec) -> String {
    let params: Vec<String> = t.parameters.iter().map(|p| split_identifier(p)).collect();
    text_with(t, &split_identifier(&t.name), &params)
}

fn text_with(t: &ToolSpec, name: &str, parameters: &[String]) -> String {
    let mut s = format!("{name}. {}", t.description.trim().trim_end_matches('.'));
    if !parameters.is_empty() {
        s.push_str(&format!(". Parameters: {}", parameters.join(", ")));
    }
    if !t.use_cases.is_empty() {
        s.push_str(&format!(". Use for: {}", t.use_cases.join("; ")));
    }
    s.push('.');
    s
}

/// The texts to embed for a tool set under `method`, and for each text the
/// index of its tool: one text per tool for `plain` and `split`; for
/// `max-sim` and `hybrid` the split text and then each use case alone.
pub fn texts_to_embed(tools: &[ToolSpec], method: Method) -> (Vec<String>, Vec<usize>) {
    let mut texts = Vec::new();
    let mut owner = Vec::new();
    for (i, t) in tools.iter().enumerate() {
        match method {
            Method::Plain => texts.push(tool_text(t)),
            Method::Split => texts.push(split_text(t)),
            Method::MaxSim | Method::Hybrid => {
                texts.push(split_text(t));
                texts.extend(t.use_cases.iter().cloned());
            }
        }
        owner.resize(texts.len(), i);
    }
    (texts, owner)
}

/// `read_file` → `read file`, `getHTTPResponse` → `get http response`:
/// [`vembed_words::words`], joined by spaces.
pub fn split_identifier(id: &str) -> String {
    vembed_words::words(id).join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tool() -> ToolSpec {
        ToolSpec {
            name: "read_file".into(),
            description: "Read a file.".into(),
            parameters: vec!["path".into(), "start_line".into()],
            use_cases: vec!["open a file".into(), "show a file".into()],
        }
    }

    #[test]
    fn identifiers_split() {
        assert_eq!(split_identifier("read_file"), "read file");
        assert_eq!(split_identifier("getHTTPResponse"), "get http response");
        assert_eq!(split_identifier("git-diff"), "git diff");
    }

    #[test]
    fn text_follows_victor() {
        let t = tool();
        assert_eq!(
            tool_text(&t),
            "read_file. Read a file. Parameters: path, start_line. Use for: open a file; show a file."
        );
        assert_eq!(
            split_text(&t),
            "read file. Read a file. Parameters: path, start line. Use for: open a file; show a file."
        );
    }

    #[test]
    fn texts_and_owners_line_up() {
        let mut b = tool();
        b.name = "b".into();
        b.use_cases.clear();
        let (texts, owner) = texts_to_embed(&[tool(), b], Method::MaxSim);
        assert_eq!(texts.len(), 4);
        assert_eq!(owner, [0, 0, 0, 1]);
        assert_eq!(texts[1], "open a file");
        let (texts, owner) = texts_to_embed(&[tool()], Method::Plain);
        assert_eq!((texts.len(), owner), (1, vec![0]));
    }
}
