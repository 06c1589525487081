//! HTTPS: `weft serve --tls-cert --tls-key` with a certificate made here
//! (rcgen) for 127.0.0.1, and a rustls client that trusts only that
//! certificate. Auth rides on top: the token still decides.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::{CertificateDer, ServerName};
use weft_tests::daemon::{Daemon, DaemonOptions, http};
use weft_tests::{create_token, weft};

/// A self-signed certificate for 127.0.0.1: (certificate DER, cert PEM, key PEM).
fn certificate() -> (CertificateDer<'static>, String, String) {
    let key = rcgen::KeyPair::generate().unwrap();
    let params =
        rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
            .unwrap();
    let cert = params.self_signed(&key).unwrap();
    (cert.der().clone(), cert.pem(), key.serialize_pem())
}

/// One HTTPS request; the status and the raw body text.
fn https(
    addr: SocketAddr,
    trusted: &CertificateDer<'static>,
    request: &str,
) -> io::Result<(u16, String)> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(trusted.clone()).map_err(io::Error::other)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(io::Error::other)?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = ServerName::try_from("127.0.0.1").map_err(io::Error::other)?;
    let conn = rustls::ClientConnection::new(Arc::new(config), name).map_err(io::Error::other)?;
    let tcp = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    tcp.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    tls.write_all(request.as_bytes())?;
    tls.flush()?;
    let mut raw = Vec::new();
    match tls.read_to_end(&mut raw) {
        Ok(_) => {}
        // A server that closes without close_notify after a whole answer.
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof && !raw.is_empty() => {}
        Err(e) => return Err(e),
    }
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| io::Error::other(format!("no status line: {text:?}")))?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Ok((status, body))
}

fn request(method: &str, path: &str, token: Option<&str>, body: &str) -> String {
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

#[test]
fn the_daemon_serves_https_with_auth_on_top() {
    let dir = tempfile::tempdir().unwrap();
    let (der, cert_pem, key_pem) = certificate();
    let cert = dir.path().join("cert.pem");
    let key = dir.path().join("key.pem");
    std::fs::write(&cert, cert_pem).unwrap();
    std::fs::write(&key, key_pem).unwrap();
    let config = dir.path().join("weft.toml");
    let token = create_token(&config, "admin", "default");

    let options = DaemonOptions::default()
        .config(&config)
        .arg("--tls-cert")
        .arg(cert.to_str().unwrap())
        .arg("--tls-key")
        .arg(key.to_str().unwrap());
    let d = Daemon::spawn(&dir.path().join("data"), &options);
    assert!(
        d.stderr_text().contains("listening: https://127.0.0.1:"),
        "{}",
        d.stderr_text()
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match https(d.addr(), &der, &request("GET", "/readyz", None, "")) {
            Ok((200, _)) => break,
            other => assert!(Instant::now() < deadline, "never ready: {other:?}"),
        }
        std::thread::sleep(Duration::from_millis(100));
    }

    let line = r#"{"service":"tls","message":"over https","trace_id":"t-1"}"#;
    let (status, body) = https(
        d.addr(),
        &der,
        &request("POST", "/v1/ingest", Some(&token), line),
    )
    .unwrap();
    assert_eq!(status, 200, "{body}");
    let (status, _) = https(d.addr(), &der, &request("POST", "/v1/ingest", None, line)).unwrap();
    assert_eq!(status, 401, "TLS does not replace the token");
    let q = r#"{"sql":"SELECT message FROM logs","format":"csv"}"#;
    let (status, body) = https(
        d.addr(),
        &der,
        &request("POST", "/v1/query", Some(&token), q),
    )
    .unwrap();
    assert_eq!(status, 200);
    assert!(
        body.contains("message") && body.contains("over https"),
        "{body}"
    );

    // Plain HTTP gets no answer, and a client that does not trust the
    // certificate does not get through the handshake.
    if let Ok(r) = http(d.addr(), "GET", "/healthz", &[], b"") {
        assert_ne!(r.status, 200);
    }
    let (other, _, _) = certificate();
    assert!(https(d.addr(), &other, &request("GET", "/healthz", None, "")).is_err());
    // The daemon is still serving after both.
    let (status, _) = https(d.addr(), &der, &request("GET", "/healthz", None, "")).unwrap();
    assert_eq!(status, 200);
}

#[test]
fn a_missing_or_mismatched_key_stops_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let (_, cert_pem, _) = certificate();
    let (_, _, other_key) = certificate();
    let cert = dir.path().join("cert.pem");
    let key = dir.path().join("key.pem");
    std::fs::write(&cert, cert_pem).unwrap();
    std::fs::write(&key, other_key).unwrap();
    let data = dir.path().join("data");
    let serve = |key: &str| {
        weft(&[
            "serve",
            "--data",
            data.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key,
        ])
    };
    let out = serve("/nonexistent/key.pem");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read TLS private key"));
    let out = serve(key.to_str().unwrap());
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("do not go together"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
