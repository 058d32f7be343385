//! `vembed stop`: the host finishes requests in flight, then exits.

use super::*;

/// Runs `vembed stop`.
pub(super) fn run(cli: &Cli) -> anyhow::Result<()> {
    let socket = cli.spawn_options(None).socket;
    match Client::connect(&socket) {
        Ok(mut c) => {
            let pid = c.hello().pid;
            c.shutdown()?;
            wait_gone(pid, Duration::from_secs(30));
            outln!("stopped vembed host (pid {pid})")?;
        }
        Err(vembed::Error::NotRunning { .. }) => outln!("no vembed host is running")?,
        Err(e) => return Err(e.into()),
    }
    Ok(())
}

/// Waits for a process to exit (the host finishes requests in flight first).
fn wait_gone(pid: u32, limit: Duration) {
    let started = Instant::now();
    while PathBuf::from(format!("/proc/{pid}")).exists() && started.elapsed() < limit {
        // A zombie has no cmdline left; it is as good as gone.
        if std::fs::read(format!("/proc/{pid}/cmdline")).map(|c| c.is_empty()).unwrap_or(true) {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}
