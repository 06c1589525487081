//! `weft token create`: makes an API token, prints it once, and appends
//! only its hash (with its id, role and tenant) to the config file the
//! daemon is started with.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result, anyhow, bail};
use clap::{Args, Subcommand};
use weft_server::{AuthConfig, Role};

use crate::config::Config;

#[derive(Debug, Args)]
pub(crate) struct TokenArgs {
    #[command(subcommand)]
    command: TokenCommand,
}

#[derive(Debug, Subcommand)]
enum TokenCommand {
    /// Make a token; it is printed once and only its hash is kept in --config.
    Create {
        /// ingest (write endpoints), query (read endpoints) or admin (all, plus the audit table).
        #[arg(long)]
        role: Role,
        /// The tenant whose data the token reaches.
        #[arg(long, default_value = weft_server::DEFAULT_TENANT)]
        tenant: String,
    },
    /// List the configured tokens (ids, roles, tenants; never secrets).
    List,
}

pub(crate) fn cmd_token(config: Option<&Path>, cfg: Config, args: TokenArgs) -> Result<ExitCode> {
    match args.command {
        TokenCommand::Create { role, tenant } => {
            let Some(path) = config else {
                bail!(
                    "weft token create needs --config FILE: the config the daemon is started with, where the token's hash is kept"
                );
            };
            let token = create(path, role, &tenant)?;
            println!("{token}");
            eprintln!(
                "weft: token for tenant {tenant:?} with role {} added to {}; it is shown only this once. Restart weft serve to use it.",
                role.as_str(),
                path.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        TokenCommand::List => {
            for t in &cfg.auth.tokens {
                println!(
                    "{}  {:<6}  {}  {}",
                    t.id,
                    t.role.as_str(),
                    t.tenant,
                    t.created.as_deref().unwrap_or("-")
                );
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Appends a new token's entry to the config at `path` (created when
/// missing) and returns the token. The file is rewritten whole through a
/// temporary file, and only when the result still parses. Concurrent
/// `create`s (of this process or others) take turns on a lock file beside
/// the config, `.NAME.lock`, so that none loses another's entry.
pub(crate) fn create(path: &Path, role: Role, tenant: &str) -> Result<String> {
    // The file itself (a symlinked config is replaced at its target) and
    // its directory, which holds the lock file and the new file.
    let real = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let dir = real
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = real.file_name().context("the config path names no file")?;
    let lock_path = dir.join(format!(".{}.lock", name.to_string_lossy()));
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .with_context(|| format!("cannot open {}", lock_path.display()))?;
    lock.lock()
        .with_context(|| format!("cannot lock {}", lock_path.display()))?;
    let old = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    let mut now = String::new();
    weft_ingest::time::format_rfc3339(weft_storage::now_nanos(), &mut now);
    let (token, entry) = AuthConfig::create(role, tenant, now).map_err(|e| anyhow!(e))?;
    let mut text = old;
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    text.push_str(&format!(
        "\n[[auth.tokens]]\nid = \"{}\"\nhash = \"{}\"\nrole = \"{}\"\ntenant = \"{}\"\ncreated = \"{}\"\n",
        entry.id,
        entry.hash,
        entry.role.as_str(),
        entry.tenant,
        entry.created.as_deref().unwrap_or_default()
    ));
    let parsed: Config = toml::from_str(&text).with_context(|| {
        format!(
            "{} would not parse with the new [[auth.tokens]] entry (an [auth] table written inline?); nothing was changed",
            path.display()
        )
    })?;
    parsed
        .auth
        .validate()
        .map_err(|e| anyhow!("{}: {e}; nothing was changed", path.display()))?;
    // Through a new file beside the real one, with the original's permissions.
    let mut tmp = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("cannot write beside {}", real.display()))?;
    tmp.write_all(text.as_bytes())?;
    if let Ok(meta) = std::fs::metadata(&real) {
        tmp.as_file().set_permissions(meta.permissions())?;
    }
    tmp.as_file().sync_all()?;
    tmp.persist(&real)
        .map_err(|e| anyhow!("cannot replace {}: {}", real.display(), e.error))?;
    std::fs::File::open(dir).and_then(|d| d.sync_all())?;
    drop(lock);
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_appends_the_hash_and_keeps_the_rest_of_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("weft.toml");
        std::fs::write(&path, "# mine\n[serve]\nmax_rows = 5\n").unwrap();
        let a = create(&path, Role::Query, "acme").unwrap();
        let b = create(&path, Role::Admin, "default").unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.starts_with("# mine\n[serve]\nmax_rows = 5\n"),
            "{text}"
        );
        assert!(
            !text.contains(&a) && !text.contains(&b),
            "no token in the file"
        );
        let cfg: Config = toml::from_str(&text).unwrap();
        assert_eq!(cfg.serve.max_rows, Some(5));
        assert_eq!(cfg.auth.tokens.len(), 2);
        let caller = cfg.auth.check(Some(&format!("Bearer {a}"))).unwrap();
        assert_eq!((caller.tenant.as_str(), caller.role), ("acme", Role::Query));
        let caller = cfg.auth.check(Some(&format!("Bearer {b}"))).unwrap();
        assert_eq!(caller.role, Role::Admin);
    }

    #[test]
    fn tokens_created_at_once_are_all_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("weft.toml");
        std::fs::write(&path, "# mine\n").unwrap();
        let tokens: Vec<String> = std::thread::scope(|s| {
            let workers: Vec<_> = (0..8)
                .map(|_| {
                    s.spawn(|| {
                        (0..5)
                            .map(|_| create(&path, Role::Ingest, "acme").unwrap())
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            workers
                .into_iter()
                .flat_map(|w| w.join().unwrap())
                .collect()
        });
        let cfg: Config = toml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(cfg.auth.tokens.len(), 40);
        for token in &tokens {
            assert!(cfg.auth.check(Some(&format!("Bearer {token}"))).is_ok());
        }
    }

    #[test]
    fn a_bad_tenant_or_an_inline_auth_table_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("weft.toml");
        assert!(create(&path, Role::Query, "../up").is_err());
        assert!(!path.exists());
        std::fs::write(&path, "auth = { tokens = [] }\n").unwrap();
        let e = create(&path, Role::Query, "acme").unwrap_err().to_string();
        assert!(e.contains("nothing was changed"), "{e}");
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "auth = { tokens = [] }\n"
        );
    }
}
