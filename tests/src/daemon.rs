//! A `weft serve` child process on a loopback port, and a minimal HTTP/1.1
//! client to talk to it.
//!
//! The client is deliberately plain (one request per connection,
//! `Content-Length` bodies, `Connection: close`) so that the tests exercise
//! the daemon, not a client library's retry or pooling logic: a crash test
//! must see every refused or dropped request as exactly that.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::weft_bin;

/// How long a started daemon may take to print its address, and then to
/// answer `/readyz` 200. Generous: a debug build replaying a long WAL is slow.
pub const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// How long a signalled daemon may take to exit.
pub const EXIT_TIMEOUT: Duration = Duration::from_secs(60);

/// Connect and per-read/write limits of [`http`]: a stuck daemon fails the
/// test instead of hanging it.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const IO_TIMEOUT: Duration = Duration::from_secs(60);

/// One HTTP answer.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    /// Header names lowercased, in the order received.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// The first header called `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON; panics, showing the body, when it is not.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "status {} body is not JSON ({e}): {}",
                self.status,
                self.text()
            )
        })
    }
}

/// Sends one request to `addr` and reads the whole answer.
///
/// `headers` come after `Host`, `Content-Length` and `Connection: close`.
/// A failed write (the server may answer and close before reading a body
/// it refuses) still returns the answer if one arrived.
pub fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> io::Result<Response> {
    let mut stream = TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT)?;
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    let written = stream
        .write_all(head.as_bytes())
        .and_then(|()| stream.write_all(body))
        .and_then(|()| stream.flush());
    let mut raw = Vec::new();
    let read = stream.read_to_end(&mut raw);
    match (parse_response(&raw), written, read) {
        (Ok(resp), _, _) => Ok(resp),
        (Err(_), Err(e), _) | (Err(_), Ok(()), Err(e)) => Err(e),
        (Err(e), Ok(()), Ok(_)) => Err(e),
    }
}

/// Parses a whole `Connection: close` answer: status line, headers, and a
/// body framed by `Content-Length`, chunked, or by the end of the stream.
fn parse_response(raw: &[u8]) -> io::Result<Response> {
    let bad = |what: &str| io::Error::new(io::ErrorKind::InvalidData, what.to_owned());
    let end = memfind(raw, b"\r\n\r\n").ok_or_else(|| bad("no end of headers"))?;
    let head = std::str::from_utf8(&raw[..end]).map_err(|_| bad("headers are not UTF-8"))?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .strip_prefix("HTTP/1.1 ")
        .or_else(|| status_line.strip_prefix("HTTP/1.0 "))
        .and_then(|s| s.get(..3))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("bad status line"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let rest = &raw[end + 4..];
    let find = |name: &str| headers.iter().find(|(n, _)| n == name).map(|(_, v)| v);
    let body = if find("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        dechunk(rest).ok_or_else(|| bad("bad chunked body"))?
    } else if let Some(len) = find("content-length") {
        let len: usize = len.parse().map_err(|_| bad("bad content-length"))?;
        rest.get(..len)
            .ok_or_else(|| bad("body shorter than content-length"))?
            .to_vec()
    } else {
        rest.to_vec()
    };
    Ok(Response {
        status,
        headers,
        body,
    })
}

fn dechunk(mut rest: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let eol = memfind(rest, b"\r\n")?;
        let size = std::str::from_utf8(&rest[..eol]).ok()?;
        let size = usize::from_str_radix(size.split(';').next()?.trim(), 16).ok()?;
        rest = &rest[eol + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(rest.get(..size)?);
        rest = rest.get(size + 2..)?;
    }
}

fn memfind(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// How to start a daemon: extra environment and arguments.
#[derive(Debug, Clone, Default)]
pub struct DaemonOptions {
    pub env: Vec<(String, String)>,
    pub args: Vec<String>,
}

impl DaemonOptions {
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_owned(), value.to_owned()));
        self
    }

    pub fn arg(mut self, arg: &str) -> Self {
        self.args.push(arg.to_owned());
        self
    }

    /// `--config FILE`.
    pub fn config(self, file: &Path) -> Self {
        self.arg("--config")
            .arg(file.to_str().expect("utf-8 config path"))
    }
}

/// A running `weft serve --data DIR --listen 127.0.0.1:0`.
///
/// Its stderr is read line by line on a thread and kept (see
/// [`Daemon::stderr_lines`]); failures show its tail. Dropping a daemon that
/// still runs kills it with SIGKILL.
#[derive(Debug)]
pub struct Daemon {
    child: Child,
    addr: SocketAddr,
    data: PathBuf,
    stderr: Arc<Mutex<Vec<String>>>,
    reader: Option<JoinHandle<()>>,
    exited: Option<ExitStatus>,
}

impl Daemon {
    /// Starts a daemon on `data` and waits until it is ready.
    pub fn start(data: &Path) -> Self {
        Self::start_with(data, &DaemonOptions::default())
    }

    /// Starts a daemon with `options` and waits until it is ready.
    pub fn start_with(data: &Path, options: &DaemonOptions) -> Self {
        let mut d = Self::spawn(data, options);
        d.wait_ready(READY_TIMEOUT);
        d
    }

    /// Starts a daemon and returns once it has printed its address, before
    /// it is ready.
    pub fn spawn(data: &Path, options: &DaemonOptions) -> Self {
        let mut cmd = Command::new(weft_bin());
        cmd.arg("serve")
            .arg("--data")
            .arg(data)
            .args(["--listen", "127.0.0.1:0"])
            .args(&options.args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        // Only what the test asks for: a developer's own WEFT_* settings
        // must not change what the daemon does.
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("WEFT_") {
                cmd.env_remove(key);
            }
        }
        cmd.env("RUST_LOG", "info");
        for (k, v) in &options.env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("weft serve starts");
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let (addr_tx, addr_rx) = mpsc::channel();
        let pipe = child.stderr.take().expect("piped stderr");
        let lines = Arc::clone(&stderr);
        let reader = std::thread::spawn(move || {
            let mut addr_tx = Some(addr_tx);
            for line in BufReader::new(pipe).lines() {
                let Ok(line) = line else { break };
                let addr = listen_addr(&line);
                // Kept before the address is handed over, so a test that
                // reads stderr once it has the address finds the line.
                lines.lock().unwrap().push(line);
                if let Some(addr) = addr
                    && let Some(tx) = addr_tx.take()
                {
                    let _ = tx.send(addr);
                }
            }
        });
        let mut daemon = Self {
            child,
            // Replaced below; the daemon must be a value first so that a
            // failure here still kills the child on drop.
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            data: data.to_owned(),
            stderr,
            reader: Some(reader),
            exited: None,
        };
        match addr_rx.recv_timeout(READY_TIMEOUT) {
            Ok(addr) => daemon.addr = addr,
            Err(_) => {
                daemon.kill();
                panic!(
                    "weft serve printed no listen address:\n{}",
                    daemon.stderr_text()
                );
            }
        }
        daemon
    }

    /// Polls `/readyz` until it answers 200; panics after `timeout` or if
    /// the daemon exits.
    pub fn wait_ready(&mut self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                self.exited = Some(status);
                self.join_reader();
                panic!(
                    "weft serve exited ({status}) before it was ready:\n{}",
                    self.stderr_text()
                );
            }
            let last = match self.get("/readyz") {
                Ok(r) if r.status == 200 => return,
                Ok(r) => format!("{} {}", r.status, r.text().trim()),
                Err(e) => e.to_string(),
            };
            if Instant::now() > deadline {
                self.kill();
                panic!(
                    "weft serve not ready after {timeout:?} (last /readyz: {last}):\n{}",
                    self.stderr_text()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn data(&self) -> &Path {
        &self.data
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn get(&self, path: &str) -> io::Result<Response> {
        http(self.addr, "GET", path, &[], b"")
    }

    /// `POST /v1/ingest` of an NDJSON `body` (already encoded as `headers`
    /// say); `query` is the part after `?`, possibly empty.
    pub fn ingest(&self, query: &str, headers: &[(&str, &str)], body: &[u8]) -> Response {
        let path = if query.is_empty() {
            "/v1/ingest".to_owned()
        } else {
            format!("/v1/ingest?{query}")
        };
        http(self.addr, "POST", &path, headers, body)
            .unwrap_or_else(|e| panic!("POST {path}: {e}\n{}", self.stderr_text()))
    }

    /// `POST` of `body` to `path` with `headers`.
    pub fn post(&self, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Response {
        http(self.addr, "POST", path, headers, body)
            .unwrap_or_else(|e| panic!("POST {path}: {e}\n{}", self.stderr_text()))
    }

    /// `POST /v1/query`, asserting 200; returns the JSON answer.
    pub fn query(&self, sql: &str) -> Value {
        let body = serde_json::json!({ "sql": sql }).to_string();
        let r = http(
            self.addr,
            "POST",
            "/v1/query",
            &[("Content-Type", "application/json")],
            body.as_bytes(),
        )
        .unwrap_or_else(|e| panic!("POST /v1/query {sql:?}: {e}\n{}", self.stderr_text()));
        assert_eq!(r.status, 200, "query {sql:?}: {}", r.text());
        r.json()
    }

    /// The rows of a query, asserting the answer was not truncated.
    pub fn rows(&self, sql: &str) -> Vec<Vec<Value>> {
        let answer = self.query(sql);
        assert_eq!(answer["truncated"], false, "{sql}: answer truncated");
        serde_json::from_value(answer["rows"].clone()).expect("rows are arrays")
    }

    /// The single integer a query such as `SELECT count(*) …` answers.
    pub fn scalar(&self, sql: &str) -> i64 {
        let rows = self.rows(sql);
        assert_eq!(rows.len(), 1, "{sql}: {rows:?}");
        rows[0][0]
            .as_i64()
            .unwrap_or_else(|| panic!("{sql}: not an integer: {rows:?}"))
    }

    /// SIGTERM, then waits for the exit (SIGKILL and panic after
    /// [`EXIT_TIMEOUT`]). Returns the exit status.
    pub fn terminate(&mut self) -> ExitStatus {
        if let Some(status) = self.exited {
            return status;
        }
        signal(self.child.id(), libc::SIGTERM);
        let deadline = Instant::now() + EXIT_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                self.exited = Some(status);
                self.join_reader();
                return status;
            }
            if Instant::now() > deadline {
                self.kill();
                panic!(
                    "weft serve did not exit within {EXIT_TIMEOUT:?} of SIGTERM:\n{}",
                    self.stderr_text()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// SIGKILL, then waits for the exit.
    pub fn kill(&mut self) -> ExitStatus {
        if let Some(status) = self.exited {
            return status;
        }
        // `Child::kill` sends SIGKILL on Unix: no flush, no cleanup.
        let _ = self.child.kill();
        let status = self.child.wait().expect("wait for killed daemon");
        self.exited = Some(status);
        self.join_reader();
        status
    }

    /// Every stderr line read so far (all of them once the daemon exited).
    pub fn stderr_lines(&self) -> Vec<String> {
        self.stderr.lock().unwrap().clone()
    }

    /// The last stderr lines, for failure messages.
    pub fn stderr_text(&self) -> String {
        let lines = self.stderr.lock().unwrap();
        let from = lines.len().saturating_sub(40);
        lines[from..].join("\n")
    }

    fn join_reader(&mut self) {
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.exited.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The address in the banner line `  listening: http://ADDR  (…)`.
fn listen_addr(line: &str) -> Option<SocketAddr> {
    let rest = line.trim_start().strip_prefix("listening:")?;
    let rest = rest.trim_start();
    let rest = rest
        .strip_prefix("http://")
        .or_else(|| rest.strip_prefix("https://"))?;
    rest.split_whitespace().next()?.parse().ok()
}

/// Sends `sig` to process `pid`.
#[allow(unsafe_code)]
fn signal(pid: u32, sig: libc::c_int) {
    let pid = libc::pid_t::try_from(pid).expect("pid fits pid_t");
    // SAFETY: kill(2) takes plain integers and touches no memory of ours; the
    // pid is our own child, not yet waited for, so it cannot have been reused.
    let rc = unsafe { libc::kill(pid, sig) };
    assert_eq!(rc, 0, "kill({pid}, {sig}): {}", io::Error::last_os_error());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_parsed_by_length_chunks_or_end() {
        let r = parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-A: b\r\n\r\nokextra")
            .unwrap();
        assert_eq!((r.status, r.body.as_slice()), (200, &b"ok"[..]));
        assert_eq!(r.header("x-a"), Some("b"));
        let r = parse_response(
            b"HTTP/1.1 503 Service Unavailable\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
        )
        .unwrap();
        assert_eq!((r.status, r.body.as_slice()), (503, &b"abcde"[..]));
        let r = parse_response(b"HTTP/1.0 404 Not Found\r\n\r\nall of it").unwrap();
        assert_eq!(r.body, b"all of it");
        assert!(parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nshort").is_err());
        assert!(parse_response(b"garbage").is_err());
    }

    #[test]
    fn the_listen_line_gives_the_address() {
        assert_eq!(
            listen_addr(
                "  listening: http://127.0.0.1:4567  (auth off: no tokens configured, loopback only)"
            ),
            Some("127.0.0.1:4567".parse().unwrap())
        );
        assert_eq!(listen_addr("  data dir : /tmp/x"), None);
    }
}
