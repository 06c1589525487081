//! The TOML config file shared by every subcommand. Every key is optional.
//! Precedence: flags, then `WEFT_*` environment variables, then the file,
//! then the defaults. See `weft.example.toml` at the repository root.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::Deserialize;
use weft_ingest::NormalizerConfig;
use weft_query::QueryOptions;
use weft_server::IngestLimits;
use weft_storage::SegmentOptions;
use weft_storage::store::StoreOptions;

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
    pub(crate) serve: ServeConfig,
    /// `[auth]`: tokens; none means auth off (loopback only).
    pub(crate) auth: weft_server::AuthConfig,
}

/// `[serve]`: the daemon.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct ServeConfig {
    /// Listen address (`--listen`, `WEFT_LISTEN`) [default: 127.0.0.1:7878].
    pub(crate) listen: Option<SocketAddr>,
    /// Most rows in one JSON query answer [default: 10000].
    pub(crate) max_rows: Option<usize>,
    /// `text` or `json` (`--log-format`, `WEFT_LOG_FORMAT`) [default: text].
    pub(crate) log_format: Option<String>,
    /// `[serve.store]`: WAL, write buffer and flushing.
    pub(crate) store: StoreOptions,
    /// `[serve.limits]`: request body and in-flight limits.
    pub(crate) limits: IngestLimits,
    /// `[serve.tls]`: serve HTTPS with this certificate and key.
    pub(crate) tls: Option<TlsConfig>,
}

/// `[serve.tls]`: PEM files (`--tls-cert`, `--tls-key`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TlsConfig {
    /// Certificate chain, leaf first.
    pub(crate) cert: PathBuf,
    /// The leaf's private key (PKCS#8, PKCS#1 or SEC1).
    pub(crate) key: PathBuf,
}

/// The environment variables read, and what they set.
pub(crate) const ENV_VARS: &[(&str, &str)] = &[
    ("WEFT_DATA_DIR", "data_dir"),
    ("WEFT_LISTEN", "serve.listen"),
    ("WEFT_LOG_FORMAT", "serve.log_format"),
    ("WEFT_MAX_BODY_BYTES", "serve.limits.max_body_bytes"),
    ("WEFT_MAX_BUFFER_BYTES", "serve.store.max_buffer_bytes"),
    ("WEFT_MAX_RESIDENT_BYTES", "serve.store.max_resident_bytes"),
    ("WEFT_FLUSH_AGE_SECS", "serve.store.flush_age_secs"),
];

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

    /// Applies `WEFT_*` overrides from `env` (the process environment in
    /// `main`; a map in tests).
    pub(crate) fn apply_env(&mut self, env: impl Fn(&str) -> Option<String>) -> Result<()> {
        fn parse<T: std::str::FromStr>(var: &str, v: &str) -> Result<T>
        where
            T::Err: std::fmt::Display,
        {
            v.trim()
                .parse()
                .map_err(|e| anyhow::anyhow!("{var}={v:?}: {e}"))
        }
        for (var, _) in ENV_VARS {
            let Some(v) = env(var) else { continue };
            match *var {
                "WEFT_DATA_DIR" => self.data_dir = Some(PathBuf::from(v)),
                "WEFT_LISTEN" => self.serve.listen = Some(parse(var, &v)?),
                "WEFT_LOG_FORMAT" => self.serve.log_format = Some(v),
                "WEFT_MAX_BODY_BYTES" => self.serve.limits.max_body_bytes = parse(var, &v)?,
                "WEFT_MAX_BUFFER_BYTES" => self.serve.store.max_buffer_bytes = parse(var, &v)?,
                "WEFT_MAX_RESIDENT_BYTES" => {
                    self.serve.store.max_resident_bytes = parse(var, &v)?;
                }
                "WEFT_FLUSH_AGE_SECS" => self.serve.store.flush_age_secs = parse(var, &v)?,
                _ => unreachable!("every ENV_VARS entry is handled"),
            }
        }
        Ok(())
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
        // The example spells out the defaults.
        let d = Config::default();
        assert_eq!(
            c.serve.listen,
            Some(crate::serve::DEFAULT_LISTEN.parse().unwrap())
        );
        assert_eq!(
            serde_json::to_value(&c.serve.store).unwrap(),
            serde_json::to_value(&d.serve.store).unwrap()
        );
        assert_eq!(
            serde_json::to_value(&c.serve.limits).unwrap(),
            serde_json::to_value(&d.serve.limits).unwrap()
        );
    }

    #[test]
    fn environment_overrides_the_file() {
        let mut c: Config = toml::from_str(
            "[serve]\nlisten = \"127.0.0.1:1\"\n[serve.limits]\nmax_body_bytes = 5\n",
        )
        .unwrap();
        assert_eq!(c.serve.limits.max_body_bytes, 5);
        let env = |k: &str| match k {
            "WEFT_LISTEN" => Some("127.0.0.1:9".to_owned()),
            "WEFT_MAX_BODY_BYTES" => Some("77".to_owned()),
            "WEFT_MAX_RESIDENT_BYTES" => Some("1000000".to_owned()),
            _ => None,
        };
        c.apply_env(env).unwrap();
        assert_eq!(c.serve.listen, Some("127.0.0.1:9".parse().unwrap()));
        assert_eq!(c.serve.limits.max_body_bytes, 77);
        assert_eq!(c.serve.store.max_resident_bytes, 1_000_000);
        let bad = |k: &str| (k == "WEFT_MAX_BODY_BYTES").then(|| "lots".to_owned());
        let e = c.apply_env(bad).unwrap_err().to_string();
        assert!(e.contains("WEFT_MAX_BODY_BYTES"), "{e}");
    }

    #[test]
    fn the_commented_auth_and_tls_examples_parse() {
        let text = include_str!("../../../weft.example.toml");
        // Uncomment the [serve.tls] and [[auth.tokens]] examples.
        let tail = &text[text.find("# [serve.tls]").unwrap()..];
        let live: String = tail
            .lines()
            .filter_map(|l| l.strip_prefix("# "))
            .filter(|l| l.starts_with('[') || l.contains(" = "))
            .map(|l| l.replace("<64 hex digits>", &"ab".repeat(32)) + "\n")
            .collect();
        let c: Config = toml::from_str(&live).unwrap();
        assert_eq!(c.serve.tls.unwrap().key, PathBuf::from("/etc/weft/key.pem"));
        assert_eq!(c.auth.tokens.len(), 1);
        c.auth.validate().unwrap();
    }

    #[test]
    fn unknown_keys_are_errors() {
        let e = toml::from_str::<Config>("[normalizer]\nmax_feilds = 3\n").unwrap_err();
        assert!(e.to_string().contains("max_feilds"), "{e}");
    }
}
