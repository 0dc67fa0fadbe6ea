//! White-noise corruption: `x̃ = clip(x + σ z)`, `z ~ N(0, I)`, seeded.

use specreg_tensor::{Rng, Tensor};

use crate::Result;
use crate::error::invalid;
use crate::perturb::ClipRange;

/// `clip(x + σ z)` with `z` standard normal drawn from `rng` (one value per element, in
/// row-major order, so consecutive batches drawn from one generator give every image the
/// same noise whatever the batch size).
///
/// # Errors
/// A negative or non-finite σ, or an invalid clip range.
pub fn white_noise(x: &Tensor, sigma: f64, clip: ClipRange, rng: &mut Rng) -> Result<Tensor> {
    check_sigma(sigma)?;
    clip.validate("white_noise")?;
    let z = Tensor::randn(x.shape(), 0.0, 1.0, x.dtype(), rng, &x.device())?;
    add_noise(x, &z, sigma, clip)
}

/// `clip(x + σ z)` for a given standard-normal `z` (so one draw serves a whole σ grid).
pub(crate) fn add_noise(x: &Tensor, z: &Tensor, sigma: f64, clip: ClipRange) -> Result<Tensor> {
    Ok(x.add(&z.scale(sigma)?)?.clamp(clip.lo, clip.hi)?)
}

pub(crate) fn check_sigma(sigma: f64) -> Result<()> {
    if !(sigma.is_finite() && sigma >= 0.0) {
        return Err(invalid(
            "white_noise",
            format!("σ = {sigma} must be finite and ≥ 0"),
        ));
    }
    Ok(())
}
