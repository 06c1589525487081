//! The TOML config file shared by every subcommand. Every key is optional;
//! flags override the file. See `weft.example.toml` at the repository root.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::Deserialize;
use weft_ingest::NormalizerConfig;
use weft_query::QueryOptions;
use weft_storage::SegmentOptions;

/// Default data directory, relative to where weft runs.
pub(crate) const DEFAULT_DATA_DIR: &str = "./weft-data";

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct Config {
    /// The data directory (`--data` overrides).
    pub(crate) data_dir: Option<PathBuf>,
    pub(crate) normalizer: NormalizerConfig,
    pub(crate) segments: SegmentOptions,
    pub(crate) import: ImportConfig,
    pub(crate) query: QueryOptions,
}

#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct ImportConfig {
    /// Longest line accepted, in bytes; longer lines are rejected.
    pub(crate) max_line_bytes: usize,
    /// A worker writes segments when it holds this many rows.
    pub(crate) flush_rows: usize,
    /// …or this many bytes of input.
    pub(crate) flush_bytes: u64,
}

impl Default for ImportConfig {
    fn default() -> Self {
        Self {
            max_line_bytes: weft_scan::lines::DEFAULT_MAX_LINE,
            flush_rows: 1_000_000,
            flush_bytes: 256 << 20,
        }
    }
}

impl Config {
    pub(crate) fn load(path: Option<&Path>) -> Result<Self> {
        let Some(path) = path else {
            return Ok(Self::default());
        };
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config {}", path.display()))?;
        toml::from_str(&text).with_context(|| format!("invalid config {}", path.display()))
    }

    /// `--data`, else the file's `data_dir`, else the default.
    pub(crate) fn data_dir(&self, flag: Option<PathBuf>) -> PathBuf {
        flag.or_else(|| self.data_dir.clone())
            .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_config_parses_and_overrides_aliases() {
        let text = include_str!("../../../weft.example.toml");
        let c: Config = toml::from_str(text).unwrap();
        assert_eq!(c.data_dir.as_deref(), Some(Path::new("./weft-data")));
        assert!(
            c.normalizer
                .aliases
                .correlation_id
                .contains(&"x_trace".to_string())
        );
        assert_eq!(c.segments.zstd_level, 3);
    }

    #[test]
    fn unknown_keys_are_errors() {
        let e = toml::from_str::<Config>("[normalizer]\nmax_feilds = 3\n").unwrap_err();
        assert!(e.to_string().contains("max_feilds"), "{e}");
    }
}
