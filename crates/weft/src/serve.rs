//! `weft serve`: the daemon. Opens the data directory as its one writer,
//! starts listening at once (so `/healthz` and `/readyz` answer while the
//! WAL is replayed), replays, then takes writes.
//!
//! SIGTERM or SIGINT: stop accepting, finish the requests in flight, flush
//! the buffer into segments and exit. A second signal exits at once; that
//! loses nothing acknowledged, because every acknowledged batch is in the
//! fsynced WAL and is replayed at the next start.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result, anyhow, bail};
use clap::Args;
use weft_query::{Engine, saved};
use weft_server::{AppState, DEFAULT_TENANT, Tenant, router};
use weft_storage::store::Store;

use crate::config::{Config, TlsConfig};

/// Default listen address: loopback only.
pub(crate) const DEFAULT_LISTEN: &str = "127.0.0.1:7878";

#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// Data directory [default: ./weft-data, created if missing].
    #[arg(long)]
    data: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:7878].
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Most rows in one JSON answer [default: 10000].
    #[arg(long)]
    max_rows: Option<usize>,
    /// Log format: text or json.
    #[arg(long)]
    log_format: Option<String>,
    /// Serve HTTPS: PEM certificate chain (with --tls-key).
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// Serve HTTPS: PEM private key (with --tls-cert).
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
}

pub(crate) fn cmd_serve(cfg: Config, args: ServeArgs) -> Result<ExitCode> {
    limit_malloc_arenas();
    let listen = args
        .listen
        .or(cfg.serve.listen)
        .unwrap_or_else(|| DEFAULT_LISTEN.parse().expect("valid default"));
    let log_format = args
        .log_format
        .or(cfg.serve.log_format.clone())
        .unwrap_or_else(|| "text".into());
    init_logging(&log_format)?;
    cfg.auth
        .validate()
        .map_err(|e| anyhow!("invalid [auth] config: {e}"))?;
    let auth_on = cfg.auth.enabled();
    // Without tokens anyone who reaches the port reads everything: never
    // expose that beyond this machine.
    if !auth_on && !listen.ip().is_loopback() {
        bail!(
            "refusing to listen on {listen}: auth is off (no [auth] tokens configured), so weft serves loopback addresses only; create tokens with `weft token create`"
        );
    }
    let tls = match (args.tls_cert, args.tls_key) {
        (Some(cert), Some(key)) => Some(TlsConfig { cert, key }),
        _ => cfg.serve.tls.clone(),
    };
    let tls = tls
        .map(|t| weft_server::tls::server_config(&t.cert, &t.key))
        .transpose()
        .map_err(|e| anyhow!(e))?;
    if auth_on && tls.is_none() && !listen.ip().is_loopback() {
        tracing::warn!(
            %listen,
            "tokens will cross the network in clear text: serve HTTPS with --tls-cert and --tls-key"
        );
    }
    let dir = cfg.data_dir(args.data);
    let open = |path: &std::path::Path| -> Result<(Arc<Store>, Engine)> {
        let store = Store::open(
            path,
            cfg.segments.clone(),
            cfg.normalizer.clone(),
            cfg.serve.store.clone(),
        )
        .with_context(|| format!("cannot open data directory {}", path.display()))?;
        let engine = Engine::over(Arc::clone(store.data()), cfg.query.clone());
        Ok((store, engine))
    };
    let (store, engine) = open(&dir)?;
    let saved = saved::load(cfg.query.queries_dir.as_deref()).map_err(|e| anyhow!(e))?;
    let max_rows = args.max_rows.or(cfg.serve.max_rows).unwrap_or(10_000);
    let mut state = AppState::new(engine, saved, max_rows)
        .with_store(Arc::clone(&store), cfg.serve.limits.clone())
        .with_auth(cfg.auth.clone());
    // Every tenant a token names has its own directory, store and engine.
    let mut stores = vec![(DEFAULT_TENANT.to_owned(), Arc::clone(&store))];
    let tenant_ids: std::collections::BTreeSet<&str> =
        cfg.auth.tokens.iter().map(|t| t.tenant.as_str()).collect();
    for id in tenant_ids.into_iter().filter(|t| *t != DEFAULT_TENANT) {
        let (store, engine) = open(&tenant_dir(&dir, id))?;
        stores.push((id.to_owned(), Arc::clone(&store)));
        state = state.with_tenant(
            id,
            Tenant {
                engine,
                store: Some(store),
            },
        );
    }
    let state = Arc::new(state);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    let serve_stores = stores.clone();
    let token_count = cfg.auth.tokens.len();
    let tenant_list = stores
        .iter()
        .map(|(t, _)| t.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("cannot listen on {listen}"))?;
        let addr = listener.local_addr()?;
        let scheme = if tls.is_some() { "https" } else { "http" };
        eprintln!("weft serve");
        eprintln!("  data dir : {}", dir.display());
        if auth_on {
            eprintln!(
                "  listening: {scheme}://{addr}  (auth on: {} token(s), tenants: {})",
                token_count, tenant_list
            );
        } else {
            eprintln!(
                "  listening: {scheme}://{addr}  (auth off: no tokens configured, loopback only)"
            );
        }
        eprintln!("  ingest   : POST /v1/ingest (NDJSON; gzip/zstd), acknowledged after WAL fsync");
        eprintln!("  query    : POST /v1/query, GET /v1/trace/{{id}}, GET /v1/queries, POST /v1/queries/{{name}}");
        eprintln!("  health   : /healthz, /readyz (503 until the WAL is replayed), /metrics");
        for (tenant, store) in serve_stores {
            tokio::task::spawn_blocking(move || replay(&tenant, &store));
        }
        let app = router(state);
        match tls {
            Some(config) => {
                let listener = weft_server::tls::TlsListener::new(listener, config)?;
                axum::serve(listener, app)
                    .with_graceful_shutdown(first_signal())
                    .await
            }
            None => {
                axum::serve(listener, app)
                    .with_graceful_shutdown(first_signal())
                    .await
            }
        }
        .context("server failed")?;
        Ok::<_, anyhow::Error>(())
    })?;
    // The second signal ends the process at once; the WAL holds what was acknowledged.
    std::thread::spawn(|| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("signal runtime");
        rt.block_on(first_signal());
        eprintln!("weft serve: second signal, exiting now (the WAL keeps acknowledged data)");
        std::process::exit(130);
    });
    tracing::info!("stopping: flushing the write buffers");
    let mut code = ExitCode::SUCCESS;
    for (tenant, store) in &stores {
        match store.shutdown() {
            Ok(Some(r)) => tracing::info!(
                tenant,
                rows = r.rows,
                segments = r.segments.len(),
                "flushed; stopped"
            ),
            Ok(None) => tracing::info!(tenant, "nothing to flush; stopped"),
            Err(e) => {
                tracing::error!(tenant, error = %e, "final flush failed; the WAL keeps the data for the next start");
                code = ExitCode::from(1);
            }
        }
    }
    Ok(code)
}

/// Where tenant `id`'s data lives (`default` is the data directory itself).
pub(crate) fn tenant_dir(root: &std::path::Path, id: &str) -> PathBuf {
    if id == DEFAULT_TENANT {
        root.to_path_buf()
    } else {
        root.join("tenants").join(id)
    }
}

/// Replays one tenant's WAL, then starts its flusher.
fn replay(tenant: &str, store: &Arc<Store>) {
    match store.replay() {
        Ok(r) => {
            for (file, copy, reason) in &r.quarantined {
                tracing::error!(tenant, file = %file.display(), copy = %copy.display(), reason, "WAL corruption quarantined");
            }
            tracing::info!(
                tenant,
                wal_files = r.wal_files,
                replayed = r.replayed,
                skipped = r.skipped,
                rows = r.rows,
                truncated_bytes = r.truncated_bytes,
                elapsed_ms = r.elapsed_ms,
                "WAL replayed; ready"
            );
            store.on_flushed(release_freed_memory);
            store.start_flusher();
        }
        Err(e) => tracing::error!(tenant, error = %e, "WAL replay failed; writes stay refused"),
    }
}

/// Caps glibc's malloc arenas at two before any thread starts. By default
/// glibc gives busy threads (the runtime's workers, the blocking pool, the
/// commit and flush threads) arenas of their own, up to 8 per core, and each
/// keeps what it freed: on the ingest benchmark, two arenas took peak RSS
/// from a mean of 1178 MB to 872 MB for about 9% of closed-loop throughput
/// (benches/README.md, "Malloc arenas"). `MALLOC_ARENA_MAX` in the
/// environment still wins.
fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: mallopt takes two integers and changes only malloc's own
        // tuning; it is called before this process starts any thread.
        #[allow(unsafe_code)]
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, 2);
        }
    }
}

/// Hands the memory malloc holds free back to the system. Run after each
/// flush part: the part's batches and the flush's working set were just
/// freed, and glibc otherwise keeps much of it. On the ingest benchmark at
/// twice the sustainable load, peak RSS was 405 and 405 MB with it
/// against 417 to 473 MB in four runs without (benches/README.md).
fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim takes an integer and only returns free memory
    // malloc holds to the system; it is safe to call from any thread.
    #[allow(unsafe_code)]
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Logs to stderr as text or JSON lines; `RUST_LOG` filters (default info).
fn init_logging(format: &str) -> Result<()> {
    use std::io::IsTerminal;
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour only for a person at a terminal, not in files or journals.
        .with_ansi(std::io::stderr().is_terminal());
    match format {
        "json" => builder.json().try_init(),
        "text" => builder.try_init(),
        other => bail!("unknown log format {other:?}: use text or json"),
    }
    .map_err(|e| anyhow!("cannot set up logging: {e}"))
}

/// Resolves on SIGINT or SIGTERM.
async fn first_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}
