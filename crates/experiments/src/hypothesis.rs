//! The significance tests behind the claim verdicts: Welch's t-test for the difference of
//! two means and one-sample t bounds, with Student's t distribution computed here
//! (regularised incomplete beta by Lentz's continued fraction, bisection for quantiles).
//!
//! Every test is one-sided at level [`ALPHA`]; a two-sided statement (equivalence) is two
//! such tests (TOST), so it holds at the same level.

/// The level of every one-sided test.
pub const ALPHA: f64 = 0.05;

/// `ln Γ(x)` for `x > 0` (Lanczos, g = 7, 9 terms; relative error below 1e-13).
fn ln_gamma(x: f64) -> f64 {
    const G: f64 = 7.0;
    const C: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        // Reflection: Γ(x)Γ(1 − x) = π / sin(πx).
        return (std::f64::consts::PI / (std::f64::consts::PI * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let mut a = C[0];
    let t = x + G + 0.5;
    for (i, c) in C.iter().enumerate().skip(1) {
        a += c / (x + i as f64);
    }
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + a.ln()
}

/// The continued fraction of the incomplete beta function (modified Lentz).
fn beta_fraction(a: f64, b: f64, x: f64) -> f64 {
    const TINY: f64 = 1e-300;
    let (qab, qap, qam) = (a + b, a + 1.0, a - 1.0);
    let mut c = 1.0;
    let mut d = 1.0 - qab * x / qap;
    if d.abs() < TINY {
        d = TINY;
    }
    d = 1.0 / d;
    let mut h = d;
    for m in 1..=300 {
        let m = m as f64;
        let m2 = 2.0 * m;
        let aa = m * (b - m) * x / ((qam + m2) * (a + m2));
        d = 1.0 + aa * d;
        d = if d.abs() < TINY { TINY } else { d };
        c = 1.0 + aa / c;
        c = if c.abs() < TINY { TINY } else { c };
        d = 1.0 / d;
        h *= d * c;
        let aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2));
        d = 1.0 + aa * d;
        d = if d.abs() < TINY { TINY } else { d };
        c = 1.0 + aa / c;
        c = if c.abs() < TINY { TINY } else { c };
        d = 1.0 / d;
        let del = d * c;
        h *= del;
        if (del - 1.0).abs() < 1e-15 {
            break;
        }
    }
    h
}

/// The regularised incomplete beta function `I_x(a, b)`.
fn incomplete_beta(a: f64, b: f64, x: f64) -> f64 {
    if x <= 0.0 {
        return 0.0;
    }
    if x >= 1.0 {
        return 1.0;
    }
    let front =
        (ln_gamma(a + b) - ln_gamma(a) - ln_gamma(b) + a * x.ln() + b * (1.0 - x).ln()).exp();
    if x < (a + 1.0) / (a + b + 2.0) {
        front * beta_fraction(a, b, x) / a
    } else {
        1.0 - front * beta_fraction(b, a, 1.0 - x) / b
    }
}

/// The CDF of Student's t with `df > 0` degrees of freedom.
pub fn t_cdf(t: f64, df: f64) -> f64 {
    let tail = 0.5 * incomplete_beta(df / 2.0, 0.5, df / (df + t * t));
    if t >= 0.0 { 1.0 - tail } else { tail }
}

/// The `p`-quantile of Student's t with `df` degrees of freedom (`0 < p < 1`).
pub fn t_quantile(p: f64, df: f64) -> f64 {
    if p == 0.5 {
        return 0.0;
    }
    if p < 0.5 {
        return -t_quantile(1.0 - p, df);
    }
    let (mut lo, mut hi) = (0.0, 1.0);
    while t_cdf(hi, df) < p {
        hi *= 2.0;
        if hi > 1e12 {
            return f64::INFINITY;
        }
    }
    for _ in 0..200 {
        let mid = 0.5 * (lo + hi);
        if t_cdf(mid, df) < p {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    0.5 * (lo + hi)
}

/// One-sided `1 − ALPHA` confidence bounds of a mean or a difference of means.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bounds {
    /// The point estimate.
    pub estimate: f64,
    /// The lower bound: the estimate is significantly above any value below it.
    pub lower: f64,
    /// The upper bound.
    pub upper: f64,
    /// Degrees of freedom (Welch–Satterthwaite for a difference).
    pub df: f64,
}

fn sample_var(v: &[f64]) -> f64 {
    let m = v.iter().sum::<f64>() / v.len() as f64;
    v.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / (v.len() - 1) as f64
}

fn bounds(estimate: f64, se: f64, df: f64) -> Bounds {
    // Identical values on both sides: no spread, the estimate is exact.
    let half = if se == 0.0 {
        0.0
    } else {
        t_quantile(1.0 - ALPHA, df) * se
    };
    Bounds {
        estimate,
        lower: estimate - half,
        upper: estimate + half,
        df,
    }
}

/// Welch's bounds of `mean(a) − mean(b)`; `None` unless both have at least two values.
pub fn welch(a: &[f64], b: &[f64]) -> Option<Bounds> {
    if a.len() < 2 || b.len() < 2 {
        return None;
    }
    let (na, nb) = (a.len() as f64, b.len() as f64);
    let (va, vb) = (sample_var(a) / na, sample_var(b) / nb);
    let se = (va + vb).sqrt();
    let df = if se == 0.0 {
        na + nb - 2.0
    } else {
        (va + vb).powi(2) / (va * va / (na - 1.0) + vb * vb / (nb - 1.0))
    };
    let diff = a.iter().sum::<f64>() / na - b.iter().sum::<f64>() / nb;
    Some(bounds(diff, se, df))
}

/// One-sample bounds of `mean(a)`; `None` for fewer than two values.
pub fn one_sample(a: &[f64]) -> Option<Bounds> {
    if a.len() < 2 {
        return None;
    }
    let n = a.len() as f64;
    let se = (sample_var(a) / n).sqrt();
    Some(bounds(a.iter().sum::<f64>() / n, se, n - 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn t_quantiles_match_tables() {
        // Standard table values of t_{0.95, df}.
        for (df, q) in [
            (1.0, 6.313_751_5),
            (2.0, 2.919_986),
            (4.0, 2.131_847),
            (10.0, 1.812_461),
            (30.0, 1.697_261),
        ] {
            assert!((t_quantile(0.95, df) - q).abs() < 1e-5, "df {df}");
        }
        assert!((t_quantile(0.975, 5.0) - 2.570_582).abs() < 1e-5);
        assert_eq!(t_quantile(0.5, 3.0), 0.0);
        assert!((t_quantile(0.05, 2.0) + 2.919_986).abs() < 1e-5);
        // Cauchy (df = 1) has a closed-form CDF.
        for t in [-3.0, -0.5, 0.0, 0.7, 4.0] {
            let closed = 0.5 + f64::atan(t) / std::f64::consts::PI;
            assert!((t_cdf(t, 1.0) - closed).abs() < 1e-12);
        }
    }

    #[test]
    fn welch_by_hand() {
        let b = welch(&[0.5, 0.6, 0.7], &[0.3, 0.3, 0.3]).unwrap();
        // se = 0.1/√3, df = 2.
        assert!((b.estimate - 0.3).abs() < 1e-12);
        assert!((b.df - 2.0).abs() < 1e-12);
        let half = 2.919_986 * 0.1 / 3f64.sqrt();
        assert!((b.lower - (0.3 - half)).abs() < 1e-5);
        assert!((b.upper - (0.3 + half)).abs() < 1e-5);
        let exact = welch(&[0.2, 0.2], &[0.1, 0.1]).unwrap();
        assert!((exact.lower - 0.1).abs() < 1e-12 && (exact.upper - 0.1).abs() < 1e-12);
        assert!(welch(&[0.1], &[0.2, 0.3]).is_none());
        let m = one_sample(&[1.0, 2.0, 3.0]).unwrap();
        assert!((m.lower - (2.0 - 2.919_986 / 3f64.sqrt())).abs() < 1e-5);
    }
}
