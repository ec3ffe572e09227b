//! The model graph as plain data: nodes in topological order, attributes, and weights as ndarray.
//!
//! Later stages (relevance propagation, retraining) read the network's structure from here and never
//! from the inference engine. Weights are the graph's initializers plus the values of `Constant` nodes,
//! keyed by tensor name.

use std::collections::{BTreeMap, HashMap, HashSet};

use ndarray::ArrayD;
use serde::Serialize;

use super::{ElemType, TensorInfo};

/// One ONNX node.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Node {
    /// The node's name; its first output's name when the file left it empty.
    pub name: String,
    /// The ONNX op type (`Conv`, `Gemm`, …).
    pub op_type: String,
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

/// The whole graph.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Graph {
    /// Graph inputs that are not initializers (the images).
    pub inputs: Vec<TensorInfo>,
    /// Graph outputs.
    pub outputs: Vec<TensorInfo>,
    /// Nodes in topological order (producers before consumers; ties keep file order).
    pub nodes: Vec<Node>,
    /// Initializers and `Constant` node values by tensor name.
    #[serde(skip)]
    pub weights: BTreeMap<String, Weight>,
    /// The default-domain opset the model was exported for.
    pub opset: i64,
    /// `producer_name producer_version` of the exporter.
    pub producer: String,
}

impl Graph {
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

    /// Number of nodes per op type, sorted by op type.
    pub fn op_counts(&self) -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        for n in &self.nodes {
            *counts.entry(n.op_type.clone()).or_insert(0) += 1;
        }
        counts
    }
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
