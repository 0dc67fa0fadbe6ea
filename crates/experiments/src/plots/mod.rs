//! Figures with plotters, each written as PNG and SVG (sensitivity grids as PNG only):
//! log-log eigenspectra with the `1/n` line, the fitted α and the 90%-variance dimension;
//! accuracy against ε or σ with mean ± 1 std bands over seeds; sensitivity-map grids.
//!
//! Every file records its provenance: PNGs in `tEXt` chunks, SVGs in a comment.
mod curves;
mod sensitivity;
mod spectrum;

pub use curves::{CurveSeries, curve_plot};
pub use sensitivity::{SensitivityRow, sensitivity_grid};
pub use spectrum::{SpectrumSeries, spectrum_plot};

use std::path::Path;
use std::sync::Once;

use anyhow::{Result, anyhow};
use plotters::coord::Shift;
use plotters::prelude::*;

use crate::outputs::write_atomic;

/// DejaVu Sans (Bitstream Vera licence, see `assets/DejaVuSans-LICENSE.txt`), embedded so
/// figures render the same on a machine without fonts.
static FONT: &[u8] = include_bytes!("../../assets/DejaVuSans.ttf");
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

#[cfg(test)]
mod tests {
    use super::sensitivity::diverging;
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
