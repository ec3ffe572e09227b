//! LRP heatmaps against Zennit (the outside oracle): every preset, every layer, every image.

use hudd_core::model::Model;
use hudd_core::relevance::{Explainer, Preset, Start};
use hudd_core::Config;

use crate::common::*;

fn l2_rel_err(a: &[f32], b: &[f32]) -> f64 {
    let num: f64 = a.iter().zip(b).map(|(x, y)| f64::from(x - y).powi(2)).sum::<f64>().sqrt();
    let den: f64 = b.iter().map(|y| f64::from(*y).powi(2)).sum::<f64>().sqrt();
    num / den.max(1e-30)
}

#[test]
fn every_preset_matches_zennit_at_every_layer() {
    let dir = fixtures().join("lrp/fmnist");
    let index: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("index.json")).unwrap()).unwrap();
    let model = Model::load(fmnist_model()).unwrap();
    let spec = Config::load(Some(&fmnist_config()), &[]).unwrap().input_spec(model.info()).unwrap();
    let tensors: Vec<_> = index["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| hudd_core::input::load(&fmnist_data().join(p.as_str().unwrap()), &spec).unwrap())
        .collect();
    let batch = hudd_core::input::stack(&tensors, &spec);
    let presets = index["presets"].as_object().unwrap();
    assert_eq!(presets.len(), Preset::ALL.len(), "the reference covers every preset");
    for (name, files) in presets {
        let preset = Preset::from_name(name).unwrap();
        let explainer = Explainer::new(&model, &spec, "logits", preset).unwrap();
        let rel = explainer.explain(batch.view(), &Start::Predicted).unwrap();
        for (tensor, file) in files.as_object().unwrap() {
            let (shape, want) = read_npy(&dir.join(file.as_str().unwrap()));
            let got = rel.get(tensor).unwrap_or_else(|| panic!("{name}: no relevance for `{tensor}`"));
            assert_eq!(got.shape(), shape.as_slice(), "{name}: {tensor}");
            let got: Vec<f32> = got.iter().copied().collect();
            let per = want.len() / shape[0];
            for i in 0..shape[0] {
                let err = l2_rel_err(&got[i * per..(i + 1) * per], &want[i * per..(i + 1) * per]);
                assert!(err <= 1e-4, "{name}: tensor `{tensor}`, image {i}: relative L2 error {err:.2e}");
            }
        }
    }
}
