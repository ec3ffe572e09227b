//! The browser side of reviewer notes (localStorage) and of exported files.

use leptos::prelude::window;
use wasm_bindgen::{JsCast, JsValue};

use crate::notes::{storage_key, Notes};

/// The notes of `report_id` in localStorage (none when storage is unavailable or holds garbage).
pub fn load_notes(report_id: &str) -> Notes {
    let stored =
        window().local_storage().ok().flatten().and_then(|s| s.get_item(&storage_key(report_id)).ok().flatten());
    stored.and_then(|json| Notes::from_json(&json, report_id).ok()).unwrap_or_else(|| Notes::new(report_id))
}

/// Saves the notes of `report_id` (silently does nothing where storage is unavailable).
pub fn save_notes(report_id: &str, notes: &Notes) {
    if let Ok(Some(s)) = window().local_storage() {
        let _ = s.set_item(&storage_key(report_id), &notes.to_json());
    }
}

/// Offers JSON `text` as a downloaded file named `file_name`.
pub fn download(file_name: &str, text: &str) -> Result<(), JsValue> {
    download_as(file_name, text, "application/json")
}

/// Offers `text` of MIME type `mime` as a downloaded file named `file_name`.
pub fn download_as(file_name: &str, text: &str, mime: &str) -> Result<(), JsValue> {
    let parts = js_sys::Array::of1(&JsValue::from_str(text));
    let options = web_sys::BlobPropertyBag::new();
    options.set_type(mime);
    let blob = web_sys::Blob::new_with_str_sequence_and_options(&parts, &options)?;
    let url = web_sys::Url::create_object_url_with_blob(&blob)?;
    let a: web_sys::HtmlAnchorElement = leptos::prelude::document().create_element("a")?.dyn_into()?;
    a.set_href(&url);
    a.set_download(file_name);
    a.click();
    // Revoked later: revoking at once can cancel the download.
    leptos::prelude::set_timeout(
        move || {
            let _ = web_sys::Url::revoke_object_url(&url);
        },
        std::time::Duration::from_secs(30),
    );
    Ok(())
}
