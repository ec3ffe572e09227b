//! An image with its heatmap stacked on top (a second `<img>` whose CSS opacity is the slider's):
//! the pixels of images opened from `file://` cannot be read back from a canvas, so the overlay is
//! composed by the browser, not computed.

use leptos::prelude::*;

use crate::Ui;

/// A member picture: `src` with, when the overlay is on, `heatmap` over it.
#[component]
pub fn Picture(
    /// The image (bundle-relative path).
    src: String,
    /// The heatmap picture, if any.
    heatmap: Option<String>,
    /// Text alternative (the image's name; rendered as an attribute value, never markup).
    alt: String,
    /// Lazily loaded (grid) or at once (stage).
    #[prop(default = true)]
    lazy: bool,
) -> impl IntoView {
    let ui = expect_context::<Ui>();
    let loading = if lazy { "lazy" } else { "eager" };
    let heat = heatmap.map(|h| {
        view! {
            <img
                class="heatmap"
                src=h
                alt=""
                loading=loading
                style:opacity=move || ui.opacity.get().to_string()
                style:display=move || if ui.overlay.get() { "block" } else { "none" }
            />
        }
    });
    view! {
        <span class="stack">
            <img class="thumb" src=src alt=alt loading=loading />
            {heat}
        </span>
    }
}
