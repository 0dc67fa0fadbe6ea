//! Value-range checks of a parsed [`Config`], each naming its dotted key.

use super::*;

/// Files the error of a library constructor's own check under `key` (so that config
/// validation and the libraries cannot disagree about what is valid).
fn library<T, E: std::fmt::Display>(
    key: &str,
    check: Result<T, E>,
) -> Result<(), (String, String)> {
    check
        .map(|_| ())
        .map_err(|e| (key.to_string(), e.to_string()))
}

impl Config {
    /// Checks every value range; the error is `(key, message)`.
    pub(super) fn validate(&self) -> Result<(), (String, String)> {
        let err = |key: &str, msg: String| Err((key.to_string(), msg));
        if self.variant.is_empty()
            || !self
                .variant
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
        {
            return err(
                "variant",
                format!(
                    "must be a non-empty name of letters, digits, '-', '_' or '.', got {:?}",
                    self.variant
                ),
            );
        }
        if self.seeds.is_empty() {
            return err("seeds", "must list at least one seed".into());
        }
        if let Some(dup) = self
            .seeds
            .iter()
            .enumerate()
            .find(|(i, s)| self.seeds[..*i].contains(s))
        {
            return err("seeds", format!("seed {} is listed twice", dup.1));
        }
        if !device_name_is_valid(&self.device) {
            return err(
                "device",
                format!("must be cpu, cuda or cuda:N, got {:?}", self.device),
            );
        }
        let t = &self.train;
        if t.epochs == 0 {
            return err("train.epochs", "must be at least 1, got 0".into());
        }
        if t.batch_size < 2 {
            return err(
                "train.batch_size",
                format!("must be at least 2, got {}", t.batch_size),
            );
        }
        if !(t.lr.is_finite() && t.lr > 0.0 && t.lr <= 1.0) {
            return err("train.lr", format!("must be in (0, 1], got {}", t.lr));
        }
        if let Some(n) = t.train_subset
            && !(2..=MNIST_TRAIN).contains(&n)
        {
            return err(
                "train.train_subset",
                format!("must be in 2..=60000, got {n}"),
            );
        }
        if t.batch_size > self.train_images() {
            let data = match t.train_subset {
                Some(n) => format!("the {n} training images of train.train_subset"),
                None => format!("the {MNIST_TRAIN} MNIST training images"),
            };
            return err(
                "train.batch_size",
                format!(
                    "({}) is larger than {data}: every batch would be the whole set",
                    t.batch_size
                ),
            );
        }
        if t.chunk == 0 {
            return err("train.chunk", "must be at least 1, got 0".into());
        }
        let model = self.model.kind;
        if let Err(e) = model.architecture() {
            return err("model.kind", e.to_string());
        }
        let names: Vec<&str> = model
            .hidden_layers()
            .iter()
            .map(|(n, _)| n.as_str())
            .collect();
        if let Some(s) = &self.spectral {
            if let LayerSelection::Names(list) = &s.layers {
                if list.is_empty() {
                    return err("spectral.layers", "must name at least one layer".into());
                }
                for n in list {
                    if !names.contains(&n.as_str()) {
                        return err(
                            "spectral.layers",
                            format!(
                                "{} has no hidden layer {n:?}; valid: {}, or \"all\"",
                                model.name(),
                                names.join(", ")
                            ),
                        );
                    }
                }
            }
            let layers = s.layer_names(model);
            // The regulariser's own per-layer check, one parameter at a time so that the
            // error names the key (and the first regularised layer).
            let first = layers.first().cloned().unwrap_or_default();
            let layer = |alpha, tau, beta| {
                specreg_regularizers::SpectralRegularizer::new(
                    vec![specreg_regularizers::SpectralLayer {
                        name: first.clone(),
                        alpha,
                        tau,
                        beta,
                    }],
                    specreg_regularizers::EigenMode::Projected,
                )
            };
            library("spectral.beta", layer(1.0, 1, s.beta))?;
            library("spectral.tau", layer(1.0, s.tau, 0.0))?;
            for l in &layers {
                let width = model.width(l).unwrap_or(0);
                if s.tau >= width {
                    return err(
                        "spectral.tau",
                        format!("({}) must be < width of {l} ({width})", s.tau),
                    );
                }
            }
            let alphas = s.alphas(layers.len());
            if alphas.len() != layers.len() {
                return err(
                    "spectral.alpha",
                    format!(
                        "gives {} values for {} regularised layers",
                        alphas.len(),
                        layers.len()
                    ),
                );
            }
            library(
                "spectral.alpha",
                specreg_regularizers::check_alpha_schedule(&alphas),
            )?;
        }
        if let Some(w) = &self.whitening {
            if !names.contains(&w.layer.as_str()) {
                return err(
                    "whitening.layer",
                    format!(
                        "{} has no hidden layer {:?}; valid: {}",
                        model.name(),
                        w.layer,
                        names.join(", ")
                    ),
                );
            }
            let width = model.width(&w.layer).unwrap_or(0);
            library(
                "whitening.eps",
                specreg_regularizers::Whitening::new(&w.layer, width, w.eps),
            )?;
        }
        if !self.model.batchnorm && model != ModelKind::Shallow {
            return err(
                "model.batchnorm",
                format!(
                    "only the shallow network has a BatchNorm layer; {} has none to remove",
                    model.name()
                ),
            );
        }
        self.validate_batch_sizes()?;
        if let Some(j) = &self.jacobian {
            // The regulariser's own constructor check, one parameter at a time so that the
            // error names the key.
            let jacobian = |beta, projections| {
                specreg_regularizers::JacobianRegularizer::new(
                    specreg_regularizers::JacobianKind::Logit { beta, projections },
                )
            };
            // The constructor's message covers both parameters; name the one that is wrong.
            if !(j.beta.is_finite() && j.beta >= 0.0) {
                return err(
                    "jacobian.beta",
                    format!("must be finite and ≥ 0, got {}", j.beta),
                );
            }
            if j.projections == 0 {
                return err("jacobian.projections", "must be at least 1, got 0".into());
            }
            library("jacobian.beta", jacobian(j.beta, 1))?;
            library("jacobian.projections", jacobian(0.0, j.projections))?;
            if self.spectral.is_some() {
                return err(
                    "jacobian",
                    "cannot be combined with [spectral] in one run".into(),
                );
            }
        }
        let e = &self.eval;
        if let Some(n) = e.test_subset
            && !(1..=MNIST_TEST).contains(&n)
        {
            return err("eval.test_subset", format!("must be in 1..=10000, got {n}"));
        }
        if e.batch_size == 0 {
            return err("eval.batch_size", "must be at least 1, got 0".into());
        }
        // Radii are L∞ distances between images with pixels in [0, 1]; a noise σ is any
        // finite standard deviation.
        for (key, grid, hi, range) in [
            ("eval.fgsm_eps", &e.fgsm_eps, 1.0, "in [0, 1]"),
            ("eval.pgd_eps", &e.pgd_eps, 1.0, "in [0, 1]"),
            (
                "eval.noise_sigma",
                &e.noise_sigma,
                f64::MAX,
                "finite and ≥ 0",
            ),
        ] {
            if grid.is_empty() {
                return err(key, "must list at least one value".into());
            }
            if let Some(v) = grid
                .iter()
                .find(|v| !(v.is_finite() && **v >= 0.0 && **v <= hi))
            {
                return err(key, format!("values must be {range}, got {v}"));
            }
            if grid.windows(2).any(|w| w[0] >= w[1]) {
                return err(key, "must be strictly increasing".into());
            }
        }
        if e.pgd_steps == 0 {
            return err("eval.pgd_steps", "must be at least 1, got 0".into());
        }
        if !(e.pgd_step_size.is_finite() && e.pgd_step_size > 0.0) {
            return err(
                "eval.pgd_step_size",
                format!("must be > 0, got {}", e.pgd_step_size),
            );
        }
        if let Some(n) = e.spectrum_images
            && !(2..=MNIST_TRAIN).contains(&n)
        {
            return err(
                "eval.spectrum_images",
                format!("must be in 2..=60000, got {n}"),
            );
        }
        if let Some(n) = e.sensitivity_images
            && !(2..=MNIST_TRAIN).contains(&n)
        {
            return err(
                "eval.sensitivity_images",
                format!("must be in 2..=60000, got {n}"),
            );
        }
        if let Some(v) = e
            .strong_eps
            .iter()
            .find(|v| !(v.is_finite() && **v >= 0.0 && **v <= 1.0))
        {
            return err(
                "eval.strong_eps",
                format!("values must be in [0, 1], got {v}"),
            );
        }
        if e.strong_eps.windows(2).any(|w| w[0] >= w[1]) {
            return err("eval.strong_eps", "must be strictly increasing".into());
        }
        if e.apgd_steps == 0 {
            return err("eval.apgd_steps", "must be at least 1, got 0".into());
        }
        let [lo, hi] = e.fit_ranks;
        if lo == 0 || hi < lo + 2 {
            return err(
                "eval.fit_ranks",
                format!("must be 1-based [first, last] with at least 3 ranks, got [{lo}, {hi}]"),
            );
        }
        let last_width = model.width(model.last_hidden()).unwrap_or(0);
        if let Some(r) = e
            .sensitivity_ranks
            .iter()
            .find(|r| **r == 0 || **r > last_width)
        {
            return err(
                "eval.sensitivity_ranks",
                format!("ranks are 1-based and at most {last_width}, got {r}"),
            );
        }
        Ok(())
    }
}

/// Whether `name` is a device the binary knows: `cpu`, `cuda` or `cuda:N` (whether that
/// device exists is only known when it is opened).
pub fn device_name_is_valid(name: &str) -> bool {
    match name.trim() {
        "cpu" | "cuda" => true,
        other => other
            .strip_prefix("cuda:")
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())),
    }
}

impl Config {
    /// The widest representation the spectral regulariser or whitening acts on, as
    /// `(name, width)`.
    pub fn widest_constrained_layer(&self) -> Option<(String, usize)> {
        let model = self.model.kind;
        let mut names: Vec<String> = self
            .spectral
            .as_ref()
            .map(|s| s.layer_names(model))
            .unwrap_or_default();
        names.extend(self.whitening.iter().map(|w| w.layer.clone()));
        names
            .into_iter()
            .filter_map(|n| model.width(&n).map(|w| (n, w)))
            .max_by_key(|(_, w)| *w)
    }

    /// Whether the network whitens with each batch's statistics in every mode (the
    /// reference's layer), so that in evaluation too one image's output depends on the
    /// rest of its batch.
    pub fn whitens_with_batch_statistics(&self) -> bool {
        self.whitening
            .as_ref()
            .is_some_and(|w| w.statistics == WhiteningStatisticsName::Batch)
    }

    /// Whether the evaluated network's output for an image depends on the rest of its
    /// batch: batch-statistics whitening, or the extra BatchNorm-batch-statistics curves.
    pub fn evaluates_with_batch_statistics(&self) -> bool {
        self.eval.bn_batch_statistics || self.whitens_with_batch_statistics()
    }

    /// The reference's batch-size rule (`train.min_batch_ratio` × the widest constrained
    /// width) and, where evaluation uses batch statistics, fixed-size evaluation batches.
    fn validate_batch_sizes(&self) -> Result<(), (String, String)> {
        let t = &self.train;
        if !(t.min_batch_ratio.is_finite() && t.min_batch_ratio >= 0.0) {
            return Err((
                "train.min_batch_ratio".into(),
                format!("must be ≥ 0, got {}", t.min_batch_ratio),
            ));
        }
        let widest = self.widest_constrained_layer();
        let need = widest
            .as_ref()
            .map_or(0, |(_, w)| (t.min_batch_ratio * *w as f64).ceil() as usize);
        let rule = |what: &str, got: usize| -> Result<(), (String, String)> {
            match &widest {
                Some((name, w)) if got < need => Err((
                    what.to_string(),
                    format!(
                        "{got} is below {} × the width of {name} ({w}) = {need}: a batch \
                         covariance of fewer samples than that is (near) rank-deficient \
                         (set train.min_batch_ratio to change the rule)",
                        t.min_batch_ratio
                    ),
                )),
                _ => Ok(()),
            }
        };
        rule("train.batch_size", t.batch_size.min(self.train_images()))?;
        // A short last batch is only noisier for the spectral penalty (the reference keeps
        // it), but a whitening layer trained on it whitens with a rank-deficient covariance.
        let remainder = self.train_images() % t.batch_size;
        if self.whitening.is_some() && remainder != 0 && remainder < need {
            return Err((
                "train.batch_size".into(),
                format!(
                    "leaves a last batch of {remainder} of the {} training images, below the \
                     {need} the batch-size rule asks for",
                    self.train_images()
                ),
            ));
        }
        if self.whitens_with_batch_statistics() {
            rule("train.chunk", t.chunk)?;
            // The refresh and the spectra fold a short remainder into their last chunk; the
            // sensitivity maps' batches do not.
            let spectrum = self.eval.spectrum_images.unwrap_or(self.train_images());
            let sensitivity = self.eval.sensitivity_images.unwrap_or(spectrum);
            let r = sensitivity % t.chunk;
            if r != 0 && r < need {
                return Err((
                    "train.chunk".into(),
                    format!(
                        "splits the {sensitivity} images of eval.sensitivity_images into \
                         chunks of {} with a last chunk of {r}, below the {need} that \
                         batch-statistics whitening needs",
                        t.chunk
                    ),
                ));
            }
        }
        if self.evaluates_with_batch_statistics() {
            let n = self.test_images();
            let b = self.eval.batch_size.min(n);
            if !n.is_multiple_of(b) {
                return Err((
                    "eval.batch_size".into(),
                    format!(
                        "must divide the {n} test images: this run evaluates with batch \
                         statistics, so every batch must have the same size, got {}",
                        self.eval.batch_size
                    ),
                ));
            }
            if self.whitens_with_batch_statistics() {
                rule("eval.batch_size", b)?;
            }
        }
        Ok(())
    }
}
