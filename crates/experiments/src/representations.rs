//! The representation side of evaluating a run: every hidden layer's statistics from one
//! pass over the spectrum images, the spectrum metrics and `spectrum.csv`, and the
//! eigenvalue sensitivity maps (eq. 9) with `sensitivity.csv` and their figure.

use std::fmt::Write as _;

use anyhow::{Context as _, Result};
use specreg_attacks::{RepresentationSpectrum, SensitivityOptions};
use specreg_nn::Network;
use specreg_regularizers::{RepresentationStatistics, Spectrum, representation_statistics};

use crate::config::Config;
use crate::evaluation::LayerSpectrum;
use crate::outputs::{Provenance, RunPaths, write_atomic};
use crate::plots::{SensitivityRow, sensitivity_grid};
use crate::runner::{Context, train_slice};

/// Spectrum metrics of every hidden layer over the config's spectrum images.
///
/// # Errors
/// Errors of the covariance and eigendecomposition.
pub fn spectra(
    ctx: &Context<'_>,
    config: &Config,
    net: &mut Network,
) -> Result<Vec<LayerSpectrum>> {
    spectra_of(config, &layer_statistics(ctx, config, net)?)
}

/// The number of spectrum images of `config` that the data set has.
fn spectrum_images(ctx: &Context<'_>, config: &Config) -> usize {
    config
        .eval
        .spectrum_images
        .unwrap_or(config.train_images())
        .min(ctx.data.train.len())
}

/// Every hidden layer's mean and covariance over the config's spectrum images, from one
/// `Eval` pass in the chunks of `train.chunk`.
///
/// # Errors
/// Errors of the forward pass and the accumulation.
pub fn layer_statistics(
    ctx: &Context<'_>,
    config: &Config,
    net: &mut Network,
) -> Result<Vec<RepresentationStatistics>> {
    let (x, _) = train_slice(ctx.data, spectrum_images(ctx, config));
    let names: Vec<&str> = config
        .model
        .kind
        .hidden_layers()
        .iter()
        .map(|(name, _)| name.as_str())
        .collect();
    representation_statistics(net, &names, x, config.train.chunk)
        .with_context(|| format!("statistics of {}", names.join(", ")))
}

/// Spectrum metrics of every hidden layer from its statistics.
///
/// # Errors
/// A failed eigendecomposition.
pub fn spectra_of(
    config: &Config,
    statistics: &[RepresentationStatistics],
) -> Result<Vec<LayerSpectrum>> {
    let regularized = config
        .spectral
        .as_ref()
        .map(|s| s.layer_names(config.model.kind))
        .unwrap_or_default();
    let mut out = Vec::new();
    for (stats, (name, width)) in statistics.iter().zip(config.model.kind.hidden_layers()) {
        let s = Spectrum::of_covariance(&stats.covariance)
            .with_context(|| format!("spectrum of {name}"))?;
        out.push(layer_metrics(
            name,
            *width,
            regularized.iter().any(|r| r == name),
            &s,
            stats.count,
            config.eval.fit_ranks,
        ));
    }
    Ok(out)
}

/// The metrics of one spectrum computed from `images` samples: the fit runs over the
/// 1-based ranks `fit_ranks[0]` to min(`fit_ranks[1]`, N, images − 1), cut before the first
/// non-positive eigenvalue.
pub fn layer_metrics(
    name: &str,
    width: usize,
    regularized: bool,
    s: &Spectrum,
    images: usize,
    fit_ranks: [usize; 2],
) -> LayerSpectrum {
    let positive = s.eigenvalues.iter().take_while(|v| **v > 0.0).count();
    let first = fit_ranks[0];
    let last = fit_ranks[1]
        .min(s.len())
        .min(images.saturating_sub(1))
        .min(positive);
    let fit = s.power_law(first, last).ok();
    LayerSpectrum {
        layer: name.to_string(),
        width,
        regularized,
        alpha: fit.map(|f| f.alpha).filter(|a| a.is_finite()),
        r2: fit.map(|f| f.r2).filter(|a| a.is_finite()),
        fit_ranks: (first, last),
        effective_dimension: s.effective_dimension(0.9).unwrap_or(0),
        participation_ratio: s.participation_ratio(),
        normalized: s.normalized(),
    }
}

/// Writes `spectrum.csv`: `layer,rank,eigenvalue_normalized,cumulative_variance`.
///
/// # Errors
/// I/O errors.
pub fn write_spectrum_csv(
    paths: &RunPaths,
    provenance: &Provenance,
    spectra: &[LayerSpectrum],
) -> Result<()> {
    let mut text = format!("# {}\n", provenance.line());
    for s in spectra {
        let _ = writeln!(
            text,
            "# {}: width {}, regularized {}, alpha {} (rank exponent, ranks {}..={}, R² {}), \
             90%-variance dimension {}, participation ratio {:.2}",
            s.layer,
            s.width,
            s.regularized,
            s.alpha.map_or("n/a".into(), |a| format!("{a:.4}")),
            s.fit_ranks.0,
            s.fit_ranks.1,
            s.r2.map_or("n/a".into(), |a| format!("{a:.4}")),
            s.effective_dimension,
            s.participation_ratio
        );
    }
    text.push_str("layer,rank,normalized_eigenvalue,cumulative_variance\n");
    for s in spectra {
        let mut acc = 0.0;
        for (i, v) in s.normalized.iter().enumerate() {
            acc += v;
            let _ = writeln!(text, "{},{},{v:e},{acc}", s.layer, i + 1);
        }
    }
    write_atomic(&paths.spectrum(), text.as_bytes())
}

/// Sensitivity maps `∂λ_n/∂x` (eq. 9) of representation `layer` at the config's ranks,
/// each a 784-vector (28×28, row-major).
///
/// # Errors
/// Errors of the attacks crate's sensitivity computation.
pub fn sensitivity_maps(
    ctx: &Context<'_>,
    config: &Config,
    net: &mut Network,
    layer: &str,
    statistics: &[RepresentationStatistics],
) -> Result<Vec<(usize, Vec<f64>)>> {
    let n = config
        .eval
        .sensitivity_images
        .or(config.eval.spectrum_images)
        .unwrap_or(config.train_images())
        .min(ctx.data.train.len());
    let (x, _) = train_slice(ctx.data, n);
    let options = SensitivityOptions {
        batch_size: config.train.chunk,
        ..SensitivityOptions::default()
    };
    // The spectrum pass's statistics serve when the maps are over the same images (the
    // paper profile's default); other images need their own statistics pass first.
    let shared = statistics
        .iter()
        .find(|s| s.name == layer && n == spectrum_images(ctx, config));
    let spectrum = match shared {
        Some(s) => RepresentationSpectrum::from_statistics(s),
        None => RepresentationSpectrum::compute(net, x, layer, options.batch_size),
    }
    .with_context(|| format!("spectrum of {layer} for its sensitivity maps"))?;
    let maps = specreg_attacks::sensitivity_maps_from(
        net,
        x,
        &spectrum,
        &config.eval.sensitivity_ranks,
        &options,
    )
    .with_context(|| format!("sensitivity maps of {layer}"))?;
    Ok(maps
        .ranks
        .iter()
        .zip(&maps.maps)
        .map(|(r, m)| (*r, m.iter().copied().collect()))
        .collect())
}

pub(crate) fn write_sensitivity(
    paths: &RunPaths,
    provenance: &Provenance,
    config: &Config,
    layer: &str,
    maps: &[(usize, Vec<f64>)],
) -> Result<()> {
    let mut text = format!(
        "# {}\n# d lambda_n / d x of {layer} (eq. 9), one row per rank, 784 pixels row-major\nrank",
        provenance.line()
    );
    for p in 0..784 {
        let _ = write!(text, ",p{p}");
    }
    text.push('\n');
    for (rank, m) in maps {
        let _ = write!(text, "{rank}");
        for v in m {
            let _ = write!(text, ",{v:e}");
        }
        text.push('\n');
    }
    write_atomic(&paths.sensitivity_csv(), text.as_bytes())?;
    let row = SensitivityRow {
        label: config.variant.clone(),
        maps: maps.to_vec(),
    };
    sensitivity_grid(
        &paths.sensitivity_png().with_extension(""),
        &format!(
            "{} seed {}: ∂λ_n/∂x of {layer}",
            config.id(),
            provenance.seed
        ),
        &[row],
        &provenance.line(),
    )
}
