//! `--mode ollama`: the host's HTTP endpoint where Victor looks for Ollama
//! (127.0.0.1:11434), set in vembed's config file, and a systemd user unit
//! that starts the host at login where systemd runs.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, bail};

use super::changes::{FileChange, read_text};

/// Where Victor's tool selector and its Ollama provider look by default
/// (`provider.ollama_base_url`, http://localhost:11434).
pub(super) const OLLAMA_ADDR: &str = "127.0.0.1:11434";
pub(super) const OLLAMA_PORT: u16 = 11434;

/// The config file with `http_listen = "127.0.0.1:11434"`: the line
/// replaced where it exists, else added before the first table (a key
/// after a `[table]` header would belong to that table).
pub(super) fn config_change() -> anyhow::Result<Option<FileChange>> {
    let path = vembed_models::paths::config_path();
    let before = read_text(&path)?;
    let line = format!("http_listen = \"{OLLAMA_ADDR}\"  # vembed setup victor --mode ollama");
    let text = before.clone().unwrap_or_default();
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    let is_key = |l: &str| {
        l.trim_start().strip_prefix("http_listen").is_some_and(|r| r.trim_start().starts_with('='))
    };
    let first_table = lines.iter().position(|l| l.trim_start().starts_with('['));
    let top = &lines[..first_table.unwrap_or(lines.len())];
    if let Some(i) = top.iter().position(|l| is_key(l)) {
        if current_listen(&path)?.as_deref() == Some(OLLAMA_ADDR) {
            return Ok(None);
        }
        lines[i] = line;
    } else {
        // Before the blank lines that lead up to the first table.
        let mut at = first_table.unwrap_or(lines.len());
        while at > 0 && lines[at - 1].trim().is_empty() {
            at -= 1;
        }
        lines.insert(at, line);
    }
    let mut after = lines.join("\n");
    after.push('\n');
    check_config(&path, &after)?;
    Ok(Some(FileChange {
        path,
        before,
        after,
        why: format!("vembed serves HTTP on {OLLAMA_ADDR}, where Victor looks for Ollama"),
    }))
}

fn current_listen(path: &Path) -> anyhow::Result<Option<String>> {
    Ok(vembed_models::Settings::from_file(path)?.http_listen)
}

/// The new config file must read back with the address (and parse at all).
fn check_config(path: &Path, text: &str) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let tmp = dir.path().join("config.toml");
    std::fs::write(&tmp, text)?;
    let got = current_listen(&tmp)
        .with_context(|| format!("the edited {} does not parse", path.display()))?;
    if got.as_deref() != Some(OLLAMA_ADDR) {
        bail!("editing {} did not set http_listen (got {got:?})", path.display());
    }
    Ok(())
}

/// Who listens on 127.0.0.1:11434 (or on every address at that port).
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Holder {
    Free,
    /// A vembed host of this user.
    Vembed(u32),
    /// Something else: what we know of it.
    Other(String),
}

/// Reads the kernel's socket tables and this user's processes' open files.
pub(super) fn port_holder(port: u16) -> anyhow::Result<Holder> {
    let mut inodes = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else { continue };
        for row in text.lines().skip(1) {
            let cols: Vec<&str> = row.split_whitespace().collect();
            // local_address is ADDR:PORT in hex; state 0A is LISTEN.
            let (Some(local), Some(state), Some(inode)) = (cols.get(1), cols.get(3), cols.get(9))
            else {
                continue;
            };
            let Some((_, p)) = local.rsplit_once(':') else { continue };
            if *state == "0A" && u16::from_str_radix(p, 16) == Ok(port) {
                inodes.push(format!("socket:[{inode}]"));
            }
        }
    }
    if inodes.is_empty() {
        return Ok(Holder::Free);
    }
    for entry in std::fs::read_dir("/proc")?.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(entry.path().join("fd")) else { continue };
        let holds = fds.flatten().any(|fd| {
            std::fs::read_link(fd.path())
                .is_ok_and(|l| inodes.iter().any(|i| l.as_os_str() == i.as_str()))
        });
        if holds {
            let exe = std::fs::read_link(entry.path().join("exe")).unwrap_or_default();
            let comm = std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
            if exe.file_name().is_some_and(|n| n == "vembed-host") {
                return Ok(Holder::Vembed(pid));
            }
            return Ok(Holder::Other(format!("pid {pid} ({})", comm.trim())));
        }
    }
    Ok(Holder::Other("a process of another user".into()))
}

/// Whether a systemd user manager runs for this user.
pub(super) fn systemd_user_runs() -> bool {
    Command::new("systemctl")
        .args(["--user", "is-system-running"])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .is_ok_and(|o| {
            let s = String::from_utf8_lossy(&o.stdout);
            matches!(s.trim(), "running" | "degraded" | "starting")
        })
}

/// The unit file: the host from login on (with `http_listen` set it never
/// idles out).
pub(super) fn unit_change(host_bin: &Path) -> anyhow::Result<FileChange> {
    let path = unit_path();
    let before = read_text(&path)?;
    let after = format!(
        "# Written by `vembed setup victor --mode ollama`; `vembed setup victor --undo` removes it.\n\
         [Unit]\n\
         Description=vembed embedding host (HTTP on {OLLAMA_ADDR} for Victor)\n\
         Documentation=https://github.com/vembed/vembed\n\
         \n\
         [Service]\n\
         Type=simple\n\
         ExecStart={} --log-stderr\n\
         Restart=on-failure\n\
         RestartSec=2\n\
         \n\
         [Install]\n\
         WantedBy=default.target\n",
        host_bin.display()
    );
    Ok(FileChange {
        path,
        before,
        after,
        why: "the host starts at login (systemd user unit)".into(),
    })
}

pub(super) const UNIT: &str = "vembed.service";

fn unit_path() -> PathBuf {
    std::env::var_os("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".config")
        })
        .join("systemd/user")
        .join(UNIT)
}

/// `systemctl --user ARGS`, failing with its output.
pub(super) fn systemctl(args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new("systemctl")
        .arg("--user")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .context("running systemctl")?;
    if !out.status.success() {
        bail!(
            "systemctl --user {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_port_nobody_listens_on_is_free_and_a_listener_is_found() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        match port_holder(port).unwrap() {
            Holder::Other(who) => assert!(who.contains(&std::process::id().to_string()), "{who}"),
            h => panic!("{h:?}"),
        }
        drop(l);
        assert_eq!(port_holder(port).unwrap(), Holder::Free);
    }
}
