//! One conversion each way between the pipeline's closed sets and the report schema's
//! (`hudd-report`, shared with the viewer, which cannot depend on the pipeline). Both sides spell
//! every value the same way in JSON; the tests below fail when they drift apart.

use hudd_report as schema;

use crate::cluster::{KChoice, LayerRule, Linkage, Method};
use crate::config::TaskKind;
use crate::dataset::Split;
use crate::distance::Normalize;
use crate::relevance::Preset;

/// `impl From<A> for B` and back, variant by variant (a missing variant does not compile).
macro_rules! both_ways {
    ($core:ident <=> $schema:ident { $($a:ident <=> $b:ident),+ $(,)? }) => {
        impl From<$core> for schema::$schema {
            fn from(v: $core) -> Self {
                match v {
                    $($core::$a => schema::$schema::$b),+
                }
            }
        }
        impl From<schema::$schema> for $core {
            fn from(v: schema::$schema) -> Self {
                match v {
                    $(schema::$schema::$b => $core::$a),+
                }
            }
        }
    };
}

both_ways!(Preset <=> Preset {
    Hudd <=> Hudd,
    EpsilonPlus <=> EpsilonPlus,
    EpsilonPlusFlat <=> EpsilonPlusFlat,
    EpsilonGammaBox <=> EpsilonGammaBox,
    EpsilonAlpha2Beta1 <=> EpsilonAlpha2Beta1,
});
both_ways!(Linkage <=> Linkage { WardRows <=> WardRows, Ward <=> Ward, Average <=> Average });
both_ways!(Method <=> Method { Hudd <=> Hudd, Ward <=> Ward, Average <=> Average, Hdbscan <=> Hdbscan });
both_ways!(Normalize <=> Normalize { None <=> None, L2 <=> L2, Cosine <=> Cosine });
both_ways!(LayerRule <=> LayerRule { Wicd <=> Wicd, Silhouette <=> Silhouette });
both_ways!(Split <=> Split { Train <=> Train, Test <=> Test, Improvement <=> Improvement });
both_ways!(TaskKind <=> Task { Classification <=> Classification, Regression <=> Regression });

/// How `k` was chosen, as the report records it: the method and, for the fallback, why.
pub fn k_choice(k: &KChoice) -> (schema::KChoice, Option<String>) {
    match k {
        KChoice::Knee => (schema::KChoice::Knee, None),
        KChoice::Fallback { reason } => (schema::KChoice::Fallback, Some(reason.clone())),
        KChoice::Fixed => (schema::KChoice::Fixed, None),
        KChoice::Hdbscan => (schema::KChoice::Hdbscan, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every schema value maps to a pipeline value with the same JSON spelling, and back.
    fn same_spelling<C, S>(all: &[S])
    where
        C: From<S> + serde::Serialize + Copy,
        S: From<C> + serde::Serialize + Copy + PartialEq + std::fmt::Debug,
    {
        for &s in all {
            let c = C::from(s);
            assert_eq!(serde_json::to_value(c).unwrap(), serde_json::to_value(s).unwrap(), "{s:?}");
            assert_eq!(S::from(c), s);
        }
    }

    #[test]
    fn closed_sets_are_spelled_alike_on_both_sides() {
        same_spelling::<Preset, _>(schema::Preset::ALL);
        same_spelling::<Linkage, _>(schema::Linkage::ALL);
        same_spelling::<Method, _>(schema::Method::ALL);
        same_spelling::<Normalize, _>(schema::Normalize::ALL);
        same_spelling::<LayerRule, _>(schema::LayerRule::ALL);
        same_spelling::<Split, _>(schema::Split::ALL);
        same_spelling::<TaskKind, _>(schema::Task::ALL);
        assert_eq!(Preset::ALL.len(), schema::Preset::ALL.len());
        for p in Preset::ALL {
            assert_eq!(p.name(), schema::Preset::from(p).name());
        }
        let fallback = KChoice::Fallback { reason: "why".into() };
        assert_eq!(k_choice(&fallback), (schema::KChoice::Fallback, Some("why".into())));
        // The pipeline's tag is the schema's name.
        for (k, s) in [
            (KChoice::Knee, schema::KChoice::Knee),
            (fallback, schema::KChoice::Fallback),
            (KChoice::Fixed, schema::KChoice::Fixed),
            (KChoice::Hdbscan, schema::KChoice::Hdbscan),
        ] {
            assert_eq!(serde_json::to_value(&k).unwrap()["method"], s.name());
        }
    }
}
