//! The `editfeed` binary: parses the command line and runs a command from the library.

mod cli;

use clap::Parser;

fn main() -> std::process::ExitCode {
    editfeed::allocator::keep_freed_memory();
    let cli = cli::Cli::parse();
    match cli::run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", editfeed::error_report(e.as_ref()));
            std::process::ExitCode::FAILURE
        }
    }
}
