//! Row selection, masked choice, comparisons, device argmax, identity and triangle masks,
//! row norms and the host-read counter, against naive references.

mod common;

use common::*;
use ndarray::{Array1, Array2, ArrayD, Axis, Ix1, Ix2, array};
use specreg_tensor::{DType, Device, Error, HostReads, Tensor, host_reads};

const DTYPES: [DType; 2] = [DType::F32, DType::F64];

#[test]
fn index_select_rows_matches_naive_gather() {
    for dtype in DTYPES {
        let t = rand_tensor(&[5, 3, 2], dtype, 1);
        let a = to64(&t);
        let rows = [4, 0, 0, 2];
        let got = to64(&t.index_select_rows(&rows).unwrap());
        assert_eq!(got.shape(), &[4, 3, 2]);
        for (k, &r) in rows.iter().enumerate() {
            assert_eq!(got.index_axis(Axis(0), k), a.index_axis(Axis(0), r));
        }
        // Through a transposed (strided) view too.
        let m = rand_tensor(&[3, 4], dtype, 2);
        let got = to64(&m.t().unwrap().index_select_rows(&[3, 1]).unwrap());
        let want = to64(&m).t().select(Axis(0), &[3, 1]);
        assert_eq!(got, want);
        assert!(t.index_select_rows(&[]).unwrap().shape() == [0, 3, 2]);
        match t.index_select_rows(&[1, 5]) {
            Err(Error::InvalidArgument { reason, .. }) => assert!(reason.contains("row 5")),
            other => panic!("expected an out-of-range error, got {other:?}"),
        }
    }
}

#[test]
fn where_cond_elementwise_and_per_row() {
    for dtype in DTYPES {
        let t = rand_tensor(&[3, 4], dtype, 3);
        let f = rand_tensor(&[3, 4], dtype, 4);
        let mask = rand_tensor(&[3, 4], dtype, 5).greater(&t.full_like(0.0, &[3, 4]).unwrap());
        let mask = mask.unwrap();
        let (m, a, b) = (to64(&mask), to64(&t), to64(&f));
        let want = ArrayD::from_shape_fn(a.raw_dim(), |i| if m[&i] != 0.0 { a[&i] } else { b[&i] });
        assert_eq!(to64(&mask.where_cond(&t, &f).unwrap()), want);

        let rows = Tensor::from_array(array![1.0, 0.0, 1.0])
            .to_dtype(dtype)
            .unwrap();
        let got = to64(&rows.where_cond(&t, &f).unwrap());
        for (i, keep) in [true, false, true].into_iter().enumerate() {
            let src = if keep { &a } else { &b };
            assert_eq!(got.index_axis(Axis(0), i), src.index_axis(Axis(0), i));
        }
        let short = Tensor::from_array(array![1.0, 0.0])
            .to_dtype(dtype)
            .unwrap();
        assert!(matches!(
            short.where_cond(&t, &f),
            Err(Error::ShapeMismatch { .. })
        ));
    }
    let m32 = Tensor::from_array(array![1.0f32]);
    let x64 = Tensor::from_array(array![2.0f64]);
    assert!(matches!(
        m32.where_cond(&x64, &x64),
        Err(Error::DTypeMismatch { .. })
    ));
}

#[test]
fn comparisons_give_zero_or_one_and_nan_is_false() {
    let a = Tensor::from_array(array![1.0f32, 2.0, f32::NAN, 3.0]);
    let b = Tensor::from_array(array![1.0f32, 1.0, 1.0, 4.0]);
    assert_eq!(
        a.greater(&b).unwrap().to_vec::<f32>().unwrap(),
        [0.0, 1.0, 0.0, 0.0]
    );
    assert_eq!(
        a.equal(&b).unwrap().to_vec::<f32>().unwrap(),
        [1.0, 0.0, 0.0, 0.0]
    );
}

#[test]
fn row_argmax_stays_on_device_and_matches_host_argmax() {
    for dtype in DTYPES {
        let t = Tensor::from_array(array![
            [0.0, 3.0, 3.0],
            [5.0, -1.0, 2.0],
            [-2.0, -3.0, -1.0]
        ])
        .to_dtype(dtype)
        .unwrap();
        let idx = t.row_argmax().unwrap();
        assert_eq!((idx.shape(), idx.dtype()), (&[3][..], dtype));
        assert_eq!(
            to64(&idx).into_dimensionality::<Ix1>().unwrap(),
            array![1.0, 0.0, 2.0]
        );
        assert_eq!(t.argmax_rows().unwrap(), vec![1, 0, 2]);
        assert!(matches!(
            t.reshape(&[9]).unwrap().row_argmax(),
            Err(Error::RankMismatch { .. })
        ));
    }
}

#[test]
fn eye_and_triangle_masks() {
    for dtype in DTYPES {
        let eye = Tensor::eye(3, dtype, &Device::Cpu).unwrap();
        assert_eq!(eye.dtype(), dtype);
        assert_eq!(to64(&eye), Array2::<f64>::eye(3).into_dyn());
        let phi = to64(&Tensor::tril_mask(3, 0.5, 1.0, dtype, &Device::Cpu).unwrap());
        let want = array![[0.5, 0.0, 0.0], [1.0, 0.5, 0.0], [1.0, 1.0, 0.5]];
        assert_eq!(phi, want.into_dyn());
        assert_eq!(
            Tensor::eye(0, dtype, &Device::Cpu).unwrap().shape(),
            &[0, 0]
        );
    }
}

#[test]
fn row_norms_and_scale_rows() {
    for dtype in DTYPES {
        let t = rand_tensor(&[4, 2, 3], dtype, 6);
        let a = to64(&t).into_shape_with_order((4, 6)).unwrap();
        let norms = t.row_norms().unwrap();
        assert_eq!(norms.dtype(), DType::F64);
        let got = norms
            .to_array::<f64>()
            .unwrap()
            .into_dimensionality::<Ix1>()
            .unwrap();
        let want: Array1<f64> = a.rows().into_iter().map(|r| r.dot(&r).sqrt()).collect();
        let tol = if dtype == DType::F32 { 1e-6 } else { 1e-14 };
        assert_close(&got.clone().into_dyn(), &want.into_dyn(), tol, "row norms");

        let m = rand_tensor(&[3, 2], dtype, 7);
        let f = Tensor::from_array(array![2.0, 0.0, -0.5]);
        let got = to64(&m.scale_rows(&f).unwrap())
            .into_dimensionality::<Ix2>()
            .unwrap();
        let base = to64(&m).into_dimensionality::<Ix2>().unwrap();
        for (i, s) in [2.0, 0.0, -0.5].into_iter().enumerate() {
            let want = base.row(i).mapv(|x| x * s);
            assert_close(
                &got.row(i).to_owned().into_dyn(),
                &want.into_dyn(),
                tol,
                "scaled row",
            );
        }
    }
}

#[test]
fn host_reads_counts_each_public_read_once() {
    let x = rand_tensor(&[4, 3], DType::F32, 8);
    let rec = HostReads::start();
    let before = host_reads();
    // Device-side work is free.
    let y = x.sqr().unwrap().sum_axis(1).unwrap();
    assert_eq!(rec.count(), 0, "device ops read nothing: {:?}", rec.ops());
    // Each of these reads once, whatever it calls inside.
    y.to_vec::<f32>().unwrap();
    y.to_array::<f32>().unwrap();
    y.as_array_view::<f32>().unwrap();
    y.sum_all().unwrap();
    y.mean_all().unwrap();
    y.max_abs().unwrap();
    y.sum_axis(0).unwrap().to_scalar().unwrap();
    x.argmax_rows().unwrap();
    // A move to the CPU of a CPU tensor moves nothing.
    x.to_device(&Device::Cpu).unwrap();
    assert_eq!(
        rec.ops(),
        [
            "to_vec",
            "to_array",
            "as_array_view",
            "sum_all",
            "mean_all",
            "max_abs",
            "to_scalar",
            "argmax_rows"
        ]
    );
    assert_eq!(rec.count(), 8);
    assert_eq!(host_reads() - before, 8);
    // Recorders nest and see only their own span.
    let inner = HostReads::start();
    y.sum_all().unwrap();
    assert_eq!((inner.count(), rec.count()), (1, 9));
}

#[test]
fn argsort_gather_scatter_round_trip() {
    for dtype in DTYPES {
        let v = Tensor::from_array(array![0.5, 3.0, -1.0, 3.0, 2.0])
            .to_dtype(dtype)
            .unwrap();
        let order = v.argsort_descending().unwrap();
        // Stable: the two 3.0s keep their index order.
        assert_eq!(
            to64(&order).iter().copied().collect::<Vec<_>>(),
            [1.0, 3.0, 4.0, 0.0, 2.0]
        );
        let sorted = v.gather(&order).unwrap();
        assert_eq!(
            to64(&sorted).iter().copied().collect::<Vec<_>>(),
            [3.0, 3.0, 2.0, 0.5, -1.0]
        );
        // Scattering the sorted values back through the permutation restores the original.
        assert_eq!(to64(&sorted.scatter(&order, 5).unwrap()), to64(&v));
        let bad = Tensor::from_array(array![0.0, 5.0])
            .to_dtype(dtype)
            .unwrap();
        match v.gather(&bad) {
            Err(Error::InvalidArgument { reason, .. }) => assert!(reason.contains("index 5")),
            other => panic!("expected an index error, got {other:?}"),
        }
        let half = Tensor::from_array(array![0.5]).to_dtype(dtype).unwrap();
        assert!(v.gather(&half).is_err());
    }
    let nan = Tensor::from_array(array![1.0f64, f64::NAN, 2.0]);
    assert_eq!(
        nan.argsort_descending().unwrap().to_vec::<f64>().unwrap(),
        [1.0, 2.0, 0.0]
    );
}

#[test]
fn sum_all_f64_and_concat_stay_on_device() {
    let x = rand_tensor(&[7, 5], DType::F32, 9);
    let rec = HostReads::start();
    let s = x.sum_all_f64().unwrap();
    let packed = Tensor::concat(&[&s, &x.sum_all_f64().unwrap().reshape(&[1]).unwrap()]).unwrap();
    assert_eq!(rec.count(), 0);
    assert_eq!((s.shape(), s.dtype()), (&[][..], DType::F64));
    let want = x.sum_all().unwrap();
    assert_eq!(packed.to_vec::<f64>().unwrap(), [want, want]);
    let a = Tensor::from_array(array![1.0f32, 2.0]);
    let b = Tensor::from_array(array![3.0f32]);
    assert_eq!(
        Tensor::concat(&[&a, &b]).unwrap().to_vec::<f32>().unwrap(),
        [1.0, 2.0, 3.0]
    );
    assert!(matches!(
        Tensor::concat(&[&a, &s]),
        Err(Error::DTypeMismatch { .. })
    ));
    assert!(Tensor::concat(&[]).is_err());
}
