//! `index.html`: the viewer's page template filled with the report JSON (escaped so that no data
//! can close its `<script>` element), the WebAssembly module (gzip, then base64; the page inflates
//! it with the browser's `DecompressionStream`) and wasm-bindgen's JavaScript glue. Pages opened
//! from `file://` cannot fetch files, hence the inlining. The page's Content-Security-Policy
//! allows exactly the inline scripts written here (by SHA-256), so even a report that smuggled
//! markup past the viewer could not run script.

use std::io::Write;

use base64::Engine;
use sha2::Digest;

use crate::error::{Error, Result};
use hudd_report::Report;

/// The built viewer: `viewer/assets/bundle.html`, and wasm-bindgen's output for the viewer crate
/// (`--target no-modules`): its glue and its module.
#[derive(Debug, Clone, Copy)]
pub struct ViewerAssets<'a> {
    /// The page template, with the placeholders below.
    pub template: &'a str,
    /// The style sheet (`viewer/assets/style.css`).
    pub style: &'a str,
    /// `hudd_viewer.js`.
    pub glue: &'a str,
    /// `hudd_viewer_bg.wasm`.
    pub wasm: &'a [u8],
}

const REPORT: &str = "{{HUDD_REPORT_JSON}}";
/// The start of the element that holds the inlined report (`hudd verify` reads it back).
pub(super) const REPORT_ELEMENT: &str = "<script id=\"hudd-report\"";
const WASM: &str = "{{HUDD_WASM_GZIP_BASE64}}";
const GLUE: &str = "{{HUDD_VIEWER_GLUE}}";
const HASHES: &str = "{{HUDD_SCRIPT_HASHES}}";
const STYLE: &str = "{{HUDD_STYLE}}";

fn template_error(reason: String) -> Error {
    Error::Viewer { reason }
}

/// Fills the template's placeholders in one pass over the template (text inserted is never
/// searched again).
fn fill(template: &str, values: &[(&str, &str)]) -> Result<String> {
    for (key, _) in values {
        if template.matches(key).count() != 1 {
            return Err(template_error(format!("the page template must hold {key} exactly once")));
        }
    }
    let mut out = String::with_capacity(template.len() + values.iter().map(|(_, v)| v.len()).sum::<usize>());
    let mut rest = template;
    loop {
        let next = values.iter().filter_map(|(k, v)| rest.find(k).map(|i| (i, *k, *v))).min_by_key(|(i, _, _)| *i);
        let Some((i, key, value)) = next else { break };
        out.push_str(&rest[..i]);
        out.push_str(value);
        rest = &rest[i + key.len()..];
    }
    out.push_str(rest);
    Ok(out)
}

/// The contents of every `<script>` element without attributes (the scripts that run).
fn classic_scripts(html: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = html;
    while let Some(i) = rest.find("<script>") {
        let body = &rest[i + "<script>".len()..];
        let Some(end) = body.find("</script>") else { break };
        out.push(&body[..end]);
        rest = &body[end..];
    }
    out
}

/// `index.html` for `report`.
pub fn render_index(viewer: &ViewerAssets<'_>, report: &Report) -> Result<String> {
    if viewer.glue.to_ascii_lowercase().contains("</script") {
        return Err(template_error("the glue contains </script>".into()));
    }
    if !viewer.template.contains(&format!("{REPORT_ELEMENT} type=\"application/json\">{REPORT}</script>")) {
        return Err(template_error(format!("the report is not inlined in a `{REPORT_ELEMENT}` element")));
    }
    if viewer.style.to_ascii_lowercase().contains("</style") {
        return Err(template_error("the style sheet contains </style>".into()));
    }
    let json = report.to_inline_json().map_err(|e| Error::Output {
        what: "report",
        path: "index.html".into(),
        reason: format!("the report cannot be written as JSON: {e}"),
    })?;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(viewer.wasm).and_then(|_| gz.flush()).map_err(|e| template_error(e.to_string()))?;
    let gz = gz.finish().map_err(|e| template_error(e.to_string()))?;
    let wasm = base64::engine::general_purpose::STANDARD.encode(gz);
    let page = fill(viewer.template, &[(STYLE, viewer.style), (REPORT, &json), (WASM, &wasm), (GLUE, viewer.glue)])?;
    let hashes: Vec<String> = classic_scripts(&page)
        .into_iter()
        .map(|s| format!("'sha256-{}'", base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(s))))
        .collect();
    // The placeholder sits in <head>, before any data: the first occurrence is the template's.
    Ok(page.replacen(HASHES, &hashes.join(" "), 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_filled_once_and_inserted_text_is_not_searched() {
        let t = "a{{HUDD_REPORT_JSON}}b{{HUDD_VIEWER_GLUE}}c";
        let out = fill(t, &[(REPORT, "{{HUDD_VIEWER_GLUE}}"), (GLUE, "g")]).expect("fill");
        assert_eq!(out, "a{{HUDD_VIEWER_GLUE}}bgc");
        assert!(fill("no placeholders", &[(REPORT, "x")]).is_err());
    }

    #[test]
    fn only_attribute_free_scripts_are_hashed() {
        let html = r#"<script id="x" type="application/json">{}</script><script>run()</script><script>b</script>"#;
        assert_eq!(classic_scripts(html), vec!["run()", "b"]);
    }
}
