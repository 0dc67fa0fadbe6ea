//! `--shard K/N`: a deterministic share of a sweep's runs, balanced by estimated cost.
//!
//! Every (config, seed) run gets a cost from [`crate::cost::reference_cost`], a model of the
//! run's work that depends on the config alone (never on this machine's speed or on which
//! runs are already done), so every machine and every array task computes the same
//! partition. Runs are dealt out greedily, the most expensive first, each to the shard
//! with the least work so far (ties: the lower shard number, then the earlier run), which
//! keeps the shards within one run's cost of each other.

use std::fmt;
use std::str::FromStr;

use crate::config::Config;
use crate::cost::reference_cost;

/// Why a `--shard` value was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShardError {
    /// Not of the form `K/N`.
    #[error("--shard {given:?}: expected K/N with whole numbers, e.g. --shard 2/3")]
    Syntax {
        /// The value as given.
        given: String,
    },
    /// `N` is zero.
    #[error("--shard {given:?}: the number of shards N must be at least 1")]
    NoShards {
        /// The value as given.
        given: String,
    },
    /// `K` is not in `1..=N`.
    #[error("--shard {given:?}: the shard number K must be between 1 and {count} (K is 1-based)")]
    OutOfRange {
        /// The value as given.
        given: String,
        /// `N`.
        count: usize,
    },
}

/// Shard `index` of `count`, 1-based like Slurm's `--array=1-N`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    index: usize,
    count: usize,
}

impl Shard {
    /// Shard `index` (1-based) of `count`.
    ///
    /// # Errors
    /// `count = 0`, or `index` outside `1..=count`.
    pub fn new(index: usize, count: usize) -> Result<Shard, ShardError> {
        let given = format!("{index}/{count}");
        if count == 0 {
            return Err(ShardError::NoShards { given });
        }
        if index == 0 || index > count {
            return Err(ShardError::OutOfRange { given, count });
        }
        Ok(Shard { index, count })
    }

    /// The 1-based shard number K.
    pub fn index(self) -> usize {
        self.index
    }

    /// The number of shards N.
    pub fn count(self) -> usize {
        self.count
    }

    /// The whole sweep as one shard.
    pub const ALL: Shard = Shard { index: 1, count: 1 };

    /// Whether this is the whole sweep.
    pub fn is_all(self) -> bool {
        self.count == 1
    }

    /// `shard-K-of-N`, for file names.
    pub fn file_label(self) -> String {
        format!("shard-{}-of-{}", self.index, self.count)
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl FromStr for Shard {
    type Err = ShardError;

    fn from_str(s: &str) -> Result<Shard, ShardError> {
        let given = s.to_string();
        let (k, n) = s.split_once('/').ok_or_else(|| ShardError::Syntax {
            given: given.clone(),
        })?;
        let parse = |v: &str| {
            v.trim().parse::<usize>().map_err(|_| ShardError::Syntax {
                given: given.clone(),
            })
        };
        let (index, count) = (parse(k)?, parse(n)?);
        Shard::new(index, count).map_err(|e| match e {
            ShardError::NoShards { .. } => ShardError::NoShards { given },
            ShardError::OutOfRange { count, .. } => ShardError::OutOfRange { given, count },
            other => other,
        })
    }
}

/// The shard (0-based) of each item with cost `costs[i]`, dealt largest first to the
/// least-loaded of `count` shards (the first of equally loaded ones). With `count = 0`
/// there is nowhere to deal to and the result is empty; a [`Shard`] always has `count ≥ 1`.
pub fn assign(costs: &[f64], count: usize) -> Vec<usize> {
    if count == 0 {
        return Vec::new();
    }
    let mut order: Vec<usize> = (0..costs.len()).collect();
    // Stable sort: equal costs keep their listed order.
    order.sort_by(|&a, &b| costs[b].total_cmp(&costs[a]));
    let mut load = vec![0.0f64; count];
    let mut out = vec![0; costs.len()];
    for i in order {
        let mut best = 0;
        for s in 1..count {
            if load[s] < load[best] {
                best = s;
            }
        }
        load[best] += costs[i].max(0.0);
        out[i] = best;
    }
    out
}

/// Every (config, seed) run of `configs`, in sweep order.
pub fn runs(configs: &[Config]) -> Vec<(&Config, u64)> {
    configs
        .iter()
        .flat_map(|c| c.seeds.iter().map(move |&s| (c, s)))
        .collect()
}

/// The configs of `shard`'s runs: each config keeps only the seeds dealt to this shard,
/// and configs left without seeds are dropped. The whole sweep for [`Shard::ALL`].
pub fn shard_configs(configs: &[Config], shard: Shard) -> Vec<Config> {
    if shard.is_all() {
        return configs.to_vec();
    }
    let all = runs(configs);
    let costs: Vec<f64> = all.iter().map(|(c, _)| reference_cost(c).total()).collect();
    let owner = assign(&costs, shard.count);
    let mut out: Vec<Config> = Vec::new();
    for ((config, seed), _) in all
        .iter()
        .zip(&owner)
        .filter(|(_, o)| **o == shard.index - 1)
    {
        match out.last_mut() {
            Some(last) if last.id() == config.id() => last.seeds.push(*seed),
            _ => {
                let mut c = (*config).clone();
                c.seeds = vec![*seed];
                out.push(c);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_rejects() {
        assert_eq!("2/3".parse(), Ok(Shard { index: 2, count: 3 }));
        assert_eq!(" 1 / 1 ".parse::<Shard>(), Ok(Shard::ALL));
        assert!(matches!(
            "3".parse::<Shard>(),
            Err(ShardError::Syntax { .. })
        ));
        assert!(matches!(
            "a/2".parse::<Shard>(),
            Err(ShardError::Syntax { .. })
        ));
        assert!(matches!(
            "1/0".parse::<Shard>(),
            Err(ShardError::NoShards { .. })
        ));
        assert!(matches!(
            "0/2".parse::<Shard>(),
            Err(ShardError::OutOfRange { count: 2, .. })
        ));
        let e = "4/3".parse::<Shard>().unwrap_err().to_string();
        assert!(
            e.contains("\"4/3\"") && e.contains("between 1 and 3"),
            "{e}"
        );
    }

    #[test]
    fn balances_by_cost_not_count() {
        // One big run and four small ones: by count it would be 3 + 2; by cost the big one
        // stands alone.
        let costs = [10.0, 2.0, 2.0, 2.0, 2.0];
        let a = assign(&costs, 2);
        assert_eq!(a, vec![0, 1, 1, 1, 1]);
        let mut loads = [0.0; 2];
        for (c, s) in costs.iter().zip(&a) {
            loads[*s] += c;
        }
        assert_eq!(loads, [10.0, 8.0]);
    }

    #[test]
    fn every_item_in_exactly_one_shard_and_deterministic() {
        let costs: Vec<f64> = (0..37).map(|i| ((i * 7919) % 13) as f64 + 0.5).collect();
        for n in 1..6 {
            let a = assign(&costs, n);
            assert_eq!(a, assign(&costs, n));
            assert!(a.iter().all(|&s| s < n));
            let mut loads = vec![0.0; n];
            for (c, s) in costs.iter().zip(&a) {
                loads[*s] += c;
            }
            let max = loads.iter().cloned().fold(0.0, f64::max);
            let min = loads.iter().cloned().fold(f64::INFINITY, f64::min);
            // Greedy largest-first keeps the spread within the largest single cost.
            assert!(max - min <= 13.0, "n={n}: {loads:?}");
        }
    }

    #[test]
    fn more_shards_than_runs_leaves_some_empty() {
        let a = assign(&[1.0, 1.0], 4);
        assert_eq!(a, vec![0, 1]);
    }
}
