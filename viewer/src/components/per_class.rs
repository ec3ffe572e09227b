//! Test accuracy per class and the confusion matrix, coloured by each row's share; a cell opens the
//! clustered images of that confusion and says which clusters of the shown layer hold them.

use std::sync::Arc;

use hudd_report::{Report, Split, SplitEvaluation};
use leptos::prelude::*;

use super::percent;
use crate::nav::Page;
use crate::Ui;

/// Where a layer holds an image: its cluster's index and id, and the member position.
pub type Held = (usize, usize, usize);

/// The report's test images (indices) with this expected and predicted class, each with where
/// `layer` holds it.
pub fn confusion_images(report: &Report, layer: usize, expected: &str, predicted: &str) -> Vec<(usize, Option<Held>)> {
    let clusters = report.analysis.as_ref().and_then(|a| a.layers.get(layer)).map(|l| l.clusters.as_slice());
    report
        .images
        .iter()
        .enumerate()
        .filter(|(_, im)| im.split == Split::Test && im.expected == expected && im.predicted == predicted)
        .map(|(i, _)| {
            let held = clusters.and_then(|cs| {
                cs.iter()
                    .enumerate()
                    .find_map(|(ci, c)| c.members.iter().position(|m| m.image == i).map(|pos| (ci, c.cluster_id, pos)))
            });
            (i, held)
        })
        .collect()
}

/// The table and, for the cell clicked, its images.
#[component]
pub fn PerClass(report: Arc<Report>, test: SplitEvaluation, classes: Vec<String>) -> impl IntoView {
    let ui = expect_context::<Ui>();
    let picked = RwSignal::new(None::<(usize, usize)>);
    let rows = test
        .per_class
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let confusion = test.confusion.as_ref().and_then(|m| m.get(i)).cloned().unwrap_or_default();
            let total = confusion.iter().sum::<usize>().max(1) as f64;
            view! {
                <tr>
                    <th>{c.class.clone()}</th>
                    <td class="num">{c.images}</td>
                    <td class="num">{percent(c.accuracy)}</td>
                    {confusion
                        .into_iter()
                        .enumerate()
                        .map(|(j, n)| {
                            let share = n as f64 / total;
                            let colour = if i == j {
                                format!("background: rgba(40, 140, 70, {:.2})", 0.15 + 0.5 * share)
                            } else {
                                format!("background: rgba(208, 52, 44, {:.2})", (2.0 * share).min(0.8))
                            };
                            let cell = if i != j && n > 0 {
                                view! {
                                    <button
                                        class="cell"
                                        data-testid="confusion-cell"
                                        title="open the clustered images of this confusion"
                                        on:click=move |_| picked.set(Some((i, j)))
                                    >
                                        {n}
                                    </button>
                                }
                                .into_any()
                            } else {
                                view! { <span>{n}</span> }.into_any()
                            };
                            view! { <td class="num" class:diag=i == j style=colour>{cell}</td> }
                        })
                        .collect_view()}
                </tr>
            }
        })
        .collect_view();
    let heads = if test.confusion.is_some() { classes.clone() } else { Vec::new() };
    let chart = accuracy_chart(&test);
    let drill = move || {
        let (i, j) = picked.get()?;
        let (expected, predicted) = (classes.get(i)?.clone(), classes.get(j)?.clone());
        let layer = ui.layer.get();
        let found = confusion_images(&report, layer, &expected, &predicted);
        let layer_name = report.analysis.as_ref().and_then(|a| a.layers.get(layer)).map(|l| l.name.clone());
        let mut held: Vec<usize> = found.iter().filter_map(|(_, h)| h.map(|(_, id, _)| id)).collect();
        held.sort_unstable();
        let mut counts: Vec<(usize, usize)> = Vec::new();
        for id in held {
            match counts.last_mut() {
                Some((last, n)) if *last == id => *n += 1,
                _ => counts.push((id, 1)),
            }
        }
        let by_cluster = counts.iter().map(|(id, n)| format!("cluster {id} ({n})")).collect::<Vec<_>>().join(", ");
        let thumbs = found
            .into_iter()
            .filter_map(|(i, h)| report.images.get(i).map(|im| (im, h)))
            .map(|(im, h)| {
                let caption = h.map(|(_, id, _)| format!("cluster {id}")).unwrap_or_default();
                view! {
                    <button
                        class="confusion-image"
                        data-testid="confusion-image"
                        title=im.name.clone()
                        disabled=h.is_none()
                        on:click=move |_| {
                            if let Some((cluster, _, pos)) = h {
                                ui.go(Page::Cluster { layer, cluster });
                                ui.image.set(pos);
                            }
                        }
                    >
                        <img src=im.thumbnail.clone() alt=im.name.clone() loading="lazy" />
                        <span>{caption}</span>
                    </button>
                }
            })
            .collect_view();
        Some(view! {
            <div class="confusion-drill" data-testid="confusion-drill">
                <p>
                    {format!("expected {expected}, predicted {predicted}: ")}
                    {if by_cluster.is_empty() {
                        "no clustered image".to_string()
                    } else {
                        format!("held by {by_cluster} at layer {}", layer_name.unwrap_or_default())
                    }}
                </p>
                <div class="unsafe-grid">{thumbs}</div>
            </div>
        })
    };
    view! {
        <details class="per-class">
            <summary>"Test accuracy per class and confusion matrix (rows: expected, columns: predicted)"</summary>
            {chart}
            <table class="confusion">
                <thead>
                    <tr>
                        <th>"class"</th>
                        <th>"images"</th>
                        <th>"accuracy"</th>
                        {heads.into_iter().map(|c| view! { <th>{c}</th> }).collect_view()}
                    </tr>
                </thead>
                <tbody>{rows}</tbody>
            </table>
            <p class="muted">"Click an off-diagonal count to see those images and the clusters that hold them."</p>
            {drill}
        </details>
    }
}

/// Test accuracy per class as horizontal bars on a 0–100 % axis with ticks, the overall accuracy
/// marked.
fn accuracy_chart(test: &SplitEvaluation) -> impl IntoView {
    const LABEL: f64 = 110.0;
    const BAR: f64 = 300.0;
    const ROW: f64 = 18.0;
    let n = test.per_class.len() as f64;
    let (w, h) = (LABEL + BAR + 60.0, ROW * n + 46.0);
    let bars = test
        .per_class
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let y = 22.0 + ROW * i as f64;
            view! {
                <text class="class" x=LABEL - 6.0 y=y + 12.0 text-anchor="end">{c.class.clone()}</text>
                <rect class="bar" data-testid="accuracy-bar" x=LABEL y=y + 2.0 width=BAR * c.accuracy height=ROW - 4.0 />
                <text class="value" x=LABEL + BAR * c.accuracy + 4.0 y=y + 12.0>{percent(c.accuracy)}</text>
            }
        })
        .collect_view();
    let base = 22.0 + ROW * n;
    let ticks = (0..=4)
        .map(|t| {
            let x = LABEL + BAR * t as f64 / 4.0;
            view! {
                <line class="grid" x1=x y1=20.0 x2=x y2=base />
                <text class="tick" x=x y=base + 12.0 text-anchor="middle">{format!("{}%", 25 * t)}</text>
            }
        })
        .collect_view();
    let overall = LABEL + BAR * test.accuracy;
    view! {
        <svg class="accuracy-chart" data-testid="accuracy-chart" viewBox=format!("0 0 {w} {h}") width=w height=h role="img">
            <title>"test accuracy per class"</title>
            <text class="title" x=LABEL y="12">"test accuracy per class (line: overall)"</text>
            {ticks}
            {bars}
            <line class="overall" x1=overall y1=20.0 x2=overall y2=base />
            <text class="tick" x=LABEL + BAR / 2.0 y=base + 24.0 text-anchor="middle">"accuracy"</text>
        </svg>
    }
}
