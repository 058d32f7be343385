//! Starting `vembed-host` on demand, as sccache starts its server.

use std::ffi::OsString;
use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::{Error, Result};

/// How to find and start the host.
#[derive(Debug, Clone)]
pub struct SpawnOptions {
    /// The socket to connect to and to start the host on.
    pub socket: PathBuf,
    /// The host binary; `None` means `$VEMBED_HOST_BIN`, else `vembed-host`
    /// beside the current executable, else on `PATH`.
    pub host_bin: Option<PathBuf>,
    /// Extra arguments for a host this client starts (model flags, say).
    pub host_args: Vec<OsString>,
    /// Environment variables for a host this client starts.
    pub host_env: Vec<(OsString, OsString)>,
    /// How long to wait for a host to become ready.
    pub timeout: Duration,
    /// How long to wait for connections and replies once it is.
    pub timeouts: crate::Timeouts,
}

impl Default for SpawnOptions {
    fn default() -> Self {
        SpawnOptions {
            socket: vembed_models::paths::socket_path(),
            host_bin: None,
            host_args: Vec::new(),
            host_env: Vec::new(),
            timeout: Duration::from_secs(60),
            timeouts: crate::Timeouts::default(),
        }
    }
}

impl SpawnOptions {
    /// The host binary a spawn would start: [`SpawnOptions::host_bin`],
    /// else `$VEMBED_HOST_BIN`, else `vembed-host` beside the current
    /// executable, else on `PATH`.
    pub fn resolve_host_bin(&self) -> Result<PathBuf> {
        find_host_bin(self)
    }
}

/// What a started host reported on its first line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartupStatus {
    /// It is listening.
    Ready {
        /// Its pid.
        pid: u32,
    },
    /// Another host holds the lock: it runs or is starting. Connect to it.
    AlreadyRunning,
}

fn find_host_bin(opts: &SpawnOptions) -> Result<PathBuf> {
    if let Some(p) = &opts.host_bin {
        return Ok(p.clone());
    }
    if let Some(p) = std::env::var_os("VEMBED_HOST_BIN").filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(p));
    }
    if let Some(candidate) = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|d| d.join("vembed-host")))
        .filter(|p| p.is_file())
    {
        return Ok(candidate);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path).map(|d| d.join("vembed-host")).find(|p| p.is_file()).ok_or_else(
        || Error::Spawn {
            message: "vembed-host not found beside this program, on PATH, or in $VEMBED_HOST_BIN"
                .into(),
        },
    )
}

fn log_file() -> Option<std::fs::File> {
    let dir = vembed_models::paths::state_dir();
    std::fs::create_dir_all(&dir).ok()?;
    std::fs::OpenOptions::new().create(true).append(true).open(dir.join("host.stderr.log")).ok()
}

/// Starts a host and waits for its one-line start-up status.
pub fn spawn_host(opts: &SpawnOptions) -> Result<StartupStatus> {
    let bin = find_host_bin(opts)?;
    let mut cmd = Command::new(&bin);
    cmd.arg("--socket").arg(&opts.socket).args(&opts.host_args);
    cmd.envs(opts.host_env.iter().map(|(k, v)| (k, v)));
    cmd.stdin(Stdio::null()).stdout(Stdio::piped());
    cmd.stderr(log_file().map_or_else(Stdio::null, Stdio::from));
    // Its own process group: a Ctrl-C meant for this client must not stop
    // the host every other client shares.
    cmd.process_group(0);
    let mut child =
        cmd.spawn().map_err(|e| Error::Spawn { message: format!("{}: {e}", bin.display()) })?;
    let stdout =
        child.stdout.take().ok_or_else(|| Error::Spawn { message: "no stdout pipe".into() })?;

    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let read = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(read.map(|_| line));
    });
    // Reap the child whenever it exits so it never lingers as a zombie.
    std::thread::spawn(move || {
        let _ = child.wait();
    });
    let line = match rx.recv_timeout(opts.timeout) {
        Ok(Ok(line)) => line,
        Ok(Err(e)) => return Err(Error::Spawn { message: format!("reading its status: {e}") }),
        Err(_) => {
            return Err(Error::StartTimeout {
                socket: opts.socket.clone(),
                waited_ms: opts.timeout.as_millis() as u64,
            });
        }
    };
    parse_status(line.trim(), &bin)
}

fn parse_status(line: &str, bin: &Path) -> Result<StartupStatus> {
    let rest = line.strip_prefix("vembed-host ").unwrap_or("");
    if let Some(pid) = rest.strip_prefix("ready ") {
        return Ok(StartupStatus::Ready { pid: pid.trim().parse().unwrap_or(0) });
    }
    if rest == "already-running" {
        return Ok(StartupStatus::AlreadyRunning);
    }
    if let Some(msg) = rest.strip_prefix("error ") {
        return Err(Error::Spawn { message: msg.to_string() });
    }
    let log = vembed_models::paths::state_dir().join("host.stderr.log");
    Err(Error::Spawn {
        message: format!("{} exited without a status line; see {}", bin.display(), log.display()),
    })
}

/// Tries `connect` (a connection and its handshake) until a host answers or
/// the deadline passes. A host that another process was starting may fail
/// or be on its way out; while nothing answers, a new start is tried every
/// half second (the lock keeps it to one host).
pub(crate) fn wait_for_host<C>(
    opts: &SpawnOptions,
    deadline: Instant,
    mut connect: impl FnMut() -> Result<C>,
) -> Result<C> {
    let socket = &opts.socket;
    let started = Instant::now();
    let mut last_spawn = Instant::now();
    let mut pause = Duration::from_millis(2);
    loop {
        match connect() {
            Ok(c) => return Ok(c),
            Err(Error::NotRunning { .. } | Error::Disconnected) if Instant::now() < deadline => {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(50));
                if last_spawn.elapsed() > Duration::from_millis(500) {
                    last_spawn = Instant::now();
                    spawn_host(opts)?;
                }
            }
            Err(Error::NotRunning { .. } | Error::Disconnected) => {
                return Err(Error::StartTimeout {
                    socket: socket.to_path_buf(),
                    waited_ms: started.elapsed().as_millis() as u64,
                });
            }
            Err(e) => return Err(e),
        }
    }
}
