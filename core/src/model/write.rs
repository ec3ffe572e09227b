//! Writing a model back with new weights ([`Model::with_weights`]).
//!
//! The ONNX file is rewritten at the protobuf wire level: every byte that holds no replaced weight
//! is copied as it was (nodes, names, attributes, metadata, fields this version of the ONNX schema
//! does not know), and only the replaced initializers are encoded anew, in their original element
//! type. A weight that the file computes from a constant (a `Constant` node, or one folded through
//! `Identity`, `Cast`, `Reshape`, …; see [`Graph::weights`]) becomes an initializer of its own
//! name, and the node that computed it is dropped: exporters share one initializer between equal
//! constants, so writing through to the source would change the others too.
//!
//! Weights stored outside the ONNX file (PyTorch's default exporter writes `NAME.onnx.data` beside
//! `NAME.onnx`; ONNX's external-data convention) are read from their file and written as the
//! [`Layout`] asks: all inside the new file, or all in a new weights file beside it, in the order
//! and at the offsets they follow one another there.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Seek, SeekFrom};
use std::path::{Component, Path, PathBuf};

use ndarray::ArrayD;
use prost::Message;
use tract_onnx::pb;
use tract_onnx::prelude::f16;

use super::{Graph, Model, Weight};
use crate::error::{Error, Result};

/// New values of float weights, by ONNX tensor name.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Weights {
    tensors: BTreeMap<String, ArrayD<f32>>,
}

impl Weights {
    /// No weights.
    pub fn new() -> Self {
        Self::default()
    }

    /// Every float weight of `graph` (initializers and folded constants).
    pub fn of(graph: &Graph) -> Self {
        let tensors = graph.weights.iter().filter_map(|(n, w)| w.as_f32().map(|a| (n.clone(), a.clone()))).collect();
        Weights { tensors }
    }

    /// Sets the value of `tensor`.
    pub fn insert(&mut self, tensor: impl Into<String>, value: ArrayD<f32>) {
        self.tensors.insert(tensor.into(), value);
    }

    /// The value of `tensor`.
    pub fn get(&self, tensor: &str) -> Option<&ArrayD<f32>> {
        self.tensors.get(tensor)
    }

    /// The value of `tensor`, to change in place.
    pub fn get_mut(&mut self, tensor: &str) -> Option<&mut ArrayD<f32>> {
        self.tensors.get_mut(tensor)
    }

    /// Weights by name, sorted.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &ArrayD<f32>)> {
        self.tensors.iter().map(|(n, a)| (n.as_str(), a))
    }

    /// Number of weights.
    pub fn len(&self) -> usize {
        self.tensors.len()
    }

    /// No weights at all.
    pub fn is_empty(&self) -> bool {
        self.tensors.is_empty()
    }
}

/// Where [`Model::with_weights`] puts the weights the original keeps outside its ONNX file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Layout {
    /// Every weight inside the ONNX file (one self-contained file; for models under protobuf's
    /// 2 GB limit).
    SelfContained,
    /// As the original: if it keeps weights outside, they go into one new file of this name (a
    /// bare file name, resolved beside the ONNX file: `M2.onnx.data` for `M2.onnx`).
    Beside(String),
}

impl Layout {
    /// The layout that keeps an original's external weights beside `onnx` as `NAME.data`.
    pub fn beside(onnx: &Path) -> Layout {
        let name = onnx.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "model.onnx".into());
        Layout::Beside(format!("{name}.data"))
    }
}

/// A written model: the ONNX file's bytes and, when the layout keeps weights outside it, the
/// weights file's bytes (its name is the one [`Layout::Beside`] gave).
#[derive(Debug, Clone, PartialEq)]
pub struct ModelFiles {
    /// The ONNX file.
    pub onnx: Vec<u8>,
    /// The external weights file, if any weight lives outside the ONNX file.
    pub data: Option<Vec<u8>>,
}

impl ModelFiles {
    /// Writes the weights file (if any) beside `onnx` under `name`, then the ONNX file, each
    /// atomically: an ONNX file never refers to weights that are not there yet.
    pub fn write(&self, onnx: &Path, layout: &Layout) -> Result<()> {
        if let (Some(data), Layout::Beside(name)) = (&self.data, layout) {
            crate::fsio::write_atomic(&onnx.with_file_name(name), data)?;
        }
        crate::fsio::write_atomic(onnx, &self.onnx)
    }
}

const FLOAT: i32 = 1;
const FLOAT16: i32 = 10;
const DOUBLE: i32 = 11;

impl Model {
    /// The files of the external weights the ONNX file refers to (empty when it holds them all),
    /// resolved beside it, each once, in the order they are first named (found when it loaded).
    pub fn external_files(&self) -> Result<Vec<PathBuf>> {
        Ok(self.external.clone())
    }

    /// The ONNX file with the float weights in `new` replaced (weights not named keep their
    /// values): the same nodes, names and everything else, bit for bit; see the module
    /// documentation for weights the file computes from constants and for [`Layout`]. Unchanged
    /// values in a model that holds every weight itself give the original bytes.
    ///
    /// Errors: [`Error::Weight`] for a name that is no float weight of the model, or a value of
    /// another shape; [`Error::MalformedModel`] for an external weight whose file cannot be read.
    pub fn with_weights(&self, new: &Weights, layout: &Layout) -> Result<ModelFiles> {
        let graph = self.graph();
        let bad = |tensor: &str, reason: String| Error::Weight {
            path: self.path().to_path_buf(),
            tensor: tensor.into(),
            reason,
        };
        let mut changed: BTreeMap<&str, &ArrayD<f32>> = BTreeMap::new();
        for (name, value) in new.iter() {
            let old = match graph.weight(name) {
                Some(Weight::F32(a)) => a,
                Some(_) => return Err(bad(name, "is not a float weight".into())),
                None => return Err(bad(name, "is not a weight of the model (see `hudd inspect --json`)".into())),
            };
            if old.shape() != value.shape() {
                return Err(bad(
                    name,
                    format!("has shape {:?}; the new value has shape {:?}", old.shape(), value.shape()),
                ));
            }
            if old != value {
                changed.insert(name, value);
            }
        }
        let external = !self.external.is_empty();
        if changed.is_empty() && !external {
            return Ok(ModelFiles { onnx: self.bytes.clone(), data: None });
        }
        let malformed = |reason: String| Error::MalformedModel { path: self.path().to_path_buf(), reason };
        let top = fields(&self.bytes).map_err(malformed)?;
        let mut out = Vec::with_capacity(self.bytes.len());
        let mut sink = match layout {
            Layout::Beside(name) if external => DataSink::File { name: name.clone(), bytes: Vec::new() },
            _ => DataSink::Inline,
        };
        let mut written = false;
        for f in &top {
            if f.number == GRAPH_IN_MODEL && f.wire == LEN && !written {
                let rewrite = Rewrite { changed: &changed, graph, model: self.path(), sink: &mut sink };
                let g = rewrite.graph(&self.bytes[f.payload.clone()]).map_err(malformed)?;
                put_len_field(&mut out, GRAPH_IN_MODEL, &g);
                written = true;
            } else {
                out.extend_from_slice(&self.bytes[f.span.clone()]);
            }
        }
        let data = match sink {
            DataSink::File { bytes, .. } => Some(bytes),
            DataSink::Inline => None,
        };
        Ok(ModelFiles { onnx: out, data })
    }
}

/// ONNX's `TensorProto.DataLocation.EXTERNAL`.
const EXTERNAL: i32 = 1;

fn is_external(t: &pb::TensorProto) -> bool {
    t.data_location == Some(EXTERNAL)
}

/// The files of `graph`'s external weights, each once, in the order first named; an error for a
/// location that is not a file beside (or below) the model: ONNX's rule, and no model may make hudd
/// read `/etc/…` or `../../…`.
pub(super) fn external_locations(graph: &pb::GraphProto, model: &Path) -> Result<Vec<PathBuf>, String> {
    let mut files: Vec<PathBuf> = Vec::new();
    for t in graph.initializer.iter().filter(|t| is_external(t)) {
        let file = External::of(t, model)?.file;
        if !files.contains(&file) {
            files.push(file);
        }
    }
    Ok(files)
}

/// Where an external tensor's bytes are: ONNX's `location` (relative to the model's folder),
/// `offset` and `length` entries.
struct External {
    file: PathBuf,
    offset: u64,
    length: Option<u64>,
}

impl External {
    fn of(t: &pb::TensorProto, model: &Path) -> Result<External, String> {
        let entry = |key: &str| t.external_data.iter().find(|e| e.key == key).map(|e| e.value.as_str());
        let number = |key: &str| -> Result<Option<u64>, String> {
            entry(key)
                .map(|v| {
                    v.parse::<u64>()
                        .map_err(|_| format!("initializer `{}`: external `{key}` `{v}` is no number", t.name))
                })
                .transpose()
        };
        let location = entry("location")
            .ok_or_else(|| format!("initializer `{}` is stored externally but names no `location`", t.name))?;
        let relative = Path::new(location);
        if relative.as_os_str().is_empty() || !relative.components().all(|c| matches!(c, Component::Normal(_))) {
            return Err(format!(
                "initializer `{}`: external location `{location}` is not a file name beside the model",
                t.name
            ));
        }
        let folder = model.parent().unwrap_or(Path::new(""));
        Ok(External { file: folder.join(relative), offset: number("offset")?.unwrap_or(0), length: number("length")? })
    }

    /// The tensor's bytes, read from its file.
    fn read(&self, tensor: &str) -> Result<Vec<u8>, String> {
        let why = |e: std::io::Error| format!("initializer `{tensor}`: cannot read {}: {e}", self.file.display());
        let mut f = crate::fsio::open(&self.file).map_err(why)?;
        let meta = f.metadata().map_err(why)?;
        let end = match self.length {
            Some(len) => self.offset.checked_add(len).filter(|&e| e <= meta.len()),
            None => Some(meta.len()).filter(|&e| e >= self.offset),
        }
        .ok_or_else(|| {
            format!(
                "initializer `{tensor}`: bytes {}..{} lie outside {} ({} bytes)",
                self.offset,
                self.length.map_or("end".into(), |l| (self.offset + l).to_string()),
                self.file.display(),
                meta.len()
            )
        })?;
        f.seek(SeekFrom::Start(self.offset)).map_err(why)?;
        let mut bytes = vec![0u8; usize::try_from(end - self.offset).map_err(|_| "tensor too large".to_string())?];
        f.read_exact(&mut bytes).map_err(why)?;
        Ok(bytes)
    }
}

/// Where the weights that were external go.
enum DataSink {
    /// Into the ONNX file.
    Inline,
    /// Appended to a new weights file of this name.
    File { name: String, bytes: Vec<u8> },
}

impl DataSink {
    /// `t` (whose data is in `raw_data`) placed: left inline, or moved into the weights file.
    fn place(&mut self, mut t: pb::TensorProto) -> pb::TensorProto {
        if let DataSink::File { name, bytes } = self {
            let raw = std::mem::take(&mut t.raw_data);
            let entry = |key: &str, value: String| pb::StringStringEntryProto { key: key.into(), value };
            t.external_data = vec![
                entry("location", name.clone()),
                entry("offset", bytes.len().to_string()),
                entry("length", raw.len().to_string()),
            ];
            t.data_location = Some(EXTERNAL);
            bytes.extend_from_slice(&raw);
        }
        t
    }
}

const GRAPH_IN_MODEL: u64 = 7;
const NODE_IN_GRAPH: u64 = 1;
const INITIALIZER_IN_GRAPH: u64 = 5;
const LEN: u8 = 2;

/// One field of a protobuf message: its number, wire type, whole byte span and payload span.
struct Field {
    number: u64,
    wire: u8,
    span: std::ops::Range<usize>,
    payload: std::ops::Range<usize>,
}

fn varint(bytes: &[u8], at: &mut usize) -> Result<u64, String> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *bytes.get(*at).ok_or("truncated varint")?;
        *at += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err("varint longer than 10 bytes".into())
}

/// The top-level fields of a message, in file order.
fn fields(bytes: &[u8]) -> Result<Vec<Field>, String> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let start = at;
        let key = varint(bytes, &mut at)?;
        let (number, wire) = (key >> 3, (key & 7) as u8);
        let payload_start;
        match wire {
            0 => {
                payload_start = at;
                varint(bytes, &mut at)?;
            }
            1 => {
                payload_start = at;
                at += 8;
            }
            2 => {
                let len = usize::try_from(varint(bytes, &mut at)?).map_err(|_| "field too long")?;
                payload_start = at;
                at = at.checked_add(len).ok_or("field too long")?;
            }
            5 => {
                payload_start = at;
                at += 4;
            }
            w => return Err(format!("protobuf wire type {w} is not used by ONNX")),
        }
        if at > bytes.len() {
            return Err("truncated field".into());
        }
        out.push(Field { number, wire, span: start..at, payload: payload_start..at });
    }
    Ok(out)
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8 & 0x7f) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_len_field(out: &mut Vec<u8>, number: u64, payload: &[u8]) {
    put_varint(out, (number << 3) | u64::from(LEN));
    put_varint(out, payload.len() as u64);
    out.extend_from_slice(payload);
}

/// One graph's rewrite: the changed weights, the model (for computed weights' types and external
/// files) and where external weights go.
struct Rewrite<'a> {
    changed: &'a BTreeMap<&'a str, &'a ArrayD<f32>>,
    graph: &'a Graph,
    model: &'a Path,
    sink: &'a mut DataSink,
}

impl Rewrite<'_> {
    /// The graph message with `changed` initializers re-encoded, computed weights turned into
    /// initializers and their producing nodes dropped, external weights placed by the sink.
    fn graph(self, bytes: &[u8]) -> Result<Vec<u8>, String> {
        let Rewrite { changed, graph, model, sink } = self;
        let list = fields(bytes)?;
        let mut initializers: BTreeSet<String> = BTreeSet::new();
        for f in list.iter().filter(|f| f.number == INITIALIZER_IN_GRAPH && f.wire == LEN) {
            let t = pb::TensorProto::decode(&bytes[f.payload.clone()]).map_err(|e| format!("initializer: {e}"))?;
            initializers.insert(t.name);
        }
        // Weights the file computes: their producers go, an initializer of the same name comes.
        let computed: BTreeSet<&str> = changed.keys().copied().filter(|n| !initializers.contains(*n)).collect();
        let mut out = Vec::with_capacity(bytes.len());
        for f in &list {
            let payload = &bytes[f.payload.clone()];
            match (f.number, f.wire) {
                (NODE_IN_GRAPH, LEN) => {
                    let node = pb::NodeProto::decode(payload).map_err(|e| format!("node: {e}"))?;
                    if node.output.iter().any(|o| computed.contains(o.as_str())) {
                        continue;
                    }
                }
                (INITIALIZER_IN_GRAPH, LEN) => {
                    let t = pb::TensorProto::decode(payload).map_err(|e| format!("initializer: {e}"))?;
                    let external = is_external(&t);
                    let t = match changed.get(t.name.as_str()) {
                        Some(value) => encode(t, value)?,
                        None if external => {
                            let raw = External::of(&t, model)?.read(&t.name)?;
                            let mut t = t;
                            t.external_data.clear();
                            t.data_location = None;
                            t.raw_data = raw;
                            t
                        }
                        None => {
                            out.extend_from_slice(&bytes[f.span.clone()]);
                            continue;
                        }
                    };
                    // A weight keeps its place: outside (in the new file, or inline when
                    // self-contained) if it was outside, inside if it was inside.
                    let t = if external { sink.place(t) } else { t };
                    put_len_field(&mut out, INITIALIZER_IN_GRAPH, &t.encode_to_vec());
                    continue;
                }
                _ => {}
            }
            out.extend_from_slice(&bytes[f.span.clone()]);
        }
        for name in computed {
            let value = changed[name];
            let data_type = match graph.tensors.get(name).map(|f| f.elem_type) {
                Some(super::ElemType::F16) => FLOAT16,
                Some(super::ElemType::F64) => DOUBLE,
                _ => FLOAT,
            };
            let t = pb::TensorProto { name: name.to_string(), data_type, ..Default::default() };
            put_len_field(&mut out, INITIALIZER_IN_GRAPH, &encode(t, value)?.encode_to_vec());
        }
        Ok(out)
    }
}

/// `t` with its data replaced by `value` (row-major, little-endian raw data in `t`'s own float
/// type; any external or typed data dropped).
fn encode(mut t: pb::TensorProto, value: &ArrayD<f32>) -> Result<pb::TensorProto, String> {
    let values = value.as_standard_layout();
    let mut raw = Vec::new();
    match t.data_type {
        FLOAT => values.iter().for_each(|v| raw.extend_from_slice(&v.to_le_bytes())),
        DOUBLE => values.iter().for_each(|v| raw.extend_from_slice(&f64::from(*v).to_le_bytes())),
        FLOAT16 => values.iter().for_each(|v| raw.extend_from_slice(&f16::from_f32(*v).to_bits().to_le_bytes())),
        other => return Err(format!("initializer `{}` has element type {other}, not a float type", t.name)),
    }
    t.dims = value.shape().iter().map(|&d| d as i64).collect();
    t.float_data.clear();
    t.double_data.clear();
    t.int32_data.clear();
    t.external_data.clear();
    t.data_location = None;
    t.raw_data = raw;
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_round_trip_and_truncation_is_an_error() {
        let mut msg = Vec::new();
        put_len_field(&mut msg, 7, b"graph bytes");
        put_varint(&mut msg, 8 << 3);
        put_varint(&mut msg, 300);
        let f = fields(&msg).unwrap();
        assert_eq!(f.len(), 2);
        assert_eq!((f[0].number, f[0].wire, &msg[f[0].payload.clone()]), (7, LEN, &b"graph bytes"[..]));
        assert_eq!((f[1].number, f[1].wire), (8, 0));
        assert!(fields(&msg[..msg.len() - 1]).is_err());
    }
}
