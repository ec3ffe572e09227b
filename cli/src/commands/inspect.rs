//! `hudd inspect`: what a model looks like to hudd.

use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::Args;
use hudd_core::model::{supported_ops, BatchPolicy, Dim, Model};

/// Prints a model's inputs and outputs (names, shapes, element types), how batches are fed, and its
/// operators with counts; `--ops` lists the ONNX operators hudd can run (`evaluate`) and those it
/// can also explain (`heatmaps`, `analyze`).
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// The exported ONNX model.
    #[arg(value_name = "MODEL.onnx", required_unless_present = "ops")]
    model: Option<PathBuf>,
    /// List the ONNX operators instead: which ones hudd can run (evaluate) and which ones the
    /// heatmaps stage can explain (heatmaps, analyze need both).
    #[arg(long)]
    ops: bool,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

pub fn run(args: InspectArgs) -> Result<()> {
    if args.ops {
        let run = supported_ops();
        let explain = hudd_core::relevance::program::supported_ops();
        let mut all: Vec<&str> = run.iter().map(String::as_str).chain(explain.iter().copied()).collect();
        all.sort_unstable();
        all.dedup();
        let rows: Vec<(&str, bool, bool)> =
            all.into_iter().map(|op| (op, run.iter().any(|r| r == op), explain.contains(&op))).collect();
        if args.json {
            let v: Vec<_> =
                rows.iter().map(|(op, e, h)| serde_json::json!({"op": op, "evaluate": e, "heatmaps": h})).collect();
            println!("{}", serde_json::to_string_pretty(&v)?);
        } else {
            let yes = |b: bool| if b { "yes" } else { "-" };
            println!("{:<32} {:<9} heatmaps", "op", "evaluate");
            for (op, e, h) in rows {
                println!("{op:<32} {:<9} {}", yes(e), yes(h));
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
    for (op, n) in graph.op_counts() {
        println!("  {op:<24} {n}");
    }
    Ok(())
}
