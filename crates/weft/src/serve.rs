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
use weft_server::{AppState, router};
use weft_storage::store::Store;

use crate::config::Config;

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
}

pub(crate) fn cmd_serve(cfg: Config, args: ServeArgs) -> Result<ExitCode> {
    let listen = args
        .listen
        .or(cfg.serve.listen)
        .unwrap_or_else(|| DEFAULT_LISTEN.parse().expect("valid default"));
    let log_format = args
        .log_format
        .or(cfg.serve.log_format.clone())
        .unwrap_or_else(|| "text".into());
    init_logging(&log_format)?;
    // No authentication exists yet: never expose the data beyond this machine.
    if !listen.ip().is_loopback() {
        bail!(
            "refusing to listen on {listen}: authentication is not available yet, so weft serves loopback addresses only"
        );
    }
    let dir = cfg.data_dir(args.data);
    let store = Store::open(
        &dir,
        cfg.segments.clone(),
        cfg.normalizer.clone(),
        cfg.serve.store.clone(),
    )
    .with_context(|| format!("cannot open data directory {}", dir.display()))?;
    let engine = Engine::over(Arc::clone(store.data()), cfg.query.clone());
    let saved = saved::load(cfg.query.queries_dir.as_deref()).map_err(|e| anyhow!(e))?;
    let max_rows = args.max_rows.or(cfg.serve.max_rows).unwrap_or(10_000);
    let state = Arc::new(
        AppState::new(engine, saved, max_rows)
            .with_store(Arc::clone(&store), cfg.serve.limits.clone()),
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    let serve_store = Arc::clone(&store);
    rt.block_on(async move {
        let store = serve_store;
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("cannot listen on {listen}"))?;
        let addr = listener.local_addr()?;
        eprintln!("weft serve");
        eprintln!("  data dir : {}", dir.display());
        eprintln!("  listening: http://{addr}  (loopback only; auth off)");
        eprintln!("  ingest   : POST /v1/ingest (NDJSON; gzip/zstd), acknowledged after WAL fsync");
        eprintln!("  query    : POST /v1/query, GET /v1/trace/{{id}}, GET /v1/queries, POST /v1/queries/{{name}}");
        eprintln!("  health   : /healthz, /readyz (503 until the WAL is replayed), /metrics");
        let replay_store = Arc::clone(&store);
        tokio::task::spawn_blocking(move || match replay_store.replay() {
            Ok(r) => {
                for (file, copy, reason) in &r.quarantined {
                    tracing::error!(file = %file.display(), copy = %copy.display(), reason, "WAL corruption quarantined");
                }
                tracing::info!(
                    wal_files = r.wal_files,
                    replayed = r.replayed,
                    skipped = r.skipped,
                    rows = r.rows,
                    truncated_bytes = r.truncated_bytes,
                    elapsed_ms = r.elapsed_ms,
                    "WAL replayed; ready"
                );
                replay_store.start_flusher();
            }
            Err(e) => tracing::error!(error = %e, "WAL replay failed; writes stay refused"),
        });
        axum::serve(listener, router(state))
            .with_graceful_shutdown(first_signal())
            .await
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
    tracing::info!("stopping: flushing the write buffer");
    match store.shutdown() {
        Ok(Some(r)) => tracing::info!(
            rows = r.rows,
            segments = r.segments.len(),
            "flushed; stopped"
        ),
        Ok(None) => tracing::info!("nothing to flush; stopped"),
        Err(e) => {
            tracing::error!(error = %e, "final flush failed; the WAL keeps the data for the next start");
            return Ok(ExitCode::from(1));
        }
    }
    Ok(ExitCode::SUCCESS)
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
