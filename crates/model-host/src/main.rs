//! `vembed-host`: the per-user embedding host. Clients start it on demand;
//! run it by hand with `--log-stderr` to watch it.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use anyhow::Context;
use clap::{CommandFactory, FromArgMatches, Parser};
use vembed_host::{self as server, HostConfig, Registry};
use vembed_models::{SETTINGS, Settings};

/// The vembed host: loads each configured model once and serves embeddings
/// to every client of this user over a Unix socket.
///
/// On start it prints one line on stdout: `vembed-host ready PID`,
/// `vembed-host already-running`, or `vembed-host error MESSAGE`.
///
/// Every setting is also a flag (`--max-batch-tokens 2048`), added from the
/// settings' one declaration ([`vembed_models::SETTINGS`]).
#[derive(Parser, Debug)]
#[command(version, args_override_self = true)]
struct Args {
    /// Socket path [default: $XDG_RUNTIME_DIR/vembed/host.sock].
    #[arg(long, env = "VEMBED_SOCKET")]
    socket: Option<PathBuf>,
    /// Also load this model (repeatable); requests name it with --model.
    #[arg(long = "model")]
    models: Vec<String>,
    /// Log to stderr instead of the log file in the state dir.
    #[arg(long)]
    log_stderr: bool,
}

fn main() -> ExitCode {
    match run() {
        Ok(code) => code,
        Err(e) => {
            tracing::error!("{e:#}");
            println!("vembed-host error {}", format!("{e:#}").replace('\n', " "));
            eprintln!("vembed-host: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The host's flags: its own, and one per setting.
fn command() -> clap::Command {
    SETTINGS.iter().fold(Args::command(), |cmd, setting| {
        // Once per setting for the life of the process: clap keeps names
        // as `&'static str`.
        let flag: &'static str = Box::leak(setting.flag().into_boxed_str());
        cmd.arg(clap::Arg::new(setting.key).long(flag).value_name("VALUE").help(setting.help()))
    })
}

fn run() -> anyhow::Result<ExitCode> {
    let matches = command().get_matches();
    let args = Args::from_arg_matches(&matches)?;
    // Flags win over the environment and the config file.
    let mut settings = Settings::load()?;
    for setting in SETTINGS {
        if let Some(v) = matches.get_one::<String>(setting.key) {
            settings.set(setting.key, v).map_err(anyhow::Error::msg)?;
        }
    }

    server::tune_allocator();
    server::raise_fd_limit();
    let threads = vembed_host::thread_count(settings.threads);
    // SAFETY: no other thread exists yet, so nothing reads the environment concurrently.
    unsafe { std::env::set_var("RAYON_NUM_THREADS", threads.to_string()) };
    vembed_host::init_thread_pool(threads);

    let _log_guard = init_logging(args.log_stderr)?;
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(sig, stop.clone()).context("installing signal handlers")?;
    }

    let socket = args.socket.unwrap_or_else(vembed_models::paths::socket_path);
    let Some(lock) = server::acquire(&socket)? else {
        tracing::info!("another host holds the lock for {}", socket.display());
        println!("vembed-host already-running");
        return Ok(ExitCode::SUCCESS);
    };
    let started = std::time::Instant::now();
    // HTTP first: a port in use or a bad token file stops the start, before
    // the models load.
    let http = server::bind_http(&settings)?;
    let registry = Registry::load(&settings, &args.models)?;
    let listener = server::bind(&socket, &lock)?;
    tracing::info!(
        "serving {} on {} (pid {}, {threads} threads, ready in {:?})",
        registry.all().iter().map(|m| m.name.clone()).collect::<Vec<_>>().join(", "),
        socket.display(),
        std::process::id(),
        started.elapsed()
    );
    println!("vembed-host ready {}", std::process::id());
    std::io::stdout().flush().ok();
    detach_stdout();

    let mut config = HostConfig::new(socket, settings);
    config.extra_models = args.models;
    let reason = server::serve(listener, config, registry, stop, http);
    tracing::info!("exiting: {reason:?}");
    drop(lock);
    Ok(ExitCode::SUCCESS)
}

/// Points stdout at /dev/null once the start-up line is written, so a client
/// that closed its end of the pipe can never break a later write.
fn detach_stdout() {
    if let Ok(null) = std::fs::OpenOptions::new().write(true).open("/dev/null") {
        use std::os::fd::AsRawFd;
        // SAFETY: dup2 onto fd 1 atomically replaces stdout; both fds are valid.
        unsafe { libc::dup2(null.as_raw_fd(), 1) };
    }
}

fn init_logging(
    to_stderr: bool,
) -> anyhow::Result<Option<tracing_appender::non_blocking::WorkerGuard>> {
    let filter = tracing_subscriber::EnvFilter::try_from_env("VEMBED_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    if to_stderr {
        tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
        return Ok(None);
    }
    let dir = vembed_models::paths::state_dir();
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let (writer, guard) =
        tracing_appender::non_blocking(tracing_appender::rolling::never(&dir, "host.log"));
    tracing_subscriber::fmt().with_env_filter(filter).with_ansi(false).with_writer(writer).init();
    Ok(Some(guard))
}
