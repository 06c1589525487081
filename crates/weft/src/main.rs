//! The `weft` binary: parses the command line and wires the library crates
//! together. No logic of its own beyond that.

mod config;
mod import;
mod query;
mod serve;
mod token;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Args, Parser, Subcommand};
use weft_ingest::Defaults;

use crate::config::Config;

#[derive(Debug, Parser)]
#[command(
    name = "weft",
    version,
    about = "Structured-log ingestion and query engine"
)]
struct Cli {
    /// TOML config file (see weft.example.toml).
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the daemon: HTTP ingest (WAL, fsync before ack), SQL, traces and saved queries.
    Serve(serve::ServeArgs),
    /// Import NDJSON files (plain, gzip or zstd) into a data directory, offline.
    Import(ImportArgs),
    /// Run one read-only SQL statement over a data directory, offline.
    Query(query::QueryArgs),
    /// Show one request across every service, by correlation id, offline.
    Trace(query::TraceArgs),
    /// List saved queries, or run one with parameters.
    Queries(query::QueriesArgs),
    /// Make API tokens (roles ingest, query, admin; one tenant each).
    Token(token::TokenArgs),
}

#[derive(Debug, Args)]
struct ImportArgs {
    /// Files to import; `-` reads standard input.
    #[arg(required = true)]
    inputs: Vec<String>,
    /// Data directory [default: ./weft-data].
    #[arg(long)]
    data: Option<PathBuf>,
    /// Exit with status 1 when any line was rejected (rejected lines are still kept in `rejects`).
    #[arg(long)]
    strict: bool,
    /// `service` for records that name none.
    #[arg(long)]
    service: Option<String>,
    /// `host` for records that name none.
    #[arg(long)]
    host: Option<String>,
    /// Worker threads [default: one per core].
    #[arg(long)]
    threads: Option<usize>,
    /// Print the summary as JSON on stdout.
    #[arg(long)]
    json: bool,
    /// No progress bar.
    #[arg(long, short)]
    quiet: bool,
}

fn cmd_import(cfg: Config, args: ImportArgs) -> Result<ExitCode> {
    let threads = args.threads.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    });
    let opts = import::ImportOptions {
        data: cfg.data_dir(args.data),
        inputs: args.inputs,
        normalizer: cfg.normalizer,
        segments: cfg.segments,
        defaults: Defaults {
            service: args.service,
            host: args.host,
        },
        max_line: cfg.import.max_line_bytes,
        block_size: weft_scan::lines::DEFAULT_BLOCK_SIZE,
        flush_rows: cfg.import.flush_rows,
        flush_bytes: cfg.import.flush_bytes,
        threads,
        progress: !args.quiet && !args.json,
    };
    let summary = import::run(&opts)?;
    if args.json {
        println!("{}", serde_json::to_string(&summary)?);
    } else {
        print!("{}", import::render(&summary));
    }
    if args.strict && summary.rejected > 0 {
        eprintln!(
            "weft: {} line(s) rejected and --strict is set",
            summary.rejected
        );
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = cli.config.clone();
    // `weft token create` may make the config file.
    let missing_ok =
        matches!(cli.command, Command::Token(_)) && config.as_deref().is_some_and(|p| !p.exists());
    let result = Config::load(config.as_deref().filter(|_| !missing_ok))
        .and_then(|mut cfg| {
            cfg.apply_env(|k| std::env::var(k).ok())?;
            Ok(cfg)
        })
        .and_then(|cfg| match cli.command {
            Command::Serve(args) => serve::cmd_serve(cfg, args),
            Command::Import(args) => cmd_import(cfg, args),
            Command::Query(args) => query::cmd_query(cfg, args),
            Command::Trace(args) => query::cmd_trace(cfg, args),
            Command::Queries(args) => query::cmd_queries(cfg, args),
            Command::Token(args) => token::cmd_token(config.as_deref(), cfg, args),
        });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("weft: {e:#}");
            ExitCode::from(2)
        }
    }
}
