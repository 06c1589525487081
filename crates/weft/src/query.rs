//! `weft query`, `weft trace` and `weft queries`: the read side, offline.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, anyhow};
use clap::{Args, Subcommand};
use weft_query::audit::Entry;
use weft_query::format::{self, Format};
use weft_query::{Engine, QueryOutput, saved, trace};

use crate::config::Config;

#[derive(Debug, Args)]
pub(crate) struct QueryArgs {
    /// The SQL statement (read-only: SELECT, EXPLAIN, SHOW, DESCRIBE).
    sql: String,
    /// Data directory [default: ./weft-data].
    #[arg(long)]
    data: Option<PathBuf>,
    /// Output format: table, json, ndjson or csv.
    #[arg(long, default_value = "table")]
    format: Format,
    /// Most rows in the json format (the rest is cut, `truncated: true`).
    #[arg(long, default_value_t = 10_000)]
    max_rows: usize,
    /// Bind a `$name` parameter (repeatable): --param name=value. Values are text.
    #[arg(long = "param", value_parser = parse_kv)]
    params: Vec<(String, String)>,
    /// Audit trail directory [default: DATA/audit].
    #[arg(long)]
    audit_dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub(crate) struct TraceArgs {
    /// The correlation id (trace id, request id, …).
    id: String,
    /// Data directory [default: ./weft-data].
    #[arg(long)]
    data: Option<PathBuf>,
    /// Print the whole answer as JSON.
    #[arg(long)]
    json: bool,
    /// Also show N lines around each of the request's lines, from the same service and host.
    #[arg(long, default_value_t = 0)]
    context: usize,
    /// Audit trail directory [default: DATA/audit].
    #[arg(long)]
    audit_dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub(crate) struct QueriesArgs {
    #[command(subcommand)]
    command: Option<QueriesCommand>,
}

#[derive(Debug, Subcommand)]
enum QueriesCommand {
    /// List saved queries and their parameters (the default).
    List {
        /// As JSON.
        #[arg(long)]
        json: bool,
    },
    /// Run a saved query.
    Run {
        name: String,
        /// Data directory [default: ./weft-data].
        #[arg(long)]
        data: Option<PathBuf>,
        /// A parameter: --param name=value (repeatable).
        #[arg(long = "param", value_parser = parse_kv)]
        params: Vec<(String, String)>,
        /// Output format: table, json, ndjson or csv.
        #[arg(long, default_value = "table")]
        format: Format,
        /// Most rows in the json format.
        #[arg(long, default_value_t = 10_000)]
        max_rows: usize,
        /// Audit trail directory [default: DATA/audit].
        #[arg(long)]
        audit_dir: Option<PathBuf>,
    },
}

fn parse_kv(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.trim().to_owned(), v.to_owned()))
        .ok_or_else(|| format!("expected name=value, got {s:?}"))
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the query runtime")
}

/// The engine over the data directory, recording in `audit_dir` when given.
fn engine(cfg: &Config, data: Option<PathBuf>, audit_dir: Option<PathBuf>) -> Result<Engine> {
    let dir = cfg.data_dir(data);
    let engine = Engine::open(&dir, cfg.query.clone()).map_err(|e| anyhow!(e))?;
    Ok(match audit_dir {
        Some(a) => engine.with_audit_dir(a),
        None => engine,
    })
}

/// The audit entry of a CLI lookup: the OS user stands where a token would.
fn entry(command: &str, statement: &str, params: &[(String, String)]) -> Entry {
    let user = std::env::var("USER").unwrap_or_else(|_| "unknown".into());
    Entry {
        token_id: Some(format!("cli:{user}")),
        tenant: None,
        endpoint: format!("cli {command}"),
        statement: Some(statement.to_owned()),
        params: (!params.is_empty()).then(|| {
            serde_json::Value::Object(
                params
                    .iter()
                    .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
                    .collect(),
            )
        }),
    }
}

/// Prints a query error for the user; 1 for their mistake, 2 otherwise.
fn fail(e: weft_query::Error) -> ExitCode {
    eprintln!("weft: {e}");
    if e.is_client_error() {
        ExitCode::from(1)
    } else {
        ExitCode::from(2)
    }
}

fn print_output(out: &QueryOutput, fmt: Format, max_rows: usize) -> Result<()> {
    match fmt {
        Format::Table => print!("{}", format::table(out)?),
        Format::Json => println!("{}", format::json_document(out, max_rows)),
        Format::Csv => print!("{}", format::csv(out)?),
        Format::Ndjson => {
            let mut s = String::new();
            for b in &out.batches {
                format::ndjson_rows(&out.schema, b, &mut s);
            }
            print!("{s}");
        }
    }
    Ok(())
}

pub(crate) fn cmd_query(cfg: Config, args: QueryArgs) -> Result<ExitCode> {
    let engine = engine(&cfg, args.data, args.audit_dir)?;
    let entry = entry("query", &args.sql, &args.params);
    let params = args
        .params
        .into_iter()
        .map(|(k, v)| (k, datafusion_utf8(v)))
        .collect();
    match runtime()?.block_on(engine.sql_audited(entry, &args.sql, params)) {
        Ok(out) => {
            print_output(&out, args.format, args.max_rows)?;
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => Ok(fail(e)),
    }
}

fn datafusion_utf8(v: String) -> weft_query::ScalarValue {
    weft_query::ScalarValue::Utf8(Some(v))
}

pub(crate) fn cmd_trace(cfg: Config, args: TraceArgs) -> Result<ExitCode> {
    let engine = engine(&cfg, args.data, args.audit_dir)?;
    let context = [("context".to_owned(), args.context.to_string())];
    let shown = if args.context > 0 { &context[..] } else { &[] };
    let entry = entry("trace", &args.id, shown);
    match runtime()?.block_on(engine.trace_audited(entry, &args.id, args.context)) {
        Ok(t) => {
            if args.json {
                println!("{}", serde_json::to_string_pretty(&t)?);
            } else {
                print!("{}", trace::render(&t));
            }
            Ok(if t.lines.is_empty() {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            })
        }
        Err(e) => Ok(fail(e)),
    }
}

pub(crate) fn cmd_queries(cfg: Config, args: QueriesArgs) -> Result<ExitCode> {
    let all = saved::load(cfg.query.queries_dir.as_deref()).map_err(|e| anyhow!(e))?;
    match args.command.unwrap_or(QueriesCommand::List { json: false }) {
        QueriesCommand::List { json } => {
            if json {
                let list: Vec<_> = all.values().collect();
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else {
                for q in all.values() {
                    println!("{}  {}", q.name, q.purpose);
                    for p in &q.params {
                        let default = p
                            .default
                            .as_ref()
                            .map(|d| format!(" = {d}"))
                            .unwrap_or_else(|| " (required)".into());
                        println!("    ${} {:?}{}  {}", p.name, p.ty, default, p.description);
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        QueriesCommand::Run {
            name,
            data,
            params,
            format: fmt,
            max_rows,
            audit_dir,
        } => {
            let Some(q) = all.get(&name) else {
                return Ok(fail(weft_query::Error::UnknownQuery(name)));
            };
            let entry = entry(&format!("queries run {name}"), &q.sql, &params);
            let given: HashMap<String, String> = params.into_iter().collect();
            let bound = match saved::bind_all(q, &given, weft_storage::now_nanos()) {
                Ok(b) => b,
                Err(e) => return Ok(fail(e)),
            };
            let engine = engine(&cfg, data, audit_dir)?;
            match runtime()?.block_on(engine.sql_audited(entry, &q.sql, bound)) {
                Ok(out) => {
                    print_output(&out, fmt, max_rows)?;
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => Ok(fail(e)),
            }
        }
    }
}
