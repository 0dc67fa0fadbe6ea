//! Row selection, masked choice, comparisons, device argmax, identity and triangle masks,
//! row norms and the host-read counter, against naive references.

mod common;

use common::*;
use ndarray::{Array1, Array2, ArrayD, Axis, Ix1, Ix2, array};
use specreg_tensor::{DType, Device, Error, HostReads, Result, Tensor, host_reads};

const DTYPES: [DType; 2] = [DType::F32, DType::F64];

test_device!(
    index_select_rows_matches_naive_gather,
    where_cond_elementwise_and_per_row,
    comparisons_give_zero_or_one_and_nan_is_false,
    row_argmax_stays_on_device_and_matches_host_argmax,
    eye_and_triangle_masks,
    row_norms_and_scale_rows,
    host_reads_device_ops_read_nothing,
    argsort_gather_scatter_round_trip,
    sum_all_f64_and_concat_stay_on_device,
    selections_agree_with_the_cpu,
);

/// A value read back: device errors reported at the next host read (bad indices on a GPU)
/// surface here.
fn read(t: Result<Tensor>) -> Result<Vec<f64>> {
    t?.to_dtype(DType::F64)?.to_vec::<f64>()
}

fn index_select_rows_matches_naive_gather(dev: &Device) -> Result<()> {
    for dtype in DTYPES {
        let t = rand_tensor_on(dev, &[5, 3, 2], dtype, 1);
        let a = to64(&t);
        let rows = [4, 0, 0, 2];
        let got = to64(&t.index_select_rows(&rows).unwrap());
        assert_eq!(got.shape(), &[4, 3, 2]);
        for (k, &r) in rows.iter().enumerate() {
            assert_eq!(got.index_axis(Axis(0), k), a.index_axis(Axis(0), r));
        }
        // Through a transposed (strided) view too.
        let m = rand_tensor_on(dev, &[3, 4], dtype, 2);
        let got = to64(&m.t().unwrap().index_select_rows(&[3, 1]).unwrap());
        let want = to64(&m).t().select(Axis(0), &[3, 1]);
        assert_eq!(got, want);
        assert!(t.index_select_rows(&[]).unwrap().shape() == [0, 3, 2]);
        match t.index_select_rows(&[1, 5]) {
            Err(Error::InvalidArgument { reason, .. }) => assert!(reason.contains("row 5")),
            other => panic!("expected an out-of-range error, got {other:?}"),
        }
    }
    Ok(())
}

fn where_cond_elementwise_and_per_row(dev: &Device) -> Result<()> {
    for dtype in DTYPES {
        let t = rand_tensor_on(dev, &[3, 4], dtype, 3);
        let f = rand_tensor_on(dev, &[3, 4], dtype, 4);
        let mask =
            rand_tensor_on(dev, &[3, 4], dtype, 5).greater(&t.full_like(0.0, &[3, 4]).unwrap());
        let mask = mask.unwrap();
        let (m, a, b) = (to64(&mask), to64(&t), to64(&f));
        let want = ArrayD::from_shape_fn(a.raw_dim(), |i| if m[&i] != 0.0 { a[&i] } else { b[&i] });
        assert_eq!(to64(&mask.where_cond(&t, &f).unwrap()), want);

        let rows = on(dev, array![1.0, 0.0, 1.0]).to_dtype(dtype).unwrap();
        let got = to64(&rows.where_cond(&t, &f).unwrap());
        for (i, keep) in [true, false, true].into_iter().enumerate() {
            let src = if keep { &a } else { &b };
            assert_eq!(got.index_axis(Axis(0), i), src.index_axis(Axis(0), i));
        }
        let short = on(dev, array![1.0, 0.0]).to_dtype(dtype).unwrap();
        assert!(matches!(
            short.where_cond(&t, &f),
            Err(Error::ShapeMismatch { .. })
        ));
    }
    let m32 = on32(dev, array![1.0f32]);
    let x64 = on(dev, array![2.0f64]);
    assert!(matches!(
        m32.where_cond(&x64, &x64),
        Err(Error::DTypeMismatch { .. })
    ));
    Ok(())
}

fn comparisons_give_zero_or_one_and_nan_is_false(dev: &Device) -> Result<()> {
    let a = on32(dev, array![1.0f32, 2.0, f32::NAN, 3.0]);
    let b = on32(dev, array![1.0f32, 1.0, 1.0, 4.0]);
    assert_eq!(
        a.greater(&b).unwrap().to_vec::<f32>().unwrap(),
        [0.0, 1.0, 0.0, 0.0]
    );
    assert_eq!(
        a.equal(&b).unwrap().to_vec::<f32>().unwrap(),
        [1.0, 0.0, 0.0, 0.0]
    );
    Ok(())
}

fn row_argmax_stays_on_device_and_matches_host_argmax(dev: &Device) -> Result<()> {
    for dtype in DTYPES {
        let t = on(
            dev,
            array![[0.0, 3.0, 3.0], [5.0, -1.0, 2.0], [-2.0, -3.0, -1.0]],
        )
        .to_dtype(dtype)
        .unwrap();
        let reads = HostReads::start();
        let idx = t.row_argmax().unwrap();
        assert_eq!(
            reads.count(),
            0,
            "row_argmax reads nothing: {:?}",
            reads.ops()
        );
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
    Ok(())
}

fn eye_and_triangle_masks(dev: &Device) -> Result<()> {
    for dtype in DTYPES {
        let eye = Tensor::eye(3, dtype, dev).unwrap();
        assert_eq!(eye.device(), *dev);
        assert_eq!(eye.dtype(), dtype);
        assert_eq!(to64(&eye), Array2::<f64>::eye(3).into_dyn());
        let phi = to64(&Tensor::tril_mask(3, 0.5, 1.0, dtype, dev).unwrap());
        let want = array![[0.5, 0.0, 0.0], [1.0, 0.5, 0.0], [1.0, 1.0, 0.5]];
        assert_eq!(phi, want.into_dyn());
        assert_eq!(Tensor::eye(0, dtype, dev).unwrap().shape(), &[0, 0]);
    }
    Ok(())
}

fn row_norms_and_scale_rows(dev: &Device) -> Result<()> {
    for dtype in DTYPES {
        let t = rand_tensor_on(dev, &[4, 2, 3], dtype, 6);
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

        let m = rand_tensor_on(dev, &[3, 2], dtype, 7);
        let f = on(dev, array![2.0, 0.0, -0.5]);
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
    Ok(())
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

/// On any device, ops read nothing back; each public read counts once, and so does a move
/// from a GPU to the host (a move from the CPU to the CPU moves nothing).
fn host_reads_device_ops_read_nothing(dev: &Device) -> Result<()> {
    let x = rand_tensor_on(dev, &[6, 5], DType::F32, 8);
    let rec = HostReads::start();
    let h = x.matmul_nt(&x)?.tanh()?.sum_axis(1)?;
    let order = h.argsort_descending()?;
    let packed = Tensor::concat(&[&h.gather(&order)?.sum_all_f64()?, &x.row_norms()?])?;
    let (y, arg) = x.reshape(&[1, 1, 6, 5])?.max_pool2d()?;
    let _ = y.max_pool2d_backward(&arg, 6, 5)?;
    assert_eq!(rec.count(), 0, "device ops read nothing: {:?}", rec.ops());
    assert_eq!(packed.to_vec::<f64>()?.len(), 7);
    let _ = x.to_device(&Device::Cpu)?;
    let want = if dev.is_cpu() {
        vec!["to_vec"]
    } else {
        vec!["to_vec", "to_device(cpu)"]
    };
    assert_eq!(rec.ops(), want);
    Ok(())
}

fn argsort_gather_scatter_round_trip(dev: &Device) -> Result<()> {
    for dtype in DTYPES {
        let v = on(dev, array![0.5, 3.0, -1.0, 3.0, 2.0])
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
        let bad = on(dev, array![0.0, 5.0]).to_dtype(dtype).unwrap();
        // On a GPU the index is checked by the kernel and reported at the next host read.
        match read(v.gather(&bad)) {
            Err(Error::InvalidArgument { reason, .. }) => assert!(reason.contains("index 5")),
            other => panic!("expected an index error, got {other:?}"),
        }
        let half = on(dev, array![0.5]).to_dtype(dtype).unwrap();
        assert!(read(v.gather(&half)).is_err());
        match read(bad.scatter(&bad, 3)) {
            Err(Error::InvalidArgument { reason, .. }) => assert!(reason.contains("index 5")),
            other => panic!("expected an index error, got {other:?}"),
        }
        // The error was reported once: the next read succeeds.
        assert_eq!(read(Ok(v.clone()))?.len(), 5);
    }
    let nan = on(dev, array![1.0f64, f64::NAN, 2.0]);
    assert_eq!(
        nan.argsort_descending().unwrap().to_vec::<f64>().unwrap(),
        [1.0, 2.0, 0.0]
    );
    Ok(())
}

fn sum_all_f64_and_concat_stay_on_device(dev: &Device) -> Result<()> {
    let x = rand_tensor_on(dev, &[7, 5], DType::F32, 9);
    let rec = HostReads::start();
    let s = x.sum_all_f64().unwrap();
    let packed = Tensor::concat(&[&s, &x.sum_all_f64().unwrap().reshape(&[1]).unwrap()]).unwrap();
    assert_eq!(rec.count(), 0);
    assert_eq!((s.shape(), s.dtype()), (&[][..], DType::F64));
    let want = x.sum_all().unwrap();
    assert_eq!(packed.to_vec::<f64>().unwrap(), [want, want]);
    let a = on32(dev, array![1.0f32, 2.0]);
    let b = on32(dev, array![3.0f32]);
    assert_eq!(
        Tensor::concat(&[&a, &b]).unwrap().to_vec::<f32>().unwrap(),
        [1.0, 2.0, 3.0]
    );
    assert!(matches!(
        Tensor::concat(&[&a, &s]),
        Err(Error::DTypeMismatch { .. })
    ));
    assert!(Tensor::concat(&[]).is_err());
    Ok(())
}

/// Sorting, gathering, scattering and selecting a longer random vector on `dev` give
/// exactly the CPU's results (these ops only move values).
fn selections_agree_with_the_cpu(dev: &Device) -> Result<()> {
    for dtype in DTYPES {
        // Ties (rounded values) exercise the stable order.
        let v = |d: &Device| {
            rand_tensor_on(d, &[1500], dtype, 41)
                .scale(8.0)?
                .sign()?
                .add(
                    &rand_tensor_on(d, &[1500], dtype, 42)
                        .scale(3.0)?
                        .relu()?
                        .to_dtype(DType::F32)?
                        .to_dtype(dtype)?,
                )
        };
        same_as_cpu(dev, 0.0, "argsort", |d| v(d)?.argsort_descending())?;
        same_as_cpu(dev, 0.0, "sorted", |d| {
            let x = v(d)?;
            x.gather(&x.argsort_descending()?)
        })?;
        same_as_cpu(dev, 0.0, "scatter", |d| {
            let x = v(d)?;
            let order = x.argsort_descending()?;
            x.gather(&order)?.scale(2.0)?.scatter(&order, 1500)
        })?;
        let m = |d: &Device| rand_tensor_on(d, &[40, 9], dtype, 43);
        same_as_cpu(dev, 0.0, "row argmax", |d| m(d).row_argmax())?;
        same_as_cpu(dev, 0.0, "rows", |d| m(d).index_select_rows(&[39, 0, 7, 7]))?;
        same_as_cpu(dev, 0.0, "where", |d| {
            let mask = m(d).greater(&m(d).full_like(0.0, &[40, 9])?)?;
            mask.where_cond(&m(d), &m(d).neg()?)
        })?;
    }
    Ok(())
}
