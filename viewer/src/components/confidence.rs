//! The tool-qualification record (`tool_confidence`): the build that wrote the report, the oracle
//! checks it passed while writing it, the LRP rule of every layer and the known limitations.

use std::sync::Arc;

use hudd_report::Report;
use leptos::prelude::*;

/// `0.21` → `0.21× of tolerance`.
fn share(worst: f64) -> String {
    if worst.is_finite() && worst < 1e300 {
        format!("{worst:.2}× of tolerance")
    } else {
        "did not run".into()
    }
}

#[component]
pub fn ToolConfidence(report: Arc<Report>) -> impl IntoView {
    let Some(t) = report.tool_confidence.clone() else {
        return ().into_any();
    };
    let passed = t.selftest.iter().filter(|c| c.passed).count();
    let verdict = if passed == t.selftest.len() {
        format!("all {} oracle checks passed", t.selftest.len())
    } else {
        format!("{} of {} oracle checks FAILED", t.selftest.len() - passed, t.selftest.len())
    };
    let checks = t
        .selftest
        .iter()
        .map(|c| {
            view! {
                <tr data-testid="selftest-row" class:failed=!c.passed>
                    <td>{c.check.clone()}</td>
                    <td>{c.oracle.clone()}</td>
                    <td>{c.compared.clone()}</td>
                    <td class="num">{c.values}</td>
                    <td>{share(c.worst)}</td>
                    <td>{if c.passed { "pass" } else { "FAIL" }}</td>
                </tr>
            }
        })
        .collect_view();
    let rules = t
        .rules
        .iter()
        .map(|r| {
            let rule = if r.rule.is_empty() { "passes relevance on".to_string() } else { r.rule.clone() };
            view! { <tr><td>{r.layer.clone()}</td><td>{r.op.clone()}</td><td>{rule}</td></tr> }
        })
        .collect_view();
    let limits = t.limitations.iter().map(|l| view! { <li>{l.clone()}</li> }).collect_view();
    view! {
        <details class="confidence" data-testid="tool-confidence">
            <summary>"Tool confidence: " {verdict}</summary>
            <p data-testid="build">
                "hudd " {t.version.clone()} ", commit " {t.commit.clone()} ", " {t.profile.clone()} " build for "
                {t.target.clone()} ", " {t.rustc.clone()}
            </p>
            <table>
                <thead><tr><th>"check"</th><th>"oracle"</th><th>"compared"</th><th>"values"</th><th>"worst"</th><th>"result"</th></tr></thead>
                <tbody>{checks}</tbody>
            </table>
            <h3>"LRP rules of this run"</h3>
            <table>
                <thead><tr><th>"layer"</th><th>"op"</th><th>"rule"</th></tr></thead>
                <tbody>{rules}</tbody>
            </table>
            <h3>"Known limitations"</h3>
            <ul>{limits}</ul>
        </details>
    }
    .into_any()
}
