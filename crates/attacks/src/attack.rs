//! [`Attack`]: an attack a robustness curve sweeps, with every parameter but its strength.

use crate::Result;
use crate::apgd::ApgdConfig;
use crate::loss::AttackLoss;
use crate::noise::check_sigma;
use crate::perturb::{ClipRange, Norm, check_epsilon};
use crate::pgd::PgdConfig;

/// An attack a curve sweeps, with every parameter except its strength (the grid value).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Attack {
    /// FGSM (eq. 6), L∞ budget ε.
    Fgsm {
        /// The valid pixel range.
        clip: ClipRange,
    },
    /// PGD (eqs. 7–8) on any [`AttackLoss`]; the config's `epsilon` is ignored (each grid
    /// value replaces it).
    Pgd(PgdConfig),
    /// APGD (Croce & Hein 2020), L∞; the config's `epsilon` is ignored.
    Apgd(ApgdConfig),
    /// Additive Gaussian noise of standard deviation σ.
    WhiteNoise {
        /// The valid pixel range.
        clip: ClipRange,
        /// Seed of the noise.
        seed: u64,
    },
}

impl Attack {
    /// FGSM with pixels in `[0, 1]`.
    pub fn fgsm() -> Self {
        Attack::Fgsm {
            clip: ClipRange::default(),
        }
    }

    /// The paper's PGD: L∞, 40 steps of η = 0.01 on the cross-entropy from the clean image,
    /// pixels in `[0, 1]`.
    pub fn pgd() -> Self {
        Attack::Pgd(PgdConfig::linf(0.0))
    }

    /// The paper's PGD schedule on the Carlini–Wagner margin ([`PgdConfig::linf_cw`]).
    pub fn pgd_cw() -> Self {
        Attack::Pgd(PgdConfig::linf_cw(0.0))
    }

    /// APGD-CE with Croce & Hein's defaults ([`ApgdConfig::ce`]).
    pub fn apgd_ce() -> Self {
        Attack::Apgd(ApgdConfig::ce(0.0))
    }

    /// APGD-DLR with Croce & Hein's defaults ([`ApgdConfig::dlr`]).
    pub fn apgd_dlr() -> Self {
        Attack::Apgd(ApgdConfig::dlr(0.0))
    }

    /// White noise with pixels in `[0, 1]`.
    pub fn white_noise(seed: u64) -> Self {
        Attack::WhiteNoise {
            clip: ClipRange::default(),
            seed,
        }
    }

    /// A short name: `FGSM`; `PGD-Linf`, `PGD-L2` (cross-entropy), `PGD-CW-Linf`,
    /// `PGD-CW-L2`, `PGD-DLR-Linf`, `PGD-DLR-L2`; `APGD-CE`, `APGD-DLR`, `APGD-CW`; or
    /// `white noise`.
    pub fn name(&self) -> &'static str {
        match self {
            Attack::Fgsm { .. } => "FGSM",
            Attack::Pgd(c) => match (c.loss, c.norm) {
                (AttackLoss::CrossEntropy, Norm::Linf) => "PGD-Linf",
                (AttackLoss::CrossEntropy, Norm::L2) => "PGD-L2",
                (AttackLoss::CwMargin, Norm::Linf) => "PGD-CW-Linf",
                (AttackLoss::CwMargin, Norm::L2) => "PGD-CW-L2",
                (AttackLoss::Dlr, Norm::Linf) => "PGD-DLR-Linf",
                (AttackLoss::Dlr, Norm::L2) => "PGD-DLR-L2",
            },
            Attack::Apgd(c) => match c.loss {
                AttackLoss::CrossEntropy => "APGD-CE",
                AttackLoss::Dlr => "APGD-DLR",
                AttackLoss::CwMargin => "APGD-CW",
            },
            Attack::WhiteNoise { .. } => "white noise",
        }
    }

    /// Whether the attack drops an image at its first misclassified iterate (PGD and APGD
    /// with `early_exit`).
    pub fn early_exit(&self) -> bool {
        match self {
            Attack::Pgd(c) => c.early_exit,
            Attack::Apgd(c) => c.early_exit,
            Attack::Fgsm { .. } | Attack::WhiteNoise { .. } => false,
        }
    }

    /// The norm of the budget (`None` for noise, whose strength is a standard deviation).
    pub fn norm(&self) -> Option<Norm> {
        match self {
            Attack::Fgsm { .. } | Attack::Apgd(_) => Some(Norm::Linf),
            Attack::Pgd(c) => Some(c.norm),
            Attack::WhiteNoise { .. } => None,
        }
    }

    /// The valid pixel range.
    pub fn clip(&self) -> ClipRange {
        match self {
            Attack::Fgsm { clip } | Attack::WhiteNoise { clip, .. } => *clip,
            Attack::Pgd(c) => c.clip,
            Attack::Apgd(c) => c.clip,
        }
    }

    /// The attack's rank in the expected ordering of L∞ attacks, weakest first:
    /// FGSM (0) ≤ PGD on the cross-entropy (1) ≤ PGD on another loss and APGD (2). `None`
    /// for L2 attacks and noise, which are not compared.
    pub(crate) fn linf_tier(&self) -> Option<u8> {
        match self {
            Attack::Fgsm { .. } => Some(0),
            Attack::Pgd(c) if c.norm != Norm::Linf => None,
            Attack::Pgd(c) if c.loss == AttackLoss::CrossEntropy => Some(1),
            Attack::Pgd(_) | Attack::Apgd(_) => Some(2),
            Attack::WhiteNoise { .. } => None,
        }
    }

    pub(crate) fn validate_strength(&self, s: f64) -> Result<()> {
        match self {
            Attack::WhiteNoise { .. } => check_sigma(s),
            Attack::Fgsm { .. } => check_epsilon("FGSM", s),
            Attack::Pgd(c) => c.with_epsilon(s).validate(),
            Attack::Apgd(c) => c.with_epsilon(s).validate(),
        }
    }
}
