//! The retraining section: test accuracy before and after `hudd retrain`, and, when `hudd
//! compare` ran, a chart of the accuracy per root-cause cluster before and after each selection
//! method (HUDD's unsafe set, BL1, BL2) at the same labelling budget.

use std::sync::Arc;

use hudd_report::{Report, Retraining};
use leptos::prelude::*;

use super::percent;

const W: f64 = 760.0;
const H: f64 = 240.0;
const LEFT: f64 = 44.0;
const BOTTOM: f64 = 36.0;
const TOP: f64 = 24.0;

/// One bar series: its name and, per cluster (chart order), an accuracy in 0..=1 with its sd.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub name: String,
    pub values: Vec<(f64, f64)>,
}

/// The chart's series: `before` and each method of the comparison, or `before` and `after` of
/// the retraining alone.
pub fn series(t: &Retraining) -> Vec<Series> {
    match &t.comparison {
        Some(c) => c
            .methods
            .iter()
            .map(|m| Series {
                name: m.method.clone(),
                values: m.per_cluster.iter().map(|p| (p.accuracy.mean, p.accuracy.sd.unwrap_or(0.0))).collect(),
            })
            .collect(),
        None => {
            let after = |g: &hudd_report::RetrainingGain| {
                if g.members == 0 {
                    0.0
                } else {
                    g.right_after as f64 / g.members as f64
                }
            };
            vec![
                Series {
                    name: "before".into(),
                    values: t.clusters.iter().map(|g| (after(g) - g.gain_pp / 100.0, 0.0)).collect(),
                },
                Series { name: "after".into(), values: t.clusters.iter().map(|g| (after(g), 0.0)).collect() },
            ]
        }
    }
}

/// Bar rectangles `(series, cluster, x, y, width, height)` in chart coordinates.
pub fn bars(series: &[Series], clusters: usize) -> Vec<(usize, usize, f64, f64, f64, f64)> {
    if clusters == 0 || series.is_empty() {
        return Vec::new();
    }
    let group = (W - LEFT - 8.0) / clusters as f64;
    let width = group * 0.8 / series.len() as f64;
    let plot = H - TOP - BOTTOM;
    let mut out = Vec::new();
    for (s, ser) in series.iter().enumerate() {
        for (c, &(v, _)) in ser.values.iter().enumerate().take(clusters) {
            let h = v.clamp(0.0, 1.0) * plot;
            out.push((s, c, LEFT + c as f64 * group + group * 0.1 + s as f64 * width, TOP + plot - h, width, h));
        }
    }
    out
}

/// `4` when every repeat gives the same, else `3–5`.
fn spread(values: &[usize]) -> String {
    match (values.iter().min(), values.iter().max()) {
        (Some(a), Some(b)) if a == b => a.to_string(),
        (Some(a), Some(b)) => format!("{a}–{b}"),
        _ => String::new(),
    }
}

fn p_value(p: Option<f64>) -> String {
    match p {
        Some(p) if p < 0.001 => "< 0.001".into(),
        Some(p) => format!("{p:.3}"),
        None => "—".into(),
    }
}

/// HUDD against each baseline (p-values), or why there is no test.
fn tests_table(c: &hudd_report::Comparison) -> AnyView {
    if c.tests.is_empty() {
        return view! {
            <p data-testid="comparison-tests">
                "No test of HUDD against the baselines: " {c.repeats} " repeat(s); p-values from 5 repeats on."
            </p>
        }
        .into_any();
    }
    let rows = c
        .tests
        .iter()
        .map(|t| {
            let measure = if t.measure == "overall" { "overall" } else { "root-cause clusters" };
            view! {
                <tr data-testid="test-row">
                    <td>{format!("{} vs {}, {measure}", t.method, t.baseline)}</td>
                    <td class="num">{format!("{:+.1} pp", 100.0 * t.difference)}</td>
                    <td class="num">{p_value(t.welch_p)}</td>
                    <td class="num">{p_value(t.mann_whitney_p)}</td>
                </tr>
            }
        })
        .collect_view();
    view! {
        <table data-testid="comparison-tests">
            <caption>{format!("Two-sided p-values over {} repeats", c.repeats)}</caption>
            <thead>
                <tr><th>""</th><th>"difference"</th><th>"Welch's t"</th><th>"Mann–Whitney U"</th></tr>
            </thead>
            <tbody>{rows}</tbody>
        </table>
    }
    .into_any()
}

/// The section, when the report has retraining results.
#[component]
pub fn RetrainingSummary(report: Arc<Report>) -> impl IntoView {
    let Some(t) = report.retraining.clone() else { return ().into_any() };
    let ser = series(&t);
    let ids: Vec<usize> = t.clusters.iter().map(|g| g.cluster_id).collect();
    let rects = bars(&ser, ids.len());
    let plot = H - TOP - BOTTOM;
    let group = (W - LEFT - 8.0) / ids.len().max(1) as f64;
    let ticks = (0..=4)
        .map(|i| {
            let y = TOP + plot - plot * i as f64 / 4.0;
            view! {
                <line class="grid" x1=LEFT y1=y x2=W - 8.0 y2=y />
                <text x=2.0 y=y + 4.0>{format!("{}%", 25 * i)}</text>
            }
        })
        .collect_view();
    let labels = ids
        .iter()
        .enumerate()
        .map(|(c, id)| view! { <text x=LEFT + (c as f64 + 0.5) * group - 6.0 y=H - BOTTOM + 14.0>{*id}</text> })
        .collect_view();
    let drawn = rects
        .iter()
        .map(|&(s, c, x, y, w, h)| {
            let (v, sd) = ser[s].values[c];
            let title = format!("cluster {}: {} {}{}", ids[c], ser[s].name, percent(v), if sd > 0.0 { format!(" ± {}", percent(sd)) } else { String::new() });
            view! {
                <rect class=format!("bar s{s}") data-testid="bar" data-method=ser[s].name.clone() x=x y=y width=w height=h>
                    <title>{title}</title>
                </rect>
            }
        })
        .collect_view();
    let legend = ser
        .iter()
        .enumerate()
        .map(|(s, x)| {
            view! {
                <rect class=format!("bar s{s}") x=LEFT + s as f64 * 90.0 y=4.0 width=12.0 height=12.0 />
                <text x=LEFT + s as f64 * 90.0 + 16.0 y=14.0>{x.name.clone()}</text>
            }
        })
        .collect_view();
    let table = t.comparison.as_ref().map(|c| {
        let rows = c
            .methods
            .iter()
            .map(|m| {
                let cell = |x: &hudd_report::MeanSd| match x.sd {
                    Some(sd) => format!("{} ± {}", percent(x.mean), percent(sd)),
                    None => percent(x.mean),
                };
                let (labelled, trained, kept) = if m.method == "before" {
                    (String::new(), String::new(), String::new())
                } else {
                    (m.labelled.to_string(), spread(&m.trained), spread(&m.kept_epochs))
                };
                view! {
                    <tr data-testid="method-row">
                        <td>{m.method.clone()}</td>
                        <td class="num">{cell(&m.overall)}</td>
                        <td class="num">{cell(&m.failing_clusters)}</td>
                        <td class="num">{labelled}</td>
                        <td class="num">{trained}</td>
                        <td class="num" data-testid="kept-epochs">{kept}</td>
                    </tr>
                }
            })
            .collect_view();
        view! {
            <p>
                "HUDD against random selection at the same labelling budget: " {c.budget}
                " labelled images per method, " {c.repeats} " repeat(s) (seeds " {c.seed} "…); mean ± sample sd. "
                "hudd: the balanced unsafe set; hudd-all (when run): every labelled unsafe image, balanced; bl1: random improvement images the model gets wrong; bl2: random improvement images. "
                "Each retraining keeps the epoch that does best on images held out from its own labelled images (epoch 0: the model unchanged)."
            </p>
            <table data-testid="comparison">
                <thead>
                    <tr>
                        <th>"method"</th><th>"test accuracy"</th><th>"root-cause clusters"</th>
                        <th>"labelled"</th><th>"trained on"</th><th>"kept epoch"</th>
                    </tr>
                </thead>
                <tbody>{rows}</tbody>
            </table>
            {tests_table(c)}
        }
    });
    view! {
        <section class="retraining" data-testid="retraining">
            <h2>"Retraining"</h2>
            <p data-testid="retraining-summary">
                "Retrained " {t.retrained_model.clone()} " (epoch " {t.chosen_epoch} " of " {t.epochs}
                " kept, seed " {t.seed} "): test accuracy " {percent(t.accuracy_before)} " → "
                {percent(t.accuracy_after)} "; on the test members of the root-cause clusters "
                {percent(t.failing_before)} " → " {percent(t.failing_after)} "."
            </p>
            {table}
            <figure class="chart" data-testid="retraining-chart">
                <svg viewBox=format!("0 0 {W} {H}") width=W height=H role="img">
                    {ticks}
                    <line class="axis" x1=LEFT y1=TOP + plot x2=W - 8.0 y2=TOP + plot />
                    <line class="axis" x1=LEFT y1=TOP x2=LEFT y2=TOP + plot />
                    {drawn}
                    {labels}
                    {legend}
                    <text x=W / 2.0 - 40.0 y=H - 4.0>"root-cause cluster"</text>
                </svg>
                <figcaption>"Test accuracy on each root-cause cluster's test members (all Wrong before retraining)."</figcaption>
            </figure>
        </section>
    }
    .into_any()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_fill_the_plot_in_proportion_to_the_accuracy() {
        let s = vec![
            Series { name: "before".into(), values: vec![(0.0, 0.0), (0.5, 0.0)] },
            Series { name: "after".into(), values: vec![(1.0, 0.0), (0.25, 0.0)] },
        ];
        let b = bars(&s, 2);
        assert_eq!(b.len(), 4);
        let plot = H - TOP - BOTTOM;
        let height = |si: usize, c: usize| b.iter().find(|r| r.0 == si && r.1 == c).unwrap().5;
        assert_eq!((height(0, 0), height(1, 0)), (0.0, plot));
        assert!((height(0, 1) - plot / 2.0).abs() < 1e-9 && (height(1, 1) - plot / 4.0).abs() < 1e-9);
        // Side by side within a cluster's group, groups left to right.
        let x = |si: usize, c: usize| b.iter().find(|r| r.0 == si && r.1 == c).unwrap().2;
        assert!(x(0, 0) < x(1, 0) && x(1, 0) < x(0, 1));
        assert!(bars(&s, 0).is_empty());
    }
}
