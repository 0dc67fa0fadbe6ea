//! The Adam optimiser, exactly as PyTorch's `torch.optim.Adam` (single-tensor path).
//!
//! For every parameter `θ` with a gradient `g` (a parameter whose [`Param::grad`] is `None`
//! is skipped for that step, state and step count untouched, like PyTorch):
//!
//! ```text
//! t ← t + 1                                    (per parameter, PyTorch's state['step'])
//! g ← g + wd·θ                                 (if weight_decay ≠ 0)
//! m ← β₁ m + (1 − β₁) g
//! v ← β₂ v + (1 − β₂) g²
//! v̂ ← max(v̂, v)                                (amsgrad; otherwise v̂ = v)
//! denom = √v̂ / √(1 − β₂ᵗ) + ε
//! θ ← θ − (lr / (1 − β₁ᵗ)) · m / denom
//! ```
//!
//! The bias corrections are computed in `f64`; the rest is one fused pass per parameter,
//! [`Tensor::adam_update`], on any device and dtype the tensor crate supports (it rounds
//! exactly as the sequence of tensor ops above would).
//!
//! The state is kept per *position* in the parameter list: call [`Adam::step`] with the
//! parameters in the same order every time (e.g. `adam.step(&mut net.params_mut())`).
//! [`Adam::state_tensors`], [`Adam::state_metadata`] and [`Adam::load_state`] expose the
//! state for resuming; [`save_optimizer`](crate::save_optimizer) and
//! [`load_optimizer`](crate::load_optimizer) write and read it as safetensors.
//!
//! ```
//! use specreg_nn::{Adam, AdamConfig, Layer, Linear, Mode, Sequential, Tanh};
//! use specreg_tensor::{DType, Device, Rng, Tensor};
//!
//! # fn main() -> specreg_nn::Result<()> {
//! let (dev, mut rng) = (Device::Cpu, Rng::new(0));
//! let mut net = Sequential::new()
//!     .with(Linear::new(4, 8, DType::F32, &dev, &mut rng)?)
//!     .with(Tanh::new())
//!     .with(Linear::new(8, 3, DType::F32, &dev, &mut rng)?);
//! let x = Tensor::randn(&[6, 4], 0.0, 1.0, DType::F32, &mut rng, &dev)?;
//! let mut adam = Adam::new(AdamConfig::new(1e-3))?;
//! for _ in 0..2 {
//!     net.zero_grad();
//!     let z = net.forward(&x, Mode::Train)?;
//!     let (_, gz) = specreg_nn::loss::softmax_cross_entropy(&z, &[0, 1, 2, 0, 1, 2])?;
//!     net.backward(&gz)?;
//!     adam.step(&mut net.params_mut())?;
//! }
//! assert_eq!(adam.steps_taken(), 2);
//! # Ok(())
//! # }
//! ```

use std::collections::BTreeMap;

use specreg_tensor::{AdamCoefficients, Tensor};

use crate::{NnError, Param, Result};

/// Hyper-parameters of [`Adam`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamConfig {
    /// Learning rate (`> 0`).
    pub lr: f64,
    /// Decay of the first moment, in `[0, 1)`.
    pub beta1: f64,
    /// Decay of the second moment, in `[0, 1)`.
    pub beta2: f64,
    /// Added to the denominator (`> 0`).
    pub eps: f64,
    /// L2 penalty added to the gradient as `wd·θ` (`≥ 0`).
    pub weight_decay: f64,
    /// Use the running maximum of the second moment (Reddi et al., AMSGrad).
    pub amsgrad: bool,
}

impl AdamConfig {
    /// `lr` with PyTorch's defaults otherwise, except `amsgrad = true` (what the paper's
    /// code uses): betas `(0.9, 0.999)`, `eps = 1e-8`, no weight decay.
    pub fn new(lr: f64) -> Self {
        Self {
            lr,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
            amsgrad: true,
        }
    }

    /// Checks every field; the error names the field.
    pub fn validate(&self) -> Result<()> {
        let bad = |field: &str, reason: String| NnError::InvalidArgument {
            what: format!("AdamConfig.{field}"),
            reason,
        };
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return Err(bad(
                "lr",
                format!("must be positive and finite, got {}", self.lr),
            ));
        }
        for (field, b) in [("beta1", self.beta1), ("beta2", self.beta2)] {
            if !(0.0..1.0).contains(&b) {
                return Err(bad(field, format!("must be in [0, 1), got {b}")));
            }
        }
        if !(self.eps.is_finite() && self.eps > 0.0) {
            return Err(bad(
                "eps",
                format!("must be positive and finite, got {}", self.eps),
            ));
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            return Err(bad(
                "weight_decay",
                format!("must be non-negative and finite, got {}", self.weight_decay),
            ));
        }
        Ok(())
    }
}

/// The state of one parameter (PyTorch's `state[p]`).
#[derive(Debug, Clone)]
struct ParamState {
    step: u64,
    exp_avg: Tensor,
    exp_avg_sq: Tensor,
    max_exp_avg_sq: Option<Tensor>,
}

/// Adam (with AMSGrad by default), as `torch.optim.Adam`.
#[derive(Debug, Clone)]
pub struct Adam {
    config: AdamConfig,
    /// Per position in the parameter list; `None` until that parameter first had a gradient.
    state: Vec<Option<ParamState>>,
    /// The number of parameters, fixed by the first step.
    num_params: Option<usize>,
    steps_taken: u64,
}

/// `t` on `like`'s device and dtype (a cheap clone when it is there already).
fn conform(t: &Tensor, like: &Tensor) -> Result<Tensor> {
    let mut t = t.clone();
    if t.dtype() != like.dtype() {
        t = t.to_dtype(like.dtype())?;
    }
    if t.device() != like.device() {
        t = t.to_device(&like.device())?;
    }
    Ok(t)
}

/// The most parameter tensors a saved optimiser state may claim (the networks here have
/// at most a dozen).
pub const MAX_STATE_PARAMS: usize = 1 << 16;

fn state_err(i: usize, name: &str, reason: String) -> NnError {
    NnError::OptimizerState {
        param: format!("parameter {i} ({name})"),
        reason,
    }
}

impl Adam {
    /// An optimiser with no state yet; errors (naming the field) on an invalid config.
    pub fn new(config: AdamConfig) -> Result<Self> {
        config.validate()?;
        Ok(Self {
            config,
            state: Vec::new(),
            num_params: None,
            steps_taken: 0,
        })
    }

    /// The hyper-parameters.
    pub fn config(&self) -> &AdamConfig {
        &self.config
    }

    /// How many times [`Adam::step`] succeeded.
    pub fn steps_taken(&self) -> u64 {
        self.steps_taken
    }

    /// The step count of the parameter at `index` (PyTorch's `state['step']`): how many
    /// steps updated it; 0 if none did.
    pub fn param_step(&self, index: usize) -> u64 {
        self.state
            .get(index)
            .and_then(Option::as_ref)
            .map_or(0, |s| s.step)
    }

    /// One update of every parameter that has a gradient.
    ///
    /// Errors, leaving parameters and state unchanged, if the number of parameters differs
    /// from the first step's, if a parameter's shape changed, or if a gradient's shape or
    /// dtype does not match its parameter.
    pub fn step(&mut self, params: &mut [&mut Param]) -> Result<()> {
        self.check(params)?;
        let c = self.config;
        let mut updates = Vec::with_capacity(params.len());
        for (i, p) in params.iter().enumerate() {
            let Some(g) = p.grad.as_ref() else {
                updates.push(None);
                continue;
            };
            let theta = &p.value;
            let (step, m, v, vmax) = match self.state.get(i).and_then(Option::as_ref) {
                Some(s) => (
                    s.step,
                    conform(&s.exp_avg, theta)?,
                    conform(&s.exp_avg_sq, theta)?,
                    match &s.max_exp_avg_sq {
                        Some(t) => Some(conform(t, theta)?),
                        None => None,
                    },
                ),
                None => {
                    let z = Tensor::zeros(theta.shape(), theta.dtype(), &theta.device())?;
                    (0, z.clone(), z, None)
                }
            };
            let step = step + 1;
            let t = step as f64;
            let k = AdamCoefficients {
                beta1: c.beta1,
                beta2: c.beta2,
                eps: c.eps,
                weight_decay: c.weight_decay,
                step_size: c.lr / (1.0 - c.beta1.powf(t)),
                inv_sqrt_bias2: 1.0 / (1.0 - c.beta2.powf(t)).sqrt(),
                amsgrad: c.amsgrad,
            };
            let up = theta.adam_update(g, &m, &v, vmax.as_ref().filter(|_| c.amsgrad), &k)?;
            let new_theta = up.param;
            let (m, v, vmax) = (up.exp_avg, up.exp_avg_sq, up.max_exp_avg_sq);
            updates.push(Some((
                new_theta,
                ParamState {
                    step,
                    exp_avg: m,
                    exp_avg_sq: v,
                    max_exp_avg_sq: vmax,
                },
            )));
        }
        if self.state.len() < params.len() {
            self.state.resize(params.len(), None);
        }
        for ((p, slot), update) in params.iter_mut().zip(&mut self.state).zip(updates) {
            if let Some((value, st)) = update {
                p.value = value;
                *slot = Some(st);
            }
        }
        self.num_params = Some(params.len());
        self.steps_taken += 1;
        Ok(())
    }

    fn check(&self, params: &[&mut Param]) -> Result<()> {
        if let Some(n) = self.num_params
            && n != params.len()
        {
            return Err(NnError::OptimizerState {
                param: "parameter list".into(),
                reason: format!("{} parameters given, but the state has {n}", params.len()),
            });
        }
        for (i, p) in params.iter().enumerate() {
            if let Some(g) = &p.grad {
                if g.shape() != p.value.shape() {
                    return Err(state_err(
                        i,
                        &p.name,
                        format!(
                            "gradient shape {:?} differs from parameter shape {:?}",
                            g.shape(),
                            p.value.shape()
                        ),
                    ));
                }
                if g.dtype() != p.value.dtype() {
                    return Err(state_err(
                        i,
                        &p.name,
                        format!(
                            "gradient dtype {:?} differs from parameter dtype {:?}",
                            g.dtype(),
                            p.value.dtype()
                        ),
                    ));
                }
            }
            if let Some(Some(s)) = self.state.get(i)
                && s.exp_avg.shape() != p.value.shape()
            {
                return Err(state_err(
                    i,
                    &p.name,
                    format!(
                        "shape {:?} differs from the state's {:?}",
                        p.value.shape(),
                        s.exp_avg.shape()
                    ),
                ));
            }
        }
        Ok(())
    }

    /// The state as named tensors, PyTorch-style: for each parameter position `i` that has
    /// state, `"{i}.exp_avg"`, `"{i}.exp_avg_sq"`, `"{i}.max_exp_avg_sq"` (amsgrad only) and
    /// `"{i}.step"` (a scalar `f64` tensor on the CPU holding the step count).
    pub fn state_tensors(&self) -> Vec<(String, Tensor)> {
        let mut out = Vec::new();
        for (i, s) in self.state.iter().enumerate() {
            let Some(s) = s else { continue };
            out.push((format!("{i}.exp_avg"), s.exp_avg.clone()));
            out.push((format!("{i}.exp_avg_sq"), s.exp_avg_sq.clone()));
            if let Some(t) = &s.max_exp_avg_sq {
                out.push((format!("{i}.max_exp_avg_sq"), t.clone()));
            }
            let step = Tensor::from_array(ndarray::arr0(s.step as f64));
            out.push((format!("{i}.step"), step));
        }
        out
    }

    /// The config and counters as strings, for a file header: `lr`, `beta1`, `beta2`,
    /// `eps`, `weight_decay`, `amsgrad`, `steps_taken` and `num_params` (absent before the
    /// first step). Floats are written so that they parse back to the same bits.
    pub fn state_metadata(&self) -> BTreeMap<String, String> {
        let c = &self.config;
        let mut m = BTreeMap::new();
        m.insert("optimizer".to_string(), "adam".to_string());
        m.insert("lr".to_string(), c.lr.to_string());
        m.insert("beta1".to_string(), c.beta1.to_string());
        m.insert("beta2".to_string(), c.beta2.to_string());
        m.insert("eps".to_string(), c.eps.to_string());
        m.insert("weight_decay".to_string(), c.weight_decay.to_string());
        m.insert("amsgrad".to_string(), c.amsgrad.to_string());
        m.insert("steps_taken".to_string(), self.steps_taken.to_string());
        if let Some(n) = self.num_params {
            m.insert("num_params".to_string(), n.to_string());
        }
        m
    }

    /// Replaces the config and state with what [`Adam::state_metadata`] and
    /// [`Adam::state_tensors`] produced. Tensors may be on any device and in any float
    /// dtype; they are moved to their parameter's device and dtype at the next step.
    ///
    /// Errors, leaving `self` unchanged, on a missing or unparsable metadata field, an
    /// invalid config, an unknown or missing tensor, or state tensors whose shapes
    /// disagree.
    pub fn load_state(
        &mut self,
        metadata: &BTreeMap<String, String>,
        tensors: Vec<(String, Tensor)>,
    ) -> Result<()> {
        fn field<T: std::str::FromStr>(m: &BTreeMap<String, String>, key: &str) -> Result<T> {
            let s = m.get(key).ok_or_else(|| NnError::OptimizerState {
                param: key.to_string(),
                reason: "missing from the metadata".into(),
            })?;
            s.parse().map_err(|_| NnError::OptimizerState {
                param: key.to_string(),
                reason: format!("cannot parse {s:?}"),
            })
        }
        let config = AdamConfig {
            lr: field(metadata, "lr")?,
            beta1: field(metadata, "beta1")?,
            beta2: field(metadata, "beta2")?,
            eps: field(metadata, "eps")?,
            weight_decay: field(metadata, "weight_decay")?,
            amsgrad: field(metadata, "amsgrad")?,
        };
        config.validate()?;
        let steps_taken: u64 = field(metadata, "steps_taken")?;
        let num_params: Option<usize> = match metadata.get("num_params") {
            Some(_) => Some(field(metadata, "num_params")?),
            None => None,
        };
        // The state list is as long as the highest position with state, so the count a
        // header claims is bounded before anything is sized from it.
        if let Some(n) = num_params
            && n > MAX_STATE_PARAMS
        {
            return Err(NnError::OptimizerState {
                param: "num_params".into(),
                reason: format!("{n} exceeds the limit of {MAX_STATE_PARAMS} parameter tensors"),
            });
        }

        #[derive(Default)]
        struct Parts {
            step: Option<u64>,
            exp_avg: Option<Tensor>,
            exp_avg_sq: Option<Tensor>,
            max_exp_avg_sq: Option<Tensor>,
        }
        let mut parts: BTreeMap<usize, Parts> = BTreeMap::new();
        for (name, t) in tensors {
            let unexpected = || NnError::UnexpectedTensor { name: name.clone() };
            let (idx, kind) = name.split_once('.').ok_or_else(unexpected)?;
            let i: usize = idx.parse().map_err(|_| unexpected())?;
            // Only the canonical spelling (`7`, not `07` or `+7`), so no two names can
            // fill the same slot.
            if num_params.is_none_or(|n| i >= n) || idx != i.to_string() {
                return Err(unexpected());
            }
            let e = parts.entry(i).or_default();
            let slot = match kind {
                "exp_avg" => &mut e.exp_avg,
                "exp_avg_sq" => &mut e.exp_avg_sq,
                "max_exp_avg_sq" if config.amsgrad => &mut e.max_exp_avg_sq,
                "step" => {
                    let v = if t.elem_count() == 1 {
                        t.to_scalar()?
                    } else {
                        f64::NAN
                    };
                    if !(v >= 0.0 && v.fract() == 0.0 && v < 2f64.powi(63)) {
                        return Err(NnError::OptimizerState {
                            param: name.clone(),
                            reason: format!("not a step count: shape {:?}", t.shape()),
                        });
                    }
                    e.step = Some(v as u64);
                    continue;
                }
                _ => return Err(unexpected()),
            };
            *slot = Some(t);
        }
        // As long as the highest position with state (below `num_params`, bounded above):
        // `step` pads the list to the parameter count.
        let len = parts.keys().next_back().map_or(0, |&i| i + 1);
        let mut state = vec![None; len];
        for (i, p) in parts {
            let missing = |kind: &str| NnError::MissingTensor {
                name: format!("{i}.{kind}"),
            };
            let exp_avg = p.exp_avg.ok_or_else(|| missing("exp_avg"))?;
            let exp_avg_sq = p.exp_avg_sq.ok_or_else(|| missing("exp_avg_sq"))?;
            let step = p.step.ok_or_else(|| missing("step"))?;
            let max_exp_avg_sq = match (config.amsgrad, p.max_exp_avg_sq) {
                (true, Some(t)) => Some(t),
                (true, None) => return Err(missing("max_exp_avg_sq")),
                (false, _) => None,
            };
            for (kind, t) in [
                ("exp_avg_sq", Some(&exp_avg_sq)),
                ("max_exp_avg_sq", max_exp_avg_sq.as_ref()),
            ] {
                if let Some(t) = t
                    && t.shape() != exp_avg.shape()
                {
                    return Err(NnError::TensorShape {
                        name: format!("{i}.{kind}"),
                        expected: exp_avg.shape().to_vec(),
                        found: t.shape().to_vec(),
                    });
                }
            }
            state[i] = Some(ParamState {
                step,
                exp_avg,
                exp_avg_sq,
                max_exp_avg_sq,
            });
        }
        self.config = config;
        self.state = state;
        self.num_params = num_params;
        self.steps_taken = steps_taken;
        Ok(())
    }
}
