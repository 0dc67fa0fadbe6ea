//! Elementwise maps, activations, broadcasts, reductions, softmax cross-entropy.

mod common;

use common::*;
use ndarray::{Array1, Array2, ArrayD, Axis, IxDyn, array, s};
use specreg_tensor::{BinaryOp, DType, Device, Error, Result, Tensor, UnaryOp};

test_device!(
    unary_ops_match_std_in_both_dtypes,
    binary_ops_and_activation_derivatives,
    affine_clamp_and_non_contiguous_inputs,
    broadcasts_and_reductions_match_naive,
    log_softmax_and_cross_entropy,
    seeded_random_tensors,
    elementwise_ops_agree_with_the_cpu,
);

fn unary_ops_match_std_in_both_dtypes(dev: &Device) -> Result<()> {
    let x = rand_array(&[7, 5], 1).mapv(|v| v * 3.0);
    let pos = x.mapv(|v| v.abs() + 0.1);
    type F = fn(f64) -> f64;
    let cases: [(UnaryOp, F, bool); 11] = [
        (UnaryOp::Neg, |v| -v, false),
        (UnaryOp::Exp, f64::exp, false),
        (UnaryOp::Log, f64::ln, true),
        (UnaryOp::Sqrt, f64::sqrt, true),
        (UnaryOp::Sqr, |v| v * v, false),
        (UnaryOp::Abs, f64::abs, false),
        (UnaryOp::Recip, |v| 1.0 / v, true),
        (UnaryOp::Tanh, f64::tanh, false),
        (UnaryOp::Relu, |v| v.max(0.0), false),
        (UnaryOp::Sigmoid, |v| 1.0 / (1.0 + (-v).exp()), false),
        (UnaryOp::Sign, f64::signum, false),
    ];
    for (op, f, needs_pos) in cases {
        let input = if needs_pos { &pos } else { &x };
        let want = input.mapv(f);
        for dtype in [DType::F32, DType::F64] {
            let t = on(dev, input.clone()).to_dtype(dtype).unwrap();
            let got = to64(&t.unary(op).unwrap());
            // On a GPU exp, log and f64 tanh come from libdevice (within 2 ulp of libm).
            let tol = match dtype {
                DType::F32 => tol_on(dev, 1e-6, 2e-6),
                DType::F64 => tol_on(dev, 1e-15, 4e-15),
            };
            assert_close(&got, &want, tol, &format!("{op:?} {dtype:?}"));
        }
    }
    // sign(0) = 0, and the activation methods are the same ops.
    let z = on32(dev, array![0.0f32, -2.0, 3.0]);
    assert_eq!(
        z.sign().unwrap().to_vec::<f32>().unwrap(),
        vec![0.0, -1.0, 1.0]
    );
    assert_eq!(
        z.relu().unwrap().to_vec::<f32>().unwrap(),
        vec![0.0, 0.0, 3.0]
    );
    Ok(())
}

fn binary_ops_and_activation_derivatives(dev: &Device) -> Result<()> {
    let a = rand_array(&[4, 6], 2);
    let b = rand_array(&[4, 6], 3).mapv(|v| v + 2.0);
    let (ta, tb) = (on(dev, a.clone()), on(dev, b.clone()));
    let check = |op: BinaryOp, f: fn(f64, f64) -> f64| {
        let want = ndarray::Zip::from(&a).and(&b).map_collect(|&x, &y| f(x, y));
        assert_close(
            &to64(&ta.binary(&tb, op).unwrap()),
            &want,
            1e-15,
            &format!("{op:?}"),
        );
    };
    check(BinaryOp::Add, |x, y| x + y);
    check(BinaryOp::Sub, |x, y| x - y);
    check(BinaryOp::Mul, |x, y| x * y);
    check(BinaryOp::Div, |x, y| x / y);
    check(BinaryOp::Maximum, f64::max);
    check(BinaryOp::Minimum, f64::min);

    // Derivatives against central differences of the activation, in f64.
    let x = rand_array(&[3, 4], 4).mapv(|v| 2.0 * v);
    let g = rand_array(&[3, 4], 5);
    let (tx, tg) = (on(dev, x.clone()), on(dev, g.clone()));
    let h = 1e-6;
    let fd = |f: fn(f64) -> f64| {
        ndarray::Zip::from(&x)
            .and(&g)
            .map_collect(|&v, &gv| gv * (f(v + h) - f(v - h)) / (2.0 * h))
    };
    let sig = |v: f64| 1.0 / (1.0 + (-v).exp());
    let y = tx.tanh().unwrap();
    assert_close(
        &to64(&y.tanh_backward(&tg).unwrap()),
        &fd(f64::tanh),
        1e-8,
        "tanh'",
    );
    let y = tx.sigmoid().unwrap();
    assert_close(
        &to64(&y.sigmoid_backward(&tg).unwrap()),
        &fd(sig),
        1e-8,
        "sigmoid'",
    );
    let relu_grad = ndarray::Zip::from(&x)
        .and(&g)
        .map_collect(|&v, &gv| if v > 0.0 { gv } else { 0.0 });
    assert_close(
        &to64(&tx.relu_backward(&tg).unwrap()),
        &relu_grad,
        0.0,
        "relu'",
    );

    // Shape and dtype mismatches are errors, not panics.
    let wrong = on(dev, Array2::<f64>::zeros((4, 5)));
    assert!(matches!(ta.add(&wrong), Err(Error::ShapeMismatch { .. })));
    let f32t = ta.to_dtype(DType::F32).unwrap();
    assert!(matches!(f32t.add(&tb), Err(Error::DTypeMismatch { .. })));
    Ok(())
}

fn affine_clamp_and_non_contiguous_inputs(dev: &Device) -> Result<()> {
    let big = rand_array(&[6, 8], 6);
    // A strided, transposed view: every op must see the logical values.
    let view = big.slice(s![..;2, 1..;2]).reversed_axes().to_owned();
    let t = on(dev, big.clone()).permute(&[1, 0]).unwrap();
    let t = t.reshape(&[8, 6]).unwrap(); // forces a standard-layout copy of the transpose
    let logical = big.t().as_standard_layout().into_owned().into_dyn();
    assert_close(&to64(&t), &logical, 0.0, "reshape of transposed");
    let strided = on(dev, big.clone()).t().unwrap();
    let got = to64(&strided.affine(2.0, -1.0).unwrap());
    assert_close(
        &got,
        &big.t().mapv(|v| 2.0 * v - 1.0).into_dyn(),
        1e-15,
        "affine on view",
    );
    let got = to64(&strided.clamp(-0.5, 0.25).unwrap());
    assert_close(
        &got,
        &big.t().mapv(|v| v.clamp(-0.5, 0.25)).into_dyn(),
        0.0,
        "clamp on view",
    );
    assert!(matches!(
        strided.clamp(1.0, 0.0),
        Err(Error::InvalidArgument { .. })
    ));
    assert_eq!(view.dim(), (4, 3));
    let nan = on32(dev, array![f32::NAN, 5.0]);
    let c = nan.clamp(0.0, 1.0).unwrap().to_vec::<f32>().unwrap();
    assert!(
        c[0].is_nan() && c[1] == 1.0,
        "clamp keeps NaN visible: {c:?}"
    );
    Ok(())
}

fn broadcasts_and_reductions_match_naive(dev: &Device) -> Result<()> {
    let x = rand_array(&[5, 3], 7);
    let v = rand_array(&[3], 8);
    let tx = on(dev, x.clone());
    let tv = on(dev, v.clone());
    let want = ArrayD::from_shape_fn(IxDyn(&[5, 3]), |d| x[[d[0], d[1]]] + v[[d[1]]]);
    assert_close(
        &to64(&tx.broadcast_add_rows(&tv).unwrap()),
        &want,
        1e-15,
        "row add",
    );
    let sums: Array1<f64> = (0..3).map(|j| (0..5).map(|i| x[[i, j]]).sum()).collect();
    assert_close(
        &to64(&tx.col_sums().unwrap()),
        &sums.clone().into_dyn(),
        1e-15,
        "col sums",
    );
    assert_close(
        &to64(&tx.col_means().unwrap()),
        &(sums / 5.0).into_dyn(),
        1e-15,
        "col means",
    );
    // Column sums of a transposed (non-contiguous) operand.
    let tt = tx.t().unwrap();
    let rs = x.sum_axis(Axis(1));
    assert_close(
        &to64(&tt.col_sums().unwrap()),
        &rs.into_dyn(),
        1e-15,
        "col sums of xᵀ",
    );
    // Channel broadcast on a 4-D tensor.
    let img = rand_array(&[2, 3, 2, 2], 9);
    let bias = rand_array(&[3], 10);
    let got = to64(
        &on(dev, img.clone())
            .broadcast_along(&on(dev, bias.clone()), 1, BinaryOp::Add)
            .unwrap(),
    );
    let want = ArrayD::from_shape_fn(img.raw_dim(), |d| img[&d] + bias[[d[1]]]);
    assert_close(&got, &want, 1e-15, "channel add");
    assert!((tx.sum_all().unwrap() - x.sum()).abs() < 1e-12);
    assert!((tx.max_abs().unwrap() - x.iter().fold(0.0f64, |m, v| m.max(v.abs()))).abs() == 0.0);
    let am = on32(dev, array![[1.0f32, 3.0, 3.0], [5.0, 0.0, -1.0]]);
    assert_eq!(am.argmax_rows().unwrap(), vec![1, 0]);
    assert!(matches!(
        tx.broadcast_add_rows(&tx),
        Err(Error::ShapeMismatch { .. })
    ));
    Ok(())
}

fn log_softmax_and_cross_entropy(dev: &Device) -> Result<()> {
    let logits = array![[1.0f64, 2.0, 3.0], [1000.0, 1000.0, -1000.0]];
    let t = on(dev, logits.clone());
    let lp = t.log_softmax().unwrap().to_array::<f64>().unwrap();
    let z: f64 = (1f64.exp() + 2f64.exp() + 3f64.exp()).ln();
    assert!((lp[[0, 2]] - (3.0 - z)).abs() < 1e-14);
    assert!(
        (lp[[1, 0]] - (-(2f64).ln())).abs() < 1e-12,
        "stable for large logits"
    );
    let sm = t.softmax().unwrap().to_array::<f64>().unwrap();
    for row in sm.rows() {
        assert!((row.sum() - 1.0).abs() < 1e-14, "{row}");
    }

    // Mean CE and its gradient against f64 central differences.
    let x = rand_array(&[4, 5], 11).mapv(|v| 3.0 * v);
    let labels = [0usize, 4, 2, 2];
    let ce = |x: &ArrayD<f64>| -> f64 {
        let t = on(dev, x.clone());
        t.softmax_cross_entropy(&labels).unwrap().0
    };
    let (loss, grad) = on(dev, x.clone()).softmax_cross_entropy(&labels).unwrap();
    let naive: f64 = labels
        .iter()
        .enumerate()
        .map(|(i, &y)| {
            let row = x.index_axis(Axis(0), i);
            let lse = row.iter().map(|v| v.exp()).sum::<f64>().ln();
            lse - row[y]
        })
        .sum::<f64>()
        / 4.0;
    assert!((loss - naive).abs() < 1e-13, "{loss} vs {naive}");
    let h = 1e-6;
    let mut fd = ArrayD::zeros(x.raw_dim());
    for idx in ndarray::indices(x.raw_dim()) {
        let (mut p, mut m) = (x.clone(), x.clone());
        p[&idx] += h;
        m[&idx] -= h;
        fd[&idx] = (ce(&p) - ce(&m)) / (2.0 * h);
    }
    assert_close(&to64(&grad), &fd, 1e-8, "dCE/dlogits");
    let per = on(dev, x.clone())
        .cross_entropy_per_sample(&labels)
        .unwrap();
    assert!((per.sum_all().unwrap() / 4.0 - loss).abs() < 1e-13);

    // f32 agrees with f64.
    let (l32, _) = on32(dev, x.mapv(|v| v as f32))
        .softmax_cross_entropy(&labels)
        .unwrap();
    assert!((l32 - loss).abs() < 1e-5);

    let bad = on(dev, x.clone()).softmax_cross_entropy(&[0, 1, 9, 0]);
    assert!(matches!(
        bad,
        Err(Error::LabelOutOfRange {
            index: 2,
            label: 9,
            classes: 5
        })
    ));
    let short = on(dev, x).softmax_cross_entropy(&[0]);
    assert!(matches!(short, Err(Error::ShapeMismatch { .. })));
    Ok(())
}

#[test]
fn interop_is_zero_copy_and_typed() {
    let a = Array2::<f32>::from_shape_fn((3, 4), |(i, j)| (i * 4 + j) as f32);
    let ptr = a.as_ptr();
    let t = Tensor::from_array(a);
    let v = t.as_array_view::<f32>().unwrap();
    assert_eq!(v.as_ptr(), ptr, "from_array / as_array_view must not copy");
    assert_eq!(v[[2, 3]], 11.0);
    assert!(matches!(
        t.as_array_view::<f64>(),
        Err(Error::DTypeMismatch { .. })
    ));
    let r = t.reshape(&[2, 6]).unwrap();
    assert_eq!(
        r.as_array_view::<f32>().unwrap().as_ptr(),
        ptr,
        "contiguous reshape is a view"
    );
    assert!(matches!(t.reshape(&[5]), Err(Error::ShapeMismatch { .. })));
    assert!(matches!(
        t.permute(&[0, 0]),
        Err(Error::InvalidArgument { .. })
    ));
    let fv = Tensor::from_vec(vec![1.0f64, 2.0, 3.0], &[2, 2], &Device::Cpu);
    assert!(matches!(
        fv,
        Err(Error::ElementCount {
            expected: 4,
            len: 3,
            ..
        })
    ));
    assert_eq!(t.dims2().unwrap(), (3, 4));
    assert!(matches!(t.dims4(), Err(Error::RankMismatch { .. })));
}

/// Random tensors are drawn on the host: the same values on every device.
fn seeded_random_tensors(dev: &Device) -> Result<()> {
    let mut r1 = specreg_tensor::Rng::new(42);
    let mut r2 = specreg_tensor::Rng::new(42);
    let a = Tensor::randn(&[100, 100], 1.0, 2.0, DType::F32, &mut r1, dev).unwrap();
    let b = Tensor::randn(&[100, 100], 1.0, 2.0, DType::F32, &mut r2, &Device::Cpu).unwrap();
    assert_eq!(a.to_vec::<f32>().unwrap(), b.to_vec::<f32>().unwrap());
    let v = to64(&a);
    let mean = v.mean().unwrap();
    let std = v.std(0.0);
    assert!(
        (mean - 1.0).abs() < 0.05 && (std - 2.0).abs() < 0.05,
        "{mean} {std}"
    );
    let u = Tensor::rand_uniform(&[10_000], 2.0, 3.0, DType::F64, &mut r1, dev).unwrap();
    let u = to64(&u);
    assert!(u.iter().all(|&x| (2.0..3.0).contains(&x)));
    assert!((u.mean().unwrap() - 2.5).abs() < 0.01);
    assert!(Tensor::rand_uniform(&[1], 1.0, 0.0, DType::F32, &mut r1, dev).is_err());
    Ok(())
}

/// Larger random operands through each elementwise op, reduction and the softmax, on `dev`
/// against the CPU: exact ops agree to the last bit's rounding, transcendental ones to a few
/// ulp, sums to `len · eps`.
fn elementwise_ops_agree_with_the_cpu(dev: &Device) -> Result<()> {
    for dtype in [DType::F32, DType::F64] {
        let e = eps(dtype);
        let x =
            |d: &Device| -> Result<Tensor> { rand_tensor_on(d, &[300, 70], dtype, 21).scale(4.0) };
        let y = |d: &Device| -> Result<Tensor> {
            rand_tensor_on(d, &[300, 70], dtype, 22).add_scalar(1.5)
        };
        for op in [
            UnaryOp::Exp,
            UnaryOp::Tanh,
            UnaryOp::Sigmoid,
            UnaryOp::Sign,
            UnaryOp::Relu,
        ] {
            same_as_cpu(dev, 4.0 * e, &format!("{op:?} {dtype:?}"), |d| {
                x(d)?.unary(op)
            })?;
        }
        same_as_cpu(dev, 4.0 * e, "log", |d| y(d)?.log())?;
        for op in [
            BinaryOp::Div,
            BinaryOp::Maximum,
            BinaryOp::TanhBackward,
            BinaryOp::Greater,
        ] {
            same_as_cpu(dev, 2.0 * e, &format!("{op:?} {dtype:?}"), |d| {
                x(d)?.binary(&y(d)?, op)
            })?;
        }
        same_as_cpu(dev, 300.0 * e, "col sums", |d| x(d)?.sum_axis(0))?;
        same_as_cpu(dev, 70.0 * e, "row sums", |d| x(d)?.sum_axis(1))?;
        let long = |d: &Device| -> Result<Tensor> { Ok(rand_tensor_on(d, &[5, 5000], dtype, 23)) };
        same_as_cpu(dev, 5000.0 * e, "long row sums", |d| long(d)?.sum_axis(1))?;
        same_as_cpu(dev, 8.0 * e, "log_softmax", |d| x(d)?.log_softmax())?;
        same_as_cpu(dev, 0.0, "permute", |d| {
            rand_tensor_on(d, &[3, 4, 5, 6], dtype, 24).permute(&[2, 0, 3, 1])
        })?;
        same_as_cpu(dev, 0.0, "affine", |d| x(d)?.affine(0.3, -1.25))?;
        same_as_cpu(dev, 0.0, "cast", |d| {
            x(d)?.to_dtype(DType::F32)?.to_dtype(DType::F64)
        })?;
        let (xc, xd) = (x(&Device::Cpu)?, x(dev)?);
        let (sc, sd) = (xc.sum_all()?, xd.sum_all()?);
        assert!(
            (sc - sd).abs() <= 1e-12 * (1.0 + sc.abs()) * 300.0,
            "{sc} vs {sd}"
        );
        assert_eq!(xc.max_abs()?, xd.max_abs()?, "max_abs is exact");
    }
    // NaN propagates through max_abs on every device.
    let nan = on(dev, array![1.0, f64::NAN, -3.0]);
    assert!(nan.max_abs()?.is_nan());
    Ok(())
}

/// The parallel column sums give ndarray's `sum_axis(0)` bit for bit (same order per
/// column), for widths that split into ragged column blocks, with −0 and NaN inside.
#[test]
fn parallel_column_sums_equal_ndarray_bit_for_bit() {
    for (rows, cols) in [(3500usize, 2000usize), (129, 300), (40_000, 2)] {
        let mut r = specreg_tensor::Rng::new(rows as u64);
        let mut a = ndarray::Array2::from_shape_fn((rows, cols), |_| r.uniform(-1.0, 1.0) as f32);
        a[[0, 1]] = -0.0;
        a[[rows / 2, cols - 1]] = f32::NAN;
        let want = a.sum_axis(Axis(0));
        let got = Tensor::from_array(a.clone()).sum_axis(0).unwrap();
        let got = got.to_vec::<f32>().unwrap();
        assert_eq!(got.len(), cols);
        for (j, (g, w)) in got.iter().zip(want.iter()).enumerate() {
            assert_eq!(g.to_bits(), w.to_bits(), "{rows}x{cols}, column {j}");
        }
    }
}
