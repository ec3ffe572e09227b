//! `hudd inspect`: what a model looks like to hudd.

use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::Args;
use hudd_core::model::{supported_ops, BatchPolicy, Dim, Model, Op};
use hudd_core::relevance::program::rule_of;
use hudd_core::retrain::trains;
/// What each stage does with one op type (`hudd inspect --ops`, and per model).
#[derive(Debug)]
struct Support {
    op: String,
    /// The inference engine runs it.
    evaluate: bool,
    /// The relevance rule it gets, if any.
    heatmaps: Option<&'static str>,
    /// Retraining translates it.
    retrain: bool,
}

impl Support {
    fn json(rows: &[Support]) -> serde_json::Value {
        rows.iter()
            .map(|r| serde_json::json!({"op": r.op, "evaluate": r.evaluate, "heatmaps": r.heatmaps, "retrain": r.retrain}))
            .collect()
    }
}

/// Prints a model's inputs and outputs (names, shapes, element types), how batches are fed, and its
/// operators with counts and what each stage does with them; `--ops` lists the ONNX operators hudd
/// can run (`evaluate`), explain (`heatmaps`, `analyze`: the rule) and retrain (`retrain`).
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// The exported ONNX model.
    #[arg(value_name = "MODEL.onnx", required_unless_present = "ops")]
    model: Option<PathBuf>,
    /// List the ONNX operators instead: which ones hudd can run (evaluate), the relevance rule the
    /// heatmaps stage gives each one it explains (heatmaps and analyze need both), and which ones
    /// retraining translates (retrain; writing the model back works for any op).
    #[arg(long)]
    ops: bool,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

pub fn run(args: InspectArgs) -> Result<()> {
    if args.ops {
        let run = supported_ops();
        let known = Op::examples();
        let mut all: Vec<&str> = run.iter().map(String::as_str).chain(known.iter().map(|(n, _)| *n)).collect();
        all.sort_unstable();
        all.dedup();
        let rows: Vec<Support> = all
            .into_iter()
            .map(|name| {
                let op = known.iter().find(|(n, _)| *n == name).map(|(_, op)| op);
                Support {
                    op: name.to_string(),
                    evaluate: run.iter().any(|r| r == name),
                    heatmaps: op.and_then(rule_of),
                    retrain: op.is_some_and(trains),
                }
            })
            .collect();
        if args.json {
            println!("{}", serde_json::to_string_pretty(&Support::json(&rows))?);
        } else {
            let yes = |b: bool| if b { "yes" } else { "-" };
            println!("{:<28} {:<9} {:<8} heatmaps (rule)", "op", "evaluate", "retrain");
            for r in rows {
                println!("{:<28} {:<9} {:<8} {}", r.op, yes(r.evaluate), yes(r.retrain), r.heatmaps.unwrap_or("-"));
            }
        }
        return Ok(());
    }
    let Some(path) = args.model else { bail!("give a model file, or --ops") };
    let model = Model::load(&path)?;
    let graph = model.graph();
    if args.json {
        let v = serde_json::json!({
            "model": path,
            "producer": graph.producer,
            "opset": graph.opset,
            "inputs": model.info().inputs,
            "outputs": model.info().outputs,
            "batch": model.batch_policy(),
            "op_counts": graph.op_counts(),
            "op_support": Support::json(&op_support(graph)),
            "nodes": graph.nodes.len(),
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    println!("model     {}", path.display());
    println!("producer  {} (opset {})", graph.producer, graph.opset);
    for i in &model.info().inputs {
        println!("input     {} {} {:?}", i.name, Dim::display(&i.shape), i.elem_type);
    }
    for o in &model.info().outputs {
        println!("output    {} {} {:?}", o.name, Dim::display(&o.shape), o.elem_type);
    }
    match model.batch_policy() {
        BatchPolicy::Dynamic => println!("batch     dynamic"),
        BatchPolicy::Fixed(n) => println!("batch     fixed at {n} (larger batches are split)"),
    }
    println!("nodes     {}", graph.nodes.len());
    println!("  {:<24} {:>5}  {:<8} heatmaps (rule)", "op", "count", "retrain");
    let support = op_support(graph);
    for (op, n) in graph.op_counts() {
        let s = support.iter().find(|s| s.op == op);
        let rule = s.and_then(|s| s.heatmaps).unwrap_or("- (no rule: refused where it computes an activation)");
        let retrain = if s.is_some_and(|s| s.retrain) { "yes" } else { "-" };
        println!("  {op:<24} {n:>5}  {retrain:<8} {rule}");
    }
    Ok(())
}

/// What each stage does with the ops of `graph`, one row per op type (decoded as in the graph:
/// the first node of each type).
fn op_support(graph: &hudd_core::model::Graph) -> Vec<Support> {
    let run = supported_ops();
    let mut rows: Vec<Support> = Vec::new();
    for node in &graph.nodes {
        if rows.iter().any(|r| r.op == node.op_type) {
            continue;
        }
        rows.push(Support {
            op: node.op_type.clone(),
            evaluate: run.contains(&node.op_type),
            heatmaps: rule_of(&node.op),
            retrain: trains(&node.op),
        });
    }
    rows.sort_by(|a, b| a.op.cmp(&b.op));
    rows
}
