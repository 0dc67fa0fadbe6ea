//! Matrix products, covariance, eigendecomposition, Cholesky and triangular solves against
//! naive references and closed forms.

mod common;

use common::*;
use ndarray::{Array1, Array2, Axis, Ix2, array, s};
use specreg_tensor::{DType, Device, Error, Result, Side, Tensor, Triangle, linalg};

test_device!(
    matmul_variants_match_naive_including_strided_operands,
    covariance_and_gram,
    symmetric_eigen_reconstructs_in_descending_order,
    cholesky_and_triangular_solves,
    linalg_agrees_with_the_cpu,
);

fn two(t: &Tensor) -> Array2<f64> {
    to64(t).into_dimensionality::<Ix2>().unwrap()
}

fn spd(n: usize, seed: u64) -> Array2<f64> {
    let a = rand_array(&[n, n], seed)
        .into_dimensionality::<Ix2>()
        .unwrap();
    naive_matmul(&a, &a.t().to_owned()) + Array2::<f64>::eye(n) * 0.5
}

fn matmul_variants_match_naive_including_strided_operands(dev: &Device) -> Result<()> {
    for dtype in [DType::F32, DType::F64] {
        let tol = if dtype == DType::F32 {
            tol_on(dev, 2e-6, 4e-6)
        } else {
            1e-13
        };
        let a = rand_array(&[37, 23], 1)
            .into_dimensionality::<Ix2>()
            .unwrap();
        let b = rand_array(&[23, 41], 2)
            .into_dimensionality::<Ix2>()
            .unwrap();
        let want = naive_matmul(&a, &b).into_dyn();
        let ta = on(dev, a.clone()).to_dtype(dtype).unwrap();
        let tb = on(dev, b.clone()).to_dtype(dtype).unwrap();
        assert_close(&to64(&ta.matmul(&tb).unwrap()), &want, tol, "A·B");
        // Aᵀ·B with A stored as [k, m]
        let at = on(dev, a.t().as_standard_layout().into_owned())
            .to_dtype(dtype)
            .unwrap();
        assert_close(&to64(&at.matmul_tn(&tb).unwrap()), &want, tol, "Aᵀ·B");
        // A·Bᵀ with B stored as [n, k]
        let bt = on(dev, b.t().as_standard_layout().into_owned())
            .to_dtype(dtype)
            .unwrap();
        assert_close(&to64(&ta.matmul_nt(&bt).unwrap()), &want, tol, "A·Bᵀ");
        // Transposed views and a strided slice as operands.
        assert_close(
            &to64(&at.t().unwrap().matmul(&tb).unwrap()),
            &want,
            tol,
            "view Aᵀ",
        );
        let big = rand_array(&[74, 46], 3)
            .into_dimensionality::<Ix2>()
            .unwrap();
        let sl = big.slice(s![..;2, 1..;2]).to_owned(); // 37 × 23 logical values
        let tbig = on(dev, big.slice(s![..;2, 1..;2]).to_owned())
            .to_dtype(dtype)
            .unwrap();
        let want = naive_matmul(&sl, &b).into_dyn();
        assert_close(&to64(&tbig.matmul(&tb).unwrap()), &want, tol, "strided A");
    }
    let a = rand_tensor_on(dev, &[3, 4], DType::F32, 0);
    assert!(matches!(
        a.matmul(&a),
        Err(Error::ShapeMismatch { op: "matmul", .. })
    ));
    assert!(matches!(
        a.matmul(&a.to_dtype(DType::F64).unwrap().t().unwrap()),
        Err(Error::DTypeMismatch { .. })
    ));
    Ok(())
}

/// The CPU product writes into memory it does not zero first (faer's `Accum::Replace`
/// never reads the destination). Each product here is preceded by freeing a NaN-filled
/// block of its output's size, which the allocator hands back for the output; a product
/// that read its destination would turn NaN, and one that skipped an entry would keep one.
#[test]
fn cpu_matmul_ignores_what_its_fresh_output_held() {
    fn check<T: specreg_tensor::Element + Into<f64>>(nan: T, cast: fn(f64) -> T) -> usize {
        let shapes = [
            (1, 1, 1),
            (1, 5, 7),
            (7, 5, 1),
            (3, 4, 5),
            (16, 16, 16),
            (37, 23, 41),
            (64, 300, 200),
            (200, 64, 300),
            (256, 300, 260),
        ];
        let mut reused = 0;
        for (i, &(m, k, n)) in shapes.iter().enumerate() {
            let a = rand_array(&[m, k], 10 + i as u64)
                .into_dimensionality::<Ix2>()
                .unwrap();
            let b = rand_array(&[k, n], 20 + i as u64)
                .into_dimensionality::<Ix2>()
                .unwrap();
            let (at, bt) = (a.mapv(cast), b.mapv(cast));
            let poison = vec![nan; m * n];
            let spot = poison.as_ptr();
            drop(poison);
            let c = linalg::matmul(at.view(), bt.view());
            reused += usize::from(std::ptr::eq(c.as_ptr(), spot));
            let c64 = c.mapv(|x| x.into());
            assert!(
                c64.iter().all(|x| x.is_finite()),
                "{m}×{k}×{n}: NaN in the product"
            );
            let tol = if T::DTYPE == DType::F32 { 2e-6 } else { 1e-13 };
            let want = naive_matmul(&a, &b).into_dyn();
            assert_close(&c64.into_dyn(), &want, tol, &format!("{m}×{k}×{n}"));
        }
        reused
    }
    let reused = check::<f32>(f32::NAN, |x| x as f32) + check::<f64>(f64::NAN, |x| x);
    // Without reuse the check above would prove nothing.
    assert!(
        reused > 0,
        "the allocator never handed back a poisoned block"
    );
}

/// `linalg::gram` multiplies only the lower triangle and mirrors it (faer); it must give the
/// bits of the full product `aᵀ a` (which the covariance used before), be exactly symmetric
/// on faer, and match a naive `f64` product. Shapes cover empty, single-row, odd,
/// tile-crossing and wider-than-tall operands, a transposed view, and an operand sparse
/// enough for the sparse path.
#[test]
fn cpu_gram_has_the_full_products_bits() {
    fn check<T: specreg_tensor::Element>(cast: fn(f64) -> T, tol: f64) {
        let shapes = [
            (0, 4),
            (5, 0),
            (1, 1),
            (1, 9),
            (3, 130),
            (37, 23),
            (65, 64),
            (130, 129),
            (500, 300),
            (300, 700),
        ];
        for (i, &(m, n)) in shapes.iter().enumerate() {
            let a = rand_array(&[m, n], 40 + i as u64)
                .into_dimensionality::<Ix2>()
                .unwrap();
            let at = a.mapv(cast);
            let g = linalg::gram(at.view());
            let full = linalg::matmul(at.t(), at.view());
            let bits = |x: &T| x.as_f64().to_bits();
            assert_eq!(g.dim(), (n, n), "{m}×{n}: shape");
            assert!(
                g.iter().map(bits).eq(full.iter().map(bits)),
                "{m}×{n}: gram differs from the full product"
            );
            // faer's mirrored triangle is symmetric by construction; OpenBLAS's full `?gemm`
            // is not bit for bit (measured), and the `openblas` gram is that product.
            if linalg::BACKEND == "faer" {
                assert!(
                    (0..n).all(|r| (0..n).all(|c| bits(&g[[r, c]]) == bits(&g[[c, r]]))),
                    "{m}×{n}: not exactly symmetric"
                );
            }
            let want = naive_matmul(&a.t().to_owned(), &a).into_dyn();
            let got = g.mapv(|x| x.as_f64()).into_dyn();
            assert_close(&got, &want, tol, &format!("{m}×{n}"));
        }
        // A transposed view, and MNIST-like 80%-zero rows (the sparse path's operand).
        let a = rand_array(&[200, 310], 60)
            .into_dimensionality::<Ix2>()
            .unwrap()
            .mapv(cast);
        let view = a.t();
        let full = linalg::matmul(view.t(), view);
        assert!(linalg::gram(view).iter().eq(full.iter()), "transposed view");
        let sparse = Array2::from_shape_fn((2000, 784), |(r, c)| {
            if (r * 7 + c * 13) % 5 == 0 {
                cast(((r + c) % 17) as f64 / 17.0)
            } else {
                cast(0.0)
            }
        });
        let full = linalg::matmul(sparse.t(), sparse.view());
        assert!(
            linalg::gram(sparse.view()).iter().eq(full.iter()),
            "sparse operand"
        );
    }
    check::<f32>(|x| x as f32, 2e-6);
    check::<f64>(|x| x, 1e-13);
}

fn covariance_and_gram(dev: &Device) -> Result<()> {
    let x = rand_array(&[50, 6], 4)
        .into_dimensionality::<Ix2>()
        .unwrap();
    let mean = x.mean_axis(ndarray::Axis(0)).unwrap();
    let xc = &x - &mean;
    let want = naive_matmul(&xc.t().to_owned(), &xc) / 49.0;
    let t = on(dev, x.clone());
    assert_close(
        &to64(&t.covariance().unwrap()),
        &want.into_dyn(),
        1e-13,
        "covariance",
    );
    let g = naive_matmul(&x.t().to_owned(), &x);
    assert_close(&to64(&t.gram().unwrap()), &g.into_dyn(), 1e-13, "gram");
    // covariance of a non-contiguous (transposed) representation
    let tt = on(dev, x.t().as_standard_layout().into_owned())
        .t()
        .unwrap();
    assert_close(
        &to64(&tt.covariance().unwrap()),
        &to64(&t.covariance().unwrap()),
        1e-14,
        "view",
    );
    let one = on32(dev, Array2::<f32>::zeros((1, 3)));
    assert!(matches!(
        one.covariance(),
        Err(Error::InvalidArgument { .. })
    ));
    Ok(())
}

fn symmetric_eigen_reconstructs_in_descending_order(dev: &Device) -> Result<()> {
    // Closed form: [[2, 1], [1, 2]] has eigenvalues 3 and 1.
    let (l, v) = on(dev, array![[2.0f64, 1.0], [1.0, 2.0]])
        .symmetric_eigen()
        .unwrap();
    let l = l.to_vec::<f64>().unwrap();
    assert!(
        (l[0] - 3.0).abs() < 1e-14 && (l[1] - 1.0).abs() < 1e-14,
        "{l:?}"
    );
    let v = two(&v);
    let r = std::f64::consts::FRAC_1_SQRT_2;
    assert!(
        (v[[0, 0]] - r).abs() < 1e-14 && (v[[1, 0]] - r).abs() < 1e-14,
        "{v}"
    );

    for (dtype, n, tol) in [
        (DType::F64, 50, 1e-12),
        (DType::F32, 50, 5e-5),
        (DType::F64, 200, 1e-11),
    ] {
        let a = spd(n, n as u64);
        let (lam, vec) = on(dev, a.clone())
            .to_dtype(dtype)
            .unwrap()
            .symmetric_eigen()
            .unwrap();
        let lam = to64(&lam).into_dimensionality::<ndarray::Ix1>().unwrap();
        let vec = two(&vec);
        assert!(
            lam.windows(2).into_iter().all(|w| w[0] >= w[1]),
            "not descending"
        );
        // The sign convention: each eigenvector's entry of largest magnitude is positive
        // (n = 200 takes the parallel, tiled copy; 50 the serial one).
        for (k, col) in vec.columns().into_iter().enumerate() {
            let big = col
                .iter()
                .fold(0.0f64, |b, &x| if x.abs() > b.abs() { x } else { b });
            assert!(
                big > 0.0,
                "{dtype:?} n = {n}: eigenvector {k} has largest entry {big}"
            );
        }
        let recon = naive_matmul(&(&vec * &lam), &vec.t().to_owned());
        assert_close(&recon.into_dyn(), &a.clone().into_dyn(), tol, "V Λ Vᵀ");
        let eye = naive_matmul(&vec.t().to_owned(), &vec);
        assert_close(
            &eye.into_dyn(),
            &Array2::<f64>::eye(n).into_dyn(),
            tol,
            "VᵀV",
        );
    }
    // Closed form with a 79-fold eigenvalue, the case divide and conquer deflates:
    // I + u uᵀ has eigenvalue 1 + ‖u‖² (eigenvector u/‖u‖) and 1 on u's complement.
    let n = 80;
    let u = Array1::from_shape_fn(n, |i| ((i % 7) as f64 - 3.0) / 4.0);
    let uu = u.dot(&u);
    let a = Array2::<f64>::eye(n)
        + &u.view()
            .insert_axis(Axis(1))
            .dot(&u.view().insert_axis(Axis(0)));
    let (lam, vec) = on(dev, a.clone()).symmetric_eigen()?;
    let lam = to64(&lam).into_dimensionality::<ndarray::Ix1>().unwrap();
    assert!((lam[0] - (1.0 + uu)).abs() < 1e-12, "{}", lam[0]);
    assert!(
        lam.iter().skip(1).all(|&l| (l - 1.0).abs() < 1e-12),
        "{lam}"
    );
    let vec = two(&vec);
    let top = vec.column(0).to_owned();
    assert!(
        (top.dot(&u).abs() - uu.sqrt()).abs() < 1e-12,
        "top eigenvector"
    );
    let recon = naive_matmul(&(&vec * &lam), &vec.t().to_owned());
    assert_close(&recon.into_dyn(), &a.into_dyn(), 1e-12, "V Λ Vᵀ, repeated");

    // Only the lower triangle is read (by the ndarray API and by the tensor op).
    let mut a = spd(6, 9);
    let full = linalg::symmetric_eigen(a.view()).unwrap().0;
    let full_dev = to64(&on(dev, a.clone()).symmetric_eigen()?.0);
    for i in 0..6 {
        for j in i + 1..6 {
            a[[i, j]] = 1e9;
        }
    }
    let lower = linalg::symmetric_eigen(a.view()).unwrap().0;
    assert_close(
        &lower.into_dyn(),
        &full.into_dyn(),
        1e-12,
        "lower triangle only",
    );
    let lower_dev = to64(&on(dev, a).symmetric_eigen()?.0);
    assert_close(
        &lower_dev,
        &full_dev,
        1e-12,
        "lower triangle only, tensor op",
    );
    let rect = rand_tensor_on(dev, &[3, 4], DType::F32, 1);
    assert!(matches!(
        rect.symmetric_eigen(),
        Err(Error::InvalidArgument { .. })
    ));
    Ok(())
}

fn cholesky_and_triangular_solves(dev: &Device) -> Result<()> {
    for dtype in [DType::F32, DType::F64] {
        let tol = if dtype == DType::F32 { 1e-5 } else { 1e-12 };
        let a = spd(30, 5);
        let ta = on(dev, a.clone()).to_dtype(dtype).unwrap();
        let l = ta.cholesky().unwrap();
        let l64 = two(&l);
        for i in 0..30 {
            for j in i + 1..30 {
                assert_eq!(l64[[i, j]], 0.0, "upper triangle must be zero");
            }
        }
        assert_close(
            &naive_matmul(&l64, &l64.t().to_owned()).into_dyn(),
            &a.clone().into_dyn(),
            tol,
            "L Lᵀ",
        );

        let b = rand_array(&[30, 4], 6)
            .into_dimensionality::<Ix2>()
            .unwrap();
        let tb = on(dev, b.clone()).to_dtype(dtype).unwrap();
        let x = two(&l
            .solve_triangular(&tb, Side::Left, Triangle::Lower, false)
            .unwrap());
        assert_close(
            &naive_matmul(&l64, &x).into_dyn(),
            &b.clone().into_dyn(),
            tol,
            "L X = B",
        );
        let x = two(&l
            .solve_triangular(&tb, Side::Left, Triangle::Lower, true)
            .unwrap());
        assert_close(
            &naive_matmul(&l64.t().to_owned(), &x).into_dyn(),
            &b.clone().into_dyn(),
            tol,
            "Lᵀ X = B",
        );
        // Upper triangle given as a transposed view.
        let u = l.t().unwrap();
        let x = two(&u
            .solve_triangular(&tb, Side::Left, Triangle::Upper, false)
            .unwrap());
        assert_close(
            &naive_matmul(&l64.t().to_owned(), &x).into_dyn(),
            &b.clone().into_dyn(),
            tol,
            "U X = B",
        );
        let x = two(&u
            .solve_triangular(&tb, Side::Left, Triangle::Upper, true)
            .unwrap());
        assert_close(
            &naive_matmul(&l64, &x).into_dyn(),
            &b.clone().into_dyn(),
            tol,
            "Uᵀ X = B",
        );
        // Right side: X op(T) = B with B: [4, 30], for each triangle and transpose.
        let br = b.t().to_owned();
        let tbr = on(dev, br.clone()).to_dtype(dtype).unwrap();
        for (t, tri, t64) in [
            (&l, Triangle::Lower, l64.clone()),
            (&u, Triangle::Upper, l64.t().to_owned()),
        ] {
            for transpose in [false, true] {
                let x = two(&t
                    .solve_triangular(&tbr, Side::Right, tri, transpose)
                    .unwrap());
                let op = if transpose {
                    t64.t().to_owned()
                } else {
                    t64.clone()
                };
                assert_close(
                    &naive_matmul(&x, &op).into_dyn(),
                    &br.clone().into_dyn(),
                    tol,
                    &format!("X op(T) = B, {tri:?}, transpose {transpose}"),
                );
            }
        }
    }
    // A matrix that is not positive definite names its failing pivot.
    let bad = on(
        dev,
        array![[4.0f64, 2.0, 0.0], [2.0, 1.0, 0.0], [0.0, 0.0, 1.0]],
    );
    match bad.cholesky() {
        Err(Error::NotPositiveDefinite { pivot, .. }) => assert_eq!(pivot, 1),
        other => panic!("expected NotPositiveDefinite, got {other:?}"),
    }
    let l = on(dev, Array2::<f64>::eye(3));
    let b = on(dev, Array2::<f64>::zeros((4, 2)));
    assert!(matches!(
        l.solve_triangular(&b, Side::Left, Triangle::Lower, false),
        Err(Error::ShapeMismatch { .. })
    ));
    // [4, 2] has 2 columns, not 3: no right-side solve either.
    assert!(matches!(
        l.solve_triangular(&b, Side::Right, Triangle::Lower, false),
        Err(Error::ShapeMismatch { .. })
    ));
    Ok(())
}

/// Products, eigendecompositions, factors and solves of larger random operands on `dev`
/// against the CPU, with tolerances scaled by the inner dimension and the dtype's roundoff.
fn linalg_agrees_with_the_cpu(dev: &Device) -> Result<()> {
    for dtype in [DType::F32, DType::F64] {
        let e = eps(dtype);
        let a = |d: &Device| rand_tensor_on(d, &[120, 300], dtype, 31);
        let b = |d: &Device| rand_tensor_on(d, &[300, 90], dtype, 32);
        let k_tol = 4.0 * 300.0 * e;
        same_as_cpu(dev, k_tol, "A·B", |d| a(d).matmul(&b(d)))?;
        same_as_cpu(dev, k_tol, "Aᵀ·A", |d| a(d).matmul_tn(&a(d)))?;
        same_as_cpu(dev, k_tol, "B·Bᵀ", |d| b(d).matmul_nt(&b(d)))?;
        let m = to64(&a(&Device::Cpu).covariance()?)
            .into_dimensionality::<Ix2>()
            .unwrap();
        let spd = m + Array2::<f64>::eye(300) * 0.1;
        let s = |d: &Device| on(d, spd.clone()).to_dtype(dtype);
        // Eigenvalues (descending) and the signed eigenvectors of a well-separated spectrum.
        same_as_cpu(dev, 2000.0 * e, "eigenvalues", |d| {
            Ok(s(d)?.symmetric_eigen()?.0)
        })?;
        same_as_cpu(dev, 300.0 * e, "cholesky", |d| s(d)?.cholesky())?;
        let rhs = |d: &Device| rand_tensor_on(d, &[300, 7], dtype, 33);
        for (side, tri, transpose) in [
            (Side::Left, Triangle::Lower, false),
            (Side::Left, Triangle::Lower, true),
            (Side::Right, Triangle::Upper, false),
        ] {
            same_as_cpu(dev, 2000.0 * e, "solve", |d| {
                let l = s(d)?.cholesky()?;
                let l = if tri == Triangle::Upper { l.t()? } else { l };
                let r = if side == Side::Left {
                    rhs(d)
                } else {
                    rhs(d).t()?
                };
                l.solve_triangular(&r, side, tri, transpose)
            })?;
        }
    }
    Ok(())
}

#[test]
fn cpu_kernels_names_the_backend_and_the_detected_features() {
    let kernels = linalg::cpu_kernels();
    let mut parts = kernels.split(' ');
    assert_eq!(parts.next(), Some(linalg::BACKEND));
    let rest = parts.next().expect("an architecture after the backend");
    assert_eq!(parts.next(), None, "{kernels}");
    let mut features = rest.split('+');
    assert_eq!(features.next(), Some(std::env::consts::ARCH));
    let features: Vec<&str> = features.collect();
    #[cfg(target_arch = "x86_64")]
    {
        let expected: Vec<&str> = [
            ("avx512f", is_x86_feature_detected!("avx512f")),
            ("avx512bw", is_x86_feature_detected!("avx512bw")),
            ("avx512cd", is_x86_feature_detected!("avx512cd")),
            ("avx512dq", is_x86_feature_detected!("avx512dq")),
            ("avx512vl", is_x86_feature_detected!("avx512vl")),
            ("avx2", is_x86_feature_detected!("avx2")),
            ("fma", is_x86_feature_detected!("fma")),
        ]
        .into_iter()
        .filter_map(|(f, on)| on.then_some(f))
        .collect();
        assert_eq!(features, expected, "{kernels}");
    }
    #[cfg(not(target_arch = "x86_64"))]
    assert!(features.is_empty(), "{kernels}");
}
