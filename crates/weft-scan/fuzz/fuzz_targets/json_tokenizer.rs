//! The tokenizer against serde_json as an oracle, on arbitrary bytes.
//!
//! For every input that is UTF-8: `weft_scan::json::parse` (max_depth 128)
//! and `serde_json::from_str::<Value>` must agree on accept/reject, and on the
//! value when both accept. Known, intended differences (as in tests/oracle.rs):
//! - a number literal that overflows f64 (`1e400`) is a valid token for us;
//!   serde_json rejects the document with "number out of range";
//! - serde_json refuses the 128th level of nesting ("recursion limit
//!   exceeded"), `max_depth: 128` allows it, so a document exactly 128 deep is
//!   accepted by us only.
//!
//! On top of that, every string and key is decoded with `decode_into` (which
//! must append and agree with `as_plain`), re-escaped with `escape_into` and
//! read back, and container offsets must point at their brackets.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Number, Value};
use weft_scan::json::{self, JsonNumber, JsonStr, Options, Visitor};

const MAX_DEPTH: usize = 128;
/// serde_json's recursion limit: it fails on reaching this many open containers.
const SERDE_DEPTH_LIMIT: usize = 128;

struct Builder<'a> {
    input: &'a str,
    stack: Vec<(Option<String>, Value, usize)>,
    key: Option<String>,
    done: Option<Value>,
    /// A number token too large for f64: serde_json rejects those.
    overflow: bool,
    depth: usize,
    max_depth_seen: usize,
    scratch: String,
    /// Off in the builder that reads back `escape_into` output (no recursion).
    roundtrip: bool,
}

impl<'a> Builder<'a> {
    fn new(input: &'a str) -> Self {
        Self {
            input,
            stack: Vec::new(),
            key: None,
            done: None,
            overflow: false,
            depth: 0,
            max_depth_seen: 0,
            scratch: String::new(),
            roundtrip: true,
        }
    }

    fn put(&mut self, v: Value) {
        match self.stack.last_mut() {
            None => {
                assert!(self.done.is_none(), "two top-level values");
                self.done = Some(v);
            }
            Some((_, Value::Array(a), _)) => a.push(v),
            Some((_, Value::Object(m), _)) => {
                let k = self.key.take().expect("object member without a key");
                // Last duplicate wins, as in serde_json.
                m.insert(k, v);
            }
            Some(_) => unreachable!(),
        }
    }

    /// Decodes `s` every way the API offers and checks they agree.
    fn decode(&mut self, s: JsonStr<'a>) -> String {
        // decode_into appends: what is already in the buffer must stay.
        self.scratch.clear();
        self.scratch.push_str("\u{0}prefix");
        s.decode_into(&mut self.scratch);
        let decoded = self.scratch["\u{0}prefix".len()..].to_owned();
        assert!(self.scratch.starts_with("\u{0}prefix"));
        assert_eq!(decoded, s.decode(), "decode_into and decode differ");
        match s.as_plain() {
            Some(plain) => {
                assert!(!s.has_escapes());
                assert!(!plain.contains('\\'));
                assert_eq!(plain, decoded);
            }
            None => assert!(s.has_escapes() && s.raw().contains('\\')),
        }
        // The raw text is a slice of the input, right after an opening quote.
        let off = s.raw().as_ptr() as usize - self.input.as_ptr() as usize;
        assert!(off >= 1 && self.input.as_bytes()[off - 1] == b'"');
        assert_eq!(self.input.as_bytes().get(off + s.raw().len()), Some(&b'"'));

        if !self.roundtrip {
            return decoded;
        }
        // escape_into must produce something both tokenizers read back as `decoded`.
        let mut esc = String::from("\"");
        json::escape_into(&decoded, &mut esc);
        esc.push('"');
        let back: String = serde_json::from_str(&esc)
            .unwrap_or_else(|e| panic!("serde_json rejects escape_into output {esc:?}: {e}"));
        assert_eq!(back, decoded, "escape_into round trip through serde_json");
        let mut b = Builder::new(&esc);
        b.roundtrip = false;
        json::parse(&esc, &mut b, Options::default())
            .unwrap_or_else(|e| panic!("we reject our own escape_into output {esc:?}: {e}"));
        assert_eq!(b.done, Some(Value::String(decoded.clone())));
        decoded
    }

    fn open(&mut self, offset: usize, bracket: u8, v: Value) {
        assert_eq!(
            self.input.as_bytes()[offset],
            bracket,
            "begin offset {offset}"
        );
        self.depth += 1;
        self.max_depth_seen = self.max_depth_seen.max(self.depth);
        let k = self.key.take();
        self.stack.push((k, v, offset));
    }

    fn close(&mut self, end: usize, bracket: u8) {
        assert_eq!(self.input.as_bytes()[end - 1], bracket, "end offset {end}");
        let (k, v, begin) = self.stack.pop().expect("close without open");
        assert!(begin < end);
        self.depth -= 1;
        self.key = k;
        self.put(v);
    }
}

impl<'a> Visitor<'a> for Builder<'a> {
    fn begin_object(&mut self, offset: usize) {
        self.open(offset, b'{', Value::Object(Map::new()));
    }
    fn end_object(&mut self, end: usize) {
        self.close(end, b'}');
    }
    fn begin_array(&mut self, offset: usize) {
        self.open(offset, b'[', Value::Array(Vec::new()));
    }
    fn end_array(&mut self, end: usize) {
        self.close(end, b']');
    }
    fn key(&mut self, key: JsonStr<'a>) {
        assert!(
            matches!(self.stack.last(), Some((_, Value::Object(_), _))),
            "key outside an object"
        );
        assert!(self.key.is_none(), "two keys in a row");
        let k = self.decode(key);
        self.key = Some(k);
    }
    fn string(&mut self, value: JsonStr<'a>) {
        let s = self.decode(value);
        self.put(Value::String(s));
    }
    fn number(&mut self, n: JsonNumber<'a>) {
        let raw = n.raw();
        assert_eq!(
            n.is_integer(),
            !raw.contains(['.', 'e', 'E']),
            "is_integer for {raw:?}"
        );
        let v = if let Some(i) = n.as_i64() {
            assert_eq!(i.to_string(), raw, "as_i64 for {raw:?}");
            Value::Number(i.into())
        } else if let Some(u) = n.is_integer().then(|| raw.parse::<u64>().ok()).flatten() {
            Value::Number(u.into())
        } else if let Some(f) = n.as_f64() {
            Value::Number(Number::from_f64(f).expect("as_f64 is finite"))
        } else {
            self.overflow = true;
            Value::Null
        };
        self.put(v);
    }
    fn boolean(&mut self, b: bool) {
        self.put(Value::Bool(b));
    }
    fn null(&mut self) {
        self.put(Value::Null);
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(input) = std::str::from_utf8(data) else {
        return;
    };
    let mut b = Builder::new(input);
    let ours = json::parse(
        input,
        &mut b,
        Options {
            max_depth: MAX_DEPTH,
        },
    );
    let theirs = serde_json::from_str::<Value>(input);
    match (ours, theirs) {
        (Ok(()), theirs) => {
            assert!(
                b.stack.is_empty() && b.depth == 0,
                "unclosed containers on Ok"
            );
            let ours = b.done.take().expect("Ok without a value");
            match theirs {
                Ok(t) if !b.overflow => {
                    assert_eq!(ours, t, "values differ for {input:?}")
                }
                Ok(t) => panic!("serde_json accepts an out-of-range number in {input:?}: {t}"),
                Err(e) => {
                    let msg = e.to_string();
                    let overflow = b.overflow && msg.contains("number out of range");
                    let depth = b.max_depth_seen >= SERDE_DEPTH_LIMIT
                        && msg.contains("recursion limit exceeded");
                    assert!(
                        overflow || depth,
                        "we accept, serde_json rejects {input:?}: {e}"
                    );
                }
            }
        }
        (Err(_), Err(_)) => {}
        (Err(e), Ok(_)) => panic!("we reject ({e}), serde_json accepts {input:?}"),
    }
});
