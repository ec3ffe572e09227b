//! hudd-viewer: opens a hudd report bundle in the browser, offline (from `file://`).
//!
//! This first version renders the page frame; the report schema and its views arrive with the
//! report-bundle work. It never depends on the pipeline crates (tract, candle): only on the
//! report schema.

use leptos::prelude::*;
use wasm_bindgen::prelude::wasm_bindgen;

/// The viewer's root component.
#[component]
pub fn App() -> impl IntoView {
    view! {
        <main data-testid="hudd-viewer">
            <h1>"hudd report viewer"</h1>
            <p>"Open a report bundle's index.html to review root-cause clusters offline."</p>
            <p class="version">"hudd " {env!("CARGO_PKG_VERSION")}</p>
        </main>
    }
}

/// Entry point called by the generated JavaScript glue.
#[wasm_bindgen(start)]
pub fn start() {
    leptos::mount::mount_to_body(App);
}
