//! Ops that move data without computing on it: each output element is a copy of one input element
//! (`GatherND`, `GatherElements`, `Expand`, `Tile`, `DepthToSpace`, `SpaceToDepth`).
//!
//! One definition serves every stage: [`Selection::apply`] runs the op on any element type, and
//! [`Selection::sources`] applies it to the input's own flat indices, which gives, per output
//! element, the input element it copies. Relevance returns each output's relevance to that source
//! (summed where one input is copied several times: the ε rule of a selection, conservative), and
//! the retraining translator runs the op as one `index_select` of the flattened input (whose
//! gradient is the same scatter-add).

use std::collections::{HashMap, HashSet};

use ndarray::{ArrayD, ArrayViewD, Dimension, IxDyn};
use serde::Serialize;

use super::graph::{Graph, Node, Weight};
use super::ints::Recipe;
use super::op::Op;

/// A data-movement op, with the attributes it reads (its integer operand, when it has one, is a
/// constant input given to [`Selection::apply`]).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "selection", rename_all = "snake_case")]
pub enum Selection {
    /// `GatherND`: slices picked by index tuples (the second input); `batch_dims` leading axes
    /// shared by data and indices.
    GatherNd {
        /// ONNX `batch_dims` (default 0).
        batch_dims: usize,
    },
    /// `GatherElements`: along `axis`, each output element reads the entry its index names.
    GatherElements {
        /// The axis (negative counts from the end).
        axis: i64,
    },
    /// `Expand`: broadcast to the shape of the second input (NumPy's rule, both ways).
    Expand,
    /// `Tile`: the input repeated along each axis as often as the second input says.
    Tile,
    /// `DepthToSpace`: channel blocks moved into `blocksize × blocksize` spatial cells.
    DepthToSpace {
        /// The block's side.
        blocksize: usize,
        /// `mode = "CRD"` (column-row-depth; PyTorch's `pixel_shuffle`), else `"DCR"`.
        crd: bool,
    },
    /// `SpaceToDepth`: the inverse of `DepthToSpace` in DCR mode.
    SpaceToDepth {
        /// The block's side.
        blocksize: usize,
    },
    /// `Resize` (`Upsample`) in nearest mode: each output cell copies the input cell its
    /// coordinate maps to, axis by axis.
    Resize {
        /// How an output coordinate maps to the input (`coordinate_transformation_mode`).
        coordinate: Coordinate,
        /// How a fractional input coordinate becomes a cell (`nearest_mode`).
        rounding: Rounding,
        /// Per axis: the scale (from the constant `scales` input) …
        scales: Option<Vec<f32>>,
        /// … or the output size (from the constant `sizes` input).
        sizes: Option<Vec<usize>>,
    },
    /// `Transpose` (inside a [`Selection::Chain`] only; on its own it is `Op::Transpose`).
    Transpose {
        /// The permutation (reversed axes when absent).
        perm: Option<Vec<usize>>,
    },
    /// `Reshape` to the operand's shape (inside a [`Selection::Chain`] only).
    Reshape {
        /// A 0 in the shape is a size of 0, not a copy of the input's.
        allow_zero: bool,
    },
    /// `Gather` along `axis` by the operand's indices (inside a [`Selection::Chain`] only).
    Gather {
        /// The axis (negative counts from the end).
        axis: i64,
    },
    /// Data movements one after another, fused by [`fuse_movements`] because the tensors between
    /// them do not hold the batch on their first axis (PyTorch's default exporter writes adaptive
    /// pooling as `Transpose → GatherND → Transpose`).
    Chain {
        /// The movements in order.
        links: Vec<Link>,
    },
}

/// ONNX `Resize`'s `coordinate_transformation_mode` (the modes hudd maps).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Coordinate {
    /// `(o + 0.5) / scale − 0.5` (the default).
    HalfPixel,
    /// As `HalfPixel`, 0 when the output has one cell.
    PytorchHalfPixel,
    /// `o / scale` (PyTorch's `interpolate(mode="nearest")`).
    Asymmetric,
    /// `o · (in − 1) / (out − 1)`.
    AlignCorners,
}

/// ONNX `Resize`'s `nearest_mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Rounding {
    /// Halves down (the default).
    RoundPreferFloor,
    /// Halves up.
    RoundPreferCeil,
    /// Down.
    Floor,
    /// Up.
    Ceil,
}

impl Coordinate {
    /// The input coordinate of output cell `o` (`out` cells from `len`, scale `scale`).
    pub(super) fn map(self, o: usize, len: usize, out: usize, scale: f64) -> f64 {
        let o = o as f64;
        match self {
            Coordinate::HalfPixel => (o + 0.5) / scale - 0.5,
            Coordinate::PytorchHalfPixel if out > 1 => (o + 0.5) / scale - 0.5,
            Coordinate::PytorchHalfPixel => 0.0,
            Coordinate::Asymmetric => o / scale,
            Coordinate::AlignCorners if out > 1 => o * (len as f64 - 1.0) / (out as f64 - 1.0),
            Coordinate::AlignCorners => 0.0,
        }
    }
}

impl Rounding {
    fn cell(self, x: f64, len: usize) -> usize {
        let r = match self {
            Rounding::RoundPreferFloor if x.fract() == 0.5 => x.floor(),
            Rounding::RoundPreferCeil if x.fract() == 0.5 => x.ceil(),
            Rounding::RoundPreferFloor | Rounding::RoundPreferCeil => x.round(),
            Rounding::Floor => x.floor(),
            Rounding::Ceil => x.ceil(),
        };
        r.clamp(0.0, len.saturating_sub(1) as f64) as usize
    }
}

/// `Resize`'s output size along `axis` (of `rank`, `len` long) and the scale its coordinates use:
/// from the sizes when given, else `⌊len · scale⌋`.
pub(super) fn output_size(
    axis: usize,
    len: usize,
    rank: usize,
    scales: Option<&[f32]>,
    sizes: Option<&[usize]>,
) -> Result<(usize, f64), String> {
    let given = scales.map(<[f32]>::len).or(sizes.map(<[usize]>::len)).ok_or("Resize without scales or sizes")?;
    if given != rank {
        return Err(format!("Resize: {given} scales or sizes for {rank} axes"));
    }
    match (sizes, scales) {
        (Some(sz), _) => Ok((sz[axis], sz[axis] as f64 / len.max(1) as f64)),
        (None, Some(sc)) if sc[axis] > 0.0 && sc[axis].is_finite() => {
            Ok(((len as f64 * f64::from(sc[axis])).floor() as usize, f64::from(sc[axis])))
        }
        _ => Err(format!("Resize: scale {:?} on axis {axis}", scales.map(|s| s[axis]))),
    }
}

fn resize<T: Clone>(
    x: ArrayViewD<'_, T>,
    coordinate: Coordinate,
    rounding: Rounding,
    scales: Option<&[f32]>,
    sizes: Option<&[usize]>,
) -> Result<ArrayD<T>, String> {
    let rank = x.ndim();
    let mut y = x.to_owned();
    for axis in 0..rank {
        let len = x.shape()[axis];
        let (out, scale) = output_size(axis, len, rank, scales, sizes)?;
        if out == len && scale == 1.0 {
            continue;
        }
        let picked: Vec<usize> = (0..out).map(|o| rounding.cell(coordinate.map(o, len, out, scale), len)).collect();
        y = y.select(ndarray::Axis(axis), &picked);
    }
    Ok(y)
}

/// One movement of a [`Selection::Chain`], with its operand.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Link {
    /// The movement.
    pub selection: Selection,
    /// Its integer operand (indices, shape, repeats), for those that read one.
    #[serde(skip)]
    pub operand: Operand,
}

/// The integer operand of a data movement.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Operand {
    /// None read.
    #[default]
    None,
    /// A constant.
    Const(ArrayD<i64>),
    /// Computed by the graph from shapes: evaluated for each batch size.
    Computed(Recipe),
}

impl Operand {
    /// The operand's value for a batch of `batch` images.
    pub fn value(&self, batch: usize) -> Result<Option<std::borrow::Cow<'_, ArrayD<i64>>>, String> {
        Ok(match self {
            Operand::None => None,
            Operand::Const(a) => Some(std::borrow::Cow::Borrowed(a)),
            Operand::Computed(r) => Some(std::borrow::Cow::Owned(r.eval(batch)?)),
        })
    }
}

impl Selection {
    /// Whether the op reads a second (integer) input.
    pub fn has_operand(&self) -> bool {
        matches!(
            self,
            Selection::GatherNd { .. } | Selection::GatherElements { .. } | Selection::Expand | Selection::Tile
        )
    }

    /// For an input of `shape`: per output element (in row-major order, output shaped as the
    /// result says), the flat row-major index of the input element it copies.
    pub fn sources(&self, shape: &[usize], operand: Option<&ArrayD<i64>>) -> Result<ArrayD<usize>, String> {
        let n: usize = shape.iter().product();
        let iota = ArrayD::from_shape_vec(IxDyn(shape), (0..n).collect()).map_err(|e| e.to_string())?;
        self.apply(iota.view(), operand)
    }

    /// The op on `x` (`operand`: the second input, for the ops that read one).
    pub fn apply<T: Clone>(&self, x: ArrayViewD<'_, T>, operand: Option<&ArrayD<i64>>) -> Result<ArrayD<T>, String> {
        let operand = || operand.ok_or_else(|| "the second input must be an integer constant".to_string());
        match self {
            Selection::GatherNd { batch_dims } => gather_nd(x, operand()?, *batch_dims),
            Selection::GatherElements { axis } => gather_elements(x, operand()?, *axis),
            Selection::Expand => expand(x, operand()?),
            Selection::Tile => tile(x, operand()?),
            Selection::DepthToSpace { blocksize, crd } => depth_to_space(x, *blocksize, *crd),
            Selection::SpaceToDepth { blocksize } => space_to_depth(x, *blocksize),
            Selection::Resize { coordinate, rounding, scales, sizes } => {
                resize(x, *coordinate, *rounding, scales.as_deref(), sizes.as_deref())
            }
            Selection::Transpose { perm } => {
                let perm: Vec<usize> = perm.clone().unwrap_or_else(|| (0..x.ndim()).rev().collect());
                if perm.len() != x.ndim() {
                    return Err(format!("Transpose: permutation {perm:?} of a rank-{} tensor", x.ndim()));
                }
                Ok(x.permuted_axes(IxDyn(&perm)).as_standard_layout().into_owned())
            }
            Selection::Reshape { allow_zero } => reshape(x, operand()?, *allow_zero),
            Selection::Gather { axis } => {
                let indices = operand()?;
                let ax = super::op::axis_index(*axis, x.ndim())?;
                let picked = super::op::gather_indices(indices.iter().copied(), x.shape()[ax])?;
                let taken = x.select(ndarray::Axis(ax), &picked);
                let mut shape = x.shape()[..ax].to_vec();
                shape.extend(indices.shape());
                shape.extend(&x.shape()[ax + 1..]);
                taken.into_shape_with_order(IxDyn(&shape)).map_err(|e| e.to_string())
            }
            Selection::Chain { links } => {
                // The chain starts from a batch-first tensor: computed operands follow its batch.
                let batch = x.shape().first().copied().unwrap_or(1);
                let mut y = x.to_owned();
                for link in links {
                    let operand = link.operand.value(batch)?;
                    y = link.selection.apply(y.view(), operand.as_deref())?;
                }
                Ok(y)
            }
        }
    }
}

/// `nodes` with each chain of data movements (`Transpose` and the [`Selection`] ops) that leaves
/// the batch-first tensors `data` and comes back to them fused into one node of
/// [`Selection::Chain`] (named as its first node, its op type the chain's joined by `+`), in the
/// place of the chain's last node. Stages that work on batch-first activations (relevance,
/// retraining) read the graph through this; the engine runs the original.
pub fn fuse_movements(graph: &Graph, data: &HashSet<String>) -> Vec<Node> {
    let nodes = &graph.nodes;
    let mut readers: HashMap<&str, Vec<usize>> = HashMap::new();
    for (ix, n) in nodes.iter().enumerate() {
        for i in n.inputs.iter().filter(|i| !i.is_empty()) {
            readers.entry(i.as_str()).or_default().push(ix);
        }
    }
    let outputs: HashSet<&str> = graph.outputs.iter().map(|o| o.name.as_str()).collect();
    let operand = |n: &Node| -> Option<Operand> {
        let name = n.inputs.get(1).filter(|i| !i.is_empty())?;
        Some(match graph.weight(name) {
            Some(Weight::I64(a)) => Operand::Const(a.clone()),
            Some(_) => return None,
            None => Operand::Computed(Recipe::new(graph, name).ok()?),
        })
    };
    let link = |n: &Node| -> Option<Link> {
        let (selection, operand) = match &n.op {
            Op::Transpose { perm } => (Selection::Transpose { perm: perm.clone() }, Operand::None),
            Op::Reshape { allow_zero } => (Selection::Reshape { allow_zero: *allow_zero }, operand(n)?),
            Op::Gather { axis } => (Selection::Gather { axis: *axis }, operand(n)?),
            Op::Select(s) if s.has_operand() => (s.clone(), operand(n)?),
            Op::Select(s) => (s.clone(), Operand::None),
            _ => return None,
        };
        Some(Link { selection, operand })
    };
    // Chains: node indices, first to last.
    let mut chains: Vec<Vec<usize>> = Vec::new();
    for (ix, n) in nodes.iter().enumerate() {
        let starts = link(n).is_some()
            && n.inputs.first().is_some_and(|i| data.contains(i))
            && n.outputs.first().is_some_and(|o| !data.contains(o));
        if !starts {
            continue;
        }
        let mut chain = vec![ix];
        loop {
            let cur = &nodes[*chain.last().expect("non-empty")].outputs[0];
            if data.contains(cur) {
                chains.push(chain);
                break;
            }
            let next = match readers.get(cur.as_str()).map(Vec::as_slice) {
                Some(&[next]) if !outputs.contains(cur.as_str()) => next,
                _ => break,
            };
            let m = &nodes[next];
            if link(m).is_none() || m.inputs.first() != Some(cur) || m.outputs.is_empty() || chain.len() > 64 {
                break;
            }
            chain.push(next);
        }
    }
    if chains.is_empty() {
        return nodes.clone();
    }
    let mut fused: HashMap<usize, Node> = HashMap::new();
    let mut dropped: HashSet<usize> = HashSet::new();
    for chain in chains {
        let (first, last) = (&nodes[chain[0]], &nodes[*chain.last().expect("non-empty")]);
        let links = chain.iter().filter_map(|&i| link(&nodes[i])).collect();
        let op_type = chain.iter().map(|&i| nodes[i].op_type.as_str()).collect::<Vec<_>>().join("+");
        fused.insert(
            *chain.last().expect("non-empty"),
            Node {
                name: first.name.clone(),
                op_type,
                op: Op::Select(Selection::Chain { links }),
                domain: String::new(),
                inputs: vec![first.inputs[0].clone()],
                outputs: vec![last.outputs[0].clone()],
                attributes: Default::default(),
            },
        );
        dropped.extend(chain);
    }
    nodes
        .iter()
        .enumerate()
        .filter_map(|(ix, n)| match fused.remove(&ix) {
            Some(f) => Some(f),
            None if dropped.contains(&ix) => None,
            None => Some(n.clone()),
        })
        .collect()
}

/// An index into an axis of `len`, negative counting from the end.
fn wrap(i: i64, len: usize) -> Result<usize, String> {
    let j = if i < 0 { i + len as i64 } else { i };
    usize::try_from(j).ok().filter(|&j| j < len).ok_or_else(|| format!("index {i} is out of range for {len} entries"))
}

fn gather_nd<T: Clone>(x: ArrayViewD<'_, T>, indices: &ArrayD<i64>, batch_dims: usize) -> Result<ArrayD<T>, String> {
    let (r, q) = (x.ndim(), indices.ndim());
    let k = *indices.shape().last().ok_or("GatherND's indices have no axes")?;
    if q < 1 || batch_dims >= q || batch_dims + k > r || x.shape()[..batch_dims] != indices.shape()[..batch_dims] {
        return Err(format!(
            "indices of shape {:?} (batch_dims {batch_dims}) do not fit data of shape {:?}",
            indices.shape(),
            x.shape()
        ));
    }
    let batch: usize = x.shape()[..batch_dims].iter().product();
    let tuples_per_batch: usize = indices.shape()[batch_dims..q - 1].iter().product();
    let slice_shape = &x.shape()[batch_dims + k..];
    let data = x.as_standard_layout();
    let data = data.as_slice().expect("standard layout");
    let slice_len: usize = slice_shape.iter().product();
    let picked_len: usize = x.shape()[batch_dims..].iter().product();
    let ix = indices.as_standard_layout();
    let ix = ix.as_slice().expect("standard layout");
    let mut out = Vec::with_capacity(batch * tuples_per_batch * slice_len);
    for b in 0..batch {
        for t in 0..tuples_per_batch {
            let tuple = &ix[(b * tuples_per_batch + t) * k..][..k];
            let mut at = 0;
            for (a, &i) in tuple.iter().enumerate() {
                let len = x.shape()[batch_dims + a];
                at = at * len + wrap(i, len)?;
            }
            let start = b * picked_len + at * slice_len;
            out.extend_from_slice(&data[start..start + slice_len]);
        }
    }
    let mut shape = indices.shape()[..q - 1].to_vec();
    shape.extend_from_slice(slice_shape);
    ArrayD::from_shape_vec(IxDyn(&shape), out).map_err(|e| e.to_string())
}

fn gather_elements<T: Clone>(x: ArrayViewD<'_, T>, indices: &ArrayD<i64>, axis: i64) -> Result<ArrayD<T>, String> {
    let ax = super::op::axis_index(axis, x.ndim())?;
    let fits = indices.ndim() == x.ndim()
        && indices.shape().iter().zip(x.shape()).enumerate().all(|(a, (&i, &d))| a == ax || i <= d);
    if !fits {
        return Err(format!("indices of shape {:?} do not fit data of shape {:?}", indices.shape(), x.shape()));
    }
    let len = x.shape()[ax];
    let mut out = Vec::with_capacity(indices.len());
    for (at, &i) in indices.indexed_iter() {
        let mut at = at.slice().to_vec();
        at[ax] = wrap(i, len)?;
        out.push(x[IxDyn(&at)].clone());
    }
    ArrayD::from_shape_vec(IxDyn(indices.shape()), out).map_err(|e| e.to_string())
}

fn expand<T: Clone>(x: ArrayViewD<'_, T>, shape: &ArrayD<i64>) -> Result<ArrayD<T>, String> {
    let want: Vec<usize> = shape
        .iter()
        .map(|&d| usize::try_from(d).map_err(|_| format!("Expand to a negative size ({d})")))
        .collect::<Result<_, _>>()?;
    let out = broadcast_shape(x.shape(), &want).map_err(|e| format!("Expand: {e}"))?;
    let view = x.broadcast(IxDyn(&out)).ok_or_else(|| format!("Expand: {:?} to {out:?}", x.shape()))?;
    Ok(view.to_owned())
}

/// ONNX `Reshape`: 0 copies the input's size (unless `allow_zero`), one −1 takes what is left.
fn reshape<T: Clone>(x: ArrayViewD<'_, T>, shape: &ArrayD<i64>, allow_zero: bool) -> Result<ArrayD<T>, String> {
    let mut dims: Vec<Option<usize>> = Vec::with_capacity(shape.len());
    for (a, &d) in shape.iter().enumerate() {
        dims.push(match d {
            -1 => None,
            0 if !allow_zero => Some(*x.shape().get(a).ok_or_else(|| format!("Reshape: no axis {a} to copy"))?),
            d => Some(usize::try_from(d).map_err(|_| format!("Reshape to a negative size ({d})"))?),
        });
    }
    let known: usize = dims.iter().flatten().product();
    let out: Vec<usize> = match dims.iter().filter(|d| d.is_none()).count() {
        0 => dims.iter().flatten().copied().collect(),
        1 if known > 0 && x.len().is_multiple_of(known) => dims.iter().map(|d| d.unwrap_or(x.len() / known)).collect(),
        _ => return Err(format!("Reshape of {:?} to {:?}", x.shape(), shape.as_slice())),
    };
    x.as_standard_layout().into_owned().into_shape_with_order(IxDyn(&out)).map_err(|e| e.to_string())
}

/// NumPy's broadcast of two shapes (aligned at the end; a size of 1 stretches).
pub fn broadcast_shape(a: &[usize], b: &[usize]) -> Result<Vec<usize>, String> {
    let rank = a.len().max(b.len());
    let dim = |s: &[usize], ax: usize| if ax + s.len() >= rank { s[ax + s.len() - rank] } else { 1 };
    (0..rank)
        .map(|ax| match (dim(a, ax), dim(b, ax)) {
            (p, q) if p == q || q == 1 => Ok(p),
            (1, q) => Ok(q),
            (p, q) => Err(format!("shapes {a:?} and {b:?} do not broadcast (axis {ax}: {p} vs {q})")),
        })
        .collect()
}

fn tile<T: Clone>(x: ArrayViewD<'_, T>, repeats: &ArrayD<i64>) -> Result<ArrayD<T>, String> {
    if repeats.len() != x.ndim() {
        return Err(format!("Tile: {} repeats for {} axes", repeats.len(), x.ndim()));
    }
    let reps: Vec<usize> = repeats
        .iter()
        .map(|&r| usize::try_from(r).map_err(|_| format!("Tile: a negative repeat ({r})")))
        .collect::<Result<_, _>>()?;
    let shape: Vec<usize> = x.shape().iter().zip(&reps).map(|(d, r)| d * r).collect();
    Ok(ArrayD::from_shape_fn(IxDyn(&shape), |at| {
        let src: Vec<usize> = at.slice().iter().zip(x.shape()).map(|(&i, &d)| i % d).collect();
        x[IxDyn(&src)].clone()
    }))
}

/// `x` (rank 4) reshaped to `split`, its axes permuted by `perm`, reshaped to `out`.
fn shuffle<T: Clone>(
    x: ArrayViewD<'_, T>,
    split: &[usize],
    perm: &[usize],
    out: &[usize],
) -> Result<ArrayD<T>, String> {
    let std = x.as_standard_layout().into_owned();
    let six = std.into_shape_with_order(IxDyn(split)).map_err(|e| e.to_string())?;
    let moved = six.permuted_axes(IxDyn(perm));
    let owned = moved.as_standard_layout().into_owned();
    owned.into_shape_with_order(IxDyn(out)).map_err(|e| e.to_string())
}

fn nchw(x: &ArrayViewD<'_, impl Clone>, op: &str) -> Result<[usize; 4], String> {
    match x.shape() {
        &[n, c, h, w] => Ok([n, c, h, w]),
        s => Err(format!("{op} needs an N×C×H×W input, not {s:?}")),
    }
}

fn depth_to_space<T: Clone>(x: ArrayViewD<'_, T>, b: usize, crd: bool) -> Result<ArrayD<T>, String> {
    let [n, c, h, w] = nchw(&x, "DepthToSpace")?;
    if b == 0 || c % (b * b) != 0 {
        return Err(format!("DepthToSpace: {c} channels are not a multiple of blocksize² ({b}²)"));
    }
    let d = c / (b * b);
    let out = [n, d, h * b, w * b];
    if crd {
        shuffle(x, &[n, d, b, b, h, w], &[0, 1, 4, 2, 5, 3], &out)
    } else {
        shuffle(x, &[n, b, b, d, h, w], &[0, 3, 4, 1, 5, 2], &out)
    }
}

fn space_to_depth<T: Clone>(x: ArrayViewD<'_, T>, b: usize) -> Result<ArrayD<T>, String> {
    let [n, c, h, w] = nchw(&x, "SpaceToDepth")?;
    if b == 0 || h % b != 0 || w % b != 0 {
        return Err(format!("SpaceToDepth: {h}×{w} is not a multiple of blocksize {b}"));
    }
    shuffle(x, &[n, c, h / b, b, w / b, b], &[0, 3, 5, 1, 2, 4], &[n, c * b * b, h / b, w / b])
}

/// Relevance (or a gradient) of a selection's output returned to its input of `shape`: each output
/// element's value added at its source.
pub fn scatter_sources(r: &ArrayD<f32>, sources: &ArrayD<usize>, shape: &[usize]) -> Result<ArrayD<f32>, String> {
    if r.shape() != sources.shape() {
        return Err(format!("relevance of shape {:?} for an output of shape {:?}", r.shape(), sources.shape()));
    }
    let mut back = ArrayD::<f32>::zeros(IxDyn(shape));
    let flat = back.as_slice_mut().expect("fresh array");
    for (&v, &s) in r.iter().zip(sources.iter()) {
        flat[s] += v;
    }
    Ok(back)
}

/// Where `Where` takes its second input (`cond` nonzero), broadcast to the output's `shape`.
pub fn where_mask(cond: &ArrayD<i64>, shape: &[usize]) -> Result<ArrayD<bool>, String> {
    let view = cond.broadcast(IxDyn(shape)).ok_or_else(|| {
        format!("Where's condition of shape {:?} does not broadcast to the output's {shape:?}", cond.shape())
    })?;
    Ok(view.mapv(|c| c != 0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    fn i64s(shape: &[usize], v: &[i64]) -> ArrayD<i64> {
        ArrayD::from_shape_vec(IxDyn(shape), v.to_vec()).unwrap()
    }

    fn f32s(shape: &[usize], v: &[f32]) -> ArrayD<f32> {
        ArrayD::from_shape_vec(IxDyn(shape), v.to_vec()).unwrap()
    }

    // The examples of the ONNX operator specification (onnx/docs/Operators.md) are the oracle.
    #[test]
    fn gather_nd_follows_the_onnx_examples() {
        let data = f32s(&[2, 2], &[0., 1., 2., 3.]);
        let op = Selection::GatherNd { batch_dims: 0 };
        assert_eq!(op.apply(data.view(), Some(&i64s(&[2, 2], &[0, 0, 1, 1]))).unwrap(), f32s(&[2], &[0., 3.]));
        assert_eq!(op.apply(data.view(), Some(&i64s(&[2, 1], &[1, 0]))).unwrap(), f32s(&[2, 2], &[2., 3., 0., 1.]));
        let data = f32s(&[2, 2, 2], &[0., 1., 2., 3., 4., 5., 6., 7.]);
        let got = op.apply(data.view(), Some(&i64s(&[2, 2], &[0, 1, 1, 0]))).unwrap();
        assert_eq!(got, f32s(&[2, 2], &[2., 3., 4., 5.]));
        let got = op.apply(data.view(), Some(&i64s(&[2, 1, 2], &[0, 1, 1, 0]))).unwrap();
        assert_eq!(got, f32s(&[2, 1, 2], &[2., 3., 4., 5.]));
        // batch_dims = 1.
        let op = Selection::GatherNd { batch_dims: 1 };
        assert_eq!(op.apply(data.view(), Some(&i64s(&[2, 1], &[1, 0]))).unwrap(), f32s(&[2, 2], &[2., 3., 4., 5.]));
        // Negative indices count from the end; out of range is an error.
        let op = Selection::GatherNd { batch_dims: 0 };
        assert_eq!(op.apply(data.view(), Some(&i64s(&[1, 2], &[-1, -1]))).unwrap(), f32s(&[1, 2], &[6., 7.]));
        assert!(op.apply(data.view(), Some(&i64s(&[1, 1], &[2]))).unwrap_err().contains("out of range"));
    }

    #[test]
    fn gather_elements_follows_the_onnx_examples() {
        let data = f32s(&[2, 2], &[1., 2., 3., 4.]);
        let op = Selection::GatherElements { axis: 1 };
        assert_eq!(
            op.apply(data.view(), Some(&i64s(&[2, 2], &[0, 0, 1, 0]))).unwrap(),
            f32s(&[2, 2], &[1., 1., 4., 3.])
        );
        let data = f32s(&[3, 3], &[1., 2., 3., 4., 5., 6., 7., 8., 9.]);
        let op = Selection::GatherElements { axis: 0 };
        let got = op.apply(data.view(), Some(&i64s(&[2, 3], &[1, 2, 0, 2, 0, 0]))).unwrap();
        assert_eq!(got, f32s(&[2, 3], &[4., 8., 3., 7., 2., 3.]));
        let op = Selection::GatherElements { axis: 0 };
        let got = op.apply(data.view(), Some(&i64s(&[2, 3], &[-1, -2, 0, -2, 0, 0]))).unwrap();
        assert_eq!(got, f32s(&[2, 3], &[7., 5., 3., 4., 2., 3.]));
    }

    #[test]
    fn expand_and_tile_follow_the_onnx_examples() {
        let data = f32s(&[3, 1], &[1., 2., 3.]);
        let got = Selection::Expand.apply(data.view(), Some(&i64s(&[3], &[2, 1, 6]))).unwrap();
        assert_eq!(got.shape(), &[2, 3, 6]);
        assert_eq!(got[[1, 2, 5]], 3.0);
        let got = Selection::Expand.apply(data.view(), Some(&i64s(&[2], &[3, 4]))).unwrap();
        assert_eq!(got.index_axis(ndarray::Axis(0), 1).iter().copied().collect::<Vec<f32>>(), vec![2.; 4]);
        assert!(Selection::Expand.apply(data.view(), Some(&i64s(&[2], &[2, 1]))).is_err());
        let data = f32s(&[2, 2], &[0., 1., 2., 3.]);
        let got = Selection::Tile.apply(data.view(), Some(&i64s(&[2], &[2, 2]))).unwrap();
        let want = array![[0., 1., 0., 1.], [2., 3., 2., 3.], [0., 1., 0., 1.], [2., 3., 2., 3.]].into_dyn();
        assert_eq!(got, want);
    }

    #[test]
    fn depth_to_space_follows_the_onnx_examples_and_space_to_depth_inverts_dcr() {
        let x = ArrayD::from_shape_vec(IxDyn(&[1, 8, 2, 3]), (0..48).map(|v| v as f32).collect()).unwrap();
        let dcr = Selection::DepthToSpace { blocksize: 2, crd: false }.apply(x.view(), None).unwrap();
        assert_eq!(dcr.shape(), &[1, 2, 4, 6]);
        let row0: Vec<f32> = dcr.slice(ndarray::s![0, 0, 0, ..]).to_vec();
        assert_eq!(row0, vec![0., 12., 1., 13., 2., 14.]);
        let row1: Vec<f32> = dcr.slice(ndarray::s![0, 0, 1, ..]).to_vec();
        assert_eq!(row1, vec![24., 36., 25., 37., 26., 38.]);
        let crd = Selection::DepthToSpace { blocksize: 2, crd: true }.apply(x.view(), None).unwrap();
        let row0: Vec<f32> = crd.slice(ndarray::s![0, 0, 0, ..]).to_vec();
        assert_eq!(row0, vec![0., 6., 1., 7., 2., 8.]);
        let row1: Vec<f32> = crd.slice(ndarray::s![0, 0, 1, ..]).to_vec();
        assert_eq!(row1, vec![12., 18., 13., 19., 14., 20.]);
        let back = Selection::SpaceToDepth { blocksize: 2 }.apply(dcr.view(), None).unwrap();
        assert_eq!(back, x);
        assert!(Selection::DepthToSpace { blocksize: 3, crd: false }.apply(x.view(), None).is_err());
    }

    #[test]
    fn nearest_resize_follows_the_onnx_examples() {
        let up = Selection::Resize {
            coordinate: Coordinate::HalfPixel,
            rounding: Rounding::RoundPreferFloor,
            scales: Some(vec![1.0, 1.0, 2.0, 3.0]),
            sizes: None,
        };
        let data = f32s(&[1, 1, 2, 2], &[1., 2., 3., 4.]);
        let want = [1., 1., 1., 2., 2., 2., 1., 1., 1., 2., 2., 2., 3., 3., 3., 4., 4., 4., 3., 3., 3., 4., 4., 4.];
        assert_eq!(up.apply(data.view(), None).unwrap(), f32s(&[1, 1, 4, 6], &want));
        let down = Selection::Resize {
            coordinate: Coordinate::HalfPixel,
            rounding: Rounding::RoundPreferFloor,
            scales: Some(vec![1.0, 1.0, 0.6, 0.6]),
            sizes: None,
        };
        let data = f32s(&[1, 1, 2, 4], &[1., 2., 3., 4., 5., 6., 7., 8.]);
        assert_eq!(down.apply(data.view(), None).unwrap(), f32s(&[1, 1, 1, 2], &[1., 3.]));
        // PyTorch's interpolate(scale_factor=2, mode="nearest"): asymmetric, floor.
        let torch = Selection::Resize {
            coordinate: Coordinate::Asymmetric,
            rounding: Rounding::Floor,
            scales: None,
            sizes: Some(vec![1, 1, 2, 4]),
        };
        let data = f32s(&[1, 1, 1, 2], &[5., 7.]);
        assert_eq!(torch.apply(data.view(), None).unwrap(), f32s(&[1, 1, 2, 4], &[5., 5., 7., 7., 5., 5., 7., 7.]));
    }

    #[test]
    fn sources_scatter_back_conservatively() {
        let op = Selection::Tile;
        let reps = i64s(&[2], &[1, 3]);
        let src = op.sources(&[2, 2], Some(&reps)).unwrap();
        assert_eq!(src.shape(), &[2, 6]);
        let r = ArrayD::from_elem(IxDyn(&[2, 6]), 0.5f32);
        let back = scatter_sources(&r, &src, &[2, 2]).unwrap();
        assert_eq!(back, ArrayD::from_elem(IxDyn(&[2, 2]), 1.5));
        assert!((back.sum() - r.sum()).abs() < 1e-6);
    }
}
