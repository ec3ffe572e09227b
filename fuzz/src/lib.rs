//! Mutation fuzzing of hudd's input readers, on stable Rust.
//!
//! Each [`Target`] feeds bytes to one reader the way hudd meets them: an ONNX file to the model
//! loader, an image file to the decoder and the tensor conversion, a split's `manifest.csv` to
//! the dataset reader, an engineers' label CSV to the label checker, and a bundle's `report.json`
//! and `manifest.json` to the schema readers (what the viewer reads). A reader may refuse its
//! input with an error; it must not panic, abort, hang or allocate more than 1 GiB at once.
//!
//! Inputs are derived from the committed corpus (`fuzz/corpus/<target>/`) by [`Mutator::input`]:
//! input `i` of a seed depends on nothing but the corpus, the seed and `i`, so that any input a run
//! reports can be written out again (`hudd-fuzz TARGET --emit I`). There is no coverage feedback:
//! the mutations (bit flips, interesting values, cuts, copies, splices, tokens of the format) are
//! chosen to reach the readers' checks.

use std::path::{Path, PathBuf};

use hudd_core::bootstrap::{LabelKind, LabelSource};
use hudd_core::config::{Config, TaskConfig, TaskKind};

/// One reader under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// `Model::from_bytes`: protobuf decoding, graph translation, the engine's analysis.
    Onnx,
    /// `input::decode_bytes` and `input::to_tensor` (PNG, JPEG, BMP; resizing).
    Image,
    /// `Dataset::open` on a split whose `manifest.csv` is the input (classification and regression).
    Manifest,
    /// `bootstrap::label_images` on a label CSV (class names and regression targets).
    Labels,
    /// `hudd_report::read_report` and `read_manifest` (the viewer's input).
    Report,
}

impl Target {
    /// Every target.
    pub const ALL: [Target; 5] = [Target::Onnx, Target::Image, Target::Manifest, Target::Labels, Target::Report];

    /// The name on the command line and of the corpus folder.
    pub fn name(self) -> &'static str {
        match self {
            Target::Onnx => "onnx",
            Target::Image => "image",
            Target::Manifest => "manifest",
            Target::Labels => "labels",
            Target::Report => "report",
        }
    }

    /// The target of a name.
    pub fn from_name(name: &str) -> Option<Target> {
        Target::ALL.into_iter().find(|t| t.name() == name)
    }

    /// Format tokens the mutator inserts (text formats only).
    fn tokens(self) -> &'static [&'static [u8]] {
        match self {
            Target::Onnx | Target::Image => &[],
            Target::Manifest | Target::Labels => &[
                b",",
                b"\n",
                b"\r\n",
                b"\"",
                b"\"\"",
                b"..",
                b"/",
                b"../",
                b"nan",
                b"inf",
                b"-1e999",
                b"1e39",
                b"path",
                b"label",
                b" ",
                b"\xff\xfe",
                b"a/1.png",
                b"b/2.png",
                b";",
            ],
            Target::Report => &[
                b"{",
                b"}",
                b"[",
                b"]",
                b"\"",
                b":",
                b",",
                b"null",
                b"-1",
                b"1e999",
                b"18446744073709551616",
                b"\"format_version\": 99",
                b"\"hudd-report\"",
                b"\\u0000",
                b"\\ud800",
                b"true",
            ],
        }
    }
}

/// A scratch folder for the targets that read files: a split with two image files, an
/// improvement folder, and the file names the inputs are written to.
pub struct Workspace {
    dir: tempfile::TempDir,
}

impl Workspace {
    /// Creates the folder.
    pub fn new() -> std::io::Result<Workspace> {
        let dir = tempfile::tempdir()?;
        for split in ["test", "improvement"] {
            for image in ["a/1.png", "b/2.png"] {
                let p = dir.path().join(split).join(image);
                std::fs::create_dir_all(p.parent().unwrap_or(dir.path()))?;
                std::fs::write(p, b"\x89PNG")?;
            }
        }
        Ok(Workspace { dir })
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }
}

/// Feeds `input` to `target`'s reader (errors are the expected outcome of most inputs).
pub fn execute(target: Target, input: &[u8], ws: &Workspace) {
    match target {
        Target::Onnx => {
            if let Ok(model) = hudd_core::Model::from_bytes(input, PathBuf::from("fuzz.onnx")) {
                let _ = model.graph().float_values_per_image();
                let _ = Config::default().input_spec(model.info());
            }
        }
        Target::Image => {
            if let Ok(img) = hudd_core::input::decode_bytes(input) {
                for text in [
                    "[input]\nsize = [28, 28]\nchannels = 1\n",
                    "[input]\nsize = [9, 31]\nchannels = 3\nresize = \"center-crop\"\n",
                    "[input]\nsize = [16, 8]\nchannels = 3\nresize = \"pad\"\nlayout = \"nhwc\"\n",
                ] {
                    if let Some(spec) = spec(text) {
                        let _ = hudd_core::input::to_tensor(&img, &spec);
                    }
                }
            }
        }
        Target::Manifest => {
            let manifest = ws.path("test/manifest.csv");
            if std::fs::write(&manifest, input).is_err() {
                return;
            }
            let regression = TaskConfig { kind: TaskKind::Regression, ..TaskConfig::default() };
            let named = TaskConfig { classes: Some(vec!["a".into(), "b".into()]), ..TaskConfig::default() };
            for task in [TaskConfig::default(), regression, named] {
                let _ = hudd_core::Dataset::open(ws.dir.path(), &task);
            }
        }
        Target::Labels => {
            let csv = ws.path("labels.csv");
            if std::fs::write(&csv, input).is_err() {
                return;
            }
            let needed = vec![("a/1.png".to_string(), String::new()), ("b/2.png".to_string(), String::new())];
            let kinds = [LabelKind::Classes(vec!["a".into(), "b".into()]), LabelKind::Targets];
            for kind in &kinds {
                let source = LabelSource::Csv(csv.clone());
                let _ = hudd_core::bootstrap::label_images(&source, &ws.path("improvement"), &needed, kind);
            }
        }
        Target::Report => {
            let text = String::from_utf8_lossy(input);
            if let Ok(report) = hudd_report::read_report(&text) {
                let _ = report.best_layer();
                let _ = report.to_inline_json();
            }
            let _ = hudd_report::read_manifest(&text);
        }
    }
}

/// An input spec read off a configuration alone (a 4-D model input of the configured size).
fn spec(text: &str) -> Option<hudd_core::config::InputSpec> {
    let config = Config::from_toml_str(text).ok()?;
    let size = config.input.size?;
    let c = config.input.channels?;
    let dims = match config.input.layout {
        Some(hudd_core::config::Layout::Nhwc) => [1, size[0], size[1], c],
        _ => [1, c, size[0], size[1]],
    };
    let info = hudd_core::model::ModelInfo {
        inputs: vec![hudd_core::model::TensorInfo {
            name: "x".into(),
            elem_type: hudd_core::model::ElemType::F32,
            shape: dims.iter().map(|&d| hudd_core::model::Dim::Fixed(d)).collect(),
        }],
        outputs: vec![],
    };
    config.input_spec(&info).ok()
}

/// SplitMix64: the mutator's random numbers.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n` > 0).
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Derives inputs from a corpus.
pub struct Mutator {
    target: Target,
    corpus: Vec<Vec<u8>>,
}

/// Bytes worth writing over others: boundaries of signed and unsigned integers, and lengths.
const INTERESTING: &[u64] = &[0, 1, 0x7f, 0x80, 0xff, 0x7fff, 0xffff, 0x7fff_ffff, 0xffff_ffff, u64::MAX, 100_000];

impl Mutator {
    /// A mutator over the files of `corpus` (sorted by name).
    pub fn from_folder(target: Target, corpus: &Path) -> std::io::Result<Mutator> {
        let mut paths: Vec<PathBuf> =
            std::fs::read_dir(corpus)?.map(|e| e.map(|e| e.path())).collect::<Result<_, _>>()?;
        paths.sort();
        let corpus = paths.iter().filter(|p| p.is_file()).map(std::fs::read).collect::<Result<Vec<_>, _>>()?;
        if corpus.is_empty() {
            return Err(std::io::Error::new(std::io::ErrorKind::NotFound, "the corpus folder holds no file"));
        }
        Ok(Mutator { target, corpus })
    }

    /// Number of corpus entries.
    pub fn len(&self) -> usize {
        self.corpus.len()
    }

    /// Whether the corpus is empty (never, once built).
    pub fn is_empty(&self) -> bool {
        self.corpus.is_empty()
    }

    /// The corpus entries themselves.
    pub fn corpus(&self) -> &[Vec<u8>] {
        &self.corpus
    }

    /// Input `i` of `seed`.
    pub fn input(&self, seed: u64, i: u64) -> Vec<u8> {
        let mut rng = Rng(seed ^ i.wrapping_mul(0xD6E8_FEB8_6659_FD93));
        if rng.below(32) == 0 {
            let n = rng.below(256);
            return (0..n).map(|_| rng.next() as u8).collect();
        }
        let mut data = self.corpus[rng.below(self.corpus.len())].clone();
        let rounds = 1 + rng.below(8);
        for _ in 0..rounds {
            self.mutate(&mut data, &mut rng);
        }
        data
    }

    fn mutate(&self, data: &mut Vec<u8>, rng: &mut Rng) {
        let len = data.len();
        let at = |rng: &mut Rng| rng.below(len.max(1));
        match rng.below(9) {
            0 if len > 0 => {
                let i = at(rng);
                data[i] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let i = at(rng);
                data[i] = rng.next() as u8;
            }
            2 if len > 0 => {
                // An interesting value, 1, 2, 4 or 8 bytes, either byte order.
                let width = 1 << rng.below(4);
                let v = INTERESTING[rng.below(INTERESTING.len())];
                let bytes = if rng.below(2) == 0 { v.to_le_bytes() } else { v.to_be_bytes() };
                let bytes = if rng.below(2) == 0 { &bytes[..width] } else { &bytes[8 - width..] };
                let i = at(rng);
                for (k, b) in bytes.iter().enumerate() {
                    if let Some(slot) = data.get_mut(i + k) {
                        *slot = *b;
                    }
                }
            }
            3 if len > 1 => {
                let i = at(rng);
                let n = 1 + rng.below((len - i).min(256));
                data.drain(i..(i + n).min(len));
            }
            4 if len > 0 => {
                // Copy a range elsewhere (repeats a field or a chunk).
                let i = at(rng);
                let n = 1 + rng.below((len - i).min(256));
                let chunk: Vec<u8> = data[i..(i + n).min(len)].to_vec();
                let j = rng.below(len + 1);
                data.splice(j..j, chunk);
            }
            5 => {
                let j = rng.below(len + 1);
                let n = 1 + rng.below(16);
                let bytes: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
                data.splice(j..j, bytes);
            }
            6 if self.corpus.len() > 1 => {
                // Splice: the head of this input, the tail of another entry.
                let other = &self.corpus[rng.below(self.corpus.len())];
                let i = rng.below(len + 1);
                let j = rng.below(other.len() + 1);
                data.truncate(i);
                data.extend_from_slice(&other[j..]);
            }
            7 if len > 0 => {
                data.truncate(rng.below(len));
            }
            _ => {
                let tokens = self.target.tokens();
                if !tokens.is_empty() {
                    let t = tokens[rng.below(tokens.len())];
                    let j = rng.below(len + 1);
                    data.splice(j..j, t.iter().copied());
                } else if len > 0 {
                    let i = at(rng);
                    data[i] = data[i].wrapping_add(1 + rng.below(3) as u8);
                }
            }
        }
    }
}

/// The committed corpus folder of `target` (`fuzz/corpus/<name>`).
pub fn corpus_dir(target: Target) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus").join(target.name())
}

/// The committed regression inputs of `target` (`fuzz/regressions/<name>`): inputs that once made a
/// reader fail, kept so that it never does again.
pub fn regressions_dir(target: Target) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("regressions").join(target.name())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inputs_depend_on_seed_and_index_only() {
        let m = Mutator::from_folder(Target::Report, &corpus_dir(Target::Report)).expect("corpus");
        assert_eq!(m.input(7, 12345), m.input(7, 12345));
        let distinct: std::collections::HashSet<Vec<u8>> = (0..200).map(|i| m.input(7, i)).collect();
        assert!(distinct.len() > 190, "mutations vary: {}", distinct.len());
        assert!((0..200).any(|i| !m.corpus().contains(&m.input(7, i))), "they change the corpus");
    }

    /// Every corpus file, every regression input and a short seeded run go through every reader
    /// without a panic (a panic fails the test).
    #[test]
    fn the_corpus_the_regressions_and_a_short_run_pass_every_reader() {
        let ws = Workspace::new().expect("workspace");
        for target in Target::ALL {
            let m = Mutator::from_folder(target, &corpus_dir(target)).expect("corpus");
            assert!(m.len() >= 3, "{}: a corpus of a few real inputs", target.name());
            for input in m.corpus() {
                execute(target, input, &ws);
            }
            if let Ok(entries) = std::fs::read_dir(regressions_dir(target)) {
                for e in entries.flatten() {
                    execute(target, &std::fs::read(e.path()).expect("regression input"), &ws);
                }
            }
            for i in 0..100 {
                execute(target, &m.input(1, i), &ws);
            }
        }
    }
}
