//! The overview: model and data summary, accuracy, layers, the WICD curve and cluster cards.

use std::sync::Arc;

use hudd_report::{Analysis, Report};
use leptos::prelude::*;

use super::{percent, short, Curve, CutCards, MapView, PerClass, RetrainingSummary, ToolConfidence, TreeView};
use crate::nav::Page;
use crate::Ui;

/// The overview page.
#[component]
pub fn Overview(report: Arc<Report>) -> impl IntoView {
    let analysis = report.analysis.clone();
    view! {
        <main class="overview" data-testid="overview">
            <Summary report=report.clone() />
            {match analysis {
                Some(a) => view! { <Layers report=report.clone() analysis=a /> }.into_any(),
                None => {
                    view! {
                        <p class="muted" data-testid="no-clusters">
                            "Fewer than two test images were Wrong: there is nothing to cluster."
                        </p>
                    }
                        .into_any()
                }
            }}
            <UnsafeSummary report=report.clone() />
            <RetrainingSummary report=report.clone() />
            <Skipped report=report.clone() />
            <ToolConfidence report=report.clone() />
        </main>
    }
}

#[component]
fn Summary(report: Arc<Report>) -> impl IntoView {
    let m = &report.model;
    let tensors = |ts: &[hudd_report::TensorSummary]| {
        ts.iter().map(|t| format!("{} [{}] {}", t.name, t.shape.join(", "), t.elem_type)).collect::<Vec<_>>().join("; ")
    };
    let ops = m.op_counts.iter().map(|(op, n)| format!("{op} × {n}")).collect::<Vec<_>>().join(", ");
    let splits = report
        .datasets
        .iter()
        .map(|d| {
            let eval = report.evaluation.splits.iter().find(|s| s.split == d.split);
            view! {
                <tr>
                    <td>{d.split.name()}</td>
                    <td class="num">{d.images}</td>
                    <td class="num">{d.skipped}</td>
                    <td class="num">{eval.map(|e| e.correct)}</td>
                    <td class="num" data-testid="accuracy">{eval.map(|e| percent(e.accuracy))}</td>
                    <td class="hash" title=d.sha256.clone()>{d.sha256.get(..16).unwrap_or(&d.sha256).to_string()}</td>
                </tr>
            }
        })
        .collect_view();
    let test = report.evaluation.splits.iter().find(|s| s.split == hudd_report::Split::Test).cloned();
    let classes = report.evaluation.classes.clone();
    let run = &report.run;
    let seeds = if run.seeds.is_empty() {
        "none".to_string()
    } else {
        run.seeds.iter().map(|(k, v)| format!("{k} = {v}")).collect::<Vec<_>>().join(", ")
    };
    let mut timings =
        run.timings.iter().map(|t| format!("{} {:.1} s", t.stage, t.seconds)).collect::<Vec<_>>().join(", ");
    if !run.reused_stages.is_empty() {
        timings
            .push_str(&format!("; reused from an earlier run from the same inputs: {}", run.reused_stages.join(", ")));
    }
    let folder = run.working_dir.clone().unwrap_or_else(|| "not recorded".into());
    view! {
        <section class="summary" data-testid="summary">
            <h2>"Model and data"</h2>
            <dl>
                <dt>"model"</dt>
                <dd>{m.file_name.clone()} " (" {m.bytes} " bytes, " {m.producer.clone()} ", opset " {m.opset} ")"</dd>
                <dt>"SHA-256"</dt>
                <dd class="hash">{m.sha256.clone()}</dd>
                <dt>"inputs"</dt>
                <dd>{tensors(&m.inputs)}</dd>
                <dt>"outputs"</dt>
                <dd>{tensors(&m.outputs)}</dd>
                <dt>"operators"</dt>
                <dd>{ops}</dd>
                <dt>"task"</dt>
                <dd>{report.evaluation.task.name()}</dd>
            </dl>
            <table class="splits">
                <thead>
                    <tr>
                        <th>"split"</th>
                        <th>"images"</th>
                        <th>"skipped"</th>
                        <th>"correct"</th>
                        <th>"accuracy"</th>
                        <th>"SHA-256 of the image list"</th>
                    </tr>
                </thead>
                <tbody>{splits}</tbody>
            </table>
            {test
                .filter(|t| !t.per_class.is_empty())
                .map(|t| view! { <PerClass report=report.clone() test=t classes=classes.clone() /> })}
            <details class="run">
                <summary>"Run"</summary>
                <dl>
                    <dt>"hudd"</dt>
                    <dd>{run.tool_version.clone()} " (report written by " {report.hudd_version.clone()} ")"</dd>
                    <dt>"command"</dt>
                    <dd>
                        <code>{run.command_line.join(" ")}</code>
                    </dd>
                    <dt>"in folder"</dt>
                    <dd>
                        <code>{folder}</code>
                    </dd>
                    <dt>"seeds"</dt>
                    <dd>{seeds}</dd>
                    <dt>"timings"</dt>
                    <dd>{timings}</dd>
                    <dt>"configuration"</dt>
                    <dd>
                        <pre>{serde_json::to_string_pretty(&run.config).unwrap_or_default()}</pre>
                    </dd>
                </dl>
            </details>
        </section>
    }
}

#[component]
fn Layers(report: Arc<Report>, analysis: Analysis) -> impl IntoView {
    let ui = expect_context::<Ui>();
    let best = analysis.best_layer;
    // Causes known by construction (a `cause` column): each layer's purity.
    let known = analysis.layers.iter().any(|l| l.known_causes.is_some());
    let causes = best.and_then(|b| analysis.layers.get(b)).and_then(|l| l.known_causes.clone()).map(|k| {
        let missing: Vec<String> = k
            .causes
            .iter()
            .filter(|c| !k.covered.contains(&c.cause))
            .map(|c| format!("{} ({} images)", c.cause, c.images))
            .collect();
        view! {
            <p data-testid="known-causes">
                {format!(
                    "Causes known by construction (column {}, scored, never an explanation): at the best layer purity {:.2}                      (the size-weighted share of each cluster's majority cause), covered {} of {} causes{}.",
                    k.column,
                    k.purity,
                    k.covered.len(),
                    k.causes.len(),
                    if missing.is_empty() { String::new() } else { format!("; not covered: {}", missing.join(", ")) }
                )}
            </p>
        }
    });
    // The feature path (HDBSCAN): noise per layer, no WICD.
    let feature = analysis.layers.iter().any(|l| l.k_choice == hudd_report::KChoice::Hdbscan);
    let rows = analysis
        .layers
        .iter()
        .enumerate()
        .map(|(i, l)| {
            view! {
                <tr
                    class="layer"
                    class:selected=move || ui.layer.get() == i
                    data-testid="layer-row"
                    on:click=move |_| ui.show_layer(i)
                >
                    <td>
                        {l.name.clone()} {(best == Some(i)).then_some(" ★ best")}
                        {l.excluded.map(|why| format!(" ({why}: never the best layer)"))}
                    </td>
                    <td>{l.shape.iter().map(|d| d.to_string()).collect::<Vec<_>>().join("×")}</td>
                    <td class="num">{l.k}</td>
                    <td title=l.k_choice_reason.clone().unwrap_or_default()>{l.k_choice.name()}</td>
                    {(!feature).then(|| view! { <td class="num">{short(l.score)}</td> })}
                    {feature.then(|| view! { <td class="num">{l.noise.len()}</td> })}
                    <td class="num">{short(l.silhouette)}</td>
                    {known.then(|| view! { <td class="num">{l.known_causes.as_ref().map(|k| format!("{:.2}", k.purity))}</td> })}
                </tr>
            }
        })
        .collect_view();
    let a = analysis.clone();
    let r = report.clone();
    view! {
        <section class="layers">
            <h2>"Root-cause clusters"</h2>
            {match a.feature_path.clone() {
                Some(how) => view! {
                    <p data-testid="method">
                        {a.images} " Wrong test images clustered at every layer by the feature-space path ("
                        {a.preset.name()} " heatmaps): " {how}
                        ". Images in no dense region are noise: in no cluster, in no explanation or coverage. The best layer has the highest silhouette. Click a layer to see its clusters."
                    </p>
                }
                    .into_any(),
                None => view! {
                    <p data-testid="method">
                        {a.images} " Wrong test images clustered at every layer (" {a.linkage.name()} " linkage, "
                        {a.preset.name()} " heatmaps); the best layer has "
                        {if a.layer_rule.name() == "silhouette" { "the highest silhouette" } else { "the lowest WICD at its k" }}
                        " (layer rule " {a.layer_rule.name()} "). Click a layer to see its clusters."
                    </p>
                }
                    .into_any(),
            }}
            <table data-testid="layers">
                <thead>
                    <tr>
                        <th>"layer"</th>
                        <th>"heatmap"</th>
                        <th>"k"</th>
                        <th>"k from"</th>
                        {(!feature).then(|| view! { <th title="WICD at the chosen k on the raw distances (lower is better)">"WICD at k"</th> })}
                        {feature.then(|| view! { <th title="images HDBSCAN put in no cluster">"noise"</th> })}
                        <th>"silhouette"</th>
                        {known.then(|| view! { <th title="size-weighted share of each cluster's majority known cause">"purity"</th> })}
                    </tr>
                </thead>
                <tbody>{rows}</tbody>
            </table>
            {causes}
            <Comparison analysis=a.clone() />
            {move || {
                let i = ui.layer.get();
                let Some(layer) = a.layers.get(i).cloned() else { return ().into_any() };
                let images: usize = layer.clusters.iter().map(|c| c.members.len()).sum();
                // Only the cards follow the cut slider (the slider itself is not redrawn).
                let (cr, cl) = (r.clone(), layer.clone());
                let cards = move || match super::tree::live_cut(&ui, &cl) {
                    Some(k) => view! { <CutCards report=cr.clone() layer_index=i layer=cl.clone() k /> }.into_any(),
                    None => view! { <StoredCards report=cr.clone() layer_index=i layer=cl.clone() /> }.into_any(),
                };
                view! {
                    <h3 class="layer-title">"Layer " {layer.name.clone()}</h3>
                    <Curve layer=layer.clone() />
                    <div class="tree-and-map">
                        <TreeView layer=layer.clone() />
                        <MapView report=r.clone() layer_index=i layer=layer.clone() />
                    </div>
                    <AllImages layer=i images />
                    <Noise report=r.clone() layer=layer.clone() />
                    <Trials layer=layer.clone() />
                    {cards}
                }
                    .into_any()
            }}
        </section>
    }
}

/// One clustering's column of the comparison.
struct Column {
    name: String,
    layer: String,
    clusters: usize,
    noise: usize,
    silhouette: f64,
    purity: String,
    coverage: String,
    explained: String,
}

/// The report's clustering beside the alternatives the run holds (e.g. the feature path): best
/// layer, clusters, noise, silhouette, known-cause purity and coverage, explained clusters.
#[component]
fn Comparison(analysis: Analysis) -> impl IntoView {
    if analysis.alternatives.is_empty() {
        return ().into_any();
    }
    let main = analysis.best_layer.and_then(|b| analysis.layers.get(b));
    let causes = |k: Option<&hudd_report::KnownCauses>| {
        (
            k.map_or("–".to_string(), |k| format!("{:.2}", k.purity)),
            k.map_or("–".to_string(), |k| format!("{} of {}", k.covered.len(), k.causes.len())),
        )
    };
    let (purity, coverage) = causes(main.and_then(|l| l.known_causes.as_ref()));
    let explained = main.map_or("–".to_string(), |l| {
        let big: Vec<_> = l.clusters.iter().filter(|c| c.members.len() >= 2).collect();
        let yes = big.iter().filter(|c| c.explanations.first().and_then(|e| e.explains) == Some(true)).count();
        format!("{yes} of {}", big.len())
    });
    let method = analysis.method.map_or(analysis.linkage.name(), |m| m.name());
    let mut columns = vec![Column {
        name: format!("this report ({method})"),
        layer: main.map_or("–".to_string(), |l| l.name.clone()),
        clusters: main.map_or(0, |l| l.clusters.len()),
        noise: main.map_or(0, |l| l.noise.len()),
        silhouette: main.map_or(0.0, |l| l.silhouette),
        purity,
        coverage,
        explained,
    }];
    for alt in &analysis.alternatives {
        let (purity, coverage) = causes(alt.known_causes.as_ref());
        columns.push(Column {
            name: format!("{} (RUN/{})", alt.method.name(), alt.folder),
            layer: alt.best_layer.clone().unwrap_or_else(|| "–".into()),
            clusters: alt.clusters,
            noise: alt.noise,
            silhouette: alt.silhouette,
            purity,
            coverage,
            explained: alt.explained.map_or("–".to_string(), |[e, t]| format!("{e} of {t}")),
        });
    }
    let row = |name: &'static str, cell: &dyn Fn(&Column) -> String| {
        let cells = columns.iter().map(|c| view! { <td>{cell(c)}</td> }).collect_view();
        view! {
            <tr>
                <th>{name}</th>
                {cells}
            </tr>
        }
    };
    let head = columns.iter().map(|c| view! { <th>{c.name.clone()}</th> }).collect_view();
    let rows = view! {
        {row("best layer", &|c| c.layer.clone())}
        {row("clusters", &|c| c.clusters.to_string())}
        {row("noise", &|c| c.noise.to_string())}
        {row("silhouette", &|c| format!("{:.3}", c.silhouette))}
        {row("purity (known causes)", &|c| c.purity.clone())}
        {row("coverage (known causes)", &|c| c.coverage.clone())}
        {row("explained clusters", &|c| c.explained.clone())}
    };
    let described = analysis
        .alternatives
        .iter()
        .map(|a| view! { <li>{format!("{} (RUN/{}): {}", a.method.name(), a.folder, a.description)}</li> })
        .collect_view();
    view! {
        <details class="comparison" data-testid="comparison" open>
            <summary>"Compared with another clustering of the same images"</summary>
            <table>
                <thead>
                    <tr>
                        <th></th>
                        {head}
                    </tr>
                </thead>
                <tbody>{rows}</tbody>
            </table>
            <ul class="muted">{described}</ul>
        </details>
    }
    .into_any()
}

/// The layer's noise: how many images are in no cluster, and the first of them.
#[component]
fn Noise(report: Arc<Report>, layer: hudd_report::Layer) -> impl IntoView {
    if layer.noise.is_empty() {
        return ().into_any();
    }
    let strip = layer
        .noise
        .iter()
        .take(12)
        .filter_map(|&i| report.images.get(i))
        .map(|im| view! { <img src=im.thumbnail.clone() alt=im.name.clone() title=im.name.clone() loading="lazy" /> })
        .collect_view();
    view! {
        <div class="noise" data-testid="noise">
            <h4>{format!("Noise: {} images in no cluster", layer.noise.len())}</h4>
            <p class="muted">
                "HDBSCAN found these in no dense region of the layer's features: they are no root-cause cluster, and neither the explanations nor the coverage count them."
            </p>
            <div class="strip">{strip}</div>
        </div>
    }
        .into_any()
}

/// The feature path's parameter grid on the layer, the chosen trial marked.
#[component]
fn Trials(layer: hudd_report::Layer) -> impl IntoView {
    if layer.trials.is_empty() {
        return ().into_any();
    }
    let rows = layer
        .trials
        .iter()
        .map(|t| {
            view! {
                <tr class:selected=t.chosen>
                    <td>{t.metric.clone()}</td>
                    <td class="num">{t.components}</td>
                    <td class="num">{t.min_cluster_size}</td>
                    <td class="num">{t.clusters}</td>
                    <td class="num">{t.noise}</td>
                    <td class="num">{t.silhouette.map_or("–".to_string(), |s| format!("{s:.3}"))}</td>
                    <td>{t.chosen.then_some("✓ chosen")}</td>
                </tr>
            }
        })
        .collect_view();
    view! {
        <details class="trials" data-testid="trials">
            <summary>{format!("Parameters tried on this layer ({})", layer.trials.len())}</summary>
            <table>
                <thead>
                    <tr>
                        <th>"UMAP metric"</th>
                        <th>"components"</th>
                        <th>"min_cluster_size"</th>
                        <th>"clusters"</th>
                        <th>"noise"</th>
                        <th title="of the clustered points, noise excluded">"silhouette"</th>
                        <th></th>
                    </tr>
                </thead>
                <tbody>{rows}</tbody>
            </table>
        </details>
    }
    .into_any()
}

/// The cards of a layer's stored clusters: size, first images, the headline explanation (or
/// "unexplained") and the reviewer's label.
#[component]
fn StoredCards(report: Arc<Report>, layer_index: usize, layer: hudd_report::Layer) -> impl IntoView {
    let ui = expect_context::<Ui>();
    let i = layer_index;
    let name = layer.name.clone();
    let cards = layer
        .clusters
        .iter()
        .enumerate()
        .map(|(ci, c)| {
            let strip = c
                .members
                .iter()
                .take(6)
                .filter_map(|m| report.images.get(m.image))
                .map(|im| view! { <img src=im.thumbnail.clone() alt=im.name.clone() loading="lazy" /> })
                .collect_view();
            let top = if c.unexplained() {
                Some("unexplained".to_string())
            } else {
                c.explanations.first().map(|e| e.summary.clone())
            };
            let (name, id) = (name.clone(), c.cluster_id);
            view! {
                <button
                    class="card"
                    id=crate::routing::card_id(i, c.cluster_id)
                    data-testid="cluster-card"
                    on:click=move |_| ui.go(Page::Cluster { layer: i, cluster: ci })
                >
                    <h3>"cluster " {c.cluster_id}</h3>
                    <p class="size">{c.members.len()} " images"</p>
                    <div class="strip">{strip}</div>
                    <p class="explanation">{top}</p>
                    {c.known_cause.as_ref().map(|k| view! {
                        <p class="cause" data-testid="known-cause">{format!("cause: {} ({:.0}%)", k.cause, 100.0 * k.share)}</p>
                    })}
                    <p class="note-label">{move || ui.notes.with(|n| n.get(&name, id).label)}</p>
                </button>
            }
        })
        .collect_view();
    view! { <div class="cards" data-testid="cluster-cards">{cards}</div> }
}

/// The link to every clustered image of layer `layer` (`images` of them).
#[component]
fn AllImages(layer: usize, images: usize) -> impl IntoView {
    let ui = expect_context::<Ui>();
    view! {
        <p>
            <button class="link" data-testid="all-images" on:click=move |_| ui.go(Page::Images { layer })>
                {format!("all {images} clustered images: filter and sort →")}
            </button>
        </p>
    }
}

/// The unsafe set: per cluster of the best layer, its test members, quota, fill and nearest
/// distance; a row opens the cluster.
#[component]
fn UnsafeSummary(report: Arc<Report>) -> impl IntoView {
    let ui = expect_context::<Ui>();
    let Some(u) = report.unsafe_set.clone() else { return ().into_any() };
    let layer = report.analysis.as_ref().and_then(|a| a.layers.iter().position(|l| l.name == u.layer));
    let assigned: usize = u.clusters.iter().map(|c| c.images.len()).sum();
    let rows = u
        .clusters
        .iter()
        .map(|c| {
            let target = layer.and_then(|li| {
                let l = &report.analysis.as_ref()?.layers[li];
                l.clusters
                    .iter()
                    .position(|x| x.cluster_id == c.cluster_id)
                    .map(|ci| Page::Cluster { layer: li, cluster: ci })
            });
            let nearest = c.distances.iter().copied().fold(None, |m: Option<f64>, d| Some(m.map_or(d, |m| m.min(d))));
            view! {
                <tr
                    data-testid="unsafe-row"
                    class:link=target.is_some()
                    on:click=move |_| { if let Some(p) = target { ui.go(p) } }
                >
                    <td class="num">{c.cluster_id}</td>
                    <td class="num">{c.test_members}</td>
                    <td class="num">{c.quota}</td>
                    <td class="num">{c.images.len()}</td>
                    <td class="num">{nearest.map(short)}</td>
                </tr>
            }
        })
        .collect_view();
    view! {
        <section class="unsafe-summary" data-testid="unsafe-summary">
            <h2>"Unsafe set"</h2>
            <p>
                {assigned} " of " {u.candidates} " improvement images (" {u.improvement.clone()} ") assigned to "
                "the clusters of layer " {u.layer.clone()} " by "
                {if u.mode.is_empty() { "closest-u".to_string() } else { u.mode.clone() }}
                {(u.skipped > 0).then(|| format!("; {} could not be read", u.skipped))} ". Click a row to open the cluster."
            </p>
            <table>
                <thead>
                    <tr>
                        <th>"cluster"</th>
                        <th>"test members"</th>
                        <th>"quota"</th>
                        <th>"assigned"</th>
                        <th>"nearest distance"</th>
                    </tr>
                </thead>
                <tbody>{rows}</tbody>
            </table>
        </section>
    }
    .into_any()
}

#[component]
fn Skipped(report: Arc<Report>) -> impl IntoView {
    if report.skipped.is_empty() {
        return ().into_any();
    }
    let rows = report
        .skipped
        .iter()
        .map(|s| view! { <tr><td>{s.split.name()}</td><td>{s.image.clone()}</td><td>{s.reason.clone()}</td></tr> })
        .collect_view();
    view! {
        <details class="skipped" data-testid="skipped">
            <summary>{report.skipped.len()} " skipped inputs"</summary>
            <table>
                <thead><tr><th>"split"</th><th>"image"</th><th>"reason"</th></tr></thead>
                <tbody>{rows}</tbody>
            </table>
        </details>
    }
    .into_any()
}
