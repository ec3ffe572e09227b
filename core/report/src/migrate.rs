//! Migrations of older `report.json` versions, one step at a time; the fixture bundle of every
//! released version (`tests/fixtures/bundles/`) is read through them.
//!
//! - 1 → 2: version 2 types every closed set (preset, linkage, normalisation, layer rule, k choice,
//!   task, split, column kind) as an enum with the same spellings, so those values carry over; it
//!   adds `excluded` to each layer that cannot be the best layer. Version 1 writers never chose the
//!   model input, and did not record it: the step marks the layer named like a model input as
//!   `input`, and the layer named like the explained output (`[task] output` in the recorded
//!   configuration, else the model's only output) as `explained output`.

use serde_json::Value;

use crate::{ReadError, FORMAT, FORMAT_VERSION};

/// The oldest version that can be read.
const OLDEST: u32 = 1;

/// `STEPS[i]` turns version `OLDEST + i` into version `OLDEST + i + 1`.
const STEPS: &[fn(Value) -> Value] = &[v1_to_v2];

fn v1_to_v2(mut value: Value) -> Value {
    let text = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_string);
    let names = |key: &str| -> Vec<String> {
        value
            .pointer(&format!("/model/{key}"))
            .and_then(Value::as_array)
            .map_or_else(Vec::new, |a| a.iter().filter_map(|t| text(t.get("name"))).collect())
    };
    let inputs = names("inputs");
    let outputs = names("outputs");
    let output =
        text(value.pointer("/run/config/task/output")).or_else(|| (outputs.len() == 1).then(|| outputs[0].clone()));
    if let Some(layers) = value.pointer_mut("/analysis/layers").and_then(Value::as_array_mut) {
        for layer in layers {
            if layer.get("excluded").is_some_and(|e| !e.is_null()) {
                continue;
            }
            let name = text(layer.get("name"));
            let why = match name {
                Some(n) if inputs.contains(&n) => "input",
                Some(n) if output.as_ref() == Some(&n) => "explained output",
                _ => continue,
            };
            layer["excluded"] = Value::from(why);
        }
    }
    value
}

/// Checks the format and version of a report and migrates it to [`FORMAT_VERSION`].
pub(crate) fn to_current(mut value: Value) -> Result<Value, ReadError> {
    let format = value.get("format").and_then(Value::as_str).unwrap_or_default().to_string();
    if format != FORMAT {
        return Err(ReadError::Format { expected: FORMAT, found: format });
    }
    let version = value
        .get("format_version")
        .and_then(Value::as_u64)
        .and_then(|v| u32::try_from(v).ok())
        .ok_or_else(|| ReadError::Invalid { what: "report", reason: "no `format_version` number".into() })?;
    if version > FORMAT_VERSION {
        let hudd_version = value.get("hudd_version").and_then(Value::as_str).unwrap_or("?").to_string();
        return Err(ReadError::Newer { found: version, supported: FORMAT_VERSION, hudd_version });
    }
    if version < OLDEST {
        return Err(ReadError::Invalid {
            what: "report",
            reason: format!("format version {version} was never released (the oldest is {OLDEST})"),
        });
    }
    for step in &STEPS[(version - OLDEST) as usize..] {
        value = step(value);
    }
    value["format_version"] = Value::from(FORMAT_VERSION);
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_1_layers_learn_why_they_were_never_the_best() {
        let v1 = serde_json::json!({
            "format": "hudd-report", "format_version": 1,
            "model": {"inputs": [{"name": "image"}], "outputs": [{"name": "logits"}]},
            "run": {"config": {"task": {"output": null}}},
            "analysis": {"layers": [{"name": "image"}, {"name": "conv"}, {"name": "logits"}]}
        });
        let v2 = to_current(v1).unwrap();
        assert_eq!(v2["format_version"], 2);
        let excluded: Vec<&Value> = (0..3).map(|i| &v2["analysis"]["layers"][i]["excluded"]).collect();
        assert_eq!(excluded, [&Value::from("input"), &Value::Null, &Value::from("explained output")]);
        // `[task] output` names the explained output among several.
        let v1 = serde_json::json!({
            "format": "hudd-report", "format_version": 1,
            "model": {"inputs": [{"name": "x"}], "outputs": [{"name": "a"}, {"name": "b"}]},
            "run": {"config": {"task": {"output": "b"}}},
            "analysis": {"layers": [{"name": "a"}, {"name": "b"}]}
        });
        let v2 = to_current(v1).unwrap();
        assert_eq!(v2["analysis"]["layers"][0].get("excluded"), None);
        assert_eq!(v2["analysis"]["layers"][1]["excluded"], "explained output");
    }
}
