//! A short calibration of this machine: one training step per network (at the config's
//! batch size, with its regulariser), one attack gradient evaluation, one forward pass,
//! one covariance pass per hidden layer, and eigendecompositions at two widths.
//! Everything runs on synthetic images (the speed of these kernels does not depend on the
//! pixel values), so no data set is needed.
//!
//! Results are cached per machine (host name and CPU model), device, thread count and
//! source commit in `$XDG_CACHE_HOME/specreg/calibration.json` (else
//! `~/.cache/specreg/calibration.json`), so only what a sweep has not met before is timed.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context as _, Result};
use serde::{Deserialize, Serialize};
use specreg_tensor::Device;

use crate::config::Config;
use crate::cost::{LayerCost, UnitCosts};
use crate::outputs::write_atomic;
use crate::probes::{
    SAMPLE_IMAGES, STEP_SAMPLE, exact_batch, synthetic, time_eigh, time_network, time_step,
};
use crate::progress::Progress;

/// What was measured on one machine (seconds).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MachineTimes {
    /// The source commit the times were measured with; another commit recalibrates.
    pub commit: String,
    /// One training step, by [`step_key`].
    pub steps: BTreeMap<String, f64>,
    /// Forward, gradient and covariance costs per image, by [`network_key`].
    pub networks: BTreeMap<String, NetworkTimes>,
    /// Eigendecomposition of a symmetric N×N matrix, by N (measured at
    /// [`EIGH_WIDTHS`]; other widths follow the power law through them, see
    /// [`MachineTimes::eigh_seconds`]).
    pub eigh: BTreeMap<String, f64>,
}

/// The widths whose eigendecomposition is timed.
pub const EIGH_WIDTHS: [usize; 2] = [1000, 2000];

impl MachineTimes {
    /// Seconds to eigendecompose an N×N covariance: `t_1000 · (N/1000)^p` with `p` from
    /// the two measured widths (clamped to [2.5, 3.6]; LAPACK-style eigensolvers are
    /// O(N³), and larger matrices fall out of cache).
    pub fn eigh_seconds(&self, width: usize) -> Option<f64> {
        let [a, b] = EIGH_WIDTHS;
        let ta = *self.eigh.get(&a.to_string())?;
        let tb = *self.eigh.get(&b.to_string())?;
        let p = ((tb / ta).ln() / (b as f64 / a as f64).ln()).clamp(2.5, 3.6);
        let p = if p.is_finite() { p } else { 3.0 };
        Some(ta * (width as f64 / a as f64).powf(p))
    }
}

/// Per-image costs of one network.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NetworkTimes {
    /// Eval-mode forward pass per image.
    pub forward_per_image: f64,
    /// Attack gradient evaluation per image.
    pub gradient_per_image: f64,
    /// Covariance accumulation per image, beyond the forward pass, by layer name.
    pub covariance_per_image: BTreeMap<String, f64>,
    /// The part of a covariance pass that does not grow with its images (finishing the
    /// N × N covariance), by layer name.
    pub covariance_fixed: BTreeMap<String, f64>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct CacheFile {
    version: u32,
    machines: BTreeMap<String, MachineTimes>,
}

/// 2: covariance passes split into per-image and fixed parts (version 1 divided a whole
/// 1000-image pass by 1000, so its per-image costs held the fixed part).
const CACHE_VERSION: u32 = 2;

/// This machine's calibration for a set of configs.
#[derive(Debug, Clone)]
pub struct Calibration {
    /// `host | CPU model | device | N threads`.
    pub machine: String,
    /// The times.
    pub times: MachineTimes,
    /// Seconds spent measuring in this call (0 when everything came from the cache).
    pub measured_seconds: f64,
    /// The cache file, if there is a per-user cache folder.
    pub cache: Option<PathBuf>,
}

impl Calibration {
    /// Removes this machine's entry from the cache file, so that the next command
    /// measures it afresh; `false` when there was nothing to remove (no cache folder, no
    /// file, or no entry for this machine).
    ///
    /// # Errors
    /// Writing the cache file.
    pub fn forget(&self) -> Result<bool> {
        let Some(path) = &self.cache else {
            return Ok(false);
        };
        let Ok(text) = std::fs::read_to_string(path) else {
            return Ok(false);
        };
        let Ok(mut file) = serde_json::from_str::<CacheFile>(&text) else {
            return Ok(false);
        };
        if file.machines.remove(&self.machine).is_none() {
            return Ok(false);
        }
        write_atomic(path, serde_json::to_string_pretty(&file)?.as_bytes())
            .with_context(|| format!("updating the calibration cache {}", path.display()))?;
        Ok(true)
    }

    /// The unit costs of `config`, when every piece of it was calibrated.
    pub fn units(&self, config: &Config) -> Option<UnitCosts> {
        let t = &self.times;
        let net = t.networks.get(&network_key(config))?;
        let layers = config
            .model
            .kind
            .hidden_layers()
            .iter()
            .map(|(name, width)| {
                Some(LayerCost {
                    name: name.clone(),
                    covariance_per_image: *net.covariance_per_image.get(name)?,
                    covariance_fixed: *net.covariance_fixed.get(name)?,
                    eigh: t.eigh_seconds(*width)?,
                })
            })
            .collect::<Option<Vec<_>>>()?;
        Some(UnitCosts {
            step: *t.steps.get(&step_key(config))?,
            forward_per_image: net.forward_per_image,
            gradient_per_image: net.gradient_per_image,
            layers,
        })
    }
}

/// `host | CPU model | device | N threads`: what a calibration is valid for.
pub fn machine_key(device: &str, threads: usize) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown-host".into());
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_string());
    format!("{host} | {cpu} | {device} | {threads} threads")
}

/// What a training step's time depends on: network, dtype, batch size, whitening and the
/// regulariser's layers and kind (not β).
pub fn step_key(config: &Config) -> String {
    let mut key = format!("{}/B{}", network_key(config), config.train.batch_size);
    if let Some(w) = &config.whitening {
        key.push_str(&format!("/whiten:{}:{}", w.layer, w.statistics.name()));
    }
    if let Some(sp) = &config.spectral {
        let mode = match sp.mode {
            crate::config::EigenModeName::Projected => "projected",
            crate::config::EigenModeName::Exact => "exact",
        };
        key.push_str(&format!(
            "/spectral:{mode}:{}",
            sp.layer_names(config.model.kind).join(",")
        ));
    }
    if let Some(j) = &config.jacobian {
        key.push_str(&format!("/jacobian:{:?}:{}", j.kind, j.projections));
    }
    key
}

/// What per-image forward and gradient costs depend on: network, BatchNorm, dtype and the
/// evaluation and covariance batch sizes.
pub fn network_key(config: &Config) -> String {
    format!(
        "{}{}/{:?}/eval{}/chunk{}",
        config.model.kind.name(),
        if config.model.batchnorm { "" } else { "-nobn" },
        config.model.dtype,
        config.eval.batch_size,
        config.train.chunk
    )
}

/// `$XDG_CACHE_HOME/specreg/calibration.json`, else `$HOME/.cache/specreg/…`.
pub fn cache_path() -> Option<PathBuf> {
    let xdg = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute());
    let base = xdg.or_else(|| {
        std::env::var_os("HOME")
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
            .map(|h| h.join(".cache"))
    })?;
    Some(base.join("specreg").join("calibration.json"))
}

fn read_cache(path: &std::path::Path, progress: &Progress) -> CacheFile {
    let Ok(text) = std::fs::read_to_string(path) else {
        return CacheFile::default();
    };
    match serde_json::from_str::<CacheFile>(&text) {
        Ok(c) if c.version == CACHE_VERSION => c,
        Ok(_) => CacheFile::default(),
        Err(e) => {
            progress.warn(&format!(
                "{}: unreadable calibration cache ({e}); calibrating again",
                path.display()
            ));
            CacheFile::default()
        }
    }
}

/// Calibrates what `configs` need on `device` with the current thread count, reading
/// and updating the per-user cache.
///
/// # Errors
/// Errors of building a network or of a timed step (e.g. a config whose network cannot
/// run on `device`).
pub fn calibrate(
    configs: &[Config],
    device: &Device,
    device_name: &str,
    threads: usize,
    commit: &str,
    progress: &Progress,
) -> Result<Calibration> {
    let machine = machine_key(device_name, threads);
    let cache = cache_path();
    let mut file = cache
        .as_deref()
        .map(|p| read_cache(p, progress))
        .unwrap_or_default();
    let mut times = file.machines.remove(&machine).unwrap_or_default();
    if times.commit != commit {
        times = MachineTimes {
            commit: commit.to_string(),
            ..MachineTimes::default()
        };
    }
    // What is missing, one representative config per key.
    let mut steps: BTreeMap<String, &Config> = BTreeMap::new();
    let mut networks: BTreeMap<String, &Config> = BTreeMap::new();
    for c in configs {
        let k = step_key(c);
        if !times.steps.contains_key(&k) {
            steps.entry(k).or_insert(c);
        }
        let k = network_key(c);
        if !times.networks.contains_key(&k) {
            networks.entry(k).or_insert(c);
        }
    }
    let eighs: Vec<usize> = EIGH_WIDTHS
        .into_iter()
        .filter(|w| !times.eigh.contains_key(&w.to_string()))
        .collect();
    if steps.is_empty() && networks.is_empty() && eighs.is_empty() {
        return Ok(Calibration {
            machine,
            times,
            measured_seconds: 0.0,
            cache,
        });
    }
    let start = Instant::now();
    progress.log(&format!(
        "calibrating this machine ({} step{}, {} network{}, {} eigendecompositions; cached \
         in {})",
        steps.len(),
        if steps.len() == 1 { "" } else { "s" },
        networks.len(),
        if networks.len() == 1 { "" } else { "s" },
        eighs.len(),
        cache
            .as_deref()
            .map_or("nowhere: no cache folder".into(), |p| p
                .display()
                .to_string())
    ));
    let rows = configs
        .iter()
        .map(|c| c.train.batch_size.min(STEP_SAMPLE.max(exact_batch(c))))
        .chain([SAMPLE_IMAGES])
        .max()
        .unwrap_or(SAMPLE_IMAGES);
    let (x, y) = synthetic(rows);
    let bar = progress.bar(
        (steps.len() + networks.len() + eighs.len()) as u64,
        "calibrate",
    );
    for width in eighs {
        bar.set_message(format!("eigendecomposition {width}×{width}"));
        let t = time_eigh(width).context("calibrating an eigendecomposition")?;
        times.eigh.insert(width.to_string(), t);
        bar.inc(1);
    }
    for (key, config) in &networks {
        bar.set_message(key.clone());
        let net = time_network(config, x.view(), &y, device)
            .with_context(|| format!("calibrating {} ({key})", config.id()))?;
        times.networks.insert(key.clone(), net);
        bar.inc(1);
    }
    for (key, config) in &steps {
        bar.set_message(key.clone());
        let t = time_step(config, x.view(), &y, device)
            .with_context(|| format!("calibrating a training step of {}", config.id()))?;
        times.steps.insert(key.clone(), t);
        bar.inc(1);
    }
    bar.finish_and_clear();
    let measured_seconds = start.elapsed().as_secs_f64();
    if let Some(path) = &cache {
        file.version = CACHE_VERSION;
        file.machines.insert(machine.clone(), times.clone());
        let text = serde_json::to_string_pretty(&file)?;
        if let Err(e) = write_atomic(path, text.as_bytes()) {
            progress.warn(&format!("calibration not cached: {e:#}"));
        }
    }
    Ok(Calibration {
        machine,
        times,
        measured_seconds,
        cache,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_separate_what_changes_the_time() {
        let base = "experiment = \"exp2\"\nvariant = \"t\"\nseeds = [0]\n[model]\nkind = \"mlp\"\n\
                    [train]\nepochs = 1\nbatch_size = 1500\nlr = 1e-4\n";
        let c = |extra: &str| Config::from_toml_str(&format!("{base}{extra}"), "t").unwrap();
        let b1 = c("[spectral]\nlayers = [\"fc3\"]\nbeta = 1.0\n");
        let b5 = c("[spectral]\nlayers = [\"fc3\"]\nbeta = 5.0\n");
        let all = c("[spectral]\nlayers = \"all\"\nbeta = 1.0\n");
        assert_eq!(step_key(&b1), step_key(&b5));
        assert_ne!(step_key(&b1), step_key(&all));
        assert_eq!(network_key(&b1), network_key(&all));
        assert!(machine_key("cpu", 3).ends_with("| cpu | 3 threads"));
    }

    #[test]
    fn eigh_follows_the_power_law_through_the_measured_widths() {
        let mut t = MachineTimes::default();
        assert_eq!(t.eigh_seconds(1000), None);
        t.eigh.insert("1000".into(), 0.1);
        t.eigh.insert("2000".into(), 0.8);
        assert!((t.eigh_seconds(1000).unwrap() - 0.1).abs() < 1e-12);
        assert!((t.eigh_seconds(2000).unwrap() - 0.8).abs() < 1e-12);
        assert!((t.eigh_seconds(4000).unwrap() - 6.4).abs() < 1e-9);
        // A noisy measurement cannot make the exponent absurd.
        t.eigh.insert("2000".into(), 0.1);
        assert!((t.eigh_seconds(2000).unwrap() - 0.1 * 2f64.powf(2.5)).abs() < 1e-12);
    }

    #[test]
    fn forgetting_removes_this_machine_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("calibration.json");
        let times = |commit: &str| MachineTimes {
            commit: commit.into(),
            ..MachineTimes::default()
        };
        let file = CacheFile {
            version: CACHE_VERSION,
            machines: BTreeMap::from([("here".into(), times("a")), ("there".into(), times("b"))]),
        };
        std::fs::write(&path, serde_json::to_string(&file).unwrap()).unwrap();
        let calibration = |machine: &str, cache: Option<PathBuf>| Calibration {
            machine: machine.into(),
            times: times("a"),
            measured_seconds: 0.0,
            cache,
        };
        assert!(calibration("here", Some(path.clone())).forget().unwrap());
        let left: CacheFile =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(left.machines.keys().collect::<Vec<_>>(), ["there"]);
        assert_eq!(left.machines["there"], times("b"));
        // Nothing (more) to remove: no entry, no file, no cache folder.
        assert!(!calibration("here", Some(path.clone())).forget().unwrap());
        assert!(
            !calibration("here", Some(dir.path().join("none.json")))
                .forget()
                .unwrap()
        );
        assert!(!calibration("here", None).forget().unwrap());
    }
}
