//! Every command's output, under one rule for a closed pipe.
//!
//! std's `println!` panics when stdout is a pipe whose reader has gone
//! (`vembed status --json | head -c1`): exit 101 and a backtrace. Commands
//! write with [`outln!`] instead, which returns the write's
//! `io::Result` for the command to pass up with `?`; [`super::main`] ends
//! quietly, with status 0, when a broken pipe is anywhere in the error's
//! chain (as ripgrep does), and prints every other error. Diagnostics go
//! through [`errln!`] and [`err!`], which drop a failed write to stderr:
//! there is nowhere left to report it. `scripts/test` checks that no
//! command calls `print!`, `println!`, `eprint!` or `eprintln!`.

/// `println!` that returns the write's `io::Result` instead of panicking.
macro_rules! outln {
    ($($arg:tt)*) => {{
        use ::std::io::Write as _;
        writeln!(::std::io::stdout().lock(), $($arg)*)
    }};
}

/// `eprintln!` that drops a failed write instead of panicking.
macro_rules! errln {
    ($($arg:tt)*) => {{
        use ::std::io::Write as _;
        let _ = writeln!(::std::io::stderr().lock(), $($arg)*);
    }};
}

/// `eprint!` that drops a failed write instead of panicking.
macro_rules! err {
    ($($arg:tt)*) => {{
        use ::std::io::Write as _;
        let _ = write!(::std::io::stderr().lock(), $($arg)*);
    }};
}

/// Whether `e` comes from a write to a pipe whose reader has gone: an
/// `io::Error`, or a `serde_json` error around one, anywhere in its chain.
pub(super) fn is_broken_pipe(e: &anyhow::Error) -> bool {
    use std::io::ErrorKind::BrokenPipe;
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>().is_some_and(|e| e.kind() == BrokenPipe)
            || c.downcast_ref::<serde_json::Error>()
                .is_some_and(|e| e.io_error_kind() == Some(BrokenPipe))
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_broken_pipe_is_found_in_any_form() {
        use std::io::{Error, ErrorKind};
        let pipe = || Error::from(ErrorKind::BrokenPipe);
        assert!(super::is_broken_pipe(&anyhow::Error::from(pipe())));
        assert!(super::is_broken_pipe(&anyhow::Error::from(pipe()).context("writing")));
        struct Closed;
        impl std::io::Write for Closed {
            fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
                Err(Error::from(ErrorKind::BrokenPipe))
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let json = serde_json::to_writer(Closed, &[1.0f32]).unwrap_err();
        assert!(super::is_broken_pipe(&anyhow::Error::from(json)));
        assert!(!super::is_broken_pipe(&anyhow::Error::from(Error::from(ErrorKind::NotFound))));
        assert!(!super::is_broken_pipe(&anyhow::anyhow!("broken pipe")));
    }
}
