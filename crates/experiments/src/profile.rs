//! Profiles (`configs/profiles/<name>.toml`): which configs a sweep runs, and the reductions
//! applied to them (fewer epochs, a training subset, a shorter ε grid, …).
//!
//! ```toml
//! description = "every code path in about a minute"
//! include = ["exp1/vanilla", "exp2/mlp-*"]   # `*` matches any rest of the name
//! [overrides.all.train]                      # merged into every included config
//! epochs = 1
//! [overrides.cnn.train]                      # then by experiment, then by network
//! train_subset = 500
//! ```
//!
//! Overrides are merged in the order `all`, `exp1`/`exp2`/`exp3`, `shallow`/`mlp`/`cnn`,
//! key by key, before the config is parsed, so a misspelt override key is reported like a
//! misspelt config key.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::config::{Config, Experiment, merge_tables};
use crate::error::ConfigError;

/// Override tables, merged in field order.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Overrides {
    /// Applied to every config.
    #[serde(default)]
    pub all: Option<toml::Table>,
    /// Experiment 1 configs.
    #[serde(default)]
    pub exp1: Option<toml::Table>,
    /// Experiment 2 configs.
    #[serde(default)]
    pub exp2: Option<toml::Table>,
    /// Experiment 3 configs.
    #[serde(default)]
    pub exp3: Option<toml::Table>,
    /// Configs of the shallow network.
    #[serde(default)]
    pub shallow: Option<toml::Table>,
    /// Configs of the MLP.
    #[serde(default)]
    pub mlp: Option<toml::Table>,
    /// Configs of the CNN.
    #[serde(default)]
    pub cnn: Option<toml::Table>,
}

/// A parsed profile.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    /// What the profile is for, in one line.
    #[serde(default)]
    pub description: String,
    /// Patterns over `<experiment>/<variant>`; `*` matches any rest of the name.
    pub include: Vec<String>,
    /// Reductions.
    #[serde(default)]
    pub overrides: Overrides,
    /// The profile's name (file stem).
    #[serde(skip)]
    pub name: String,
}

impl Profile {
    /// The full protocol: every config as written.
    pub fn paper() -> Profile {
        Profile {
            description: "the full protocol: every config as written".into(),
            include: vec!["*".into()],
            overrides: Overrides::default(),
            name: "paper".into(),
        }
    }

    /// Loads `name_or_path`: a file path, or a name looked up as
    /// `<configs>/profiles/<name>.toml`.
    ///
    /// # Errors
    /// [`ConfigError`] naming the file and key.
    pub fn load(name_or_path: &str, configs: &Path) -> Result<Profile, ConfigError> {
        let path = Profile::path(name_or_path, configs);
        let origin = path.display().to_string();
        if !path.exists() && !name_or_path.ends_with(".toml") {
            return Err(ConfigError::UnknownProfile {
                name: name_or_path.to_string(),
                path: origin,
            });
        }
        let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::Io {
            path: origin.clone(),
            source,
        })?;
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        Profile::from_toml_str(&text, &origin, &name)
    }

    /// The file of the profile `name_or_path` ([`Profile::load`]): the path itself when it
    /// names a `.toml` file or an existing file, else `<configs>/profiles/<name>.toml`.
    pub fn path(name_or_path: &str, configs: &Path) -> PathBuf {
        let direct = PathBuf::from(name_or_path);
        if direct.extension().is_some_and(|e| e == "toml") || direct.is_file() {
            direct
        } else {
            configs
                .join("profiles")
                .join(format!("{name_or_path}.toml"))
        }
    }

    /// The profile called `name` whose file text is `text`; `origin` names the file in
    /// errors.
    ///
    /// # Errors
    /// [`ConfigError::Syntax`] for invalid TOML, [`ConfigError::Invalid`] naming the key
    /// for an unknown key or a value of the wrong type.
    pub fn from_toml_str(text: &str, origin: &str, name: &str) -> Result<Profile, ConfigError> {
        let table: toml::Table =
            text.parse()
                .map_err(|e: toml::de::Error| ConfigError::Syntax {
                    origin: origin.to_string(),
                    message: e.to_string(),
                })?;
        let mut profile: Profile = serde_path_to_error::deserialize(toml::Value::Table(table))
            .map_err(|e| {
                crate::config::one_line_error(ConfigError::Invalid {
                    origin: origin.to_string(),
                    key: e.path().to_string(),
                    message: e.into_inner().to_string(),
                })
            })?;
        profile.name = name.to_string();
        Ok(profile)
    }

    /// Whether `<experiment>/<variant>` is included.
    pub fn includes(&self, id: &str) -> bool {
        self.include.iter().any(|p| pattern_matches(p, id))
    }

    /// The override tables for a config whose raw table is `raw`, in merge order (`all`,
    /// the experiment's, the network's; later ones win), each with the name of its
    /// `[overrides.<name>]` table.
    pub fn labelled_overrides_for(&self, raw: &toml::Table) -> Vec<(&'static str, &toml::Table)> {
        let exp = raw
            .get("experiment")
            .and_then(|v| v.as_str())
            .and_then(Experiment::parse);
        let model = raw
            .get("model")
            .and_then(|m| m.get("kind"))
            .and_then(|k| k.as_str());
        let o = &self.overrides;
        let by_exp = match exp {
            Some(Experiment::Exp1) => ("exp1", &o.exp1),
            Some(Experiment::Exp2) => ("exp2", &o.exp2),
            Some(Experiment::Exp3) => ("exp3", &o.exp3),
            None => ("", &None),
        };
        let by_model = match model {
            Some("shallow") => ("shallow", &o.shallow),
            Some("mlp") => ("mlp", &o.mlp),
            Some("cnn") => ("cnn", &o.cnn),
            _ => ("", &None),
        };
        [("all", &o.all), by_exp, by_model]
            .into_iter()
            .filter_map(|(label, t)| t.as_ref().map(|t| (label, t)))
            .collect()
    }

    fn overrides_for(&self, raw: &toml::Table) -> Vec<toml::Table> {
        self.labelled_overrides_for(raw)
            .into_iter()
            .map(|(_, t)| t.clone())
            .collect()
    }

    /// Loads the config at `path` with this profile's overrides applied.
    ///
    /// # Errors
    /// As [`Config::load_with`].
    pub fn load_config(&self, path: &Path) -> Result<Config, ConfigError> {
        self.config_from_table(Config::read_table(path)?, path)
    }

    /// The config of the table `raw` read from `path` (see [`Config::read_table`]), with this
    /// profile's overrides applied.
    ///
    /// # Errors
    /// As [`Config::from_table`].
    pub fn config_from_table(
        &self,
        mut raw: toml::Table,
        path: &Path,
    ) -> Result<Config, ConfigError> {
        for o in self.overrides_for(&raw) {
            merge_tables(&mut raw, &o);
        }
        Config::from_table(raw, &path.display().to_string())
    }
}

/// `*` matches any (possibly empty) run of characters; everything else literally.
fn pattern_matches(pattern: &str, text: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == text,
        Some((head, tail)) => {
            let Some(rest) = text.strip_prefix(head) else {
                return false;
            };
            (0..=rest.len())
                .filter(|&i| rest.is_char_boundary(i))
                .any(|i| pattern_matches(tail, &rest[i..]))
        }
    }
}

/// Every `*.toml` below `dir` except `dir/profiles/`, sorted by path.
///
/// # Errors
/// [`ConfigError::Io`] if a folder cannot be read.
pub fn config_files(dir: &Path) -> Result<Vec<PathBuf>, ConfigError> {
    fn walk(dir: &Path, root: &Path, out: &mut Vec<PathBuf>) -> Result<(), ConfigError> {
        let entries = std::fs::read_dir(dir).map_err(|source| ConfigError::Io {
            path: dir.display().to_string(),
            source,
        })?;
        for entry in entries {
            let path = entry
                .map_err(|source| ConfigError::Io {
                    path: dir.display().to_string(),
                    source,
                })?
                .path();
            if path.is_dir() {
                if path != root.join("profiles") {
                    walk(&path, root, out)?;
                }
            } else if path.extension().is_some_and(|e| e == "toml") {
                out.push(path);
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out)?;
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns() {
        assert!(pattern_matches("*", "exp1/vanilla"));
        assert!(pattern_matches("exp2/mlp-*", "exp2/mlp-vanilla"));
        assert!(!pattern_matches("exp2/mlp-*", "exp2/cnn-vanilla"));
        assert!(pattern_matches("exp*/cnn-*-b2", "exp3/cnn-specreg-all-b2"));
        assert!(!pattern_matches("exp1/vanilla", "exp1/vanilla2"));
    }
}
