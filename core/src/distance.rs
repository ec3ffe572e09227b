//! Pairwise Euclidean distances between heatmaps (one row per image), computed as one matrix
//! product: `d²(a, b) = ‖a‖² + ‖b‖² − 2·a·b`, clamped at zero, with an exact zero diagonal.
//!
//! Rows are centred (distances do not change under translation, and centring removes most of the
//! cancellation in the formula) and the products run in f64 on the `gemm` crate's kernels, tile by
//! tile over the upper triangle, in parallel. A tile converts its rows to f64 on the fly, at most
//! [`COLUMNS`] columns at a time (wider rows are summed chunk by chunk), so memory stays at the f32
//! input plus the `N × N` result and a few tiles of bounded size, however wide the layer.

use ndarray::{s, Array1, Array2, ArrayView2, ArrayViewMut2, Axis};
use rayon::prelude::*;

use crate::matmul::{matmul, Threads};

/// Rows per tile: large enough for an efficient product, small enough for many parallel tiles.
const TILE: usize = 256;

/// Columns a tile converts at once: a tile of 256 rows takes at most 256 MiB in f64. Rows up to
/// this wide are one chunk (one product per tile).
const COLUMNS: usize = 131_072;

/// How heatmaps are scaled before their distances are taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum Normalize {
    /// Raw relevance (HUDD).
    #[default]
    None,
    /// Each heatmap divided by its L2 norm: distances compare where a model looked, not how
    /// confident it was (LRP relevance sums to the explained logit).
    L2,
    /// Cosine dissimilarity `1 − cos(a, b)` instead of the Euclidean distance.
    Cosine,
}

impl Normalize {
    /// The option's name, as on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Normalize::None => "none",
            Normalize::L2 => "l2",
            Normalize::Cosine => "cosine",
        }
    }
}

impl std::fmt::Display for Normalize {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Per-row scale of the normalisation: 1 (none), or 1 / ‖row‖ (l2, cosine; 0 for a zero row).
fn row_scales<T: Copy + Into<f64>>(x: ArrayView2<'_, T>, normalize: Normalize) -> Vec<f64> {
    match normalize {
        Normalize::None => vec![1.0; x.nrows()],
        Normalize::L2 | Normalize::Cosine => x
            .axis_iter(Axis(0))
            .map(|r| {
                let norm = r.iter().map(|&v| v.into() * v.into()).sum::<f64>().sqrt();
                if norm > 0.0 {
                    1.0 / norm
                } else {
                    0.0
                }
            })
            .collect(),
    }
}

/// The distance of two rows from their product `g` and squared norms: Euclidean, or for cosine
/// (rows scaled to unit length, or zero) 1 − cos.
fn from_gram(g: f64, qi: f64, qj: f64, normalize: Normalize) -> f64 {
    if normalize == Normalize::Cosine {
        if qi > 0.0 && qj > 0.0 {
            (1.0 - g).max(0.0f64)
        } else {
            1.0
        }
    } else {
        (qi + qj - 2.0 * g).max(0.0).sqrt()
    }
}

/// The `M × N` distances between the rows of `a` and the rows of `b` (the same distance as
/// [`pairwise`]: Euclidean after the normalisation, or 1 − cos): one matrix product, in f64, both
/// sides centred on `b`'s column means.
pub fn cross(a: ArrayView2<'_, f32>, b: ArrayView2<'_, f32>, normalize: Normalize) -> Array2<f64> {
    let (sa, sb) = (row_scales(a, normalize), row_scales(b, normalize));
    let centre = normalize != Normalize::Cosine;
    let mut mean = Array1::<f64>::zeros(b.ncols());
    if centre && b.nrows() > 0 {
        for (r, &k) in b.axis_iter(Axis(0)).zip(&sb) {
            mean.zip_mut_with(&r, |m, &v| *m += f64::from(v) * k);
        }
        mean /= b.nrows() as f64;
    }
    let rows = |x: ArrayView2<'_, f32>, scale: &[f64]| -> Array2<f64> {
        let mut t = Array2::<f64>::zeros(x.raw_dim());
        for ((mut dst, src), &k) in t.axis_iter_mut(Axis(0)).zip(x.axis_iter(Axis(0))).zip(scale) {
            dst.iter_mut().zip(src).zip(&mean).for_each(|((d, &v), &m)| *d = f64::from(v) * k - m);
        }
        t
    };
    let (ta, tb) = (rows(a, &sa), rows(b, &sb));
    let sq = |t: &Array2<f64>| -> Vec<f64> { t.axis_iter(Axis(0)).map(|r| r.dot(&r)).collect() };
    let (qa, qb) = (sq(&ta), sq(&tb));
    // One product per block of 32 rows of `a`, the blocks in parallel (ndarray's product is
    // single-threaded); each element is the same dot product as in one product over all rows.
    const BLOCK: usize = 32;
    let tbt = tb.t();
    let blocks: Vec<Array2<f64>> = (0..ta.nrows().div_ceil(BLOCK))
        .into_par_iter()
        .map(|k| {
            let from = k * BLOCK;
            let mut out = ta.slice(s![from..(from + BLOCK).min(ta.nrows()), ..]).dot(&tbt);
            for ((i, j), v) in out.indexed_iter_mut() {
                *v = from_gram(*v, qa[from + i], qb[j], normalize);
            }
            out
        })
        .collect();
    let mut d = Array2::<f64>::zeros((ta.nrows(), tb.nrows()));
    for (k, b) in blocks.iter().enumerate() {
        d.slice_mut(s![k * BLOCK..k * BLOCK + b.nrows(), ..]).assign(b);
    }
    d
}

/// The symmetric `N × N` distance matrix between the rows of `x` (`N × D`, f32 heatmaps or the f64
/// rows of a distance matrix).
pub fn pairwise<T: Copy + Into<f64> + Sync>(x: ArrayView2<'_, T>, normalize: Normalize) -> Array2<f64> {
    let n = x.nrows();
    // Per-row scale (L2, cosine) and the column means of the scaled rows (centring).
    let scale = row_scales(x, normalize);
    let centre = normalize != Normalize::Cosine;
    let mean: Array1<f64> = if centre && n > 0 {
        let mut m = Array1::<f64>::zeros(x.ncols());
        for (r, &k) in x.axis_iter(Axis(0)).zip(&scale) {
            m.zip_mut_with(&r, |m, &v| *m += v.into() * k);
        }
        m / n as f64
    } else {
        Array1::zeros(x.ncols())
    };
    // Rows `range`, columns `cols`, scaled and centred, in f64.
    let rows = |range: std::ops::Range<usize>, cols: std::ops::Range<usize>| -> Array2<f64> {
        let mut t = Array2::<f64>::zeros((range.len(), cols.len()));
        let mean = mean.slice(s![cols.clone()]);
        for (mut dst, i) in t.axis_iter_mut(Axis(0)).zip(range) {
            let k = scale[i];
            let src = x.slice(s![i, cols.clone()]);
            dst.iter_mut().zip(src).zip(mean).for_each(|((d, &v), &m)| *d = v.into() * k - m);
        }
        t
    };
    // Each stripe of TILE rows computes its tiles on and right of the diagonal, in place, adding
    // the products of the column chunks in order (one chunk: the product itself); the lower
    // triangle is mirrored afterwards. No tile outlives its product.
    let blocks = n.div_ceil(TILE);
    let width = x.ncols();
    let mut gram = Array2::<f64>::zeros((n, n));
    gram.as_slice_mut().expect("new array").par_chunks_mut((TILE * n).max(1)).enumerate().for_each(|(i, stripe)| {
        let ri = i * TILE..((i + 1) * TILE).min(n);
        let mut stripe = ArrayViewMut2::from_shape((ri.len(), n), stripe).expect("a stripe is TILE whole rows");
        for from in (0..width.max(1)).step_by(COLUMNS) {
            let cols = from..(from + COLUMNS).min(width);
            let a = rows(ri.clone(), cols.clone());
            for j in i..blocks {
                let rj = j * TILE..((j + 1) * TILE).min(n);
                let dst = stripe.slice_mut(s![.., rj.clone()]);
                // Each tile on one thread (the stripes are the parallelism): the same sums whatever
                // the thread count.
                if i == j {
                    matmul(dst, a.view(), a.t(), true, Threads::One);
                } else {
                    matmul(dst, a.view(), rows(rj, cols.clone()).t(), true, Threads::One);
                }
            }
        }
    });
    // Mirror in 64 × 64 blocks (cache-friendly transpose).
    let g = gram.as_slice_mut().expect("new array");
    for bi in (0..n).step_by(64) {
        for bj in (0..=bi).step_by(64) {
            for i in bi..(bi + 64).min(n) {
                for j in bj..(bj + 64).min(i) {
                    g[i * n + j] = g[j * n + i];
                }
            }
        }
    }
    let sq: Vec<f64> = gram.diag().to_vec();
    let mut d = gram;
    let flat = d.as_slice_mut().expect("new array");
    flat.par_chunks_mut(n.max(1)).enumerate().for_each(|(i, row)| {
        for (j, v) in row.iter_mut().enumerate() {
            *v = if i == j { 0.0 } else { from_gram(*v, sq[i], sq[j], normalize) };
        }
    });
    d
}

/// The upper triangle of a square matrix, row by row (`(0,1), (0,2), …, (1,2), …`): scipy's and
/// kodama's condensed form.
pub fn condensed(d: &Array2<f64>) -> Vec<f64> {
    let n = d.nrows();
    let mut out = Vec::with_capacity(n * n.saturating_sub(1) / 2);
    for i in 0..n {
        out.extend(d.slice(s![i, i + 1..]).iter());
    }
    out
}

/// Each row divided by its own maximum (HUDD's normalisation of a distance matrix; a row of zeros
/// stays zero). The result is not symmetric.
pub fn row_max_normalized(d: &Array2<f64>) -> Array2<f64> {
    let mut out = d.as_standard_layout().into_owned();
    let n = out.ncols().max(1);
    out.as_slice_mut().expect("standard layout").par_chunks_mut(n).for_each(|row| {
        let m = row.iter().fold(0.0f64, |m, &v| m.max(v));
        if m > 0.0 {
            row.iter_mut().for_each(|v| *v /= m);
        }
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cross_distances_are_those_of_pairwise() {
        // 75 rows against 4: three blocks of rows (the last one short).
        let x = Array2::from_shape_fn((79, 5), |(i, j)| ((i * 7 + j * 3) % 11) as f32 - 4.0 + i as f32 * 0.1);
        for normalize in [Normalize::None, Normalize::L2, Normalize::Cosine] {
            let all = pairwise(x.view(), normalize);
            let c = cross(x.slice(s![..75, ..]), x.slice(s![75.., ..]), normalize);
            assert_eq!(c.dim(), (75, 4));
            for ((i, j), v) in c.indexed_iter() {
                assert!((v - all[[i, j + 75]]).abs() < 1e-9, "{normalize}: {v} vs {}", all[[i, j + 75]]);
            }
            // A row's distances do not depend on the rows beside it.
            let one = cross(x.slice(s![40..41, ..]), x.slice(s![75.., ..]), normalize);
            assert_eq!(one.row(0), c.row(40), "{normalize}");
        }
    }

    fn naive(x: &Array2<f32>) -> Array2<f64> {
        let n = x.nrows();
        Array2::from_shape_fn((n, n), |(i, j)| {
            x.row(i).iter().zip(x.row(j)).map(|(&a, &b)| (f64::from(a) - f64::from(b)).powi(2)).sum::<f64>().sqrt()
        })
    }

    fn data(n: usize, d: usize, seed: u64) -> Array2<f32> {
        let v = crate::relevance::linear::tests::values(n * d, seed);
        Array2::from_shape_vec((n, d), v).unwrap()
    }

    #[test]
    fn gram_distances_equal_the_definition_across_tiles() {
        // 300 rows: two tiles, so the off-diagonal tile and its transpose are exercised. An offset
        // far from zero makes the uncentred formula lose digits; centring must keep them.
        let x = data(300, 37, 1).mapv(|v| v + 1000.0);
        let got = pairwise(x.view(), Normalize::None);
        let want = naive(&x);
        for ((i, j), w) in want.indexed_iter() {
            let g = got[[i, j]];
            assert!((g - w).abs() <= 1e-4 * w.max(1e-3), "({i},{j}): {g} vs {w}");
        }
        assert!(got.diag().iter().all(|&v| v == 0.0));
        assert_eq!(got, got.t());
    }

    #[test]
    fn rows_wider_than_a_chunk_are_summed_chunk_by_chunk() {
        // Two column chunks (the second of 1,000 columns) and two row tiles would take too long
        // for the naive check: 20 rows, one tile, both chunks.
        let x = data(20, COLUMNS + 1_000, 3).mapv(|v| v + 10.0);
        let got = pairwise(x.view(), Normalize::None);
        let want = naive(&x);
        for ((i, j), w) in want.indexed_iter() {
            let g = got[[i, j]];
            assert!((g - w).abs() <= 1e-6 * w.max(1e-3), "({i},{j}): {g} vs {w}");
        }
        // Every chunk counts: the distance without the last 1,000 columns is smaller.
        let first = pairwise(x.slice(s![.., ..COLUMNS]), Normalize::None);
        assert!(first[[0, 1]] < got[[0, 1]] - 1.0, "{} vs {}", first[[0, 1]], got[[0, 1]]);
    }

    #[test]
    fn identical_rows_are_at_distance_zero_not_nan() {
        let mut x = data(5, 8, 2);
        let r = x.row(0).to_owned();
        x.row_mut(3).assign(&r);
        let d = pairwise(x.view(), Normalize::None);
        assert_eq!(d[[0, 3]], 0.0);
        assert!(d.iter().all(|v| v.is_finite()));
    }

    #[test]
    fn normalisations() {
        let x = Array2::from_shape_vec((3, 2), vec![1.0f32, 0.0, 5.0, 0.0, 0.0, 2.0]).unwrap();
        let l2 = pairwise(x.view(), Normalize::L2);
        assert!(l2[[0, 1]].abs() < 1e-12, "same direction, different size");
        assert!((l2[[0, 2]] - 2f64.sqrt()).abs() < 1e-12);
        let cos = pairwise(x.view(), Normalize::Cosine);
        assert!(cos[[0, 1]].abs() < 1e-12);
        assert!((cos[[1, 2]] - 1.0).abs() < 1e-12);
    }

    #[test]
    fn condensed_and_row_max() {
        let d = Array2::from_shape_vec((3, 3), vec![0.0, 1.0, 2.0, 1.0, 0.0, 4.0, 2.0, 4.0, 0.0]).unwrap();
        assert_eq!(condensed(&d), vec![1.0, 2.0, 4.0]);
        let n = row_max_normalized(&d);
        assert_eq!(n.row(0).to_vec(), vec![0.0, 0.5, 1.0]);
        assert_eq!(n.row(1).to_vec(), vec![0.25, 0.0, 1.0]);
    }
}
