//! The tokenizer against serde_json as an oracle: a table of hand-picked
//! cases, then property tests over generated and mutated JSON. Both must
//! agree on accept/reject, and on the value when both accept.

use proptest::prelude::*;
use serde_json::{Map, Number, Value};
use weft_scan::json::{self, ErrorKind, JsonNumber, JsonStr, Options, Visitor};

/// Builds a serde_json value from tokenizer events, with serde_json's own
/// rule for duplicate keys (the last one wins) so the two can be compared.
#[derive(Default)]
struct Builder {
    stack: Vec<(Option<String>, Value)>,
    key: Option<String>,
    done: Option<Value>,
    /// A number token too large for f64: serde_json rejects those.
    overflow: bool,
}

impl Builder {
    fn put(&mut self, v: Value) {
        match self.stack.last_mut() {
            None => self.done = Some(v),
            Some((_, Value::Array(a))) => a.push(v),
            Some((_, Value::Object(m))) => {
                m.insert(self.key.take().expect("key before value"), v);
            }
            Some(_) => unreachable!(),
        }
    }
}

impl<'a> Visitor<'a> for Builder {
    fn begin_object(&mut self, _: usize) {
        let k = self.key.take();
        self.stack.push((k, Value::Object(Map::new())));
    }
    fn end_object(&mut self, _: usize) {
        let (k, v) = self.stack.pop().unwrap();
        self.key = k;
        self.put(v);
    }
    fn begin_array(&mut self, _: usize) {
        let k = self.key.take();
        self.stack.push((k, Value::Array(Vec::new())));
    }
    fn end_array(&mut self, _: usize) {
        let (k, v) = self.stack.pop().unwrap();
        self.key = k;
        self.put(v);
    }
    fn key(&mut self, key: JsonStr<'a>) {
        self.key = Some(key.decode());
    }
    fn string(&mut self, value: JsonStr<'a>) {
        self.put(Value::String(value.decode()));
    }
    fn number(&mut self, n: JsonNumber<'a>) {
        let v = if let Some(i) = n.as_i64() {
            Value::Number(i.into())
        } else if let Some(u) = n
            .is_integer()
            .then(|| n.raw().parse::<u64>().ok())
            .flatten()
        {
            Value::Number(u.into())
        } else if let Some(f) = n.as_f64() {
            Value::Number(Number::from_f64(f).unwrap())
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

fn ours(input: &str, depth: usize) -> Result<(Value, bool), json::Error> {
    let mut b = Builder::default();
    json::parse(input, &mut b, Options { max_depth: depth })?;
    Ok((b.done.expect("a value"), b.overflow))
}

/// Checks agreement; returns whether the input was accepted.
fn agree(input: &str) -> bool {
    // serde_json accepts 127 levels of nesting; 128 here keeps the inputs
    // compared (all much shallower) under both limits.
    let theirs = serde_json::from_str::<Value>(input);
    match (ours(input, 128), theirs) {
        (Ok((v, false)), Ok(t)) => {
            assert_eq!(v, t, "values differ for {input:?}");
            true
        }
        (Ok((_, true)), Ok(t)) => {
            panic!("serde_json accepts an out-of-range number in {input:?}: {t}")
        }
        (Ok((_, true)), Err(e)) => {
            assert!(
                e.to_string().contains("number out of range"),
                "{input:?}: {e}"
            );
            true
        }
        (Err(_), Err(_)) => false,
        (Ok(_), Err(e)) => panic!("we accept, serde_json rejects {input:?}: {e}"),
        (Err(e), Ok(_)) => panic!("we reject ({e}), serde_json accepts {input:?}"),
    }
}

#[test]
fn hand_picked_valid_cases() {
    let cases = [
        r#"{}"#,
        r#"[]"#,
        r#" { "a" : 1 , "b" : [ true , false , null ] } "#,
        r#"{"msg":"caf\u00e9 \"quoted\" back\\slash \/ \b\f\n\r\t"}"#,
        r#"{"emoji":"\ud83d\ude00","raw":"😀 日本語 Zürich"}"#,
        r#"{"n":[0,-0,1.5,-1.5e10,1E+2,2e-3,123456789012345678,-9223372036854775808]}"#,
        r#"{"big":18446744073709551615,"bigger":18446744073709551616,"huge":1e308}"#,
        r#"{"a":{"b":{"c":{"d":[[[{}]]]}}}}"#,
        r#"{"dup":1,"dup":2}"#,
        r#""just a string""#,
        r#"42"#,
        "{\"tab\":\"a\\tb\"}\r\n",
    ];
    for c in cases {
        assert!(agree(c), "should accept {c:?}");
    }
}

#[test]
fn hand_picked_invalid_cases() {
    let cases = [
        "",
        "   ",
        "{",
        "}",
        r#"{"a"}"#,
        r#"{"a":}"#,
        r#"{"a":1,}"#,
        r#"[1,]"#,
        r#"[1 2]"#,
        r#"{"a":1}}"#,
        r#"{"a":1} x"#,
        r#"{a:1}"#,
        r#"{'a':1}"#,
        r#"{"a":tru}"#,
        r#"{"a":nul}"#,
        r#"{"a":01}"#,
        r#"{"a":1.}"#,
        r#"{"a":.5}"#,
        r#"{"a":-}"#,
        r#"{"a":1e}"#,
        r#"{"a":+1}"#,
        r#"{"a":NaN}"#,
        r#"{"a":"\x"}"#,
        r#"{"a":"\u12"}"#,
        r#"{"a":"\ud800"}"#,
        r#"{"a":"\ud800\u0041"}"#,
        r#"{"a":"\udc00"}"#,
        "{\"a\":\"tab\there\"}",
        "{\"a\":\"nl\nhere\"}",
        r#"{"a":"unterminated}"#,
        r#"{"a":1e400}"#,
    ];
    for c in cases {
        let accepted = agree(c);
        // 1e400 is grammatical: we accept the token, serde_json says out of range.
        if c.contains("1e400") {
            assert!(accepted);
        } else {
            assert!(!accepted, "should reject {c:?}");
        }
    }
}

#[test]
fn error_kinds_and_offsets_are_specific() {
    let kind = |s: &str| ours(s, 64).unwrap_err();
    assert_eq!(kind(r#"{"a" 1}"#).kind, ErrorKind::ExpectedColon);
    assert_eq!(kind(r#"{"a":1"#).kind, ErrorKind::UnexpectedEnd);
    assert_eq!(kind(r#"{"a":"\ud800"}"#).kind, ErrorKind::LoneSurrogate);
    assert_eq!(kind("{\"a\":\"x\u{1}\"}").kind, ErrorKind::ControlCharacter);
    assert_eq!(kind("{\"a\":\"x\u{1}\"}").offset, 7);
    assert_eq!(kind(r#"{"a":1} {}"#).kind, ErrorKind::TrailingCharacters);
    assert_eq!(kind(r#"{"a":1} {}"#).offset, 8);
    assert_eq!(
        kind(r#"{"a":1} {}"#).to_string(),
        "trailing characters after JSON value at byte 8"
    );
}

#[test]
fn depth_bomb_is_refused_without_recursion() {
    let ok = format!("{}{}", "[".repeat(64), "]".repeat(64));
    assert!(ours(&ok, 64).is_ok());
    let deep = format!("{}{}", "[".repeat(65), "]".repeat(65));
    assert_eq!(ours(&deep, 64).unwrap_err().kind, ErrorKind::TooDeep);
    // A million open brackets: refused at the limit, no stack overflow.
    let bomb = "[{\"a\":".repeat(500_000);
    assert_eq!(ours(&bomb, 64).unwrap_err().kind, ErrorKind::TooDeep);
}

#[test]
fn escape_into_round_trips_through_the_tokenizer() {
    let original = "quote\" back\\ nl\n tab\t cr\r bell\u{7} nul\u{0} é 😀";
    let mut escaped = String::new();
    json::escape_into(original, &mut escaped);
    let doc = format!("\"{escaped}\"");
    assert_eq!(
        serde_json::from_str::<String>(&doc).unwrap(),
        original,
        "serde_json reads our escaping"
    );
    assert_eq!(ours(&doc, 64).unwrap().0, Value::String(original.into()));
}

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|i| Value::Number(i.into())),
        any::<u64>().prop_map(|u| Value::Number(u.into())),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| Value::Number(Number::from_f64(f).unwrap())),
        any::<String>().prop_map(Value::String),
        "[a-z\"\\\\\u{0}-\u{1f}é😀]{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(6, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            prop::collection::vec(("[a-z._\"\u{e9}]{0,6}", inner), 0..8)
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn generated_documents_agree(v in arb_json()) {
        let compact = serde_json::to_string(&v).unwrap();
        prop_assert!(agree(&compact));
        let pretty = serde_json::to_string_pretty(&v).unwrap();
        prop_assert!(agree(&pretty));
    }

    #[test]
    fn mutated_documents_agree(v in arb_json(), at in any::<prop::sample::Index>(), byte in prop::sample::select(b"{}[]\",:\\ 0-.eE+tfnu\x01a".to_vec()), op in 0..3u8) {
        let mut s = serde_json::to_string(&v).unwrap().into_bytes();
        let i = at.index(s.len() + 1);
        match op {
            0 => s.insert(i, byte),
            1 if i < s.len() => { s.remove(i); }
            _ if i < s.len() => s[i] = byte,
            _ => s.push(byte),
        }
        if let Ok(text) = std::str::from_utf8(&s) {
            agree(text);
        }
    }

    #[test]
    fn arbitrary_json_alphabet_strings_agree(s in "[{}\\[\\]\",:0-9.eE+\\-tfrulsn \\\\a]{0,40}") {
        agree(&s);
    }
}

// Regressions found by fuzz/fuzz_targets/line_framer.rs. The BOM check used to
// wait until 3 bytes were buffered, which a small block size with short reads
// (a pipe, a socket) can postpone until after `fill_line` has started or a
// block has been handed out.

mod block_reader_bom {
    use std::io::{self, Read};

    use weft_scan::lines::{Block, BlockReader};

    /// Hands out at most `chunk` bytes per read, as a pipe may.
    struct ShortReads<'a> {
        data: &'a [u8],
        chunk: usize,
    }

    impl Read for ShortReads<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = buf.len().min(self.data.len()).min(self.chunk);
            buf[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            Ok(n)
        }
    }

    fn blocks(input: &[u8], block_size: usize, max_line: usize, chunk: usize) -> Vec<Block> {
        let mut r = BlockReader::new(ShortReads { data: input, chunk }, block_size, max_line);
        let mut out = Vec::new();
        while let Some(b) = r.next_block().unwrap() {
            out.push(b);
        }
        assert_eq!(r.bytes_read(), input.len() as u64);
        out
    }

    fn lines(blocks: &[Block]) -> Vec<u8> {
        blocks
            .iter()
            .flat_map(|b| match b {
                Block::Lines { bytes, .. } => bytes.clone(),
                Block::Oversized { .. } => panic!("unexpected oversized line"),
            })
            .collect()
    }

    /// Fuzz input [1, 1, 97, 0xEF, 0xBB, 0xBF]: a BOM read one byte at a
    /// time with block size 2 panicked in `fill_line` ("slice index starts at
    /// 2 but ends at 0"): the strip shifted the buffer under its search offset.
    #[test]
    fn block_reader_bom_in_short_reads_does_not_panic() {
        assert!(blocks(b"\xEF\xBB\xBF", 2, 2, 1).is_empty());
        for block_size in 1..=4 {
            for chunk in 1..=4 {
                let got = lines(&blocks(b"\xEF\xBB\xBFone\ntwo\n", block_size, 8, chunk));
                assert_eq!(got, b"one\ntwo\n", "block {block_size} chunk {chunk}");
            }
        }
    }

    /// With block size 2 and 2-byte reads, "\n" + BOM + "hello\n" gave one
    /// block "\n" and then `None`: the BOM after the first line was stripped as
    /// if at the start, which emptied the buffer and read as end of stream.
    #[test]
    fn block_reader_bom_after_first_line_is_data_not_end_of_stream() {
        let input = b"\n\xEF\xBB\xBFhello\n";
        for block_size in 1..=4 {
            for chunk in 1..=4 {
                let got = lines(&blocks(input, block_size, 16, chunk));
                assert_eq!(got, input, "block {block_size} chunk {chunk}");
            }
        }
    }
}

/// Strings of every length up to past the word-at-a-time scan (128 bytes),
/// with a quote escape, a `\u` escape, a multi-byte character or a raw
/// control byte at every position: serde_json agrees on each value, and a
/// control byte is reported where it is.
#[test]
fn every_position_of_short_and_long_strings() {
    for len in 0..160 {
        for at in 0..=len {
            let (head, tail) = ("x".repeat(at), "y".repeat(len - at));
            for mid in ["\\\"", "\\u00e9", "é", "\\\\", "", "\\n"] {
                let doc = format!("{{\"k{head}\":\"{head}{mid}{tail}\"}}");
                assert!(agree(&doc), "should accept {doc:?}");
            }
            let bad = format!("{{\"k\":\"{head}\u{1f}{tail}\"}}");
            let e = ours(&bad, 64).unwrap_err();
            assert_eq!(e.kind, ErrorKind::ControlCharacter, "{bad:?}");
            assert_eq!(e.offset, 6 + at, "{bad:?}");
            let open = format!("{{\"k\":\"{head}{tail}");
            assert!(!agree(&open), "should reject {open:?}");
            assert_eq!(ours(&open, 64).unwrap_err().kind, ErrorKind::UnexpectedEnd);
            let bad_key = format!("{{\"{head}\u{1}{tail}\":1}}");
            let e = ours(&bad_key, 64).unwrap_err();
            assert_eq!(
                (e.kind, e.offset),
                (ErrorKind::ControlCharacter, 2 + at),
                "{bad_key:?}"
            );
        }
    }
}
