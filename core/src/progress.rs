//! Progress reporting without printing: long stages call a [`Progress`] the caller provides (the CLI
//! turns it into progress bars; an embedding program may log it or ignore it).

/// Receives progress of long stages. Implementations must be cheap and thread-safe: `advance` is
/// called from worker threads.
pub trait Progress: Sync {
    /// A stage begins with `total` units of work (images, batches, layers).
    fn start(&self, stage: &str, total: u64) {
        let _ = (stage, total);
    }
    /// `n` more units are done.
    fn advance(&self, n: u64) {
        let _ = n;
    }
    /// The current stage is over.
    fn finish(&self) {}
    /// A line of news between stages (an epoch's losses); shown above the bar, or dropped.
    fn message(&self, text: &str) {
        let _ = text;
    }
    /// A stage of the run folder is complete on disk (its files and its `stages.json` record are
    /// written): a point where the process may be stopped and the run resumed.
    fn stage_complete(&self, stage: &str) {
        let _ = stage;
    }
}

/// Ignores all progress.
#[derive(Debug, Clone, Copy, Default)]
pub struct Silent;

impl Progress for Silent {}
