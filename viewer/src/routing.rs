//! The browser side of [`Route`]: the URL fragment follows the view (a new history entry per page
//! or layer, the image replaced in place so that the flipbook does not fill the history), the view
//! follows the fragment (links, Back/Forward), and the page scrolls to what was opened.

use std::sync::Arc;

use hudd_report::Report;
use leptos::ev;
use leptos::prelude::*;
use wasm_bindgen::JsValue;

use crate::nav::{self, Page, Route};
use crate::Ui;

/// The route the page's current fragment names, if any.
pub fn current(report: &Report) -> Option<Route> {
    let hash = web_sys::window()?.location().hash().ok()?;
    Route::parse(&hash, report)
}

/// The element id of a cluster's card on the overview.
pub fn card_id(layer: usize, cluster_id: usize) -> String {
    format!("card-{layer}-{cluster_id}")
}

/// Keeps the fragment and the view in step, for the life of the calling component.
pub fn follow(report: Arc<Report>, ui: Ui) {
    let r = report.clone();
    Effect::new(move |previous: Option<Route>| {
        let route = ui.route();
        let hash = route.hash(&r);
        let Some(window) = web_sys::window() else { return route };
        let location = window.location();
        if location.hash().ok().as_deref() != Some(hash.as_str()) {
            let same_view = previous.is_some_and(|p| p.page == route.page && p.layer == route.layer);
            if same_view || previous.is_none() {
                if let Ok(history) = window.history() {
                    let _ = history.replace_state_with_url(&JsValue::NULL, "", Some(&hash));
                }
            } else {
                let _ = location.set_hash(&hash);
            }
        }
        if let Some(p) = previous.filter(|p| p.page != route.page) {
            scroll(&r, route.page, p.page);
        }
        route
    });
    let listener = window_event_listener(ev::hashchange, move |_| {
        if let Some(route) = current(&report) {
            if route != ui.route_untracked() {
                ui.apply(route);
            }
        }
    });
    on_cleanup(move || listener.remove());
}

/// A cluster page starts at the top; the overview, back from a cluster, at that cluster's card.
fn scroll(report: &Report, to: Page, from: Page) {
    let Some(window) = web_sys::window() else { return };
    let card = match (to, from) {
        (Page::Overview, Page::Cluster { layer, cluster }) => {
            nav::cluster_id(report, layer, cluster).map(|id| card_id(layer, id))
        }
        _ => None,
    };
    // After the new page is drawn.
    request_animation_frame(move || {
        let element = card.and_then(|id| window.document()?.get_element_by_id(&id));
        match element {
            Some(e) => {
                let options = web_sys::ScrollIntoViewOptions::new();
                options.set_block(web_sys::ScrollLogicalPosition::Center);
                e.scroll_into_view_with_scroll_into_view_options(&options);
            }
            None => window.scroll_to_with_x_and_y(0.0, 0.0),
        }
    });
}
