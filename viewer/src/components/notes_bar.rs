//! Export and import of the reviewer notes.

use std::sync::Arc;

use hudd_report::Report;
use leptos::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;

use crate::notes::{short_id, Notes};
use crate::{storage, Ui};

/// Buttons: export the notes as JSON, import a notes file.
#[component]
pub fn NotesBar(report: Arc<Report>) -> impl IntoView {
    let ui = expect_context::<Ui>();
    let id = report.report_id.clone();
    let file_name = format!("hudd-notes-{}.json", short_id(&id));
    let export = move |_| {
        let notes = ui.notes.get_untracked();
        let status = match storage::download(&file_name, &notes.to_json()) {
            Ok(()) => {
                ui.notes_unexported.set(false);
                format!("exported {} notes to {file_name}", notes.len())
            }
            Err(_) => "the browser refused the download".to_string(),
        };
        ui.notes_status.set(status);
    };
    let import = move |e: leptos::ev::Event| {
        let Some(input) = e.target().and_then(|t| t.dyn_into::<web_sys::HtmlInputElement>().ok()) else { return };
        let Some(file) = input.files().and_then(|f| f.get(0)) else { return };
        input.set_value("");
        let id = id.clone();
        leptos::task::spawn_local(async move {
            let text = JsFuture::from(file.text()).await.ok().and_then(|t| t.as_string()).unwrap_or_default();
            let status = match Notes::from_json(&text, &id) {
                Ok(imported) => {
                    let mut n = 0;
                    ui.notes.update(|notes| n = notes.merge(imported));
                    format!("imported {n} notes")
                }
                Err(e) => format!("import failed: {e}"),
            };
            ui.notes_status.set(status);
        });
    };
    view! {
        <span class="notes-bar">
            <button data-testid="notes-export" on:click=export>"export notes"</button>
            <label class="import">
                "import notes "
                <input data-testid="notes-import" type="file" accept=".json,application/json" on:change=import />
            </label>
            <span class="status" data-testid="notes-status">{move || ui.notes_status.get()}</span>
            {move || {
                (ui.notes_unexported.get() && ui.notes.with(|n| !n.is_empty())).then(|| {
                    view! {
                        <span class="reminder" data-testid="notes-reminder">
                            "notes not exported yet: the browser's storage is not a record — export them"
                        </span>
                    }
                })
            }}
        </span>
    }
}
