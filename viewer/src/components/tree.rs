//! The dendrogram of a layer with a cut slider: the tree stored in the report is re-cut in the
//! browser ([`hudd_report::Dendrogram::cut`]), the number of clusters changes live and the cluster
//! cards show the new clusters and which stored clusters they hold.

use std::collections::HashMap;
use std::sync::Arc;

use hudd_report::{Dendrogram, Layer, Report};
use leptos::prelude::*;

use super::{cluster_colour, short};
use crate::nav::Page;
use crate::Ui;

/// Width and height of the plot, in SVG units.
const WIDTH: f64 = 640.0;
const HEIGHT: f64 = 240.0;
/// Margins: left (axis), right, top, bottom.
const LEFT: f64 = 56.0;
const RIGHT: f64 = 12.0;
const TOP: f64 = 12.0;
const BOTTOM: f64 = 28.0;
/// Most clusters the slider offers (and leaves drawn) unless the stored cut has more.
const MAX_DRAWN: usize = 100;

/// The largest `k` the cut slider offers for `layer`.
pub fn max_cut(layer: &Layer) -> usize {
    let n = layer.dendrogram.as_ref().map_or(0, Dendrogram::len);
    n.min(MAX_DRAWN.max(layer.k))
}

/// The cut in effect for `layer`: the live one when it differs from the stored `k`.
pub fn live_cut(ui: &Ui, layer: &Layer) -> Option<usize> {
    ui.cut.get().filter(|&k| k != layer.k && layer.dendrogram.is_some())
}

/// One drawn link (a merge) or leaf of the truncated tree.
#[derive(Debug, Clone, PartialEq)]
pub struct Drawn {
    /// SVG path of the links.
    pub links: Vec<(String, usize)>,
    /// Leaves: x, number of images, cluster of the cut.
    pub leaves: Vec<(f64, usize, usize)>,
}

/// Lays out the top of `tree` (its last `p − 1` merges, so `p` drawn leaves, each a subtree) for a
/// cut into `k` clusters: each link is coloured by its cluster when it lies below the cut
/// (`usize::MAX` above it).
pub fn layout(tree: &Dendrogram, p: usize, k: usize, labels: &[usize]) -> Drawn {
    let n = tree.len();
    let merges = &tree.merges;
    if n < 2 || merges.len() + 1 != n {
        return Drawn { links: Vec::new(), leaves: Vec::new() };
    }
    let p = p.clamp(1, n);
    let top = tree.heights.iter().copied().fold(0.0, f64::max);
    let y = |h: f64| TOP + (1.0 - if top > 0.0 { h / top } else { 0.0 }) * (HEIGHT - TOP - BOTTOM);
    let mut size = vec![1usize; 2 * n - 1];
    let mut first = (0..2 * n - 1).collect::<Vec<usize>>();
    for (s, &[a, b]) in merges.iter().enumerate() {
        if a < n + s && b < n + s {
            size[n + s] = size[a] + size[b];
            first[n + s] = first[a].min(first[b]);
        }
    }
    // A node is expanded when it is one of the last p − 1 merges.
    let expanded = |node: usize| node >= n && node - n >= n - p;
    // Leaves in drawing order (depth first from the root, no crossing links).
    let mut order = Vec::new();
    let mut stack = vec![2 * n - 2];
    while let Some(node) = stack.pop() {
        if expanded(node) {
            let [a, b] = merges[node - n];
            stack.push(b);
            stack.push(a);
        } else {
            order.push(node);
        }
    }
    let step = (WIDTH - LEFT - RIGHT) / order.len() as f64;
    let mut x: HashMap<usize, f64> = HashMap::new();
    for (i, &node) in order.iter().enumerate() {
        x.insert(node, LEFT + (i as f64 + 0.5) * step);
    }
    let mut links = Vec::new();
    let cut_merges = n.saturating_sub(k);
    for s in (n - p)..merges.len() {
        let [a, b] = merges[s];
        let (Some(&xa), Some(&xb)) = (x.get(&a), x.get(&b)) else { continue };
        let height = |node: usize| if expanded(node) { tree.heights[node - n] } else { 0.0 };
        let yu = y(tree.heights[s]);
        let path = format!("M{xa:.1},{:.1}L{xa:.1},{yu:.1}L{xb:.1},{yu:.1}L{xb:.1},{:.1}", y(height(a)), y(height(b)));
        let colour = if s < cut_merges { labels.get(first[n + s]).copied().unwrap_or(usize::MAX) } else { usize::MAX };
        links.push((path, colour));
        x.insert(n + s, (xa + xb) / 2.0);
    }
    let leaves = order
        .iter()
        .map(|&node| (x[&node], size[node], labels.get(first[node]).copied().unwrap_or(usize::MAX)))
        .collect();
    Drawn { links, leaves }
}

/// The height of the cut into `k` clusters: between the last merge replayed and the next.
pub fn cut_height(tree: &Dendrogram, k: usize) -> f64 {
    let n = tree.len();
    let h = |s: usize| tree.heights.get(s).copied().unwrap_or(0.0);
    match n.checked_sub(k) {
        None | Some(0) => 0.0,
        Some(replayed) if replayed >= tree.heights.len() => h(tree.heights.len() - 1) * 1.02,
        Some(replayed) => (h(replayed - 1) + h(replayed)) / 2.0,
    }
}

/// The dendrogram of layer `layer` (index) with the cut slider.
#[component]
pub fn TreeView(layer: Layer) -> impl IntoView {
    let ui = expect_context::<Ui>();
    let Some(tree) = layer.dendrogram.clone() else { return ().into_any() };
    let stored = layer.k;
    let most = max_cut(&layer);
    let top = tree.heights.iter().copied().fold(0.0, f64::max);
    let k_now = move || ui.cut.get().unwrap_or(stored).clamp(1, most.max(1));
    let tree = Arc::new(tree);
    let plot = {
        let tree = tree.clone();
        move || {
            let k = k_now();
            let labels = tree.cut(k);
            let drawn = layout(&tree, most, k, &labels);
            let links = drawn
                .links
                .into_iter()
                .map(|(d, c)| {
                    let colour = if c == usize::MAX { "#888".to_string() } else { cluster_colour(c).to_string() };
                    view! { <path d=d stroke=colour fill="none" /> }
                })
                .collect_view();
            let leaves = drawn
                .leaves
                .into_iter()
                .map(|(x, size, c)| {
                    view! {
                        <circle cx=x cy=HEIGHT - BOTTOM r={if size > 1 { 3.0 } else { 1.5 }} fill=cluster_colour(c)>
                            <title>{format!("{size} images, cluster {} of the cut", c + 1)}</title>
                        </circle>
                    }
                })
                .collect_view();
            let yc = TOP + (1.0 - if top > 0.0 { cut_height(&tree, k) / top } else { 0.0 }) * (HEIGHT - TOP - BOTTOM);
            view! {
                {links}
                {leaves}
                <line class="cut" data-testid="cut-line" x1=LEFT x2=WIDTH - RIGHT y1=yc y2=yc />
            }
        }
    };
    let ticks = [0.0, 0.5, 1.0]
        .map(|f| {
            let y = TOP + (1.0 - f) * (HEIGHT - TOP - BOTTOM);
            view! {
                <line x1=LEFT - 4.0 x2=LEFT y1=y y2=y stroke="currentColor" />
                <text x=LEFT - 6.0 y=y + 4.0 text-anchor="end">{short(f * top)}</text>
            }
        })
        .collect_view();
    let n = tree.len();
    view! {
        <figure class="dendrogram" data-testid="dendrogram">
            <label class="cut-control">
                "cut into k = "
                <b data-testid="cut-k">{k_now}</b>
                " clusters "
                <input
                    type="range"
                    data-testid="cut-slider"
                    aria-label="number of clusters of the cut"
                    min=1
                    max=most
                    step=1
                    prop:value=move || k_now().to_string()
                    on:input=move |e| {
                        if let Ok(k) = event_target_value(&e).parse::<usize>() {
                            ui.set_cut(Some(k.clamp(1, most.max(1))));
                        }
                    }
                />
                <button
                    data-testid="cut-reset"
                    disabled=move || k_now() == stored
                    on:click=move |_| ui.set_cut(None)
                >
                    {format!("back to the stored cut (k = {stored})")}
                </button>
            </label>
            <svg viewBox=format!("0 0 {WIDTH} {HEIGHT}") role="img" aria-label="dendrogram of the layer">
                <line x1=LEFT x2=LEFT y1=TOP y2=HEIGHT - BOTTOM stroke="currentColor" />
                {ticks}
                <text x=14 y=HEIGHT / 2.0 transform=format!("rotate(-90 14 {})", HEIGHT / 2.0) text-anchor="middle">
                    "merge height"
                </text>
                {plot}
                <text x=(WIDTH + LEFT) / 2.0 y=HEIGHT - 6.0 text-anchor="middle">
                    {format!("the top of the tree of {n} images: {} subtrees, coloured by cluster of the cut", most.min(n))}
                </text>
            </svg>
        </figure>
    }
    .into_any()
}

/// The clusters of a live re-cut of layer `layer_index`'s tree into `k` clusters, as cards: size,
/// first images, the stored clusters each holds (links to their pages) and a link to its images.
#[component]
pub fn CutCards(report: Arc<Report>, layer_index: usize, layer: Layer, k: usize) -> impl IntoView {
    let ui = expect_context::<Ui>();
    let Some(tree) = layer.dendrogram.as_ref() else { return ().into_any() };
    let labels = tree.cut(k);
    let mut groups: Vec<Vec<usize>> = vec![Vec::new(); labels.iter().max().map_or(0, |&l| l + 1)];
    for (&image, &l) in tree.leaves.iter().zip(&labels) {
        groups[l].push(image);
    }
    let stored: HashMap<usize, (usize, usize)> = layer
        .clusters
        .iter()
        .enumerate()
        .flat_map(|(ci, c)| c.members.iter().map(move |m| (m.image, (ci, c.cluster_id))))
        .collect();
    let cards = groups
        .into_iter()
        .enumerate()
        .map(|(i, images)| {
            let mut holds: Vec<((usize, usize), usize)> = Vec::new();
            for image in &images {
                if let Some(&c) = stored.get(image) {
                    match holds.iter_mut().find(|(x, _)| *x == c) {
                        Some((_, count)) => *count += 1,
                        None => holds.push((c, 1)),
                    }
                }
            }
            holds.sort_by_key(|&((_, id), count)| (std::cmp::Reverse(count), id));
            let links = holds
                .into_iter()
                .map(|((ci, id), count)| {
                    view! {
                        <button
                            class="link"
                            data-testid="cut-holds"
                            on:click=move |_| ui.go(Page::Cluster { layer: layer_index, cluster: ci })
                        >
                            {format!("cluster {id} ({count})")}
                        </button>
                    }
                })
                .collect_view();
            let strip = images
                .iter()
                .take(6)
                .filter_map(|&im| report.images.get(im))
                .map(|im| view! { <img src=im.thumbnail.clone() alt=im.name.clone() loading="lazy" /> })
                .collect_view();
            let id = i + 1;
            view! {
                <div class="card cut-card" data-testid="cut-card" style=format!("border-left-color: {}", cluster_colour(i))>
                    <h3>"cut cluster " {id}</h3>
                    <p class="size">{images.len()} " images"</p>
                    <div class="strip">{strip}</div>
                    <p class="holds">"holds " {links}</p>
                    <button
                        class="link"
                        data-testid="cut-images"
                        on:click=move |_| {
                            ui.filter.set(("cut".into(), format!("{id}..{id}")));
                            ui.go(Page::Images { layer: layer_index });
                        }
                    >
                        "its images →"
                    </button>
                </div>
            }
        })
        .collect_view();
    view! {
        <p class="muted" data-testid="cut-note">
            {format!(
                "A live re-cut of the tree into {k} clusters (the analysis chose k = {}). Explanations, GIFs and \
                 cluster pages belong to the stored cut; each card says which stored clusters it holds.",
                layer.k
            )}
        </p>
        <div class="cards" data-testid="cluster-cards">{cards}</div>
    }
    .into_any()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree() -> Dendrogram {
        // 5 leaves: (0,1) → 5, (3,4) → 6, (2,5) → 7, (6,7) → 8.
        Dendrogram {
            leaves: vec![10, 11, 12, 13, 14],
            merges: vec![[0, 1], [3, 4], [2, 5], [6, 7]],
            heights: vec![0.1, 0.2, 0.4, 1.0],
        }
    }

    #[test]
    fn the_whole_tree_is_drawn_without_crossings() {
        let t = tree();
        let d = layout(&t, 5, 2, &t.cut(2));
        assert_eq!(d.links.len(), 4);
        // Depth first from the root (6, 7): leaves 3, 4, then 2, 0, 1 — left to right.
        let sizes: Vec<usize> = d.leaves.iter().map(|l| l.1).collect();
        assert_eq!(sizes, vec![1; 5]);
        assert!(d.leaves.windows(2).all(|w| w[0].0 < w[1].0));
        // Cut into 2: the root merge is above the cut, the others below.
        assert_eq!(d.links.iter().filter(|l| l.1 == usize::MAX).count(), 1);
    }

    #[test]
    fn a_truncated_tree_draws_subtrees_as_leaves() {
        let t = tree();
        let d = layout(&t, 2, 2, &t.cut(2));
        assert_eq!(d.links.len(), 1);
        let mut sizes: Vec<usize> = d.leaves.iter().map(|l| l.1).collect();
        sizes.sort_unstable();
        assert_eq!(sizes, vec![2, 3]);
    }

    #[test]
    fn the_cut_lies_between_merges() {
        let t = tree();
        assert_eq!(cut_height(&t, 5), 0.0);
        assert!((cut_height(&t, 2) - 0.7).abs() < 1e-12);
        assert!((cut_height(&t, 4) - 0.15).abs() < 1e-12);
        assert!(cut_height(&t, 1) > 1.0);
        assert_eq!(cut_height(&t, 9), 0.0);
    }
}
