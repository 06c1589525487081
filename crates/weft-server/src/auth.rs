//! Tokens, roles and tenants.
//!
//! With no tokens configured, auth is off: every caller is the `default`
//! tenant's admin, and `weft serve` listens on loopback only. With tokens,
//! every endpoint but `/healthz` and `/readyz` needs one, sent as
//! `Authorization: Bearer <token>` (or, for shippers that can only do
//! these, `ApiKey <token>` or HTTP Basic with the token as password).
//!
//! A token reads `weft_<id>_<secret>`. The config keeps its id, role, tenant
//! and the SHA-256 of the whole token, never the token; the presented
//! token's hash is compared with the stored one in constant time. No token,
//! a malformed or unknown one is 401; a good token on an endpoint its role
//! does not cover is 403.

use std::io::Read;

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Write endpoints only: `/v1/ingest` and the shipper protocols.
    Ingest,
    /// Read endpoints only: queries, traces, saved queries.
    Query,
    /// Everything, plus `/metrics` and the `audit` table.
    Admin,
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "ingest" => Ok(Role::Ingest),
            "query" => Ok(Role::Query),
            "admin" => Ok(Role::Admin),
            other => Err(format!(
                "unknown role {other:?}: use ingest, query or admin"
            )),
        }
    }
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Ingest => "ingest",
            Role::Query => "query",
            Role::Admin => "admin",
        }
    }
}

/// The tenant every caller is with auth off, and whose data is the data
/// directory itself; others live in `<data dir>/tenants/<id>`.
pub const DEFAULT_TENANT: &str = "default";

/// A tenant id is 1 to 63 of `a-z 0-9 _ -`, starting with a letter or
/// digit: it names a directory, so nothing that could climb out of one.
pub fn validate_tenant(id: &str) -> Result<(), String> {
    let ok = !id.is_empty()
        && id.len() <= 63
        && id.as_bytes()[0].is_ascii_alphanumeric()
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid tenant id {id:?}: use 1 to 63 of a-z, 0-9, '_' and '-', starting with a letter or digit"
        ))
    }
}

/// One configured token (`[[auth.tokens]]`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenEntry {
    /// Public id, shown in logs and the audit trail.
    pub id: String,
    /// `sha256:` and the hex SHA-256 of the whole token.
    pub hash: String,
    pub role: Role,
    pub tenant: String,
    /// RFC 3339, when `weft token create` made it.
    #[serde(default)]
    pub created: Option<String>,
}

/// `[auth]`: the tokens. None means auth is off.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    pub tokens: Vec<TokenEntry>,
}

/// Who is calling, once the token checked out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// `None` with auth off.
    pub token_id: Option<String>,
    pub tenant: String,
    pub role: Role,
}

impl Caller {
    /// The caller with auth off.
    pub fn local() -> Self {
        Self {
            token_id: None,
            tenant: DEFAULT_TENANT.to_owned(),
            role: Role::Admin,
        }
    }
}

/// Why a request has no caller (401).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unauthorized {
    Missing,
    Malformed,
    Unknown,
}

impl std::fmt::Display for Unauthorized {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Unauthorized::Missing => "a token is required: send Authorization: Bearer <token>",
            Unauthorized::Malformed => "the Authorization header holds no weft token",
            Unauthorized::Unknown => "unknown or revoked token",
        })
    }
}

fn sha256_hex(token: &str) -> String {
    let digest = Sha256::digest(token.as_bytes());
    let mut s = String::with_capacity(7 + 64);
    s.push_str("sha256:");
    for b in digest {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

fn random_hex(n: usize) -> std::io::Result<String> {
    let mut buf = vec![0u8; n];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut buf)?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

/// The id part of `weft_<id>_<secret>`.
fn token_id(token: &str) -> Option<&str> {
    let rest = token.strip_prefix("weft_")?;
    let (id, secret) = rest.split_once('_')?;
    let hex = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_hexdigit());
    (hex(id) && hex(secret)).then_some(id)
}

impl AuthConfig {
    pub fn enabled(&self) -> bool {
        !self.tokens.is_empty()
    }

    /// Checks the config: tenant ids, unique token ids, hash shapes.
    pub fn validate(&self) -> Result<(), String> {
        let mut ids = std::collections::HashSet::new();
        for t in &self.tokens {
            validate_tenant(&t.tenant)?;
            if !ids.insert(t.id.as_str()) {
                return Err(format!("token id {:?} appears twice", t.id));
            }
            let hex = t.hash.strip_prefix("sha256:").unwrap_or("");
            if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(format!(
                    "token {:?}: hash must be sha256: and 64 hex digits",
                    t.id
                ));
            }
        }
        Ok(())
    }

    /// Makes a token for `tenant` with `role`: the token, shown once, and
    /// the entry to keep.
    pub fn create(
        role: Role,
        tenant: &str,
        created: String,
    ) -> Result<(String, TokenEntry), String> {
        validate_tenant(tenant)?;
        let id = random_hex(6).map_err(|e| format!("cannot read /dev/urandom: {e}"))?;
        let secret = random_hex(32).map_err(|e| format!("cannot read /dev/urandom: {e}"))?;
        let token = format!("weft_{id}_{secret}");
        let entry = TokenEntry {
            id,
            hash: sha256_hex(&token),
            role,
            tenant: tenant.to_owned(),
            created: Some(created),
        };
        Ok((token, entry))
    }

    /// The caller an `Authorization` header value names.
    pub fn check(&self, header: Option<&str>) -> Result<Caller, Unauthorized> {
        let header = header.ok_or(Unauthorized::Missing)?.trim();
        let token = presented_token(header).ok_or(Unauthorized::Malformed)?;
        let id = token_id(&token).ok_or(Unauthorized::Malformed)?;
        let presented = sha256_hex(&token);
        let entry = self
            .tokens
            .iter()
            .find(|t| t.id == id)
            .ok_or(Unauthorized::Unknown)?;
        if bool::from(presented.as_bytes().ct_eq(entry.hash.as_bytes())) {
            Ok(Caller {
                token_id: Some(entry.id.clone()),
                tenant: entry.tenant.clone(),
                role: entry.role,
            })
        } else {
            Err(Unauthorized::Unknown)
        }
    }
}

/// The token in `Bearer <t>`, `ApiKey <t>` or `Basic base64(user:t)`.
fn presented_token(header: &str) -> Option<String> {
    let (scheme, value) = header.split_once(' ')?;
    let value = value.trim();
    match scheme.to_ascii_lowercase().as_str() {
        "bearer" | "apikey" => Some(value.to_owned()),
        "basic" => {
            let raw = base64::engine::general_purpose::STANDARD
                .decode(value)
                .ok()?;
            let text = String::from_utf8(raw).ok()?;
            let (user, pass) = text.split_once(':')?;
            // The token as password; as user name with an empty password.
            Some(if pass.is_empty() { user } else { pass }.to_owned())
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(role: Role, tenant: &str) -> (String, AuthConfig) {
        let (token, entry) = AuthConfig::create(role, tenant, "now".into()).unwrap();
        (
            token,
            AuthConfig {
                tokens: vec![entry],
            },
        )
    }

    #[test]
    fn a_created_token_checks_out_and_only_its_hash_is_kept() {
        let (token, cfg) = config(Role::Query, "acme");
        cfg.validate().unwrap();
        let entry = &cfg.tokens[0];
        assert!(
            !entry.hash.contains(&token[5..]),
            "the secret is not stored"
        );
        assert!(!serde_json::to_string(entry).unwrap().contains(&token));
        let caller = cfg.check(Some(&format!("Bearer {token}"))).unwrap();
        assert_eq!(caller.tenant, "acme");
        assert_eq!(caller.role, Role::Query);
        assert_eq!(caller.token_id.as_deref(), Some(entry.id.as_str()));
        // The shippers' ways of sending it.
        assert!(cfg.check(Some(&format!("ApiKey {token}"))).is_ok());
        let basic = base64::engine::general_purpose::STANDARD.encode(format!("weft:{token}"));
        assert!(cfg.check(Some(&format!("Basic {basic}"))).is_ok());
    }

    #[test]
    fn missing_malformed_and_wrong_tokens_are_told_apart() {
        let (token, cfg) = config(Role::Admin, "default");
        assert_eq!(cfg.check(None), Err(Unauthorized::Missing));
        assert_eq!(cfg.check(Some("Bearer")), Err(Unauthorized::Malformed));
        assert_eq!(cfg.check(Some("Bearer nope")), Err(Unauthorized::Malformed));
        assert_eq!(cfg.check(Some("Digest x")), Err(Unauthorized::Malformed));
        // Same id, one secret digit changed.
        let mut wrong = token.clone().into_bytes();
        let last = wrong.len() - 1;
        wrong[last] = if wrong[last] == b'0' { b'1' } else { b'0' };
        let wrong = String::from_utf8(wrong).unwrap();
        assert_eq!(
            cfg.check(Some(&format!("Bearer {wrong}"))),
            Err(Unauthorized::Unknown)
        );
        let (other, _) = config(Role::Admin, "default");
        assert_eq!(
            cfg.check(Some(&format!("Bearer {other}"))),
            Err(Unauthorized::Unknown)
        );
    }

    #[test]
    fn tenant_ids_cannot_name_other_directories() {
        for bad in [
            "",
            "..",
            "../x",
            "a/b",
            "A",
            "-x",
            ".hidden",
            "a b",
            "é",
            &"x".repeat(64),
        ] {
            assert!(validate_tenant(bad).is_err(), "{bad:?}");
            assert!(AuthConfig::create(Role::Admin, bad, String::new()).is_err());
        }
        for good in ["default", "acme", "team-7", "a_b", "0"] {
            validate_tenant(good).unwrap();
        }
    }

    #[test]
    fn config_validation_catches_duplicates_and_bad_hashes() {
        let (_, mut cfg) = config(Role::Admin, "acme");
        cfg.tokens.push(cfg.tokens[0].clone());
        assert!(cfg.validate().unwrap_err().contains("twice"));
        cfg.tokens.pop();
        cfg.tokens[0].hash = "md5:abc".into();
        assert!(cfg.validate().unwrap_err().contains("sha256"));
        cfg.tokens[0].hash = format!("sha256:{}", "0".repeat(64));
        cfg.tokens[0].tenant = "../etc".into();
        assert!(cfg.validate().is_err());
    }
}
