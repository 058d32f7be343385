//! Every command's output, under one rule for a closed pipe.
//!
//! std's `println!` panics when stdout is a pipe whose reader has gone
//! (`vembed status --json | head -c1`): exit 101 and a backtrace. Commands
//! write with [`outln!`] and [`out!`] instead, which return the write's
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

/// `print!` that returns the write's `io::Result` instead of panicking.
macro_rules! out {
    ($($arg:tt)*) => {{
        use ::std::io::Write as _;
        write!(::std::io::stdout().lock(), $($arg)*)
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
