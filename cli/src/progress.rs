//! Progress bars for the library's [`hudd_core::Progress`] callbacks.

use std::sync::Mutex;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// One bar per stage, drawn on stderr (hidden when stderr is not a terminal or with `--quiet`).
pub struct Bars {
    bar: Mutex<Option<ProgressBar>>,
    quiet: bool,
}

impl Bars {
    pub fn new(quiet: bool) -> Self {
        Bars { bar: Mutex::new(None), quiet }
    }
}

impl hudd_core::Progress for Bars {
    fn start(&self, stage: &str, total: u64) {
        let target = if self.quiet { ProgressDrawTarget::hidden() } else { ProgressDrawTarget::stderr() };
        let bar = ProgressBar::with_draw_target(Some(total), target);
        if let Ok(style) = ProgressStyle::with_template("{prefix:>20} [{bar:30}] {pos}/{len} {per_sec} eta {eta}") {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_prefix(stage.to_string());
        if let Ok(mut b) = self.bar.lock() {
            *b = Some(bar);
        }
    }

    fn advance(&self, n: u64) {
        if let Ok(b) = self.bar.lock() {
            if let Some(bar) = b.as_ref() {
                bar.inc(n);
            }
        }
    }

    fn finish(&self) {
        if let Ok(mut b) = self.bar.lock() {
            if let Some(bar) = b.take() {
                bar.finish_and_clear();
            }
        }
    }

    fn message(&self, text: &str) {
        if self.quiet {
            return;
        }
        // A hidden bar (stderr not a terminal: a log file, CI) would drop the line.
        match self.bar.lock().ok().as_ref().and_then(|b| b.as_ref().cloned()) {
            Some(bar) if !bar.is_hidden() => bar.println(text),
            _ => eprintln!("{text}"),
        }
    }

    /// `HUDD_PAUSE_AFTER=<stage>` (a test hook) stops the process here, forever, after saying so on
    /// stderr: a test then kills it at a known point and checks that the rerun resumes.
    fn stage_complete(&self, stage: &str) {
        crate::return_freed_memory();
        if std::env::var("HUDD_PAUSE_AFTER").is_ok_and(|s| s == stage) {
            eprintln!("hudd: paused after stage {stage} (HUDD_PAUSE_AFTER)");
            loop {
                std::thread::sleep(std::time::Duration::from_secs(3600));
            }
        }
    }
}
