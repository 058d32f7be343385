//! How vembed splits code into words, the one rule the code index's
//! lexical search and tool selection share: a word is a run of letters and
//! digits, cut again at camelCase (`getHTTPResponse` → `get http response`)
//! and at letter/digit boundaries (`utf8` → `utf 8`), lower-cased. `_`,
//! `-`, `.`, `/` and every other character that is neither letter nor
//! digit separate words.
#![warn(missing_docs)]

/// The words of `text`, in order, lower-cased.
pub fn words(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let chars: Vec<char> = text.chars().collect();
    let mut cur = String::new();
    for (i, &c) in chars.iter().enumerate() {
        if !c.is_alphanumeric() {
            if !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
            continue;
        }
        let boundary = !cur.is_empty() && {
            let p = chars[i - 1];
            let camel = c.is_uppercase()
                && (p.is_lowercase()
                    || p.is_ascii_digit()
                    || chars.get(i + 1).is_some_and(|n| n.is_lowercase()));
            camel || c.is_ascii_digit() != p.is_ascii_digit()
        };
        if boundary {
            out.push(std::mem::take(&mut cur));
        }
        cur.extend(c.to_lowercase());
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// The identifiers of `text`: its runs of letters, digits and `_` (what a
/// programming language would call one name), in order.
pub fn identifiers(text: &str) -> impl Iterator<Item = &str> {
    text.split(|c: char| !(c.is_alphanumeric() || c == '_')).filter(|s| !s.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_split_at_case_digits_and_separators() {
        assert_eq!(words("read_file"), ["read", "file"]);
        assert_eq!(words("getHTTPResponse"), ["get", "http", "response"]);
        assert_eq!(words("parseHTTPResponse2xx"), ["parse", "http", "response", "2", "xx"]);
        assert_eq!(
            words("git-diff src/net/retry.rs"),
            ["git", "diff", "src", "net", "retry", "rs"]
        );
        assert_eq!(words("Über_Straße"), ["über", "straße"]);
        assert!(words("  _-- ").is_empty());
    }

    #[test]
    fn identifiers_keep_underscores() {
        let ids: Vec<&str> = identifiers("def hash_password(x): x.y").collect();
        assert_eq!(ids, ["def", "hash_password", "x", "x", "y"]);
    }
}
