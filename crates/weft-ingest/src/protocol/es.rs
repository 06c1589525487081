//! Elasticsearch `_bulk`: pairs of action and document lines.
//!
//! `index` and `create` store their document with the index (from the
//! action's `_index`, else the path) as field `_index` and a given `_id` as
//! field `_id`. `update` and `delete` cannot apply to an append-only log
//! store: each is answered as its own failed item and kept in `rejects`, as
//! is a document that is not a JSON object. A malformed action line makes
//! the rest of the body unreadable (is the next line a document or an
//! action?), so, as Elasticsearch does, the whole request is refused; weft
//! also keeps the body as one reject.

use serde_json::{Map, Value};
use weft_scan::lines::Lines;

use super::{BulkItem, Obj, inner_of_object};
use crate::body::Sink;
use crate::reject::Reason;

/// An action line, read.
struct Action {
    kind: &'static str,
    index: Option<String>,
    id: Option<String>,
}

/// The action lines shippers send for nearly every document, read without
/// a JSON parser: `{"index":{}}`, `{"create":{}}`, and the same with a
/// plain `"_index":"name"` (no escapes). Anything else takes the full path.
fn common_action(raw: &[u8]) -> Option<Action> {
    let (kind, rest) = if let Some(rest) = raw.strip_prefix(b"{\"index\":{") {
        ("index", rest)
    } else {
        ("create", raw.strip_prefix(b"{\"create\":{")?)
    };
    let index = if rest == b"}}" {
        None
    } else {
        let name = rest.strip_prefix(b"\"_index\":\"")?.strip_suffix(b"\"}}")?;
        if name.iter().any(|&b| b == b'"' || b == b'\\' || b < 0x20) {
            return None;
        }
        Some(std::str::from_utf8(name).ok()?.to_owned())
    };
    Some(Action {
        kind,
        index,
        id: None,
    })
}

fn parse_action(raw: &[u8]) -> Result<Action, String> {
    if let Some(action) = common_action(raw) {
        return Ok(action);
    }
    let map: Map<String, Value> =
        serde_json::from_slice(raw).map_err(|e| format!("not a JSON object ({e})"))?;
    let mut members = map.into_iter();
    let (Some((name, meta)), None) = (members.next(), members.next()) else {
        return Err("an action line holds exactly one action".into());
    };
    let kind = match name.as_str() {
        "index" => "index",
        "create" => "create",
        "update" => "update",
        "delete" => "delete",
        other => {
            return Err(format!(
                "expected one of [create, delete, index, update] but found [{other}]"
            ));
        }
    };
    let Value::Object(meta) = meta else {
        return Err(format!("the {kind} action's metadata is not an object"));
    };
    let text = |key: &str| -> Result<Option<String>, String> {
        match meta.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(Value::Number(n)) if key == "_id" => Ok(Some(n.to_string())),
            Some(_) => Err(format!("{key} must be a string")),
        }
    };
    Ok(Action {
        kind,
        index: text("_index")?,
        id: text("_id")?,
    })
}

pub(super) fn decode(body: &[u8], path_index: Option<&str>, max_line: usize, sink: &mut Sink<'_>) {
    // Frame after a BOM, but a refused body is kept as it came, BOM and all.
    let framed = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body);
    let mut lines = Lines::new(framed, 1, max_line).peekable();
    let mut text = String::new();
    while let Some(line) = lines.next() {
        if line.too_long.is_some() {
            return refuse(
                sink,
                body,
                line.number,
                "the action line is over the line limit",
            );
        }
        let action = match parse_action(line.bytes) {
            Ok(a) => a,
            Err(why) => return refuse(sink, body, line.number, &why),
        };
        let index = action.index.or_else(|| path_index.map(str::to_owned));
        let mut item = BulkItem {
            action: action.kind.to_owned(),
            index: index.clone(),
            id: action.id.clone(),
            error: None,
        };
        if action.kind == "delete" {
            let reason = unsupported("delete");
            item.error = Some(("illegal_argument_exception".into(), reason.to_string()));
            sink.reject(line.number, line.bytes, reason);
            sink.items.push(item);
            continue;
        }
        // The document is the very next line. `Lines` skips blank lines, so
        // a gap in the numbers is an empty document: this item fails, and
        // the line after the gap is read as the next action, as
        // Elasticsearch reads it.
        let Some(doc) = lines.next_if(|d| d.number == line.number + 1) else {
            if lines.peek().is_none() {
                return refuse(
                    sink,
                    body,
                    line.number,
                    &format!("the {} action has no document line", action.kind),
                );
            }
            let reason = Reason::Protocol {
                label: "empty_document",
                detail: format!("the document line after line {} is empty", line.number),
            };
            item.error = Some(("document_parsing_exception".into(), reason.to_string()));
            sink.reject(line.number + 1, b"", reason);
            sink.items.push(item);
            continue;
        };
        if action.kind == "update" {
            let reason = unsupported("update");
            item.error = Some(("illegal_argument_exception".into(), reason.to_string()));
            let mut raw = line.bytes.to_vec();
            raw.push(b'\n');
            raw.extend_from_slice(doc.bytes);
            sink.reject(doc.number, &raw, reason);
            sink.items.push(item);
            continue;
        }
        let refused = if let Some(len) = doc.too_long {
            let reason = Reason::TooLong { len, max: max_line };
            sink.reject(doc.number, doc.bytes, reason.clone());
            Some(("document_parsing_exception", reason))
        } else if let Some(index) = &index {
            store(
                sink,
                doc.number,
                doc.bytes,
                index,
                action.id.as_deref(),
                &mut text,
            )
            .map(|r| ("document_parsing_exception", r))
        } else {
            let reason = Reason::Protocol {
                label: "no_index",
                detail: "no index: name it in the path (/{index}/_bulk) or in the action's _index"
                    .into(),
            };
            sink.reject(doc.number, doc.bytes, reason.clone());
            Some(("action_request_validation_exception", reason))
        };
        item.error = refused.map(|(kind, r)| (kind.to_owned(), r.to_string()));
        sink.items.push(item);
    }
    if sink.items.is_empty() {
        sink.fatal = Some("the bulk request holds no actions".into());
    }
}

/// Stores one document with `_index` (and `_id`) added; returns the reason
/// when it was refused.
fn store(
    sink: &mut Sink<'_>,
    line: u64,
    doc: &[u8],
    index: &str,
    id: Option<&str>,
    text: &mut String,
) -> Option<Reason> {
    let inner = std::str::from_utf8(doc).ok().and_then(inner_of_object);
    let Some(inner) = inner else {
        // Not an object (or not UTF-8): the builder names why, with the
        // document's own bytes in `rejects`.
        return sink.push(line, doc);
    };
    // The added members go last, so a parse error's byte offset still
    // points into the document as sent.
    text.clear();
    let mut obj = Obj::new(text);
    obj.members(inner);
    obj.str("_index", index);
    if let Some(id) = id {
        obj.str("_id", id);
    }
    obj.close();
    match sink.builder.try_push(text.as_bytes()) {
        Ok(()) => None,
        Err(reason) => {
            sink.reject(line, doc, reason.clone());
            Some(reason)
        }
    }
}

fn unsupported(action: &str) -> Reason {
    Reason::Protocol {
        label: "unsupported_action",
        detail: format!(
            "bulk action {action:?} is not supported: weft stores logs append-only (use index or create)"
        ),
    }
}

/// A body whose framing cannot be followed: nothing is stored but the body
/// itself, as one reject.
fn refuse(sink: &mut Sink<'_>, body: &[u8], line: u64, why: &str) {
    sink.fail(
        body,
        "malformed_bulk",
        format!(
            "malformed action/metadata line [{line}]: {why}; nothing of this request was indexed"
        ),
    );
}

#[cfg(test)]
mod tests {
    use arrow::array::AsArray;

    use crate::protocol::Format;
    use crate::protocol::testing::column;

    fn decode(body: &str, index: Option<&str>) -> crate::BodyBatch {
        let index = index.map(str::to_owned);
        crate::protocol::testing::decode(Format::EsBulk { index }, body.as_bytes())
    }

    #[test]
    fn documents_are_stored_with_their_index_and_bad_items_fail_alone() {
        let body = concat!(
            "{\"index\":{\"_index\":\"web\",\"_id\":\"a1\"}}\n",
            "{\"message\":\"hello\",\"level\":\"warn\"}\n",
            "{\"create\":{}}\n",
            "{}\n",
            "{\"delete\":{\"_id\":\"x\"}}\n",
            "{\"index\":{}}\n",
            "{\"message\": oops}\n",
            "{\"update\":{\"_id\":\"y\"}}\n",
            "{\"doc\":{\"a\":1}}\n",
            "{\"index\":{}}\n",
            "[1,2]\n",
        );
        let out = decode(body, Some("app"));
        assert_eq!(out.fatal, None);
        assert_eq!(out.counts.accepted, 2);
        assert_eq!(out.counts.rejected, 4);
        let logs = crate::body::concat_logs(&out.logs).unwrap();
        assert_eq!(
            column(&logs, "_index"),
            vec![Some("web".into()), Some("app".into())]
        );
        assert_eq!(column(&logs, "_id"), vec![Some("a1".into()), None]);
        assert_eq!(column(&logs, "level"), vec![Some("warn".into()), None]);
        let items: Vec<(&str, bool)> = out
            .items
            .iter()
            .map(|i| (i.action.as_str(), i.error.is_none()))
            .collect();
        assert_eq!(
            items,
            vec![
                ("index", true),
                ("create", true),
                ("delete", false),
                ("index", false),
                ("update", false),
                ("index", false)
            ]
        );
        // The bad document is kept as sent, with its line.
        let rejects = out.rejects.unwrap();
        let raw = rejects.column_by_name("raw").unwrap().as_binary::<i32>();
        let lines = rejects
            .column_by_name("line")
            .unwrap()
            .as_primitive::<arrow::datatypes::UInt64Type>();
        assert_eq!(raw.value(1), b"{\"message\": oops}");
        assert_eq!(lines.value(1), 7);
        assert_eq!(
            raw.value(2),
            b"{\"update\":{\"_id\":\"y\"}}\n{\"doc\":{\"a\":1}}"
        );
    }

    #[test]
    fn common_action_lines_read_as_the_json_parser_reads_them() {
        for line in [
            &br#"{"index":{}}"#[..],
            br#"{"create":{}}"#,
            br#"{"index":{"_index":"app-logs"}}"#,
            br#"{"create":{"_index":"a.b-c"}}"#,
        ] {
            let fast = super::common_action(line).expect("common form");
            let map: serde_json::Map<String, serde_json::Value> =
                serde_json::from_slice(line).unwrap();
            let (kind, meta) = map.into_iter().next().unwrap();
            assert_eq!(fast.kind, kind);
            assert_eq!(
                fast.index.as_deref(),
                meta.get("_index").and_then(|v| v.as_str())
            );
        }
        for line in [
            &br#"{"index":{"_index":"a\"b"}}"#[..],
            br#"{"index":{"_id":"1"}}"#,
            br#"{"index":{}} "#,
            br#"{"delete":{}}"#,
            br#"{"index":{"_index":"x"},"create":{}}"#,
        ] {
            assert!(super::common_action(line).is_none(), "{line:?}");
        }
    }

    #[test]
    fn an_empty_document_line_fails_its_action_alone() {
        let out = decode("{\"index\":{}}\n\n{\"index\":{}}\n{\"m\":1}\n", Some("i"));
        assert_eq!(out.fatal, None);
        assert_eq!((out.counts.accepted, out.counts.rejected), (1, 1));
        let errors: Vec<bool> = out.items.iter().map(|i| i.error.is_some()).collect();
        assert_eq!(errors, vec![true, false]);
        assert_eq!(
            column(&crate::body::concat_logs(&out.logs).unwrap(), "m"),
            vec![Some("1".into())]
        );
        assert_eq!(out.errors[0].line, 2);
    }

    #[test]
    fn a_document_without_an_index_fails_alone() {
        let out = decode(
            "{\"index\":{}}\n{\"a\":1}\n{\"index\":{\"_index\":\"i\"}}\n{\"a\":2}\n",
            None,
        );
        assert_eq!(out.counts.accepted, 1);
        assert_eq!(
            out.items[0].error.as_ref().unwrap().0,
            "action_request_validation_exception"
        );
    }

    #[test]
    fn a_malformed_action_line_refuses_the_whole_body_and_keeps_it() {
        for body in [
            "{\"index\":{}}\n{\"a\":1}\nnot json\n{\"a\":2}\n",
            "{\"index\":{}}\n{\"a\":1}\n{\"upsert\":{}}\n{\"a\":2}\n",
            "{\"index\":{},\"create\":{}}\n{\"a\":1}\n",
            // Found by the fuzzer: the kept body lost its BOM.
            "\u{feff}{\"index\":{}}\n{\"a\":1}\nnot json\n",
            "{\"index\":\"x\"}\n{\"a\":1}\n",
            "{\"index\":{}}\n",
        ] {
            let out = decode(body, Some("i"));
            assert!(
                out.fatal
                    .as_deref()
                    .unwrap()
                    .starts_with("malformed action"),
                "{body}"
            );
            assert!(out.logs.is_empty(), "{body}");
            assert_eq!(out.counts.rejected, 1);
            let rejects = out.rejects.unwrap();
            let raw = rejects.column_by_name("raw").unwrap().as_binary::<i32>();
            assert_eq!(raw.value(0), body.as_bytes());
        }
        assert!(decode("\n\n", Some("i")).fatal.is_some());
    }
}
