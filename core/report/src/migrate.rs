//! Migrations of older `report.json` versions, one step at a time. Version 1 is the first
//! released version, so there is nothing to migrate yet: a `v1_to_v2` step joins [`STEPS`] when
//! version 2 is released, and the version-1 fixture bundle keeps being read through it.

use serde_json::Value;

use crate::{ReadError, FORMAT, FORMAT_VERSION};

/// The oldest version that can be read.
const OLDEST: u32 = 1;

/// `STEPS[i]` turns version `OLDEST + i` into version `OLDEST + i + 1`.
const STEPS: &[fn(Value) -> Value] = &[];

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
