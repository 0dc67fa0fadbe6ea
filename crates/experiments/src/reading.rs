//! The *reading* of a run: which of the defensible interpretations of the paper each of
//! its numbers uses, recorded in `summary.json` and printed beside every table row.

use serde::{Deserialize, Serialize};

use crate::config::{Config, EigenModeName, ModelKind, WhiteningStatisticsName};

/// The choices behind a run's numbers, in words.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Reading {
    /// BatchNorm during the main attacks: `none` or `running statistics` (the
    /// `*-bn-batch` curves use the attacked batch's statistics and say so in their name).
    pub batchnorm: String,
    /// Whitening statistics at evaluation (`batch` or `running`), if the net is whitened.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub whitening: Option<String>,
    /// The Jacobian penalty's kind, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jacobian: Option<String>,
    /// The spectral penalty's eigenvalues (`projected, sorted`, …), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spectral: Option<String>,
    /// Where PGD starts.
    pub pgd_start: String,
    /// The rank convention: the anchor τ of the penalty and the α fit's ranks, in words.
    pub ranks: String,
    /// The spectral penalty's anchor rank τ, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tau: Option<usize>,
    /// The α fit's 1-based rank range.
    #[serde(default)]
    pub fit_ranks: [usize; 2],
}

impl Reading {
    /// The reading of `config`.
    pub fn of(config: &Config) -> Reading {
        let e = &config.eval;
        let anchor = config.spectral.as_ref().map(|s| {
            format!(
                "anchor rank τ = {} ({}), penalised ranks {}..N; ",
                s.tau,
                match s.tau {
                    10 => "paper's text",
                    11 => "reference code",
                    _ => "custom",
                },
                s.tau + 1
            )
        });
        Reading {
            batchnorm: if config.model.kind == ModelKind::Shallow && config.model.batchnorm {
                "running statistics".into()
            } else {
                "none".into()
            },
            whitening: config.whitening.as_ref().map(|w| {
                match w.statistics {
                    WhiteningStatisticsName::Batch => {
                        "batch statistics (attacks differentiate through them)"
                    }
                    WhiteningStatisticsName::Running => "running statistics",
                }
                .to_string()
            }),
            jacobian: config.jacobian.as_ref().map(|j| j.kind.name().to_string()),
            spectral: config.spectral.as_ref().map(|s| {
                match (s.mode, s.sort_projected) {
                    (EigenModeName::Exact, _) => "exact eigenvalues per batch",
                    (EigenModeName::Projected, true) => "projected eigenvalues, sorted per batch",
                    (EigenModeName::Projected, false) => {
                        "projected eigenvalues in eigenvector order"
                    }
                }
                .to_string()
            }),
            pgd_start: if e.pgd_random_start {
                "uniform random start in the ε-ball, worst iterate kept".into()
            } else {
                "started at the clean image".into()
            },
            ranks: format!(
                "{}α fit over ranks {}–{} ({})",
                anchor.unwrap_or_default(),
                e.fit_ranks[0],
                e.fit_ranks[1],
                if e.fit_ranks == [11, 500] {
                    "paper's text"
                } else if e.fit_ranks == [12, 500] {
                    "Stringer et al.'s code"
                } else {
                    "custom"
                }
            ),
            tau: config.spectral.as_ref().map(|s| s.tau),
            fit_ranks: e.fit_ranks,
        }
    }

    /// A short form for table cells, e.g. `BN running · PGD random start · fit 11–500`.
    pub fn short(&self) -> String {
        let mut parts = vec![format!("BN {}", first_word(&self.batchnorm))];
        if let Some(w) = &self.whitening {
            parts.push(format!("whitening {}", first_word(w)));
        }
        if let Some(j) = &self.jacobian {
            parts.push(format!("Jacobian {}", first_word(j)));
        }
        if let Some(s) = &self.spectral {
            parts.push(
                if s.contains("sorted") {
                    "λ̂ sorted"
                } else if s.contains("exact") {
                    "λ exact"
                } else {
                    "λ̂ unsorted"
                }
                .into(),
            );
        }
        parts.push(
            if self.pgd_start.starts_with("uniform") {
                "PGD random start"
            } else {
                "PGD from image"
            }
            .into(),
        );
        if let Some(tau) = self.tau {
            parts.push(format!("τ = {tau}"));
        }
        let [first, last] = self.fit_ranks;
        parts.push(format!("fit {first}–{last}"));
        parts.join(" · ")
    }
}

fn first_word(s: &str) -> &str {
    s.split_whitespace().next().unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paper_config_reading() {
        let c = Config::from_toml_str(
            r#"
experiment = "exp2"
variant = "mlp-specreg-last-whitened-b2"
seeds = [0]
[model]
kind = "mlp"
[train]
epochs = 1
batch_size = 1500
lr = 1e-4
[whitening]
layer = "fc2"
[spectral]
layers = ["fc3"]
beta = 2.0
"#,
            "t",
        )
        .unwrap();
        let r = Reading::of(&c);
        assert_eq!(r.batchnorm, "none");
        assert!(
            r.whitening
                .as_deref()
                .unwrap()
                .starts_with("batch statistics")
        );
        assert!(
            r.ranks
                .starts_with("anchor rank τ = 10 (paper's text), penalised ranks 11..N")
        );
        assert!(r.ranks.ends_with("α fit over ranks 11–500 (paper's text)"));
        assert_eq!(
            r.short(),
            "BN none · whitening batch · λ̂ sorted · PGD random start · τ = 10 · fit 11–500"
        );
    }
}
