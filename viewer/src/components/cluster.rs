//! A cluster's page: flipbook stage, member grid (medoid first, lazily loaded), overlay controls,
//! metadata, explanations, unsafe set and retraining gain, reviewer notes.

use std::sync::Arc;

use hudd_report::Report;
use leptos::prelude::*;

use super::grid::{slider, GridControls, ImageGrid, Open};
use super::{percent, short, HistogramChart, Picture};
use crate::nav::{self, Page};
use crate::notes::Note;
use crate::Ui;

/// The page of cluster `cluster` (index) of layer `layer` (index).
#[component]
pub fn ClusterPage(report: Arc<Report>, layer: usize, cluster: usize) -> impl IntoView {
    let ui = expect_context::<Ui>();
    let Some(analysis) = report.analysis.as_ref() else { return ().into_any() };
    let Some(l) = analysis.layers.get(layer) else { return ().into_any() };
    let Some(c) = l.clusters.get(cluster) else { return ().into_any() };
    let (layer_name, cluster_id, n) = (l.name.clone(), c.cluster_id, c.members.len());
    let has_heatmaps = c.members.iter().any(|m| m.heatmap.is_some());
    // The layer whose heatmaps are shown, when it is not the clustered one.
    let heat_layer = l.heatmap_layer.clone().filter(|h| *h != l.name);
    let columns = analysis.metadata_columns.clone();
    let members = c.members.clone();
    let r = report.clone();
    let prev = nav::next_cluster(&report, Page::Cluster { layer, cluster }, layer, -1);
    let next = nav::next_cluster(&report, Page::Cluster { layer, cluster }, layer, 1);

    // The stage: the current member, large.
    let stage = {
        let (r, members, columns) = (r.clone(), members.clone(), columns.clone());
        move || {
            let i = ui.image.get().min(members.len().saturating_sub(1));
            let Some(m) = members.get(i) else { return ().into_any() };
            let Some(im) = r.images.get(m.image) else { return ().into_any() };
            let rows = columns
                .iter()
                .zip(im.metadata.iter())
                .map(|(k, v)| view! { <tr><th>{k.clone()}</th><td>{v.clone()}</td></tr> })
                .collect_view();
            let zoom = move |_| ui.zoom.update(|z| *z = !*z);
            let name = im.name.clone();
            let panels = m.heatmap.clone().map(|h| {
                view! {
                    <figure class="panel" data-testid="panel-heatmap" on:click=zoom>
                        <span class="stack heat-only">
                            <img class="thumb" src=h.clone() alt="heatmap" />
                        </span>
                        <figcaption>"heatmap"</figcaption>
                    </figure>
                    <figure class="panel" data-testid="panel-overlay" on:click=zoom>
                        <span class="stack">
                            <img class="thumb" src=im.thumbnail.clone() alt="" />
                            <img class="heatmap" src=h alt="" style:opacity=move || ui.opacity.get().to_string() />
                        </span>
                        <figcaption>"overlay"</figcaption>
                    </figure>
                }
            });
            view! {
                <div class="stage" class:zoomed=move || ui.zoom.get() data-testid="stage">
                    <figure class="panel" data-testid="panel-image" on:click=zoom>
                        <Picture src=im.thumbnail.clone() heatmap=m.heatmap.clone() alt=im.name.clone() lazy=false />
                        <figcaption>"image"</figcaption>
                    </figure>
                    {panels}
                    <div class="caption">
                        <p class="name" data-testid="stage-name">{im.name.clone()}</p>
                        <p>
                            {format!("image {} of {}", i + 1, members.len())}
                            {(i == 0).then_some(" · medoid")}
                        </p>
                        <p>"expected " <b>{im.expected.clone()}</b> ", predicted " <b>{im.predicted.clone()}</b></p>
                        <p>"distance to the medoid " {short(m.distance_to_medoid)}</p>
                        <table class="metadata" data-testid="metadata">{rows}</table>
                        <label class="image-note">
                            "note on this image "
                            <textarea
                                data-testid="image-note"
                                prop:value={
                                    let name = name.clone();
                                    move || ui.notes.with(|n| n.image(&name))
                                }
                                on:input=move |e| ui.notes.update(|n| n.set_image(&name, event_target_value(&e)))
                            ></textarea>
                        </label>
                    </div>
                </div>
            }
            .into_any()
        }
    };

    // The member grid: filtered, sorted; click shows, shift-click selects a range, x the current.
    let rows = {
        let l = l.clone();
        Signal::derive(move || {
            let mut rows = crate::members::cluster_rows(&l.clusters[cluster], cluster);
            if let Some(labels) = super::tree::live_cut(&ui, &l).and_then(|k| l.dendrogram.as_ref().map(|t| t.cut(k))) {
                crate::members::with_cut(&mut rows, &l, &labels);
            }
            rows
        })
    };

    let explanations = c
        .explanations
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let verdict = match e.explains {
                Some(true) => "✓ explains",
                Some(false) => "—",
                None => "",
            };
            view! {
                <tr class:explains=e.explains == Some(true)>
                    <td class="num">{i + 1}</td>
                    <td>{e.column.clone()}</td>
                    <td>{e.kind.name()}</td>
                    <td class="num">{e.separation.map(|s| format!("{s:.2}"))}</td>
                    <td class="num">{e.p_value.map(|p| if p > 0.0 && p < 1e-3 { format!("{p:.0e}") } else { short(p) })}</td>
                    <td data-testid="verdict">{verdict}</td>
                    <td>{e.histogram.clone().map(|h| view! { <HistogramChart histogram=h /> })}</td>
                    <td>{e.summary.clone()}</td>
                    <td class="num" title="the paper's RQ1 figure: variance (impurity) within the cluster against all clustered images">
                        {percent(e.reduction)}
                    </td>
                </tr>
            }
        })
        .collect_view();
    let rule = analysis.explanation_rule.clone();
    let unexplained = c.unexplained().then(|| {
        view! {
            <p class="unexplained" data-testid="unexplained">
                "Unexplained: no metadata column sets these images apart from the other clustered images"
                {rule.as_ref().map(|r| format!(" (separation ≥ {}, p < {} after Bonferroni)", r.separation_min, r.alpha))}
                ". The rows below are the closest columns; look at the images for a cause the metadata does not record."
            </p>
        }
    });

    let unsafe_images = report
        .unsafe_set
        .as_ref()
        .filter(|u| u.layer == layer_name)
        .and_then(|u| u.clusters.iter().find(|uc| uc.cluster_id == cluster_id))
        .map(|uc| {
            let thumbs = uc
                .images
                .iter()
                .enumerate()
                .filter_map(|(k, i)| r.images.get(*i).map(|im| (k, im)))
                .map(|(k, im)| {
                    let distance = uc.distances.get(k).copied();
                    let title = match distance {
                        Some(d) => format!("{} (distance {})", im.name, short(d)),
                        None => im.name.clone(),
                    };
                    view! {
                        <figure class="unsafe-image" data-testid="unsafe-image" title=title>
                            <img src=im.thumbnail.clone() alt=im.name.clone() loading="lazy" />
                            <figcaption>
                                {distance.map(short)}
                                {(!im.expected.is_empty()).then(|| format!(" · {}", im.expected))}
                            </figcaption>
                        </figure>
                    }
                })
                .collect_view();
            let quota =
                (uc.quota > 0).then(|| format!(" of a quota of {} (2 × {} test members)", uc.quota, uc.test_members));
            view! {
                <section class="unsafe" data-testid="unsafe-set">
                    <h3>
                        "Unsafe set: " {uc.images.len()} " improvement images assigned to this cluster" {quota}
                    </h3>
                    <p class="muted">
                        "Nearest first; the number under each image is its distance to the cluster's nearest member. "
                        "Label these images and retrain (hudd bootstrap, hudd retrain)."
                        {uc.gif.clone().map(|g| view! { " " <a href=g target="_blank">"GIF"</a> })}
                    </p>
                    <div class="unsafe-grid">{thumbs}</div>
                </section>
            }
        });
    let gain = report
        .retraining
        .as_ref()
        .filter(|_| report.unsafe_set.as_ref().is_some_and(|u| u.layer == layer_name))
        .and_then(|t| t.clusters.iter().find(|g| g.cluster_id == cluster_id).map(|g| (t, g.gain_pp)))
        .map(|(t, gain)| {
            view! {
                <p class="gain" data-testid="retraining-gain">
                    {format!(
                        "Retraining: {gain:+.2} percentage points on this cluster's kind of error (test accuracy {} → {})",
                        percent(t.accuracy_before),
                        percent(t.accuracy_after),
                    )}
                </p>
            }
        });

    let keys: Vec<String> = crate::members::FIXED_KEYS
        .iter()
        .map(|k| k.to_string())
        .chain(l.dendrogram.is_some().then(|| "cut".to_string()))
        .chain(columns.iter().cloned())
        .collect();

    let note_name = layer_name.clone();
    let note = Memo::new(move |_| ui.notes.with(|n| n.get(&note_name, cluster_id)));
    let (set_label_layer, set_text_layer) = (layer_name.clone(), layer_name.clone());
    let set_label = move |e: leptos::ev::Event| {
        let label = event_target_value(&e);
        ui.notes.update(|n| {
            let text = n.get(&set_label_layer, cluster_id).text;
            n.set(&set_label_layer, cluster_id, Note { label, text })
        });
    };
    let set_text = move |e: leptos::ev::Event| {
        let text = event_target_value(&e);
        ui.notes.update(|n| {
            let label = n.get(&set_text_layer, cluster_id).label;
            n.set(&set_text_layer, cluster_id, Note { label, text })
        });
    };

    view! {
        <main class="cluster-page" data-testid="cluster-page">
            <nav class="cluster-nav">
                <button on:click=move |_| ui.go(Page::Overview)>"↑ overview"</button>
                <button disabled=prev.is_none() on:click=move |_| { if let Some(p) = prev { ui.go(p) } }>
                    "← previous cluster"
                </button>
                <button disabled=next.is_none() on:click=move |_| { if let Some(p) = next { ui.go(p) } }>
                    "next cluster →"
                </button>
            </nav>
            <h2 data-testid="cluster-title">
                "Layer " {layer_name.clone()} " — cluster " {cluster_id} " (" {n} " images)"
            </h2>
            <div class="controls">
                <label>
                    <input
                        type="checkbox"
                        data-testid="overlay-toggle"
                        disabled=!has_heatmaps
                        prop:checked=move || ui.overlay.get()
                        on:change=move |e| ui.overlay.set(event_target_checked(&e))
                    />
                    " heatmap overlay"
                </label>
                <label>
                    " opacity "
                    {slider("opacity", (0.0, 1.0, 0.05), move || ui.opacity.get(), move |v| ui.opacity.set(v))}
                </label>
                <button on:click=move |_| ui.image.update(|i| *i = nav::step(*i, -1, n))>"◀ step"</button>
                <button data-testid="play" on:click=move |_| ui.playing.update(|p| *p = !*p)>
                    {move || if ui.playing.get() { "❚❚ pause" } else { "▶ play" }}
                </button>
                <button on:click=move |_| ui.image.update(|i| *i = nav::step(*i, 1, n))>"step ▶"</button>
                {c.gif.clone().map(|g| view! { <a href=g target="_blank">"GIF"</a> })}
                <button data-testid="zoom" on:click=move |_| ui.zoom.update(|z| *z = !*z)>
                    {move || if ui.zoom.get() { "zoom out (z)" } else { "zoom in (z)" }}
                </button>
            </div>
            {has_heatmaps.then(|| view! {
                <p class="legend" data-testid="legend">
                    <span class="swatch negative"></span>" negative relevance · transparent: none · "
                    <span class="swatch positive"></span>" positive relevance (opacity ∝ |relevance|, scaled to each \
                     image's largest |relevance|)"
                    {heat_layer.clone().map(|h| format!(" — heatmaps of layer {h}, not of the clustered layer (it is not spatial)"))}
                </p>
            })}
            {stage}
            {unsafe_images}
            {gain}
            <section class="explanations">
                <h3>"What sets the members apart (metadata, ranked)"</h3>
                {unexplained}
                <p class="muted">
                    "separation: Kolmogorov–Smirnov (numeric) or total variation (categorical) distance between the \
                     cluster and the other clustered images; p: its p-value, Bonferroni-corrected; chart: the \
                     cluster's share per bin (dark) against all clustered images' (light); RQ1: the paper's \
                     variance (impurity) reduction."
                </p>
                <table data-testid="explanations">
                    <thead>
                        <tr>
                            <th>"#"</th><th>"column"</th><th>"kind"</th><th>"separation"</th><th>"p"</th>
                            <th>"explains"</th><th>"cluster vs all"</th><th>"summary"</th><th>"RQ1 reduction"</th>
                        </tr>
                    </thead>
                    <tbody>{explanations}</tbody>
                </table>
                {c.mean_heatmap.clone().map(|h| view! {
                    <figure class="mean"><img src=h alt="mean heatmap" /><figcaption>"mean heatmap"</figcaption></figure>
                })}
            </section>
            <section class="notes" data-testid="notes">
                <h3>"Reviewer note"</h3>
                <label>
                    "root cause "
                    <input
                        type="text"
                        data-testid="note-label"
                        prop:value=move || note.get().label
                        on:input=set_label
                    />
                </label>
                <textarea data-testid="note-text" prop:value=move || note.get().text on:input=set_text></textarea>
            </section>
            <h3>"Members (medoid first)"</h3>
            <GridControls report=report.clone() keys />
            <ImageGrid report=report.clone() layer rows open=Open::Stage />
        </main>
    }
    .into_any()
}
