//! Navigation: pages, and what each key does.
//!
//! | key | overview | cluster page |
//! |---|---|---|
//! | → / ← | open the first / last cluster of the layer | next / previous cluster |
//! | j / k | — | next / previous image |
//! | space | — | play / pause the flipbook |
//! | ? | help | help |
//! | Esc | close help | close help, else back to the overview |

use hudd_report::Report;
use leptos::prelude::*;

use crate::Ui;

/// A page of the viewer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Page {
    /// The overview.
    Overview,
    /// One cluster: `layer` indexes the analysis' layers, `cluster` that layer's clusters.
    Cluster {
        /// Layer index.
        layer: usize,
        /// Cluster index (not its id).
        cluster: usize,
    },
}

/// The keys, for the help.
pub const KEYS: &[(&str, &str)] = &[
    ("→ / ←", "next / previous cluster (from the overview: open the first / last)"),
    ("j / k", "next / previous image of the cluster"),
    ("space", "play / pause the flipbook"),
    ("?", "show / hide this help"),
    ("Esc", "close the help, or back to the overview"),
];

/// Number of clusters of a layer.
pub fn clusters(report: &Report, layer: usize) -> usize {
    report.analysis.as_ref().and_then(|a| a.layers.get(layer)).map_or(0, |l| l.clusters.len())
}

/// Number of members on `page` (0 on the overview).
pub fn members(report: &Report, page: Page) -> usize {
    match page {
        Page::Overview => 0,
        Page::Cluster { layer, cluster } => report
            .analysis
            .as_ref()
            .and_then(|a| a.layers.get(layer))
            .and_then(|l| l.clusters.get(cluster))
            .map_or(0, |c| c.members.len()),
    }
}

/// `i` moved by `delta` among `n` items, wrapping around.
pub fn step(i: usize, delta: isize, n: usize) -> usize {
    if n == 0 {
        return 0;
    }
    (i as isize + delta).rem_euclid(n as isize) as usize
}

/// The page after moving `delta` clusters from `page` (shown layer `layer`), or `None` at an end.
pub fn next_cluster(report: &Report, page: Page, layer: usize, delta: isize) -> Option<Page> {
    match page {
        Page::Overview => {
            let n = clusters(report, layer);
            (n > 0).then(|| Page::Cluster { layer, cluster: if delta > 0 { 0 } else { n - 1 } })
        }
        Page::Cluster { layer, cluster } => {
            let to = cluster as isize + delta;
            (to >= 0 && (to as usize) < clusters(report, layer))
                .then_some(Page::Cluster { layer, cluster: to as usize })
        }
    }
}

/// Handles a key; returns whether it was a shortcut (then the browser's default is prevented).
pub fn on_key(report: &Report, ui: &Ui, key: &str) -> bool {
    let page = ui.page.get_untracked();
    match key {
        "ArrowRight" | "ArrowLeft" => {
            let delta = if key == "ArrowRight" { 1 } else { -1 };
            if let Some(p) = next_cluster(report, page, ui.layer.get_untracked(), delta) {
                ui.go(p);
            }
            true
        }
        "j" | "k" => {
            let n = members(report, page);
            ui.image.update(|i| *i = step(*i, if key == "j" { 1 } else { -1 }, n));
            n > 0
        }
        " " => {
            if matches!(page, Page::Cluster { .. }) {
                ui.playing.update(|p| *p = !*p);
                true
            } else {
                false
            }
        }
        "?" => {
            ui.help.update(|h| *h = !*h);
            true
        }
        "Escape" => {
            if ui.help.get_untracked() {
                ui.help.set(false);
            } else {
                ui.go(Page::Overview);
            }
            true
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_wrap_around() {
        assert_eq!(step(0, -1, 3), 2);
        assert_eq!(step(2, 1, 3), 0);
        assert_eq!(step(1, 1, 3), 2);
        assert_eq!(step(5, 1, 0), 0);
    }
}
