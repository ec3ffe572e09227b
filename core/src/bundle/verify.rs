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
    /// The report id the manifest names.
    pub report_id: String,
}

impl Verification {
    /// Whether the bundle is exactly what was written.
    pub fn is_intact(&self) -> bool {
        self.changed.is_empty() && self.missing.is_empty() && self.extra.is_empty()
    }
}

/// Re-hashes every file of `bundle` and compares with its manifest.
pub fn verify(bundle: &Path) -> Result<Verification> {
    let path = bundle.join("manifest.json");
    let text = std::fs::read_to_string(&path)
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
            let same = sha256_file(&bundle.join(&f.path))? == f.sha256;
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
    Ok(v)
}
