//! The 2-D map of a layer's clustered images (computed by hudd, stored in the report): one point
//! per image, coloured by cluster (the stored cut, or the live re-cut) or by any metadata column;
//! a click opens the image on its cluster's page.

use std::collections::HashMap;

use hudd_report::{Layer, Report};
use leptos::prelude::*;

use super::{cluster_colour, percent, short};
use crate::nav::Page;
use crate::Ui;

/// Side of the square plot, in SVG units, and its margin.
const SIDE: f64 = 420.0;
const PAD: f64 = 12.0;

/// Point positions in the plot: both axes on one scale (the map's distances mean something),
/// centred.
pub fn place(points: &[[f64; 2]]) -> Vec<(f64, f64)> {
    let (mut lo, mut hi) = ([f64::INFINITY; 2], [f64::NEG_INFINITY; 2]);
    for p in points {
        for a in 0..2 {
            lo[a] = lo[a].min(p[a]);
            hi[a] = hi[a].max(p[a]);
        }
    }
    let span = (hi[0] - lo[0]).max(hi[1] - lo[1]);
    let scale = if span > 0.0 && span.is_finite() { (SIDE - 2.0 * PAD) / span } else { 0.0 };
    let offset = [0, 1].map(|a| {
        let extent = if scale > 0.0 { (hi[a] - lo[a]) * scale } else { 0.0 };
        PAD + (SIDE - 2.0 * PAD - extent) / 2.0
    });
    points
        .iter()
        .map(|p| {
            let x = if scale > 0.0 { offset[0] + (p[0] - lo[0]) * scale } else { SIDE / 2.0 };
            // SVG's y grows downwards.
            let y = if scale > 0.0 { SIDE - offset[1] - (p[1] - lo[1]) * scale } else { SIDE / 2.0 };
            (x, y)
        })
        .collect()
}

/// Colour of a numeric value at `t` (0–1) of its range: blue → green → yellow.
pub fn ramp(t: f64) -> String {
    let t = if t.is_finite() { t.clamp(0.0, 1.0) } else { 0.5 };
    format!("hsl({:.0}, 75%, {:.0}%)", 240.0 - 180.0 * t, 35.0 + 20.0 * t)
}

/// How the points are coloured: one colour per point and a legend `(swatch, label)`.
pub fn colours(report: &Report, layer: &Layer, images: &[usize], key: &str, cut: Option<&[usize]>) -> Colours {
    if key == "cluster" {
        let stored: HashMap<usize, usize> = layer
            .clusters
            .iter()
            .enumerate()
            .flat_map(|(ci, c)| c.members.iter().map(move |m| (m.image, ci)))
            .collect();
        let live: Option<HashMap<usize, usize>> = cut.and_then(|labels| {
            let tree = layer.dendrogram.as_ref()?;
            Some(tree.leaves.iter().copied().zip(labels.iter().copied()).collect())
        });
        let label = |image: usize| live.as_ref().map_or(stored.get(&image), |m| m.get(&image)).copied();
        let points = images.iter().map(|&i| label(i).map_or("#888", cluster_colour).to_string()).collect();
        let k = live.as_ref().map_or(layer.clusters.len(), |m| m.values().max().map_or(0, |&l| l + 1));
        let names = |i: usize| match live {
            Some(_) => format!("cut cluster {}", i + 1),
            None => format!("cluster {}", layer.clusters.get(i).map_or(i + 1, |c| c.cluster_id)),
        };
        let mut legend: Vec<(String, String)> =
            (0..k.min(12)).map(|i| (cluster_colour(i).to_string(), names(i))).collect();
        if !layer.noise.is_empty() && live.is_none() {
            legend.push(("#888".to_string(), format!("noise ({} images)", layer.noise.len())));
        }
        return Colours { points, legend };
    }
    let columns = report.analysis.as_ref().map(|a| a.metadata_columns.as_slice()).unwrap_or_default();
    let Some(col) = columns.iter().position(|c| c == key) else {
        return Colours { points: vec!["#888".into(); images.len()], legend: Vec::new() };
    };
    let values: Vec<&str> =
        images.iter().map(|&i| report.images.get(i).and_then(|im| im.metadata.get(col)).map_or("", |v| v)).collect();
    let numbers: Vec<Option<f64>> =
        values.iter().map(|v| v.trim().parse::<f64>().ok().filter(|x| x.is_finite())).collect();
    let numeric = numbers.iter().filter(|x| x.is_some()).count() * 2 > values.len().max(1);
    if numeric {
        let lo = numbers.iter().flatten().copied().fold(f64::INFINITY, f64::min);
        let hi = numbers.iter().flatten().copied().fold(f64::NEG_INFINITY, f64::max);
        let t = |x: f64| if hi > lo { (x - lo) / (hi - lo) } else { 0.5 };
        let points = numbers.iter().map(|x| x.map_or("#888".to_string(), |x| ramp(t(x)))).collect();
        let legend = [0.0, 0.5, 1.0].map(|f| (ramp(f), short(lo + f * (hi - lo)))).to_vec();
        return Colours { points, legend };
    }
    // Categorical: the most frequent values first.
    let mut counts: Vec<(&str, usize)> = Vec::new();
    for v in &values {
        match counts.iter_mut().find(|(x, _)| x == v) {
            Some((_, c)) => *c += 1,
            None => counts.push((v, 1)),
        }
    }
    counts.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    let rank: HashMap<&str, usize> = counts.iter().enumerate().map(|(i, (v, _))| (*v, i)).collect();
    let points =
        values.iter().map(|v| if rank[v] < 10 { cluster_colour(rank[v]).to_string() } else { "#888".into() }).collect();
    let legend = counts
        .iter()
        .take(10)
        .enumerate()
        .map(|(i, (v, n))| (cluster_colour(i).to_string(), format!("{v} ({n})")))
        .collect();
    Colours { points, legend }
}

/// Point colours and their legend.
#[derive(Debug, Clone, PartialEq)]
pub struct Colours {
    /// One CSS colour per point.
    pub points: Vec<String>,
    /// `(colour, label)`.
    pub legend: Vec<(String, String)>,
}

/// The map of layer `layer_index`.
#[component]
pub fn MapView(report: std::sync::Arc<Report>, layer_index: usize, layer: Layer) -> impl IntoView {
    let ui = expect_context::<Ui>();
    let Some(map) = layer.map.clone() else { return ().into_any() };
    let placed = place(&map.points);
    let columns = report.analysis.as_ref().map(|a| a.metadata_columns.clone()).unwrap_or_default();
    // Where each image is among the stored clusters (for the click).
    let at: HashMap<usize, (usize, usize, usize)> = layer
        .clusters
        .iter()
        .enumerate()
        .flat_map(|(ci, c)| c.members.iter().enumerate().map(move |(mi, m)| (m.image, (ci, mi, c.cluster_id))))
        .collect();
    let l = layer.clone();
    let r = report.clone();
    let images = map.images.clone();
    let coloured = Memo::new(move |_| {
        let key = ui.map_colour.get();
        let cut = super::tree::live_cut(&ui, &l).and_then(|k| l.dendrogram.as_ref().map(|t| t.cut(k)));
        colours(&r, &l, &images, &key, cut.as_deref())
    });
    let points = move || {
        let c = coloured.get();
        map.images
            .iter()
            .zip(&placed)
            .zip(c.points)
            .map(|((&image, &(x, y)), colour)| {
                let target = at.get(&image).copied();
                let name = report.images.get(image).map_or(String::new(), |im| im.name.clone());
                let title = match target {
                    Some((_, _, id)) => format!("{name} (cluster {id})"),
                    None => name,
                };
                view! {
                    <circle
                        data-testid="map-point"
                        data-image=image
                        cx=format!("{x:.1}")
                        cy=format!("{y:.1}")
                        r=3.5
                        fill=colour
                        on:click=move |_| {
                            if let Some((cluster, member, _)) = target {
                                ui.go(Page::Cluster { layer: layer_index, cluster });
                                ui.image.set(member);
                            }
                        }
                    >
                        <title>{title}</title>
                    </circle>
                }
            })
            .collect_view()
    };
    let legend = move || {
        coloured
            .get()
            .legend
            .into_iter()
            .map(|(colour, label)| {
                view! { <li><span class="swatch" style=format!("background: {colour}")></span>{label}</li> }
            })
            .collect_view()
    };
    view! {
        <figure class="map" data-testid="map">
            <label>
                "colour by "
                {super::grid::key_select(
                    "map-colour",
                    ("cluster", "cluster"),
                    &columns,
                    move || ui.map_colour.get(),
                    move |k| ui.map_colour.set(k),
                )}
            </label>
            <svg viewBox=format!("0 0 {SIDE} {SIDE}") role="img" aria-label="2-D map of the clustered images">
                <rect x=0 y=0 width=SIDE height=SIDE fill="none" stroke="#ccc" />
                {points}
            </svg>
            <ul class="legend" data-testid="map-legend">{legend}</ul>
            <figcaption>
                {format!(
                    "Each point is a clustered image; nearby points have similar heatmaps ({}; the two axes show {} of their variance). Click a point to open it.",
                    map.method,
                    percent(map.explained)
                )}
            </figcaption>
        </figure>
    }
    .into_any()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn points_keep_their_aspect_and_fit() {
        let p = place(&[[0.0, 0.0], [2.0, 1.0], [1.0, 0.5]]);
        let inside = |v: f64| (PAD - 1e-9..=SIDE - PAD + 1e-9).contains(&v);
        assert!(p.iter().all(|&(x, y)| inside(x) && inside(y)));
        // x spans the plot; y half of it (same scale), centred; y up.
        assert!((p[1].0 - p[0].0 - (SIDE - 2.0 * PAD)).abs() < 1e-9);
        assert!((p[0].1 - p[1].1 - (SIDE - 2.0 * PAD) / 2.0).abs() < 1e-9);
        assert_eq!(place(&[[3.0, 3.0]]), vec![(SIDE / 2.0, SIDE / 2.0)]);
    }

    #[test]
    fn the_ramp_runs_from_blue_to_yellow() {
        assert_eq!(ramp(0.0), "hsl(240, 75%, 35%)");
        assert_eq!(ramp(1.0), "hsl(60, 75%, 55%)");
        assert_eq!(ramp(f64::NAN), ramp(0.5));
    }
}
