//! Convolution and max-pooling through the Tensor API: hand-computed values and shape errors.
//! (Randomised checks against naive loops and adjoint identities live beside the kernels.)

mod common;

use common::*;
use ndarray::{Array4, array};
use specreg_tensor::{DType, Device, Error, Result, Tensor};

test_device!(
    conv2d_known_values,
    conv2d_shape_errors,
    max_pool_known_values_ties_odd_sizes_and_nan,
    f64_kernels_agree_with_f32_and_with_a_naive_loop,
    conv_and_pool_agree_with_the_cpu,
    conv_backward_passes_are_adjoints_of_the_forward,
);

fn conv2d_known_values(dev: &Device) -> Result<()> {
    // x = 0..16 on a 4×4 grid; a 3×3 kernel of ones sums each window.
    let x = Array4::from_shape_fn((1, 1, 4, 4), |(_, _, i, j)| (4 * i + j) as f32);
    let ones = Array4::<f32>::ones((1, 1, 3, 3));
    let y = on32(dev, x.clone()).conv2d(&on32(dev, ones)).unwrap();
    assert_eq!(y.shape(), &[1, 1, 2, 2]);
    assert_eq!(y.to_vec::<f32>().unwrap(), vec![45.0, 54.0, 81.0, 90.0]);
    // A kernel picking the centre minus the top-left pixel gives 5 everywhere.
    let mut k = Array4::<f32>::zeros((2, 1, 3, 3));
    k[[0, 0, 1, 1]] = 1.0;
    k[[0, 0, 0, 0]] = -1.0;
    k[[1, 0, 2, 2]] = 2.0;
    let y = on32(dev, x).conv2d(&on32(dev, k.clone())).unwrap();
    assert_eq!(
        y.to_vec::<f32>().unwrap(),
        vec![5.0, 5.0, 5.0, 5.0, 20.0, 22.0, 28.0, 30.0]
    );
    // Backward: a unit upstream gradient at y[0,0,0,0] spreads the kernel onto x.
    let mut g = Array4::<f32>::zeros((1, 2, 2, 2));
    g[[0, 0, 0, 0]] = 1.0;
    let dx = on32(dev, g.clone())
        .conv2d_backward_input(&on32(dev, k))
        .unwrap();
    let dx = dx.to_array::<f32>().unwrap();
    assert_eq!(
        (dx[[0, 0, 1, 1]], dx[[0, 0, 0, 0]], dx.sum()),
        (1.0, -1.0, 0.0)
    );
    let xw = Array4::from_shape_fn((1, 1, 4, 4), |(_, _, i, j)| (4 * i + j) as f32);
    let dw = on32(dev, xw)
        .conv2d_backward_weight(&on32(dev, g), 3, 3)
        .unwrap();
    assert_eq!(dw.shape(), &[2, 1, 3, 3]);
    let dw = dw.to_array::<f32>().unwrap();
    assert_eq!(dw[[0, 0, 2, 1]], 9.0); // x[2, 1]
    assert_eq!(dw.slice(ndarray::s![1, .., .., ..]).sum(), 0.0);
    Ok(())
}

fn conv2d_shape_errors(dev: &Device) -> Result<()> {
    let x = Tensor::zeros(&[2, 3, 5, 5], DType::F32, dev).unwrap();
    let w = Tensor::zeros(&[4, 2, 3, 3], DType::F32, dev).unwrap();
    assert!(matches!(
        x.conv2d(&w),
        Err(Error::ShapeMismatch { op: "conv2d", .. })
    ));
    let big = Tensor::zeros(&[4, 3, 6, 6], DType::F32, dev).unwrap();
    assert!(matches!(x.conv2d(&big), Err(Error::ShapeMismatch { .. })));
    let flat = Tensor::zeros(&[2, 75], DType::F32, dev).unwrap();
    assert!(matches!(flat.conv2d(&w), Err(Error::RankMismatch { .. })));
    let g = Tensor::zeros(&[2, 4, 2, 2], DType::F32, dev).unwrap();
    assert!(matches!(
        x.conv2d_backward_weight(&g, 3, 3),
        Err(Error::ShapeMismatch { .. })
    ));
    Ok(())
}

fn max_pool_known_values_ties_odd_sizes_and_nan(dev: &Device) -> Result<()> {
    let x = array![[[
        [1.0f32, 3.0, 2.0, 0.0, 9.0],
        [4.0, 2.0, 2.0, 2.0, 9.0],
        [5.0, 5.0, -1.0, f32::NAN, 9.0],
        [5.0, 5.0, -3.0, -2.0, 9.0],
        [9.0, 9.0, 9.0, 9.0, 9.0]
    ]]];
    let (y, idx) = on32(dev, x).max_pool2d().unwrap();
    assert_eq!(y.shape(), &[1, 1, 2, 2], "5×5 pools to 2×2 (floor)");
    let yv = y.to_vec::<f32>().unwrap();
    assert_eq!(&yv[..3], &[4.0, 2.0, 5.0]);
    assert!(yv[3].is_nan(), "NaN propagates");
    // window offsets: 4 at (1,0) → 2; tie of 2s → first (0,0) → 0; tie of 5s → 0; NaN at (0,1) → 1
    assert_eq!(idx.to_vec::<f32>().unwrap(), vec![2.0, 0.0, 0.0, 1.0]);
    let g = on32(dev, array![[[[10.0f32, 20.0], [30.0, 40.0]]]]);
    let dx = g
        .max_pool2d_backward(&idx, 5, 5)
        .unwrap()
        .to_array::<f32>()
        .unwrap();
    assert_eq!(
        (
            dx[[0, 0, 1, 0]],
            dx[[0, 0, 0, 2]],
            dx[[0, 0, 2, 0]],
            dx[[0, 0, 2, 3]]
        ),
        (10.0, 20.0, 30.0, 40.0)
    );
    assert_eq!(dx.sum(), 100.0);
    let t = on32(
        dev,
        Array4::from_shape_fn((1, 1, 5, 5), |(_, _, i, j)| (10 * i + j) as f32),
    );
    assert_eq!(
        t.max_pool2d_gather(&idx).unwrap().to_vec::<f32>().unwrap(),
        vec![10.0, 2.0, 20.0, 23.0]
    );
    assert!(matches!(
        g.max_pool2d_backward(&idx, 7, 7),
        Err(Error::InvalidArgument { .. })
    ));
    let tiny = Tensor::zeros(&[1, 1, 1, 4], DType::F32, dev).unwrap();
    assert!(tiny.max_pool2d().is_err());
    // An argmax entry that is not a window offset is an error (on a GPU at the next read).
    let bad = on32(dev, array![[[[0.0f32, 4.0], [1.0, 2.0]]]]);
    let dx = g
        .max_pool2d_backward(&bad, 5, 5)
        .and_then(|t| t.to_vec::<f32>());
    assert!(matches!(dx, Err(Error::InvalidArgument { .. })), "{dx:?}");
    Ok(())
}

fn f64_kernels_agree_with_f32_and_with_a_naive_loop(dev: &Device) -> Result<()> {
    use specreg_tensor::Rng;
    let mut rng = Rng::new(5);
    let x = Tensor::rand_uniform(&[3, 2, 9, 8], -1.0, 1.0, DType::F64, &mut rng, dev).unwrap();
    let w = Tensor::rand_uniform(&[4, 2, 3, 3], -1.0, 1.0, DType::F64, &mut rng, dev).unwrap();
    let y = x.conv2d(&w).unwrap().to_array::<f64>().unwrap();
    let (xa, wa) = (x.to_array::<f64>().unwrap(), w.to_array::<f64>().unwrap());
    for (idx, &v) in y.indexed_iter() {
        let (b, o, i, j) = (idx[0], idx[1], idx[2], idx[3]);
        let mut s = 0.0;
        for c in 0..2 {
            for p in 0..3 {
                for q in 0..3 {
                    s += wa[[o, c, p, q]] * xa[[b, c, i + p, j + q]];
                }
            }
        }
        assert!((v - s).abs() < 1e-13, "f64 conv at {idx:?}: {v} vs {s}");
    }
    let y32 = x
        .to_dtype(DType::F32)
        .unwrap()
        .conv2d(&w.to_dtype(DType::F32).unwrap())
        .unwrap();
    let diff = y32
        .to_dtype(DType::F64)
        .unwrap()
        .sub(&on(dev, y))
        .unwrap()
        .max_abs()
        .unwrap();
    assert!(diff < 1e-5, "f32 vs f64 conv differ by {diff}");
    let (p64, a64) = x.max_pool2d().unwrap();
    let (p32, a32) = x.to_dtype(DType::F32).unwrap().max_pool2d().unwrap();
    assert_eq!(
        a64.to_vec::<f64>()
            .unwrap()
            .iter()
            .map(|&v| v as f32)
            .collect::<Vec<_>>(),
        a32.to_vec::<f32>().unwrap()
    );
    assert!(
        p64.to_dtype(DType::F32)
            .unwrap()
            .sub(&p32)
            .unwrap()
            .max_abs()
            .unwrap()
            == 0.0
    );
    Ok(())
}

/// The paper's layer shapes (scaled down) on `dev` against the CPU: convolutions within
/// `K · eps` (K = C·KH·KW terms per output, or the batch for the weight gradient), pooling
/// exactly.
fn conv_and_pool_agree_with_the_cpu(dev: &Device) -> Result<()> {
    for dtype in [DType::F32, DType::F64] {
        let e = eps(dtype);
        let x = |d: &Device| rand_tensor_on(d, &[9, 16, 13, 13], dtype, 51);
        let w = |d: &Device| rand_tensor_on(d, &[32, 16, 3, 3], dtype, 52);
        let g = |d: &Device| rand_tensor_on(d, &[9, 32, 11, 11], dtype, 53);
        same_as_cpu(dev, 4.0 * 144.0 * e, "conv2d", |d| x(d).conv2d(&w(d)))?;
        same_as_cpu(dev, 4.0 * 288.0 * e, "conv2d dx", |d| {
            g(d).conv2d_backward_input(&w(d))
        })?;
        same_as_cpu(dev, 4.0 * 9.0 * 121.0 * e, "conv2d dw", |d| {
            x(d).conv2d_backward_weight(&g(d), 3, 3)
        })?;
        same_as_cpu(dev, 0.0, "pool", |d| Ok(g(d).max_pool2d()?.0))?;
        same_as_cpu(dev, 0.0, "pool argmax", |d| Ok(g(d).max_pool2d()?.1))?;
        same_as_cpu(dev, 0.0, "pool backward", |d| {
            let (y, arg) = g(d).max_pool2d()?;
            y.max_pool2d_backward(&arg, 11, 11)
        })?;
        same_as_cpu(dev, 0.0, "pool gather", |d| {
            let (_, arg) = g(d).max_pool2d()?;
            x(d).index_select_rows(&[0])?
                .conv2d(&w(d))?
                .max_pool2d_gather(&arg.index_select_rows(&[0])?)
        })?;
    }
    Ok(())
}

/// `⟨conv(x, w), g⟩ = ⟨x, ∂x(g, w)⟩ = ⟨w, ∂w(x, g)⟩` in f64 on `dev`: the backward passes
/// are the adjoints of the forward one (the gradient check of the convolution).
fn conv_backward_passes_are_adjoints_of_the_forward(dev: &Device) -> Result<()> {
    for [b, c, o, h, wd, kh, kw] in [
        [2, 3, 4, 7, 6, 3, 2],
        [5, 1, 2, 5, 5, 5, 5],
        [1, 2, 1, 4, 9, 1, 3],
    ] {
        let x = rand_tensor_on(dev, &[b, c, h, wd], DType::F64, 61);
        let w = rand_tensor_on(dev, &[o, c, kh, kw], DType::F64, 62);
        let g = rand_tensor_on(dev, &[b, o, h - kh + 1, wd - kw + 1], DType::F64, 63);
        let lhs = x.conv2d(&w)?.mul(&g)?.sum_all()?;
        let via_x = x.mul(&g.conv2d_backward_input(&w)?)?.sum_all()?;
        let via_w = w.mul(&x.conv2d_backward_weight(&g, kh, kw)?)?.sum_all()?;
        let tol = 1e-12 * (1.0 + lhs.abs());
        assert!((lhs - via_x).abs() <= tol, "{lhs} vs {via_x}");
        assert!((lhs - via_w).abs() <= tol, "{lhs} vs {via_w}");
    }
    Ok(())
}
