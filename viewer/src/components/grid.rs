//! An image grid (a cluster's members or every clustered image of a layer) with its controls:
//! sort and filter by any key ([`crate::members`]), select (click, shift-click, `x`), export the
//! selection as CSV, and a thumbnail size slider.

use std::sync::Arc;

use hudd_report::Report;
use leptos::prelude::*;

use super::Picture;
use crate::members::{self, Row};
use crate::nav::Page;
use crate::Ui;

/// What a plain click on an image does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Open {
    /// Shows it on the cluster page's stage.
    Stage,
    /// Opens its cluster's page at it.
    ClusterPage,
}

/// The sort, filter and selection controls over `keys`.
#[component]
pub fn GridControls(report: Arc<Report>, keys: Vec<String>) -> impl IntoView {
    let ui = expect_context::<Ui>();
    let export = move |_| {
        let csv = ui.selected.with_untracked(|s| members::selection_csv(&report, s));
        let name = format!("hudd-selection-{}.csv", crate::notes::short_id(&report.report_id));
        let n = ui.selected.with_untracked(|s| s.len());
        let status = match crate::storage::download_as(&name, &csv, "text/csv") {
            Ok(()) => format!("exported {n} selected images to {name}"),
            Err(_) => "the browser refused the download".to_string(),
        };
        ui.notes_status.set(status);
    };
    view! {
        <div class="grid-controls" data-testid="grid-controls">
            <label>
                "sort by "
                {key_select(
                    "sort-key",
                    ("", "default order"),
                    &keys,
                    move || ui.sort.get().0,
                    move |k| ui.sort.update(|s| s.0 = k),
                )}
            </label>
            <label>
                <input
                    type="checkbox"
                    data-testid="sort-descending"
                    prop:checked=move || ui.sort.get().1
                    on:change=move |e| ui.sort.update(|s| s.1 = event_target_checked(&e))
                />
                " descending"
            </label>
            <label>
                " filter "
                {key_select(
                    "filter-key",
                    ("", "none"),
                    &keys,
                    move || ui.filter.get().0,
                    move |k| ui.filter.update(|f| f.0 = k),
                )}
                <input
                    type="text"
                    data-testid="filter-value"
                    placeholder="<0.3, 0.2..0.4 or text"
                    prop:value=move || ui.filter.get().1
                    on:input=move |e| ui.filter.update(|f| f.1 = event_target_value(&e))
                />
            </label>
            <span data-testid="selection-count">
                {move || format!("{} selected (shift-click, x)", ui.selected.with(|s| s.len()))}
            </span>
            <button data-testid="selection-export" on:click=export>"export selection (CSV)"</button>
            <button on:click=move |_| ui.selected.set(Default::default())>"clear selection"</button>
            <label>
                " size "
                {slider(
                    "grid-size",
                    (40.0, 200.0, 4.0),
                    move || f64::from(ui.grid_px.get()),
                    move |v| ui.grid_px.set(v.round() as u32),
                )}
            </label>
        </div>
    }
}

/// The grid of `rows` of layer `layer`, filtered and sorted by the controls; shift-click selects
/// the range from the last clicked image.
#[component]
pub fn ImageGrid(report: Arc<Report>, layer: usize, rows: Signal<Vec<Row>>, open: Open) -> impl IntoView {
    let ui = expect_context::<Ui>();
    let anchor = RwSignal::new(None::<usize>);
    let tiles = move || {
        let rows = rows.get();
        let (filter_key, condition) = ui.filter.get();
        let (sort_key, descending) = ui.sort.get();
        let order = members::shown(&report, &rows, &filter_key, &condition, &sort_key, descending);
        let order_images: Arc<Vec<usize>> = Arc::new(order.iter().map(|&i| rows[i].image).collect());
        order
            .into_iter()
            .filter_map(|i| {
                let row = rows[i];
                let im = report.images.get(row.image)?;
                let heatmap = report
                    .analysis
                    .as_ref()
                    .and_then(|a| a.layers.get(layer))
                    .and_then(|l| l.clusters.get(row.cluster))
                    .and_then(|c| c.members.get(row.member))
                    .and_then(|m| m.heatmap.clone());
                let order_images = order_images.clone();
                let title = match open {
                    Open::Stage => im.name.clone(),
                    Open::ClusterPage => format!("{} (cluster {})", im.name, row.cluster_id),
                };
                Some(view! {
                    <button
                        class="member"
                        class:current=move || open == Open::Stage && ui.image.get() == row.member
                        class:medoid=open == Open::Stage && row.member == 0
                        class:selected=move || ui.selected.with(|s| s.contains(&(layer, row.image)))
                        data-testid="member"
                        data-image=row.image
                        title=title
                        on:click=move |e: leptos::ev::MouseEvent| {
                            ui.playing.set(false);
                            if e.shift_key() {
                                let from = anchor.get_untracked().unwrap_or(row.image);
                                let at = |x: usize| order_images.iter().position(|&k| k == x).unwrap_or(0);
                                let (a, b) = (at(from), at(row.image));
                                ui.selected.update(|s| {
                                    for &image in &order_images[a.min(b)..=a.max(b)] {
                                        s.insert((layer, image));
                                    }
                                });
                                anchor.set(Some(row.image));
                                if open == Open::Stage {
                                    ui.image.set(row.member);
                                }
                                return;
                            }
                            anchor.set(Some(row.image));
                            match open {
                                Open::Stage => ui.image.set(row.member),
                                Open::ClusterPage => {
                                    ui.go(Page::Cluster { layer, cluster: row.cluster });
                                    ui.image.set(row.member);
                                }
                            }
                        }
                    >
                        <Picture src=im.thumbnail.clone() heatmap alt=im.name.clone() />
                    </button>
                })
            })
            .collect_view()
    };
    view! {
        <div class="grid" data-testid="member-grid" style=move || format!("--thumb: {}px", ui.grid_px.get())>
            {tiles}
        </div>
    }
}

/// A `<select>` of `first` (value, label) then `keys`, showing `get()` and passing each choice to `set`.
pub fn key_select(
    testid: &'static str,
    first: (&'static str, &'static str),
    keys: &[String],
    get: impl Fn() -> String + Send + Sync + 'static,
    set: impl Fn(String) + 'static,
) -> impl IntoView {
    let options = keys.iter().map(|k| view! { <option value=k.clone()>{k.clone()}</option> }).collect_view();
    view! {
        <select data-testid=testid prop:value=get on:change=move |e| set(event_target_value(&e))>
            <option value=first.0>{first.1}</option>
            {options}
        </select>
    }
}

/// A range input (`min`, `max`, `step`) showing `get()` and passing each new value, clamped, to `set`.
pub fn slider(
    testid: &'static str,
    (min, max, step): (f64, f64, f64),
    get: impl Fn() -> f64 + Send + Sync + 'static,
    set: impl Fn(f64) + 'static,
) -> impl IntoView {
    view! {
        <input
            type="range"
            data-testid=testid
            min=min
            max=max
            step=step
            prop:value=move || get().to_string()
            on:input=move |e| {
                if let Ok(v) = event_target_value(&e).parse::<f64>() {
                    set(v.clamp(min, max))
                }
            }
        />
    }
}
