//! Small statistics over seeds: mean, sample standard deviation, median, curve interpolation.

/// Mean of `v` (NaN for an empty slice).
pub fn mean(v: &[f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.iter().sum::<f64>() / v.len() as f64
}

/// Sample standard deviation (divisor n − 1) of `v`; 0 for fewer than two values.
pub fn std(v: &[f64]) -> f64 {
    if v.len() < 2 {
        return 0.0;
    }
    let m = mean(v);
    (v.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / (v.len() - 1) as f64).sqrt()
}

/// The value of the piecewise-linear curve through `(xs, ys)` at `x`: exact at a grid
/// point, linear between two, `None` outside the grid or for an empty/mismatched curve.
pub fn interpolate(xs: &[f64], ys: &[f64], x: f64) -> Option<f64> {
    if xs.len() != ys.len() || xs.is_empty() {
        return None;
    }
    const TOL: f64 = 1e-9;
    if let Some(i) = xs.iter().position(|v| (v - x).abs() < TOL) {
        return Some(ys[i]);
    }
    let i = xs.windows(2).position(|w| w[0] < x && x < w[1])?;
    let t = (x - xs[i]) / (xs[i + 1] - xs[i]);
    Some(ys[i] + t * (ys[i + 1] - ys[i]))
}

/// The median of `sorted` (ascending): the middle value, or the mean of the two middle
/// values; `None` for an empty slice.
pub fn median_sorted(sorted: &[f64]) -> Option<f64> {
    let n = sorted.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(sorted[n / 2]),
        _ => Some(0.5 * (sorted[n / 2 - 1] + sorted[n / 2])),
    }
}

/// Whether `x` is (within rounding) one of the grid points.
pub fn on_grid(xs: &[f64], x: f64) -> bool {
    xs.iter().any(|v| (v - x).abs() < 1e-9)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mean_std_closed_forms() {
        assert_eq!(mean(&[1.0, 2.0, 3.0]), 2.0);
        assert_eq!(std(&[1.0, 2.0, 3.0]), 1.0);
        assert_eq!(std(&[5.0]), 0.0);
        assert!(mean(&[]).is_nan());
        assert_eq!(median_sorted(&[1.0, 2.0, 7.0]), Some(2.0));
        assert_eq!(median_sorted(&[1.0, 2.0, 4.0, 7.0]), Some(3.0));
        assert_eq!(median_sorted(&[]), None);
    }

    #[test]
    fn interpolation() {
        let xs = [0.0, 0.1, 0.2];
        let ys = [1.0, 0.5, 0.0];
        assert_eq!(interpolate(&xs, &ys, 0.1), Some(0.5));
        assert!((interpolate(&xs, &ys, 0.05).unwrap() - 0.75).abs() < 1e-12);
        assert_eq!(interpolate(&xs, &ys, 0.3), None);
        assert!(on_grid(&xs, 0.2) && !on_grid(&xs, 0.15));
    }
}
