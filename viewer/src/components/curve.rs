//! A layer's WICD curve as SVG: k on a logarithmic axis (the knee sits among the first few dozen k
//! of a curve that runs to hundreds), ticks and titles on both axes, the chosen k marked.

use hudd_report::Layer;
use leptos::prelude::*;

use super::short;

const W: f64 = 560.0;
const H: f64 = 240.0;
const LEFT: f64 = 76.0;
const RIGHT: f64 = 16.0;
const TOP: f64 = 24.0;
const BOTTOM: f64 = 44.0;

/// The axes' scales: `x(k)` (logarithmic) and `y(wicd)` (linear, top = largest).
pub struct Scales {
    k0: f64,
    k1: f64,
    lo: f64,
    hi: f64,
}

impl Scales {
    /// The scales of `layer`'s curve (`None` without a curve).
    pub fn of(layer: &Layer) -> Option<Scales> {
        let (first, last) = (layer.curve.first()?, layer.curve.last()?);
        let k0 = (first.k.max(1)) as f64;
        let k1 = (last.k as f64).max(k0 + 1.0);
        let hi = layer.curve.iter().map(|p| p.wicd).fold(f64::MIN, f64::max);
        let lo = layer.curve.iter().map(|p| p.wicd).fold(f64::MAX, f64::min);
        Some(Scales { k0, k1, lo, hi: if hi > lo { hi } else { lo + 1.0 } })
    }

    /// Screen x of `k`.
    pub fn x(&self, k: f64) -> f64 {
        LEFT + (k.max(self.k0).ln() - self.k0.ln()) / (self.k1.ln() - self.k0.ln()) * (W - LEFT - RIGHT)
    }

    /// Screen y of a WICD value.
    pub fn y(&self, wicd: f64) -> f64 {
        TOP + (self.hi - wicd) / (self.hi - self.lo) * (H - TOP - BOTTOM)
    }

    /// The k ticks: 1-2-5 steps within the curve's range, its ends included.
    pub fn k_ticks(&self) -> Vec<usize> {
        let mut ticks: Vec<usize> = vec![self.k0 as usize, self.k1 as usize];
        let mut decade = 1usize;
        while (decade as f64) <= self.k1 {
            for m in [1, 2, 5] {
                let k = decade * m;
                if (k as f64) > self.k0 * 1.15 && (k as f64) < self.k1 / 1.15 {
                    ticks.push(k);
                }
            }
            decade *= 10;
        }
        ticks.sort_unstable();
        ticks.dedup();
        ticks
    }

    /// Five WICD ticks from the smallest to the largest value.
    pub fn wicd_ticks(&self) -> Vec<f64> {
        (0..5).map(|i| self.lo + (self.hi - self.lo) * i as f64 / 4.0).collect()
    }
}

/// Screen coordinates of the curve's points: `(k, x, y)`.
pub fn points(layer: &Layer) -> Vec<(usize, f64, f64)> {
    let Some(s) = Scales::of(layer) else { return Vec::new() };
    layer.curve.iter().map(|p| (p.k, s.x(p.k as f64), s.y(p.wicd))).collect()
}

/// The curve of `layer`.
#[component]
pub fn Curve(layer: Layer) -> impl IntoView {
    let (Some(s), pts) = (Scales::of(&layer), points(&layer)) else {
        if layer.k_choice == hudd_report::KChoice::Hdbscan {
            return view! { <p class="muted">"No WICD curve: HDBSCAN finds the number of clusters itself."</p> }
                .into_any();
        }
        return view! { <p class="muted">"No WICD curve (too few images)."</p> }.into_any();
    };
    let line = pts.iter().map(|(_, x, y)| format!("{x:.1},{y:.1}")).collect::<Vec<_>>().join(" ");
    let chosen = pts.iter().find(|(k, _, _)| *k == layer.k).copied();
    let base = H - BOTTOM;
    let k_ticks = s
        .k_ticks()
        .into_iter()
        .map(|k| {
            let x = s.x(k as f64);
            view! {
                <line class="tick" x1=x y1=base x2=x y2=base + 4.0 />
                <text class="k-tick" x=x y=base + 16.0 text-anchor="middle">{k}</text>
            }
        })
        .collect_view();
    let wicd_ticks = s
        .wicd_ticks()
        .into_iter()
        .map(|v| {
            let y = s.y(v);
            view! {
                <line class="grid" x1=LEFT y1=y x2=W - RIGHT y2=y />
                <text class="wicd-tick" x=LEFT - 6.0 y=y + 4.0 text-anchor="end">{short(v)}</text>
            }
        })
        .collect_view();
    view! {
        <figure class="curve" data-testid="wicd-curve">
            <svg viewBox=format!("0 0 {W} {H}") width=W height=H role="img">
                <title>{format!("WICD by number of clusters, layer {}", layer.name)}</title>
                {wicd_ticks}
                <line class="axis" x1=LEFT y1=base x2=W - RIGHT y2=base />
                <line class="axis" x1=LEFT y1=TOP x2=LEFT y2=base />
                {k_ticks}
                <polyline class="wicd" points=line fill="none" />
                {chosen
                    .map(|(k, x, y)| {
                        view! {
                            <line class="chosen" x1=x y1=TOP x2=x y2=base />
                            <circle class="knee" cx=x cy=y r="5" />
                            <text x=x + 8.0 y=y - 8.0>{format!("k = {k}")}</text>
                        }
                    })}
                <text class="axis-title" x=(LEFT + W - RIGHT) / 2.0 y=H - 6.0 text-anchor="middle">
                    "number of clusters k (log scale)"
                </text>
                <text
                    class="axis-title"
                    x="12"
                    y=(TOP + base) / 2.0
                    text-anchor="middle"
                    transform=format!("rotate(-90 12 {})", (TOP + base) / 2.0)
                >
                    "WICD"
                </text>
            </svg>
            <figcaption>
                "WICD (within-cluster distance) by number of clusters; the circle marks the chosen k ("
                {layer.k_choice.name()} ")."
            </figcaption>
        </figure>
    }
    .into_any()
}
