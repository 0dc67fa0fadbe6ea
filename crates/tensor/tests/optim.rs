//! The fused Adam update against the unfused tensor ops it replaces, bit for bit.

mod common;

use common::*;
use specreg_tensor::{AdamCoefficients, DType, Device, Error, Result, Tensor};

test_device!(
    fused_adam_equals_the_unfused_ops_bit_for_bit,
    fused_adam_rejects_mismatched_operands,
);

fn coefficients(t: u64, amsgrad: bool, weight_decay: f64) -> AdamCoefficients {
    let (lr, beta1, beta2): (f64, f64, f64) = (1e-3, 0.9, 0.999);
    let t = t as f64;
    AdamCoefficients {
        beta1,
        beta2,
        eps: 1e-8,
        weight_decay,
        step_size: lr / (1.0 - beta1.powf(t)),
        inv_sqrt_bias2: 1.0 / (1.0 - beta2.powf(t)).sqrt(),
        amsgrad,
    }
}

/// The update as the optimiser computed it before it was fused: one tensor op at a time.
fn unfused(
    theta: &Tensor,
    g: &Tensor,
    m: &Tensor,
    v: &Tensor,
    vmax: Option<&Tensor>,
    k: &AdamCoefficients,
) -> Result<[Option<Tensor>; 4]> {
    let g = if k.weight_decay != 0.0 {
        g.add(&theta.scale(k.weight_decay)?)?
    } else {
        g.clone()
    };
    let m = m.scale(k.beta1)?.add(&g.scale(1.0 - k.beta1)?)?;
    let v = v.scale(k.beta2)?.add(&g.sqr()?.scale(1.0 - k.beta2)?)?;
    let vhat = match (k.amsgrad, vmax) {
        (false, _) => None,
        (true, Some(p)) => Some(p.maximum(&v)?),
        (true, None) => Some(v.clone()),
    };
    let denom = vhat
        .as_ref()
        .unwrap_or(&v)
        .sqrt()?
        .scale(k.inv_sqrt_bias2)?
        .add_scalar(k.eps)?;
    let theta = theta.sub(&m.div(&denom)?.scale(k.step_size)?)?;
    Ok([Some(theta), Some(m), Some(v), vhat])
}

fn bits(t: &Tensor) -> Vec<u64> {
    match t.dtype() {
        DType::F32 => t
            .to_vec::<f32>()
            .unwrap()
            .iter()
            .map(|x| u64::from(x.to_bits()))
            .collect(),
        DType::F64 => t
            .to_vec::<f64>()
            .unwrap()
            .iter()
            .map(|x| x.to_bits())
            .collect(),
    }
}

/// Operands with the awkward values in them: ±0, a NaN and an infinity in the running
/// maximum, a zero gradient, tiny and large magnitudes.
fn operands(dev: &Device, n: usize, dtype: DType, seed: u64) -> Result<[Tensor; 5]> {
    let theta = rand_tensor_on(dev, &[n], dtype, seed);
    let g = rand_tensor_on(dev, &[n], dtype, seed + 1);
    let m = rand_tensor_on(dev, &[n], dtype, seed + 2).scale(0.1)?;
    let v = rand_tensor_on(dev, &[n], dtype, seed + 3)
        .sqr()?
        .scale(1e-3)?;
    let mut special = rand_tensor_on(&Device::Cpu, &[n], dtype, seed + 4)
        .sqr()?
        .to_dtype(DType::F64)?
        .to_vec::<f64>()?;
    for (i, x) in [f64::NAN, f64::INFINITY, 0.0, -0.0, 1e-30, 1e30]
        .iter()
        .enumerate()
    {
        special[i] = *x;
    }
    let vmax = Tensor::from_vec(special, &[n], &Device::Cpu)?
        .to_dtype(dtype)?
        .to_device(dev)?;
    let mut gz = g.to_dtype(DType::F64)?.to_vec::<f64>()?;
    gz[7] = 0.0;
    gz[8] = -0.0;
    let g = Tensor::from_vec(gz, &[n], &Device::Cpu)?
        .to_dtype(dtype)?
        .to_device(dev)?;
    Ok([theta, g, m, v, vmax])
}

fn fused_adam_equals_the_unfused_ops_bit_for_bit(dev: &Device) -> Result<()> {
    // 70_001 elements: several parallel chunks on the CPU and a ragged last one.
    for (dtype, n) in [(DType::F32, 70_001), (DType::F64, 70_001), (DType::F32, 37)] {
        let [theta, g, m, v, vmax] = operands(dev, n, dtype, 11)?;
        for amsgrad in [true, false] {
            for wd in [0.0, 1e-2] {
                for (t, prev) in [(1, None), (5, Some(&vmax))] {
                    let prev = prev.filter(|_| amsgrad);
                    let k = coefficients(t, amsgrad, wd);
                    let up = theta.adam_update(&g, &m, &v, prev, &k)?;
                    let want = unfused(&theta, &g, &m, &v, prev, &k)?;
                    let got = [
                        Some(up.param),
                        Some(up.exp_avg),
                        Some(up.exp_avg_sq),
                        up.max_exp_avg_sq,
                    ];
                    let names = ["param", "exp_avg", "exp_avg_sq", "max_exp_avg_sq"];
                    for ((g, w), name) in got.iter().zip(&want).zip(names) {
                        let case = format!("{dtype:?} n={n} amsgrad={amsgrad} wd={wd} t={t}");
                        match (g, w) {
                            (Some(g), Some(w)) => {
                                assert_eq!(g.shape(), w.shape(), "{name}, {case}");
                                assert!(bits(g) == bits(w), "{name} differs, {case}");
                            }
                            (None, None) => {}
                            _ => panic!("{name} present in one result only, {case}"),
                        }
                    }
                }
            }
        }
    }
    Ok(())
}

fn fused_adam_rejects_mismatched_operands(dev: &Device) -> Result<()> {
    let [theta, g, m, v, vmax] = operands(dev, 16, DType::F32, 3)?;
    let k = coefficients(1, true, 0.0);
    let short = Tensor::zeros(&[15], DType::F32, dev)?;
    assert!(matches!(
        theta.adam_update(&short, &m, &v, None, &k),
        Err(Error::ShapeMismatch {
            op: "adam_update",
            ..
        })
    ));
    let g64 = g.to_dtype(DType::F64)?;
    assert!(matches!(
        theta.adam_update(&g, &m, &v, Some(&g64), &k),
        Err(Error::ShapeMismatch { .. }) | Err(Error::DTypeMismatch { .. })
    ));
    let plain = coefficients(1, false, 0.0);
    assert!(matches!(
        theta.adam_update(&g, &m, &v, Some(&vmax), &plain),
        Err(Error::InvalidArgument {
            op: "adam_update",
            ..
        })
    ));
    let bad = AdamCoefficients {
        step_size: f64::NAN,
        ..k
    };
    let err = theta.adam_update(&g, &m, &v, None, &bad).unwrap_err();
    assert!(err.to_string().contains("step_size"), "{err}");
    Ok(())
}
