//! Reviewer notes: per cluster a root-cause label and free text, per image free text. Kept in the browser's
//! localStorage under a key made of the report id (so that notes of different reports never mix),
//! exported and imported as a JSON file, the durable record for auditors.
//!
//! # Format (`hudd-notes`, version 1)
//!
//! ```json
//! {"format": "hudd-notes", "format_version": 1, "report_id": "…",
//!  "notes": {"<layer name>#<cluster id>": {"label": "glare", "text": "…"}},
//!  "images": {"<image name>": "…"}}
//! ```
//!
//! `images` was added within version 1 (files without it read as having no image notes).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The notes file's format name.
pub const FORMAT: &str = "hudd-notes";
/// Its version.
pub const FORMAT_VERSION: u32 = 1;

/// One cluster's note.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Note {
    /// Root-cause label (short).
    #[serde(default)]
    pub label: String,
    /// Free text.
    #[serde(default)]
    pub text: String,
}

impl Note {
    /// Nothing written.
    pub fn is_empty(&self) -> bool {
        self.label.trim().is_empty() && self.text.trim().is_empty()
    }
}

/// All notes of one report.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notes {
    /// [`FORMAT`].
    pub format: String,
    /// [`FORMAT_VERSION`].
    pub format_version: u32,
    /// The report the notes are about.
    pub report_id: String,
    /// By [`key`].
    pub notes: BTreeMap<String, Note>,
    /// Per image (its name in the report): free text.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub images: BTreeMap<String, String>,
}

/// The key of a cluster's note.
pub fn key(layer: &str, cluster_id: usize) -> String {
    format!("{layer}#{cluster_id}")
}

/// The localStorage key of a report's notes.
pub fn storage_key(report_id: &str) -> String {
    format!("hudd-notes:{report_id}")
}

impl Notes {
    /// No notes yet, for `report_id`.
    pub fn new(report_id: &str) -> Notes {
        Notes {
            format: FORMAT.into(),
            format_version: FORMAT_VERSION,
            report_id: report_id.into(),
            notes: BTreeMap::new(),
            images: BTreeMap::new(),
        }
    }

    /// A cluster's note (empty when none).
    pub fn get(&self, layer: &str, cluster_id: usize) -> Note {
        self.notes.get(&key(layer, cluster_id)).cloned().unwrap_or_default()
    }

    /// Sets a cluster's note; an empty note is removed.
    pub fn set(&mut self, layer: &str, cluster_id: usize, note: Note) {
        if note.is_empty() {
            self.notes.remove(&key(layer, cluster_id));
        } else {
            self.notes.insert(key(layer, cluster_id), note);
        }
    }

    /// An image's note (empty when none).
    pub fn image(&self, image: &str) -> String {
        self.images.get(image).cloned().unwrap_or_default()
    }

    /// Sets an image's note; an empty one is removed.
    pub fn set_image(&mut self, image: &str, text: String) {
        if text.trim().is_empty() {
            self.images.remove(image);
        } else {
            self.images.insert(image.to_string(), text);
        }
    }

    /// Pretty JSON, as exported.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// Reads exported notes and checks they belong to `report_id`.
    pub fn from_json(json: &str, report_id: &str) -> Result<Notes, String> {
        let notes: Notes = serde_json::from_str(json).map_err(|e| format!("not a hudd notes file: {e}"))?;
        if notes.format != FORMAT {
            return Err(format!("format `{}` is not `{FORMAT}`", notes.format));
        }
        if notes.format_version > FORMAT_VERSION {
            return Err(format!("notes format version {} is newer than this viewer reads", notes.format_version));
        }
        if notes.report_id != report_id {
            return Err(format!(
                "these notes belong to report {}, not to this one ({})",
                short_id(&notes.report_id),
                short_id(report_id)
            ));
        }
        Ok(notes)
    }

    /// Imports `other` into `self`: its notes replace those of the same clusters and images.
    /// Returns how many notes were imported.
    pub fn merge(&mut self, other: Notes) -> usize {
        let n = other.notes.len() + other.images.len();
        self.notes.extend(other.notes);
        self.images.extend(other.images);
        n
    }

    /// Number of notes (clusters and images).
    pub fn len(&self) -> usize {
        self.notes.len() + self.images.len()
    }

    /// No notes at all.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The first 12 characters of an id.
pub fn short_id(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn export_then_import_gives_the_same_notes() {
        let mut a = Notes::new("abc");
        a.set("conv1", 2, Note { label: "glare".into(), text: "<b>not bold</b>".into() });
        a.set("conv1", 3, Note::default());
        assert_eq!(a.notes.len(), 1, "empty notes are not kept");
        let json = a.to_json();
        let v: serde_json::Value = serde_json::from_str(&json).expect("json");
        assert_eq!(v["format"], FORMAT);
        assert_eq!(v["notes"]["conv1#2"]["label"], "glare");
        let b = Notes::from_json(&json, "abc").expect("import");
        assert_eq!(a, b);
        let mut c = Notes::new("abc");
        c.set("conv1", 2, Note { label: "old".into(), text: String::new() });
        c.set("fc", 1, Note { label: "kept".into(), text: String::new() });
        assert_eq!(c.merge(b), 1);
        assert_eq!(c.get("conv1", 2).label, "glare");
        assert_eq!(c.get("fc", 1).label, "kept");
        // Image notes travel in the same file; files without them still read.
        let mut d = Notes::new("abc");
        d.set_image("test/a.png", "pupil hidden".into());
        d.set_image("test/b.png", "  ".into());
        assert_eq!(d.len(), 1);
        let e = Notes::from_json(&d.to_json(), "abc").expect("import");
        assert_eq!(e.image("test/a.png"), "pupil hidden");
        assert_eq!(c.merge(e), 1);
        assert_eq!(c.len(), 3);
        assert!(Notes::from_json(&json, "abc").expect("old file").images.is_empty());
    }

    #[test]
    fn notes_of_another_report_or_format_are_refused() {
        let json = Notes::new("abc").to_json();
        assert!(Notes::from_json(&json, "xyz").unwrap_err().contains("belong to report"));
        assert!(Notes::from_json("[]", "abc").is_err());
        let other = json.replace(FORMAT, "other");
        assert!(Notes::from_json(&other, "abc").unwrap_err().contains("format"));
    }
}
