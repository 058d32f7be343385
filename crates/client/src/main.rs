//! `vembed`: the command-line client of the vembed host.

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
