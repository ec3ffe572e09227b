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

/// `mi_option_purge_delay` in mimalloc 3's `mi_option_e` (libmimalloc-sys names no constant for
/// it; the test below checks the index by its default, 1000 ms).
const PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Never hands freed memory back to the system: a training step frees and reallocates the same
/// large tensors, and purging them made the pages fault in again (about 20 % of an epoch). The
/// process's memory stays at its peak, which it reaches anyway.
#[allow(unsafe_code)]
fn keep_freed_memory() {
    // SAFETY: sets one integer option, which mimalloc reads at every purge decision.
    unsafe { libmimalloc_sys::mi_option_set(PURGE_DELAY, -1) };
}

/// For the commands that do not train: freed memory waits a minute for reuse (a stage's batches
/// reuse it; purging it at once, mimalloc's default, made ResNet-18's heatmaps 35 % slower), and
/// [`return_freed_memory`] hands it back when a stage completes, so that one stage's leftovers do
/// not add to the next stage's peak (kept for good, `hudd analyze` at 224² peaked at 17 GB instead
/// of 8).
#[allow(unsafe_code)]
fn delay_returning_freed_memory() {
    // SAFETY: as in `keep_freed_memory`.
    unsafe { libmimalloc_sys::mi_option_set(PURGE_DELAY, 60_000) };
}

/// Returns the memory freed so far to the system, on every thread of the current rayon pool (each
/// holds its own free pages) and this one.
#[allow(unsafe_code)]
pub fn return_freed_memory() {
    // SAFETY: `mi_collect` only releases memory that mimalloc holds and no allocation uses.
    rayon::broadcast(|_| unsafe { libmimalloc_sys::mi_collect(true) });
    unsafe { libmimalloc_sys::mi_collect(true) };
}

fn main() -> ExitCode {
    // The engine's panics that hudd turns into errors are reported as those errors, once.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if !hudd_core::model::engine_panic_is_caught() {
            default_hook(info);
        }
    }));
    let cli = commands::Cli::parse();
    if cli.trains() {
        keep_freed_memory();
    } else {
        delay_returning_freed_memory();
    }
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

#[cfg(test)]
mod tests {
    #[test]
    #[allow(unsafe_code)]
    fn the_purge_delay_option_is_the_one_set() {
        // SAFETY: reads one integer option.
        let default = unsafe { libmimalloc_sys::mi_option_get(super::PURGE_DELAY) };
        assert_eq!(default, 1000, "mimalloc 3's default purge delay; another option has this index");
        super::keep_freed_memory();
        assert_eq!(unsafe { libmimalloc_sys::mi_option_get(super::PURGE_DELAY) }, -1);
    }
}
