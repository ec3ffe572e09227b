//! A metadata column's distribution in a cluster against all clustered images, as a small SVG bar
//! chart: per bin, the cluster's share (dark) beside all clustered images' share (light).

use hudd_report::Histogram;
use leptos::prelude::*;

use super::short;

const W: f64 = 160.0;
const H: f64 = 44.0;
const BASE: f64 = 34.0;

/// One bar: `(x, width, height)`.
pub type Bar = (f64, f64, f64);

/// The cluster's and all images' bar per bin, scaled so that the tallest share fills the chart.
pub fn bars(h: &Histogram) -> Vec<(Bar, Bar)> {
    let total = |c: &[usize]| c.iter().sum::<usize>().max(1) as f64;
    let (tc, ta) = (total(&h.cluster), total(&h.all));
    let bins = h.cluster.len().min(h.all.len());
    if bins == 0 {
        return Vec::new();
    }
    let top = (0..bins).map(|i| (h.cluster[i] as f64 / tc).max(h.all[i] as f64 / ta)).fold(0.0, f64::max).max(1e-9);
    let step = W / bins as f64;
    (0..bins)
        .map(|i| {
            let x = i as f64 * step;
            let c = h.cluster[i] as f64 / tc / top * (BASE - 2.0);
            let a = h.all[i] as f64 / ta / top * (BASE - 2.0);
            ((x + step / 2.0, step / 2.0 - 0.5, c), (x, step / 2.0 - 0.5, a))
        })
        .collect()
}

/// The chart, with the range (numeric) or the first value (categorical) written under it.
#[component]
pub fn HistogramChart(histogram: Histogram) -> impl IntoView {
    let drawn = bars(&histogram)
        .into_iter()
        .map(|((cx, cw, ch), (ax, aw, ah))| {
            view! {
                <rect class="all" x=ax y=BASE - ah width=aw height=ah />
                <rect class="cluster" x=cx y=BASE - ch width=cw height=ch />
            }
        })
        .collect_view();
    let (left, right) = match (histogram.edges.first(), histogram.edges.last()) {
        (Some(lo), Some(hi)) => (short(*lo), short(*hi)),
        _ => (
            histogram.labels.first().cloned().unwrap_or_default(),
            histogram.labels.last().cloned().unwrap_or_default(),
        ),
    };
    let title = if histogram.edges.is_empty() {
        histogram
            .labels
            .iter()
            .zip(histogram.cluster.iter().zip(&histogram.all))
            .map(|(l, (c, a))| format!("{l}: {c} in the cluster, {a} of all"))
            .collect::<Vec<_>>()
            .join("\n")
    } else {
        "the cluster's share per bin (dark) against all clustered images' (light)".to_string()
    };
    view! {
        <svg class="histogram" data-testid="histogram" viewBox=format!("0 0 {W} {H}") width=W height=H role="img">
            <title>{title}</title>
            {drawn}
            <line class="axis" x1="0" y1=BASE x2=W y2=BASE />
            <text x="0" y=H - 1.0>{left}</text>
            <text x=W y=H - 1.0 text-anchor="end">{right}</text>
        </svg>
    }
}
