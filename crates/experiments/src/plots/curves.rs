//! Accuracy against ε or σ, mean ± 1 std bands over seeds.

use std::path::Path;

use anyhow::Result;
use plotters::coord::Shift;
use plotters::prelude::*;

use super::{color, plot_err, save_figure};

/// One accuracy curve: mean and standard deviation over seeds at each grid point.
#[derive(Debug, Clone)]
pub struct CurveSeries {
    /// Legend label.
    pub label: String,
    /// Grid (ε or σ).
    pub x: Vec<f64>,
    /// Mean accuracy.
    pub mean: Vec<f64>,
    /// Standard deviation over seeds (0 for one seed).
    pub std: Vec<f64>,
    /// Draw dashed (e.g. whitened variants).
    pub dashed: bool,
}

/// Accuracy against `x_label` with a shaded mean ± 1 std band per series. Writes
/// `<stem>.png` and `<stem>.svg`.
///
/// # Errors
/// Drawing or I/O errors.
pub fn curve_plot(
    stem: &Path,
    title: &str,
    x_label: &str,
    series: &[CurveSeries],
    provenance: &str,
) -> Result<()> {
    let x_max = series
        .iter()
        .flat_map(|s| s.x.iter().copied())
        .fold(0.0, f64::max)
        .max(1e-6);
    save_figure(
        stem,
        (800, 600),
        provenance,
        |r: DrawingArea<BitMapBackend<'_>, Shift>| draw_curves(r, title, x_label, series, x_max),
        Some(|r: DrawingArea<SVGBackend<'_>, Shift>| draw_curves(r, title, x_label, series, x_max)),
    )
}

fn draw_curves<DB: DrawingBackend>(
    root: DrawingArea<DB, Shift>,
    title: &str,
    x_label: &str,
    series: &[CurveSeries],
    x_max: f64,
) -> Result<()> {
    {
        root.fill(&WHITE).map_err(plot_err)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 22))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(55)
            .build_cartesian_2d(0f64..x_max, 0f64..1.0)
            .map_err(plot_err)?;
        chart
            .configure_mesh()
            .x_desc(x_label)
            .y_desc("accuracy")
            .light_line_style(WHITE)
            .draw()
            .map_err(plot_err)?;
        for (i, s) in series.iter().enumerate() {
            let c = color(i);
            let upper = s.x.iter().zip(s.mean.iter().zip(&s.std));
            let mut band: Vec<(f64, f64)> = upper
                .clone()
                .map(|(x, (m, d))| (*x, (m + d).min(1.0)))
                .collect();
            band.extend(upper.rev().map(|(x, (m, d))| (*x, (m - d).max(0.0))));
            if s.std.iter().any(|d| *d > 0.0) {
                chart
                    .draw_series(std::iter::once(Polygon::new(band, c.mix(0.2).filled())))
                    .map_err(plot_err)?;
            }
            let pts: Vec<(f64, f64)> = s.x.iter().copied().zip(s.mean.iter().copied()).collect();
            let style = c.stroke_width(2);
            if s.dashed {
                chart
                    .draw_series(DashedLineSeries::new(pts.clone(), 8, 5, style))
                    .map_err(plot_err)?
                    .label(&s.label)
                    .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], style));
            } else {
                chart
                    .draw_series(LineSeries::new(pts.clone(), style))
                    .map_err(plot_err)?
                    .label(&s.label)
                    .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], style));
            }
            chart
                .draw_series(pts.iter().map(|p| Circle::new(*p, 3, c.filled())))
                .map_err(plot_err)?;
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .position(SeriesLabelPosition::UpperRight)
            .draw()
            .map_err(plot_err)?;
        root.present().map_err(plot_err)?;
        Ok(())
    }
}
