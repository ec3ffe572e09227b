//! Loading the report: from the `<script id="hudd-report" type="application/json">` element that
//! `hudd report` inlines in `index.html` (pages opened from `file://` cannot fetch files), or,
//! during development (`trunk serve`), from `report.json` next to the page.

use hudd_report::{read_report, Report};
use leptos::prelude::document;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;

/// The id of the element holding the inlined report.
pub const REPORT_ELEMENT: &str = "hudd-report";

/// The inlined report, if the page has one.
pub fn inline_report() -> Option<Result<Report, String>> {
    let element = document().get_element_by_id(REPORT_ELEMENT)?;
    let text = element.text_content().unwrap_or_default();
    if text.trim().is_empty() {
        return None;
    }
    Some(read_report(&text).map_err(|e| format!("the report in this page cannot be read: {e}")))
}

/// `report.json` fetched from the page's folder (works over http only).
pub async fn fetched_report() -> Result<Report, String> {
    let window = leptos::prelude::window();
    let response = JsFuture::from(window.fetch_with_str("report.json"))
        .await
        .map_err(|_| "this page has no inlined report and report.json cannot be fetched (open a bundle's index.html written by `hudd report`)".to_string())?;
    let response: web_sys::Response = response.dyn_into().map_err(|_| "fetch returned no response".to_string())?;
    if !response.ok() {
        return Err(format!("report.json: HTTP {}", response.status()));
    }
    let text = JsFuture::from(response.text().map_err(|_| "report.json has no text".to_string())?)
        .await
        .map_err(|_| "report.json cannot be read".to_string())?;
    let text = text.as_string().unwrap_or_default();
    read_report(&text).map_err(|e| format!("report.json cannot be read: {e}"))
}
