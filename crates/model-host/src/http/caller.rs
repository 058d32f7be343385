//! Who is asking, and what they may be shown.
//!
//! The host's socket is 0600, so every socket client is its user. A
//! loopback port is not: **any local user can connect to it**. An HTTP
//! request therefore comes from one of two callers:
//!
//! - [`Caller::Owner`]: proven to be the host's user, by the bearer token
//!   (`http_token_file`) or by the peer's uid on the Unix-socket listener
//!   (`http_socket`, checked with `SO_PEERCRED`);
//! - [`Caller::Anonymous`]: anyone else who can reach a TCP listener (no
//!   token is configured, so no proof was asked for).
//!
//! An anonymous caller may embed and tokenize its own text and read what
//! the models are (public names, dimensions, hashes). It is never served
//! anything that reads the user's files or indexes (the [`Route`] says
//! which those are), and never shown the user's paths: a model loaded
//! from a folder is named by its weights' hash, and error messages are
//! [`Private::redact`]ed, or replaced by a pointer to the host's log where
//! they come from the host itself rather than from the request.
//!
//! [`Route`]: super::route

use std::path::{Path, PathBuf};

/// The peer of a connection, as its listener knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Peer {
    /// A Unix-socket peer whose uid is the host's.
    SameUser,
    /// A TCP peer: any local user (or another machine on a non-loopback
    /// address).
    Network,
}

/// Who sent a request (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Caller {
    /// The host's own user.
    Owner,
    /// Any local user.
    Anonymous,
}

impl Caller {
    /// The caller of a request from `peer` that passed the token check;
    /// `token_configured` says whether that check asked for a token.
    pub fn of(peer: Peer, token_configured: bool) -> Caller {
        if token_configured || peer == Peer::SameUser { Caller::Owner } else { Caller::Anonymous }
    }

    /// Whether this caller is the host's user.
    pub fn is_owner(self) -> bool {
        self == Caller::Owner
    }
}

/// What an anonymous caller is told when it asks for something that reads
/// the user's files or indexes.
pub(crate) const OWNER_ONLY: &str = "this endpoint reads the host user's code indexes, so it is \
     served only to callers who prove they are that user: set http_token_file in the host's \
     config and send Authorization: Bearer <the token>, or use the Unix-socket listener \
     (http_socket, whose peers are checked by uid), or search over the vembed socket \
     (vembed search, the Python or Rust client)";

/// What an anonymous caller is told of a failure inside the host (its
/// reason can name the user's files; the host's log has it whole).
pub(crate) const SEE_THE_LOG: &str =
    "the host failed on this request; its user can read why in the host's log";

/// The user's paths an anonymous caller is never shown.
#[derive(Debug, Clone, Default)]
pub(crate) struct Private {
    /// Absolute paths, longest first, so a path inside another is replaced whole.
    prefixes: Vec<String>,
}

/// What a redacted path reads as.
pub(crate) const REDACTED: &str = "<private path>";

impl Private {
    /// This host's private places: the home directory, the vembed and
    /// Hugging Face caches, the config, runtime and state directories, the
    /// working directory, and `extra` (the socket, say).
    pub fn of_this_host(extra: &[PathBuf]) -> Private {
        use vembed_models::paths;
        let mut places: Vec<PathBuf> = vec![
            paths::cache_dir(),
            paths::hf_hub_cache(),
            paths::legacy_st_cache(),
            paths::runtime_dir(),
            paths::state_dir(),
            paths::config_path(),
        ];
        places.extend(std::env::var_os("HOME").map(PathBuf::from));
        places.extend(std::env::current_dir().ok());
        places.extend(extra.iter().cloned());
        let mut p = Private::default();
        for place in places {
            p.add(&place);
        }
        p
    }

    /// Adds `path`, and its canonical form where that differs.
    pub fn add(&mut self, path: &Path) {
        let canonical = path.canonicalize().ok();
        for p in std::iter::once(path).chain(canonical.as_deref()) {
            let s = p.to_string_lossy().trim_end_matches('/').to_string();
            // `/` and one-letter roots would redact every path-like word.
            if s.len() > 2 && p.is_absolute() && !self.prefixes.contains(&s) {
                self.prefixes.push(s);
            }
        }
        self.prefixes.sort_by_key(|s| std::cmp::Reverse(s.len()));
    }

    /// `text` with every private path (and whatever follows it up to the
    /// next space or quote) replaced by [`REDACTED`].
    pub fn redact(&self, text: &str) -> String {
        let mut out = text.to_string();
        for prefix in &self.prefixes {
            let mut done = String::with_capacity(out.len());
            let mut rest = out.as_str();
            while let Some(at) = rest.find(prefix.as_str()) {
                done.push_str(&rest[..at]);
                done.push_str(REDACTED);
                let tail = &rest[at + prefix.len()..];
                let end = tail
                    .find(|c: char| c.is_whitespace() || "\"'`,;()[]{}".contains(c))
                    .unwrap_or(tail.len());
                rest = &tail[end..];
            }
            done.push_str(rest);
            out = done;
        }
        out
    }
}

/// The name an HTTP caller sees for a model: its own name, but for an
/// anonymous caller a model loaded from a folder vembed does not know
/// (whose name is that folder's path) is `local-` and the first 12 hex
/// digits of its weights' sha256, a name it also answers to.
pub(crate) fn shown_name<'a>(
    name: &'a str,
    sha256: &str,
    caller: Caller,
) -> std::borrow::Cow<'a, str> {
    if caller.is_owner() || !Path::new(name).is_absolute() {
        return std::borrow::Cow::Borrowed(name);
    }
    std::borrow::Cow::Owned(format!("local-{}", sha256.get(..12).unwrap_or(sha256)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_private_paths_whole_and_nothing_else() {
        let mut p = Private::default();
        p.add(Path::new("/home/alice"));
        p.add(Path::new("/home/alice/.cache/vembed"));
        p.add(Path::new("/"));
        let text = "no model at /home/alice/.cache/vembed/models/x (searched: /home/alice/hf/y, \
                    \"/home/alice/z\"); POST /v1/embeddings; /srv/ok";
        let r = p.redact(text);
        assert!(!r.contains("alice"), "{r}");
        assert_eq!(
            r,
            "no model at <private path> (searched: <private path>, \"<private path>\"); \
             POST /v1/embeddings; /srv/ok"
        );
        assert_eq!(p.redact("nothing here"), "nothing here");
    }

    #[test]
    fn callers_and_names() {
        assert_eq!(Caller::of(Peer::Network, false), Caller::Anonymous);
        assert_eq!(Caller::of(Peer::Network, true), Caller::Owner);
        assert_eq!(Caller::of(Peer::SameUser, false), Caller::Owner);
        let sha = "0123456789abcdef0123";
        assert_eq!(shown_name("/home/a/m", sha, Caller::Anonymous), "local-0123456789ab");
        assert_eq!(shown_name("/home/a/m", sha, Caller::Owner), "/home/a/m");
        assert_eq!(shown_name("org/m", sha, Caller::Anonymous), "org/m");
    }
}
