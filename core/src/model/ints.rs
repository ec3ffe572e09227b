//! Integer tensors a graph computes from shapes, evaluated for a given batch size.
//!
//! PyTorch's default exporter writes some views as a `Gather` from the flattened tensor with indices
//! computed from the batch size (`Shape → Squeeze → Range → Mul → Unsqueeze → Add`: its
//! `as_strided`). The engine folds such subgraphs per run; the stages that work on batches of their
//! own (relevance, retraining) evaluate them with a [`Recipe`]: the subgraph copied out of the
//! graph once, run for each batch size.

use std::collections::{BTreeMap, HashMap};

use ndarray::{ArrayD, Axis, IxDyn};

use super::graph::{Graph, Node, Weight};
use super::op::{axis_index, Axes, Op};
use super::select::Selection;
use super::Dim;

/// The integer subgraph that computes one tensor, ready to evaluate for any batch size.
#[derive(Debug, Clone, PartialEq)]
pub struct Recipe {
    /// The tensor computed.
    target: String,
    /// The subgraph's nodes, producers first.
    nodes: Vec<Node>,
    /// Integer constants it reads.
    consts: BTreeMap<String, ArrayD<i64>>,
    /// Shapes of the float tensors whose `Shape` it reads.
    shapes: BTreeMap<String, Vec<Dim>>,
    /// The symbol that stands for the batch in those shapes.
    batch: String,
}

impl Recipe {
    /// The subgraph of `graph` that computes `target`; an error names what it cannot follow.
    pub fn new(graph: &Graph, target: &str) -> Result<Recipe, String> {
        let batch = match graph.inputs.first().and_then(|i| i.shape.first()) {
            Some(Dim::Symbolic(s)) => s.clone(),
            _ => String::new(),
        };
        let mut recipe = Recipe {
            target: target.into(),
            nodes: Vec::new(),
            consts: BTreeMap::new(),
            shapes: BTreeMap::new(),
            batch,
        };
        let mut todo = vec![target.to_string()];
        let mut seen = std::collections::HashSet::new();
        let mut picked = std::collections::HashSet::new();
        while let Some(t) = todo.pop() {
            if t.is_empty() || !seen.insert(t.clone()) {
                continue;
            }
            if let Some(w) = graph.weight(&t) {
                match w {
                    Weight::I64(a) => {
                        recipe.consts.insert(t, a.clone());
                    }
                    _ => return Err(format!("`{t}` is not an integer constant")),
                }
                continue;
            }
            let node = graph.producer_of(&t).ok_or_else(|| {
                format!("`{t}` is not computed from shapes and constants (its values are known only in a run)")
            })?;
            if let Op::Shape { .. } = node.op {
                let of = &node.inputs[0];
                let shape = match graph.inputs.iter().find(|i| &i.name == of) {
                    Some(i) => i.shape.clone(),
                    None => graph
                        .tensors
                        .get(of)
                        .map(|f| f.shape.clone())
                        .ok_or_else(|| format!("no shape known for `{of}`"))?,
                };
                recipe.shapes.insert(of.clone(), shape);
            } else {
                todo.extend(node.inputs.iter().cloned());
            }
            if picked.insert(node.name.clone()) {
                recipe.nodes.push(node.clone());
            }
        }
        // Producers first: the graph's own (topological) order.
        let order: HashMap<&str, usize> = graph.nodes.iter().enumerate().map(|(i, n)| (n.name.as_str(), i)).collect();
        recipe.nodes.sort_by_key(|n| order.get(n.name.as_str()).copied().unwrap_or(usize::MAX));
        Ok(recipe)
    }

    /// The tensor's value for a batch of `batch` images.
    pub fn eval(&self, batch: usize) -> Result<ArrayD<i64>, String> {
        let mut values: HashMap<&str, ArrayD<i64>> = self.consts.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
        for node in &self.nodes {
            let out =
                self.run(node, &values, batch).map_err(|e| format!("node `{}` ({}): {e}", node.name, node.op_type))?;
            values.insert(node.outputs[0].as_str(), out);
        }
        values.remove(self.target.as_str()).ok_or_else(|| format!("`{}` was not computed", self.target))
    }

    fn size(&self, d: &Dim, batch: usize) -> Result<i64, String> {
        match d {
            Dim::Fixed(n) => Ok(*n as i64),
            Dim::Symbolic(s) if *s == self.batch => Ok(batch as i64),
            Dim::Symbolic(s) => Err(format!("the size `{s}` is not the batch")),
        }
    }

    fn run(&self, node: &Node, values: &HashMap<&str, ArrayD<i64>>, batch: usize) -> Result<ArrayD<i64>, String> {
        let arg = |i: usize| -> Result<&ArrayD<i64>, String> {
            let name = node.inputs.get(i).filter(|n| !n.is_empty()).ok_or_else(|| format!("input {i} is missing"))?;
            values.get(name.as_str()).ok_or_else(|| format!("`{name}` is not an integer tensor"))
        };
        let scalar = |i: usize| -> Result<i64, String> {
            arg(i)?.iter().next().copied().ok_or_else(|| format!("input {i} is empty"))
        };
        let binary = |f: fn(i64, i64) -> Result<i64, String>| -> Result<ArrayD<i64>, String> {
            let (a, b) = (arg(0)?, arg(1)?);
            let shape = super::select::broadcast_shape(a.shape(), b.shape())?;
            let (a, b) =
                (a.broadcast(IxDyn(&shape)).expect("broadcast"), b.broadcast(IxDyn(&shape)).expect("broadcast"));
            let v: Vec<i64> = a.iter().zip(b.iter()).map(|(&x, &y)| f(x, y)).collect::<Result<_, _>>()?;
            ArrayD::from_shape_vec(IxDyn(&shape), v).map_err(|e| e.to_string())
        };
        let listed = |axes: &Axes, ix: usize| -> Result<Vec<i64>, String> {
            match axes {
                Axes::Listed(v) => Ok(v.clone()),
                Axes::Default => Ok(arg(ix).map(|a| a.iter().copied().collect()).unwrap_or_default()),
                Axes::Computed(_) => Ok(arg(ix)?.iter().copied().collect()),
            }
        };
        Ok(match &node.op {
            Op::Shape { start, end } => {
                let shape = &self.shapes[&node.inputs[0]];
                let rank = shape.len() as i64;
                let clamp = |v: i64| (if v < 0 { v + rank } else { v }).clamp(0, rank) as usize;
                let (s, e) = (clamp(*start), clamp(end.unwrap_or(rank)));
                let dims: Vec<i64> =
                    shape[s..e.max(s)].iter().map(|d| self.size(d, batch)).collect::<Result<_, _>>()?;
                ArrayD::from_shape_vec(IxDyn(&[dims.len()]), dims).map_err(|e| e.to_string())?
            }
            Op::Range => {
                let (start, limit, delta) = (scalar(0)?, scalar(1)?, scalar(2)?);
                if delta == 0 {
                    return Err("a Range with step 0".into());
                }
                let n = ((limit - start) as f64 / delta as f64).ceil().max(0.0) as usize;
                if n > 1 << 28 {
                    return Err(format!("a Range of {n} values"));
                }
                ArrayD::from_shape_vec(IxDyn(&[n]), (0..n as i64).map(|i| start + i * delta).collect())
                    .map_err(|e| e.to_string())?
            }
            Op::Add => binary(|a, b| a.checked_add(b).ok_or_else(|| "overflow".into()))?,
            Op::Sub => binary(|a, b| a.checked_sub(b).ok_or_else(|| "overflow".into()))?,
            Op::Mul => binary(|a, b| a.checked_mul(b).ok_or_else(|| "overflow".into()))?,
            Op::Div => binary(|a, b| a.checked_div(b).ok_or_else(|| "division by zero".into()))?,
            Op::Identity | Op::Cast { .. } => arg(0)?.clone(),
            // Constant ranges (the TorchScript exporter's `Shape → Slice → Concat` for sizes).
            Op::Slice(Some(attrs)) => {
                let mut y = arg(0)?.clone();
                for axis in attrs.resolve(y.shape())? {
                    y = y.select(ndarray::Axis(axis.axis), &axis.indices());
                }
                y
            }
            Op::ConstantOfShape { value } => {
                let value = value.ok_or("a fill value that is not an integer")?;
                let shape: Vec<usize> = arg(0)?
                    .iter()
                    .map(|&d| usize::try_from(d).map_err(|_| format!("a negative size ({d})")))
                    .collect::<Result<_, _>>()?;
                if shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d)).is_none_or(|n| n > 1 << 28) {
                    return Err(format!("a tensor of shape {shape:?}"));
                }
                ArrayD::from_elem(IxDyn(&shape), value)
            }
            Op::Equal => binary(|a, b| Ok(i64::from(a == b)))?,
            Op::Reshape { allow_zero } => {
                Selection::Reshape { allow_zero: *allow_zero }.apply(arg(0)?.view(), Some(arg(1)?))?
            }
            // Data movements are the same on integers (an index tensor expanded to the batch).
            Op::Select(selection) => {
                let operand = if selection.has_operand() { Some(arg(1)?) } else { None };
                selection.apply(arg(0)?.view(), operand)?
            }
            Op::Where => {
                let (c, a, b) = (arg(0)?, arg(1)?, arg(2)?);
                let shape =
                    super::select::broadcast_shape(c.shape(), &super::select::broadcast_shape(a.shape(), b.shape())?)?;
                let view = |t: &ArrayD<i64>| t.broadcast(IxDyn(&shape)).map(|v| v.to_owned()).ok_or("broadcast");
                let (c, a, b) = (view(c)?, view(a)?, view(b)?);
                ndarray::Zip::from(&c).and(&a).and(&b).map_collect(|&c, &a, &b| if c != 0 { a } else { b })
            }
            Op::Squeeze { axes } => {
                let x = arg(0)?;
                let axes = listed(axes, 1)?;
                let keep: Vec<usize> = x
                    .shape()
                    .iter()
                    .enumerate()
                    .filter(|(a, &d)| {
                        let named = axes.iter().any(|&v| axis_index(v, x.ndim()).ok() == Some(*a));
                        !(d == 1 && (named || axes.is_empty()))
                    })
                    .map(|(_, &d)| d)
                    .collect();
                x.clone().into_shape_with_order(IxDyn(&keep)).map_err(|e| e.to_string())?
            }
            Op::Unsqueeze { axes } => {
                let x = arg(0)?;
                let axes = listed(axes, 1)?;
                let rank = x.ndim() + axes.len();
                let mut at: Vec<usize> = axes.iter().map(|&a| axis_index(a, rank)).collect::<Result<_, _>>()?;
                at.sort_unstable();
                let mut shape = x.shape().to_vec();
                for a in at {
                    shape.insert(a, 1);
                }
                x.clone().into_shape_with_order(IxDyn(&shape)).map_err(|e| e.to_string())?
            }
            Op::Concat { axis } => {
                let parts: Vec<&ArrayD<i64>> = (0..node.inputs.len()).map(&arg).collect::<Result<_, _>>()?;
                let ax = axis_index(*axis, parts.first().map_or(1, |p| p.ndim()))?;
                let views: Vec<_> = parts.iter().map(|p| p.view()).collect();
                ndarray::concatenate(Axis(ax), &views).map_err(|e| e.to_string())?
            }
            Op::Gather { axis } => Selection::Gather { axis: *axis }.apply(arg(0)?.view(), Some(arg(1)?))?,
            other => return Err(format!("{other:?} is not evaluated on integers")),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::graph::Attribute;
    use crate::model::SliceAttrs;

    fn node(name: &str, op: Op, inputs: &[&str]) -> Node {
        Node {
            name: name.into(),
            op_type: format!("{op:?}"),
            op,
            domain: String::new(),
            inputs: inputs.iter().map(|s| s.to_string()).collect(),
            outputs: vec![name.to_string()],
            attributes: BTreeMap::<String, Attribute>::new(),
        }
    }

    #[test]
    fn the_default_exporters_as_strided_indices_follow_the_batch() {
        // indices = Unsqueeze(Range(0, N, 1) · 16, 1) + [0, 1, …, 15]: row n of a flattened N×16.
        let mut graph = Graph {
            inputs: vec![crate::model::TensorInfo {
                name: "image".into(),
                elem_type: crate::model::ElemType::F32,
                shape: vec![Dim::Symbolic("batch".into()), Dim::Fixed(16), Dim::Fixed(1), Dim::Fixed(1)],
            }],
            outputs: vec![],
            nodes: vec![
                node("shape", Op::Shape { start: 0, end: Some(1) }, &["image"]),
                node("n", Op::Squeeze { axes: Axes::Listed(vec![0]) }, &["shape"]),
                node("range", Op::Range, &["zero", "n", "one"]),
                node("rows", Op::Mul, &["range", "sixteen"]),
                node("col", Op::Unsqueeze { axes: Axes::Listed(vec![1]) }, &["rows"]),
                node("indices", Op::Add, &["col", "offsets"]),
            ],
            weights: BTreeMap::new(),
            tensors: BTreeMap::new(),
            opset: 20,
            producer: String::new(),
        };
        let scalar = |v: i64| Weight::I64(ArrayD::from_elem(IxDyn(&[]), v));
        graph.weights.insert("zero".into(), scalar(0));
        graph.weights.insert("one".into(), scalar(1));
        graph.weights.insert("sixteen".into(), scalar(16));
        graph
            .weights
            .insert("offsets".into(), Weight::I64(ArrayD::from_shape_vec(IxDyn(&[16]), (0..16).collect()).unwrap()));
        let recipe = Recipe::new(&graph, "indices").unwrap();
        for batch in [1, 3] {
            let got = recipe.eval(batch).unwrap();
            assert_eq!(got.shape(), &[batch, 16]);
            assert_eq!(got.iter().copied().collect::<Vec<_>>(), (0..16 * batch as i64).collect::<Vec<_>>());
        }
        // The TorchScript exporter's sizes for interpolate(size=(6, 6)): Concat(Shape[0:2], [6, 6]).
        let slice = SliceAttrs { starts: vec![0], ends: vec![2], axes: Some(vec![0]), steps: None };
        graph.nodes.push(node("whole", Op::Shape { start: 0, end: None }, &["image"]));
        graph.nodes.push(node("lead", Op::Slice(Some(slice)), &["whole"]));
        graph.nodes.push(node("sizes", Op::Concat { axis: 0 }, &["lead", "six_six"]));
        graph.weights.insert("six_six".into(), Weight::I64(ArrayD::from_shape_vec(IxDyn(&[2]), vec![6, 6]).unwrap()));
        let recipe = Recipe::new(&graph, "sizes").unwrap();
        assert_eq!(recipe.eval(3).unwrap().iter().copied().collect::<Vec<_>>(), [3, 16, 6, 6]);
        // A subgraph reading a float tensor's values is refused by name.
        graph.nodes.push(node("bad", Op::Add, &["image", "one"]));
        assert!(Recipe::new(&graph, "bad").unwrap_err().contains("known only in a run"));
    }
}
