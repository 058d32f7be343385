//! Cutting source files into snippets that fit the model.
//!
//! Every chunk's embedded text (a `path: symbol` header line and the code)
//! fits `max_tokens` as the caller's tokenizer counts it, so nothing is cut
//! off silently by the model. Chunks prefer symbol boundaries (functions,
//! classes, `impl` blocks; Python, Rust, JavaScript/TypeScript and Go), and
//! a method carries its enclosing class or `impl` in its header. A symbol too
//! long for one chunk is cut into windows of lines that overlap by
//! [`OVERLAP_LINES`]; a line too long for one chunk (minified code) is cut by
//! characters.

use crate::Snippet;

/// Lines repeated between consecutive windows of one long symbol.
pub const OVERLAP_LINES: usize = 2;

/// A chunk of a file: the snippet as it is stored, and the text embedded
/// for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    /// The snippet (its symbol is, for example, `Parser.parse` or
    /// `impl Parser::parse`).
    pub snippet: Snippet,
    /// What is embedded: a header line, then the code.
    pub embed_text: String,
}

/// The languages whose symbols the chunker knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    /// `.py`
    Python,
    /// `.rs`
    Rust,
    /// `.js`, `.jsx`, `.ts`, `.tsx`, `.mjs`, `.cjs`
    JavaScript,
    /// `.go`
    Go,
    /// Anything else: lines only.
    Other,
}

impl Lang {
    /// The language of a path, by extension.
    pub fn of(path: &str) -> Lang {
        match path.rsplit('.').next().unwrap_or("") {
            "py" | "pyi" => Lang::Python,
            "rs" => Lang::Rust,
            "js" | "jsx" | "ts" | "tsx" | "mjs" | "cjs" => Lang::JavaScript,
            "go" => Lang::Go,
            _ => Lang::Other,
        }
    }
}

/// A symbol that starts on a line: its kind and name.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Start {
    container: bool,
    name: String,
}

fn ident(s: &str) -> String {
    s.chars().take_while(|c| c.is_alphanumeric() || *c == '_' || *c == '$').collect()
}

/// Strips any of `prefixes` (each followed by whitespace) from the front.
fn strip_words<'a>(mut s: &'a str, words: &[&str]) -> &'a str {
    loop {
        let before = s;
        for w in words {
            if let Some(rest) = s.strip_prefix(w)
                && rest.starts_with(char::is_whitespace)
            {
                s = rest.trim_start();
            }
        }
        if s == before {
            return s;
        }
    }
}

fn symbol_start(lang: Lang, line: &str) -> Option<Start> {
    let t = line.trim_start();
    let word = |kw: &str| t.strip_prefix(kw).filter(|r| r.starts_with(char::is_whitespace));
    match lang {
        Lang::Python => {
            if let Some(r) = word("class") {
                return Some(Start { container: true, name: ident(r.trim_start()) });
            }
            let t2 = t.strip_prefix("async").map(str::trim_start).unwrap_or(t);
            let r = t2.strip_prefix("def").filter(|r| r.starts_with(char::is_whitespace))?;
            Some(Start { container: false, name: ident(r.trim_start()) })
        }
        Lang::Rust => {
            let mut s = t;
            if let Some(r) = s.strip_prefix("pub") {
                s = r.trim_start();
                if s.starts_with('(') {
                    s = s.split_once(')').map(|(_, r)| r.trim_start()).unwrap_or(s);
                }
            }
            let s = strip_words(s, &["async", "unsafe", "const", "extern", "default"]);
            let s = s.strip_prefix("\"C\"").map(str::trim_start).unwrap_or(s);
            for (kw, container) in
                [("fn", false), ("struct", false), ("enum", false), ("trait", true), ("mod", true)]
            {
                if let Some(r) = s.strip_prefix(kw).filter(|r| r.starts_with(char::is_whitespace)) {
                    return Some(Start { container, name: ident(r.trim_start()) });
                }
            }
            let r = s.strip_prefix("impl")?;
            if !(r.starts_with(char::is_whitespace) || r.starts_with('<')) {
                return None;
            }
            // `impl<T> Trait for Type {` names the impl after its type.
            let head = r.split('{').next().unwrap_or(r);
            let head = head.split(" where ").next().unwrap_or(head).trim();
            let head = if head.starts_with('<') { skip_generics(head) } else { head };
            let ty = head.rsplit(" for ").next().unwrap_or(head).trim();
            Some(Start { container: true, name: format!("impl {ty}") })
        }
        Lang::JavaScript => {
            let s = strip_words(t, &["export", "default", "async", "declare", "abstract"]);
            if let Some(r) = s.strip_prefix("class").filter(|r| r.starts_with(char::is_whitespace))
            {
                return Some(Start { container: true, name: ident(r.trim_start()) });
            }
            if let Some(r) = s.strip_prefix("function") {
                let r = r.trim_start_matches('*').trim_start();
                return Some(Start { container: false, name: ident(r) });
            }
            for kw in ["const", "let", "var"] {
                if let Some(r) = s.strip_prefix(kw).filter(|r| r.starts_with(char::is_whitespace)) {
                    let r = r.trim_start();
                    let name = ident(r);
                    let rest = r[name.len()..].trim_start();
                    let is_fn =
                        rest.starts_with('=') && (rest.contains("=>") || rest.contains("function"));
                    return is_fn.then_some(Start { container: false, name });
                }
            }
            // A method in a class body: `name(args) {`.
            let name = ident(s);
            let rest = &s[name.len()..];
            let keyword = matches!(
                name.as_str(),
                "if" | "for" | "while" | "switch" | "catch" | "return" | "function" | "constructor"
            );
            (!name.is_empty() && !keyword && rest.starts_with('(') && t.trim_end().ends_with('{'))
                .then_some(Start { container: false, name })
        }
        Lang::Go => {
            if let Some(r) = word("func") {
                let r = r.trim_start();
                // A method: `func (r *Recv) Name(`.
                let (recv, r) = if r.starts_with('(') {
                    let (recv, rest) = r.split_once(')').unwrap_or((r, ""));
                    let ty = recv.trim_start_matches('(').split_whitespace().last().unwrap_or("");
                    (Some(ty.trim_start_matches('*').to_string()), rest.trim_start())
                } else {
                    (None, r)
                };
                let name = ident(r);
                return Some(Start {
                    container: false,
                    name: recv.map_or(name.clone(), |t| format!("{t}.{name}")),
                });
            }
            let r = word("type")?;
            Some(Start { container: false, name: ident(r.trim_start()) })
        }
        Lang::Other => None,
    }
}

fn skip_generics(s: &str) -> &str {
    let mut depth = 0;
    for (i, c) in s.char_indices() {
        match c {
            '<' => depth += 1,
            '>' => {
                depth -= 1;
                if depth == 0 {
                    return s[i + 1..].trim_start();
                }
            }
            _ => {}
        }
    }
    s
}

fn indent(line: &str) -> usize {
    line.len() - line.trim_start().len()
}

/// A run of lines that starts at a symbol (or at the top of the file).
struct Segment {
    start: usize,
    end: usize,
    symbol: Option<String>,
}

/// Cuts `text` (the file at `path`) into chunks whose embedded text has at
/// most `max_tokens` tokens by `count`.
pub fn chunk_file(
    path: &str,
    text: &str,
    max_tokens: usize,
    count: &dyn Fn(&str) -> usize,
) -> Vec<Chunk> {
    let lang = Lang::of(path);
    let lines: Vec<&str> = text.lines().collect();
    if lines.iter().all(|l| l.trim().is_empty()) {
        return Vec::new();
    }
    // Segments at symbol starts; containers (class, impl) give their name
    // to the symbols indented inside them.
    let mut segments: Vec<Segment> = Vec::new();
    let mut containers: Vec<(usize, String)> = Vec::new();
    let mut current = Segment { start: 0, end: 0, symbol: None };
    for (i, line) in lines.iter().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let ind = indent(line);
        while containers.last().is_some_and(|(ci, _)| ind <= *ci) {
            containers.pop();
        }
        if let Some(start) = symbol_start(lang, line) {
            if i > current.start {
                current.end = i;
                segments.push(std::mem::replace(
                    &mut current,
                    Segment { start: i, end: i, symbol: None },
                ));
            }
            current.start = i;
            let name = match containers.last() {
                Some((_, c)) if !start.container => format!("{c}::{}", start.name),
                _ => start.name.clone(),
            };
            current.symbol = Some(name);
            if start.container {
                containers.push((ind, start.name));
            }
        }
    }
    current.end = lines.len();
    segments.push(current);

    let header = |symbol: &Option<String>| match symbol {
        Some(s) => format!("{path}: {s}"),
        None => path.to_string(),
    };
    // Per-line token counts (without special tokens, which `count` adds
    // once per text) make packing linear; each chunk is verified whole.
    let special = count("");
    let line_tokens: Vec<usize> =
        lines.iter().map(|l| count(l).saturating_sub(special) + 1).collect();
    let mut chunks = Vec::new();
    let mut pending: Option<(usize, usize, Option<String>, usize)> = None;
    let flush = |chunks: &mut Vec<Chunk>, start: usize, end: usize, symbol: Option<String>| {
        let head = header(&symbol);
        emit(chunks, &lines, start, end, &symbol, &head, max_tokens, count);
    };
    for seg in segments {
        let head = count(&header(&seg.symbol));
        let cost: usize = line_tokens[seg.start..seg.end].iter().sum();
        // Merge small neighbouring segments into one chunk.
        if let Some((ps, pe, psym, pcost)) = pending.take() {
            let merged_head = count(&header(&psym));
            if merged_head + pcost + cost <= max_tokens {
                pending = Some((ps, seg.end, psym, pcost + cost));
                continue;
            }
            flush(&mut chunks, ps, pe, psym);
        }
        if head + cost <= max_tokens {
            pending = Some((seg.start, seg.end, seg.symbol, cost));
        } else {
            flush(&mut chunks, seg.start, seg.end, seg.symbol);
        }
    }
    if let Some((ps, pe, psym, _)) = pending {
        flush(&mut chunks, ps, pe, psym);
    }
    for c in &mut chunks {
        c.snippet.path = path.to_string();
    }
    chunks
}

/// Emits lines `start..end` as one chunk if they fit, else as overlapping
/// windows of lines, cutting any single line that alone is too long.
#[allow(clippy::too_many_arguments)]
fn emit(
    out: &mut Vec<Chunk>,
    lines: &[&str],
    start: usize,
    end: usize,
    symbol: &Option<String>,
    header: &str,
    max_tokens: usize,
    count: &dyn Fn(&str) -> usize,
) {
    // Trim blank lines at both ends.
    let (mut start, mut end) = (start, end);
    while start < end && lines[start].trim().is_empty() {
        start += 1;
    }
    while end > start && lines[end - 1].trim().is_empty() {
        end -= 1;
    }
    if start >= end {
        return;
    }
    let make = |s: usize, e: usize, text: String| {
        let embed_text = format!("{header}\n{text}");
        let (start_line, end_line) = (s as u32 + 1, e as u32);
        let snippet =
            Snippet { path: String::new(), start_line, end_line, symbol: symbol.clone(), text };
        Chunk { snippet, embed_text }
    };
    let fits = |text: &str| count(&format!("{header}\n{text}")) <= max_tokens;
    let whole = lines[start..end].join("\n");
    if fits(&whole) {
        out.push(make(start, end, whole));
        return;
    }
    // Windows: grow line by line while the window fits.
    let mut s = start;
    while s < end {
        let mut e = s + 1;
        if !fits(lines[s]) {
            // One line alone is too long: cut it by characters.
            cut_line(out, lines[s], s, symbol, header, max_tokens, count);
            s += 1;
            continue;
        }
        while e < end && fits(&lines[s..e + 1].join("\n")) {
            e += 1;
        }
        out.push(make(s, e, lines[s..e].join("\n")));
        if e >= end {
            break;
        }
        // Overlap, but always move forward.
        s = (e.saturating_sub(OVERLAP_LINES)).max(s + 1);
    }
}

/// Cuts one over-long line into pieces that fit (by binary search on the
/// number of characters).
fn cut_line(
    out: &mut Vec<Chunk>,
    line: &str,
    index: usize,
    symbol: &Option<String>,
    header: &str,
    max_tokens: usize,
    count: &dyn Fn(&str) -> usize,
) {
    let chars: Vec<char> = line.chars().collect();
    let mut at = 0;
    while at < chars.len() {
        // A token covers at least one character, and rarely more than 16:
        // searching up to 16 per token keeps each probe short.
        let (mut lo, mut hi) = (1, (chars.len() - at).min(max_tokens * 16));
        while lo < hi {
            let mid = (lo + hi).div_ceil(2);
            let piece: String = chars[at..at + mid].iter().collect();
            if count(&format!("{header}\n{piece}")) <= max_tokens {
                lo = mid;
            } else {
                hi = mid - 1;
            }
        }
        let piece: String = chars[at..at + lo].iter().collect();
        let line = index as u32 + 1;
        out.push(Chunk {
            embed_text: format!("{header}\n{piece}"),
            snippet: Snippet {
                path: String::new(),
                start_line: line,
                end_line: line,
                symbol: symbol.clone(),
                text: piece,
            },
        });
        at += lo;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stand-in tokenizer for unit tests: [CLS] + [SEP] + one token per
    /// word or punctuation mark (the e2e tests use the real one).
    fn count(s: &str) -> usize {
        2 + s
            .split(|c: char| c.is_whitespace())
            .filter(|w| !w.is_empty())
            .map(|w| w.chars().filter(|c| !c.is_alphanumeric()).count().max(1))
            .sum::<usize>()
    }

    #[test]
    fn python_methods_carry_their_class() {
        let src = "import os\n\nclass Parser:\n    def parse(self, s):\n        return s.split()\n\n    def close(self):\n        pass\n\ndef main():\n    Parser().parse('a b')\n";
        let chunks = chunk_file("p.py", src, 14, &count);
        let symbols: Vec<_> = chunks.iter().map(|c| c.snippet.symbol.clone()).collect();
        assert!(symbols.contains(&Some("Parser::parse".into())), "{chunks:#?}");
        assert!(symbols.contains(&Some("main".into())), "{chunks:#?}");
        for c in &chunks {
            assert!(count(&c.embed_text) <= 14, "{c:?}");
        }
        let parse =
            chunks.iter().find(|c| c.snippet.symbol.as_deref() == Some("Parser::parse")).unwrap();
        assert!(parse.embed_text.starts_with("p.py: Parser::parse\n"));
        assert_eq!(parse.snippet.start_line, 4);
    }

    #[test]
    fn rust_go_and_js_symbols() {
        assert_eq!(
            symbol_start(Lang::Rust, "impl<T: Clone> Display for Wrapper<T> {"),
            Some(Start { container: true, name: "impl Wrapper<T>".into() })
        );
        assert_eq!(
            symbol_start(Lang::Rust, "    pub(crate) async fn run(&self) {").unwrap().name,
            "run"
        );
        assert_eq!(
            symbol_start(Lang::Go, "func (s *Server) Serve(l net.Listener) error {").unwrap().name,
            "Server.Serve"
        );
        assert_eq!(
            symbol_start(Lang::JavaScript, "export const handler = async (req) => {").unwrap().name,
            "handler"
        );
        assert_eq!(
            symbol_start(Lang::JavaScript, "export default class Store {").unwrap().name,
            "Store"
        );
        assert_eq!(symbol_start(Lang::JavaScript, "  if (x) {"), None);
    }

    #[test]
    fn nothing_exceeds_the_limit() {
        // One 3,000-line function.
        let mut long = String::from("def huge():\n");
        for i in 0..3000 {
            long.push_str(&format!("    x{i} = compute({i}) + other_value\n"));
        }
        let chunks = chunk_file("big.py", &long, 64, &count);
        assert!(chunks.len() > 100);
        assert!(chunks.iter().all(|c| count(&c.embed_text) <= 64));
        assert_eq!(chunks.last().unwrap().snippet.end_line, 3001);
        // Consecutive windows overlap and cover every line.
        for w in chunks.windows(2) {
            assert!(w[1].snippet.start_line <= w[0].snippet.end_line + 1, "{:?} {:?}", w[0], w[1]);
        }
        // A minified one-line file.
        let minified = "var a=1;".repeat(5000);
        let chunks = chunk_file("app.min.js", &minified, 64, &count);
        assert!(chunks.len() > 10 && chunks.iter().all(|c| count(&c.embed_text) <= 64));
        let joined: String = chunks.iter().map(|c| c.snippet.text.as_str()).collect();
        assert_eq!(joined, minified, "the pieces of a cut line add up to the line");
    }
}
