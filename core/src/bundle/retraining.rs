//! The report's retraining section, from `RUN/retrain/retrain.json` and `compare.json`.
//!
//! A record is used only when it belongs to this run: the same analysed model (SHA-256) and the
//! same root-cause clusters (ids of the best layer). Older records — an analysis rerun into the
//! folder after `hudd retrain` — are left out rather than shown beside clusters they do not
//! describe.

use std::path::Path;

use hudd_report as schema;

use crate::cluster::report::ClustersReport;
use crate::error::{Error, Result};
use crate::retrain::{CompareRecord, Measure, RetrainRecord, Summary};
use crate::run::RunDir;

fn read<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Option<T>> {
    if !path.is_file() {
        return Ok(None);
    }
    let text = crate::fsio::read_to_string(path).map_err(|e| Error::io("cannot read", path, e))?;
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| Error::Bundle { path: path.to_path_buf(), reason: format!("not a valid record: {e}") })
}

/// The best layer's cluster ids.
fn cluster_ids(clusters: &ClustersReport) -> Vec<usize> {
    let best = clusters.best_layer.as_deref();
    let mut ids: Vec<usize> = clusters
        .layers
        .iter()
        .find(|l| Some(l.name.as_str()) == best)
        .map(|l| l.clusters.iter().map(|c| c.id).collect())
        .unwrap_or_default();
    ids.sort_unstable();
    ids
}

fn mean_sd(m: crate::retrain::MeanSd) -> schema::MeanSd {
    schema::MeanSd { mean: m.mean, sd: m.sd }
}

fn method(name: &str, s: &Summary) -> schema::MethodResult {
    schema::MethodResult {
        method: name.into(),
        labelled: s.repeats.first().map_or(0, |r| r.labelled),
        trained: s.repeats.iter().map(|r| r.trained).collect(),
        kept_epochs: s.repeats.iter().map(|r| r.chosen_epoch).collect(),
        overall: mean_sd(s.overall),
        failing_clusters: mean_sd(s.failing_clusters),
        per_cluster: s
            .per_cluster
            .iter()
            .map(|c| schema::ClusterMeanSd { cluster_id: c.cluster, members: c.members, accuracy: mean_sd(c.accuracy) })
            .collect(),
    }
}

/// The section, when `hudd retrain` ran on this run's model and clusters.
pub(super) fn assemble(
    run: &RunDir,
    model_sha256: &str,
    clusters: &ClustersReport,
) -> Result<Option<schema::Retraining>> {
    let Some(r) = read::<RetrainRecord>(&run.retrain_json())? else { return Ok(None) };
    let ids = cluster_ids(clusters);
    let of = |per: &[crate::retrain::ClusterAccuracy]| per.iter().map(|c| c.cluster).collect::<Vec<_>>();
    if r.model.sha256 != model_sha256 || of(&r.after.per_cluster) != ids {
        return Ok(None);
    }
    let gains = r
        .before
        .per_cluster
        .iter()
        .zip(&r.after.per_cluster)
        .map(|(b, a)| schema::RetrainingGain {
            cluster_id: a.cluster,
            gain_pp: 100.0 * (a.accuracy - b.accuracy),
            members: a.members,
            right_after: a.right,
        })
        .collect();
    let comparison = read::<CompareRecord>(&run.compare_json())?
        .filter(|c| c.before.per_cluster.iter().map(|x| x.cluster).collect::<Vec<_>>() == ids)
        .map(|c| schema::Comparison {
            budget: c.budget,
            repeats: c.repeats,
            seed: c.seed,
            methods: std::iter::once(method("before", &c.before))
                .chain(c.methods().into_iter().map(|(m, s)| method(m.name(), s)))
                .collect(),
            tests: c
                .tests
                .iter()
                .map(|t| schema::ComparisonTest {
                    method: t.method.name().into(),
                    baseline: t.baseline.name().into(),
                    measure: match t.measure {
                        Measure::Overall => "overall".into(),
                        Measure::FailingClusters => "failing-clusters".into(),
                    },
                    difference: t.difference,
                    welch_p: t.welch.map(|w| w.p),
                    mann_whitney_p: t.mann_whitney.map(|u| u.p),
                })
                .collect(),
        });
    let file = Path::new(&r.retrained.path).file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default();
    Ok(Some(schema::Retraining {
        accuracy_before: r.before.overall,
        accuracy_after: r.after.overall,
        seed: r.seeds.get("retrain").copied().unwrap_or(0),
        clusters: gains,
        failing_before: r.before.failing_clusters,
        failing_after: r.after.failing_clusters,
        epochs: r.hyperparameters.epochs,
        chosen_epoch: r.chosen_epoch,
        retrained_model: file,
        retrained_sha256: r.retrained.sha256,
        comparison,
    }))
}
