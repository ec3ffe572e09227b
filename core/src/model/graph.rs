//! The model graph as plain data: nodes in topological order, attributes, and weights as ndarray.
//!
//! Later stages (relevance propagation, retraining) read the network's structure from here and never
//! from the inference engine. Weights are the graph's initializers plus the values of `Constant` nodes,
//! keyed by tensor name.

use std::collections::{BTreeMap, HashMap, HashSet};

use ndarray::ArrayD;
use serde::Serialize;

use super::op::{Axes, Op};
use super::{Dim, ElemType, TensorInfo};

/// One ONNX node.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Node {
    /// The node's name; its first output's name when the file left it empty.
    pub name: String,
    /// The ONNX op type (`Conv`, `Gemm`, …).
    pub op_type: String,
    /// The op with its attributes decoded (what the stages match on).
    pub op: Op,
    /// The op's domain (empty for the default `ai.onnx`).
    pub domain: String,
    /// Input tensor names; an empty string marks an omitted optional input.
    pub inputs: Vec<String>,
    /// Output tensor names; an empty string marks an omitted optional output.
    pub outputs: Vec<String>,
    /// Attributes by name.
    pub attributes: BTreeMap<String, Attribute>,
}

/// An attribute value.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum Attribute {
    /// A float.
    Float(f32),
    /// An integer.
    Int(i64),
    /// A string (lossy UTF-8).
    String(String),
    /// A list of floats.
    Floats(Vec<f32>),
    /// A list of integers.
    Ints(Vec<i64>),
    /// A list of strings.
    Strings(Vec<String>),
    /// A tensor.
    Tensor(Weight),
    /// A kind hudd does not read (graphs, sparse tensors, type protos).
    Unsupported,
}

/// A constant tensor of the graph.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum Weight {
    /// Floating-point data (float16 and float64 are converted to f32).
    F32(#[serde(skip)] ArrayD<f32>),
    /// Integer data (all integer and bool types are widened to i64).
    I64(#[serde(skip)] ArrayD<i64>),
    /// A type hudd does not read (strings, complex).
    Other {
        /// ONNX element type.
        elem_type: ElemType,
        /// Shape.
        shape: Vec<usize>,
    },
}

impl Weight {
    /// Shape of the tensor.
    pub fn shape(&self) -> &[usize] {
        match self {
            Weight::F32(a) => a.shape(),
            Weight::I64(a) => a.shape(),
            Weight::Other { shape, .. } => shape,
        }
    }

    /// The values as f32, when the weight is floating-point.
    pub fn as_f32(&self) -> Option<&ArrayD<f32>> {
        match self {
            Weight::F32(a) => Some(a),
            _ => None,
        }
    }

    /// The values as i64, when the weight is an integer tensor.
    pub fn as_i64(&self) -> Option<&ArrayD<i64>> {
        match self {
            Weight::I64(a) => Some(a),
            _ => None,
        }
    }
}

impl Attribute {
    /// The integer value, if this is an `Int`.
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Attribute::Int(i) => Some(*i),
            _ => None,
        }
    }
    /// The float value, if this is a `Float`.
    pub fn as_float(&self) -> Option<f32> {
        match self {
            Attribute::Float(f) => Some(*f),
            _ => None,
        }
    }
    /// The integer list, if this is `Ints`.
    pub fn as_ints(&self) -> Option<&[i64]> {
        match self {
            Attribute::Ints(v) => Some(v),
            _ => None,
        }
    }
    /// The string, if this is a `String`.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Attribute::String(s) => Some(s),
            _ => None,
        }
    }
}

/// What the graph knows of a tensor before any image runs through it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TensorFact {
    /// Element type.
    pub elem_type: ElemType,
    /// Shape; a dimension that depends on the batch is symbolic.
    pub shape: Vec<Dim>,
    /// The first axis is the batch (one row per image): the tensor is an activation.
    pub batched: bool,
}

/// The whole graph.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Graph {
    /// Graph inputs that are not initializers (the images).
    pub inputs: Vec<TensorInfo>,
    /// Graph outputs.
    pub outputs: Vec<TensorInfo>,
    /// Nodes in topological order (producers before consumers; ties keep file order).
    pub nodes: Vec<Node>,
    /// Initializers, `Constant` node values and constants folded through `Identity`, `Cast`,
    /// `Reshape`, `Flatten`, `Squeeze` and `Unsqueeze`, by tensor name.
    #[serde(skip)]
    pub weights: BTreeMap<String, Weight>,
    /// Element type and shape of every tensor the graph computes (graph input and node outputs),
    /// as the engine infers them from the declared input.
    pub tensors: BTreeMap<String, TensorFact>,
    /// The default-domain opset the model was exported for.
    pub opset: i64,
    /// `producer_name producer_version` of the exporter.
    pub producer: String,
}

impl Graph {
    /// Float values of every tensor the graph computes, for one image (a dynamic dimension counted
    /// as 1: the batch): what a run that keeps every activation holds per image. 0 when the engine
    /// could not infer the shapes.
    pub fn float_values_per_image(&self) -> u64 {
        self.tensors
            .values()
            .filter(|f| matches!(f.elem_type, ElemType::F32 | ElemType::F16 | ElemType::F64))
            .map(|f| f.shape.iter().map(|d| d.fixed().unwrap_or(1) as u64).fold(1u64, u64::saturating_mul))
            .fold(0u64, u64::saturating_add)
    }

    /// The node that produces `tensor`, if any (graph inputs and weights have none).
    pub fn producer_of(&self, tensor: &str) -> Option<&Node> {
        self.nodes.iter().find(|n| n.outputs.iter().any(|o| o == tensor))
    }

    /// The nodes that read `tensor`.
    pub fn consumers_of(&self, tensor: &str) -> Vec<&Node> {
        self.nodes.iter().filter(|n| n.inputs.iter().any(|i| i == tensor)).collect()
    }

    /// A weight (initializer or constant) by tensor name.
    pub fn weight(&self, tensor: &str) -> Option<&Weight> {
        self.weights.get(tensor)
    }

    /// The float tensors with the batch as first axis: the activations a forward run produces
    /// (the graph input included).
    pub fn activations(&self) -> HashSet<String> {
        self.tensors.iter().filter(|(_, f)| f.batched && f.elem_type == ElemType::F32).map(|(n, _)| n.clone()).collect()
    }

    /// Number of nodes per op type, sorted by op type.
    pub fn op_counts(&self) -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        for n in &self.nodes {
            *counts.entry(n.op_type.clone()).or_insert(0) += 1;
        }
        counts
    }
}

/// Folds constants: the output of an `Identity`, `Cast`, `Reshape`, `Flatten`, `Squeeze` or
/// `Unsqueeze` node whose inputs are all weights is a weight too (exporters route initializers
/// through such nodes; PyTorch, for one, emits an `Identity` for every duplicate of an equal
/// constant). `nodes` must be in topological order, so that chains fold in one pass.
pub(crate) fn fold_constants(nodes: &[Node], weights: &mut BTreeMap<String, Weight>) {
    for node in nodes {
        let inputs: Vec<&str> = node.inputs.iter().map(String::as_str).filter(|i| !i.is_empty()).collect();
        let (Some(first), Some(out)) = (inputs.first(), node.outputs.first()) else { continue };
        if weights.contains_key(out) || !inputs.iter().all(|i| weights.contains_key(*i)) {
            continue;
        }
        let x = &weights[*first];
        let folded = match &node.op {
            Op::Identity => Some(x.clone()),
            Op::Cast { to } => cast(x, *to),
            Op::Reshape { allow_zero } => inputs
                .get(1)
                .and_then(|n| weights.get(*n))
                .and_then(Weight::as_i64)
                .map(|a| a.iter().copied().collect::<Vec<i64>>())
                .and_then(|s| reshape_target(x.shape(), &s, *allow_zero))
                .and_then(|s| reshaped(x, &s)),
            Op::Flatten { axis } => {
                let r = x.shape().len() as i64;
                let axis = if *axis < 0 { axis + r } else { *axis };
                (0..=r)
                    .contains(&axis)
                    .then(|| {
                        let (a, b) = x.shape().split_at(axis as usize);
                        vec![a.iter().product(), b.iter().product()]
                    })
                    .and_then(|s| reshaped(x, &s))
            }
            Op::Unsqueeze { axes } => {
                let rank = x.shape().len() + if let Axes::Listed(v) = axes { v.len() } else { 0 };
                match axes.resolve(rank) {
                    Ok(Some(axes)) => {
                        let mut shape = x.shape().to_vec();
                        let mut ok = true;
                        for a in axes {
                            if a > shape.len() {
                                ok = false;
                                break;
                            }
                            shape.insert(a, 1);
                        }
                        if ok {
                            reshaped(x, &shape)
                        } else {
                            None
                        }
                    }
                    _ => None,
                }
            }
            Op::Squeeze { axes } => match axes.resolve(x.shape().len()) {
                Ok(axes) => {
                    let shape: Vec<usize> = x
                        .shape()
                        .iter()
                        .enumerate()
                        .filter(|&(i, &d)| match &axes {
                            Some(axes) => !axes.contains(&i),
                            None => d != 1,
                        })
                        .map(|(_, &d)| d)
                        .collect();
                    reshaped(x, &shape)
                }
                Err(_) => None,
            },
            _ => None,
        };
        if let Some(w) = folded {
            weights.insert(out.clone(), w);
        }
    }
}

/// ONNX `Reshape`'s target shape: `0` copies the input's dimension (unless `allow_zero`), `-1`
/// takes what is left.
fn reshape_target(input: &[usize], target: &[i64], allow_zero: bool) -> Option<Vec<usize>> {
    let total: usize = input.iter().product();
    let mut shape: Vec<usize> = Vec::with_capacity(target.len());
    let mut infer = None;
    for (i, &t) in target.iter().enumerate() {
        match t {
            -1 if infer.is_none() => {
                infer = Some(i);
                shape.push(1);
            }
            0 if !allow_zero => shape.push(*input.get(i)?),
            t if t >= 0 => shape.push(t as usize),
            _ => return None,
        }
    }
    if let Some(i) = infer {
        let known: usize = shape.iter().product();
        if known == 0 || !total.is_multiple_of(known) {
            return None;
        }
        shape[i] = total / known;
    }
    (shape.iter().product::<usize>() == total).then_some(shape)
}

fn reshaped(w: &Weight, shape: &[usize]) -> Option<Weight> {
    let dims = ndarray::IxDyn(shape);
    Some(match w {
        Weight::F32(a) => Weight::F32(a.as_standard_layout().into_owned().into_shape_with_order(dims).ok()?),
        Weight::I64(a) => Weight::I64(a.as_standard_layout().into_owned().into_shape_with_order(dims).ok()?),
        Weight::Other { .. } => return None,
    })
}

/// ONNX `Cast` of a constant to `to` (a `TensorProto.DataType` code): floats stay f32, integers
/// and booleans i64.
fn cast(w: &Weight, to: i64) -> Option<Weight> {
    const FLOATS: [i64; 3] = [1, 10, 11];
    const INTS: [i64; 9] = [2, 3, 4, 5, 6, 7, 9, 12, 13];
    Some(match w {
        Weight::F32(a) if FLOATS.contains(&to) => Weight::F32(a.clone()),
        Weight::F32(a) if to == 9 => Weight::I64(a.mapv(|v| i64::from(v != 0.0))),
        Weight::F32(a) if INTS.contains(&to) => Weight::I64(a.mapv(|v| v as i64)),
        Weight::I64(a) if FLOATS.contains(&to) => Weight::F32(a.mapv(|v| v as f32)),
        Weight::I64(a) if to == 9 => Weight::I64(a.mapv(|v| i64::from(v != 0))),
        Weight::I64(a) if INTS.contains(&to) => Weight::I64(a.clone()),
        _ => return None,
    })
}

/// Orders `nodes` so that every node comes after the producers of its inputs (Kahn's algorithm,
/// stable with respect to file order). `available` are the tensors that exist before any node runs
/// (graph inputs, initializers). Returns the name of a node on a cycle, or that reads a tensor
/// nobody produces, as the error.
pub(crate) fn topological_order(nodes: Vec<Node>, available: &HashSet<String>) -> Result<Vec<Node>, (String, String)> {
    let producer: HashMap<&str, usize> = nodes
        .iter()
        .enumerate()
        .flat_map(|(i, n)| n.outputs.iter().filter(|o| !o.is_empty()).map(move |o| (o.as_str(), i)))
        .collect();
    let mut pending = vec![0usize; nodes.len()];
    let mut consumers: Vec<Vec<usize>> = vec![Vec::new(); nodes.len()];
    for (i, n) in nodes.iter().enumerate() {
        for input in n.inputs.iter().filter(|s| !s.is_empty()) {
            match producer.get(input.as_str()) {
                Some(&p) => {
                    pending[i] += 1;
                    consumers[p].push(i);
                }
                None if available.contains(input) => {}
                None => {
                    return Err((
                        n.name.clone(),
                        format!("reads tensor `{input}`, which no node or initializer provides"),
                    ))
                }
            }
        }
    }
    let mut ready: std::collections::BTreeSet<usize> = (0..nodes.len()).filter(|&i| pending[i] == 0).collect();
    let mut order = Vec::with_capacity(nodes.len());
    while let Some(i) = ready.pop_first() {
        order.push(i);
        for &c in &consumers[i] {
            pending[c] -= 1;
            if pending[c] == 0 {
                ready.insert(c);
            }
        }
    }
    if order.len() != nodes.len() {
        let stuck = (0..nodes.len()).find(|i| pending[*i] > 0).map(|i| nodes[i].name.clone()).unwrap_or_default();
        return Err((stuck, "is part of a cycle".into()));
    }
    let mut slots: Vec<Option<Node>> = nodes.into_iter().map(Some).collect();
    Ok(order.into_iter().filter_map(|i| slots[i].take()).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, inputs: &[&str], outputs: &[&str]) -> Node {
        Node {
            name: name.into(),
            op_type: "Relu".into(),
            op: Op::Activation(super::super::op::Activation::Relu),
            domain: String::new(),
            inputs: inputs.iter().map(|s| s.to_string()).collect(),
            outputs: outputs.iter().map(|s| s.to_string()).collect(),
            attributes: BTreeMap::new(),
        }
    }

    #[test]
    fn orders_producers_first_and_keeps_file_order_otherwise() {
        let nodes = vec![node("c", &["b"], &["y"]), node("a", &["x"], &["a"]), node("b", &["a", "w"], &["b"])];
        let avail: HashSet<String> = ["x".to_string(), "w".to_string()].into();
        let order: Vec<String> = topological_order(nodes, &avail).unwrap().into_iter().map(|n| n.name).collect();
        assert_eq!(order, ["a", "b", "c"]);
    }

    fn op_node(name: &str, op_type: &str, inputs: &[&str], attrs: &[(&str, Attribute)]) -> Node {
        let attributes: BTreeMap<String, Attribute> = attrs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
        let names: Vec<String> = inputs.iter().map(|s| s.to_string()).collect();
        // Integer inputs named `axes…` are constants [0].
        let zero = Weight::I64(ndarray::arr1(&[0i64]).into_dyn());
        Node {
            op: Op::decode(op_type, &attributes, &names, |n| n.starts_with("axes").then_some(&zero)).unwrap(),
            op_type: op_type.into(),
            attributes,
            ..node(name, inputs, &[&format!("{name}_out")])
        }
    }

    #[test]
    fn constants_fold_through_identity_cast_reshape_and_unsqueeze() {
        let mut weights = BTreeMap::new();
        weights.insert("b".to_string(), Weight::F32(ndarray::ArrayD::from_elem(ndarray::IxDyn(&[6]), 0.5)));
        weights.insert("shape".to_string(), Weight::I64(ndarray::arr1(&[2, -1]).into_dyn()));
        weights.insert("axes13".to_string(), Weight::I64(ndarray::arr1(&[0]).into_dyn()));
        let nodes = vec![
            op_node("id", "Identity", &["b"], &[]),
            op_node("cast", "Cast", &["id_out"], &[("to", Attribute::Int(7))]),
            op_node("re", "Reshape", &["id_out", "shape"], &[]),
            op_node("un", "Unsqueeze", &["re_out"], &[("axes", Attribute::Ints(vec![0, -1]))]),
            op_node("sq", "Squeeze", &["un_out"], &[]),
            // Opset 13: the axes as an input.
            op_node("un13", "Unsqueeze", &["re_out", "axes13"], &[]),
            op_node("fl", "Flatten", &["un_out"], &[("axis", Attribute::Int(2))]),
            op_node("relu", "Relu", &["x"], &[]),
            op_node("add", "Add", &["relu_out", "id_out"], &[]),
        ];
        fold_constants(&nodes, &mut weights);
        assert_eq!(weights["id_out"], weights["b"]);
        assert_eq!(weights["cast_out"].as_i64().map(|a| a.shape().to_vec()), Some(vec![6]));
        assert_eq!(weights["re_out"].shape(), [2, 3]);
        assert_eq!(weights["un_out"].shape(), [1, 2, 3, 1]);
        assert_eq!(weights["sq_out"].shape(), [2, 3]);
        assert_eq!(weights["un13_out"].shape(), [1, 2, 3]);
        assert_eq!(weights["fl_out"].shape(), [2, 3]);
        // Anything that reads an activation is no constant.
        assert!(!weights.contains_key("relu_out") && !weights.contains_key("add_out"));
        assert_eq!(reshape_target(&[4, 6], &[0, 2, -1], false), Some(vec![4, 2, 3]));
        assert_eq!(reshape_target(&[4, 6], &[5, -1], false), None);
    }

    #[test]
    fn cycles_and_dangling_inputs_name_the_node() {
        let avail: HashSet<String> = ["x".to_string()].into();
        let cyc = vec![node("p", &["q_out"], &["p_out"]), node("q", &["p_out"], &["q_out"])];
        assert_eq!(topological_order(cyc, &avail).unwrap_err().0, "p");
        let dangling = vec![node("r", &["nope"], &["r_out"])];
        let (n, why) = topological_order(dangling, &avail).unwrap_err();
        assert_eq!(n, "r");
        assert!(why.contains("nope"));
    }
}
