//! The keyboard help (`?`).

use leptos::prelude::*;

use crate::nav::KEYS;
use crate::Ui;

/// The help panel, shown while `ui.help` is set.
#[component]
pub fn Help() -> impl IntoView {
    let ui = expect_context::<Ui>();
    view! {
        <Show when=move || ui.help.get()>
            <div class="help" data-testid="help" role="dialog" aria-label="keyboard shortcuts">
                <h2>"Keyboard"</h2>
                <table>
                    {KEYS
                        .iter()
                        .map(|(k, what)| view! { <tr><td><kbd>{*k}</kbd></td><td>{*what}</td></tr> })
                        .collect_view()}
                </table>
                <button on:click=move |_| ui.help.set(false)>"close"</button>
            </div>
        </Show>
    }
}
