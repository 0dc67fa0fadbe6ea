//! Log-log eigenspectra with the `1/n` line, the fitted α and the 90%-variance dimension.

use std::path::Path;

use anyhow::{Result, anyhow};
use plotters::coord::Shift;
use plotters::prelude::*;

use super::{color, plot_err, save_figure};

/// One eigenspectrum of a log-log spectrum plot.
#[derive(Debug, Clone)]
pub struct SpectrumSeries {
    /// Legend label (the fitted α is appended).
    pub label: String,
    /// Normalised eigenvalues, descending (non-positive values are not drawn).
    pub eigenvalues: Vec<f64>,
    /// The fitted rank exponent α, if the fit succeeded.
    pub alpha: Option<f64>,
    /// The 90%-variance dimension (1-based rank), marked with a star.
    pub effective_dimension: usize,
}

/// Log-log eigenspectra with the `1/n` line (anchored at rank `tau` of the first series),
/// the unregularised ranks `n < tau` shaded, the fitted α in the legend and the
/// 90%-variance dimension marked. Writes `<stem>.png` and `<stem>.svg`.
///
/// # Errors
/// Drawing or I/O errors; an error if no series has a positive eigenvalue.
pub fn spectrum_plot(
    stem: &Path,
    title: &str,
    series: &[SpectrumSeries],
    tau: usize,
    provenance: &str,
) -> Result<()> {
    let positive = |s: &SpectrumSeries| -> Vec<(f64, f64)> {
        s.eigenvalues
            .iter()
            .enumerate()
            .filter(|(_, v)| **v > 0.0 && v.is_finite())
            .map(|(i, v)| ((i + 1) as f64, *v))
            .collect()
    };
    let all: Vec<(f64, f64)> = series.iter().flat_map(positive).collect();
    if all.is_empty() {
        return Err(anyhow!("{title}: no positive eigenvalue to plot"));
    }
    let n_max = all.iter().map(|p| p.0).fold(1.0, f64::max).max(2.0);
    let y_max = all.iter().map(|p| p.1).fold(f64::MIN, f64::max) * 2.0;
    let y_min = all
        .iter()
        .map(|p| p.1)
        .fold(f64::MAX, f64::min)
        .max(y_max * 1e-12)
        / 2.0;
    let anchor = series
        .first()
        .and_then(|s| s.eigenvalues.get(tau.saturating_sub(1)).copied())
        .filter(|v| *v > 0.0)
        .map(|v| v * tau as f64);
    let frame = SpectrumFrame {
        n_max,
        y_min,
        y_max,
        anchor,
        tau,
    };
    save_figure(
        stem,
        (800, 600),
        provenance,
        |r: DrawingArea<BitMapBackend<'_>, Shift>| draw_spectrum(r, title, series, &frame),
        Some(|r: DrawingArea<SVGBackend<'_>, Shift>| draw_spectrum(r, title, series, &frame)),
    )
}

/// Axis ranges and the `1/n` anchor of a spectrum plot.
struct SpectrumFrame {
    n_max: f64,
    y_min: f64,
    y_max: f64,
    anchor: Option<f64>,
    tau: usize,
}

fn draw_spectrum<DB: DrawingBackend>(
    root: DrawingArea<DB, Shift>,
    title: &str,
    series: &[SpectrumSeries],
    frame: &SpectrumFrame,
) -> Result<()> {
    let &SpectrumFrame {
        n_max,
        y_min,
        y_max,
        anchor,
        tau,
    } = frame;
    let positive = |s: &SpectrumSeries| -> Vec<(f64, f64)> {
        s.eigenvalues
            .iter()
            .enumerate()
            .filter(|(_, v)| **v > 0.0 && v.is_finite())
            .map(|(i, v)| ((i + 1) as f64, *v))
            .collect()
    };
    {
        root.fill(&WHITE).map_err(plot_err)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 22))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(70)
            .build_cartesian_2d((1f64..n_max).log_scale(), (y_min..y_max).log_scale())
            .map_err(plot_err)?;
        chart
            .configure_mesh()
            .x_desc("rank n")
            .y_desc("normalised eigenvalue")
            .y_label_formatter(&|v| format!("{v:.0e}"))
            .light_line_style(WHITE)
            .draw()
            .map_err(plot_err)?;
        if tau > 1 {
            chart
                .draw_series(std::iter::once(Rectangle::new(
                    [(1.0, y_min), (tau as f64, y_max)],
                    RGBColor(225, 225, 225).mix(0.5).filled(),
                )))
                .map_err(plot_err)?;
        }
        if let Some(c) = anchor {
            chart
                .draw_series(LineSeries::new(
                    [(1.0, c), (n_max, c / n_max)],
                    ShapeStyle::from(&RGBColor(150, 150, 150)).stroke_width(2),
                ))
                .map_err(plot_err)?
                .label("1/n")
                .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], RGBColor(150, 150, 150)));
        }
        for (i, s) in series.iter().enumerate() {
            let c = color(i);
            let pts = positive(s);
            let label = match s.alpha {
                Some(a) => format!("{} (α = {a:.2}, d90 = {})", s.label, s.effective_dimension),
                None => format!("{} (d90 = {})", s.label, s.effective_dimension),
            };
            chart
                .draw_series(LineSeries::new(pts, c.stroke_width(2)))
                .map_err(plot_err)?
                .label(label)
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], c.stroke_width(2)));
            if let Some(v) = s.eigenvalues.get(s.effective_dimension.saturating_sub(1))
                && *v > 0.0
            {
                let at = (s.effective_dimension as f64, *v);
                chart
                    .draw_series(std::iter::once(Text::new(
                        "★",
                        at,
                        ("sans-serif", 22).into_font().color(&c),
                    )))
                    .map_err(plot_err)?;
            }
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .position(SeriesLabelPosition::LowerLeft)
            .draw()
            .map_err(plot_err)?;
        root.present().map_err(plot_err)?;
        Ok(())
    }
}
