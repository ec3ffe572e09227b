//! A layer's WICD curve as SVG, with the chosen k marked.

use hudd_report::Layer;
use leptos::prelude::*;

use super::short;

const W: f64 = 520.0;
const H: f64 = 200.0;
const PAD: f64 = 36.0;

/// Screen coordinates of the curve's points: k on x, WICD on y (top = largest).
pub fn points(layer: &Layer) -> Vec<(usize, f64, f64)> {
    let (Some(first), Some(last)) = (layer.curve.first(), layer.curve.last()) else { return Vec::new() };
    let (k0, k1) = (first.k as f64, (last.k as f64).max(first.k as f64 + 1.0));
    let hi = layer.curve.iter().map(|p| p.wicd).fold(f64::MIN, f64::max);
    let lo = layer.curve.iter().map(|p| p.wicd).fold(f64::MAX, f64::min);
    let span = if hi > lo { hi - lo } else { 1.0 };
    layer
        .curve
        .iter()
        .map(|p| {
            let x = PAD + (p.k as f64 - k0) / (k1 - k0) * (W - 2.0 * PAD);
            let y = PAD / 2.0 + (hi - p.wicd) / span * (H - 1.5 * PAD);
            (p.k, x, y)
        })
        .collect()
}

/// The curve of `layer`.
#[component]
pub fn Curve(layer: Layer) -> impl IntoView {
    let pts = points(&layer);
    if pts.is_empty() {
        return view! { <p class="muted">"No WICD curve (too few images)."</p> }.into_any();
    }
    let line = pts.iter().map(|(_, x, y)| format!("{x:.1},{y:.1}")).collect::<Vec<_>>().join(" ");
    let chosen = pts.iter().find(|(k, _, _)| *k == layer.k).copied();
    let (k_first, k_last) = (layer.curve[0].k, layer.curve[layer.curve.len() - 1].k);
    let hi = layer.curve.iter().map(|p| p.wicd).fold(f64::MIN, f64::max);
    let lo = layer.curve.iter().map(|p| p.wicd).fold(f64::MAX, f64::min);
    view! {
        <figure class="curve" data-testid="wicd-curve">
            <svg viewBox=format!("0 0 {W} {H}") width=W height=H role="img">
                <line class="axis" x1=PAD y1=H - PAD x2=W - PAD y2=H - PAD />
                <line class="axis" x1=PAD y1=PAD / 2.0 x2=PAD y2=H - PAD />
                <polyline class="wicd" points=line fill="none" />
                {chosen
                    .map(|(k, x, y)| {
                        view! {
                            <circle class="knee" cx=x cy=y r="5" />
                            <text x=x + 8.0 y=y - 8.0>{format!("k = {k}")}</text>
                        }
                    })}
                <text x=PAD y=H - 8.0>{format!("k = {k_first}")}</text>
                <text x=W - PAD - 40.0 y=H - 8.0>{format!("k = {k_last}")}</text>
                <text x=2.0 y=PAD / 2.0 + 4.0>{short(hi)}</text>
                <text x=2.0 y=H - PAD>{short(lo)}</text>
            </svg>
            <figcaption>
                "WICD (within-cluster distance) by number of clusters; the circle marks the chosen k ("
                {layer.k_choice.name()} ")."
            </figcaption>
        </figure>
    }
    .into_any()
}
