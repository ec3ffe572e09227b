//! Writing a model back with new weights ([`Model::with_weights`]).
//!
//! The ONNX file is rewritten at the protobuf wire level: every byte that holds no replaced weight
//! is copied as it was (nodes, names, attributes, metadata, fields this version of the ONNX schema
//! does not know), and only the replaced initializers are encoded anew, in their original element
//! type. A weight that the file computes from a constant (a `Constant` node, or one folded through
//! `Identity`, `Cast`, `Reshape`, …; see [`Graph::weights`]) becomes an initializer of its own
//! name, and the node that computed it is dropped: exporters share one initializer between equal
//! constants, so writing through to the source would change the others too.

use std::collections::{BTreeMap, BTreeSet};

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

const FLOAT: i32 = 1;
const FLOAT16: i32 = 10;
const DOUBLE: i32 = 11;

impl Model {
    /// The ONNX file with the float weights in `new` replaced (weights not named keep their
    /// values): the same nodes, names and everything else, bit for bit; see the module
    /// documentation for weights the file computes from constants. Unchanged values give the
    /// original bytes.
    ///
    /// Errors ([`Error::Weight`]): a name that is no float weight of the model, or a value of
    /// another shape.
    pub fn with_weights(&self, new: &Weights) -> Result<Vec<u8>> {
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
        if changed.is_empty() {
            return Ok(self.bytes.clone());
        }
        let malformed = |reason: String| Error::MalformedModel { path: self.path().to_path_buf(), reason };
        let top = fields(&self.bytes).map_err(malformed)?;
        let mut out = Vec::with_capacity(self.bytes.len());
        let mut written = false;
        for f in &top {
            if f.number == GRAPH_IN_MODEL && f.wire == LEN && !written {
                let g = rewrite_graph(&self.bytes[f.payload.clone()], &changed, graph).map_err(malformed)?;
                put_len_field(&mut out, GRAPH_IN_MODEL, &g);
                written = true;
            } else {
                out.extend_from_slice(&self.bytes[f.span.clone()]);
            }
        }
        Ok(out)
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

/// The graph message with `changed` initializers re-encoded, computed weights turned into
/// initializers and their producing nodes dropped.
fn rewrite_graph(bytes: &[u8], changed: &BTreeMap<&str, &ArrayD<f32>>, graph: &Graph) -> Result<Vec<u8>, String> {
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
                if let Some(value) = changed.get(t.name.as_str()) {
                    put_len_field(&mut out, INITIALIZER_IN_GRAPH, &encode(t, value)?);
                    continue;
                }
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
        put_len_field(&mut out, INITIALIZER_IN_GRAPH, &encode(t, value)?);
    }
    Ok(out)
}

/// `t` with its data replaced by `value` (row-major, little-endian raw data in `t`'s own float
/// type; any external or typed data dropped).
fn encode(mut t: pb::TensorProto, value: &ArrayD<f32>) -> Result<Vec<u8>, String> {
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
    Ok(t.encode_to_vec())
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
