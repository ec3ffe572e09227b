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

/// `mi_option_purge_decommits` in the same enum (default 1: a purge decommits the pages; the test
/// below checks the index by its default).
const PURGE_DECOMMITS: libmimalloc_sys::mi_option_t = 5;

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
///
/// mimalloc still purges within a stage, delay or not (its statistics: 1,200 purges of 4.2 GiB in
/// all during a 13 s `hudd bench heatmaps` of EfficientNet-B0): those purges only mark the pages
/// reusable (`MADV_FREE`) instead of decommitting them (`MADV_DONTNEED`), whose pages fault in
/// again, zeroed, at their next use. EfficientNet-B0's heatmaps of 64 images at 224² spent 14 s
/// of their 18 s in the kernel that way (`perf`: `clear_page_erms`); with resets, 4.6 s of 13 s.
#[allow(unsafe_code)]
fn delay_returning_freed_memory() {
    // SAFETY: as in `keep_freed_memory`.
    unsafe {
        libmimalloc_sys::mi_option_set(PURGE_DELAY, 60_000);
        libmimalloc_sys::mi_option_set(PURGE_DECOMMITS, 0);
    }
}

/// Returns the memory freed so far to the system, on every thread of the current rayon pool (each
/// holds its own free pages) and this one: decommitted, so that it leaves the process's resident
/// memory at once, whatever the purges within the stage did.
#[allow(unsafe_code)]
pub fn return_freed_memory() {
    // SAFETY: `mi_collect` only releases memory that mimalloc holds and no allocation uses; the
    // option is one integer that mimalloc reads at each purge.
    unsafe {
        let within_stages = libmimalloc_sys::mi_option_get(PURGE_DECOMMITS);
        libmimalloc_sys::mi_option_set(PURGE_DECOMMITS, 1);
        rayon::broadcast(|_| libmimalloc_sys::mi_collect(true));
        libmimalloc_sys::mi_collect(true);
        libmimalloc_sys::mi_option_set(PURGE_DECOMMITS, within_stages);
    }
}

/// Whether a panic is the standard library's "failed printing to stdout: Broken pipe".
fn is_closed_pipe(info: &std::panic::PanicHookInfo<'_>) -> bool {
    let payload = info.payload();
    let text = payload
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| payload.downcast_ref::<&str>().copied())
        .unwrap_or_default();
    text.starts_with("failed printing to std") && text.contains("Broken pipe")
}

fn main() -> ExitCode {
    // The engine's panics that hudd turns into errors are reported as those errors, once.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        // Output piped into a reader that stopped (`hudd inspect --ops | head`): the standard
        // library's print panics on the closed pipe; hudd stops quietly instead, with the status
        // of a process ended by SIGPIPE (128 + 13), as other Unix tools do.
        if is_closed_pipe(info) {
            std::process::exit(141);
        }
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
        // SAFETY: as above.
        let decommits = unsafe { libmimalloc_sys::mi_option_get(super::PURGE_DECOMMITS) };
        assert_eq!(decommits, 1, "mimalloc 3's default: purges decommit; another option has this index");
    }
}
