//! The training loop's numerical guards: what a step checks in its one host read, and the
//! diagnosis that runs only once that read has shown something not finite.
//!
//! **Every step** the loop packs, next to the losses, one probe per parameter gradient: the
//! gradient's sum, accumulated in `f64` ([`Tensor::sum_all_f64`], one reduction over the
//! gradient and no new tensor of its size). The sum is NaN or infinite when an entry is; a
//! sum of finite values can also overflow (entries near `f64::MAX`), so a non-finite probe
//! is confirmed by counting the entries before it is reported. Nothing else is added to a
//! step, and none of its values change.
//!
//! **On the failure path** (a non-finite loss or gradient, or an error of the hook's
//! `observe`), the loop spends more host reads to name the cause: it runs the batch
//! forward once more, layer by layer, with the parameters of the failed step (no
//! optimiser step has been taken) in [`Mode::BatchStatistics`] (the same normalisation as
//! training, no running statistic updated), and reports the input, or else the first layer
//! whose output holds a NaN or an infinity. Activations are not probed on the normal path:
//! a non-finite value there reaches the loss (NaN and ∞ survive every linear map), except
//! where a saturating layer absorbs it (`tanh(∞) = 1`), which gives the same output and
//! gradients as a very large finite value, so training is not harmed.

use specreg_tensor::{DType, Tensor};

use crate::{Mode, Network, NonFiniteQuantity, Result};

/// `"{index}.{kind} ({role})"`: the layer's position and kind with the representation it
/// computes (`3.tanh (fc2)`), leads to (`2.linear (before fc2)`) or `logits`.
pub(super) fn layer_label(net: &Network, i: usize) -> String {
    let layers = net.sequential().layers();
    let kind = layers.get(i).map_or("layer", |l| l.name());
    let reps: Vec<(&str, usize)> = net
        .hidden_names()
        .into_iter()
        .filter_map(|n| net.hidden_layer_index(n).ok().map(|l| (n, l)))
        .collect();
    let role = if let Some((n, _)) = reps.iter().find(|(_, l)| *l == i) {
        (*n).to_string()
    } else if i + 1 == layers.len() {
        "logits".to_string()
    } else if let Some((n, _)) = reps.iter().find(|(_, l)| *l > i) {
        format!("before {n}")
    } else {
        "before the logits".to_string()
    };
    format!("{i}.{kind} ({role})")
}

/// Each parameter's checkpoint name (`"{layer index}.{name}"`) and its layer's label, in
/// the order of [`Network::params`].
fn parameter_names(net: &Network) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (i, l) in net.sequential().layers().iter().enumerate() {
        for p in l.params() {
            out.push((format!("{i}.{}", p.name), layer_label(net, i)));
        }
    }
    out
}

/// One probe per parameter that has a gradient: its position in [`Network::params`] and
/// the gradient's sum (0-D, `f64`, on the device).
pub(super) fn gradient_probes(net: &Network) -> Result<Vec<(usize, Tensor)>> {
    let mut out = Vec::new();
    for (k, p) in net.params().iter().enumerate() {
        if let Some(g) = &p.grad {
            out.push((k, g.sum_all_f64()?));
        }
    }
    Ok(out)
}

/// How many entries of `t` are NaN or infinite (one host read).
fn count_non_finite(t: &Tensor) -> Result<usize> {
    let v = t.to_dtype(DType::F64)?.to_vec::<f64>()?;
    Ok(v.iter().filter(|x| !x.is_finite()).count())
}

/// The first parameter, in network order, whose probe was not finite and whose gradient
/// does hold a NaN or an infinity (one host read per such parameter; none when every probe
/// is finite).
pub(super) fn non_finite_gradient(
    net: &Network,
    probes: &[(usize, Tensor)],
    values: &[f64],
) -> Result<Option<NonFiniteQuantity>> {
    if values.iter().all(|v| v.is_finite()) {
        return Ok(None);
    }
    let names = parameter_names(net);
    let params = net.params();
    for ((k, _), v) in probes.iter().zip(values) {
        if v.is_finite() {
            continue;
        }
        let Some(g) = params.get(*k).and_then(|p| p.grad.as_ref()) else {
            continue;
        };
        let count = count_non_finite(g)?;
        if count > 0 {
            let (parameter, layer) = names
                .get(*k)
                .cloned()
                .unwrap_or_else(|| (format!("parameter {k}"), "of the network".to_string()));
            return Ok(Some(NonFiniteQuantity::Gradient {
                parameter,
                layer,
                count,
                of: g.elem_count(),
            }));
        }
    }
    Ok(None)
}

/// The input batch `x` if it holds a NaN or an infinity, else the first layer whose
/// output does, forwarding `x` through the network layer by layer in
/// [`Mode::BatchStatistics`]; `None` when everything is finite or the pass itself fails
/// (the failure the step already found is then reported as it is).
pub(super) fn first_non_finite_activation(
    net: &mut Network,
    x: &Tensor,
) -> Option<NonFiniteQuantity> {
    walk(net, x).ok().flatten()
}

fn walk(net: &mut Network, x: &Tensor) -> Result<Option<NonFiniteQuantity>> {
    let count = count_non_finite(x)?;
    if count > 0 {
        return Ok(Some(NonFiniteQuantity::Input {
            count,
            of: x.elem_count(),
        }));
    }
    let labels: Vec<String> = (0..net.sequential().len())
        .map(|i| layer_label(net, i))
        .collect();
    let mut shape = vec![x.shape().first().copied().unwrap_or(0)];
    shape.extend_from_slice(net.input_shape());
    let mut h = if x.shape() == shape.as_slice() {
        x.clone()
    } else {
        x.reshape(&shape)?
    };
    for (layer, label) in net.sequential_mut().layers_mut().iter_mut().zip(labels) {
        h = layer.forward(&h, Mode::BatchStatistics)?;
        if h.sum_all_f64()?.to_scalar()?.is_finite() {
            continue;
        }
        let count = count_non_finite(&h)?;
        if count > 0 {
            return Ok(Some(NonFiniteQuantity::Activation {
                layer: label,
                count,
                of: h.elem_count(),
            }));
        }
    }
    Ok(None)
}
