//! `hudd verify`: a bundle re-hashed against its `manifest.json`.

use std::collections::BTreeSet;
use std::path::Path;

use rayon::prelude::*;

use super::{bad, files_under};
use crate::error::{Error, Result};
use crate::fsio::sha256_file;

/// The outcome of [`verify`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Verification {
    /// Files listed and checked.
    pub checked: usize,
    /// Listed files whose content changed.
    pub changed: Vec<String>,
    /// Listed files that are gone.
    pub missing: Vec<String>,
    /// Files that are not listed.
    pub extra: Vec<String>,
    /// Contradictions between the bundle's own records: the manifest's report id or sizes, and the
    /// report inlined in `index.html`, against `report.json`.
    pub inconsistent: Vec<String>,
    /// The report id the manifest names.
    pub report_id: String,
}

impl Verification {
    /// Whether the bundle is exactly what was written.
    pub fn is_intact(&self) -> bool {
        self.changed.is_empty() && self.missing.is_empty() && self.extra.is_empty() && self.inconsistent.is_empty()
    }
}

/// Re-hashes every file of `bundle` and compares with its manifest.
pub fn verify(bundle: &Path) -> Result<Verification> {
    let path = bundle.join("manifest.json");
    let text = crate::fsio::read_to_string(&path)
        .map_err(|e| Error::io("not a hudd bundle: it has no readable manifest.json", &path, e))?;
    let manifest = hudd_report::read_manifest(&text).map_err(|e| bad(&path, e.to_string()))?;
    let present: BTreeSet<String> = files_under(bundle)?.into_iter().collect();
    let listed: BTreeSet<&str> = manifest.files.iter().map(|f| f.path.as_str()).collect();
    let outcomes: Vec<(String, Option<bool>)> = manifest
        .files
        .par_iter()
        .map(|f| {
            if !present.contains(&f.path) {
                return Ok((f.path.clone(), None));
            }
            let file = bundle.join(&f.path);
            let bytes = std::fs::metadata(&file).map_err(|e| Error::io("cannot read", &file, e))?.len();
            let same = bytes == f.bytes && sha256_file(&file)? == f.sha256;
            Ok((f.path.clone(), Some(same)))
        })
        .collect::<Result<_>>()?;
    let mut v =
        Verification { checked: manifest.files.len(), report_id: manifest.report_id.clone(), ..Default::default() };
    for (p, o) in outcomes {
        match o {
            None => v.missing.push(p),
            Some(false) => v.changed.push(p),
            Some(true) => {}
        }
    }
    v.extra = present.into_iter().filter(|p| !listed.contains(p.as_str())).collect();
    v.inconsistent = consistency(bundle, &manifest.report_id);
    v.inconsistent.extend(run_beside(bundle, &manifest.report_id));
    Ok(v)
}

/// When the bundle sits in a run folder (as `RUN/report` does): whether that run is complete and
/// this is its report, so that an old report beside the results of an interrupted rerun is not
/// called intact.
fn run_beside(bundle: &Path, report_id: &str) -> Option<String> {
    let parent = bundle.parent().filter(|p| !p.as_os_str().is_empty())?;
    let run = crate::run::RunDir::new(parent);
    let is_run = run.run_json().is_file() || run.clusters_json().is_file() || run.results().is_dir();
    if !is_run {
        return None;
    }
    match run.completion() {
        Err(e) => Some(e.to_string()),
        Ok(None) => Some(format!(
            "the run folder {} is incomplete (no complete.json: a run was interrupted or is still going); this \
             bundle may not match its results — rerun `hudd analyze`",
            parent.display()
        )),
        Ok(Some(c)) if c.report_id != report_id => Some(format!(
            "the run folder {} completed with report {}, not this bundle's report; the bundle is from another run",
            parent.display(),
            c.report_id
        )),
        Ok(Some(_)) => None,
    }
}

/// What contradicts `report.json` among the bundle's other records of it.
fn consistency(bundle: &Path, report_id: &str) -> Vec<String> {
    let mut problems = Vec::new();
    let read = |name: &str| crate::fsio::read_to_string(bundle.join(name)).map_err(|e| format!("{name}: {e}"));
    let report = match read("report.json").and_then(|t| hudd_report::read_report(&t).map_err(|e| e.to_string())) {
        Ok(r) => r,
        Err(e) => {
            problems.push(format!("report.json cannot be read: {e}"));
            return problems;
        }
    };
    if report.report_id != report_id {
        problems.push(format!("manifest.json names report {report_id}, report.json is report {}", report.report_id));
    }
    match read("index.html").map(|html| inlined_report(&html).map(hudd_report::read_report)) {
        Err(e) => problems.push(format!("index.html cannot be read: {e}")),
        Ok(None) => problems.push("index.html holds no inlined report (the viewer would show nothing)".into()),
        Ok(Some(Err(e))) => problems.push(format!("the report inlined in index.html cannot be read: {e}")),
        Ok(Some(Ok(inlined))) if inlined != report => {
            problems.push("the report inlined in index.html differs from report.json".into())
        }
        Ok(Some(Ok(_))) => {}
    }
    problems
}

/// The JSON text of the `<script id="hudd-report">` element.
fn inlined_report(html: &str) -> Option<&str> {
    let open = html.find(super::html::REPORT_ELEMENT)?;
    let body = &html[open..];
    let start = body.find('>')? + 1;
    let end = body.find("</script>")?;
    body.get(start..end)
}

/// How a rerun's bundle compares with the original (see [`compare`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reproduction {
    /// Report fields compared (every top-level field but the run block and the tool record).
    pub fields: Vec<String>,
    /// Of those, the ones that differ.
    pub differing_fields: Vec<String>,
    /// Bundle files the rerun wrote and compared (all but `report.json` and `index.html`, which
    /// hold the run block).
    pub files: usize,
    /// Files the rerun wrote that the original lacks or holds with other bytes.
    pub differing_files: Vec<String>,
    /// Parts of the original that a rerun of the analysis does not make (the unsafe set and the
    /// retraining, which `hudd assign`, `hudd retrain` and `hudd compare` add).
    pub not_rerun: Vec<String>,
    /// How the rerun's hudd build differs from the original's (commit, rustc, target), if it does.
    pub other_build: Option<String>,
}

impl Reproduction {
    /// Whether the rerun reproduced every compared field and file.
    pub fn is_reproduced(&self) -> bool {
        self.differing_fields.is_empty() && self.differing_files.is_empty()
    }
}

/// Compares the bundle a rerun wrote (`rerun`) with the `original`: every report field but `run`
/// and `tool_confidence`, and every file of the rerun's manifest. When the original holds an unsafe
/// set or a retraining, which the analysis alone does not make, those fields are left out and the
/// images and files the rerun wrote need only be among the original's.
pub fn compare(original: &Path, rerun: &Path) -> Result<Reproduction> {
    let report = |dir: &Path| -> Result<serde_json::Value> {
        let path = dir.join("report.json");
        let text = crate::fsio::read_to_string(&path).map_err(|e| Error::io("cannot read", &path, e))?;
        serde_json::from_str(&text).map_err(|e| bad(&path, format!("report.json is not valid JSON: {e}")))
    };
    let manifest = |dir: &Path| -> Result<hudd_report::Manifest> {
        let path = dir.join("manifest.json");
        let text = crate::fsio::read_to_string(&path).map_err(|e| Error::io("cannot read", &path, e))?;
        hudd_report::read_manifest(&text).map_err(|e| bad(&path, e.to_string()))
    };
    let (old, new) = (report(original)?, report(rerun)?);
    let empty = serde_json::Map::new();
    let (old_fields, new_fields) = (old.as_object().unwrap_or(&empty), new.as_object().unwrap_or(&empty));
    let later = ["unsafe_set", "retraining"];
    let not_rerun: Vec<String> =
        later.iter().filter(|k| old_fields.get(**k).is_some_and(|v| !v.is_null())).map(|k| k.to_string()).collect();
    let mut out = Reproduction { not_rerun, ..Default::default() };
    let partial = !out.not_rerun.is_empty();
    let mut keys: Vec<&String> = old_fields.keys().chain(new_fields.keys()).collect();
    keys.sort();
    keys.dedup();
    for key in keys {
        if ["run", "tool_confidence"].contains(&key.as_str()) || later.contains(&key.as_str()) {
            continue;
        }
        out.fields.push(key.clone());
        let (a, b) = (old_fields.get(key), new_fields.get(key));
        let same = match (key.as_str(), a, b) {
            ("images", Some(serde_json::Value::Array(a)), Some(serde_json::Value::Array(b))) if partial => {
                b.iter().all(|x| a.contains(x))
            }
            _ => a == b,
        };
        if !same {
            out.differing_fields.push(key.clone());
        }
    }
    let build = |r: &serde_json::Value| {
        let t = r.get("tool_confidence")?;
        Some(
            ["version", "commit", "target", "rustc"]
                .map(|k| t.get(k).and_then(|v| v.as_str()).unwrap_or("").to_string()),
        )
    };
    if let (Some(a), Some(b)) = (build(&old), build(&new)) {
        if a != b {
            out.other_build = Some(format!(
                "original {} ({}, {}, {}), rerun {} ({}, {}, {})",
                a[0], a[1], a[2], a[3], b[0], b[1], b[2], b[3]
            ));
        }
    }
    let (old_files, new_files) = (manifest(original)?, manifest(rerun)?);
    let listed: std::collections::BTreeMap<&str, &str> =
        old_files.files.iter().map(|f| (f.path.as_str(), f.sha256.as_str())).collect();
    let holds_run = ["report.json", "index.html"];
    for f in new_files.files.iter().filter(|f| !holds_run.contains(&f.path.as_str())) {
        out.files += 1;
        if listed.get(f.path.as_str()) != Some(&f.sha256.as_str()) {
            out.differing_files.push(f.path.clone());
        }
    }
    if !partial {
        let made: BTreeSet<&str> = new_files.files.iter().map(|f| f.path.as_str()).collect();
        out.differing_files.extend(
            old_files
                .files
                .iter()
                .filter(|f| !made.contains(f.path.as_str()))
                .map(|f| format!("{} (not made by the rerun)", f.path)),
        );
    }
    Ok(out)
}
