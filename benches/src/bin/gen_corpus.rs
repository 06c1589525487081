//! `gen-corpus`: deterministic generator of a realistic NDJSON log corpus.
//!
//! The corpus interleaves simulated *requests* that cross 2–6 services, each service logging in
//! its own house style (zap, pino, structlog, logback, tracing, nginx, OpenTelemetry), with
//! *background* lines that carry no correlation ID. `benches/CORPUS.md` documents the format and
//! the ground-truth file written by `--truth`.
//!
//! Design: a small discrete-event simulation. Request starts and background lines are Poisson
//! arrivals on a simulated clock. When a request starts, all of its lines are scheduled at once
//! into a min-heap keyed by *emission* time (the line's instant plus an occasional shipping
//! delay), and lines are popped and formatted in that order, so the output is in time order
//! except for a little realistic jitter. Every random choice comes from one seeded splitmix64
//! stream consumed in a fixed order, so a given `--seed` and `--bytes` always produce the same
//! bytes.
//!
//! Lines are formatted by hand into reused `String`s (no serde on the hot path) and written
//! through a large `BufWriter`.

use std::cmp::{Ordering, Reverse};
use std::collections::{BinaryHeap, HashSet};
use std::fmt::Write as _;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Parser;

/// `write!` into a `String`; formatting into a `String` cannot fail.
macro_rules! w {
    ($dst:expr, $($arg:tt)*) => {{
        let _ = write!($dst, $($arg)*);
    }};
}

#[derive(Debug, Parser)]
#[command(
    name = "gen-corpus",
    about = "Generate a deterministic, realistic NDJSON log corpus (see benches/CORPUS.md)"
)]
struct Args {
    /// Output NDJSON file.
    #[arg(long)]
    out: PathBuf,
    /// Approximate output size. Accepts `_` separators and suffixes: K/M/G/T (powers of 1024,
    /// also KiB/MiB/...) or KB/MB/GB/TB (powers of 1000). New requests stop once this many bytes
    /// are written and open ones are finished, so the file slightly overshoots.
    #[arg(long, default_value = "100_000_000", value_parser = parse_bytes)]
    bytes: u64,
    /// PRNG seed; the same seed and size give a byte-identical corpus.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Write ground truth for sampled requests to this NDJSON file.
    #[arg(long)]
    truth: Option<PathBuf>,
    /// Sample every K-th request (by start order, starting with the first) into the truth file.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..))]
    truth_every: u64,
}

fn parse_bytes(s: &str) -> Result<u64, String> {
    let t = s.trim().replace('_', "");
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, suffix) = t.split_at(split);
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("invalid size {s:?}: expected digits with an optional suffix"))?;
    let mult: u64 = match suffix.to_ascii_uppercase().as_str() {
        "" | "B" => 1,
        "K" | "KIB" => 1 << 10,
        "M" | "MIB" => 1 << 20,
        "G" | "GIB" => 1 << 30,
        "T" | "TIB" => 1 << 40,
        "KB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        "TB" => 1_000_000_000_000,
        _ => return Err(format!("invalid size suffix {suffix:?} in {s:?}")),
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("size {s:?} overflows u64"))
}

// ---------------------------------------------------------------------------------------------
// Simulation parameters
// ---------------------------------------------------------------------------------------------

const NS_PER_SEC: u64 = 1_000_000_000;
/// Simulated clock start: 2023-11-14T22:13:20Z.
const START_NS: u64 = 1_700_000_000 * NS_PER_SEC;
/// Target overall line rate on the simulated clock.
const LINES_PER_SEC: f64 = 20_000.0;
/// Share of lines that belong to no request.
const BACKGROUND_SHARE: f64 = 0.15;
/// Mean lines per request; `3 + floor(28 u²)` has mean ≈ 11.8, plus a little from the
/// one-line-per-service minimum.
const MEAN_LINES_PER_REQUEST: f64 = 12.0;
const MIN_REQUEST_NS: u64 = 5_000_000;
const MAX_REQUEST_NS: u64 = 3 * NS_PER_SEC;
/// Probability that a line is shipped late, and the maximum lateness. This is the only source of
/// out-of-order emission (besides timestamp truncation to a style's precision).
const LATE_P: f64 = 0.08;
const MAX_LATE_NS: u64 = 40_000_000;
/// Probability that a message gets a unicode / escape-heavy fragment appended.
const SPICE_P: f64 = 0.025;

// ---------------------------------------------------------------------------------------------
// PRNG
// ---------------------------------------------------------------------------------------------

/// splitmix64: tiny, fast and plenty good for synthetic data.
struct Rng {
    state: u64,
}

fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Rng {
    fn new(seed: u64) -> Self {
        Rng { state: seed }
    }

    fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix64(self.state)
    }

    /// Uniform in `0..n` (multiply-shift; the bias is far below anything observable here).
    fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// Uniform in `lo..=hi`.
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }

    /// Uniform in `[0, 1)`.
    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize]
    }

    /// Exponentially distributed gap (Poisson arrivals), at least 1 ns.
    fn exp_ns(&mut self, mean_ns: f64) -> u64 {
        (-mean_ns * (1.0 - self.unit()).ln()) as u64 + 1
    }
}

// ---------------------------------------------------------------------------------------------
// Services, levels, request flows
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Svc {
    Nginx,
    Cart,
    Checkout,
    Payments,
    Billing,
    Orders,
    Inventory,
}

impl Svc {
    const ALL: [Svc; 7] = [
        Svc::Nginx,
        Svc::Cart,
        Svc::Checkout,
        Svc::Payments,
        Svc::Billing,
        Svc::Orders,
        Svc::Inventory,
    ];

    fn name(self) -> &'static str {
        match self {
            Svc::Nginx => "edge-nginx",
            Svc::Cart => "cart-node",
            Svc::Checkout => "checkout-go",
            Svc::Payments => "payments-otel",
            Svc::Billing => "billing-py",
            Svc::Orders => "orders-java",
            Svc::Inventory => "inventory-rs",
        }
    }

    /// Resolution of the timestamp this service writes, in ns. The instant recorded in the
    /// truth file is the simulated instant truncated to this, i.e. exactly what the line says.
    fn tick_ns(self) -> u64 {
        match self {
            Svc::Nginx => NS_PER_SEC,
            Svc::Cart | Svc::Payments | Svc::Orders => 1_000_000,
            Svc::Checkout | Svc::Billing => 1_000,
            Svc::Inventory => 1,
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Level {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
    Fatal,
}

impl Level {
    fn zap(self) -> &'static str {
        match self {
            Level::Trace | Level::Debug => "debug",
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error | Level::Fatal => "error",
        }
    }

    fn pino(self) -> u64 {
        match self {
            Level::Trace => 10,
            Level::Debug => 20,
            Level::Info => 30,
            Level::Warn => 40,
            Level::Error => 50,
            Level::Fatal => 60,
        }
    }

    fn structlog(self) -> &'static str {
        match self {
            Level::Trace | Level::Debug => "debug",
            Level::Info => "info",
            Level::Warn => "warning",
            Level::Error => "error",
            Level::Fatal => "critical",
        }
    }

    fn logback(self) -> (&'static str, u32) {
        match self {
            Level::Trace => ("TRACE", 5_000),
            Level::Debug => ("DEBUG", 10_000),
            Level::Info => ("INFO", 20_000),
            Level::Warn => ("WARN", 30_000),
            Level::Error | Level::Fatal => ("ERROR", 40_000),
        }
    }

    fn tracing(self) -> &'static str {
        match self {
            Level::Trace => "TRACE",
            Level::Debug => "DEBUG",
            Level::Info => "INFO",
            Level::Warn => "WARN",
            Level::Error | Level::Fatal => "ERROR",
        }
    }

    fn otel(self) -> (&'static str, u32) {
        match self {
            Level::Trace => ("TRACE", 1),
            Level::Debug => ("DEBUG", 5),
            Level::Info => ("INFO", 9),
            Level::Warn => ("WARN", 13),
            Level::Error => ("ERROR", 17),
            Level::Fatal => ("FATAL", 21),
        }
    }
}

/// Level of a background line: mostly info/debug, rarely error, very rarely fatal.
fn background_level(rng: &mut Rng) -> Level {
    match rng.below(10_000) {
        0..2_500 => Level::Debug,
        2_500..9_000 => Level::Info,
        9_000..9_800 => Level::Warn,
        9_800..9_995 => Level::Error,
        _ => Level::Fatal,
    }
}

/// The kind of user-visible operation a request performs; decides its call chain and path.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Flow {
    ViewCart,
    AddItem,
    Checkout,
    OrderStatus,
    Webhook,
    /// Internal job, no edge.
    Reconcile,
    /// Internal job, no edge.
    Restock,
}

impl Flow {
    fn pick(rng: &mut Rng) -> Flow {
        match rng.below(100) {
            0..30 => Flow::ViewCart,
            30..50 => Flow::AddItem,
            50..65 => Flow::Checkout,
            65..80 => Flow::OrderStatus,
            80..88 => Flow::Webhook,
            88..94 => Flow::Reconcile,
            _ => Flow::Restock,
        }
    }

    /// Call chain, caller first.
    fn chain(self) -> &'static [Svc] {
        use Svc::*;
        match self {
            Flow::ViewCart => &[Nginx, Cart, Inventory],
            Flow::AddItem => &[Nginx, Cart, Inventory, Checkout],
            Flow::Checkout => &[Nginx, Checkout, Cart, Inventory, Payments, Orders],
            Flow::OrderStatus => &[Nginx, Orders, Billing],
            Flow::Webhook => &[Nginx, Payments, Billing, Orders],
            Flow::Reconcile => &[Billing, Payments],
            Flow::Restock => &[Orders, Inventory],
        }
    }

    fn method(self) -> &'static str {
        match self {
            Flow::ViewCart | Flow::OrderStatus => "GET",
            _ => "POST",
        }
    }

    fn ok_status(self) -> u16 {
        match self {
            Flow::AddItem | Flow::Checkout => 201,
            Flow::Webhook => 202,
            _ => 200,
        }
    }

    /// Name of the innermost `tracing` span in inventory-rs.
    fn leaf_span(self) -> &'static str {
        match self {
            Flow::AddItem | Flow::Checkout => "reserve",
            Flow::Restock => "restock",
            _ => "lookup",
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Outcome {
    Ok,
    /// The service at `depth` rejects the request; it and its callers report `status`.
    ClientError {
        depth: usize,
        status: u16,
    },
    /// The service at `depth` fails with an error; its callers log warnings and report 502/504.
    ServerError {
        depth: usize,
    },
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Phase {
    Start,
    Mid,
    End,
}

struct Request {
    id: u128,
    flow: Flow,
    /// Call chain, caller first.
    services: Vec<Svc>,
    /// Per chain position: `[start, end]` of that service's part of the request (ns).
    windows: Vec<(u64, u64)>,
    outcome: Outcome,
    /// Lines not yet emitted.
    remaining: u32,
    path: String,
    cart_id: u64,
    order_id: u64,
    user_id: u64,
    sku: u64,
    qty: u64,
    items: u64,
    amount_cents: u64,
    currency: &'static str,
    provider: &'static str,
    client_ip: [u8; 4],
    user_agent: &'static str,
    /// `(instant as written, line number)` of every emitted line, if sampled into the truth.
    truth: Option<Vec<(u64, u64)>>,
}

impl Request {
    fn status(&self, depth: usize) -> u16 {
        match self.outcome {
            Outcome::ServerError { depth: f } if depth == f => 500,
            Outcome::ServerError { depth: f } if depth < f => {
                let (s, e) = self.windows[0];
                if e - s > 2 * NS_PER_SEC { 504 } else { 502 }
            }
            Outcome::ClientError { depth: r, status } if depth <= r => status,
            _ => self.flow.ok_status(),
        }
    }
}

/// Per-line view of a request, handed to the style formatters.
#[derive(Clone, Copy)]
struct ReqCtx<'a> {
    req: &'a Request,
    depth: usize,
    phase: Phase,
    level: Level,
}

impl ReqCtx<'_> {
    fn elapsed_ns(&self) -> u64 {
        let (s, e) = self.req.windows[self.depth];
        e - s
    }

    /// Stable per (request, service) span id; also picks hosts/threads deterministically.
    fn span_id(&self) -> u64 {
        let id = self.req.id;
        mix64(id as u64 ^ mix64((id >> 64) as u64 ^ self.depth as u64)).max(1)
    }

    fn status(&self) -> u16 {
        self.req.status(self.depth)
    }

    /// The service this one calls next, for "calling X" style messages.
    fn downstream(&self) -> &'static str {
        self.req
            .services
            .get(self.depth + 1)
            .map_or("postgres", |s| s.name())
    }
}

fn request_level(rng: &mut Rng, req: &Request, depth: usize, phase: Phase) -> Level {
    match phase {
        Phase::End => match req.outcome {
            Outcome::ServerError { depth: f } if depth == f => Level::Error,
            Outcome::ServerError { depth: f } if depth < f => Level::Warn,
            Outcome::ClientError { depth: r, .. } if depth == r => Level::Warn,
            _ => Level::Info,
        },
        Phase::Start => {
            if rng.chance(0.2) {
                Level::Debug
            } else {
                Level::Info
            }
        }
        Phase::Mid => match rng.below(1000) {
            0..20 => Level::Trace,
            20..470 => Level::Debug,
            470..920 => Level::Info,
            920..990 => Level::Warn,
            _ => Level::Error,
        },
    }
}

// ---------------------------------------------------------------------------------------------
// Low-level formatting helpers
// ---------------------------------------------------------------------------------------------

const HEX: &[u8; 16] = b"0123456789abcdef";

fn push_hex(out: &mut String, v: u128, digits: u32) {
    for i in (0..digits).rev() {
        out.push(HEX[((v >> (i * 4)) & 0xf) as usize] as char);
    }
}

/// Decimal `v`, zero-padded to at least `width` digits.
fn push_padded(out: &mut String, mut v: u64, width: usize) {
    let mut buf = [b'0'; 20];
    let mut i = buf.len();
    while v > 0 || buf.len() - i < width {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
    }
    for &b in &buf[i..] {
        out.push(b as char);
    }
}

fn push_u64(out: &mut String, v: u64) {
    push_padded(out, v, 1);
}

/// Fixed-point number `scaled / 10^decimals`, trailing fractional zeros trimmed down to
/// `min_frac` digits (`min_frac = 0` prints `12` for 12.0, like Go's shortest float format).
fn push_decimal(out: &mut String, scaled: u64, decimals: u32, min_frac: u32) {
    let p = 10u64.pow(decimals);
    push_u64(out, scaled / p);
    let mut frac = scaled % p;
    let mut digits = decimals;
    while digits > min_frac && frac.is_multiple_of(10) {
        frac /= 10;
        digits -= 1;
    }
    if digits > 0 {
        out.push('.');
        push_padded(out, frac, digits as usize);
    }
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar
/// (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u64, u64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u64;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u64;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// `YYYY-MM-DDTHH:MM:SS[.fff…]` for `ns` since the epoch, truncated to `frac_digits`; the caller
/// appends the zone suffix.
fn push_rfc3339(out: &mut String, ns: u64, frac_digits: u32) {
    let secs = ns / NS_PER_SEC;
    let (y, m, d) = civil_from_days((secs / 86_400) as i64);
    let sod = secs % 86_400;
    push_padded(out, y as u64, 4);
    out.push('-');
    push_padded(out, m, 2);
    out.push('-');
    push_padded(out, d, 2);
    out.push('T');
    push_padded(out, sod / 3_600, 2);
    out.push(':');
    push_padded(out, sod / 60 % 60, 2);
    out.push(':');
    push_padded(out, sod % 60, 2);
    if frac_digits > 0 {
        out.push('.');
        let frac = (ns % NS_PER_SEC) / 10u64.pow(9 - frac_digits);
        push_padded(out, frac, frac_digits as usize);
    }
}

/// A JSON string literal. With `ascii_only`, every non-ASCII char becomes `\uXXXX` (surrogate
/// pairs above the BMP), like Python's `json.dumps` default.
fn push_json_str(out: &mut String, s: &str, ascii_only: bool) {
    out.push('"');
    let mut start = 0;
    if ascii_only {
        for (i, c) in s.char_indices() {
            if c.is_ascii() && c >= ' ' && c != '"' && c != '\\' {
                continue;
            }
            out.push_str(&s[start..i]);
            push_escape(out, c);
            start = i + c.len_utf8();
        }
    } else {
        // Everything that needs escaping is ASCII, so byte positions are char boundaries.
        for (i, b) in s.bytes().enumerate() {
            if b >= 0x20 && b != b'"' && b != b'\\' {
                continue;
            }
            out.push_str(&s[start..i]);
            push_escape(out, b as char);
            start = i + 1;
        }
    }
    out.push_str(&s[start..]);
    out.push('"');
}

fn push_escape(out: &mut String, c: char) {
    match c {
        '"' => out.push_str("\\\""),
        '\\' => out.push_str("\\\\"),
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        _ => {
            let mut units = [0u16; 2];
            for &u in c.encode_utf16(&mut units).iter() {
                out.push_str("\\u");
                push_hex(out, u128::from(u), 4);
            }
        }
    }
}

fn push_ip(out: &mut String, ip: [u8; 4]) {
    for (i, octet) in ip.iter().enumerate() {
        if i > 0 {
            out.push('.');
        }
        push_u64(out, u64::from(*octet));
    }
}

/// Fragments appended to a small share of messages: non-ASCII text (accents, CJK, emoji incl.
/// surrogate-pair code points, a combining mark) and characters JSON must escape.
const SPICE: &[&str] = &[
    " customer=\"Zoë Ångström\"",
    " merchant=\"Café Zürich\"",
    " product=\"日本語の本\"",
    " tag=🛒",
    " file=C:\\exports\\orders.csv",
    "\n\tcaused by: connection reset by peer",
    " note=\"déjà vu ✓\"",
    " header=\"a\tb\"",
    " reaction=😀👍🏽",
    " city=\"São Paulo\" name=\"Rene\u{301}e\"",
];

fn spice(rng: &mut Rng, msg: &mut String) {
    if rng.chance(SPICE_P) {
        msg.push_str(rng.pick(SPICE));
    }
}

/// Reused buffers. `msg` holds the unescaped message, `aux` a JSON fragment of optional fields
/// (each starting with a comma), `tmp` scratch text such as stack traces.
#[derive(Default)]
struct Fmt {
    line: String,
    msg: String,
    aux: String,
    tmp: String,
}

// ---------------------------------------------------------------------------------------------
// House styles. Each function renders one complete line (without newline) into `f.line`.
// `rc` is `None` for background lines, which carry no correlation ID.
// ---------------------------------------------------------------------------------------------

fn render(rng: &mut Rng, f: &mut Fmt, svc: Svc, t: u64, rc: Option<ReqCtx<'_>>) {
    f.line.clear();
    f.msg.clear();
    f.aux.clear();
    f.tmp.clear();
    match svc {
        Svc::Checkout => zap_line(rng, f, t, rc),
        Svc::Cart => pino_line(rng, f, t, rc),
        Svc::Billing => structlog_line(rng, f, t, rc),
        Svc::Orders => logback_line(rng, f, t, rc),
        Svc::Inventory => tracing_line(rng, f, t, rc),
        Svc::Nginx => nginx_line(rng, f, t, rc),
        Svc::Payments => otel_line(rng, f, t, rc),
    }
}

const GO_STACK: &str = "github.com/shop/checkout/handler.(*Handler).Checkout\n\t/app/handler/checkout.go:131\n\
net/http.HandlerFunc.ServeHTTP\n\t/usr/local/go/src/net/http/server.go:2136\n\
net/http.serverHandler.ServeHTTP\n\t/usr/local/go/src/net/http/server.go:2938";

/// checkout-go: uber-go/zap production JSON.
fn zap_line(rng: &mut Rng, f: &mut Fmt, t: u64, rc: Option<ReqCtx<'_>>) {
    let Fmt { line, msg, aux, .. } = f;
    let (level, caller) = match rc {
        None => {
            let level = background_level(rng);
            let caller = match (level, rng.below(4)) {
                (Level::Warn, _) => {
                    msg.push_str("db pool saturated");
                    w!(
                        aux,
                        ",\"open\":40,\"idle\":0,\"wait_count\":{}",
                        rng.range(5, 80)
                    );
                    "db/pool.go:131"
                }
                (Level::Error | Level::Fatal, _) => {
                    msg.push_str("consumer group rebalance failed");
                    aux.push_str(
                        ",\"error\":\"kafka: client has run out of available brokers to talk to\"",
                    );
                    "kafka/consumer.go:240"
                }
                (_, 0) => {
                    msg.push_str("db pool stats");
                    w!(
                        aux,
                        ",\"open\":{},\"idle\":{},\"wait_count\":{}",
                        rng.range(4, 40),
                        rng.below(10),
                        rng.below(3)
                    );
                    "db/pool.go:112"
                }
                (_, 1) => {
                    msg.push_str("feature flags refreshed");
                    w!(
                        aux,
                        ",\"flags\":{},\"source\":\"consul\"",
                        rng.range(20, 60)
                    );
                    "config/flags.go:57"
                }
                (_, 2) => {
                    msg.push_str("consumer lag");
                    w!(
                        aux,
                        ",\"topic\":\"orders.events\",\"partition\":{},\"lag\":{}",
                        rng.below(12),
                        rng.below(500)
                    );
                    "kafka/consumer.go:203"
                }
                _ => {
                    msg.push_str("idle connections closed");
                    w!(aux, ",\"closed\":{}", rng.range(1, 30));
                    "server/server.go:88"
                }
            };
            (level, caller)
        }
        Some(rc) => {
            let r = rc.req;
            let caller = match (rc.phase, rc.level) {
                (Phase::Start, _) => {
                    msg.push_str(if r.flow == Flow::Checkout {
                        "checkout started"
                    } else {
                        "price preview requested"
                    });
                    w!(aux, ",\"user_id\":{},\"cart_id\":{}", r.user_id, r.cart_id);
                    "handler/checkout.go:54"
                }
                (Phase::Mid, Level::Warn) => {
                    msg.push_str("slow upstream response");
                    w!(
                        aux,
                        ",\"upstream\":\"{}\",\"elapsed_ms\":{}",
                        rc.downstream(),
                        rng.range(250, 2_500)
                    );
                    "client/http.go:77"
                }
                (Phase::Mid, Level::Error) => {
                    msg.push_str("retrying after transient error");
                    w!(
                        aux,
                        ",\"attempt\":{},\"error\":\"dial tcp 10.4.{}.{}:5432: i/o timeout\"",
                        rng.range(1, 3),
                        rng.below(8),
                        rng.range(2, 250)
                    );
                    "repo/retry.go:41"
                }
                (Phase::Mid, _) => match rng.below(4) {
                    0 => {
                        msg.push_str("cart loaded");
                        w!(aux, ",\"items\":{}", r.items);
                        "repo/cart.go:45"
                    }
                    1 => {
                        msg.push_str("price computed");
                        w!(
                            aux,
                            ",\"subtotal_cents\":{},\"currency\":\"{}\"",
                            r.amount_cents,
                            r.currency
                        );
                        "service/pricing.go:212"
                    }
                    2 => {
                        w!(msg, "calling {}", rc.downstream());
                        "client/http.go:52"
                    }
                    _ => {
                        msg.push_str("tax rules applied");
                        w!(
                            aux,
                            ",\"country\":\"{}\"",
                            rng.pick(&["DE", "FR", "CH", "US"])
                        );
                        "service/tax.go:67"
                    }
                },
                (Phase::End, level) => {
                    let ok = level == Level::Info;
                    msg.push_str(match (level, r.flow) {
                        (Level::Error, _) => "checkout failed",
                        (Level::Warn, _) => "request failed",
                        (_, Flow::Checkout) => "checkout completed",
                        _ => "price preview served",
                    });
                    if level == Level::Error {
                        aux.push_str(
                            ",\"error\":\"payments: rpc error: code = Unavailable desc = connection refused\"",
                        );
                    }
                    aux.push_str(",\"duration_ms\":");
                    push_decimal(aux, rc.elapsed_ns() / 1_000, 3, 0);
                    w!(aux, ",\"status\":{}", rc.status());
                    if level == Level::Error {
                        aux.push_str(",\"stacktrace\":");
                        push_json_str(aux, GO_STACK, false);
                    }
                    if ok {
                        "handler/checkout.go:131"
                    } else {
                        "handler/checkout.go:140"
                    }
                }
            };
            (rc.level, caller)
        }
    };
    spice(rng, msg);

    line.push_str("{\"level\":\"");
    line.push_str(level.zap());
    line.push_str("\",\"ts\":");
    push_decimal(line, t / 1_000, 6, 0);
    line.push_str(",\"caller\":\"");
    line.push_str(caller);
    line.push_str("\",\"msg\":");
    push_json_str(line, msg, false);
    if let Some(rc) = rc {
        line.push_str(",\"trace_id\":\"");
        push_hex(line, rc.req.id, 32);
        line.push_str("\",\"span_id\":\"");
        push_hex(line, u128::from(rc.span_id()), 16);
        line.push('"');
    }
    line.push_str(",\"service\":\"checkout-go\"");
    line.push_str(aux);
    line.push('}');
}

const NODE_PIDS: [u64; 4] = [4242, 3817, 5120, 2999];

/// cart-node: pino (with pino-http request/response objects).
fn pino_line(rng: &mut Rng, f: &mut Fmt, t: u64, rc: Option<ReqCtx<'_>>) {
    let Fmt {
        line,
        msg,
        aux,
        tmp,
    } = f;
    let host = match rc {
        Some(rc) => rc.span_id() % 4,
        None => rng.below(4),
    };
    let level = match rc {
        None => {
            let level = background_level(rng);
            match (level, rng.below(3)) {
                (Level::Warn, _) => {
                    msg.push_str("event loop lag high");
                    w!(aux, ",\"delayP99Ms\":{}", rng.range(100, 2_000));
                }
                (Level::Error, _) => {
                    msg.push_str("redis connection lost");
                    aux.push_str(
                        ",\"err\":{\"type\":\"Error\",\"message\":\"connect ECONNREFUSED 10.0.3.7:6379\",\"stack\":\"Error: connect ECONNREFUSED 10.0.3.7:6379\\n    at TCPConnectWrap.afterConnect [as oncomplete] (node:net:1555:16)\"}",
                    );
                }
                (Level::Fatal, _) => {
                    msg.push_str("uncaught exception, shutting down");
                    aux.push_str(
                        ",\"err\":{\"type\":\"TypeError\",\"message\":\"Cannot read properties of undefined (reading 'items')\",\"stack\":\"TypeError: Cannot read properties of undefined (reading 'items')\\n    at mergeCarts (/app/src/cart/merge.js:23:31)\"}",
                    );
                }
                (_, 0) => {
                    msg.push_str("event loop utilization");
                    w!(
                        aux,
                        ",\"elu\":0.{:02},\"delayP99Ms\":{}",
                        rng.range(1, 95),
                        rng.range(1, 40)
                    );
                }
                (_, 1) => {
                    msg.push_str("heap statistics");
                    w!(
                        aux,
                        ",\"heapUsedMb\":{},\"rssMb\":{}",
                        rng.range(60, 400),
                        rng.range(200, 700)
                    );
                }
                _ => {
                    msg.push_str("redis connection re-established");
                    w!(
                        aux,
                        ",\"attempt\":{},\"host\":\"redis-cart:6379\"",
                        rng.range(1, 5)
                    );
                }
            }
            level
        }
        Some(rc) => {
            let r = rc.req;
            match (rc.phase, rc.level) {
                (Phase::Start, _) => {
                    msg.push_str("incoming request");
                    aux.push_str(",\"req\":{\"method\":\"");
                    aux.push_str(r.flow.method());
                    aux.push_str("\",\"url\":");
                    push_json_str(aux, &r.path, false);
                    w!(
                        aux,
                        ",\"remoteAddress\":\"::ffff:10.0.1.{}\"}}",
                        rc.span_id() % 3 + 1
                    );
                }
                (Phase::Mid, Level::Warn) => {
                    msg.push_str("redis command slow");
                    w!(
                        aux,
                        ",\"command\":\"{}\",\"ms\":{}",
                        rng.pick(&["HGETALL", "EVALSHA", "HSET"]),
                        rng.range(50, 900)
                    );
                }
                (Phase::Mid, Level::Error) => {
                    w!(msg, "call to {} failed, retrying", rc.downstream());
                    w!(
                        aux,
                        ",\"attempt\":1,\"err\":{{\"type\":\"FetchError\",\"message\":\"request to http://{}:8080/ failed, reason: socket hang up\"}}",
                        rc.downstream()
                    );
                }
                (Phase::Mid, _) => match rng.below(4) {
                    0 => {
                        msg.push_str("cart loaded from redis");
                        w!(aux, ",\"cartId\":{},\"items\":{}", r.cart_id, r.items);
                    }
                    1 => {
                        msg.push_str("promo code applied");
                        w!(
                            aux,
                            ",\"code\":\"{}\",\"discountCents\":{}",
                            rng.pick(&["SPRING24", "WELCOME10", "FREESHIP"]),
                            rng.range(100, 2_000)
                        );
                    }
                    2 => {
                        msg.push_str("calling downstream");
                        w!(
                            aux,
                            ",\"url\":\"http://{}:8080/stock/SKU-{}\"",
                            rc.downstream(),
                            r.sku
                        );
                    }
                    _ => {
                        msg.push_str("cart total recalculated");
                        w!(aux, ",\"totalCents\":{}", r.amount_cents);
                    }
                },
                (Phase::End, level) => {
                    msg.push_str(if level == Level::Error {
                        "request errored"
                    } else {
                        "request completed"
                    });
                    w!(aux, ",\"res\":{{\"statusCode\":{}}}", rc.status());
                    if level == Level::Error {
                        w!(
                            tmp,
                            "Error: cart {} is locked by another session\n    at CartService.load (/app/src/cart/service.js:88:13)\n    at async CartController.get (/app/src/cart/controller.js:41:18)",
                            r.cart_id
                        );
                        aux.push_str(
                            ",\"err\":{\"type\":\"Error\",\"message\":\"cart is locked\",\"stack\":",
                        );
                        push_json_str(aux, tmp, false);
                        aux.push('}');
                    }
                    w!(aux, ",\"responseTime\":{}", rc.elapsed_ns() / 1_000_000);
                }
            }
            rc.level
        }
    };
    spice(rng, msg);

    line.push_str("{\"level\":");
    push_u64(line, level.pino());
    line.push_str(",\"time\":");
    push_u64(line, t / 1_000_000);
    line.push_str(",\"pid\":");
    push_u64(line, NODE_PIDS[host as usize]);
    line.push_str(",\"hostname\":\"node-");
    push_u64(line, host + 1);
    line.push('"');
    if let Some(rc) = rc {
        line.push_str(",\"reqId\":\"");
        push_hex(line, rc.req.id, 32);
        line.push('"');
    }
    line.push_str(",\"msg\":");
    push_json_str(line, msg, false);
    line.push_str(",\"name\":\"cart-node\"");
    line.push_str(aux);
    line.push('}');
}

const PY_TRACEBACK: &str = "Traceback (most recent call last):\n  \
File \"/app/billing/ledger.py\", line 88, in post\n    cur.execute(INSERT_ENTRY, row)\n  \
File \"/usr/local/lib/python3.12/site-packages/psycopg/cursor.py\", line 732, in execute\n    \
raise ex.with_traceback(None)\n\
psycopg.errors.SerializationFailure: could not serialize access due to concurrent update";

/// billing-py: structlog `JSONRenderer` (Python `json.dumps` defaults: `", "`/`": "`
/// separators and ASCII-only output).
fn structlog_line(rng: &mut Rng, f: &mut Fmt, t: u64, rc: Option<ReqCtx<'_>>) {
    let Fmt { line, msg, aux, .. } = f;
    let push_amount = |aux: &mut String, cents: u64, currency: &str| {
        aux.push_str(", \"amount\": ");
        push_decimal(aux, cents, 2, 1);
        w!(aux, ", \"currency\": \"{currency}\"");
    };
    let (level, logger) = match rc {
        None => {
            let level = background_level(rng);
            let logger = match (level, rng.below(3)) {
                (Level::Warn, _) => {
                    msg.push_str("fx rate provider slow");
                    w!(
                        aux,
                        ", \"elapsed_s\": {}.{:02}",
                        rng.range(5, 29),
                        rng.below(100)
                    );
                    "billing.fx"
                }
                (Level::Error | Level::Fatal, _) => {
                    msg.push_str("scheduled job failed");
                    w!(
                        aux,
                        ", \"job\": \"{}\"",
                        rng.pick(&["dunning", "invoice_export", "vat_report"])
                    );
                    "billing.scheduler"
                }
                (_, 0) => {
                    msg.push_str("scheduled job finished");
                    w!(
                        aux,
                        ", \"job\": \"{}\", \"duration_s\": {}.{:02}",
                        rng.pick(&["dunning", "invoice_export", "vat_report"]),
                        rng.below(30),
                        rng.below(100)
                    );
                    "billing.scheduler"
                }
                (_, 1) => {
                    msg.push_str("worker heartbeat");
                    w!(aux, ", \"active_tasks\": {}", rng.below(8));
                    "celery.worker"
                }
                _ => {
                    msg.push_str("fx rates refreshed");
                    w!(
                        aux,
                        ", \"rates\": {}, \"source\": \"ECB\"",
                        rng.range(28, 32)
                    );
                    "billing.fx"
                }
            };
            if level >= Level::Error {
                aux.push_str(", \"exception\": ");
                push_json_str(aux, PY_TRACEBACK, true);
            }
            (level, logger)
        }
        Some(rc) => {
            let r = rc.req;
            let logger = match (rc.phase, rc.level) {
                (Phase::Start, _) => {
                    match r.flow {
                        Flow::Webhook => {
                            msg.push_str("payment notification received");
                            w!(aux, ", \"provider\": \"{}\"", r.provider);
                        }
                        Flow::Reconcile => {
                            msg.push_str("reconciliation batch started");
                            w!(aux, ", \"batch_size\": {}", rng.range(50, 500));
                        }
                        _ => {
                            msg.push_str("invoice lookup");
                            w!(aux, ", \"order_id\": {}", r.order_id);
                        }
                    }
                    "billing.api"
                }
                (Phase::Mid, Level::Warn) => {
                    msg.push_str("fx rate stale, using cached value");
                    w!(
                        aux,
                        ", \"currency\": \"{}\", \"age_s\": {}",
                        r.currency,
                        rng.range(600, 7_200)
                    );
                    "billing.fx"
                }
                (Phase::Mid, Level::Error) => {
                    msg.push_str("ledger write conflict, retrying");
                    w!(aux, ", \"attempt\": {}", rng.range(1, 3));
                    "billing.ledger"
                }
                (Phase::Mid, _) => match rng.below(3) {
                    0 => {
                        msg.push_str("tax computed");
                        push_amount(aux, r.amount_cents, r.currency);
                        w!(
                            aux,
                            ", \"vat_rate\": {}",
                            rng.pick(&["0.19", "0.2", "0.077", "0.21"])
                        );
                        "billing.tax"
                    }
                    1 => {
                        msg.push_str("invoice drafted");
                        w!(aux, ", \"invoice_id\": \"INV-2023-{:07}\"", r.order_id);
                        "billing.worker"
                    }
                    _ => {
                        msg.push_str("ledger entry written");
                        aux.push_str(", \"account\": \"4000-revenue\"");
                        push_amount(aux, r.amount_cents, r.currency);
                        "billing.ledger"
                    }
                },
                (Phase::End, level) => {
                    match level {
                        Level::Error => {
                            msg.push_str("billing failed");
                            aux.push_str(", \"exception\": ");
                            push_json_str(aux, PY_TRACEBACK, true);
                        }
                        Level::Warn => {
                            msg.push_str("downstream call failed");
                            w!(aux, ", \"status\": {}", rc.status());
                        }
                        _ => {
                            msg.push_str("invoice finalized");
                            w!(aux, ", \"invoice_id\": \"INV-2023-{:07}\"", r.order_id);
                            push_amount(aux, r.amount_cents, r.currency);
                        }
                    }
                    "billing.worker"
                }
            };
            (rc.level, logger)
        }
    };
    spice(rng, msg);

    line.push_str("{\"event\": ");
    push_json_str(line, msg, true);
    if let Some(rc) = rc {
        line.push_str(", \"correlation_id\": \"");
        push_hex(line, rc.req.id, 32);
        line.push('"');
    }
    line.push_str(", \"level\": \"");
    line.push_str(level.structlog());
    line.push_str("\", \"timestamp\": \"");
    // Same instant, rendered in UTC+2.
    push_rfc3339(line, t + 2 * 3_600 * NS_PER_SEC, 6);
    line.push_str("+02:00\", \"logger\": \"");
    line.push_str(logger);
    line.push_str("\", \"service\": \"billing-py\"");
    line.push_str(aux);
    line.push('}');
}

/// orders-java: logstash-logback-encoder.
fn logback_line(rng: &mut Rng, f: &mut Fmt, t: u64, rc: Option<ReqCtx<'_>>) {
    let Fmt {
        line,
        msg,
        aux,
        tmp,
    } = f;
    // (logger, thread name or None for the request's Tomcat worker thread)
    let (level, logger, thread) = match rc {
        None => {
            let level = background_level(rng);
            let (logger, thread) = if level >= Level::Error {
                msg.push_str(
                    "HikariPool-1 - Connection is not available, request timed out after 30000ms.",
                );
                tmp.push_str(
                    "java.sql.SQLTransientConnectionException: HikariPool-1 - Connection is not available, request timed out after 30000ms.\n\
                     \tat com.zaxxer.hikari.pool.HikariPool.createTimeoutException(HikariPool.java:696)\n\
                     \tat com.zaxxer.hikari.pool.HikariPool.getConnection(HikariPool.java:181)\n\
                     \tat com.shop.orders.outbox.OutboxRelay.relay(OutboxRelay.java:58)",
                );
                ("com.shop.orders.outbox.OutboxRelay", "scheduling-1")
            } else if level == Level::Warn {
                msg.push_str(
                    "HikariPool-1 - Thread starvation or clock leap detected (housekeeper delta=1m2s).",
                );
                (
                    "com.zaxxer.hikari.pool.HikariPool",
                    "HikariPool-1 housekeeper",
                )
            } else {
                match rng.below(3) {
                    0 => {
                        let total = 10;
                        let active = rng.below(total + 1);
                        w!(
                            msg,
                            "HikariPool-1 - Pool stats (total={total}, active={active}, idle={}, waiting=0)",
                            total - active
                        );
                        (
                            "com.zaxxer.hikari.pool.HikariPool",
                            "HikariPool-1 housekeeper",
                        )
                    }
                    1 => {
                        w!(msg, "Relayed {} outbox events", rng.below(40));
                        ("com.shop.orders.outbox.OutboxRelay", "scheduling-1")
                    }
                    _ => {
                        w!(
                            msg,
                            "Evicted {} entries from order cache",
                            rng.range(1, 200)
                        );
                        ("com.shop.orders.cache.OrderCache", "cache-evictor")
                    }
                }
            };
            (level, logger, Some(thread))
        }
        Some(rc) => {
            let r = rc.req;
            let logger = match (rc.phase, rc.level) {
                (Phase::Start, _) => {
                    match r.flow {
                        Flow::OrderStatus => w!(msg, "GET {}", r.path),
                        Flow::Checkout => w!(msg, "Creating order for cart {}", r.cart_id),
                        Flow::Restock => w!(msg, "Restock job started for SKU-{}", r.sku),
                        _ => w!(msg, "Payment notification for order {}", r.order_id),
                    }
                    "com.shop.orders.web.OrderController"
                }
                (Phase::Mid, Level::Trace) => {
                    w!(msg, "binding parameter (1:BIGINT) <- [{}]", r.order_id);
                    "org.hibernate.orm.jdbc.bind"
                }
                (Phase::Mid, Level::Debug) => {
                    msg.push_str(
                        "select o1_0.id,o1_0.state,o1_0.total_cents from orders o1_0 where o1_0.id=?",
                    );
                    "org.hibernate.SQL"
                }
                (Phase::Mid, Level::Warn) => {
                    w!(
                        msg,
                        "Optimistic lock conflict on order {}, retrying (attempt {})",
                        r.order_id,
                        rng.range(1, 3)
                    );
                    "com.shop.orders.OrderService"
                }
                (Phase::Mid, Level::Error) => {
                    w!(
                        msg,
                        "Kafka send failed for order {}, will retry",
                        r.order_id
                    );
                    tmp.push_str(
                        "org.apache.kafka.common.errors.TimeoutException: Expiring 1 record(s) for orders.events-3: 30012 ms has passed since batch creation\n\
                         \tat org.apache.kafka.clients.producer.internals.ProducerBatch.done(ProducerBatch.java:266)\n\
                         \tat com.shop.orders.events.EventPublisher.publish(EventPublisher.java:44)",
                    );
                    "com.shop.orders.events.EventPublisher"
                }
                (Phase::Mid, _) => {
                    if rng.chance(0.5) {
                        w!(
                            msg,
                            "Loaded order {} in state {}",
                            r.order_id,
                            rng.pick(&["NEW", "PAID", "SHIPPED", "CANCELLED"])
                        );
                        "com.shop.orders.OrderService"
                    } else {
                        w!(
                            msg,
                            "Publishing OrderUpdated event for order {} to orders.events",
                            r.order_id
                        );
                        "com.shop.orders.events.EventPublisher"
                    }
                }
                (Phase::End, level) => {
                    let status = rc.status();
                    match level {
                        Level::Error => {
                            w!(msg, "Failed to update order {}", r.order_id);
                            w!(
                                tmp,
                                "java.lang.IllegalStateException: Order {} is in state CANCELLED\n\
                                 \tat com.shop.orders.OrderService.confirm(OrderService.java:142)\n\
                                 \tat com.shop.orders.web.OrderController.update(OrderController.java:57)\n\
                                 \tat java.base/jdk.internal.reflect.DirectMethodHandleAccessor.invoke(DirectMethodHandleAccessor.java:103)\n\
                                 \t... 87 common frames omitted",
                                r.order_id
                            );
                        }
                        Level::Warn => {
                            w!(msg, "Request failed with status {status}");
                        }
                        _ => {
                            w!(
                                msg,
                                "Completed {status} in {} ms",
                                rc.elapsed_ns() / 1_000_000
                            );
                        }
                    }
                    "com.shop.orders.web.OrderController"
                }
            };
            // MDC value, present on some lines only.
            if r.flow != Flow::Restock && rng.chance(0.6) {
                w!(aux, ",\"orderId\":\"{}\"", r.order_id);
            }
            (rc.level, logger, None)
        }
    };
    spice(rng, msg);
    let (level_name, level_value) = level.logback();

    line.push_str("{\"@timestamp\":\"");
    push_rfc3339(line, t, 3);
    line.push_str("Z\",\"@version\":\"1\",\"message\":");
    push_json_str(line, msg, false);
    line.push_str(",\"logger_name\":\"");
    line.push_str(logger);
    line.push_str("\",\"thread_name\":\"");
    match (thread, rc) {
        (Some(thread), _) => line.push_str(thread),
        (None, Some(rc)) => {
            line.push_str("http-nio-8080-exec-");
            push_u64(line, rc.span_id() % 200 + 1);
        }
        (None, None) => line.push_str("main"),
    }
    line.push_str("\",\"level\":\"");
    line.push_str(level_name);
    line.push_str("\",\"level_value\":");
    push_u64(line, u64::from(level_value));
    if let Some(rc) = rc {
        line.push_str(",\"traceId\":\"");
        push_hex(line, rc.req.id, 32);
        line.push_str("\",\"spanId\":\"");
        push_hex(line, u128::from(rc.span_id()), 16);
        line.push('"');
    }
    line.push_str(",\"app\":\"orders-java\"");
    line.push_str(aux);
    if level_name == "ERROR" {
        if tmp.is_empty() {
            tmp.push_str(
                "java.lang.RuntimeException: unexpected failure\n\
                 \tat com.shop.orders.OrderService.handle(OrderService.java:77)",
            );
        }
        line.push_str(",\"stack_trace\":");
        push_json_str(line, tmp, false);
    }
    line.push('}');
}

/// inventory-rs: tracing-subscriber JSON formatter with current span and span list.
fn tracing_line(rng: &mut Rng, f: &mut Fmt, t: u64, rc: Option<ReqCtx<'_>>) {
    let Fmt { line, msg, aux, .. } = f;
    let (level, target) = match rc {
        None => {
            let level = background_level(rng);
            let target = match (level, rng.below(3)) {
                (Level::Warn, _) => {
                    msg.push_str("replication lag above threshold");
                    w!(aux, ",\"lag_ms\":{}", rng.range(1_000, 30_000));
                    "inventory::db"
                }
                (Level::Error | Level::Fatal, _) => {
                    msg.push_str("compaction failed");
                    aux.push_str(",\"error\":\"io error: No space left on device (os error 28)\"");
                    "inventory::jobs"
                }
                (_, 0) => {
                    msg.push_str("stock cache refreshed");
                    w!(
                        aux,
                        ",\"entries\":{},\"took_ms\":{}",
                        rng.range(10_000, 90_000),
                        rng.range(3, 300)
                    );
                    "inventory::cache"
                }
                (_, 1) => {
                    msg.push_str("replication lag observed");
                    w!(aux, ",\"lag_ms\":{}", rng.range(1, 900));
                    "inventory::db"
                }
                _ => {
                    msg.push_str("compaction finished");
                    w!(aux, ",\"segments\":{}", rng.range(2, 64));
                    "inventory::jobs"
                }
            };
            (level, target)
        }
        Some(rc) => {
            let r = rc.req;
            let target = match (rc.phase, rc.level) {
                (Phase::Start, _) => {
                    msg.push_str("request received");
                    w!(
                        aux,
                        ",\"method\":\"{}\",\"path\":\"/stock/SKU-{}\"",
                        r.flow.method(),
                        r.sku
                    );
                    "inventory::http"
                }
                (Phase::Mid, Level::Warn) => {
                    msg.push_str("low stock");
                    w!(
                        aux,
                        ",\"sku\":\"SKU-{}\",\"available\":{}",
                        r.sku,
                        rng.below(5)
                    );
                    "inventory::stock"
                }
                (Phase::Mid, Level::Error) => {
                    msg.push_str("db query failed, retrying");
                    aux.push_str(
                        ",\"error\":\"pool timed out while waiting for an open connection\",\"attempt\":1",
                    );
                    "inventory::db"
                }
                (Phase::Mid, _) => match rng.below(4) {
                    0 => {
                        msg.push_str("stock level checked");
                        w!(
                            aux,
                            ",\"sku\":\"SKU-{}\",\"available\":{}",
                            r.sku,
                            rng.range(0, 500)
                        );
                        "inventory::stock"
                    }
                    1 => {
                        msg.push_str(match r.flow.leaf_span() {
                            "reserve" => "reservation created",
                            "restock" => "restock applied",
                            _ => "stock snapshot read",
                        });
                        w!(aux, ",\"sku\":\"SKU-{}\",\"qty\":{}", r.sku, r.qty);
                        "inventory::stock"
                    }
                    2 => {
                        msg.push_str("cache miss");
                        w!(aux, ",\"sku\":\"SKU-{}\"", r.sku);
                        "inventory::cache"
                    }
                    _ => {
                        msg.push_str("acquired row lock");
                        w!(aux, ",\"waited_us\":{}", rng.range(5, 20_000));
                        "inventory::db"
                    }
                },
                (Phase::End, level) => {
                    if level == Level::Error {
                        msg.push_str("reservation failed");
                        w!(
                            aux,
                            ",\"error\":\"insufficient stock: SKU-{} has 0 units left\",\"sku\":\"SKU-{}\"",
                            r.sku,
                            r.sku
                        );
                    } else {
                        msg.push_str("request finished");
                    }
                    w!(aux, ",\"status\":{},\"latency_ms\":", rc.status());
                    push_decimal(aux, rc.elapsed_ns() / 1_000, 3, 0);
                    "inventory::http"
                }
            };
            (rc.level, target)
        }
    };
    spice(rng, msg);

    line.push_str("{\"timestamp\":\"");
    push_rfc3339(line, t, 9);
    line.push_str("Z\",\"level\":\"");
    line.push_str(level.tracing());
    line.push_str("\",\"fields\":{\"message\":");
    push_json_str(line, msg, false);
    line.push_str(aux);
    line.push_str("},\"target\":\"");
    line.push_str(target);
    line.push('"');
    if let Some(rc) = rc {
        let leaf = rc.req.flow.leaf_span();
        line.push_str(",\"span\":{\"request_id\":\"");
        push_hex(line, rc.req.id, 32);
        line.push_str("\",\"name\":\"");
        line.push_str(leaf);
        line.push_str("\"},\"spans\":[{\"name\":\"http\"},{\"name\":\"");
        line.push_str(leaf);
        line.push_str("\"}]");
    }
    line.push_str(",\"service\":\"inventory-rs\"}");
}

const BROWSER_UAS: &[&str] = &[
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/119.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Safari/605.1.15",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0",
    "ShopApp/4.12.1 (Android 14; Pixel 8)",
];

/// edge-nginx: `log_format ... escape=json`, one access-log line per request, written when the
/// request completes.
fn nginx_line(rng: &mut Rng, f: &mut Fmt, t: u64, rc: Option<ReqCtx<'_>>) {
    let Fmt { line, aux, tmp, .. } = f;
    // `tmp` holds the request line.
    let (ip, status, bytes, time_ms, ua, host) = match rc {
        None => match rng.below(6) {
            0..3 => {
                tmp.push_str("GET /healthz HTTP/1.1");
                let ip = [10, 0, 0, rng.range(1, 5) as u8];
                (ip, 200, 2, rng.below(2), "kube-probe/1.28", rng.range(1, 3))
            }
            3 => {
                tmp.push_str("GET /robots.txt HTTP/1.1");
                let ip = [66, 249, 66, rng.range(1, 254) as u8];
                let ua = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)";
                (ip, 200, 68, rng.below(3), ua, rng.range(1, 3))
            }
            4 => {
                let (req, status) = rng.pick(&[
                    ("GET /wp-login.php HTTP/1.1", 404),
                    ("GET /.env HTTP/1.1", 404),
                    ("GET /?q=\"><script>alert(1)</script> HTTP/1.1", 400),
                    ("GET /cgi-bin/luci/;stok=/locale?form=country HTTP/1.1", 404),
                ]);
                tmp.push_str(req);
                let ip = [
                    rng.range(1, 223) as u8,
                    rng.below(256) as u8,
                    rng.below(256) as u8,
                    rng.range(1, 254) as u8,
                ];
                let ua = "Mozilla/5.0 zgrab/0.x";
                (ip, status, 150, rng.below(3), ua, rng.range(1, 3))
            }
            _ => {
                let req = rng.pick(&[
                    "GET /static/js/app.3f9c2b.js HTTP/2.0",
                    "GET /static/css/main.8d1e4a.css HTTP/2.0",
                    "GET /api/search?q=caf%C3%A9 HTTP/2.0",
                    "GET /api/search?q=Z%C3%BCrich HTTP/2.0",
                ]);
                tmp.push_str(req);
                let ip = [
                    rng.range(1, 223) as u8,
                    rng.below(256) as u8,
                    rng.below(256) as u8,
                    rng.range(1, 254) as u8,
                ];
                let ua = rng.pick(BROWSER_UAS);
                (
                    ip,
                    200,
                    rng.range(1_000, 90_000),
                    rng.range(1, 40),
                    ua,
                    rng.range(1, 3),
                )
            }
        },
        Some(rc) => {
            let r = rc.req;
            w!(tmp, "{} {} HTTP/1.1", r.flow.method(), r.path);
            let status = rc.status();
            let bytes = if status < 300 {
                rng.range(180, 9_000)
            } else {
                rng.range(150, 600)
            };
            // Upstream time: the first proxied service's share of the request.
            if let Some(&(s, e)) = r.windows.get(1) {
                aux.push_str(",\"upstream_response_time\":\"");
                push_decimal(aux, (e - s) / 1_000_000, 3, 3);
                aux.push('"');
            }
            if r.flow != Flow::Webhook && rng.chance(0.35) {
                aux.push_str(",\"http_referer\":\"https://shop.example.com/cart\"");
            }
            let host = rc.span_id() % 3 + 1;
            (
                r.client_ip,
                status,
                bytes,
                rc.elapsed_ns() / 1_000_000,
                r.user_agent,
                host,
            )
        }
    };

    line.push_str("{\"time\":\"");
    push_rfc3339(line, t, 0);
    line.push_str("+00:00\",\"remote_addr\":\"");
    push_ip(line, ip);
    line.push_str("\",\"request\":");
    push_json_str(line, tmp, false);
    line.push_str(",\"status\":");
    push_u64(line, u64::from(status));
    line.push_str(",\"body_bytes_sent\":");
    push_u64(line, bytes);
    line.push_str(",\"request_time\":");
    push_decimal(line, time_ms, 3, 3);
    line.push_str(",\"http_user_agent\":");
    push_json_str(line, ua, false);
    if let Some(rc) = rc {
        line.push_str(",\"request_id\":\"");
        push_hex(line, rc.req.id, 32);
        line.push('"');
    }
    line.push_str(",\"host\":\"edge-");
    push_u64(line, host);
    line.push_str("\",\"service\":\"edge-nginx\"");
    line.push_str(aux);
    line.push('}');
}

/// payments-otel: OpenTelemetry log data model rendered as JSON, trace context in a W3C
/// `traceparent` attribute.
fn otel_line(rng: &mut Rng, f: &mut Fmt, t: u64, rc: Option<ReqCtx<'_>>) {
    let Fmt { line, msg, aux, .. } = f;
    let host = match rc {
        Some(rc) => rc.span_id() % 3 + 1,
        None => rng.range(1, 3),
    };
    let level = match rc {
        None => {
            let level = background_level(rng);
            match (level, rng.below(3)) {
                (Level::Warn, _) => {
                    msg.push_str("Export retry scheduled");
                    w!(
                        aux,
                        ",\"otel.exporter\":\"otlp\",\"retry.delay_ms\":{}",
                        rng.range(100, 5_000)
                    );
                }
                (Level::Error | Level::Fatal, _) => {
                    msg.push_str("Failed to export logs");
                    aux.push_str(
                        ",\"otel.exporter\":\"otlp\",\"exception.message\":\"UNAVAILABLE: upstream connect error or disconnect/reset before headers\"",
                    );
                }
                (_, 0) => {
                    msg.push_str("Exported spans");
                    w!(
                        aux,
                        ",\"otel.exporter\":\"otlp\",\"spans\":{}",
                        rng.range(1, 512)
                    );
                }
                (_, 1) => {
                    msg.push_str("Refreshed PSP credentials");
                    w!(
                        aux,
                        ",\"psp\":\"{}\"",
                        rng.pick(&["stripe", "adyen", "paypal"])
                    );
                }
                _ => {
                    msg.push_str("Batch processor queue size");
                    w!(aux, ",\"queue.size\":{}", rng.below(2_048));
                }
            }
            level
        }
        Some(rc) => {
            let r = rc.req;
            w!(aux, ",\"http.method\":\"{}\"", r.flow.method());
            match (rc.phase, rc.level) {
                (Phase::Start, _) => {
                    msg.push_str(match r.flow {
                        Flow::Webhook => "Webhook received",
                        Flow::Reconcile => "Fetching settlement report",
                        _ => "Authorizing payment",
                    });
                    w!(
                        aux,
                        ",\"payment.provider\":\"{}\",\"payment.amount_minor\":{},\"payment.currency\":\"{}\"",
                        r.provider,
                        r.amount_cents,
                        r.currency
                    );
                }
                (Phase::Mid, Level::Warn) => {
                    msg.push_str("PSP latency above threshold");
                    w!(aux, ",\"psp.latency_ms\":{}", rng.range(800, 3_000));
                }
                (Phase::Mid, Level::Error) => {
                    msg.push_str("PSP request failed, retrying");
                    aux.push_str(
                        ",\"exception.type\":\"TimeoutError\",\"exception.message\":\"read timed out after 2000 ms\"",
                    );
                }
                (Phase::Mid, _) => match rng.below(3) {
                    0 => {
                        msg.push_str("Calling PSP");
                        w!(
                            aux,
                            ",\"peer.service\":\"{}\",\"url.full\":\"https://api.{}.com/v1/payments\"",
                            r.provider,
                            r.provider
                        );
                    }
                    1 => {
                        msg.push_str("PSP responded");
                        w!(
                            aux,
                            ",\"psp.status\":\"succeeded\",\"psp.latency_ms\":{}",
                            rng.range(40, 700)
                        );
                    }
                    _ => msg.push_str("3-D Secure challenge not required"),
                },
                (Phase::End, level) => {
                    msg.push_str(match (level, r.flow) {
                        (Level::Error, _) => "Payment authorization failed",
                        (Level::Warn, _) => "Downstream failure",
                        (_, Flow::Reconcile) => "Settlement reconciled",
                        (_, Flow::Webhook) => "Payment captured",
                        _ => "Payment authorized",
                    });
                    w!(aux, ",\"http.status_code\":{}", rc.status());
                    if level == Level::Error {
                        aux.push_str(
                            ",\"exception.type\":\"PSPError\",\"exception.message\":\"card_declined: insufficient_funds\"",
                        );
                    }
                }
            }
            rc.level
        }
    };
    spice(rng, msg);
    let (severity_text, severity_number) = level.otel();

    line.push_str("{\"timestamp\":\"");
    push_rfc3339(line, t, 3);
    line.push_str("Z\",\"severity_text\":\"");
    line.push_str(severity_text);
    line.push_str("\",\"severity_number\":");
    push_u64(line, u64::from(severity_number));
    line.push_str(",\"body\":");
    push_json_str(line, msg, false);
    line.push_str(
        ",\"resource\":{\"service\":{\"name\":\"payments-otel\"},\"host\":{\"name\":\"pay-",
    );
    push_u64(line, host);
    line.push_str("\"}},\"attributes\":{");
    match rc {
        Some(rc) => {
            line.push_str("\"traceparent\":\"00-");
            push_hex(line, rc.req.id, 32);
            line.push('-');
            push_hex(line, u128::from(rc.span_id()), 16);
            line.push_str("-01\"");
            line.push_str(aux);
        }
        // Fragments start with a comma; the first attribute must not.
        None => line.push_str(aux.strip_prefix(',').unwrap_or(aux)),
    }
    line.push_str("}}");
}

// ---------------------------------------------------------------------------------------------
// Simulation
// ---------------------------------------------------------------------------------------------

const NO_REQUEST: u32 = u32::MAX;

/// One scheduled line. Ordered by emission time, then by scheduling order (for determinism).
#[derive(Clone, Copy, Debug)]
struct Event {
    /// Emission time: the line's instant plus shipping delay.
    key: u64,
    seq: u64,
    /// The line's true instant (ns since the epoch).
    t: u64,
    /// Slot in `Sim::requests`, or `NO_REQUEST` for a background line.
    slot: u32,
    /// Position in the request's chain, or the index into `Svc::ALL` for background lines.
    depth: u8,
    phase: Phase,
}

impl PartialEq for Event {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Event {}

impl PartialOrd for Event {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Event {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.key, self.seq).cmp(&(other.key, other.seq))
    }
}

const CURRENCIES: &[&str] = &["EUR", "EUR", "EUR", "USD", "USD", "GBP", "CHF"];
const PROVIDERS: &[&str] = &["stripe", "adyen", "paypal"];

struct Sim {
    rng: Rng,
    heap: BinaryHeap<Reverse<Event>>,
    requests: Vec<Option<Request>>,
    free_slots: Vec<u32>,
    /// Every ID ever issued, so that no two requests can share one (which would break the truth).
    ids: HashSet<u128>,
    seq: u64,
    requests_started: u64,
    truth: Option<BufWriter<File>>,
    truth_every: u64,
    truth_written: u64,
    lines: u64,
    bytes: u64,
}

impl Sim {
    fn schedule(&mut self, t: u64, slot: u32, depth: u8, phase: Phase) {
        let late = if self.rng.chance(LATE_P) {
            self.rng.below(MAX_LATE_NS)
        } else {
            0
        };
        self.seq += 1;
        self.heap.push(Reverse(Event {
            key: t + late,
            seq: self.seq,
            t,
            slot,
            depth,
            phase,
        }));
    }

    fn schedule_background(&mut self, t: u64) {
        let svc = self.rng.below(Svc::ALL.len() as u64) as u8;
        self.schedule(t, NO_REQUEST, svc, Phase::Mid);
    }

    /// Creates a request starting at `t0` and schedules all of its lines.
    fn start_request(&mut self, t0: u64) {
        let index = self.requests_started;
        self.requests_started += 1;
        let rng = &mut self.rng;

        let id = loop {
            let id = (u128::from(rng.next_u64()) << 64) | u128::from(rng.next_u64());
            if id != 0 && self.ids.insert(id) {
                break id;
            }
        };
        let flow = Flow::pick(rng);
        let mut services = flow.chain().to_vec();
        if services.len() > 2 && rng.chance(0.3) {
            let keep = rng.range(2, services.len() as u64 - 1) as usize;
            services.truncate(keep);
        }
        let n = services.len();
        // Chain position of the first application service. An entry nginx writes exactly one
        // access-log line, so extra lines and failures go to the services behind it.
        let first_app = usize::from(services[0] == Svc::Nginx);
        let last = n as u64 - 1;
        let outcome = match rng.below(1000) {
            0..30 => Outcome::ServerError {
                depth: rng.range(first_app as u64, last) as usize,
            },
            30..80 => Outcome::ClientError {
                depth: rng.range(first_app as u64, last) as usize,
                status: rng.pick(&[400, 401, 404, 409, 422]),
            },
            _ => Outcome::Ok,
        };

        // 3..=30 lines, skewed towards short requests; at least one per service.
        let u = rng.unit();
        let total = (3 + (u * u * 28.0) as usize).clamp(n, 30);
        let mut counts = vec![1u32; n];
        for _ in n..total {
            counts[rng.range(first_app as u64, last) as usize] += 1;
        }

        // Duration log-uniform in [5 ms, 3 s]; each callee's window nests inside its caller's.
        let ratio = MAX_REQUEST_NS as f64 / MIN_REQUEST_NS as f64;
        let dur = (MIN_REQUEST_NS as f64 * ratio.powf(rng.unit())) as u64;
        let mut windows = Vec::with_capacity(n);
        windows.push((t0, t0 + dur));
        for d in 1..n {
            let (s, e) = windows[d - 1];
            let len = (e - s) as f64;
            let s2 = s + (len * (0.02 + 0.13 * rng.unit())) as u64;
            let e2 = e - (len * (0.02 + 0.13 * rng.unit())) as u64;
            windows.push((s2, e2));
        }

        let cart_id = rng.range(1_000, 999_999);
        let order_id = rng.range(100_000, 9_999_999);
        let sku = rng.range(100, 99_999);
        let provider = rng.pick(PROVIDERS);
        let path = match flow {
            Flow::ViewCart => format!("/api/cart/{cart_id}"),
            Flow::AddItem => format!("/api/cart/{cart_id}/items"),
            Flow::Checkout => "/api/checkout".to_owned(),
            Flow::OrderStatus => format!("/api/orders/{order_id}"),
            Flow::Webhook => format!("/webhooks/psp/{provider}"),
            Flow::Reconcile => "/internal/reconcile".to_owned(),
            Flow::Restock => format!("/internal/restock/SKU-{sku}"),
        };
        let user_agent = match (flow, provider) {
            (Flow::Webhook, "stripe") => "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
            (Flow::Webhook, "adyen") => "Adyen HttpClient 1.0",
            (Flow::Webhook, _) => "PayPal/AUHD-214.0-58716018",
            _ => rng.pick(BROWSER_UAS),
        };
        let client_ip = [
            rng.range(1, 223) as u8,
            rng.below(256) as u8,
            rng.below(256) as u8,
            rng.range(1, 254) as u8,
        ];
        let req = Request {
            id,
            flow,
            services,
            windows,
            outcome,
            remaining: total as u32,
            path,
            cart_id,
            order_id,
            user_id: rng.range(1, 500_000),
            sku,
            qty: rng.range(1, 5),
            items: rng.range(1, 12),
            amount_cents: rng.range(199, 250_000),
            currency: rng.pick(CURRENCIES),
            provider,
            client_ip,
            user_agent,
            truth: (self.truth.is_some() && index.is_multiple_of(self.truth_every))
                .then(|| Vec::with_capacity(total)),
        };

        let slot = match self.free_slots.pop() {
            Some(slot) => slot,
            None => {
                self.requests.push(None);
                (self.requests.len() - 1) as u32
            }
        };
        // Schedule: nginx logs once at completion; other services log Start at entry, End at
        // exit (alone: End only) and Mid lines uniformly in between.
        for (d, &m) in counts.iter().enumerate() {
            let (s, e) = req.windows[d];
            let depth = d as u8;
            if req.services[d] == Svc::Nginx || m == 1 {
                self.schedule(e, slot, depth, Phase::End);
            } else {
                self.schedule(s, slot, depth, Phase::Start);
                for _ in 2..m {
                    let t = s + self.rng.below(e - s + 1);
                    self.schedule(t, slot, depth, Phase::Mid);
                }
                self.schedule(e, slot, depth, Phase::End);
            }
        }
        self.requests[slot as usize] = Some(req);
    }

    /// Formats and writes one line; finishes its request (and truth record) after its last line.
    fn emit(&mut self, ev: Event, f: &mut Fmt, out: &mut impl Write) -> Result<()> {
        let line_no = self.lines;
        if ev.slot == NO_REQUEST {
            render(&mut self.rng, f, Svc::ALL[ev.depth as usize], ev.t, None);
        } else {
            let slot = ev.slot as usize;
            let req = self.requests[slot]
                .as_mut()
                .expect("event for a live request");
            let depth = ev.depth as usize;
            let svc = req.services[depth];
            let level = request_level(&mut self.rng, req, depth, ev.phase);
            let ctx = ReqCtx {
                req,
                depth,
                phase: ev.phase,
                level,
            };
            render(&mut self.rng, f, svc, ev.t, Some(ctx));
            if let Some(truth) = &mut req.truth {
                // The instant the line states: truncated to the style's precision.
                let tick = svc.tick_ns();
                truth.push((ev.t / tick * tick, line_no));
            }
            req.remaining -= 1;
            if req.remaining == 0 {
                let req = self.requests[slot].take().expect("live request");
                self.free_slots.push(ev.slot);
                if let (Some(w), Some(lines)) = (&mut self.truth, &req.truth) {
                    write_truth(w, &req, lines).context("writing truth")?;
                    self.truth_written += 1;
                }
            }
        }
        f.line.push('\n');
        out.write_all(f.line.as_bytes())?;
        self.bytes += f.line.len() as u64;
        self.lines += 1;
        Ok(())
    }

    fn run(&mut self, budget: u64, out: &mut impl Write) -> Result<()> {
        let request_gap =
            NS_PER_SEC as f64 / (LINES_PER_SEC * (1.0 - BACKGROUND_SHARE) / MEAN_LINES_PER_REQUEST);
        let background_gap = NS_PER_SEC as f64 / (LINES_PER_SEC * BACKGROUND_SHARE);
        let mut next_request = START_NS;
        let mut next_background = START_NS + self.rng.exp_ns(background_gap);
        let mut f = Fmt::default();
        // While open, arrivals are processed before any line due later than them. Every line of
        // a request is due no earlier than its arrival, so lines come out in emission order.
        let mut open = true;
        loop {
            if open {
                let arrival = next_request.min(next_background);
                if self.heap.peek().is_none_or(|Reverse(e)| arrival <= e.key) {
                    if next_request <= next_background {
                        self.start_request(next_request);
                        next_request += self.rng.exp_ns(request_gap);
                    } else {
                        self.schedule_background(next_background);
                        next_background += self.rng.exp_ns(background_gap);
                    }
                    continue;
                }
            }
            let Some(Reverse(ev)) = self.heap.pop() else {
                break;
            };
            self.emit(ev, &mut f, out)?;
            // Budget reached: start nothing new, drain what is scheduled.
            if self.bytes >= budget {
                open = false;
            }
        }
        Ok(())
    }
}

/// `{"id":…,"lines":[…],"services":[…],"count":N}`, lines sorted by (stated instant, line no).
fn write_truth(w: &mut impl Write, req: &Request, lines: &[(u64, u64)]) -> io::Result<()> {
    let mut lines = lines.to_vec();
    lines.sort_unstable();
    write!(w, "{{\"id\":\"{:032x}\",\"lines\":[", req.id)?;
    for (i, (_, n)) in lines.iter().enumerate() {
        if i > 0 {
            w.write_all(b",")?;
        }
        write!(w, "{n}")?;
    }
    w.write_all(b"],\"services\":[")?;
    for (i, svc) in req.services.iter().enumerate() {
        if i > 0 {
            w.write_all(b",")?;
        }
        write!(w, "\"{}\"", svc.name())?;
    }
    writeln!(w, "],\"count\":{}}}", lines.len())
}

fn main() -> Result<()> {
    let args = Args::parse();
    let started = Instant::now();

    let file =
        File::create(&args.out).with_context(|| format!("creating {}", args.out.display()))?;
    let mut out = BufWriter::with_capacity(8 << 20, file);
    let truth = match &args.truth {
        Some(path) => Some(BufWriter::new(
            File::create(path).with_context(|| format!("creating {}", path.display()))?,
        )),
        None => None,
    };

    let mut sim = Sim {
        rng: Rng::new(args.seed),
        heap: BinaryHeap::new(),
        requests: Vec::new(),
        free_slots: Vec::new(),
        ids: HashSet::new(),
        seq: 0,
        requests_started: 0,
        truth,
        truth_every: args.truth_every,
        truth_written: 0,
        lines: 0,
        bytes: 0,
    };
    sim.run(args.bytes, &mut out)
        .with_context(|| format!("writing {}", args.out.display()))?;
    out.flush()
        .with_context(|| format!("writing {}", args.out.display()))?;
    if let Some(truth) = &mut sim.truth {
        truth.flush().context("writing truth")?;
    }

    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "gen-corpus: {} lines, {} bytes, {} requests ({} in truth), {:.2} s ({:.0} MB/s) -> {}",
        sim.lines,
        sim.bytes,
        sim.requests_started,
        sim.truth_written,
        secs,
        sim.bytes as f64 / 1e6 / secs,
        args.out.display()
    );
    Ok(())
}
