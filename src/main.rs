//! The `ras` binary: parse arguments, run, print the error chain once.
mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
