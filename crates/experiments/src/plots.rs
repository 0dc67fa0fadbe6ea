//! Figures with plotters, each written as PNG and SVG (sensitivity grids as PNG only):
//! log-log eigenspectra with the `1/n` line, the fitted α and the 90%-variance dimension;
//! accuracy against ε or σ with mean ± 1 std bands over seeds; sensitivity-map grids.
//!
//! Every file records its provenance: PNGs in `tEXt` chunks, SVGs in a comment.

use std::path::Path;
use std::sync::Once;

use anyhow::{Result, anyhow};
use plotters::coord::Shift;
use plotters::prelude::*;

use crate::outputs::write_atomic;

/// DejaVu Sans (Bitstream Vera licence, see `assets/DejaVuSans-LICENSE.txt`), embedded so
/// figures render the same on a machine without fonts.
static FONT: &[u8] = include_bytes!("../assets/DejaVuSans.ttf");
static FONT_ONCE: Once = Once::new();

fn register_font() {
    FONT_ONCE.call_once(|| {
        // The embedded font is valid TrueType; a failure would only lose text labels.
        let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, FONT);
    });
}

fn plot_err<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow!("drawing failed: {e:?}")
}

/// A series colour, from a fixed palette (colour-blind-friendly Okabe–Ito, then greys).
pub fn color(i: usize) -> RGBColor {
    const P: [RGBColor; 8] = [
        RGBColor(0, 0, 0),
        RGBColor(230, 159, 0),
        RGBColor(0, 114, 178),
        RGBColor(0, 158, 115),
        RGBColor(213, 94, 0),
        RGBColor(204, 121, 167),
        RGBColor(86, 180, 233),
        RGBColor(120, 120, 120),
    ];
    P[i % P.len()]
}

/// Encodes an RGB buffer as PNG with `tEXt` metadata.
fn encode_png(rgb: &[u8], (w, h): (u32, u32), meta: &[(&str, &str)]) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut out, w, h);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        enc.set_compression(png::Compression::Best);
        enc.set_filter(png::FilterType::Paeth);
        for (k, v) in meta {
            enc.add_text_chunk((*k).to_string(), (*v).to_string())?;
        }
        let mut writer = enc.write_header()?;
        writer.write_image_data(rgb)?;
    }
    Ok(out)
}

/// Draws with `draw_png` into a PNG and, when given, with `draw_svg` into an SVG:
/// `<stem>.png` and `<stem>.svg`, both written atomically with `provenance` embedded.
fn save_figure(
    stem: &Path,
    size: (u32, u32),
    provenance: &str,
    draw_png: impl FnOnce(DrawingArea<BitMapBackend<'_>, Shift>) -> Result<()>,
    draw_svg: Option<impl FnOnce(DrawingArea<SVGBackend<'_>, Shift>) -> Result<()>>,
) -> Result<()> {
    register_font();
    let mut rgb = vec![255u8; (size.0 * size.1 * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut rgb, size).into_drawing_area();
        draw_png(root)?;
    }
    let png = encode_png(
        &rgb,
        size,
        &[("Software", "specreg"), ("Comment", provenance)],
    )?;
    write_atomic(&stem.with_extension("png"), &png)?;
    if let Some(draw_svg) = draw_svg {
        let mut svg = String::new();
        {
            let root = SVGBackend::with_string(&mut svg, size).into_drawing_area();
            draw_svg(root)?;
        }
        let comment = format!("<!-- specreg: {} -->\n", provenance.replace("--", "- -"));
        let svg = match svg.find("?>") {
            Some(i) if svg.starts_with("<?xml") => {
                format!("{}\n{comment}{}", &svg[..i + 2], &svg[i + 2..])
            }
            _ => format!("{comment}{svg}"),
        };
        write_atomic(&stem.with_extension("svg"), svg.as_bytes())?;
    }
    Ok(())
}

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

/// One row of a sensitivity grid: a label and `(rank, 28×28 map)` cells.
#[derive(Debug, Clone)]
pub struct SensitivityRow {
    /// Row label (the variant).
    pub label: String,
    /// `(1-based eigenvalue rank, 784 values in row-major 28×28 order)`.
    pub maps: Vec<(usize, Vec<f64>)>,
}

/// A grid of sensitivity maps, one row per variant and one column per eigenvalue rank,
/// each map on a diverging blue–white–red scale symmetric about 0 and normalised by its
/// own largest magnitude. Writes `<stem>.png`.
///
/// # Errors
/// Drawing or I/O errors; maps that are not 784 values.
pub fn sensitivity_grid(
    stem: &Path,
    title: &str,
    rows: &[SensitivityRow],
    provenance: &str,
) -> Result<()> {
    if let Some(bad) = rows
        .iter()
        .flat_map(|r| r.maps.iter())
        .find(|(_, m)| m.len() != 784)
    {
        return Err(anyhow!(
            "sensitivity map of rank {} has {} values, expected 784",
            bad.0,
            bad.1.len()
        ));
    }
    const CELL: u32 = 84; // 3 pixels per input pixel
    const LABEL_W: u32 = 240;
    const HEAD_H: u32 = 60;
    let cols = rows.iter().map(|r| r.maps.len()).max().unwrap_or(1).max(1) as u32;
    let title_w = title.chars().count() as u32 * 11 + 20;
    let size = (
        (LABEL_W + cols * (CELL + 6) + 10).max(title_w),
        HEAD_H + rows.len().max(1) as u32 * (CELL + 6) + 10,
    );
    let draw = |root: DrawingArea<BitMapBackend<'_>, Shift>| -> Result<()> {
        root.fill(&WHITE).map_err(plot_err)?;
        let font = ("sans-serif", 16).into_font();
        root.draw(&Text::new(
            title.to_string(),
            (10, 8),
            ("sans-serif", 20).into_font(),
        ))
        .map_err(plot_err)?;
        for (r, row) in rows.iter().enumerate() {
            let y0 = (HEAD_H + r as u32 * (CELL + 6)) as i32;
            root.draw(&Text::new(
                row.label.clone(),
                (8, y0 + CELL as i32 / 2 - 8),
                font.clone(),
            ))
            .map_err(plot_err)?;
            for (c, (rank, map)) in row.maps.iter().enumerate() {
                let x0 = (LABEL_W + c as u32 * (CELL + 6)) as i32;
                if r == 0 {
                    root.draw(&Text::new(
                        format!("n = {rank}"),
                        (x0 + 16, HEAD_H as i32 - 24),
                        font.clone(),
                    ))
                    .map_err(plot_err)?;
                }
                let scale = map.iter().fold(0.0f64, |m, v| m.max(v.abs()));
                for (p, v) in map.iter().enumerate() {
                    let t = if scale > 0.0 { v / scale } else { 0.0 };
                    let col = diverging(t);
                    let (py, px) = ((p / 28) as i32, (p % 28) as i32);
                    let (x, y) = (x0 + px * 3, y0 + py * 3);
                    root.draw(&Rectangle::new([(x, y), (x + 3, y + 3)], col.filled()))
                        .map_err(plot_err)?;
                }
            }
        }
        root.present().map_err(plot_err)?;
        Ok(())
    };
    save_figure(
        stem,
        size,
        provenance,
        draw,
        None::<fn(DrawingArea<SVGBackend<'_>, Shift>) -> Result<()>>,
    )
}

/// Blue (−1) – white (0) – red (+1).
fn diverging(t: f64) -> RGBColor {
    let t = t.clamp(-1.0, 1.0);
    let mix = |a: f64, b: f64, w: f64| (a + (b - a) * w).round() as u8;
    if t >= 0.0 {
        RGBColor(
            mix(255.0, 178.0, t),
            mix(255.0, 24.0, t),
            mix(255.0, 43.0, t),
        )
    } else {
        RGBColor(
            mix(255.0, 33.0, -t),
            mix(255.0, 102.0, -t),
            mix(255.0, 172.0, -t),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diverging_endpoints() {
        assert_eq!(diverging(0.0), RGBColor(255, 255, 255));
        assert_eq!(diverging(1.0), RGBColor(178, 24, 43));
        assert_eq!(diverging(-2.0), RGBColor(33, 102, 172));
    }

    #[test]
    fn figures_are_written_with_provenance() {
        let dir = tempfile::tempdir().unwrap();
        let stem = dir.path().join("curve");
        let s = CurveSeries {
            label: "a".into(),
            x: vec![0.0, 0.1, 0.2],
            mean: vec![0.9, 0.5, 0.1],
            std: vec![0.01, 0.05, 0.02],
            dashed: true,
        };
        curve_plot(&stem, "t", "ε", &[s], "seed=0 commit=x").unwrap();
        let png = std::fs::read(stem.with_extension("png")).unwrap();
        assert_eq!(&png[1..4], b"PNG");
        assert!(png.windows(14).any(|w| w == b"seed=0 commit="));
        let svg = std::fs::read_to_string(stem.with_extension("svg")).unwrap();
        assert!(
            svg.contains("<!-- specreg: seed=0 commit=x -->"),
            "{}",
            &svg[..200]
        );
        let lambda: Vec<f64> = (1..=100).map(|n| 1.0 / n as f64).collect();
        let sp = SpectrumSeries {
            label: "b".into(),
            eigenvalues: lambda,
            alpha: Some(1.0),
            effective_dimension: 40,
        };
        spectrum_plot(&dir.path().join("spec"), "s", &[sp], 10, "p").unwrap();
        assert!(dir.path().join("spec.svg").is_file());
        let row = SensitivityRow {
            label: "v".into(),
            maps: vec![(1, vec![0.5; 784]), (2, vec![-0.5; 784])],
        };
        sensitivity_grid(&dir.path().join("sens"), "maps", &[row], "p").unwrap();
        assert!(dir.path().join("sens.png").is_file());
    }
}
