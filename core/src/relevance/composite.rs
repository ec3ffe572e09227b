//! Presets (Zennit's composites): which rule each layer gets.
//!
//! A layer is classified by [`LayerKind`]; a [`Preset`] maps the kind, and whether the layer is the
//! first of its kind that reads the model input, to a [`Rule`]. Parameter-free linear ops (average
//! pooling, residual sums) always use Norm with the preset's stabiliser, activations pass relevance
//! through, and max pooling routes it to the winner, as in Zennit's base layer map.

use serde::{Deserialize, Serialize};

use super::Rule;
use crate::error::{Error, Result};

/// What kind of layer a rule is chosen for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayerKind {
    /// Dense (Gemm, MatMul).
    Dense,
    /// Convolution.
    Conv,
}

/// A named preset. `hudd` is the default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum Preset {
    /// The original HUDD toolset: z⁺ without bias for dense layers, ε = 1e-9 (bias included) for
    /// convolutions, winner-takes-all max pooling; stabiliser 1e-9.
    #[default]
    Hudd,
    /// Zennit's `EpsilonPlus`: ε = 1e-6 for dense layers, z⁺ for convolutions.
    EpsilonPlus,
    /// Zennit's `EpsilonPlusFlat`: as `epsilon-plus`, the first linear layer Flat.
    EpsilonPlusFlat,
    /// Zennit's `EpsilonGammaBox`: ε for dense layers, γ = 0.25 for convolutions, z^B for the first
    /// convolution with the input's bounds.
    EpsilonGammaBox,
    /// Zennit's `EpsilonAlpha2Beta1`: ε for dense layers, α2β1 for convolutions.
    #[serde(rename = "epsilon-alpha2-beta1")]
    #[cfg_attr(feature = "clap", value(name = "epsilon-alpha2-beta1"))]
    EpsilonAlpha2Beta1,
}

impl Preset {
    /// Every preset, for `--help` and validation.
    pub const ALL: [Preset; 5] = [
        Preset::Hudd,
        Preset::EpsilonPlus,
        Preset::EpsilonPlusFlat,
        Preset::EpsilonGammaBox,
        Preset::EpsilonAlpha2Beta1,
    ];

    /// The preset's name (`epsilon-gamma-box`).
    pub fn name(self) -> &'static str {
        match self {
            Preset::Hudd => "hudd",
            Preset::EpsilonPlus => "epsilon-plus",
            Preset::EpsilonPlusFlat => "epsilon-plus-flat",
            Preset::EpsilonGammaBox => "epsilon-gamma-box",
            Preset::EpsilonAlpha2Beta1 => "epsilon-alpha2-beta1",
        }
    }

    /// Looks a preset up by name.
    pub fn from_name(name: &str) -> Result<Preset> {
        Preset::ALL.into_iter().find(|p| p.name() == name).ok_or_else(|| {
            let names: Vec<&str> = Preset::ALL.iter().map(|p| p.name()).collect();
            Error::Config(format!("unknown preset `{name}` (presets: {})", names.join(", ")))
        })
    }

    /// The stabiliser of the preset's Norm steps.
    pub fn stabilizer(self) -> f32 {
        match self {
            Preset::Hudd => 1e-9,
            _ => 1e-6,
        }
    }

    /// The rule for a layer. `first` marks the layer that Zennit's first-layer map would match
    /// (the first convolution for `epsilon-gamma-box`, the first linear layer for
    /// `epsilon-plus-flat`); `bounds` are the input's lowest and highest values per channel, for z^B.
    pub fn rule(self, kind: LayerKind, first: bool, bounds: &(Vec<f32>, Vec<f32>)) -> Result<Rule> {
        let eps = Rule::epsilon(1e-6);
        Ok(match (self, kind) {
            (Preset::Hudd, LayerKind::Dense) => Rule::zplus(1e-9).without_bias(),
            (Preset::Hudd, LayerKind::Conv) => Rule::epsilon(1e-9),
            (Preset::EpsilonPlusFlat, _) if first => Rule::Flat { stabilizer: 1e-6 },
            (Preset::EpsilonPlus | Preset::EpsilonPlusFlat, LayerKind::Conv) => Rule::zplus(1e-6),
            (Preset::EpsilonGammaBox, LayerKind::Conv) if first => Rule::zbox(bounds.0.clone(), bounds.1.clone())?,
            (Preset::EpsilonGammaBox, LayerKind::Conv) => Rule::gamma(0.25)?,
            (Preset::EpsilonAlpha2Beta1, LayerKind::Conv) => Rule::alpha_beta(2.0, 1.0)?,
            (_, LayerKind::Dense) => eps,
        })
    }

    /// Whether `first` matters for this preset and which layer kinds it applies to.
    pub fn first_layer_kinds(self) -> &'static [LayerKind] {
        match self {
            Preset::EpsilonGammaBox => &[LayerKind::Conv],
            Preset::EpsilonPlusFlat => &[LayerKind::Conv, LayerKind::Dense],
            _ => &[],
        }
    }
}

impl std::fmt::Display for Preset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_names_list_the_choices() {
        for p in Preset::ALL {
            assert_eq!(Preset::from_name(p.name()).unwrap(), p);
        }
        let err = Preset::from_name("zplus").unwrap_err().to_string();
        assert!(err.contains("epsilon-gamma-box"), "{err}");
    }

    #[test]
    fn hudd_preset_is_the_original_toolset() {
        let b = (vec![0.0], vec![1.0]);
        assert_eq!(Preset::Hudd.rule(LayerKind::Dense, false, &b).unwrap(), Rule::zplus(1e-9).without_bias());
        assert_eq!(Preset::Hudd.rule(LayerKind::Conv, true, &b).unwrap(), Rule::epsilon(1e-9));
        assert!(matches!(Preset::EpsilonGammaBox.rule(LayerKind::Conv, true, &b).unwrap(), Rule::ZBox { .. }));
        assert!(matches!(Preset::EpsilonPlusFlat.rule(LayerKind::Dense, true, &b).unwrap(), Rule::Flat { .. }));
    }
}
