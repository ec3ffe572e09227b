//! Sharded runs: `--shard I/N` gives a stage (evaluate, heatmaps, assign) shard `I` of `N` of its
//! images, and `hudd merge` combines the `N` shard folders into the files one unsharded run writes,
//! byte for byte.
//!
//! - **The split.** The images are sorted by path (every stage lists them that way) and cut into
//!   `N` contiguous runs of whole batches: with `B` batches of `batch_size` images, shard `I` takes
//!   batches `⌊I·B/N⌋ .. ⌊(I+1)·B/N⌋`. Every batch is then the same as in the unsharded run, so
//!   the numbers are too. The split depends on the image list and the batch size only: every shard
//!   computes it alone, with no coordinator (a Slurm array task or a Kubernetes Indexed Job pod
//!   needs only its index).
//! - **Shard folders.** Shard `I` of `N` of a stage writes `OUT/shards/<stage>-<I>-of-<N>/` (`OUT` is
//!   the folder the unsharded command writes: `--out` of `evaluate` and `heatmaps`, `--run` of
//!   `assign`) and `shard.json` in it last ([`ShardRecord`]: which shard, the batch size and a
//!   fingerprint of the inputs). A folder without `shard.json` is incomplete.
//! - **Merge.** [`find`] returns a stage's complete set: every index once, one count, one
//!   fingerprint (same model, parameters, image list and batch size), or an error saying which
//!   shards are missing or do not belong together. The stages' own `merge` functions write the
//!   result files; the shard folders are left in place.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::fsio::{sha256_hex, write_json};

/// `shard.json`'s format name.
pub const FORMAT: &str = "hudd-shard";
/// Its version.
pub const FORMAT_VERSION: u32 = 1;
/// The record's file name in a shard folder.
pub const FILE: &str = "shard.json";

/// A stage that can be sharded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Stage {
    /// `hudd evaluate`.
    Evaluate,
    /// `hudd heatmaps`.
    Heatmaps,
    /// `hudd assign`.
    Assign,
}

impl Stage {
    /// Every stage, in pipeline order.
    pub const ALL: [Stage; 3] = [Stage::Evaluate, Stage::Heatmaps, Stage::Assign];

    /// The command's name.
    pub fn name(self) -> &'static str {
        match self {
            Stage::Evaluate => "evaluate",
            Stage::Heatmaps => "heatmaps",
            Stage::Assign => "assign",
        }
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Shard `index` of `count` (`0 ≤ index < count`). [`Shard::WHOLE`] is the unsharded run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Shard {
    index: usize,
    count: usize,
}

impl Shard {
    /// The whole run (shard 0 of 1).
    pub const WHOLE: Shard = Shard { index: 0, count: 1 };

    /// Shard `index` of `count`.
    pub fn new(index: usize, count: usize) -> std::result::Result<Shard, String> {
        if count == 0 {
            return Err("the number of shards must be at least 1".into());
        }
        if index >= count {
            return Err(format!(
                "shard {index} of {count} does not exist: shards are numbered from 0 to {} \
                 (as Slurm's SLURM_ARRAY_TASK_ID and Kubernetes' JOB_COMPLETION_INDEX are)",
                count - 1
            ));
        }
        Ok(Shard { index, count })
    }

    /// The shard's number, from 0.
    pub fn index(self) -> usize {
        self.index
    }

    /// How many shards there are.
    pub fn count(self) -> usize {
        self.count
    }

    /// Whether this is the whole run.
    pub fn is_whole(self) -> bool {
        self.count == 1
    }

    /// The items of a sorted list of `len` this shard takes, processed in batches of `batch`:
    /// contiguous whole batches (see the module documentation). Every item is in exactly one shard.
    pub fn range(self, len: usize, batch: usize) -> Range<usize> {
        let batch = batch.max(1);
        let batches = len.div_ceil(batch);
        let from = self.index * batches / self.count;
        let to = (self.index + 1) * batches / self.count;
        (from * batch).min(len)..(to * batch).min(len)
    }

    /// `OUT/shards/<stage>-<I>-of-<N>/`.
    pub fn folder(self, out: &Path, stage: Stage) -> PathBuf {
        shards_dir(out).join(format!("{stage}-{}-of-{}", self.index, self.count))
    }
}

impl FromStr for Shard {
    type Err = String;
    /// `I/N`, e.g. `0/4`.
    fn from_str(s: &str) -> std::result::Result<Shard, String> {
        let (i, n) = s.split_once('/').ok_or_else(|| format!("`{s}` is not a shard: write I/N, e.g. 0/4"))?;
        let num = |t: &str| t.trim().parse::<usize>().map_err(|_| format!("`{s}` is not a shard: write I/N, e.g. 0/4"));
        Shard::new(num(i)?, num(n)?)
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// `OUT/shards/`.
pub fn shards_dir(out: &Path) -> PathBuf {
    out.join("shards")
}

/// `shard.json`: what a shard folder holds, written last (its presence marks the folder complete).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShardRecord {
    /// [`FORMAT`].
    pub format: String,
    /// [`FORMAT_VERSION`].
    pub format_version: u32,
    /// hudd's version.
    pub hudd_version: String,
    /// The stage.
    pub stage: Stage,
    /// This shard's number, from 0.
    pub index: usize,
    /// How many shards.
    pub count: usize,
    /// Images per batch (the split is made of whole batches).
    pub batch_size: usize,
    /// Images in the whole run.
    pub images: usize,
    /// Images this shard took.
    pub taken: usize,
    /// SHA-256 of everything that must be the same in every shard: the model, the parameters, the
    /// whole image list, the batch size.
    pub fingerprint: String,
    /// The stage's parameters, as the merge needs them.
    pub parameters: serde_json::Value,
}

impl ShardRecord {
    /// The record of `shard` of `stage`; `identity` lists what the shards of one run share (hashed
    /// into the fingerprint together with the stage, the count, the batch size and `images`).
    pub fn new(
        stage: Stage,
        shard: Shard,
        batch_size: usize,
        images: usize,
        taken: usize,
        identity: &[&str],
        parameters: serde_json::Value,
    ) -> ShardRecord {
        let mut text = format!("{stage}\n{}\n{batch_size}\n{images}\n", shard.count);
        for part in identity {
            text.push_str(&part.len().to_string());
            text.push(':');
            text.push_str(part);
            text.push('\n');
        }
        ShardRecord {
            format: FORMAT.into(),
            format_version: FORMAT_VERSION,
            hudd_version: crate::VERSION.into(),
            stage,
            index: shard.index,
            count: shard.count,
            batch_size,
            images,
            taken,
            fingerprint: sha256_hex(text.as_bytes()),
            parameters,
        }
    }

    /// Writes `dir/shard.json`.
    pub fn write(&self, dir: &Path) -> Result<()> {
        write_json(&dir.join(FILE), "shard record", self)
    }

    /// Reads `dir/shard.json`, checking its format.
    pub fn read(dir: &Path) -> Result<ShardRecord> {
        let path = dir.join(FILE);
        let text =
            crate::fsio::read_to_string(&path).map_err(|e| Error::io("cannot read the shard record", &path, e))?;
        let bad = |reason: String| Error::Shards { path: path.clone(), reason };
        let record: ShardRecord = serde_json::from_str(&text).map_err(|e| bad(format!("unreadable: {e}")))?;
        if record.format != FORMAT || record.format_version > FORMAT_VERSION {
            return Err(bad(format!(
                "format `{}` version {} is not `{FORMAT}` version {FORMAT_VERSION} or older",
                record.format, record.format_version
            )));
        }
        Ok(record)
    }

    /// The parameters as `T`.
    pub fn parameters<T: serde::de::DeserializeOwned>(&self, dir: &Path) -> Result<T> {
        serde_json::from_value(self.parameters.clone()).map_err(|e| Error::Shards {
            path: dir.join(FILE),
            reason: format!("the {} parameters cannot be read: {e}", self.stage),
        })
    }
}

/// Prepares the shard folder of `shard`: removes an old `shard.json` first, so that an
/// interrupted rerun never looks complete.
pub fn begin(out: &Path, stage: Stage, shard: Shard) -> Result<PathBuf> {
    let dir = shard.folder(out, stage);
    let record = dir.join(FILE);
    if record.exists() {
        std::fs::remove_file(&record).map_err(|e| Error::io("cannot remove old shard record", &record, e))?;
    }
    std::fs::create_dir_all(&dir).map_err(|e| Error::io("cannot create folder", &dir, e))?;
    Ok(dir)
}

/// The stages that have shard folders under `out/shards/`.
pub fn stages(out: &Path) -> Result<Vec<Stage>> {
    let dir = shards_dir(out);
    if !dir.is_dir() {
        return Ok(Vec::new());
    }
    let names = folder_names(&dir)?;
    Ok(Stage::ALL
        .into_iter()
        .filter(|s| names.iter().any(|n| parse_folder(n).is_some_and(|(st, ..)| st == *s)))
        .collect())
}

fn folder_names(dir: &Path) -> Result<Vec<String>> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io("cannot read folder", dir, e))? {
        let entry = entry.map_err(|e| Error::io("cannot read folder", dir, e))?;
        if entry.path().is_dir() {
            names.push(entry.file_name().to_string_lossy().into_owned());
        }
    }
    names.sort();
    Ok(names)
}

/// `<stage>-<I>-of-<N>` → its parts.
fn parse_folder(name: &str) -> Option<(Stage, usize, usize)> {
    let stage = Stage::ALL.into_iter().find(|s| name.starts_with(&format!("{s}-")))?;
    let rest = &name[stage.name().len() + 1..];
    let (i, n) = rest.split_once("-of-")?;
    Some((stage, i.parse().ok()?, n.parse().ok()?))
}

/// The complete shard set of `stage` under `out/shards/`, by index: every shard `0..N` present
/// and complete, one `N`, one fingerprint. Otherwise an error that names the missing, incomplete
/// or foreign shards and what to do.
pub fn find(out: &Path, stage: Stage) -> Result<Vec<(PathBuf, ShardRecord)>> {
    let dir = shards_dir(out);
    let err = |reason: String| Error::Shards { path: dir.clone(), reason };
    if !dir.is_dir() {
        return Err(err(format!("there are no shard folders (run `hudd {stage} --shard I/N` first)")));
    }
    let mut found: Vec<(usize, usize, PathBuf)> = folder_names(&dir)?
        .iter()
        .filter_map(|n| parse_folder(n).filter(|(s, ..)| *s == stage).map(|(_, i, c)| (i, c, dir.join(n))))
        .collect();
    found.sort();
    let Some(&(_, count, _)) = found.first() else {
        return Err(err(format!("there are no `{stage}` shard folders (run `hudd {stage} --shard I/N` first)")));
    };
    let counts: std::collections::BTreeSet<usize> = found.iter().map(|(_, c, _)| *c).collect();
    if counts.len() > 1 {
        let list: Vec<String> = counts.iter().map(|c| c.to_string()).collect();
        return Err(err(format!(
            "`{stage}` shards of different splits are present ({} shards): remove the folders of the old split",
            list.join(" and ")
        )));
    }
    let mut incomplete = Vec::new();
    let mut shards = Vec::with_capacity(count);
    for (i, _, path) in &found {
        if path.join(FILE).exists() {
            shards.push((*i, path.clone(), ShardRecord::read(path)?));
        } else {
            incomplete.push(i.to_string());
        }
    }
    let missing: Vec<String> =
        (0..count).filter(|i| !found.iter().any(|(j, ..)| j == i)).map(|i| i.to_string()).collect();
    if !missing.is_empty() || !incomplete.is_empty() {
        let mut what = Vec::new();
        if !missing.is_empty() {
            what.push(format!("shard(s) {} of {count} are missing", missing.join(", ")));
        }
        if !incomplete.is_empty() {
            what.push(format!("shard(s) {} of {count} did not finish (no {FILE})", incomplete.join(", ")));
        }
        return Err(err(format!("{}: run them with `hudd {stage} … --shard I/{count}`", what.join("; "))));
    }
    let first = &shards[0].2;
    for (i, path, r) in &shards {
        if r.stage != stage || r.index != *i || r.count != count {
            return Err(Error::Shards {
                path: path.join(FILE),
                reason: format!(
                    "the record says {} shard {}/{}, the folder name {stage} shard {i}/{count}",
                    r.stage, r.index, r.count
                ),
            });
        }
        if r.fingerprint != first.fingerprint {
            return Err(Error::Shards {
                path: path.clone(),
                reason: format!(
                    "shard {i} was made from other inputs than shard 0 (model, parameters, images or batch size \
                     differ: fingerprint {} vs {}); rerun it with the same command",
                    r.fingerprint, first.fingerprint
                ),
            });
        }
    }
    let taken: usize = shards.iter().map(|(_, _, r)| r.taken).sum();
    if taken != first.images {
        return Err(err(format!(
            "the shards took {taken} images of {}; rerun them with the same command",
            first.images
        )));
    }
    Ok(shards.into_iter().map(|(_, p, r)| (p, r)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_item_is_in_exactly_one_shard_of_whole_batches() {
        for len in [0usize, 1, 7, 64, 65, 1000, 1001] {
            for batch in [1usize, 8, 64] {
                for count in 1..=5 {
                    let mut next = 0;
                    for index in 0..count {
                        let r = Shard::new(index, count).unwrap().range(len, batch);
                        assert_eq!(r.start, next, "len {len} batch {batch} shard {index}/{count}");
                        assert!(r.start.is_multiple_of(batch) || r.start == len);
                        next = r.end;
                    }
                    assert_eq!(next, len);
                }
            }
        }
        // Batches are spread evenly: 10 batches over 3 shards → 3, 3, 4.
        let sizes: Vec<usize> = (0..3).map(|i| Shard::new(i, 3).unwrap().range(100, 10).len()).collect();
        assert_eq!(sizes, [30, 30, 40]);
        assert_eq!(Shard::WHOLE.range(5, 2), 0..5);
    }

    #[test]
    fn parses_and_refuses() {
        assert_eq!("1/4".parse::<Shard>().unwrap(), Shard::new(1, 4).unwrap());
        assert_eq!(" 0 / 2 ".trim().parse::<Shard>().unwrap().to_string(), "0/2");
        for bad in ["4/4", "1", "a/2", "0/0", "-1/2", "1/2/3"] {
            assert!(bad.parse::<Shard>().is_err(), "{bad}");
        }
        assert!("2/2".parse::<Shard>().unwrap_err().contains("from 0 to 1"));
    }

    #[test]
    fn finds_a_complete_set_and_names_what_is_missing() {
        let d = tempfile::tempdir().unwrap();
        let out = d.path();
        let write = |i: usize, n: usize, taken: usize, id: &str| {
            let shard = Shard::new(i, n).unwrap();
            let dir = begin(out, Stage::Heatmaps, shard).unwrap();
            ShardRecord::new(Stage::Heatmaps, shard, 4, 10, taken, &[id], serde_json::json!({})).write(&dir).unwrap();
        };
        assert!(find(out, Stage::Heatmaps).unwrap_err().to_string().contains("no shard folders"));
        write(0, 3, 4, "a");
        std::fs::create_dir_all(Shard::new(2, 3).unwrap().folder(out, Stage::Heatmaps)).unwrap();
        let e = find(out, Stage::Heatmaps).unwrap_err().to_string();
        assert!(e.contains("shard(s) 1 of 3 are missing") && e.contains("shard(s) 2 of 3 did not finish"), "{e}");
        write(1, 3, 4, "a");
        write(2, 3, 2, "b");
        assert!(find(out, Stage::Heatmaps).unwrap_err().to_string().contains("other inputs"));
        write(2, 3, 2, "a");
        let set = find(out, Stage::Heatmaps).unwrap();
        assert_eq!(set.iter().map(|(_, r)| r.index).collect::<Vec<_>>(), [0, 1, 2]);
        assert_eq!(stages(out).unwrap(), [Stage::Heatmaps]);
        assert!(find(out, Stage::Assign).is_err());
        write(0, 2, 5, "a");
        assert!(find(out, Stage::Heatmaps).unwrap_err().to_string().contains("different splits"));
    }
}
