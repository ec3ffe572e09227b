//! Every clustered (Wrong) image of a layer in one grid: filtered and sorted by any metadata
//! column, expected or predicted class, cluster, re-cut cluster or distance to the medoid; a click
//! opens the image on its cluster's page.

use std::sync::Arc;

use hudd_report::Report;
use leptos::prelude::*;

use super::grid::{GridControls, ImageGrid, Open};
use crate::members;
use crate::nav::{Page, Route};
use crate::Ui;

/// The page of every clustered image of layer `layer` (index).
#[component]
pub fn ImagesPage(report: Arc<Report>, layer: usize) -> impl IntoView {
    let ui = expect_context::<Ui>();
    let Some(analysis) = report.analysis.as_ref() else { return ().into_any() };
    let Some(l) = analysis.layers.get(layer).cloned() else { return ().into_any() };
    let n: usize = l.clusters.iter().map(|c| c.members.len()).sum();
    let has_tree = l.dendrogram.is_some();
    let stored_k = l.k;
    let name = l.name.clone();
    let rows = {
        let l = l.clone();
        Signal::derive(move || {
            let labels = super::tree::live_cut(&ui, &l).and_then(|k| l.dendrogram.as_ref().map(|t| t.cut(k)));
            members::layer_rows(&l, labels.as_deref())
        })
    };
    let mut keys: Vec<String> = members::FIXED_KEYS.iter().map(|k| k.to_string()).collect();
    if has_tree {
        keys.push("cut".into());
    }
    keys.extend(analysis.metadata_columns.iter().cloned());
    view! {
        <main class="images-page" data-testid="images-page">
            <nav class="cluster-nav">
                <button on:click=move |_| {
                    ui.apply(Route { page: Page::Overview, layer, image: 0 })
                }>"↑ overview"</button>
            </nav>
            <h2 data-testid="images-title">"Layer " {name} " — all " {n} " clustered images"</h2>
            <p class="muted">
                "Every Wrong test image that was clustered. Click an image to open it on its cluster's page \
                 (Esc comes back here); shift-click selects a range. Key "
                <code>"cluster"</code>
                " is the stored cluster"
                {has_tree.then_some(", ")}
                {has_tree.then(|| view! { <code>"cut"</code> })}
                {has_tree.then_some(move || match ui.cut.get().filter(|&k| k != stored_k) {
                    Some(k) => format!(" the cluster in the live re-cut at k = {k}"),
                    None => " the cluster in a live re-cut (move the overview's cut slider)".to_string(),
                })}
                "."
            </p>
            <GridControls report=report.clone() keys />
            <ImageGrid report=report.clone() layer rows open=Open::ClusterPage />
        </main>
    }
    .into_any()
}
