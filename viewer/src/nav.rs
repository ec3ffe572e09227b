//! Navigation: pages, and what each key does.
//!
//! | key | overview | cluster page | all images |
//! |---|---|---|---|
//! | → / ← | open the first / last cluster of the layer | next / previous cluster | — |
//! | j / k | — | next / previous image | — |
//! | space | — | play / pause the flipbook | — |
//! | x | — | select / unselect the current image | — |
//! | z | — | zoom the stage's pictures | — |
//! | ? | help | help | help |
//! | Esc | close help | close help, else back to where you came from | close help, else the overview |

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
    /// Every clustered (Wrong) image of a layer, filtered and sorted.
    Images {
        /// Layer index.
        layer: usize,
    },
}

/// Where the viewer is: the page, the layer the overview shows and the member shown. Every view
/// has a URL fragment ([`Route::hash`]), so that a link opens it and Back/Forward work:
/// `#/layer/3` (the overview of layer 3), `#/layer/3/cluster/2` (cluster id 2 of layer 3),
/// `#/layer/3/cluster/2/image/5` (its fifth member, the medoid being the first), `#/layer/3/images`
/// (every clustered image of layer 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    /// The page.
    pub page: Page,
    /// The layer the overview shows (for a cluster page, its layer).
    pub layer: usize,
    /// The member shown on a cluster page (index into its members).
    pub image: usize,
}

impl Route {
    /// The URL fragment, `#/layer/L[/cluster/ID[/image/N]]` (cluster id and image 1-based) or
    /// `#/layer/L/images`.
    pub fn hash(&self, report: &Report) -> String {
        match self.page {
            Page::Overview => format!("#/layer/{}", self.layer),
            Page::Images { layer } => format!("#/layer/{layer}/images"),
            Page::Cluster { layer, cluster } => {
                let id = cluster_id(report, layer, cluster).unwrap_or(cluster + 1);
                if self.image == 0 {
                    format!("#/layer/{layer}/cluster/{id}")
                } else {
                    format!("#/layer/{layer}/cluster/{id}/image/{}", self.image + 1)
                }
            }
        }
    }

    /// The route a fragment names, or `None` when it names nothing in `report` (an empty or
    /// foreign fragment, a layer, cluster or image that does not exist).
    pub fn parse(hash: &str, report: &Report) -> Option<Route> {
        let parts: Vec<&str> = hash.trim_start_matches('#').trim_start_matches('/').split('/').collect();
        let number = |i: usize| parts.get(i).and_then(|p| p.parse::<usize>().ok());
        if parts.first() != Some(&"layer") {
            return None;
        }
        let layer = number(1)?;
        let layers = report.analysis.as_ref().map_or(0, |a| a.layers.len());
        if layer >= layers {
            return None;
        }
        match parts.get(2) {
            None => (parts.len() == 2).then_some(Route { page: Page::Overview, layer, image: 0 }),
            Some(&"images") => (parts.len() == 3).then_some(Route { page: Page::Images { layer }, layer, image: 0 }),
            Some(&"cluster") => {
                let id = number(3)?;
                let clusters = &report.analysis.as_ref()?.layers[layer].clusters;
                let cluster = clusters.iter().position(|c| c.cluster_id == id)?;
                let image = match (parts.get(4), parts.len()) {
                    (None, 4) => 0,
                    (Some(&"image"), 6) => {
                        number(5)?.checked_sub(1).filter(|&i| i < clusters[cluster].members.len())?
                    }
                    _ => return None,
                };
                Some(Route { page: Page::Cluster { layer, cluster }, layer, image })
            }
            _ => None,
        }
    }
}

/// The id of cluster `cluster` (an index) of layer `layer`.
pub fn cluster_id(report: &Report, layer: usize, cluster: usize) -> Option<usize> {
    report.analysis.as_ref()?.layers.get(layer)?.clusters.get(cluster).map(|c| c.cluster_id)
}

/// The keys, for the help.
pub const KEYS: &[(&str, &str)] = &[
    ("→ / ←", "next / previous cluster (from the overview: open the first / last)"),
    ("j / k", "next / previous image of the cluster"),
    ("space", "play / pause the flipbook"),
    ("x", "select / unselect the current image (shift-click selects a range); export the selection as CSV"),
    ("z", "zoom the image, heatmap and overlay to full size (or click them)"),
    ("?", "show / hide this help"),
    ("Esc", "close the help, or back to where you came from (the overview or all images)"),
];

/// Number of clusters of a layer.
pub fn clusters(report: &Report, layer: usize) -> usize {
    report.analysis.as_ref().and_then(|a| a.layers.get(layer)).map_or(0, |l| l.clusters.len())
}

/// Number of members on `page` (0 on the overview and the images page).
pub fn members(report: &Report, page: Page) -> usize {
    match page {
        Page::Overview | Page::Images { .. } => 0,
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

/// The page after moving `delta` clusters from `page` (shown layer `layer`), or `None` at an end
/// (and on the images page).
pub fn next_cluster(report: &Report, page: Page, layer: usize, delta: isize) -> Option<Page> {
    match page {
        Page::Images { .. } => None,
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
        "x" => {
            let Page::Cluster { layer, cluster } = page else { return false };
            let member = report
                .analysis
                .as_ref()
                .and_then(|a| a.layers.get(layer))
                .and_then(|l| l.clusters.get(cluster))
                .and_then(|c| c.members.get(ui.image.get_untracked()))
                .map(|m| m.image);
            if let Some(image) = member {
                ui.selected.update(|s| {
                    if !s.remove(&(layer, image)) {
                        s.insert((layer, image));
                    }
                });
            }
            true
        }
        "z" => {
            let on_cluster = matches!(page, Page::Cluster { .. });
            if on_cluster {
                ui.zoom.update(|z| *z = !*z);
            }
            on_cluster
        }
        "?" => {
            ui.help.update(|h| *h = !*h);
            true
        }
        "Escape" => {
            if ui.help.get_untracked() {
                ui.help.set(false);
            } else if matches!(page, Page::Cluster { .. }) {
                ui.back();
            } else if let Page::Images { layer } = page {
                ui.apply(Route { page: Page::Overview, layer, image: 0 });
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
