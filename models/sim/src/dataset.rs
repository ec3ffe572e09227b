//! Writing simulated datasets in the layout `hudd` reads: `DATA/{train,test,improvement}/`, one
//! PNG per image and a `manifest.csv` per split (`path,label,<every parameter>`). The manifest is
//! written last: a split without it is incomplete.

use std::path::{Path, PathBuf};

use rayon::prelude::*;

use crate::{params_of, render, Causes, SplitId, GAZE_CLASSES, PARAM_INFO, PARAM_NAMES, SIZE};

/// What went wrong writing a dataset.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file or folder could not be written.
    #[error("cannot write {what}: {source}: {}", path.display())]
    Io {
        /// What.
        what: &'static str,
        /// Where.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The output folder already holds a dataset.
    #[error("the folder already holds files; choose an empty or new folder: {}", path.display())]
    NotEmpty {
        /// The folder.
        path: PathBuf,
    },
}

/// Which labels the dataset carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Task {
    /// 9 gaze classes (folders per class).
    Gaze,
    /// Pupil centre and eye corners in pixels (regression; label = 6 space-separated numbers).
    Landmarks,
}

/// Images per split.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sizes {
    /// Training images.
    pub train: usize,
    /// Test images.
    pub test: usize,
    /// Improvement images.
    pub improvement: usize,
}

fn io<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> Error + 'a {
    move |source| Error::Io { what, path: path.to_path_buf(), source }
}

/// Writes the dataset into `out` (created; it must be empty or absent), the training split with the
/// planted causes at `train` rates. `progress` is called with the number of images done, from
/// worker threads.
pub fn write(
    out: &Path,
    task: Task,
    sizes: Sizes,
    train: Causes,
    seed: u64,
    progress: &(dyn Fn(usize) + Sync),
) -> Result<(), Error> {
    if out.exists() && std::fs::read_dir(out).map_err(io("folder", out))?.next().is_some() {
        return Err(Error::NotEmpty { path: out.to_path_buf() });
    }
    for (split, name, n) in [
        (SplitId::Train, "train", sizes.train),
        (SplitId::Test, "test", sizes.test),
        (SplitId::Improvement, "improvement", sizes.improvement),
    ] {
        if n == 0 {
            continue;
        }
        let dir = out.join(name);
        let rows: Vec<Vec<String>> = (0..n)
            .into_par_iter()
            .map(|i| -> Result<Vec<String>, Error> {
                let p = params_of(seed, split, i, train);
                let (rel, label) = match task {
                    Task::Gaze => {
                        let class = GAZE_CLASSES[p.gaze_class()];
                        (format!("{class}/{i:05}.png"), class.to_string())
                    }
                    Task::Landmarks => (
                        format!("images/{i:05}.png"),
                        p.landmarks().iter().map(|v| format!("{v:.3}")).collect::<Vec<_>>().join(" "),
                    ),
                };
                let path = dir.join(&rel);
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent).map_err(io("folder", parent))?;
                }
                let img = image::GrayImage::from_raw(SIZE as u32, SIZE as u32, render(&p)).ok_or_else(|| {
                    Error::Io { what: "image", path: path.clone(), source: std::io::Error::other("bad size") }
                })?;
                img.save(&path).map_err(|e| Error::Io {
                    what: "image",
                    path: path.clone(),
                    source: std::io::Error::other(e),
                })?;
                progress(1);
                let mut row = vec![rel, label];
                row.extend(p.values());
                Ok(row)
            })
            .collect::<Result<_, _>>()?;
        let manifest = dir.join("manifest.csv");
        let mut w = csv::Writer::from_path(&manifest).map_err(|e| Error::Io {
            what: "manifest",
            path: manifest.clone(),
            source: std::io::Error::other(e),
        })?;
        let mut header = vec!["path", "label"];
        header.extend(PARAM_NAMES);
        let csv_err =
            |e: csv::Error| Error::Io { what: "manifest", path: manifest.clone(), source: std::io::Error::other(e) };
        w.write_record(&header).map_err(csv_err)?;
        for r in rows {
            w.write_record(&r).map_err(csv_err)?;
        }
        w.flush().map_err(io("manifest", &manifest))?;
    }
    write_columns(out)
}

/// `columns.csv` at the dataset root: what each manifest column measures (hudd's explanations
/// quote it).
fn write_columns(out: &Path) -> Result<(), Error> {
    let path = out.join("columns.csv");
    let err = |e: csv::Error| Error::Io { what: "columns", path: path.clone(), source: std::io::Error::other(e) };
    let mut w = csv::Writer::from_path(&path).map_err(err)?;
    w.write_record(["column", "description", "unit", "min", "max"]).map_err(err)?;
    for (name, p) in PARAM_NAMES.iter().zip(PARAM_INFO) {
        let (lo, hi) = p.range.map_or((String::new(), String::new()), |(lo, hi)| (lo.to_string(), hi.to_string()));
        w.write_record([*name, p.description, p.unit, &lo, &hi]).map_err(err)?;
    }
    w.flush().map_err(io("columns", &path))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(dir: &Path) -> Vec<(String, Vec<u8>)> {
        let mut out = Vec::new();
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    stack.push(p);
                } else {
                    out.push((p.strip_prefix(dir).unwrap().to_string_lossy().into_owned(), std::fs::read(&p).unwrap()));
                }
            }
        }
        out.sort();
        out
    }

    #[test]
    fn same_seed_gives_byte_identical_datasets() {
        let sizes = Sizes { train: 12, test: 6, improvement: 3 };
        let (a, b, c) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        write(a.path(), Task::Gaze, sizes, Causes::Rare, 5, &|_| ()).unwrap();
        write(b.path(), Task::Gaze, sizes, Causes::Rare, 5, &|_| ()).unwrap();
        write(c.path(), Task::Gaze, sizes, Causes::Rare, 6, &|_| ()).unwrap();
        let (ta, tb, tc) = (tree(a.path()), tree(b.path()), tree(c.path()));
        assert_eq!(ta.len(), 21 + 3 + 1, "21 images, 3 manifests and columns.csv");
        assert_eq!(ta, tb);
        assert_ne!(ta, tc);
        assert!(
            write(a.path(), Task::Gaze, sizes, Causes::Rare, 5, &|_| ()).is_err(),
            "an existing dataset is not overwritten"
        );
    }

    #[test]
    fn manifests_agree_with_folders_and_parameters() {
        let d = tempfile::tempdir().unwrap();
        write(d.path(), Task::Gaze, Sizes { train: 0, test: 40, improvement: 0 }, Causes::Rare, 9, &|_| ()).unwrap();
        let mut r = csv::Reader::from_path(d.path().join("test/manifest.csv")).unwrap();
        let header: Vec<String> = r.headers().unwrap().iter().map(str::to_string).collect();
        let (yaw, pitch) = (
            header.iter().position(|h| h == "gaze_yaw").unwrap(),
            header.iter().position(|h| h == "gaze_pitch").unwrap(),
        );
        for row in r.records() {
            let row = row.unwrap();
            let (path, label) = (&row[0], &row[1]);
            assert_eq!(path.split('/').next().unwrap(), label, "class folder = label");
            assert!(d.path().join("test").join(path).is_file());
            let mut p = params_of(0, SplitId::Test, 0, Causes::Rare);
            p.gaze_yaw = row[yaw].parse().unwrap();
            p.gaze_pitch = row[pitch].parse().unwrap();
            assert_eq!(GAZE_CLASSES[p.gaze_class()], label, "the label follows from the recorded angles");
        }
        let l = tempfile::tempdir().unwrap();
        write(l.path(), Task::Landmarks, Sizes { train: 0, test: 5, improvement: 0 }, Causes::Rare, 9, &|_| ())
            .unwrap();
        let text = std::fs::read_to_string(l.path().join("test/manifest.csv")).unwrap();
        let first = text.lines().nth(1).unwrap();
        assert_eq!(first.split(',').nth(1).unwrap().split(' ').count(), 6, "{first}");
    }
}
