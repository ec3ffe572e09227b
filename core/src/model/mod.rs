//! The model adapter: loads an exported ONNX model and runs it. The only module that uses tract.
//!
//! [`Model::load`] reads the file, checks every node's op against the engine before anything runs,
//! and exposes
//! - [`Model::info`]: inputs and outputs (names, shapes with symbolic dimensions, element types);
//! - [`Model::graph`]: the graph as plain data ([`Graph`]) for the stages that follow;
//! - [`Model::run`]: the model outputs for a batch;
//! - [`Model::run_with_activations`]: in the same forward run, every intermediate float tensor by its
//!   ONNX tensor name — the activations that relevance propagation walks back through.
//!
//! Any batch size is accepted, and the results never depend on it: the engine always runs the same
//! shape, one image at a time when the batch axis is dynamic ([`BatchPolicy::engine_batch`]), so an
//! image's outputs are the same bits whichever batch it arrives in (the engine's kernels are chosen
//! by shape, and a batch of 7 summed in another order than a batch of 1). A dense head after the
//! convolutions (`Flatten` → `Gemm` → … → logits) runs 16 images at a time instead, the last run
//! padded, so that its weights are read once per 16 images. A model whose batch axis is fixed
//! (often `1`) runs in chunks of that size, the last one padded. Plans are compiled once per input
//! shape and shared between threads, so callers parallelise over batches.

mod graph;
mod interpolate;
mod ints;
mod op;
mod select;
mod write;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use ndarray::{ArrayD, ArrayViewD, Axis, IxDyn};
use prost::Message;
use serde::Serialize;
use tract_onnx::pb;
use tract_onnx::prelude::*;

pub use graph::{Attribute, Graph, Node, TensorFact, Weight};
pub use interpolate::{Interpolation, Matrices};
pub use ints::Recipe;
pub use op::{
    axis_index, gather_indices, split_sizes, Activation, AutoPad, Axes, Bound, ConvAttrs, Op, PadMode, PoolAttrs,
    Reduction, SliceAttrs, SliceAxis,
};
pub use select::{
    broadcast_shape, fuse_movements, scatter_sources, where_mask, Coordinate, Link, Operand, Rounding, Selection,
};
pub use write::{Layout, ModelFiles, Weights};

use crate::error::{Error, Result};

/// One dimension of a declared tensor shape.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(untagged)]
pub enum Dim {
    /// A fixed size.
    Fixed(usize),
    /// A named dynamic size (`batch`, `N`, `unk__6`), or `?` when unnamed.
    Symbolic(String),
}

impl Dim {
    /// The size, if fixed.
    pub fn fixed(&self) -> Option<usize> {
        match self {
            Dim::Fixed(n) => Some(*n),
            Dim::Symbolic(_) => None,
        }
    }

    /// `[batch, 1, 28, 28]`.
    pub fn display(shape: &[Dim]) -> String {
        let parts: Vec<String> = shape
            .iter()
            .map(|d| match d {
                Dim::Fixed(n) => n.to_string(),
                Dim::Symbolic(s) => s.clone(),
            })
            .collect();
        format!("[{}]", parts.join(", "))
    }
}

/// ONNX element type of a tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ElemType {
    /// 32-bit float.
    F32,
    /// 16-bit float.
    F16,
    /// 64-bit float.
    F64,
    /// Unsigned byte.
    U8,
    /// Signed byte.
    I8,
    /// 32-bit integer.
    I32,
    /// 64-bit integer.
    I64,
    /// Boolean.
    Bool,
    /// String.
    String,
    /// Another ONNX type (its `TensorProto.DataType` code).
    Other(i32),
}

impl ElemType {
    fn from_onnx(code: i32) -> ElemType {
        match code {
            1 => ElemType::F32,
            2 => ElemType::U8,
            3 => ElemType::I8,
            6 => ElemType::I32,
            7 => ElemType::I64,
            8 => ElemType::String,
            9 => ElemType::Bool,
            10 => ElemType::F16,
            11 => ElemType::F64,
            c => ElemType::Other(c),
        }
    }
}

/// Name, declared shape and element type of a model input or output.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TensorInfo {
    /// ONNX tensor name.
    pub name: String,
    /// Declared shape; empty when the file declares none.
    pub shape: Vec<Dim>,
    /// Element type.
    pub elem_type: ElemType,
}

/// The model's interface.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelInfo {
    /// Graph inputs (initializers excluded).
    pub inputs: Vec<TensorInfo>,
    /// Graph outputs.
    pub outputs: Vec<TensorInfo>,
}

/// How batches are fed to the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum BatchPolicy {
    /// The batch axis is dynamic: any batch runs at once.
    Dynamic,
    /// The batch axis is fixed to this size: larger batches are split and the last chunk padded.
    Fixed(usize),
}

impl BatchPolicy {
    /// The number of images in every engine run, whatever the caller's batch size: 1 for a dynamic
    /// batch axis (measured faster than whole batches on the shipped models, BENCHMARKS.md), the
    /// fixed size otherwise.
    pub fn engine_batch(self) -> usize {
        match self {
            BatchPolicy::Dynamic => 1,
            BatchPolicy::Fixed(b) => b.max(1),
        }
    }
}

/// Every float tensor of one forward run, by ONNX tensor name (graph input and outputs included),
/// each with the batch as its first axis.
#[derive(Debug, Clone, Default)]
pub struct Activations {
    /// Float tensors by ONNX name, batch first.
    pub tensors: BTreeMap<String, ArrayD<f32>>,
    /// Integer tensors (shape computations such as computed pads), not batched.
    pub integers: BTreeMap<String, ArrayD<i64>>,
}

/// What one plan run returns.
#[derive(Default)]
struct RunOut {
    floats: BTreeMap<String, ArrayD<f32>>,
    ints: BTreeMap<String, ArrayD<i64>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Want {
    Outputs,
    Everything,
    /// These tensors and the graph outputs.
    Named(Vec<String>),
}

impl Want {
    /// Whether node output `name` is asked for (the graph outputs always are, besides).
    fn asks_for(&self, name: &str) -> bool {
        match self {
            Want::Outputs => false,
            Want::Everything => true,
            Want::Named(named) => named.binary_search_by(|n| n.as_str().cmp(name)).is_ok(),
        }
    }
}

/// Which part of the graph a plan runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Part {
    /// The whole graph.
    Whole,
    /// Everything before the dense head, ending at its input ([`Head::cut`]).
    Body,
    /// The dense head, from its input on.
    Head,
}

/// Images per run of a model's dense head.
const HEAD_BATCH: usize = 16;

/// The dense head of a model whose batch axis is dynamic: the nodes after a `Gemm`'s input (the
/// cut) that read nothing else of the graph than the cut, weights and each other, and work on each
/// image's row alone (matrix products, element-wise ops, softmax over features), the graph outputs
/// among them.
///
/// The body runs one image at a time, as every model does (its convolutions are fastest so), and
/// the head [`HEAD_BATCH`] images at a time: its weights, often most of the model's bytes, are then
/// read once per 16 images instead of once per image. Every head run has the same shape (the last
/// one padded with zero rows), so an image's values stay the same bits whichever batch it arrives
/// in.
#[derive(Debug, Clone, PartialEq)]
struct Head {
    /// The head's input, `[N, features]`: the first output of a body node.
    cut: String,
    /// The tensors the head's nodes make.
    tensors: HashSet<String>,
}

impl Head {
    /// Ops that work on each row of a `[N, F]` tensor alone (softmax only over features, see
    /// [`Head::find`]).
    const ROW_OPS: [&str; 16] = [
        "Gemm",
        "MatMul",
        "Relu",
        "LeakyRelu",
        "Elu",
        "Sigmoid",
        "Tanh",
        "Clip",
        "Softmax",
        "LogSoftmax",
        "Dropout",
        "Identity",
        "Add",
        "Sub",
        "Mul",
        "Div",
    ];

    /// The largest dense head of `graph`, if it has one: the first `Gemm` (in graph order) whose
    /// activation input splits the graph so.
    fn find(graph: &Graph) -> Option<Head> {
        graph.nodes.iter().filter(|n| n.op_type == "Gemm").find_map(|gemm| {
            let cut = gemm.inputs.first()?;
            Self::at(graph, cut)
        })
    }

    /// The head after tensor `cut`, if the graph splits there.
    fn at(graph: &Graph, cut: &str) -> Option<Head> {
        let producer = graph.producer_of(cut)?;
        if producer.outputs.first().map(String::as_str) != Some(cut) || graph.weight(cut).is_some() {
            return None;
        }
        // Every node downstream of the cut, in graph order (nodes are topologically sorted).
        let mut tensors: HashSet<String> = HashSet::new();
        let mut reached: HashSet<&str> = HashSet::from([cut]);
        for node in &graph.nodes {
            if !node.inputs.iter().any(|i| reached.contains(i.as_str())) {
                continue;
            }
            let row_wise = Self::ROW_OPS.contains(&node.op_type.as_str())
                && match node.op_type.as_str() {
                    // The image's row is the left operand, never transposed.
                    "Gemm" => {
                        reached.contains(node.inputs[0].as_str())
                            && !matches!(node.attributes.get("transA"), Some(Attribute::Int(t)) if *t != 0)
                    }
                    "MatMul" => reached.contains(node.inputs[0].as_str()),
                    "Softmax" | "LogSoftmax" => !matches!(node.attributes.get("axis"), Some(Attribute::Int(0))),
                    _ => true,
                };
            let reads_only_head =
                node.inputs.iter().all(|i| i.is_empty() || reached.contains(i.as_str()) || graph.weight(i).is_some());
            if !row_wise || !reads_only_head {
                return None;
            }
            for o in node.outputs.iter().filter(|o| !o.is_empty()) {
                reached.insert(o);
                tensors.insert(o.clone());
            }
        }
        graph.outputs.iter().all(|o| tensors.contains(&o.name)).then(|| Head { cut: cut.to_string(), tensors })
    }
}

/// What a compiled plan is for: its input shape, the tensors it returns, the part of the graph.
type PlanKey = (Vec<usize>, Want, Part);

/// A compiled plan and the ONNX names of its outputs, in order.
#[derive(Clone)]
struct Compiled {
    plan: Arc<TypedRunnableModel>,
    names: Arc<Vec<String>>,
}

/// One file of a model's external weights, as it was when the model loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelFile {
    /// Its name beside the ONNX file.
    pub name: String,
    /// Size in bytes.
    pub bytes: u64,
    /// Hex SHA-256.
    pub sha256: String,
}

/// A model's identity: the ONNX file's hex SHA-256 when there are no external weights; otherwise
/// the SHA-256 of a text listing the ONNX file's size and SHA-256 and each weights file's name,
/// size and SHA-256.
fn identity(onnx_sha256: &str, onnx_bytes: u64, weights: &[ModelFile]) -> String {
    if weights.is_empty() {
        return onnx_sha256.to_string();
    }
    let mut text = format!("hudd-model-files 1\nonnx {onnx_bytes} {onnx_sha256}\n");
    for w in weights {
        text.push_str(&format!("data {} {} {}\n", w.bytes, w.sha256, w.name));
    }
    crate::fsio::sha256_hex(text.as_bytes())
}

/// A loaded ONNX model, ready to run on batches from many threads.
pub struct Model {
    path: PathBuf,
    info: ModelInfo,
    graph: Graph,
    batch_policy: BatchPolicy,
    parsed: InferenceModel,
    /// The dense head, run [`HEAD_BATCH`] images at a time (dynamic batch axis only).
    head: Option<Head>,
    /// ONNX names of every node output, in graph order (requested for `Want::Everything`).
    node_outputs: Vec<String>,
    parallel_engine: bool,
    plans: Mutex<HashMap<PlanKey, Compiled>>,
    /// What [`Model::sha256`] returns: the ONNX file's hex SHA-256, or for a model with external
    /// weights the digest of all its files (see [`identity`]).
    identity: String,
    /// Hex SHA-256 and size of the ONNX file's bytes.
    digest: (String, u64),
    /// The external weights files' names, sizes and hex SHA-256s, in the order first named.
    weights: Vec<ModelFile>,
    /// The ONNX file's bytes (what [`Model::with_weights`] rewrites).
    bytes: Vec<u8>,
    /// The files holding its external weights (`NAME.onnx.data`), resolved beside it.
    external: Vec<PathBuf>,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model").field("path", &self.path).field("info", &self.info).finish_non_exhaustive()
    }
}

/// The inference engine, with the ops hudd adds to it: opset 9's `Upsample`, which tract lacks, as
/// the opset-10 `Resize` it became (the same inputs: the data and the scales).
fn engine() -> tract_onnx::Onnx {
    let mut onnx = tract_onnx::onnx();
    onnx.op_register.insert("Upsample", upsample_as_resize);
    onnx
}

/// `Upsample` (opset 7 to 9) built by the engine's own `Resize` as at opset 10: asymmetric
/// coordinates and, in nearest mode, rounding down (`Upsample`'s definition: `floor(o / scale)`).
/// Opset 7 and 8 give the scales as an attribute instead of an input: refused.
fn upsample_as_resize(
    ctx: &tract_onnx::model::ParsingContext,
    node: &pb::NodeProto,
) -> TractResult<(Box<dyn tract_onnx::tract_hir::infer::InferenceOp>, Vec<String>)> {
    if node.input.len() < 2 {
        return Err(TractError::msg(
            "`Upsample` with its scales as an attribute (opset 7 or 8): re-export at opset 9 or later",
        ));
    }
    let Some(resize) = ctx.framework.op_register.0.get("Resize") else {
        return Err(TractError::msg("the engine has no `Resize`"));
    };
    let mut node = node.clone();
    node.op_type = "Resize".into();
    node.attribute.retain(|a| a.name == "mode");
    node.attribute.push(pb::AttributeProto {
        name: "nearest_mode".into(),
        r#type: pb::attribute_proto::AttributeType::String as i32,
        s: b"floor".to_vec(),
        ..Default::default()
    });
    let mut at_10 = ctx.clone();
    at_10.onnx_operator_set_version = 10;
    resize(&at_10, &node)
}

/// The ONNX op types the inference engine can run, sorted.
pub fn supported_ops() -> Vec<String> {
    let mut ops: Vec<String> = engine().op_register.0.keys().cloned().collect();
    ops.sort();
    ops
}

impl Model {
    /// Loads and checks an ONNX file.
    ///
    /// Errors: unreadable file ([`Error::Io`]), not an ONNX model ([`Error::MalformedModel`]), a node
    /// with an op the engine lacks ([`Error::UnsupportedOp`], naming node and op), or an engine
    /// failure while reading the graph ([`Error::ModelPreparation`]).
    pub fn load(path: impl AsRef<Path>) -> Result<Model> {
        let path = path.as_ref().to_path_buf();
        let bytes =
            crate::fsio::read(&path, crate::fsio::MODEL_LIMIT).map_err(|e| Error::io("cannot read model", &path, e))?;
        Self::from_bytes(&bytes, path)
    }

    /// Loads a model from bytes; `path` is used in messages (and to resolve external weight files).
    /// A file the engine chokes on (it panics on some corrupt graphs) is an error, not a crash.
    pub fn from_bytes(bytes: &[u8], path: PathBuf) -> Result<Model> {
        let shown = path.clone();
        guarded(
            || Self::from_bytes_unguarded(bytes, path),
            |why| Error::MalformedModel { path: shown, reason: format!("the inference engine failed on it: {why}") },
        )
    }

    fn from_bytes_unguarded(bytes: &[u8], path: PathBuf) -> Result<Model> {
        let malformed = |reason: String| Error::MalformedModel { path: path.clone(), reason };
        let proto = pb::ModelProto::decode(bytes).map_err(|e| malformed(format!("protobuf decoding failed: {e}")))?;
        let pgraph = proto.graph.as_ref().ok_or_else(|| malformed("the file holds no graph".into()))?;
        if pgraph.node.is_empty() {
            return Err(malformed("the graph has no nodes".into()));
        }
        let external = write::external_locations(pgraph, &path).map_err(malformed)?;
        let weights = external
            .iter()
            .map(|file| {
                let name = file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                let bytes = crate::fsio::check_regular(file, crate::fsio::FILE_LIMIT)
                    .map_err(|e| malformed(format!("its external weights file {}: {e}", file.display())))?;
                let sha256 =
                    crate::fsio::sha256_file(file).map_err(|e| malformed(format!("its external weights file: {e}")))?;
                Ok(ModelFile { name, bytes, sha256 })
            })
            .collect::<Result<Vec<_>>>()?;
        let defined: HashSet<&str> = pgraph
            .node
            .iter()
            .flat_map(|n| n.output.iter())
            .chain(pgraph.input.iter().map(|i| &i.name))
            .chain(pgraph.initializer.iter().map(|i| &i.name))
            .map(String::as_str)
            .collect();
        if let Some(o) = pgraph.output.iter().find(|o| !defined.contains(o.name.as_str())) {
            return Err(malformed(format!("graph output `{}` is produced by no node", o.name)));
        }
        // Declared intermediate and output shapes name the batch symbolically (`batch`); hudd fixes
        // the batch per run, so let the engine infer every shape from the input instead.
        let onnx = engine().with_ignore_value_info(true).with_ignore_output_shapes(true);
        for node in &pgraph.node {
            if !onnx.op_register.0.contains_key(&node.op_type) {
                return Err(Error::UnsupportedOp { path, node: node_name(node), op: node.op_type.clone() });
            }
        }
        let model_dir = path.parent().and_then(|p| p.to_str()).map(str::to_owned);
        let mut graph = build_graph(&proto, &onnx, model_dir.as_deref(), &path)?;
        if graph.inputs.is_empty() {
            return Err(malformed("the graph has no input that is not an initializer".into()));
        }
        refuse_huge_constants(&graph).map_err(malformed)?;
        let info = ModelInfo { inputs: graph.inputs.clone(), outputs: graph.outputs.clone() };
        let parsed = onnx.parse(&proto, model_dir.as_deref()).map_err(|e| prep_error(&path, &graph, &e))?;
        if !parsed.unresolved_inputs.is_empty() {
            return Err(malformed(format!("tensors read but never defined: {}", parsed.unresolved_inputs.join(", "))));
        }
        let batch_policy = match graph.inputs[0].shape.first() {
            Some(Dim::Fixed(n)) => BatchPolicy::Fixed(*n),
            _ => BatchPolicy::Dynamic,
        };
        // Shapes the file leaves open (no declared input shape) are inferred later, per image shape.
        graph.tensors = infer_facts(&parsed.model, &graph, &graph.inputs[0].shape).unwrap_or_default();
        let node_outputs =
            graph.nodes.iter().flat_map(|n| n.outputs.iter().filter(|o| !o.is_empty()).cloned()).collect();
        let head = if batch_policy == BatchPolicy::Dynamic { Head::find(&graph) } else { None };
        let onnx_sha256 = crate::fsio::sha256_hex(bytes);
        Ok(Model {
            path,
            info,
            graph,
            batch_policy,
            parsed: parsed.model,
            head,
            node_outputs,
            parallel_engine: false,
            plans: Mutex::new(HashMap::new()),
            identity: identity(&onnx_sha256, bytes.len() as u64, &weights),
            digest: (onnx_sha256, bytes.len() as u64),
            weights,
            bytes: bytes.to_vec(),
            external,
        })
    }

    /// The activations (float tensors with the batch as first axis, the input included) of a
    /// forward run on images of `image_shape` (no batch axis), by ONNX name. Known from the graph
    /// when the file declares its input shape; otherwise inferred by the engine for that shape.
    /// No image is run.
    pub fn activation_names(&self, image_shape: &[usize]) -> Result<HashSet<String>> {
        if !self.graph.tensors.is_empty() {
            return Ok(self.graph.activations());
        }
        let mut shape = vec![match self.batch_policy {
            BatchPolicy::Fixed(n) => Dim::Fixed(n),
            BatchPolicy::Dynamic => Dim::Symbolic(BATCH.into()),
        }];
        shape.extend(image_shape.iter().map(|&d| Dim::Fixed(d)));
        // Shape computations that the engine cannot follow symbolically (a Reshape to a shape read
        // from the input) need a concrete batch: one image, as any batch axis then has size 1.
        let facts = infer_facts(&self.parsed, &self.graph, &shape)
            .or_else(|_| {
                shape[0] = Dim::Fixed(1);
                infer_facts(&self.parsed, &self.graph, &shape)
            })
            .map_err(|e| prep_error(&self.path, &self.graph, &e))?;
        Ok(facts.into_iter().filter(|(_, f)| f.batched && f.elem_type == ElemType::F32).map(|(n, _)| n).collect())
    }

    /// Lets the engine spread each matrix product over the current rayon pool (for callers that run
    /// batches one after another). Needs the `tract-threads` feature; without it, enabling is an
    /// error that says so.
    pub fn set_parallel_engine(&mut self, enabled: bool) -> Result<()> {
        if enabled && !cfg!(feature = "tract-threads") {
            return Err(Error::Config(
                "`[run] parallelism = \"engine\"` needs hudd built with the `tract-threads` feature \
                 (cargo install --path cli --features tract-threads); use \"batches\""
                    .into(),
            ));
        }
        if enabled != self.parallel_engine {
            self.parallel_engine = enabled;
            if let Ok(mut plans) = self.plans.lock() {
                plans.clear();
            }
        }
        Ok(())
    }

    /// The file the model was loaded from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The model's identity as a hex SHA-256: of the ONNX file's bytes when it holds every weight;
    /// for a model that keeps weights in files beside it (`NAME.onnx.data`), of the list of all
    /// its files' sizes and SHA-256s ([`identity`]), so that other weights are another model.
    pub fn sha256(&self) -> &str {
        &self.identity
    }

    /// Hex SHA-256 of the ONNX file's bytes alone.
    pub fn file_sha256(&self) -> &str {
        &self.digest.0
    }

    /// The external weights files (empty when the ONNX file holds every weight).
    pub fn weight_files(&self) -> &[ModelFile] {
        &self.weights
    }

    /// Size of the ONNX file, in bytes.
    pub fn file_bytes(&self) -> u64 {
        self.digest.1
    }

    /// Inputs and outputs.
    pub fn info(&self) -> &ModelInfo {
        &self.info
    }

    /// The graph as plain data.
    pub fn graph(&self) -> &Graph {
        &self.graph
    }

    /// How batches are fed to the model.
    pub fn batch_policy(&self) -> BatchPolicy {
        self.batch_policy
    }

    /// Checks that the model's first input accepts one image of `image_shape` (no batch axis) and
    /// compiles the engine's plans for the outputs, so that errors surface before any work. A model
    /// with a dense head runs one blank image: its head's plan needs the shape the body makes.
    pub fn prepare(&self, image_shape: &[usize]) -> Result<()> {
        let mut shape = vec![self.batch_policy.engine_batch()];
        shape.extend_from_slice(image_shape);
        if self.head.is_some() {
            return self.run_chunked(ArrayD::zeros(IxDyn(&shape)).view(), Want::Outputs).map(|_| ());
        }
        self.plan(&shape, Want::Outputs, Part::Whole).map(|_| ())
    }

    /// Runs the model on a batch (first axis) and returns every graph output, in declaration order.
    /// Outputs that are not float tensors with the batch as first axis come back empty.
    pub fn run(&self, input: ArrayViewD<'_, f32>) -> Result<Vec<ArrayD<f32>>> {
        let mut outs = self.run_chunked(input, Want::Outputs)?.floats;
        Ok(self.info.outputs.iter().map(|o| outs.remove(&o.name).unwrap_or_default()).collect())
    }

    /// Runs the model on a batch and returns the input, every intermediate float activation and the
    /// outputs, by ONNX tensor name, in one forward run.
    pub fn run_with_activations(&self, input: ArrayViewD<'_, f32>) -> Result<Activations> {
        self.run_keeping(input, Want::Everything)
    }

    /// As [`Model::run_with_activations`], but only the input, the outputs and the tensors named
    /// in `names` (sorted, without repeats): the engine fuses the ops whose intermediate results
    /// nobody asked for.
    pub fn run_with_named(&self, input: ArrayViewD<'_, f32>, names: &[String]) -> Result<Activations> {
        self.run_keeping(input, Want::Named(names.to_vec()))
    }

    /// The tensors `want` asks for, with the input added under its name.
    fn run_keeping(&self, input: ArrayViewD<'_, f32>, want: Want) -> Result<Activations> {
        let RunOut { floats: mut tensors, ints } = self.run_chunked(input.view(), want)?;
        tensors.insert(self.info.inputs[0].name.clone(), input.to_owned());
        Ok(Activations { tensors, integers: ints })
    }

    fn run_chunked(&self, input: ArrayViewD<'_, f32>, want: Want) -> Result<RunOut> {
        let n = input.shape().first().copied().unwrap_or(0);
        if n == 0 {
            return Err(Error::ShapeMismatch {
                tensor: self.info.inputs[0].name.clone(),
                actual: input.shape().to_vec(),
                expected: "a batch of at least one image".into(),
            });
        }
        guarded(
            || self.run_chunked_unguarded(input, want, n),
            |why| self.inference_error(n, format!("the inference engine failed ({why})")),
        )
    }

    /// Runs `input` (`n` images): the whole graph in engine batches of
    /// [`BatchPolicy::engine_batch`] images, or, for a model with a dense head, the body one image
    /// at a time and the head on [`HEAD_BATCH`] images at a time.
    fn run_chunked_unguarded(&self, input: ArrayViewD<'_, f32>, want: Want, n: usize) -> Result<RunOut> {
        let Some(head) = &self.head else {
            return self.run_part(input, &want, Part::Whole, self.batch_policy.engine_batch(), n);
        };
        let mut out = self.run_part(input, &want, Part::Body, 1, n)?;
        let cut =
            if want.asks_for(&head.cut) { out.floats.get(&head.cut).cloned() } else { out.floats.remove(&head.cut) };
        let cut = cut.ok_or_else(|| {
            self.inference_error(n, format!("the engine did not return `{}`, the dense head's input", head.cut))
        })?;
        let tail = self.run_part(cut.view(), &want, Part::Head, HEAD_BATCH, n)?;
        out.floats.extend(tail.floats);
        out.ints.extend(tail.ints);
        Ok(out)
    }

    /// Runs `part` of the graph on `input` (`n` rows) in runs of `chunk` rows, the last one padded
    /// with zeros, and writes each output into one array of `n` rows.
    fn run_part(&self, input: ArrayViewD<'_, f32>, want: &Want, part: Part, chunk: usize, n: usize) -> Result<RunOut> {
        let mut shape = input.shape().to_vec();
        shape[0] = chunk;
        let Compiled { plan, names } = self.plan(&shape, want.clone(), part)?;
        let mut state = plan.spawn().map_err(|e| self.inference_error(n, format!("{e:#}")))?;
        let mut out = RunOut::default();
        let mut start = 0;
        while start < n {
            let end = (start + chunk).min(n);
            let mut part = ArrayD::<f32>::zeros(IxDyn(&shape));
            part.slice_axis_mut(Axis(0), (0..end - start).into())
                .assign(&input.slice_axis(Axis(0), (start..end).into()));
            let tensor: Tensor = part.into();
            let values = state.run(tvec!(tensor.into())).map_err(|e| self.inference_error(n, format!("{e:#}")))?;
            for (name, value) in names.iter().zip(values) {
                if value.datum_type() != f32::datum_type() {
                    if start == 0 {
                        let t = value.into_tensor();
                        if let Ok(i) = t.cast_to::<i64>().and_then(|c| c.into_owned().into_plain_array::<i64>()) {
                            out.ints.insert(name.clone(), i);
                        }
                    }
                    continue;
                }
                // Read in place: the values are copied once, into the batch's array below.
                let a = value.to_plain_array_view::<f32>().map_err(|e| self.inference_error(n, format!("{e:#}")))?;
                if a.ndim() == 0 || a.shape()[0] != chunk {
                    // Not batched (e.g. a shape computation); not an activation.
                    continue;
                }
                let rows = out.floats.entry(name.clone()).or_insert_with(|| {
                    let mut full = a.shape().to_vec();
                    full[0] = n;
                    ArrayD::zeros(IxDyn(&full))
                });
                if rows.shape()[1..] != a.shape()[1..] {
                    return Err(self.inference_error(n, format!("tensor `{name}` changed shape between engine runs")));
                }
                rows.slice_axis_mut(Axis(0), (start..end).into())
                    .assign(&a.slice_axis(Axis(0), (0..end - start).into()));
            }
            start = end;
        }
        Ok(out)
    }

    fn inference_error(&self, batch: usize, reason: String) -> Error {
        Error::Inference { path: self.path.clone(), batch, reason }
    }

    fn plan(&self, shape: &[usize], want: Want, part: Part) -> Result<Compiled> {
        let key = (shape.to_vec(), want.clone(), part);
        if let Some(p) = self.plans.lock().ok().and_then(|m| m.get(&key).cloned()) {
            return Ok(p);
        }
        let built = self.build_plan(shape, want, part)?;
        if let Ok(mut m) = self.plans.lock() {
            m.insert(key, built.clone());
        }
        Ok(built)
    }

    fn build_plan(&self, shape: &[usize], want: Want, part: Part) -> Result<Compiled> {
        let prep = |e: TractError| prep_error(&self.path, &self.graph, &e);
        let declared = &self.info.inputs[0].shape;
        if !declared.is_empty() && part != Part::Head {
            let contradicts = declared.len() != shape.len()
                || declared.iter().zip(shape).skip(1).any(|(d, s)| d.fixed().is_some_and(|d| d != *s));
            if contradicts {
                return Err(Error::ShapeMismatch {
                    tensor: self.info.inputs[0].name.clone(),
                    actual: shape.to_vec(),
                    expected: format!("the model's declared input shape {}", Dim::display(declared)),
                });
            }
        }
        let mut model = self.parsed.clone();
        let head = self.head.as_ref().filter(|_| part != Part::Whole);
        if let (Part::Head, Some(head)) = (part, head) {
            // The head's input becomes the model's input (compacting turns its node into a source).
            let cut = model.find_outlet_label(&head.cut).ok_or_else(|| {
                prep(TractError::msg(format!("the engine has no tensor `{}` (the dense head's input)", head.cut)))
            })?;
            model.set_input_outlets(&[cut]).map_err(prep)?;
        }
        model.set_input_fact(0, f32::fact(shape).into()).map_err(prep)?;
        // The node outputs asked for, in graph order, then the graph outputs, each once; split
        // between the body (which adds the head's input) and the head.
        let mut wanted: Vec<String> = self.node_outputs.iter().filter(|n| want.asks_for(n)).cloned().collect();
        if part == Part::Body {
            wanted.extend(head.map(|h| h.cut.clone()));
        } else {
            wanted.extend(self.info.outputs.iter().map(|o| o.name.clone()));
        }
        if let Some(head) = head {
            wanted.retain(|n| head.tensors.contains(n) == (part == Part::Head));
        }
        let mut seen = HashSet::new();
        wanted.retain(|n| seen.insert(n.clone()));
        let names = select_named_outputs(&mut model, wanted).map_err(prep)?;
        if part == Part::Head {
            model.compact().map_err(prep)?;
        }
        let typed = model.into_typed().map_err(prep)?;
        let optimized = typed.into_optimized().map_err(prep)?;
        let plan = if self.parallel_engine {
            optimized.into_runnable_with_options(&engine_options()).map_err(prep)?
        } else {
            optimized.into_runnable().map_err(prep)?
        };
        Ok(Compiled { plan, names: Arc::new(names) })
    }
}

#[cfg(feature = "tract-threads")]
fn engine_options() -> RunOptions {
    RunOptions { executor: Some(multithread::Executor::RayonGlobal), ..Default::default() }
}

#[cfg(not(feature = "tract-threads"))]
fn engine_options() -> RunOptions {
    RunOptions::default()
}

/// Makes the tensors named `names` (ONNX names; unknown ones skipped) the model's outputs and
/// returns the names kept, in output order.
fn select_named_outputs(model: &mut InferenceModel, names: Vec<String>) -> TractResult<Vec<String>> {
    let (outlets, kept): (Vec<OutletId>, Vec<String>) =
        names.into_iter().filter_map(|n| model.find_outlet_label(&n).map(|o| (o, n))).unzip();
    model.select_output_outlets(&outlets)?;
    Ok(kept)
}

/// The symbol that stands for the batch size in inferred shapes.
const BATCH: &str = "N";

/// Element type and shape of the graph input and every node output, inferred by the engine from
/// an input shape (symbolic dimensions become engine symbols).
fn infer_facts(parsed: &InferenceModel, graph: &Graph, input: &[Dim]) -> TractResult<BTreeMap<String, TensorFact>> {
    if input.is_empty() {
        return Err(TractError::msg("the model declares no input shape"));
    }
    let mut model = parsed.clone();
    let dims: TVec<TDim> = input
        .iter()
        .map(|d| match d {
            Dim::Fixed(n) => TDim::from(*n),
            Dim::Symbolic(s) => model.sym(if s == "?" { BATCH } else { s }).into(),
        })
        .collect();
    let batch = dims[0].clone();
    model.set_input_fact(0, f32::fact(dims).into())?;
    let wanted = graph.nodes.iter().flat_map(|n| n.outputs.iter().filter(|o| !o.is_empty()).cloned()).collect();
    let names = select_named_outputs(&mut model, wanted)?;
    let typed = model.into_typed()?;
    let mut facts = BTreeMap::new();
    for (outlet, name) in typed.output_outlets()?.iter().zip(names) {
        let fact = typed.outlet_fact(*outlet)?;
        let shape: Vec<Dim> = fact
            .shape
            .iter()
            .map(|d| {
                d.as_i64()
                    .and_then(|v| usize::try_from(v).ok())
                    .map_or_else(|| Dim::Symbolic(d.to_string()), Dim::Fixed)
            })
            .collect();
        let batched = fact.shape.first() == Some(&batch);
        facts.insert(name, TensorFact { elem_type: elem_type_of(fact.datum_type), shape, batched });
    }
    // The input has no outlet label of its own; its fact is the one set above.
    facts.entry(graph.inputs[0].name.clone()).or_insert_with(|| TensorFact {
        elem_type: ElemType::F32,
        shape: input.to_vec(),
        batched: true,
    });
    Ok(facts)
}

fn elem_type_of(dt: DatumType) -> ElemType {
    match dt {
        DatumType::F32 => ElemType::F32,
        DatumType::F16 => ElemType::F16,
        DatumType::F64 => ElemType::F64,
        DatumType::U8 => ElemType::U8,
        DatumType::I8 => ElemType::I8,
        DatumType::I32 => ElemType::I32,
        DatumType::I64 => ElemType::I64,
        DatumType::Bool => ElemType::Bool,
        DatumType::String => ElemType::String,
        _ => ElemType::Other(-1),
    }
}

fn node_name(node: &pb::NodeProto) -> String {
    if !node.name.is_empty() {
        node.name.clone()
    } else {
        node.output.iter().find(|o| !o.is_empty()).cloned().unwrap_or_else(|| "<unnamed>".into())
    }
}

/// Wraps an engine error, naming the node (and op) the engine's message mentions, if any.
fn prep_error(path: &Path, graph: &Graph, e: &TractError) -> Error {
    let reason = format!("{e:#}");
    let node = graph
        .nodes
        .iter()
        .find(|n| reason.contains(&format!("\"{}\"", n.name)) || reason.contains(&format!("node {} ", n.name)))
        .or_else(|| graph.nodes.iter().find(|n| n.name.len() > 2 && reason.contains(&n.name)));
    Error::ModelPreparation {
        path: path.to_path_buf(),
        node: node.map(|n| n.name.clone()),
        op: node.map(|n| n.op_type.clone()),
        reason,
    }
}

fn value_info(v: &pb::ValueInfoProto) -> TensorInfo {
    let (shape, elem_type) = match v.r#type.as_ref().and_then(|t| t.value.as_ref()) {
        Some(pb::type_proto::Value::TensorType(t)) => {
            let shape = t
                .shape
                .as_ref()
                .map(|s| {
                    s.dim
                        .iter()
                        .map(|d| match &d.value {
                            Some(pb::tensor_shape_proto::dimension::Value::DimValue(n)) if *n >= 0 => {
                                Dim::Fixed(*n as usize)
                            }
                            Some(pb::tensor_shape_proto::dimension::Value::DimParam(p)) if !p.is_empty() => {
                                Dim::Symbolic(p.clone())
                            }
                            _ => Dim::Symbolic("?".into()),
                        })
                        .collect()
                })
                .unwrap_or_default();
            (shape, ElemType::from_onnx(t.elem_type))
        }
        _ => (Vec::new(), ElemType::Other(0)),
    };
    TensorInfo { name: v.name.clone(), shape, elem_type }
}

fn to_weight(t: Tensor) -> TractResult<Weight> {
    let dt = t.datum_type();
    Ok(if dt == f32::datum_type() {
        Weight::F32(t.into_plain_array::<f32>()?)
    } else if dt.is_float() {
        Weight::F32(t.cast_to::<f32>()?.into_owned().into_plain_array::<f32>()?)
    } else if dt.is_integer() || dt == bool::datum_type() {
        Weight::I64(t.cast_to::<i64>()?.into_owned().into_plain_array::<i64>()?)
    } else {
        Weight::Other { elem_type: ElemType::Other(-1), shape: t.shape().to_vec() }
    })
}

fn build_graph(proto: &pb::ModelProto, onnx: &tract_onnx::Onnx, model_dir: Option<&str>, path: &Path) -> Result<Graph> {
    let malformed = |reason: String| Error::MalformedModel { path: path.to_path_buf(), reason };
    let g = proto.graph.as_ref().ok_or_else(|| malformed("the file holds no graph".into()))?;
    let mut weights = BTreeMap::new();
    for t in &g.initializer {
        let tensor = tract_onnx::tensor::load_tensor(&*onnx.provider, t, model_dir)
            .map_err(|e| malformed(format!("initializer `{}` cannot be read: {e:#}", t.name)))?;
        let w = to_weight(tensor).map_err(|e| malformed(format!("initializer `{}`: {e:#}", t.name)))?;
        weights.insert(t.name.clone(), w);
    }
    let mut nodes = Vec::with_capacity(g.node.len());
    for n in &g.node {
        let name = node_name(n);
        let mut attributes = BTreeMap::new();
        for a in &n.attribute {
            let value = attribute(a, onnx, model_dir)
                .map_err(|e| malformed(format!("node `{name}` ({}): attribute `{}`: {e:#}", n.op_type, a.name)))?;
            attributes.insert(a.name.clone(), value);
        }
        if n.op_type == "Constant" {
            if let (Some(Attribute::Tensor(w)), Some(out)) = (attributes.get("value"), n.output.first()) {
                weights.insert(out.clone(), w.clone());
            }
        }
        let op = Op::decode(&n.op_type, &attributes, &n.input, |w| weights.get(w))
            .map_err(|e| malformed(format!("node `{name}` ({}): {e}", n.op_type)))?;
        nodes.push(Node {
            name,
            op_type: n.op_type.clone(),
            op,
            domain: n.domain.clone(),
            inputs: n.input.clone(),
            outputs: n.output.clone(),
            attributes,
        });
    }
    let inputs: Vec<TensorInfo> = g.input.iter().filter(|i| !weights.contains_key(&i.name)).map(value_info).collect();
    let outputs: Vec<TensorInfo> = g.output.iter().map(value_info).collect();
    let mut available: HashSet<String> = weights.keys().cloned().collect();
    available.extend(g.input.iter().map(|i| i.name.clone()));
    let mut nodes =
        graph::topological_order(nodes, &available).map_err(|(node, why)| malformed(format!("node `{node}` {why}")))?;
    graph::fold_constants(&nodes, &mut weights);
    // Inputs that are constants only once folded (a kernel, a reduction's axes): decoded again.
    for n in nodes.iter_mut() {
        n.op = Op::decode(&n.op_type, &n.attributes, &n.inputs, |w| weights.get(w))
            .map_err(|e| malformed(format!("node `{}` ({}): {e}", n.name, n.op_type)))?;
    }
    let opset = proto
        .opset_import
        .iter()
        .find(|o| o.domain.is_empty() || o.domain == "ai.onnx")
        .map(|o| o.version)
        .unwrap_or(0);
    Ok(Graph {
        inputs,
        outputs,
        nodes,
        weights,
        tensors: BTreeMap::new(),
        opset,
        producer: format!("{} {}", proto.producer_name, proto.producer_version).trim().to_string(),
    })
}

fn attribute(a: &pb::AttributeProto, onnx: &tract_onnx::Onnx, model_dir: Option<&str>) -> TractResult<Attribute> {
    use pb::attribute_proto::AttributeType as T;
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    Ok(match T::try_from(a.r#type).unwrap_or(T::Undefined) {
        T::Float => Attribute::Float(a.f),
        T::Int => Attribute::Int(a.i),
        T::String => Attribute::String(text(&a.s)),
        T::Floats => Attribute::Floats(a.floats.clone()),
        T::Ints => Attribute::Ints(a.ints.clone()),
        T::Strings => Attribute::Strings(a.strings.iter().map(|s| text(s)).collect()),
        T::Tensor => match &a.t {
            Some(t) => Attribute::Tensor(to_weight(tract_onnx::tensor::load_tensor(&*onnx.provider, t, model_dir)?)?),
            None => Attribute::Unsupported,
        },
        _ => Attribute::Unsupported,
    })
}

/// Index of the largest value; the first one on ties (as `torch.argmax` and numpy).
pub fn argmax(values: &[f32]) -> usize {
    let mut best = 0;
    for (i, v) in values.iter().enumerate() {
        if *v > values[best] || (values[best].is_nan() && !v.is_nan()) {
            best = i;
        }
    }
    best
}

thread_local! {
    /// How deep the current thread is in calls that turn engine panics into errors.
    static GUARDED: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}

/// Whether the current thread is inside a call that turns a panic of the inference engine into
/// an error: a panic hook can stay quiet about such a panic (it is reported as the error).
pub fn engine_panic_is_caught() -> bool {
    GUARDED.with(|g| g.get() > 0)
}

/// Runs `f`, turning a panic in it (the engine's: tract panics on some corrupt graphs and shapes)
/// into the error `err` makes of the panic's message.
fn guarded<T>(f: impl FnOnce() -> Result<T>, err: impl FnOnce(String) -> Error) -> Result<T> {
    GUARDED.with(|g| g.set(g.get() + 1));
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    GUARDED.with(|g| g.set(g.get() - 1));
    outcome.unwrap_or_else(|payload| {
        let text = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "no message".into());
        Err(err(format!("internal error: {text}")))
    })
}

/// The most values a tensor that the graph makes from constants may have (2²⁶: 512 MiB of 8-byte
/// values): the engine folds such tensors while it reads the file, so a corrupt shape would
/// allocate it all.
const MAX_CONSTANT_VALUES: u64 = 1 << 26;

/// Refuses ops that make a tensor of a constant shape (or repeat counts) that would hold more than
/// [`MAX_CONSTANT_VALUES`] values, before the engine folds them. The shape may be computed from
/// constants, as exporters write padding (`Shape`, `Gather`, arithmetic, `Concat` of integers):
/// those integers are followed here, flattened.
fn refuse_huge_constants(graph: &Graph) -> std::result::Result<(), String> {
    let mut ints: HashMap<&str, Vec<i64>> = graph
        .weights
        .iter()
        .filter_map(|(name, w)| Some((name.as_str(), w.as_i64()?.iter().copied().collect())))
        .collect();
    for node in &graph.nodes {
        let arg = |i: usize| node.inputs.get(i).and_then(|n| ints.get(n.as_str()));
        let shape_input = match node.op_type.as_str() {
            "ConstantOfShape" => Some(0),
            "Expand" | "Tile" => Some(1),
            _ => None,
        };
        if let Some(values) = shape_input.and_then(arg) {
            let count = values.iter().fold(1u64, |acc, &d| acc.saturating_mul(d.unsigned_abs()));
            if count > MAX_CONSTANT_VALUES {
                return Err(format!(
                    "node `{}` ({}) would make a tensor of {count} values from the constant shape {values:?}; at \
                     most {MAX_CONSTANT_VALUES} are accepted",
                    node.name, node.op_type
                ));
            }
        }
        let binary = |f: fn(i64, i64) -> i64| -> Option<Vec<i64>> {
            let (a, b) = (arg(0)?, arg(1)?);
            match (a.len(), b.len()) {
                (_, 1) => Some(a.iter().map(|&x| f(x, b[0])).collect()),
                (1, _) => Some(b.iter().map(|&y| f(a[0], y)).collect()),
                (n, m) if n == m => Some(a.iter().zip(b).map(|(&x, &y)| f(x, y)).collect()),
                _ => None,
            }
        };
        let value: Option<Vec<i64>> = match node.op_type.as_str() {
            "Shape" => {
                node.inputs.first().and_then(|n| graph.weight(n)).map(|w| w.shape().iter().map(|&d| d as i64).collect())
            }
            "Gather" => arg(0).zip(arg(1)).and_then(|(data, idx)| {
                idx.iter().map(|&i| usize::try_from(i).ok().and_then(|i| data.get(i).copied())).collect()
            }),
            "Mul" => binary(i64::saturating_mul),
            "Add" => binary(i64::saturating_add),
            "Sub" => binary(i64::saturating_sub),
            "Div" => binary(|x, y| if y == 0 { 0 } else { x.saturating_div(y) }),
            "Concat" => (0..node.inputs.len())
                .map(arg)
                .collect::<Option<Vec<_>>>()
                .map(|v| v.into_iter().flatten().copied().collect()),
            "Cast" | "Identity" | "Reshape" | "Squeeze" | "Unsqueeze" => arg(0).cloned(),
            _ => None,
        };
        if let (Some(v), Some(out)) = (value, node.outputs.first()) {
            ints.entry(out.as_str()).or_insert(v);
        }
    }
    Ok(())
}

#[cfg(test)]
mod fuzz_regressions {
    /// Inputs the fuzzer (`fuzz/`) found that made the engine panic: each is now an error naming
    /// the file, and nothing panics out of `from_bytes`.
    #[test]
    fn engine_panics_on_corrupt_files_are_errors() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/regressions/onnx");
        let mut seen = 0;
        for entry in std::fs::read_dir(&dir).expect("regressions folder") {
            let path = entry.expect("entry").path();
            let bytes = std::fs::read(&path).expect("regression input");
            let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            let e = super::Model::from_bytes(&bytes, path.clone()).err();
            let text = e.as_ref().map(ToString::to_string).unwrap_or_default();
            assert!(e.is_none() || text.contains(&*path.to_string_lossy()), "{text}");
            // The ones hudd now refuses itself, before the engine allocates or panics.
            for (kind, why) in
                [("constant-of-shape", "would make a tensor of"), ("transpose-perm", "not a permutation")]
            {
                if name.contains(kind) {
                    assert!(text.contains(why), "{name}: {text}");
                }
            }
            seen += 1;
        }
        assert!(seen >= 5, "{seen}");
    }
}

#[cfg(test)]
mod upsample_tests {
    use super::*;

    /// x [1, 1, 2, 2] → Upsample(×2) → y, at `opset`; the scales an input (opset 9) or an attribute.
    fn upsample_model(opset: i64, scales_input: bool) -> Vec<u8> {
        let info = |name: &str, dims: &[i64]| pb::ValueInfoProto {
            name: name.into(),
            r#type: Some(pb::TypeProto {
                value: Some(pb::type_proto::Value::TensorType(pb::type_proto::Tensor {
                    elem_type: 1,
                    shape: Some(pb::TensorShapeProto {
                        dim: dims
                            .iter()
                            .map(|&d| pb::tensor_shape_proto::Dimension {
                                value: Some(pb::tensor_shape_proto::dimension::Value::DimValue(d)),
                                ..Default::default()
                            })
                            .collect(),
                    }),
                })),
                ..Default::default()
            }),
            ..Default::default()
        };
        let mut node = pb::NodeProto {
            name: "up".into(),
            op_type: "Upsample".into(),
            input: vec!["x".into()],
            output: vec!["y".into()],
            ..Default::default()
        };
        let mut initializer = Vec::new();
        if scales_input {
            node.input.push("scales".into());
            initializer.push(pb::TensorProto {
                name: "scales".into(),
                dims: vec![4],
                data_type: 1,
                float_data: vec![1.0, 1.0, 2.0, 2.0],
                ..Default::default()
            });
        } else {
            node.attribute.push(pb::AttributeProto {
                name: "scales".into(),
                r#type: pb::attribute_proto::AttributeType::Floats as i32,
                floats: vec![1.0, 1.0, 2.0, 2.0],
                ..Default::default()
            });
        }
        let model = pb::ModelProto {
            ir_version: 4,
            opset_import: vec![pb::OperatorSetIdProto { domain: String::new(), version: opset }],
            graph: Some(pb::GraphProto {
                name: "upsample".into(),
                node: vec![node],
                initializer,
                input: vec![info("x", &[1, 1, 2, 2])],
                output: vec![info("y", &[1, 1, 4, 4])],
                ..Default::default()
            }),
            ..Default::default()
        };
        model.encode_to_vec()
    }

    #[test]
    fn opset_9_upsample_runs_as_resize_and_opset_8_is_refused_with_the_reason() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("up9.onnx");
        std::fs::write(&path, upsample_model(9, true)).unwrap();
        let model = Model::load(&path).unwrap();
        let x = ArrayD::from_shape_vec(IxDyn(&[1, 1, 2, 2]), vec![1.0f32, 2.0, 3.0, 4.0]).unwrap();
        let y = model.run(x.view()).unwrap().remove(0);
        let want = [1., 1., 2., 2., 1., 1., 2., 2., 3., 3., 4., 4., 3., 3., 4., 4.];
        assert_eq!(y.iter().copied().collect::<Vec<f32>>(), want);
        let path = dir.path().join("up8.onnx");
        std::fs::write(&path, upsample_model(8, false)).unwrap();
        let err = Model::load(&path).map(|_| ()).unwrap_err().to_string();
        assert!(err.contains("opset 7 or 8"), "{err}");
    }
}

#[cfg(test)]
mod head_tests {
    use super::*;

    fn load(rel: &str) -> Model {
        Model::load(Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(rel)).expect("model")
    }

    fn images(n: usize, seed: u64) -> ArrayD<f32> {
        let mut rng = crate::rng::Rng::new(seed);
        ArrayD::from_shape_fn(IxDyn(&[n, 1, 28, 28]), |_| rng.next_f64() as f32)
    }

    #[test]
    fn the_dense_head_starts_at_the_first_gemm_that_splits_the_graph() {
        let model = load("models/fashion-mnist/fmnist_cnn.onnx");
        let head = model.head.clone().expect("conv body, dense head");
        let flatten = model.graph.nodes.iter().find(|n| n.op_type == "Flatten").expect("a Flatten node");
        assert_eq!(head.cut, flatten.outputs[0]);
        let gemms = model.graph.nodes.iter().filter(|n| n.op_type == "Gemm");
        assert!(gemms.flat_map(|n| &n.outputs).all(|o| head.tensors.contains(o)));
        assert!(head.tensors.contains("logits"));
        assert!(!head.tensors.contains(&head.cut));
        // A head node that also reads a body tensor, a softmax over the batch axis, a transposed
        // left operand, an op that is not row-wise: no head.
        let relu_in_body =
            model.graph.nodes.iter().find(|n| n.op_type == "Relu").map(|n| n.outputs[0].clone()).expect("Relu");
        let last = model.graph.nodes.len() - 1;
        let mut mixes = model.graph.clone();
        mixes.nodes[last].inputs.push(relu_in_body);
        let mut batch_softmax = model.graph.clone();
        let mut softmax = batch_softmax.nodes[last].clone();
        (softmax.op_type, softmax.inputs, softmax.outputs) =
            ("Softmax".into(), vec!["logits".into()], vec!["probabilities".into()]);
        softmax.attributes = BTreeMap::from([("axis".to_string(), Attribute::Int(0))]);
        batch_softmax.nodes.push(softmax);
        let mut transposed = model.graph.clone();
        transposed.nodes[last].attributes.insert("transA".into(), Attribute::Int(1));
        let mut not_row_wise = model.graph.clone();
        not_row_wise.nodes[last].op_type = "ReduceMean".into();
        for (what, graph) in
            [("mixes", mixes), ("softmax", batch_softmax), ("transA", transposed), ("reduce", not_row_wise)]
        {
            assert_eq!(Head::find(&graph), None, "{what}");
        }
    }

    /// The split run (body one image at a time, head 16 rows at a time) agrees with the whole
    /// graph run one image at a time, and an image's values are the same bits in any batch.
    #[test]
    fn a_split_run_agrees_with_the_whole_graph_and_gives_the_same_bits_in_any_batch() {
        let split = load("models/fashion-mnist/fmnist_cnn.onnx");
        let mut whole = load("models/fashion-mnist/fmnist_cnn.onnx");
        assert!(split.head.is_some());
        whole.head = None;
        let x = images(19, 4);
        let (a, b) = (split.run_with_activations(x.view()).unwrap(), whole.run_with_activations(x.view()).unwrap());
        assert_eq!(a.tensors.keys().collect::<Vec<_>>(), b.tensors.keys().collect::<Vec<_>>());
        for (name, t) in &b.tensors {
            let scale = t.iter().fold(1e-6f32, |m, v| m.max(v.abs()));
            let d = a.tensors[name].iter().zip(t).fold(0.0f32, |m, (p, q)| m.max((p - q).abs()));
            assert!(d <= 1e-5 * scale, "{name}: {d} of {scale}");
        }
        let named = vec![split.head.as_ref().unwrap().cut.clone()];
        let reference = split.run(x.view()).unwrap();
        for n in [1, 5, 16, 17] {
            let part = x.slice_axis(Axis(0), (0..n).into());
            let out = split.run(part.view()).unwrap();
            assert_eq!(out[0], reference[0].slice_axis(Axis(0), (0..n).into()), "batch of {n}");
            let acts = split.run_with_named(part, &named).unwrap();
            assert!(acts.tensors.contains_key(&named[0]) && acts.tensors.contains_key("logits"), "batch of {n}");
        }
    }
}
