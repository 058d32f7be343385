//! The command-line flags that say which host to reach, and what a host
//! started for the command serves: declared once, for the `vembed` CLI and
//! `vembed-lab` alike (flatten [`HostFlags`] into a clap parser).

use std::ffi::OsString;
use std::path::PathBuf;

use crate::{Client, SpawnOptions};

/// Which host a command reaches, and the models of one it starts.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct HostFlags {
    /// Host socket [default: $XDG_RUNTIME_DIR/vembed/host.sock].
    #[arg(long, global = true, env = "VEMBED_SOCKET")]
    pub socket: Option<PathBuf>,
    /// Never start a host; fail when none runs.
    #[arg(long, global = true)]
    pub no_spawn: bool,
    /// Unified model for a host this command starts (name or folder).
    #[arg(long, global = true)]
    pub unified_embedding_model: Option<String>,
    /// Tool-selection model for a host this command starts.
    #[arg(long, global = true)]
    pub embedding_model: Option<String>,
    /// Code-search model for a host this command starts.
    #[arg(long, global = true)]
    pub codebase_embedding_model: Option<String>,
}

impl HostFlags {
    /// How to start a host for the command (loading `extra_model` too).
    pub fn spawn_options(&self, extra_model: Option<&str>) -> SpawnOptions {
        let mut host_args: Vec<OsString> = Vec::new();
        for (flag, value) in [
            ("--unified-embedding-model", &self.unified_embedding_model),
            ("--embedding-model", &self.embedding_model),
            ("--codebase-embedding-model", &self.codebase_embedding_model),
        ] {
            if let Some(v) = value {
                host_args.push(flag.into());
                host_args.push(v.into());
            }
        }
        if let Some(m) = extra_model {
            host_args.push("--model".into());
            host_args.push(m.into());
        }
        let mut opts = SpawnOptions { host_args, ..SpawnOptions::default() };
        if let Some(s) = &self.socket {
            opts.socket = s.clone();
        }
        opts
    }

    /// A connection to the host, started first unless `--no-spawn`.
    pub fn client(&self, extra_model: Option<&str>) -> crate::Result<Client> {
        let opts = self.spawn_options(extra_model);
        if self.no_spawn {
            Client::connect(&opts.socket)
        } else {
            Client::connect_or_spawn_with(opts)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_started_host_gets_the_models_and_the_socket_the_flags_name() {
        let flags = HostFlags {
            socket: Some(PathBuf::from("/run/user/1/v/host.sock")),
            codebase_embedding_model: Some("BAAI/bge-small-en-v1.5".into()),
            ..HostFlags::default()
        };
        let opts = flags.spawn_options(Some("extra/model"));
        assert_eq!(opts.socket, PathBuf::from("/run/user/1/v/host.sock"));
        let args: Vec<&str> = opts.host_args.iter().map(|a| a.to_str().unwrap()).collect();
        assert_eq!(
            args,
            ["--codebase-embedding-model", "BAAI/bge-small-en-v1.5", "--model", "extra/model"]
        );
        // No flags: the default socket, no model arguments.
        let plain = HostFlags::default().spawn_options(None);
        assert!(plain.host_args.is_empty());
        assert_eq!(plain.socket, SpawnOptions::default().socket);
    }
}
