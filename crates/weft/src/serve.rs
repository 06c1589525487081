//! `weft serve`: the HTTP daemon. For now the read side: SQL, traces and
//! saved queries over the data directory; shippers' ingest endpoints arrive
//! with the WAL (issue #4), until then `weft import` writes the data.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result, anyhow, bail};
use clap::Args;
use weft_query::{Engine, saved};
use weft_server::{AppState, router};

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
    /// Most rows in one JSON answer.
    #[arg(long, default_value_t = 10_000)]
    max_rows: usize,
}

pub(crate) fn cmd_serve(cfg: Config, args: ServeArgs) -> Result<ExitCode> {
    let listen = args
        .listen
        .unwrap_or_else(|| DEFAULT_LISTEN.parse().expect("valid default"));
    // No authentication exists yet: never expose the data beyond this machine.
    if !listen.ip().is_loopback() {
        bail!(
            "refusing to listen on {listen}: authentication is not available yet, so weft serves loopback addresses only"
        );
    }
    let dir = cfg.data_dir(args.data);
    std::fs::create_dir_all(&dir)
        .with_context(|| format!("cannot create data directory {}", dir.display()))?;
    let engine = Engine::open(&dir, cfg.query.clone()).map_err(|e| anyhow!(e))?;
    let saved = saved::load(cfg.query.queries_dir.as_deref()).map_err(|e| anyhow!(e))?;
    let state = Arc::new(AppState::new(engine, saved, args.max_rows));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("cannot listen on {listen}"))?;
        let addr = listener.local_addr()?;
        eprintln!("weft serve");
        eprintln!("  data dir : {}", dir.display());
        eprintln!("  listening: http://{addr}  (loopback only; auth off)");
        eprintln!("  endpoints: POST /v1/query, GET /v1/trace/{{id}}, GET /v1/queries, POST /v1/queries/{{name}}, /healthz, /readyz, /metrics");
        eprintln!("  ingest   : not served yet; load data with `weft import`");
        axum::serve(listener, router(state))
            .with_graceful_shutdown(shutdown())
            .await
            .context("server failed")?;
        eprintln!("weft serve: stopped");
        Ok::<_, anyhow::Error>(())
    })?;
    Ok(ExitCode::SUCCESS)
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown() {
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
