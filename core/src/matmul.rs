//! Matrix products on the `gemm` crate's packed kernels (the crate candle uses; AVX2, AVX-512 or
//! NEON chosen at run time), behind one safe function: the only place hudd calls them. f32 for the
//! relevance passes, f64 for the heatmap distances.

use gemm::Parallelism;
use ndarray::{ArrayView2, ArrayViewMut2};

/// The element types hudd multiplies: f32 and f64 (gemm's kernels for other types are not used).
pub(crate) trait Element: Copy + Send + Sync + 'static + private::Sealed {
    /// 0.
    const ZERO: Self;
    /// 1.
    const ONE: Self;
}

impl Element for f32 {
    const ZERO: f32 = 0.0;
    const ONE: f32 = 1.0;
}

impl Element for f64 {
    const ZERO: f64 = 0.0;
    const ONE: f64 = 1.0;
}

mod private {
    pub trait Sealed {}
    impl Sealed for f32 {}
    impl Sealed for f64 {}
}

/// Whether one product may split itself over rayon's threads: worth it when the caller has fewer
/// independent products than threads (one large dense layer, one chunk of images).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Threads {
    /// On the calling thread.
    One,
    /// Over the current rayon pool.
    All,
}

impl Threads {
    /// For one of `products` independent products run side by side: each on one thread when
    /// there are enough of them to keep the pool busy, else each over the whole pool.
    pub(crate) fn for_products(products: usize) -> Threads {
        if products < rayon::current_num_threads() {
            Threads::All
        } else {
            Threads::One
        }
    }
}

/// `dst = lhs · rhs`, or `dst += lhs · rhs` when `accumulate`. Any strides (transposed views and
/// column blocks need no copy).
///
/// # Panics
/// If the shapes do not chain: a programming error, never a consequence of the input data.
pub(crate) fn matmul<T: Element>(
    mut dst: ArrayViewMut2<'_, T>,
    lhs: ArrayView2<'_, T>,
    rhs: ArrayView2<'_, T>,
    accumulate: bool,
    threads: Threads,
) {
    let (m, k) = lhs.dim();
    let (k_rhs, n) = rhs.dim();
    assert_eq!(k, k_rhs, "matmul: inner dimensions differ");
    assert_eq!(dst.dim(), (m, n), "matmul: the destination's shape");
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            dst.fill(T::ZERO);
        }
        return;
    }
    let (ds, ls, rs) = (dst.strides().to_vec(), lhs.strides().to_vec(), rhs.strides().to_vec());
    let parallelism = match threads {
        Threads::One => Parallelism::None,
        Threads::All => Parallelism::Rayon(0),
    };
    let dst_ptr = dst.as_mut_ptr();
    #[allow(unsafe_code)]
    // SAFETY: the three pointers are the first elements of live ndarray views whose shapes were
    // checked above, and the strides are those views' own (in elements), so every address gemm forms,
    // `p + i·row_stride + j·col_stride` for `i < rows`, `j < cols`, lies inside its view. `dst` is a
    // unique mutable borrow, so it aliases neither operand, and a mutable view never has a zero
    // stride over more than one element, so no element of `dst` is written twice concurrently.
    // With `read_dst` false gemm never reads `dst` (it may be uninitialised by its contract; ours is
    // initialised anyway).
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst_ptr,
            ds[1],
            ds[0],
            accumulate,
            lhs.as_ptr(),
            ls[1],
            ls[0],
            rhs.as_ptr(),
            rs[1],
            rs[0],
            T::ONE,
            T::ONE,
            false,
            false,
            false,
            parallelism,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::relevance::linear::tests::values;
    use ndarray::{s, Array2};

    fn matrix(r: usize, c: usize, seed: u64) -> Array2<f32> {
        Array2::from_shape_vec((r, c), values(r * c, seed)).unwrap()
    }

    fn close(a: &Array2<f32>, b: &Array2<f32>) -> bool {
        a.shape() == b.shape() && a.iter().zip(b).all(|(x, y)| (x - y).abs() <= 1e-4 * (1.0 + y.abs()))
    }

    #[test]
    fn products_equal_ndarray_for_every_layout() {
        for (m, k, n) in [(1, 1, 1), (3, 5, 7), (17, 33, 65), (64, 300, 9), (5, 0, 4)] {
            let (a, b) = (matrix(m, k, 1), matrix(k, n, 2));
            let want = a.dot(&b);
            for threads in [Threads::One, Threads::All] {
                let mut got = Array2::from_elem((m, n), f32::NAN);
                matmul(got.view_mut(), a.view(), b.view(), false, threads);
                assert!(close(&got, &want), "{m}×{k}×{n}");
                // Transposed operands and a transposed destination, as views.
                let (at, bt) = (a.t().to_owned(), b.t().to_owned());
                let mut got_t = Array2::from_elem((n, m), f32::NAN);
                matmul(got_t.view_mut().reversed_axes(), at.t(), bt.t(), false, threads);
                assert!(close(&got_t.t().to_owned(), &want), "{m}×{k}×{n} transposed");
            }
        }
    }

    #[test]
    fn f64_products_equal_ndarray_and_accumulate() {
        let a = matrix(37, 300, 6).mapv(f64::from);
        let b = matrix(300, 29, 7).mapv(f64::from);
        let want = a.dot(&b);
        let mut got = Array2::from_elem((37, 29), 1.0f64);
        matmul(got.view_mut(), a.view(), b.view(), true, Threads::One);
        assert!(got.iter().zip(&want).all(|(g, w)| (g - 1.0 - w).abs() <= 1e-12 * (1.0 + w.abs())));
    }

    #[test]
    fn accumulating_adds_and_column_blocks_stay_in_place() {
        let (a, b) = (matrix(6, 4, 3), matrix(4, 10, 4));
        let mut dst = matrix(6, 10, 5);
        let before = dst.clone();
        // Only columns 2..7 change, by a · b[:, 2..7].
        matmul(dst.slice_mut(s![.., 2..7]), a.view(), b.slice(s![.., 2..7]), true, Threads::One);
        let mut want = before.clone();
        let add = a.dot(&b.slice(s![.., 2..7]));
        want.slice_mut(s![.., 2..7]).zip_mut_with(&add, |w, &v| *w += v);
        assert!(close(&dst, &want));
        assert_eq!(dst.slice(s![.., ..2]), before.slice(s![.., ..2]));
    }
}
