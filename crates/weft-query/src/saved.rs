//! Saved queries: `queries/*.sql` with a header that names them and their
//! parameters. They ship inside the binary; a directory of the user's own
//! adds to them (and overrides a built-in of the same name).
//!
//! Header format, one `--` line each, before the SQL:
//! ```text
//! -- name: errors_by_service
//! -- purpose: Error and fatal lines per service since a time.
//! -- param: since timestamp = -1h : earliest line counted
//! ```
//! Types: `string`, `int`, `float`, `timestamp`. A timestamp default may be
//! relative to now (`-15m`, `-1h`, `-7d`) or RFC 3339. In the SQL a
//! parameter is `$name`; it is bound as a value, never spliced into the text.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use datafusion::common::ScalarValue;
use serde::Serialize;

use crate::{Error, Result};

/// The built-in saved queries, from `queries/` at the repository root.
const BUILTIN: &[(&str, &str)] = &[
    (
        "trace_timeline.sql",
        include_str!("../../../queries/trace_timeline.sql"),
    ),
    (
        "errors_by_service.sql",
        include_str!("../../../queries/errors_by_service.sql"),
    ),
    (
        "silent_services.sql",
        include_str!("../../../queries/silent_services.sql"),
    ),
    (
        "slowest_requests.sql",
        include_str!("../../../queries/slowest_requests.sql"),
    ),
    (
        "top_reject_reasons.sql",
        include_str!("../../../queries/top_reject_reasons.sql"),
    ),
    (
        "new_errors_since.sql",
        include_str!("../../../queries/new_errors_since.sql"),
    ),
    (
        "request_neighbours.sql",
        include_str!("../../../queries/request_neighbours.sql"),
    ),
];

/// File names of the built-in queries (a test checks they are all of `queries/`).
pub fn builtin_files() -> impl Iterator<Item = &'static str> {
    BUILTIN.iter().map(|(f, _)| *f)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ParamType {
    String,
    Int,
    Float,
    Timestamp,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Param {
    pub name: String,
    #[serde(rename = "type")]
    pub ty: ParamType,
    /// As written in the header; `None` when the parameter is required.
    pub default: Option<String>,
    pub description: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SavedQuery {
    pub name: String,
    pub purpose: String,
    pub params: Vec<Param>,
    pub sql: String,
    /// Where it came from: `builtin` or the file path.
    pub source: String,
}

fn parse_type(s: &str) -> Option<ParamType> {
    Some(match s {
        "string" | "text" => ParamType::String,
        "int" | "integer" => ParamType::Int,
        "float" | "double" => ParamType::Float,
        "timestamp" => ParamType::Timestamp,
        _ => return None,
    })
}

/// Parses one saved query file.
pub fn parse(text: &str, source: &str) -> Result<SavedQuery> {
    let bad = |m: String| Error::BadQuery(format!("{source}: {m}"));
    let mut name = None;
    let mut purpose = String::new();
    let mut params = Vec::new();
    for line in text.lines() {
        let Some(rest) = line.trim().strip_prefix("--") else {
            if line.trim().is_empty() {
                continue;
            }
            break;
        };
        let rest = rest.trim();
        if let Some(v) = rest.strip_prefix("name:") {
            name = Some(v.trim().to_owned());
        } else if let Some(v) = rest.strip_prefix("purpose:") {
            if !purpose.is_empty() {
                purpose.push(' ');
            }
            purpose.push_str(v.trim());
        } else if let Some(v) = rest.strip_prefix("param:") {
            // NAME TYPE [= DEFAULT] [: DESCRIPTION]
            let (spec, description) = match v.split_once(" : ") {
                Some((a, b)) => (a.trim(), b.trim().to_owned()),
                None => (v.trim(), String::new()),
            };
            let (head, default) = match spec.split_once('=') {
                Some((h, d)) => (h.trim(), Some(d.trim().trim_matches('\'').to_owned())),
                None => (spec, None),
            };
            let mut words = head.split_whitespace();
            let (Some(pname), Some(ty)) = (words.next(), words.next()) else {
                return Err(bad(format!("param line {v:?} needs a name and a type")));
            };
            let ty =
                parse_type(ty).ok_or_else(|| bad(format!("param {pname}: unknown type {ty:?}")))?;
            params.push(Param {
                name: pname.to_owned(),
                ty,
                default,
                description,
            });
        }
    }
    let name = name.ok_or_else(|| bad("missing `-- name:` header".into()))?;
    Ok(SavedQuery {
        name,
        purpose,
        params,
        sql: text.to_owned(),
        source: source.to_owned(),
    })
}

/// The built-in queries plus those in `dir`, by name.
pub fn load(dir: Option<&Path>) -> Result<BTreeMap<String, SavedQuery>> {
    let mut out = BTreeMap::new();
    for (file, text) in BUILTIN {
        let q = parse(text, &format!("builtin:{file}"))?;
        out.insert(q.name.clone(), q);
    }
    if let Some(dir) = dir {
        let entries = std::fs::read_dir(dir).map_err(|e| {
            Error::BadParam(format!(
                "cannot read queries directory {}: {e}",
                dir.display()
            ))
        })?;
        let mut paths: Vec<_> = entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "sql"))
            .collect();
        paths.sort();
        for p in paths {
            let text = std::fs::read_to_string(&p)
                .map_err(|e| Error::BadParam(format!("cannot read {}: {e}", p.display())))?;
            let q = parse(&text, &p.display().to_string())?;
            out.insert(q.name.clone(), q);
        }
    }
    Ok(out)
}

/// Parses a relative time like `-15m`, `-2h`, `-7d`, `-30s` into nanoseconds.
fn relative(s: &str) -> Option<i64> {
    let s = s.strip_prefix('-')?;
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit())?);
    let n: i64 = num.parse().ok()?;
    let secs = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return None,
    };
    Some(-n * secs * 1_000_000_000)
}

/// A parameter's value as DataFusion binds it.
pub fn bind(p: &Param, raw: &str, now_ns: i64) -> Result<ScalarValue> {
    let bad = |why: &str| Error::BadParam(format!("parameter {}: {raw:?} is not {why}", p.name));
    Ok(match p.ty {
        ParamType::String => ScalarValue::Utf8(Some(raw.to_owned())),
        ParamType::Int => {
            ScalarValue::Int64(Some(raw.trim().parse().map_err(|_| bad("an integer"))?))
        }
        ParamType::Float => {
            ScalarValue::Float64(Some(raw.trim().parse().map_err(|_| bad("a number"))?))
        }
        ParamType::Timestamp => {
            let ns = match relative(raw.trim()) {
                Some(d) => now_ns + d,
                None => match weft_ingest::time::parse_text(raw) {
                    Some(weft_ingest::time::Parsed::Text(ns))
                    | Some(weft_ingest::time::Parsed::EpochText(ns, _)) => ns,
                    None => return Err(bad("a time (RFC 3339, epoch, or relative like -1h)")),
                },
            };
            ScalarValue::TimestampNanosecond(Some(ns), Some("UTC".into()))
        }
    })
}

/// Binds `given` (name → text) to `q`'s parameters, filling defaults.
/// Unknown names and missing required parameters are errors.
pub fn bind_all(
    q: &SavedQuery,
    given: &HashMap<String, String>,
    now_ns: i64,
) -> Result<HashMap<String, ScalarValue>> {
    for k in given.keys() {
        if !q.params.iter().any(|p| &p.name == k) {
            let known: Vec<&str> = q.params.iter().map(|p| p.name.as_str()).collect();
            return Err(Error::BadParam(format!(
                "{} has no parameter {k:?} (it takes: {})",
                q.name,
                if known.is_empty() {
                    "none".into()
                } else {
                    known.join(", ")
                }
            )));
        }
    }
    let mut out = HashMap::new();
    for p in &q.params {
        let raw = match (given.get(&p.name), &p.default) {
            (Some(v), _) => v.clone(),
            (None, Some(d)) => d.clone(),
            (None, None) => {
                return Err(Error::BadParam(format!(
                    "{} needs parameter {} ({:?}{})",
                    q.name,
                    p.name,
                    p.ty,
                    if p.description.is_empty() {
                        String::new()
                    } else {
                        format!(": {}", p.description)
                    }
                )));
            }
        };
        out.insert(p.name.clone(), bind(p, &raw, now_ns)?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_is_parsed() {
        let q = parse(
            "-- name: x\n-- purpose: Does a thing.\n-- param: since timestamp = -1h : from when\n-- param: id string\nSELECT 1 WHERE $id = $id\n",
            "t",
        )
        .unwrap();
        assert_eq!(q.name, "x");
        assert_eq!(q.purpose, "Does a thing.");
        assert_eq!(q.params[0].default.as_deref(), Some("-1h"));
        assert_eq!(q.params[0].description, "from when");
        assert_eq!(q.params[1].default, None);
        assert_eq!(q.params[1].ty, ParamType::String);
    }

    #[test]
    fn binding_checks_names_types_and_requirements() {
        let q = parse(
            "-- name: x\n-- param: n int = 5\n-- param: id string\nSELECT 1",
            "t",
        )
        .unwrap();
        let given = |kv: &[(&str, &str)]| {
            kv.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let e = bind_all(&q, &given(&[]), 0).unwrap_err().to_string();
        assert!(e.contains("needs parameter id"), "{e}");
        let e = bind_all(&q, &given(&[("id", "a"), ("nope", "1")]), 0)
            .unwrap_err()
            .to_string();
        assert!(e.contains("has no parameter \"nope\""), "{e}");
        let e = bind_all(&q, &given(&[("id", "a"), ("n", "five")]), 0)
            .unwrap_err()
            .to_string();
        assert!(e.contains("is not an integer"), "{e}");
        let b = bind_all(&q, &given(&[("id", "x'; DROP TABLE logs; --")]), 0).unwrap();
        assert_eq!(
            b["id"],
            ScalarValue::Utf8(Some("x'; DROP TABLE logs; --".into()))
        );
        assert_eq!(b["n"], ScalarValue::Int64(Some(5)));
    }

    #[test]
    fn relative_and_absolute_times() {
        let p = Param {
            name: "t".into(),
            ty: ParamType::Timestamp,
            default: None,
            description: String::new(),
        };
        let now = 10_000_000_000_000;
        assert_eq!(
            bind(&p, "-1h", now).unwrap(),
            ScalarValue::TimestampNanosecond(Some(now - 3_600_000_000_000), Some("UTC".into()))
        );
        assert_eq!(
            bind(&p, "2023-11-14T22:13:20Z", now).unwrap(),
            ScalarValue::TimestampNanosecond(Some(1_700_000_000_000_000_000), Some("UTC".into()))
        );
        assert!(bind(&p, "soon", now).is_err());
    }

    #[test]
    fn every_builtin_parses() {
        let all = load(None).unwrap();
        assert_eq!(all.len(), BUILTIN.len(), "names are unique");
        for q in all.values() {
            assert!(!q.purpose.is_empty(), "{} has a purpose", q.name);
            for p in &q.params {
                assert!(
                    q.sql.contains(&format!("${}", p.name)),
                    "{} uses ${}",
                    q.name,
                    p.name
                );
            }
        }
    }
}
