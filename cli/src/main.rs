//! `hudd`: heatmap-based unsupervised debugging of DNNs. This file only parses arguments and maps
//! errors to exit codes; each subcommand lives in `commands/`.

mod commands;
mod progress;

use std::process::ExitCode;

use clap::Parser;

/// mimalloc keeps freed memory for reuse: training allocates and frees tensors of tens of MB per
/// step, which glibc returns to the system and page-faults back in each time.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = commands::Cli::parse();
    match commands::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err}");
            for cause in err.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            ExitCode::from(1)
        }
    }
}
