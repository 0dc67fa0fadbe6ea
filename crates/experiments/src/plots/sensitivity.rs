//! Grids of eigenvalue sensitivity maps (PNG only).

use std::path::Path;

use anyhow::{Result, anyhow};
use plotters::coord::Shift;
use plotters::prelude::*;

use super::{plot_err, save_figure};

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
pub(super) fn diverging(t: f64) -> RGBColor {
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
