//! The `ras` binary: parse arguments, run, print the error chain once.
mod cli;

use std::process::ExitCode;

fn main() -> ExitCode {
    ras::threads::pin();
    match cli::run() {
        Ok(status) => status.into(),
        Err(err) => {
            eprintln!("error: {err:#}");
            ras::exit::ExitStatus::of_error(&err).into()
        }
    }
}
