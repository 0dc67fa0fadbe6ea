//! [`Classifier`] for [`specreg_nn::Network`]: in [`Mode::Eval`] directly, in any other
//! evaluation mode through [`NetworkInMode`].
//!
//! Both run `Network::forward` in their mode and back-propagate an upstream logit gradient
//! with [`Network::backward_input`], which leaves every parameter gradient untouched: one
//! input-gradient path for every loss. The cross-entropy is just the loss
//! [`AttackLoss::CrossEntropy`] with its per-sample `∂L_i/∂z_i = p_i − e_{y_i}`; any other
//! loss supplies its own ([`Classifier::loss_and_input_gradient_with`]), a vector-Jacobian
//! product through the same backward pass.

use specreg_nn::{Mode, Network};
use specreg_tensor::{DType, Device, Tensor};

use crate::Result;
use crate::classifier::{Classifier, LossGradient};
use crate::error::{invalid, invalid_data};
use crate::loss::{AttackLoss, LogitGradient};

impl Classifier for Network {
    fn input_size(&self) -> usize {
        self.input_shape().iter().product()
    }

    fn dtype(&self) -> DType {
        self.dtype_device().0
    }

    fn device(&self) -> Device {
        self.dtype_device().1
    }

    fn logits(&mut self, x: &Tensor) -> Result<Tensor> {
        Ok(self.forward(x, Mode::Eval)?.logits)
    }

    fn loss_and_input_gradient(&mut self, x: &Tensor, labels: &[usize]) -> Result<LossGradient> {
        vjp(
            self,
            x,
            &mut |z: &Tensor| AttackLoss::CrossEntropy.evaluate(z, labels),
            Mode::Eval,
        )
    }

    fn loss_and_input_gradient_with(
        &mut self,
        x: &Tensor,
        loss: &mut dyn FnMut(&Tensor) -> Result<LogitGradient>,
    ) -> Result<LossGradient> {
        vjp(self, x, loss, Mode::Eval)
    }

    /// `false` for a network whose whitening layer uses batch statistics at evaluation
    /// (the reference's whitening), `true` otherwise.
    fn samples_independent(&self) -> bool {
        Network::samples_independent(self, Mode::Eval)
    }
}

/// A [`Network`] attacked in a chosen evaluation [`Mode`].
///
/// `Network` itself is a [`Classifier`] in [`Mode::Eval`] (BatchNorm on its running
/// statistics). Wrap it with [`Mode::BatchStatistics`] to attack it the way a PyTorch
/// network left in `train()` mode is attacked: BatchNorm and whitening normalise with the
/// current batch's statistics, gradients flow through those statistics, and no running
/// statistic is updated.
///
/// # Samples are not independent in batch-statistics mode
/// Each sample's logits then depend on every other sample of its batch, so:
///
/// * row `i` of [`LossGradient::grad`] is `∂(Σ_j L_j)/∂x_i`, the gradient of the batch's
///   summed loss (what `loss.sum().backward()` gives in PyTorch), not of `L_i` alone: it
///   includes how `x_i` moves the other samples' losses through the batch statistics;
/// * results depend on the batch size and on which images share a batch;
/// * the worst iterate of each sample was evaluated in the batch of its own step, so the
///   kept images evaluated together again need not give the same predictions;
/// * PGD's early exit, which removes fooled samples from the batch, is refused
///   ([`Classifier::samples_independent`] is `false`).
#[derive(Debug)]
pub struct NetworkInMode<'a> {
    net: &'a mut Network,
    mode: Mode,
}

impl<'a> NetworkInMode<'a> {
    /// `net` attacked in `mode`.
    ///
    /// # Errors
    /// [`Mode::Train`], which would update BatchNorm's running statistics at every attack
    /// step; use [`Mode::BatchStatistics`] instead.
    pub fn new(net: &'a mut Network, mode: Mode) -> Result<Self> {
        if mode == Mode::Train {
            return Err(invalid(
                "NetworkInMode::new",
                "Mode::Train updates running statistics at every attack step; \
                 use Mode::BatchStatistics to attack with batch statistics",
            ));
        }
        Ok(Self { net, mode })
    }

    /// The mode every forward pass runs in.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// The wrapped network.
    pub fn network(&mut self) -> &mut Network {
        self.net
    }
}

impl Classifier for NetworkInMode<'_> {
    fn input_size(&self) -> usize {
        self.net.input_size()
    }

    fn dtype(&self) -> DType {
        Classifier::dtype(&*self.net)
    }

    fn device(&self) -> Device {
        Classifier::device(&*self.net)
    }

    fn logits(&mut self, x: &Tensor) -> Result<Tensor> {
        Ok(self.net.forward(x, self.mode)?.logits)
    }

    fn loss_and_input_gradient(&mut self, x: &Tensor, labels: &[usize]) -> Result<LossGradient> {
        vjp(
            self.net,
            x,
            &mut |z: &Tensor| AttackLoss::CrossEntropy.evaluate(z, labels),
            self.mode,
        )
    }

    fn loss_and_input_gradient_with(
        &mut self,
        x: &Tensor,
        loss: &mut dyn FnMut(&Tensor) -> Result<LogitGradient>,
    ) -> Result<LossGradient> {
        vjp(self.net, x, loss, self.mode)
    }

    fn samples_independent(&self) -> bool {
        self.net.samples_independent(self.mode)
    }
}

/// The input gradient of the loss `loss` computes from the logits, in `mode`.
fn vjp(
    net: &mut Network,
    x: &Tensor,
    loss: &mut dyn FnMut(&Tensor) -> Result<LogitGradient>,
    mode: Mode,
) -> Result<LossGradient> {
    let logits = net.forward(x, mode)?.logits;
    let lg = loss(&logits)?;
    check_logit_gradient(&logits, &lg)?;
    let grad = net.backward_input(&lg.grad_logits, &[])?;
    LossGradient::new(&logits, lg, grad)
}

/// Errors unless a loss returned one value per row and a gradient shaped like the logits
/// (shapes only: finiteness is checked by the attacks, on the device).
fn check_logit_gradient(logits: &Tensor, lg: &LogitGradient) -> Result<()> {
    let what = "loss_and_input_gradient_with";
    let b = logits.shape()[0];
    if lg.losses.shape() != [b] {
        return Err(invalid_data(
            what,
            format!(
                "the loss gave values of shape {:?} for {b} samples",
                lg.losses.shape()
            ),
        ));
    }
    if lg.grad_logits.shape() != logits.shape() {
        return Err(invalid_data(
            what,
            format!(
                "the logit gradient is {:?}, the logits {:?}",
                lg.grad_logits.shape(),
                logits.shape()
            ),
        ));
    }
    Ok(())
}
