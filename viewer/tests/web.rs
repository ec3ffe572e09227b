//! Component tests of the viewer in a real browser (wasm-bindgen-test). Run with
//! `CHROMEDRIVER=/usr/bin/chromedriver cargo test -p hudd-viewer --target wasm32-unknown-unknown`
//! (`.cargo/config.toml` sets wasm-bindgen-test-runner as the runner; `.ci/run` does this).

#![cfg(target_arch = "wasm32")]
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::sync::Arc;

use hudd_report::*;
use hudd_viewer::notes::{Note, Notes};
use hudd_viewer::{nav, Viewer};
use leptos::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

const SCRIPT: &str = "<script>window.__xss = 1</script>";
const IMG: &str = "\"><img src=x onerror=\"window.__xss = 2\">";

/// A report with one layer of two clusters (3 and 2 images); image 0's name and label are markup.
fn report() -> Report {
    let image = |i: usize| ImageEntry {
        name: if i == 0 { format!("test/{IMG}.png") } else { format!("test/{i}.png") },
        split: Split::Test,
        expected: if i == 0 { SCRIPT.into() } else { "up".into() },
        predicted: "down".into(),
        thumbnail: format!("images/thumbs/{i}.png"),
        metadata: vec![format!("{i}")],
    };
    let member = |i: usize, d: f64| Member { image: i, distance_to_medoid: d, heatmap: Some(format!("h/{i}.png")) };
    let cluster = |id: usize, members: Vec<Member>| Cluster {
        cluster_id: id,
        members,
        gif: None,
        mean_heatmap: None,
        explanations: vec![Explanation {
            column: "eyelid".into(),
            kind: ColumnKind::Numeric,
            ratio: 0.1,
            reduction: 0.9,
            summary: if id == 1 { SCRIPT.into() } else { "eyelid −90% variance".into() },
            separation: Some(0.6),
            p_value: Some(0.001),
            explains: Some(id == 1),
            rq1: Some("eyelid −90% variance".into()),
            histogram: Some(Histogram {
                edges: vec![0.0, 0.5, 1.0],
                labels: vec![],
                cluster: vec![3, 0],
                all: vec![3, 2],
            }),
        }],
        known_cause: (id == 1).then(|| KnownCause { cause: "eyelid-closed".into(), share: 2.0 / 3.0 }),
    };
    Report {
        format: FORMAT.into(),
        format_version: FORMAT_VERSION,
        hudd_version: "0.1.0".into(),
        report_id: "0123456789abcdef".into(),
        run: Run::default(),
        model: ModelSummary { file_name: format!("{IMG}.onnx"), ..Default::default() },
        datasets: vec![],
        evaluation: Evaluation::default(),
        analysis: Some(Analysis {
            method: None,
            feature_path: None,
            preset: Preset::Hudd,
            linkage: Linkage::WardRows,
            normalize: Normalize::None,
            layer_rule: LayerRule::Wicd,
            k_selection: "knee".into(),
            images: 5,
            best_layer: Some(0),
            images_per_minute: 600.0,
            metadata_columns: vec!["eyelid".into()],
            explanation_rule: Some(ExplanationRule { separation_min: 0.3, alpha: 0.01 }),
            alternatives: vec![],
            layers: vec![Layer {
                name: "conv1".into(),
                shape: vec![4, 8, 8],
                curve: (2..6).map(|k| CurvePoint { k, wicd: 1.0 / k as f64, gradient: 0.0 }).collect(),
                k: 2,
                k_choice: KChoice::Knee,
                k_choice_reason: None,
                score: 0.5,
                silhouette: 0.2,
                heatmap_layer: Some("conv1".into()),
                excluded: None,
                curve_file: None,
                clusters: vec![
                    cluster(1, vec![member(0, 0.0), member(1, 0.5), member(2, 0.7)]),
                    cluster(2, vec![member(3, 0.0), member(4, 0.3)]),
                ],
                // (0,1) → 5, (3,4) → 6, (2,5) → 7, (6,7) → 8: cut into 2 it is the two clusters.
                dendrogram: Some(Dendrogram {
                    leaves: vec![0, 1, 2, 3, 4],
                    merges: vec![[0, 1], [3, 4], [2, 5], [6, 7]],
                    heights: vec![0.1, 0.2, 0.4, 1.0],
                }),
                known_causes: Some(KnownCauses {
                    column: "cause".into(),
                    purity: 0.8,
                    causes: vec![CauseCount { cause: "eyelid-closed".into(), images: 2 }],
                    covered: vec!["eyelid-closed".into()],
                }),
                map: Some(Map {
                    method: "classical MDS".into(),
                    explained: 0.8,
                    images: vec![0, 1, 2, 3, 4],
                    points: vec![[0.0, 0.0], [0.1, 0.0], [0.3, 0.1], [2.0, 1.0], [2.1, 1.2]],
                }),
                noise: vec![],
                trials: vec![],
            }],
        }),
        images: (0..5).map(image).collect(),
        unsafe_set: None,
        retraining: None,
        skipped: vec![],
        tool_confidence: None,
    }
}

/// Mounts the viewer of `report()` in a fresh element and returns it, from a page without a
/// fragment.
fn mount() -> web_sys::HtmlElement {
    set_hash("");
    mount_report(report())
}

/// Replaces the page's fragment without a history entry (`""` removes it).
fn set_hash(hash: &str) {
    let location = window().location();
    let url = format!("{}{}{hash}", location.pathname().unwrap(), location.search().unwrap());
    window().history().unwrap().replace_state_with_url(&wasm_bindgen::JsValue::NULL, "", Some(&url)).unwrap();
}

fn hash() -> String {
    window().location().hash().unwrap()
}

/// Mounts the viewer of `report` in a fresh element and returns it.
fn mount_report(report: Report) -> web_sys::HtmlElement {
    let doc = document();
    let host: web_sys::HtmlElement = doc.create_element("div").unwrap().dyn_into().unwrap();
    doc.body().unwrap().append_child(&host).unwrap();
    let r = Arc::new(report);
    let handle = leptos::mount::mount_to(host.clone(), move || view! { <Viewer report=r.clone() /> });
    handle.forget();
    host
}

/// Lets effects and timers run.
async fn tick() {
    let promise = js_sys::Promise::new(&mut |resolve, _| {
        window().set_timeout_with_callback_and_timeout_and_arguments_0(&resolve, 20).unwrap();
    });
    wasm_bindgen_futures::JsFuture::from(promise).await.unwrap();
}

fn press(key: &str) {
    let init = web_sys::KeyboardEventInit::new();
    init.set_key(key);
    init.set_bubbles(true);
    let e = web_sys::KeyboardEvent::new_with_keyboard_event_init_dict("keydown", &init).unwrap();
    window().dispatch_event(&e).unwrap();
}

fn count(host: &web_sys::HtmlElement, css: &str) -> u32 {
    host.query_selector_all(css).unwrap().length()
}

fn text(host: &web_sys::HtmlElement, css: &str) -> String {
    host.query_selector(css).unwrap().map(|e| e.text_content().unwrap_or_default()).unwrap_or_default()
}

#[wasm_bindgen_test]
async fn overview_lists_the_best_layers_clusters_and_renders_markup_as_text() {
    let host = mount();
    tick().await;
    assert_eq!(count(&host, "[data-testid=cluster-card]"), 2);
    let cards = host.query_selector_all("[data-testid=cluster-card] .explanation").unwrap();
    let second = cards.item(1).and_then(|n| n.text_content()).unwrap_or_default();
    assert_eq!(second, "unexplained", "cluster 2's card");
    assert_eq!(text(&host, "[data-testid=known-cause]"), "cause: eyelid-closed (67%)");
    assert_eq!(count(&host, "[data-testid=known-cause]"), 1, "cluster 2 has no known cause");
    assert!(text(&host, "[data-testid=layers]").contains("0.80"), "the purity column");
    assert!(text(&host, "[data-testid=known-causes]").contains("covered 1 of 1"));
    assert_eq!(count(&host, "[data-testid=layer-row]"), 1);
    assert_eq!(count(&host, "[data-testid=wicd-curve] circle"), 1, "the chosen k is marked");
    // Axes with ticks and titles: k from 2 to 5 on a log scale, five WICD ticks.
    let k_ticks = host.query_selector_all("[data-testid=wicd-curve] .k-tick").unwrap();
    let ks: Vec<String> = (0..k_ticks.length()).map(|i| k_ticks.item(i).unwrap().text_content().unwrap()).collect();
    assert_eq!(ks, ["2", "5"]);
    assert_eq!(count(&host, "[data-testid=wicd-curve] .wicd-tick"), 5);
    assert!(text(&host, "[data-testid=wicd-curve] svg").contains("number of clusters k (log scale)"));
    let all = host.text_content().unwrap();
    assert!(all.contains(SCRIPT), "the explanation is text");
    assert!(all.contains(&format!("{IMG}.onnx")), "the model name is text");
    assert_eq!(count(&host, "script"), 0);
    assert_eq!(count(&host, "img[src=x]"), 0);
    host.remove();
}

#[wasm_bindgen_test]
async fn keys_move_between_clusters_and_images() {
    let host = mount();
    tick().await;
    press("ArrowRight");
    tick().await;
    assert!(text(&host, "[data-testid=cluster-title]").contains("cluster 1 "));
    assert_eq!(count(&host, "[data-testid=member]"), 3);
    assert_eq!(text(&host, "[data-testid=stage-name]"), format!("test/{IMG}.png"), "medoid first, as text");
    assert_eq!(count(&host, "[data-testid=unexplained]"), 0, "cluster 1's column explains it");
    assert_eq!(text(&host, "[data-testid=verdict]"), "✓ explains");
    assert_eq!(count(&host, "[data-testid=histogram] rect"), 4, "two bins, cluster and all");
    press("j");
    tick().await;
    assert_eq!(text(&host, "[data-testid=stage-name]"), "test/1.png");
    press("k");
    press("k");
    tick().await;
    assert_eq!(text(&host, "[data-testid=stage-name]"), "test/2.png", "k wraps around");
    press("ArrowRight");
    tick().await;
    assert!(text(&host, "[data-testid=cluster-title]").contains("cluster 2 "));
    assert_eq!(text(&host, "[data-testid=stage-name]"), "test/3.png", "a new cluster starts at its medoid");
    assert!(
        text(&host, "[data-testid=unexplained]").contains("separation ≥ 0.3, p < 0.01"),
        "cluster 2 is unexplained"
    );
    press("?");
    tick().await;
    assert_eq!(count(&host, "[data-testid=help]"), 1);
    press("Escape");
    press("Escape");
    tick().await;
    assert_eq!(count(&host, "[data-testid=help]"), 0);
    assert_eq!(count(&host, "[data-testid=overview]"), 1);
    host.remove();
}

#[wasm_bindgen_test]
async fn space_plays_the_flipbook_and_the_overlay_toggles() {
    let host = mount();
    tick().await;
    press("ArrowRight");
    tick().await;
    let heat = host.query_selector("[data-testid=stage] img.heatmap").unwrap().unwrap();
    let style = || heat.get_attribute("style").unwrap_or_default();
    assert!(style().contains("display: none"), "{}", style());
    let toggle: web_sys::HtmlInputElement =
        host.query_selector("[data-testid=overlay-toggle]").unwrap().unwrap().dyn_into().unwrap();
    toggle.click();
    tick().await;
    let heat = host.query_selector("[data-testid=stage] img.heatmap").unwrap().unwrap();
    let style = heat.get_attribute("style").unwrap_or_default();
    assert!(style.contains("display: block") && style.contains("opacity: 0.6"), "{style}");
    // 600 images per minute: one every 100 ms. A loaded machine delays timers, so poll for the
    // first step (up to 5 s) instead of counting on a number of steps, which could wrap around.
    press(" ");
    let medoid = format!("test/{IMG}.png");
    let mut advanced = false;
    for _ in 0..250 {
        tick().await;
        if text(&host, "[data-testid=stage-name]") != medoid {
            advanced = true;
            break;
        }
    }
    assert!(advanced, "the flipbook advanced");
    press(" ");
    tick().await;
    assert!(text(&host, "[data-testid=play]").contains("play"));
    host.remove();
}

#[wasm_bindgen_test]
async fn a_cluster_page_shows_its_unsafe_set_and_retraining_gain_when_present() {
    let mut r = report();
    r.unsafe_set = Some(UnsafeSet {
        layer: "conv1".into(),
        candidates: 10,
        clusters: vec![UnsafeCluster {
            cluster_id: 1,
            images: vec![3, 4],
            distances: vec![0.25, 1.5],
            test_members: 2,
            quota: 4,
            gif: None,
        }],
        mode: "closest-u".into(),
        improvement: "data/improvement".into(),
        skipped: 1,
    });
    r.retraining = Some(Retraining {
        accuracy_before: 0.8,
        accuracy_after: 0.9,
        seed: 7,
        clusters: vec![RetrainingGain { cluster_id: 1, gain_pp: 12.5, members: 8, right_after: 1 }],
        failing_before: 0.0,
        failing_after: 0.125,
        epochs: 1,
        chosen_epoch: 1,
        retrained_model: "gaze_cnn.retrained.onnx".into(),
        retrained_sha256: "00".repeat(32),
        comparison: None,
    });
    let host = mount_report(r);
    tick().await;
    // The overview's summary table: one row per cluster of the unsafe set.
    let summary = text(&host, "[data-testid=unsafe-summary]");
    assert!(summary.contains("2 of 10 improvement images") && summary.contains("1 could not be read"), "{summary}");
    assert_eq!(count(&host, "[data-testid=unsafe-row]"), 1);
    let row = text(&host, "[data-testid=unsafe-row]");
    assert!(row.contains('4') && row.contains("0.25"), "{row}");
    press("ArrowRight");
    tick().await;
    let section = text(&host, "[data-testid=unsafe-set]");
    assert!(
        section.contains("2 improvement images") && section.contains("quota of 4 (2 × 2 test members)"),
        "{section}"
    );
    assert_eq!(count(&host, "[data-testid=unsafe-set] img"), 2);
    let captions = text(&host, "[data-testid=unsafe-image]");
    assert!(captions.contains("0.25"), "nearest first, with its distance: {captions}");
    assert!(text(&host, "[data-testid=retraining-gain]").contains("+12.50 percentage points"));
    press("ArrowRight");
    tick().await;
    assert_eq!(count(&host, "[data-testid=unsafe-set]"), 0, "cluster 2 has no unsafe images");
    host.remove();
    // Without them, no such sections.
    let host = mount();
    tick().await;
    press("ArrowRight");
    tick().await;
    assert_eq!(count(&host, "[data-testid=unsafe-set]") + count(&host, "[data-testid=retraining-gain]"), 0);
    host.remove();
}

#[wasm_bindgen_test]
async fn the_comparison_shows_spreads_kept_epochs_and_p_values_only_when_measured() {
    let method = |name: &str, mean: f64, sd: Option<f64>, kept: Vec<usize>| MethodResult {
        method: name.into(),
        overall: MeanSd { mean, sd },
        failing_clusters: MeanSd { mean: mean / 4.0, sd },
        per_cluster: vec![ClusterMeanSd { cluster_id: 1, members: 8, accuracy: MeanSd { mean: mean / 4.0, sd } }],
        labelled: if name == "before" { 0 } else { 40 },
        trained: if name == "before" { vec![] } else { vec![20; kept.len()] },
        kept_epochs: kept,
    };
    let retraining = |comparison| Retraining {
        accuracy_before: 0.8,
        accuracy_after: 0.9,
        seed: 7,
        clusters: vec![RetrainingGain { cluster_id: 1, gain_pp: 12.5, members: 8, right_after: 1 }],
        failing_before: 0.0,
        failing_after: 0.125,
        epochs: 5,
        chosen_epoch: 3,
        retrained_model: "m.retrained.onnx".into(),
        retrained_sha256: "00".repeat(32),
        comparison: Some(comparison),
    };
    // Five repeats: spreads, the kept epochs' range and the tests' p-values.
    let mut r = report();
    r.retraining = Some(retraining(Comparison {
        budget: 40,
        repeats: 5,
        seed: 0,
        methods: vec![
            method("before", 0.8, None, vec![]),
            method("hudd", 0.9, Some(0.01), vec![3, 5, 4, 5, 5]),
            method("bl1", 0.85, Some(0.02), vec![0, 0, 0, 0, 0]),
            method("bl2", 0.82, Some(0.02), vec![2, 2, 2, 2, 2]),
        ],
        tests: vec![ComparisonTest {
            method: "hudd".into(),
            baseline: "bl1".into(),
            measure: "failing-clusters".into(),
            difference: 0.0125,
            welch_p: Some(0.0004),
            mann_whitney_p: Some(0.0317),
        }],
    }));
    let host = mount_report(r);
    tick().await;
    let table = text(&host, "[data-testid=comparison]");
    assert!(table.contains("90.00% ± 1.00%") && table.contains("3–5"), "{table}");
    assert!(!table.contains("80.00% ±"), "the model before has no spread: {table}");
    let tests = text(&host, "[data-testid=comparison-tests]");
    assert_eq!(count(&host, "[data-testid=test-row]"), 1);
    assert!(
        tests.contains("hudd vs bl1, root-cause clusters") && tests.contains("< 0.001") && tests.contains("0.032"),
        "{tests}"
    );
    host.remove();
    // One repeat: no spread, no test, and the page says why.
    let mut r = report();
    r.retraining = Some(retraining(Comparison {
        budget: 40,
        repeats: 1,
        seed: 0,
        methods: vec![method("before", 0.8, None, vec![]), method("hudd", 0.9, None, vec![0])],
        tests: vec![],
    }));
    let host = mount_report(r);
    tick().await;
    let table = text(&host, "[data-testid=comparison]");
    assert!(!table.contains('±'), "one repeat has no sd: {table}");
    assert!(text(&host, "[data-testid=comparison-tests]").contains("p-values from 5 repeats on"));
    host.remove();
}

#[wasm_bindgen_test]
async fn a_run_without_clusters_says_so_and_keys_do_nothing() {
    let mut r = report();
    r.analysis = None;
    let host = mount_report(r);
    tick().await;
    assert_eq!(count(&host, "[data-testid=no-clusters]"), 1);
    press("ArrowRight");
    press("j");
    tick().await;
    assert_eq!(count(&host, "[data-testid=overview]"), 1);
    host.remove();
}

#[wasm_bindgen_test]
fn notes_survive_a_reload_through_local_storage() {
    let mut notes = Notes::new("abc");
    notes.set("conv1", 1, Note { label: "glare".into(), text: "<i>text</i>".into() });
    hudd_viewer::storage::save_notes("abc", &notes);
    assert_eq!(hudd_viewer::storage::load_notes("abc"), notes);
    assert!(hudd_viewer::storage::load_notes("other").notes.is_empty(), "notes are kept per report");
}

#[wasm_bindgen_test]
async fn the_tool_confidence_record_shows_the_build_and_every_check() {
    let mut r = report();
    let check = |name: &str, passed: bool| SelftestCheck {
        check: name.into(),
        oracle: "Zennit".into(),
        compared: "relevance".into(),
        values: 60,
        worst: if passed { 0.21 } else { 3.5 },
        passed,
        detail: String::new(),
    };
    r.tool_confidence = Some(ToolConfidence {
        version: "9.9.9".into(),
        commit: "0123abc".into(),
        profile: "release".into(),
        target: "x86_64-unknown-linux-gnu".into(),
        rustc: "rustc 1.95.0".into(),
        selftest: vec![check("relevance", true), check("clustering", false)],
        rules: vec![RuleUse { layer: "conv1".into(), op: "Conv".into(), rule: "epsilon".into() }],
        limitations: vec!["<b>LSTM</b> is not explained".into()],
    });
    let host = mount_report(r);
    tick().await;
    let section = text(&host, "[data-testid=tool-confidence]");
    assert!(section.contains("1 of 2 oracle checks FAILED"), "{section}");
    assert!(text(&host, "[data-testid=build]").contains("commit 0123abc"));
    assert_eq!(count(&host, "[data-testid=selftest-row]"), 2);
    assert_eq!(count(&host, "[data-testid=tool-confidence] tr.failed"), 1);
    assert!(section.contains("<b>LSTM</b>"), "limitations render as text: {section}");
    host.remove();
    // Old bundles have none: no section.
    let host = mount();
    tick().await;
    assert_eq!(count(&host, "[data-testid=tool-confidence]"), 0);
    host.remove();
}

#[wasm_bindgen_test]
fn routes_name_every_view_and_refuse_what_is_not_there() {
    let r = report();
    let cluster =
        |cluster: usize, image: usize| nav::Route { page: nav::Page::Cluster { layer: 0, cluster }, layer: 0, image };
    for (route, text) in [
        (nav::Route { page: nav::Page::Overview, layer: 0, image: 0 }, "#/layer/0"),
        (cluster(0, 0), "#/layer/0/cluster/1"),
        (cluster(1, 1), "#/layer/0/cluster/2/image/2"),
        (nav::Route { page: nav::Page::Images { layer: 0 }, layer: 0, image: 0 }, "#/layer/0/images"),
    ] {
        assert_eq!(route.hash(&r), text);
        assert_eq!(nav::Route::parse(text, &r), Some(route), "{text}");
    }
    for bad in [
        "",
        "#",
        "#/layer/1",
        "#/layer/0/cluster/3",
        "#/layer/0/cluster/2/image/3",
        "#/layer/0/cluster/1/image/0",
        "#/x/0",
        "#/layer/0/extra",
    ] {
        assert_eq!(nav::Route::parse(bad, &r), None, "{bad}");
    }
}

#[wasm_bindgen_test]
async fn the_url_follows_the_view_and_back_and_links_open_views() {
    let host = mount();
    tick().await;
    assert_eq!(hash(), "#/layer/0");
    press("ArrowRight");
    tick().await;
    assert_eq!(hash(), "#/layer/0/cluster/1");
    let entries = window().history().unwrap().length().unwrap();
    press("j");
    tick().await;
    assert_eq!(hash(), "#/layer/0/cluster/1/image/2");
    assert_eq!(window().history().unwrap().length().unwrap(), entries, "the image replaces, it does not add");
    // A link (or a typed fragment) opens its view.
    window().location().set_hash("#/layer/0/cluster/2/image/2").unwrap();
    tick().await;
    assert!(text(&host, "[data-testid=cluster-title]").contains("cluster 2 "));
    assert_eq!(text(&host, "[data-testid=stage-name]"), "test/4.png");
    // Back returns to the view before.
    window().history().unwrap().back().unwrap();
    tick().await;
    tick().await;
    assert!(text(&host, "[data-testid=cluster-title]").contains("cluster 1 "), "{}", hash());
    // Esc goes back to where the cluster was opened from: the overview.
    press("Escape");
    tick().await;
    assert_eq!(count(&host, "[data-testid=overview]"), 1);
    assert_eq!(hash(), "#/layer/0");
    host.remove();

    // A page opened with a fragment starts at that view; a fragment that names nothing is ignored.
    set_hash("#/layer/0/cluster/2");
    let host = mount_report(report());
    tick().await;
    assert!(text(&host, "[data-testid=cluster-title]").contains("cluster 2 "));
    host.remove();
    set_hash("#/layer/7/cluster/1");
    let host = mount_report(report());
    tick().await;
    assert_eq!(count(&host, "[data-testid=overview]"), 1);
    assert_eq!(hash(), "#/layer/0", "replaced by the view shown");
    host.remove();
    set_hash("");
}

#[wasm_bindgen_test]
async fn the_stage_shows_image_heatmap_and_overlay_and_zooms() {
    let host = mount();
    tick().await;
    press("ArrowRight");
    tick().await;
    for panel in ["panel-image", "panel-heatmap", "panel-overlay"] {
        assert_eq!(count(&host, &format!("[data-testid={panel}]")), 1, "{panel}");
    }
    assert!(text(&host, "[data-testid=legend]").contains("positive relevance"));
    assert!(
        !text(&host, "[data-testid=legend]").contains("not of the clustered layer"),
        "the heatmaps are conv1's own"
    );
    assert_eq!(count(&host, "[data-testid=stage].zoomed"), 0);
    press("z");
    tick().await;
    assert_eq!(count(&host, "[data-testid=stage].zoomed"), 1, "z zooms");
    let panel: web_sys::HtmlElement =
        host.query_selector("[data-testid=panel-heatmap]").unwrap().unwrap().dyn_into().unwrap();
    panel.click();
    tick().await;
    assert_eq!(count(&host, "[data-testid=stage].zoomed"), 0, "a click zooms out");
    // The grid size slider sets the thumbnails' size.
    let slider: web_sys::HtmlInputElement =
        host.query_selector("[data-testid=grid-size]").unwrap().unwrap().dyn_into().unwrap();
    slider.set_value("120");
    slider.dispatch_event(&web_sys::Event::new("input").unwrap()).unwrap();
    tick().await;
    let grid = host.query_selector("[data-testid=member-grid]").unwrap().unwrap();
    assert!(grid.get_attribute("style").unwrap_or_default().contains("--thumb: 120px"));
    host.remove();

    // Heatmaps of another layer are named.
    let mut r = report();
    r.analysis.as_mut().unwrap().layers[0].heatmap_layer = Some("image".into());
    set_hash("");
    let host = mount_report(r);
    tick().await;
    press("ArrowRight");
    tick().await;
    assert!(text(&host, "[data-testid=legend]").contains("heatmaps of layer image, not of the clustered layer"));
    host.remove();
}

#[wasm_bindgen_test]
fn members_filter_sort_and_export_as_csv() {
    use hudd_viewer::members::{cluster_rows, layer_rows, passes, selection_csv, shown};
    for (value, condition, ok) in [
        ("0.5", "<0.6", true),
        ("0.5", "<0.5", false),
        ("0.5", "<=0.5", true),
        ("0.5", ">=0.5", true),
        ("0.5", "0.2..0.4", false),
        ("0.3", "0.2..0.4", true),
        ("up-left", "LEFT", true),
        ("up", "down", false),
        ("x", "", true),
    ] {
        assert_eq!(passes(value, condition), ok, "{value} {condition}");
    }
    let r = report();
    let layer = &r.analysis.as_ref().unwrap().layers[0];
    let c = cluster_rows(&layer.clusters[0], 0);
    assert_eq!(shown(&r, &c, "", "", "", false), vec![0, 1, 2], "member order");
    assert_eq!(shown(&r, &c, "distance", ">0.1", "", false), vec![1, 2]);
    assert_eq!(shown(&r, &c, "", "", "distance", true), vec![2, 1, 0]);
    assert_eq!(shown(&r, &c, "eyelid", "1..2", "eyelid", true), vec![2, 1], "a metadata column");
    // Every image of the layer: by cluster, and by the cluster of a re-cut into 3.
    let all = layer_rows(layer, None);
    assert_eq!(all.iter().map(|r| r.image).collect::<Vec<_>>(), vec![0, 1, 2, 3, 4]);
    assert_eq!(shown(&r, &all, "cluster", "2..2", "", false), vec![3, 4]);
    assert_eq!(shown(&r, &all, "", "", "distance", true), vec![2, 1, 4, 0, 3]);
    let cut3 = layer.dendrogram.as_ref().unwrap().cut(3);
    let all = layer_rows(layer, Some(&cut3));
    // {0,1} → 1, {3,4} → 2, {2} → 3.
    assert_eq!(all.iter().map(|r| r.cut).collect::<Vec<_>>(), [1, 1, 3, 2, 2].map(Some).to_vec());
    assert_eq!(shown(&r, &all, "cut", "3..3", "", false), vec![2]);
    let selected = [(0usize, 2usize), (0, 0)].into_iter().collect();
    let csv = selection_csv(&r, &selected);
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines[0], "image,layer,cluster,expected,predicted,distance_to_medoid,eyelid");
    assert_eq!(lines.len(), 3);
    // A field with quotes is quoted, its quotes doubled.
    assert_eq!(lines[1], format!("\"test/{}.png\",conv1,1,{SCRIPT},down,0,0", IMG.replace('"', "\"\"")), "{csv}");
    assert_eq!(lines[2], "test/2.png,conv1,1,up,down,0.7,2");
}

#[wasm_bindgen_test]
async fn the_grid_filters_sorts_and_selects() {
    let host = mount();
    tick().await;
    press("ArrowRight");
    tick().await;
    let names = |host: &web_sys::HtmlElement| -> Vec<String> {
        let list = host.query_selector_all("[data-testid=member]").unwrap();
        (0..list.length())
            .map(|i| list.item(i).unwrap().dyn_into::<web_sys::Element>().unwrap().get_attribute("title").unwrap())
            .collect()
    };
    let select = |id: &str, value: &str| {
        let el: web_sys::HtmlSelectElement =
            host.query_selector(&format!("[data-testid={id}]")).unwrap().unwrap().dyn_into().unwrap();
        el.set_value(value);
        el.dispatch_event(&web_sys::Event::new("change").unwrap()).unwrap();
    };
    select("sort-key", "distance");
    let desc: web_sys::HtmlInputElement =
        host.query_selector("[data-testid=sort-descending]").unwrap().unwrap().dyn_into().unwrap();
    desc.click();
    tick().await;
    assert_eq!(names(&host)[0], "test/2.png", "largest distance first");
    select("filter-key", "eyelid");
    let value: web_sys::HtmlInputElement =
        host.query_selector("[data-testid=filter-value]").unwrap().unwrap().dyn_into().unwrap();
    value.set_value(">0");
    value.dispatch_event(&web_sys::Event::new("input").unwrap()).unwrap();
    tick().await;
    assert_eq!(names(&host), vec!["test/2.png", "test/1.png"]);
    // Click one, shift-click another: both and those between are selected; x toggles the current.
    let members = host.query_selector_all("[data-testid=member]").unwrap();
    let first: web_sys::HtmlElement = members.item(0).unwrap().dyn_into().unwrap();
    first.click();
    let init = web_sys::MouseEventInit::new();
    init.set_shift_key(true);
    init.set_bubbles(true);
    let shift = web_sys::MouseEvent::new_with_mouse_event_init_dict("click", &init).unwrap();
    members.item(1).unwrap().dispatch_event(&shift).unwrap();
    tick().await;
    assert!(text(&host, "[data-testid=selection-count]").starts_with("2 selected"));
    assert_eq!(count(&host, "[data-testid=member].selected"), 2);
    press("x");
    tick().await;
    assert!(text(&host, "[data-testid=selection-count]").starts_with("1 selected"), "x unselects the current image");
    press("x");
    tick().await;
    assert!(text(&host, "[data-testid=selection-count]").starts_with("2 selected"));
    // A note on the current image goes into the notes, and a reminder shows until they are exported.
    assert_eq!(count(&host, "[data-testid=notes-reminder]"), 0);
    let note: web_sys::HtmlTextAreaElement =
        host.query_selector("[data-testid=image-note]").unwrap().unwrap().dyn_into().unwrap();
    note.set_value("pupil hidden by the lid");
    note.dispatch_event(&web_sys::Event::new("input").unwrap()).unwrap();
    tick().await;
    let stored = window().local_storage().unwrap().unwrap().get_item("hudd-notes:0123456789abcdef").unwrap().unwrap();
    assert!(stored.contains("pupil hidden by the lid") && stored.contains("\"images\""), "{stored}");
    assert_eq!(count(&host, "[data-testid=notes-reminder]"), 1);
    let notes_export: web_sys::HtmlElement =
        host.query_selector("[data-testid=notes-export]").unwrap().unwrap().dyn_into().unwrap();
    notes_export.click();
    tick().await;
    assert_eq!(count(&host, "[data-testid=notes-reminder]"), 0, "exported");
    note.set_value("");
    note.dispatch_event(&web_sys::Event::new("input").unwrap()).unwrap();
    tick().await;
    let export: web_sys::HtmlElement =
        host.query_selector("[data-testid=selection-export]").unwrap().unwrap().dyn_into().unwrap();
    export.click();
    tick().await;
    assert!(text(&host, "[data-testid=notes-status]").starts_with("exported 2 selected images to hudd-selection-"));
    host.remove();
}

#[wasm_bindgen_test]
async fn a_confusion_cell_opens_its_images_and_their_clusters() {
    let mut r = report();
    r.evaluation = Evaluation {
        task: Task::Classification,
        classes: vec!["up".into(), "down".into()],
        splits: vec![SplitEvaluation {
            split: Split::Test,
            images: 9,
            correct: 5,
            accuracy: 5.0 / 9.0,
            per_class: vec![
                ClassAccuracy { class: "up".into(), images: 5, correct: 1, accuracy: 0.2 },
                ClassAccuracy { class: "down".into(), images: 4, correct: 4, accuracy: 1.0 },
            ],
            confusion: Some(vec![vec![1, 4], vec![0, 4]]),
        }],
    };
    set_hash("");
    let host = mount_report(r);
    tick().await;
    assert_eq!(count(&host, "[data-testid=confusion-cell]"), 1, "only non-zero off-diagonal cells open");
    assert_eq!(count(&host, "[data-testid=accuracy-chart] [data-testid=accuracy-bar]"), 2, "a bar per class");
    let bar = host.query_selector("[data-testid=accuracy-bar]").unwrap().unwrap();
    assert_eq!(bar.get_attribute("width").unwrap(), "60", "20 % of the 300-pixel axis");
    assert!(text(&host, "[data-testid=accuracy-chart]").contains("100%"), "ticks");
    let cell: web_sys::HtmlElement =
        host.query_selector("[data-testid=confusion-cell]").unwrap().unwrap().dyn_into().unwrap();
    cell.click();
    tick().await;
    let drill = text(&host, "[data-testid=confusion-drill]");
    assert!(
        drill.contains("expected up, predicted down: held by cluster 1 (2), cluster 2 (2) at layer conv1"),
        "{drill}"
    );
    assert_eq!(count(&host, "[data-testid=confusion-image]"), 4);
    // An image opens its cluster at that member.
    let images = host.query_selector_all("[data-testid=confusion-image]").unwrap();
    let last: web_sys::HtmlElement = images.item(3).unwrap().dyn_into().unwrap();
    last.click();
    tick().await;
    assert!(text(&host, "[data-testid=cluster-title]").contains("cluster 2 "));
    assert_eq!(text(&host, "[data-testid=stage-name]"), "test/4.png");
    host.remove();
    set_hash("");
}

#[wasm_bindgen_test]
fn k_ticks_step_1_2_5_on_the_log_axis() {
    let mut layer = report().analysis.unwrap().layers.remove(0);
    layer.curve = (2..=220).map(|k| CurvePoint { k, wicd: 1.0 / k as f64, gradient: 0.0 }).collect();
    let s = hudd_viewer::components::CurveScales::of(&layer).unwrap();
    assert_eq!(s.k_ticks(), vec![2, 5, 10, 20, 50, 100, 220]);
    assert!(s.x(10.0) - s.x(2.0) > s.x(220.0) - s.x(100.0), "log scale: the first k get the room");
}

fn set_range(host: &web_sys::HtmlElement, testid: &str, value: &str) {
    let el: web_sys::HtmlInputElement =
        host.query_selector(&format!("[data-testid={testid}]")).unwrap().unwrap().dyn_into().unwrap();
    el.set_value(value);
    el.dispatch_event(&web_sys::Event::new("input").unwrap()).unwrap();
}

fn click(host: &web_sys::HtmlElement, css: &str, nth: u32) {
    let el: web_sys::HtmlElement = host.query_selector_all(css).unwrap().item(nth).unwrap().dyn_into().unwrap();
    el.click();
}

#[wasm_bindgen_test]
async fn the_cut_slider_recuts_the_tree_and_the_cards_follow() {
    let host = mount();
    tick().await;
    assert_eq!(count(&host, "[data-testid=dendrogram] path"), 4, "every merge of the 5 images is drawn");
    assert_eq!(text(&host, "[data-testid=cut-k]"), "2");
    assert_eq!(count(&host, "[data-testid=cluster-card]"), 2);
    let line_y = |host: &web_sys::HtmlElement| {
        host.query_selector("[data-testid=cut-line]").unwrap().unwrap().get_attribute("y1").unwrap()
    };
    let before = line_y(&host);
    // Cut into 3: {0,1}, {3,4}, {2}; the cards show them and what stored clusters they hold.
    set_range(&host, "cut-slider", "3");
    tick().await;
    assert_eq!(text(&host, "[data-testid=cut-k]"), "3");
    assert_eq!(count(&host, "[data-testid=cluster-card]"), 0);
    assert_eq!(count(&host, "[data-testid=cut-card]"), 3);
    assert_ne!(line_y(&host), before, "the cut line moves");
    let sizes = host.query_selector_all("[data-testid=cut-card] .size").unwrap();
    let sizes: Vec<String> = (0..sizes.length()).map(|i| sizes.item(i).unwrap().text_content().unwrap()).collect();
    assert_eq!(sizes, ["2 images", "2 images", "1 images"]);
    let holds = host.query_selector_all("[data-testid=cut-holds]").unwrap();
    let holds: Vec<String> = (0..holds.length()).map(|i| holds.item(i).unwrap().text_content().unwrap()).collect();
    assert_eq!(holds, ["cluster 1 (2)", "cluster 2 (2)", "cluster 1 (1)"]);
    assert!(text(&host, "[data-testid=cut-note]").contains("analysis chose k = 2"));
    // The map colours by the live cut: three colours.
    let fills = |host: &web_sys::HtmlElement| {
        let pts = host.query_selector_all("[data-testid=map-point]").unwrap();
        let mut f: Vec<String> = (0..pts.length())
            .map(|i| pts.item(i).unwrap().dyn_into::<web_sys::Element>().unwrap().get_attribute("fill").unwrap())
            .collect();
        f.sort();
        f.dedup();
        f.len()
    };
    assert_eq!(fills(&host), 3);
    // A re-cut card's images open on the images page, filtered to that cluster of the cut.
    click(&host, "[data-testid=cut-images]", 2);
    tick().await;
    assert_eq!(hash(), "#/layer/0/images");
    assert_eq!(count(&host, "[data-testid=member]"), 1);
    assert_eq!(
        host.query_selector("[data-testid=member]").unwrap().unwrap().get_attribute("title").unwrap(),
        "test/2.png (cluster 1)"
    );
    press("Escape");
    tick().await;
    // Back at the stored cut: the stored cards again, and the filter on the old cut is dropped.
    click(&host, "[data-testid=cut-reset]", 0);
    tick().await;
    assert_eq!(count(&host, "[data-testid=cluster-card]"), 2);
    assert_eq!(count(&host, "[data-testid=cut-card]"), 0);
    assert_eq!(fills(&host), 2);
    click(&host, "[data-testid=all-images]", 0);
    tick().await;
    assert_eq!(count(&host, "[data-testid=member]"), 5, "the filter on the old cut is gone");
    press("Escape");
    tick().await;
    // Cut into 1: everything in one cluster.
    set_range(&host, "cut-slider", "1");
    tick().await;
    assert_eq!(count(&host, "[data-testid=cut-card]"), 1);
    host.remove();
    set_hash("");
}

#[wasm_bindgen_test]
async fn the_map_colours_by_a_column_and_a_point_opens_its_image() {
    let host = mount();
    tick().await;
    assert_eq!(count(&host, "[data-testid=map-point]"), 5);
    assert!(text(&host, "[data-testid=map]").contains("80.00% of their variance"));
    let legend = text(&host, "[data-testid=map-legend]");
    assert!(legend.contains("cluster 1") && legend.contains("cluster 2"), "{legend}");
    let select: web_sys::HtmlSelectElement =
        host.query_selector("[data-testid=map-colour]").unwrap().unwrap().dyn_into().unwrap();
    select.set_value("eyelid");
    select.dispatch_event(&web_sys::Event::new("change").unwrap()).unwrap();
    tick().await;
    // Numeric: a ramp from 0 (image 0) to 4 (image 4).
    let legend = text(&host, "[data-testid=map-legend]");
    assert!(legend.contains('0') && legend.contains("2.000") && legend.contains("4.000"), "{legend}");
    let point = |i: u32| {
        host.query_selector_all("[data-testid=map-point]")
            .unwrap()
            .item(i)
            .unwrap()
            .dyn_into::<web_sys::Element>()
            .unwrap()
    };
    assert_eq!(point(0).get_attribute("fill").unwrap(), "hsl(240, 75%, 35%)");
    assert_eq!(point(4).get_attribute("fill").unwrap(), "hsl(60, 75%, 55%)");
    // Same scale on both axes: the farthest pair spans the plot's width.
    let x = |i: u32| point(i).get_attribute("cx").unwrap().parse::<f64>().unwrap();
    assert!(x(4) > x(0));
    point(3).dyn_into::<web_sys::SvgElement>().unwrap().dispatch_event(&web_sys::Event::new("click").unwrap()).unwrap();
    tick().await;
    assert!(text(&host, "[data-testid=cluster-title]").contains("cluster 2 "));
    assert_eq!(text(&host, "[data-testid=stage-name]"), "test/3.png");
    host.remove();
    set_hash("");
}

#[wasm_bindgen_test]
async fn all_images_filter_sort_and_open_their_cluster() {
    let host = mount();
    tick().await;
    click(&host, "[data-testid=all-images]", 0);
    tick().await;
    assert_eq!(hash(), "#/layer/0/images");
    assert!(text(&host, "[data-testid=images-title]").contains("all 5 clustered images"));
    assert_eq!(count(&host, "[data-testid=member]"), 5);
    let select = |id: &str, value: &str| {
        let el: web_sys::HtmlSelectElement =
            host.query_selector(&format!("[data-testid={id}]")).unwrap().unwrap().dyn_into().unwrap();
        el.set_value(value);
        el.dispatch_event(&web_sys::Event::new("change").unwrap()).unwrap();
    };
    select("filter-key", "cluster");
    let value: web_sys::HtmlInputElement =
        host.query_selector("[data-testid=filter-value]").unwrap().unwrap().dyn_into().unwrap();
    value.set_value("2..2");
    value.dispatch_event(&web_sys::Event::new("input").unwrap()).unwrap();
    select("sort-key", "eyelid");
    let desc: web_sys::HtmlInputElement =
        host.query_selector("[data-testid=sort-descending]").unwrap().unwrap().dyn_into().unwrap();
    desc.click();
    tick().await;
    let titles = host.query_selector_all("[data-testid=member]").unwrap();
    let titles: Vec<String> = (0..titles.length())
        .map(|i| titles.item(i).unwrap().dyn_into::<web_sys::Element>().unwrap().get_attribute("title").unwrap())
        .collect();
    assert_eq!(titles, ["test/4.png (cluster 2)", "test/3.png (cluster 2)"]);
    // Shift-click selects without leaving the page; a click opens the image on its cluster's page.
    let init = web_sys::MouseEventInit::new();
    init.set_shift_key(true);
    init.set_bubbles(true);
    let shift = web_sys::MouseEvent::new_with_mouse_event_init_dict("click", &init).unwrap();
    host.query_selector_all("[data-testid=member]").unwrap().item(0).unwrap().dispatch_event(&shift).unwrap();
    tick().await;
    assert!(text(&host, "[data-testid=selection-count]").starts_with("1 selected"));
    assert_eq!(hash(), "#/layer/0/images");
    click(&host, "[data-testid=member]", 1);
    tick().await;
    assert_eq!(hash(), "#/layer/0/cluster/2", "test/3.png is cluster 2's medoid");
    assert_eq!(text(&host, "[data-testid=stage-name]"), "test/3.png");
    // Esc returns to the images page.
    press("Escape");
    tick().await;
    assert_eq!(hash(), "#/layer/0/images");
    press("Escape");
    tick().await;
    assert_eq!(hash(), "#/layer/0");
    host.remove();
    set_hash("");
}

/// A feature-path report (HDBSCAN): the method is named, noise is shown as noise (not a cluster),
/// the grid is listed with the chosen trial, and no WICD curve is drawn.
#[wasm_bindgen_test]
async fn the_feature_path_shows_noise_and_its_trials() {
    let mut r = report();
    let a = r.analysis.as_mut().unwrap();
    a.method = Some(hudd_report::Method::Hdbscan);
    a.feature_path = Some("UMAP (n_neighbors 15) then HDBSCAN (min_cluster_size 3)".into());
    let l = &mut a.layers[0];
    l.k_choice = KChoice::Hdbscan;
    l.k = 1;
    l.curve.clear();
    l.dendrogram = None;
    l.clusters.truncate(1);
    l.noise = vec![3, 4];
    let trial = |min_cluster_size, silhouette: Option<f64>, chosen| hudd_report::FeatureTrial {
        metric: "cosine".into(),
        components: 2,
        min_cluster_size,
        clusters: 1,
        noise: 2,
        silhouette,
        chosen,
    };
    l.trials = vec![trial(3, Some(0.7), true), trial(5, None, false)];
    set_hash("");
    let host = mount_report(r);
    tick().await;
    assert!(
        text(&host, "[data-testid=method]").contains("feature-space path"),
        "{}",
        text(&host, "[data-testid=method]")
    );
    assert!(text(&host, "[data-testid=noise]").contains("Noise: 2 images in no cluster"));
    assert_eq!(count(&host, "[data-testid=noise] img"), 2);
    assert_eq!(count(&host, "[data-testid=cluster-card]"), 1, "noise is no cluster card");
    assert_eq!(count(&host, "[data-testid=trials] tbody tr"), 2);
    assert_eq!(count(&host, "[data-testid=trials] tr.selected"), 1);
    assert!(text(&host, "[data-testid=trials]").contains("–"), "a trial without a silhouette");
    let layers = text(&host, "[data-testid=layers]");
    assert!(layers.contains("noise") && !layers.contains("WICD"), "{layers}");
    assert!(text(&host, "[data-testid=map-legend]").contains("noise (2 images)"));
    assert!(host.text_content().unwrap().contains("HDBSCAN finds the number of clusters itself"));
    assert_eq!(count(&host, "[data-testid=comparison]"), 0, "no alternative, no comparison");
    host.remove();
}

/// An alternative clustering in the run (the demo's feature path) is compared with the report's own.
#[wasm_bindgen_test]
async fn an_alternative_clustering_is_compared_side_by_side() {
    let mut r = report();
    r.analysis.as_mut().unwrap().alternatives = vec![hudd_report::Alternative {
        folder: "feature-path".into(),
        method: hudd_report::Method::Hdbscan,
        description: "UMAP then HDBSCAN".into(),
        best_layer: Some("conv2".into()),
        clusters: 7,
        noise: 3,
        silhouette: 0.61,
        known_causes: Some(KnownCauses {
            column: "cause".into(),
            purity: 0.55,
            causes: vec![CauseCount { cause: "eyelid-closed".into(), images: 2 }],
            covered: vec![],
        }),
        explained: Some([6, 7]),
        summary: vec![],
    }];
    set_hash("");
    let host = mount_report(r);
    tick().await;
    let table = text(&host, "[data-testid=comparison]");
    for want in
        ["this report (ward-rows)", "hdbscan (RUN/feature-path)", "conv2", "0.610", "0.55", "0 of 1", "6 of 7", "0.80"]
    {
        assert!(table.contains(want), "{want} in {table}");
    }
    host.remove();
}
