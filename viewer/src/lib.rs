//! hudd-viewer: opens a hudd report bundle in the browser, offline (from `file://`).
//!
//! `hudd report` writes `index.html` with the report JSON, this crate's WebAssembly (gzip, base64)
//! and its JavaScript glue inlined, so that the page works without a server; images stay files
//! next to it. The viewer depends on the report schema (`hudd-report`) only, never on the pipeline.
//!
//! Pages: the overview (model, data, accuracy, layers with k and score, the WICD curve, the
//! dendrogram with a cut slider that re-cuts it live, the 2-D map, cluster cards), one page per
//! cluster (lazily loaded member grid with the medoid first, heatmap overlay and opacity,
//! flipbook, metadata, explanations, reviewer notes) and one page of every clustered image of a
//! layer, filtered and sorted. Keys: ←/→ between
//! clusters, j/k between images, space plays/pauses, `?` shows help, Esc goes back. Every view has
//! a URL fragment (see [`nav::Route`]): links open it, Back/Forward move between views.
//!
//! Every string from the report is rendered as text (Leptos text nodes), never as markup.

use std::sync::Arc;
use std::time::Duration;

use hudd_report::Report;
use leptos::ev;
use leptos::prelude::*;
use wasm_bindgen::prelude::wasm_bindgen;
use wasm_bindgen::JsCast;

pub mod bundle;
pub mod components;
pub mod members;
pub mod nav;
pub mod notes;
pub mod routing;
pub mod storage;

use components::{ClusterPage, Help, ImagesPage, NotesBar, Overview};
use nav::{Page, Route};
use notes::Notes;

/// The viewer's state, shared by its components (all fields are signals, so `Ui` is `Copy`).
#[derive(Debug, Clone, Copy)]
pub struct Ui {
    /// The page shown.
    pub page: RwSignal<Page>,
    /// The layer whose clusters the overview shows (index into the analysis' layers).
    pub layer: RwSignal<usize>,
    /// The member shown on a cluster page (index into its members).
    pub image: RwSignal<usize>,
    /// Flipbook playing.
    pub playing: RwSignal<bool>,
    /// Heatmaps shown over the images.
    pub overlay: RwSignal<bool>,
    /// Opacity of the heatmaps, 0–1.
    pub opacity: RwSignal<f64>,
    /// Help shown.
    pub help: RwSignal<bool>,
    /// Reviewer notes.
    pub notes: RwSignal<Notes>,
    /// A message about the last notes export or import.
    pub notes_status: RwSignal<String>,
    /// Notes changed since they were last exported (the browser's storage is not the record).
    pub notes_unexported: RwSignal<bool>,
    /// Where a cluster page was opened from (Esc goes back there).
    pub from: RwSignal<Option<Route>>,
    /// The stage's pictures at full size (nearest-neighbour scaling).
    pub zoom: RwSignal<bool>,
    /// Width of the member thumbnails, in CSS pixels.
    pub grid_px: RwSignal<u32>,
    /// Selected members, for export (see [`members::selection_csv`]).
    pub selected: RwSignal<std::collections::BTreeSet<members::Selected>>,
    /// The member grid's filter (key, condition) and sort (key, descending).
    pub filter: RwSignal<(String, String)>,
    /// See [`Ui::filter`].
    pub sort: RwSignal<(String, bool)>,
    /// A live re-cut of the shown layer's tree into this many clusters (`None`: the stored cut).
    pub cut: RwSignal<Option<usize>>,
    /// What colours the map's points: `cluster` or a metadata column.
    pub map_colour: RwSignal<String>,
}

impl Ui {
    /// The initial state for `report`: overview of the best layer, notes from localStorage.
    pub fn new(report: &Report) -> Ui {
        let best = report.analysis.as_ref().and_then(|a| a.best_layer).unwrap_or(0);
        // A link to a view opens it.
        let start = routing::current(report).unwrap_or(Route { page: Page::Overview, layer: best, image: 0 });
        Ui {
            page: RwSignal::new(start.page),
            layer: RwSignal::new(start.layer),
            image: RwSignal::new(start.image),
            playing: RwSignal::new(false),
            overlay: RwSignal::new(false),
            opacity: RwSignal::new(0.6),
            help: RwSignal::new(false),
            notes: RwSignal::new(storage::load_notes(&report.report_id)),
            notes_status: RwSignal::new(String::new()),
            notes_unexported: RwSignal::new(false),
            from: RwSignal::new(None),
            zoom: RwSignal::new(false),
            grid_px: RwSignal::new(76),
            selected: RwSignal::new(Default::default()),
            filter: RwSignal::new(Default::default()),
            sort: RwSignal::new(Default::default()),
            cut: RwSignal::new(None),
            map_colour: RwSignal::new("cluster".into()),
        }
    }

    /// Where the viewer is.
    pub fn route(&self) -> Route {
        Route { page: self.page.get(), layer: self.layer.get(), image: self.image.get() }
    }

    /// Shows `page`, from its first image, paused.
    pub fn go(&self, page: Page) {
        if matches!(page, Page::Cluster { .. })
            && matches!(self.page.get_untracked(), Page::Overview | Page::Images { .. })
        {
            self.from.set(Some(self.route_untracked()));
        }
        if let Page::Cluster { layer, .. } = page {
            self.layer.set(layer);
        }
        self.image.set(0);
        self.playing.set(false);
        self.page.set(page);
    }

    /// Back to where the cluster page was opened from (the overview or the images page; the
    /// overview of its layer by default).
    pub fn back(&self) {
        let to = self.from.get_untracked().filter(|r| matches!(r.page, Page::Overview | Page::Images { .. }));
        let to = to.unwrap_or(Route { page: Page::Overview, layer: self.layer.get_untracked(), image: 0 });
        self.apply(Route { image: 0, ..to });
    }

    /// Shows layer `layer` on the overview, at its stored cut.
    pub fn show_layer(&self, layer: usize) {
        if self.layer.get_untracked() != layer {
            self.set_cut(None);
        }
        self.layer.set(layer);
    }

    /// Re-cuts the shown layer's tree into `k` clusters (`None`: back to the stored cut). A filter
    /// on the clusters of the previous cut is dropped: their numbers no longer mean the same.
    pub fn set_cut(&self, k: Option<usize>) {
        if self.cut.get_untracked() == k {
            return;
        }
        if self.filter.with_untracked(|f| f.0 == "cut") {
            self.filter.set(Default::default());
        }
        self.cut.set(k);
    }

    /// Shows `route` as it is (from a link or Back/Forward).
    pub fn apply(&self, route: Route) {
        self.playing.set(false);
        self.layer.set(route.layer);
        self.page.set(route.page);
        self.image.set(route.image);
    }

    /// [`Ui::route`] without subscribing.
    pub fn route_untracked(&self) -> Route {
        Route { page: self.page.get_untracked(), layer: self.layer.get_untracked(), image: self.image.get_untracked() }
    }
}

/// The viewer's root: loads the report inlined in the page (or `report.json` over http).
#[component]
pub fn App() -> impl IntoView {
    let loaded: RwSignal<Option<Result<Arc<Report>, String>>> =
        RwSignal::new(bundle::inline_report().map(|r| r.map(Arc::new)));
    if loaded.get_untracked().is_none() {
        leptos::task::spawn_local(async move {
            loaded.set(Some(bundle::fetched_report().await.map(Arc::new)));
        });
    }
    move || match loaded.get() {
        None => view! { <p class="loading">"Loading the report…"</p> }.into_any(),
        Some(Err(e)) => view! { <p class="error" data-testid="load-error">{e}</p> }.into_any(),
        Some(Ok(report)) => view! { <Viewer report /> }.into_any(),
    }
}

/// The viewer of one report.
#[component]
pub fn Viewer(report: Arc<Report>) -> impl IntoView {
    let ui = Ui::new(&report);
    provide_context(ui);
    // Reviewer notes are saved on every change.
    let id = report.report_id.clone();
    Effect::new(move |first: Option<()>| {
        let notes = ui.notes.get();
        storage::save_notes(&id, &notes);
        if first.is_some() {
            ui.notes_unexported.set(true);
        }
    });
    // The flipbook: one image per 60 / rate seconds.
    let rate = report.analysis.as_ref().map(|a| a.images_per_minute).filter(|r| *r > 0.0).unwrap_or(100.0);
    let r = report.clone();
    Effect::new(move |previous: Option<Option<IntervalHandle>>| {
        if let Some(Some(handle)) = previous {
            handle.clear();
        }
        if !ui.playing.get() {
            return None;
        }
        let r = r.clone();
        set_interval_with_handle(
            move || {
                let n = nav::members(&r, ui.page.get_untracked());
                ui.image.update(|i| *i = nav::step(*i, 1, n));
            },
            Duration::from_secs_f64(60.0 / rate),
        )
        .ok()
    });
    let r = report.clone();
    let keys = window_event_listener(ev::keydown, move |e: web_sys::KeyboardEvent| {
        if e.ctrl_key() || e.meta_key() || e.alt_key() || typing(&e) {
            return;
        }
        if nav::on_key(&r, &ui, &e.key()) {
            e.prevent_default();
        }
    });
    on_cleanup(move || keys.remove());
    routing::follow(report.clone(), ui);
    let r = report.clone();
    view! {
        <div class="viewer" data-testid="hudd-viewer">
            <header class="top">
                <button class="home" on:click=move |_| ui.go(Page::Overview)>"hudd report"</button>
                <span class="model">{report.model.file_name.clone()}</span>
                <span class="id" title=report.report_id.clone()>
                    "report " {notes::short_id(&report.report_id).to_string()}
                </span>
                <NotesBar report=report.clone() />
                <button class="help-button" on:click=move |_| ui.help.update(|h| *h = !*h)>"? keys"</button>
            </header>
            {move || match ui.page.get() {
                Page::Overview => view! { <Overview report=r.clone() /> }.into_any(),
                Page::Cluster { layer, cluster } => {
                    view! { <ClusterPage report=r.clone() layer cluster /> }.into_any()
                }
                Page::Images { layer } => view! { <ImagesPage report=r.clone() layer /> }.into_any(),
            }}
            <Help />
        </div>
    }
}

/// Whether a key press goes to a text field (then it is not a shortcut). Checkboxes, sliders and
/// buttons keep the shortcuts.
fn typing(e: &web_sys::KeyboardEvent) -> bool {
    let Some(el) = e.target().and_then(|t| t.dyn_into::<web_sys::Element>().ok()) else { return false };
    match el.tag_name().to_ascii_uppercase().as_str() {
        "TEXTAREA" | "SELECT" => true,
        "INPUT" => {
            let kind = el.get_attribute("type").unwrap_or_default().to_ascii_lowercase();
            !matches!(kind.as_str(), "checkbox" | "radio" | "range" | "button" | "submit" | "file")
        }
        _ => el.get_attribute("contenteditable").is_some_and(|v| v != "false"),
    }
}

/// Entry point called by the generated JavaScript glue.
#[wasm_bindgen(start)]
pub fn start() {
    leptos::mount::mount_to_body(App);
}
