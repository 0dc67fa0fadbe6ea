//! Matrix products with a mostly-zero operand, for `f32` on CPUs with AVX2 and FMA.
//!
//! MNIST's pixels, scaled to [0, 1] without normalisation as the paper does, are about 81%
//! exact zeros, so the first layer's two products per training step — the forward `X Wᵀ`
//! and the weight gradient `Gᵀ X` — spend four fifths of a dense GEMM's work on zeros.
//! [`try_matmul`] notices such an operand and packs it in blocks of six rows: for each block
//! and each run of 256 inner indices, the columns where any of the six rows is non-zero and
//! the six values there. The kernel then multiplies only those columns, six result rows at
//! a time against one loaded row of the dense operand. On real MNIST batches about 43% of
//! columns survive for the forward product and 34% for the weight gradient, against an
//! element density of 19%: the union costs some zeros but keeps the inner loop a
//! register-blocked FMA like a dense GEMM's.
//!
//! Each entry of the result is the fused multiply-add chain `c = fma(aᵢₖ, bₖⱼ, c)` over the
//! sparse operand's non-zeros in increasing `k`, starting from `+0`. That is one fixed order
//! whatever the thread count or tiling ([`reference_matmul`] is the scalar statement of it,
//! and the tests compare bit for bit), but not faer's order, so results differ from the
//! dense path by rounding. Skipping a zero `aᵢₖ` drops a term `0 · bₖⱼ`; that is exact
//! unless `bₖⱼ` is infinite or NaN, so a dense operand with a non-finite entry goes to the
//! dense GEMM and NaNs propagate as they would there.

use ndarray::{Array2, ArrayView2};
use rayon::prelude::*;

/// The sparse path is considered when at most this fraction of the operand's entries is
/// non-zero (checked on a sample, then exactly).
pub(crate) const MAX_DENSITY: f64 = 0.35;

/// ... and taken when, over blocks of [`ROWS`] rows, the columns where any of the block's
/// rows is non-zero are at most this fraction of all columns: those columns are the work.
/// (MNIST batches: 0.43 for six images, 0.34 for six pixels over a batch.)
pub(crate) const MAX_UNION_DENSITY: f64 = 0.6;

/// Products below `m·n·k` = 2²⁴ stay dense: the scan and the packing would not pay.
const MIN_WORK: usize = 1 << 24;

/// Rows of the sparse operand multiplied together: each loaded row of the dense operand is
/// used by six rows' accumulators (12 of the 16 AVX2 registers at 16 columns).
const ROWS: usize = 6;

/// Columns of the result per register tile (two 8-lane vectors per row).
const TILE: usize = 16;

/// Rows of the dense operand per inner block.
const K_BLOCK: usize = 256;

/// Columns of the result per panel: `[K_BLOCK, 256]` of `B` is 256 KiB, half an L2.
const N_GROUP: usize = 256;

/// Row blocks whose entries in one inner block (about 4 × 110 × 28 bytes on MNIST) stay in
/// L1 while the panel's column tiles go by.
const M_GROUP: usize = 4;

/// Entries sampled before building the packing, to reject dense operands in microseconds.
const SAMPLES: usize = 1024;

/// `a · b` through the sparse kernel when `a` (or else `b`) is sparse enough and the
/// product large enough; `None` leaves it to the dense GEMM.
pub(crate) fn try_matmul(a: ArrayView2<f32>, b: ArrayView2<f32>) -> Option<Array2<f32>> {
    if !simd_available() {
        return None;
    }
    let (m, k) = a.dim();
    let n = b.ncols();
    if m.saturating_mul(n).saturating_mul(k) < MIN_WORK {
        return None;
    }
    // C = A B with B sparse is Cᵀ = Bᵀ Aᵀ with Bᵀ sparse on the left.
    let (packed, dense, transposed) = match RowBlocks::of_sparse(a) {
        Some(packed) => (packed, b, false),
        None => (RowBlocks::of_sparse(b.t())?, a.reversed_axes(), true),
    };
    let dense = dense.as_standard_layout();
    if !all_finite(&dense) {
        return None;
    }
    let c = packed_times_dense(&packed, dense.view(), true);
    Some(if transposed {
        c.t().as_standard_layout().into_owned()
    } else {
        c
    })
}

/// The arithmetic [`try_matmul`] does, one entry at a time: for the test suite and for
/// anyone checking the kernel.
pub fn reference_matmul(a: ArrayView2<f32>, b: ArrayView2<f32>) -> Array2<f32> {
    Array2::from_shape_fn((a.nrows(), b.ncols()), |(i, j)| {
        let mut c = 0.0f32;
        for (kk, &v) in a.row(i).iter().enumerate() {
            if v != 0.0 {
                c = v.mul_add(b[(kk, j)], c);
            }
        }
        c
    })
}

#[cfg(target_arch = "x86_64")]
fn simd_available() -> bool {
    is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")
}

#[cfg(not(target_arch = "x86_64"))]
fn simd_available() -> bool {
    false
}

fn all_finite(a: &ndarray::CowArray<'_, f32, ndarray::Ix2>) -> bool {
    match a.as_slice() {
        Some(s) => s.iter().all(|x| x.is_finite()),
        None => a.iter().all(|x| x.is_finite()),
    }
}

/// A sparse matrix in blocks of [`ROWS`] rows: for each block, the columns where any of
/// its rows is non-zero (increasing), and at each such column the block's `ROWS` values
/// (zero where a row has none, and for the padding rows of a short last block).
pub(crate) struct RowBlocks {
    rows: usize,
    /// The union columns of every block, block after block.
    cols: Vec<u32>,
    /// `ROWS` values per entry of `cols`.
    vals: Vec<f32>,
    /// `starts[blk * (k_blocks + 1) + kb]`: the first entry of row block `blk` at or after
    /// column `kb · K_BLOCK`; entry `k_blocks` is the block's end.
    starts: Vec<usize>,
    k_blocks: usize,
}

impl RowBlocks {
    /// The packing of `a`, or `None` when it is not sparse enough ([`MAX_DENSITY`],
    /// [`MAX_UNION_DENSITY`]) or has more than `u32::MAX` columns.
    pub(crate) fn of_sparse(a: ArrayView2<f32>) -> Option<RowBlocks> {
        let (rows, cols) = a.dim();
        let total = rows * cols;
        if total == 0 || u32::try_from(cols).is_err() {
            return None;
        }
        let stride = (total / SAMPLES).max(1);
        let (seen, nonzero) = (0..total)
            .step_by(stride)
            .fold((0usize, 0usize), |(s, nz), f| {
                (s + 1, nz + usize::from(a[(f / cols, f % cols)] != 0.0))
            });
        // Slack over the sample, so that a borderline operand is decided by the exact
        // count below rather than by sampling noise.
        if nonzero as f64 > (MAX_DENSITY * 1.1) * seen as f64 {
            return None;
        }
        let n_blocks = rows.div_ceil(ROWS);
        let cap = (MAX_UNION_DENSITY * (n_blocks * cols) as f64) as usize;
        let k_blocks = cols.div_ceil(K_BLOCK);
        let mut p = RowBlocks {
            rows,
            cols: Vec::with_capacity(cap),
            vals: Vec::with_capacity(cap * ROWS),
            starts: Vec::with_capacity(n_blocks * (k_blocks + 1)),
            k_blocks,
        };
        let mut nonzero = 0usize;
        for blk in 0..n_blocks {
            let block = a.slice(ndarray::s![blk * ROWS..((blk + 1) * ROWS).min(rows), ..]);
            let mut next_kb = 0;
            for j in 0..cols {
                let column = block.column(j);
                if column.iter().all(|&v| v == 0.0) {
                    continue;
                }
                while next_kb * K_BLOCK <= j {
                    p.starts.push(p.cols.len());
                    next_kb += 1;
                }
                p.cols.push(j as u32);
                let mut vals = [0.0f32; ROWS];
                for (slot, &v) in vals.iter_mut().zip(column.iter()) {
                    nonzero += usize::from(v != 0.0);
                    *slot = v;
                }
                p.vals.extend_from_slice(&vals);
            }
            while next_kb <= k_blocks {
                p.starts.push(p.cols.len());
                next_kb += 1;
            }
            if p.cols.len() > cap || nonzero as f64 > MAX_DENSITY * total as f64 {
                return None;
            }
        }
        Some(p)
    }

    /// Row block `blk`'s union columns in inner block `kb`, and their `ROWS` values each.
    fn entries(&self, blk: usize, kb: usize) -> (&[u32], &[f32]) {
        let base = blk * (self.k_blocks + 1) + kb;
        let (s, e) = (self.starts[base], self.starts[base + 1]);
        (&self.cols[s..e], &self.vals[s * ROWS..e * ROWS])
    }
}

/// `A · B` for `A` packed in row blocks, through the AVX2 kernel when `simd` (the caller
/// has checked [`simd_available`]) and otherwise the scalar one. Both give the same bits.
fn packed_times_dense(a: &RowBlocks, b: ArrayView2<f32>, simd: bool) -> Array2<f32> {
    let n = b.ncols();
    let mut c = Array2::<f32>::zeros((a.rows, n));
    if n == 0 {
        return c;
    }
    let b = b.as_standard_layout();
    let bs = b.as_slice().expect("a standard-layout array is one slice");
    let cs = c.as_slice_mut().expect("a fresh array is one slice");
    // Several chunks per thread so that blocks of uneven density balance out.
    let n_blocks = a.rows.div_ceil(ROWS);
    let chunk_blocks = n_blocks.div_ceil(4 * rayon::current_num_threads()).max(1);
    cs.par_chunks_mut(chunk_blocks * ROWS * n)
        .enumerate()
        .for_each(|(ci, out)| {
            let blocks = ci * chunk_blocks..(ci * chunk_blocks + chunk_blocks).min(n_blocks);
            #[cfg(target_arch = "x86_64")]
            if simd {
                // SAFETY: `simd` says the CPU has AVX2 and FMA.
                unsafe { avx2::chunk(a, bs, n, blocks, out) };
                return;
            }
            #[cfg(not(target_arch = "x86_64"))]
            let _ = simd;
            for_each_tile(a, n, blocks, out, |cols, vals, j0, acc, w| {
                scalar_lanes(cols, vals, bs, n, j0, acc, 0..w)
            });
        });
    c
}

/// Lanes `lanes` of one row block's `ROWS × TILE` tile of `C` at columns `j0..`, one at a
/// time: the vector kernel's tail, and the reference. Inlined into the vector kernel's
/// caller, `mul_add` is a hardware FMA; elsewhere it may be libm's `fmaf` (same result).
#[inline(always)]
fn scalar_lanes(
    cols: &[u32],
    vals: &[f32],
    b: &[f32],
    n: usize,
    j0: usize,
    acc: &mut [[f32; TILE]; ROWS],
    lanes: std::ops::Range<usize>,
) {
    for (&kk, v) in cols.iter().zip(vals.chunks_exact(ROWS)) {
        let brow = &b[kk as usize * n + j0..][lanes.clone()];
        for (row, &vr) in acc.iter_mut().zip(v) {
            for (cj, &bj) in row[lanes.clone()].iter_mut().zip(brow) {
                *cj = vr.mul_add(bj, *cj);
            }
        }
    }
}

/// Runs `tile(cols, vals, j0, acc, w)` for every inner block, column tile and row block of
/// a chunk, with `acc` holding the block's current `ROWS × w` values of `C`. The nesting
/// is a GEMM's: a `[K_BLOCK, N_GROUP]` panel of `B` stays in L2 while groups of
/// [`M_GROUP`] row blocks go over it, each group's entries staying in L1 across the
/// panel's column tiles. Every entry of `C` still takes its terms in increasing `k`.
fn for_each_tile(
    a: &RowBlocks,
    n: usize,
    blocks: std::ops::Range<usize>,
    out: &mut [f32],
    mut tile: impl FnMut(&[u32], &[f32], usize, &mut [[f32; TILE]; ROWS], usize),
) {
    let first = blocks.start;
    let out_rows = out.len() / n;
    for kb in 0..a.k_blocks {
        for g0 in (0..n).step_by(N_GROUP) {
            let g1 = (g0 + N_GROUP).min(n);
            for m0 in blocks.clone().step_by(M_GROUP) {
                let group = m0..(m0 + M_GROUP).min(blocks.end);
                for j0 in (g0..g1).step_by(TILE) {
                    let w = TILE.min(g1 - j0);
                    for blk in group.clone() {
                        let (cols, vals) = a.entries(blk, kb);
                        if cols.is_empty() {
                            continue;
                        }
                        let r0 = (blk - first) * ROWS;
                        let live = ROWS.min(out_rows - r0);
                        let mut acc = [[0.0f32; TILE]; ROWS];
                        for (r, row) in acc.iter_mut().enumerate().take(live) {
                            row[..w].copy_from_slice(&out[(r0 + r) * n + j0..][..w]);
                        }
                        tile(cols, vals, j0, &mut acc, w);
                        for (r, row) in acc.iter().enumerate().take(live) {
                            out[(r0 + r) * n + j0..][..w].copy_from_slice(&row[..w]);
                        }
                    }
                }
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::{_mm256_fmadd_ps, _mm256_loadu_ps, _mm256_set1_ps, _mm256_storeu_ps};

    use super::{ROWS, RowBlocks, TILE, for_each_tile, scalar_lanes};

    /// Row blocks `blocks` of `C = A B` into `out` (their rows, width `n`).
    ///
    /// # Safety
    /// The CPU must support AVX2 and FMA. `b` is `[k, n]` row-major with `k` above every
    /// column index in `a`, and `out` holds the chunk's rows of width `n`.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn chunk(
        a: &RowBlocks,
        b: &[f32],
        n: usize,
        blocks: std::ops::Range<usize>,
        out: &mut [f32],
    ) {
        for_each_tile(a, n, blocks, out, |cols, vals, j0, acc, w| {
            // SAFETY: AVX2 and FMA as this function's contract; every row `kk` of `b` has
            // `j0 + w <= n` floats.
            unsafe {
                match w / 8 {
                    2 => vector_tile::<2>(cols, vals, b, n, j0, acc),
                    1 => vector_tile::<1>(cols, vals, b, n, j0, acc),
                    _ => {}
                }
                fma_tail(cols, vals, b, n, j0, acc, w / 8 * 8..w);
            }
        });
    }

    /// `acc[.., ..8V] += Σₖ vals[k] ⊗ B[cols[k], j0..j0 + 8V]` in `6V` vector accumulators.
    #[target_feature(enable = "avx2,fma")]
    unsafe fn vector_tile<const V: usize>(
        cols: &[u32],
        vals: &[f32],
        b: &[f32],
        n: usize,
        j0: usize,
        acc: &mut [[f32; TILE]; ROWS],
    ) {
        // SAFETY: `8V <= TILE` floats per `acc` row; each `kk` in `cols` is a row of `b`
        // with at least `j0 + 8V` floats (the caller's contract).
        unsafe {
            let mut c = [[_mm256_set1_ps(0.0); V]; ROWS];
            for (cr, ar) in c.iter_mut().zip(acc.iter()) {
                for (l, x) in cr.iter_mut().enumerate() {
                    *x = _mm256_loadu_ps(ar.as_ptr().add(8 * l));
                }
            }
            for (&kk, v) in cols.iter().zip(vals.chunks_exact(ROWS)) {
                let row = b.as_ptr().add(kk as usize * n + j0);
                let mut bl = [_mm256_set1_ps(0.0); V];
                for (l, x) in bl.iter_mut().enumerate() {
                    *x = _mm256_loadu_ps(row.add(8 * l));
                }
                for (cr, &vr) in c.iter_mut().zip(v) {
                    let x = _mm256_set1_ps(vr);
                    for (cl, &bv) in cr.iter_mut().zip(&bl) {
                        *cl = _mm256_fmadd_ps(x, bv, *cl);
                    }
                }
            }
            for (cr, ar) in c.iter().zip(acc.iter_mut()) {
                for (l, x) in cr.iter().enumerate() {
                    _mm256_storeu_ps(ar.as_mut_ptr().add(8 * l), *x);
                }
            }
        }
    }

    /// Columns `lanes` of the tile (fewer than 8) one at a time, with hardware FMA.
    #[target_feature(enable = "avx2,fma")]
    unsafe fn fma_tail(
        cols: &[u32],
        vals: &[f32],
        b: &[f32],
        n: usize,
        j0: usize,
        acc: &mut [[f32; TILE]; ROWS],
        lanes: std::ops::Range<usize>,
    ) {
        if !lanes.is_empty() {
            scalar_lanes(cols, vals, b, n, j0, acc, lanes);
        }
    }
}

#[cfg(test)]
mod tests {
    use ndarray::Array2;

    use super::*;
    use crate::Rng;

    /// `[m, k]` with about `density` of its entries in (0, 1] and the rest exactly 0, shaped
    /// like an MNIST batch: row `i`'s non-zeros fill a window of `density · k` columns whose
    /// centre jitters by ±5% of `k` from row to row, so nearby rows and nearby columns share
    /// their zeros.
    fn sparse(m: usize, k: usize, density: f64, rng: &mut Rng) -> Array2<f32> {
        let half = density * k as f64 / 2.0;
        let centres: Vec<f64> = (0..m)
            .map(|_| k as f64 * (0.45 + 0.1 * rng.next_f64()))
            .collect();
        Array2::from_shape_fn((m, k), |(i, j)| {
            if (j as f64 - centres[i]).abs() < half {
                (1.0 - rng.next_f64()) as f32
            } else {
                0.0
            }
        })
    }

    fn dense(m: usize, k: usize, rng: &mut Rng) -> Array2<f32> {
        Array2::from_shape_fn((m, k), |_| rng.normal() as f32)
    }

    /// Every entry of `got` within `rel · (1 + |exact|)` of `a · b` computed in f64.
    fn assert_near_f64_product(
        got: &Array2<f32>,
        a: ArrayView2<f32>,
        b: ArrayView2<f32>,
        rel: f64,
    ) {
        let exact = a.mapv(f64::from).dot(&b.mapv(f64::from));
        for (g, e) in got.iter().zip(&exact) {
            assert!(
                (f64::from(*g) - e).abs() <= rel * (1.0 + e.abs()),
                "{g} vs {e}"
            );
        }
    }

    #[test]
    fn kernel_equals_the_reference_bit_for_bit_across_tile_and_block_edges() {
        let mut rng = Rng::new(11);
        // n = 1, 7, 8, 63, 64, 65, 200 columns; k across one and several K_BLOCKs.
        for &(m, k, n) in &[
            (5, 3, 1),
            (9, 40, 7),
            (33, 513, 8),
            (17, 1100, 63),
            (40, 784, 64),
            (41, 784, 65),
            (70, 1025, 200),
        ] {
            let a = sparse(m, k, 0.2, &mut rng);
            let b = dense(k, n, &mut rng);
            let packed = RowBlocks::of_sparse(a.view()).expect("20% density is sparse");
            let got = packed_times_dense(&packed, b.view(), simd_available());
            assert_eq!(got, packed_times_dense(&packed, b.view(), false));
            let want = reference_matmul(a.view(), b.view());
            assert_eq!(
                got.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
                want.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
                "m={m} k={k} n={n}"
            );
            assert_near_f64_product(&got, a.view(), b.view(), 1e-5);
        }
    }

    #[test]
    fn either_operand_may_be_the_sparse_one_and_the_result_matches_f64() {
        let mut rng = Rng::new(12);
        // Above MIN_WORK: 300 · 784 · 100 ≈ 2.4e7.
        let x = sparse(300, 784, 0.19, &mut rng);
        let w = dense(100, 784, &mut rng);
        let g = dense(300, 100, &mut rng);
        // Forward `X Wᵀ` (sparse on the left, transposed dense operand).
        let y = try_matmul(x.view(), w.t()).expect("sparse left operand");
        assert_eq!(y, reference_matmul(x.view(), w.t()));
        // Weight gradient `Gᵀ X` (sparse on the right, transposed dense operand).
        let gw = try_matmul(g.t(), x.view()).expect("sparse right operand");
        assert!(gw.is_standard_layout());
        let want = reference_matmul(x.t(), g.view()).t().to_owned();
        assert_eq!(gw, want);
        assert_near_f64_product(&y, x.view(), w.t(), 1e-4);
        assert_near_f64_product(&gw, g.t(), x.view(), 1e-4);
    }

    #[test]
    fn dense_small_or_non_finite_cases_stay_on_the_dense_path() {
        let mut rng = Rng::new(13);
        let x = sparse(300, 784, 0.19, &mut rng);
        let mut w = dense(784, 100, &mut rng);
        // Dense operands: no packing is even built.
        let d = dense(300, 784, &mut rng);
        assert!(try_matmul(d.view(), w.view()).is_none());
        assert!(RowBlocks::of_sparse(d.view()).is_none());
        // Just over the density limit: rejected by the sample or the exact count.
        let over = sparse(300, 784, MAX_DENSITY + 0.02, &mut rng);
        assert!(RowBlocks::of_sparse(over.view()).is_none());
        // Sparse entries but no shared zero columns within row blocks (each row dense in a
        // different sixth... of the columns): over the union limit.
        let scattered = Array2::from_shape_fn((300, 784), |(i, j)| {
            if (j + i * 131) % 784 < 200 { 1.0 } else { 0.0 }
        });
        assert!(RowBlocks::of_sparse(scattered.view()).is_none());
        // Too small to pay.
        assert!(try_matmul(x.slice(ndarray::s![..10, ..]), w.view()).is_none());
        // A non-finite entry in the dense operand: the dense GEMM keeps IEEE's 0·∞ = NaN.
        assert!(try_matmul(x.view(), w.view()).is_some());
        w[(3, 5)] = f32::INFINITY;
        assert!(try_matmul(x.view(), w.view()).is_none());
    }
}
