//! A strict JSON tokenizer (RFC 8259) that reports values to a [`Visitor`]
//! instead of building a tree.
//!
//! The input is a `&str`, so UTF-8 is validated once per line by the caller
//! (`std::str::from_utf8` is SIMD-accelerated) and every string the visitor
//! sees is a zero-copy slice of the line. String ends are found eight
//! bytes at a time for the first 128 bytes (most keys and values end there),
//! then with `memchr2` on `"` and `\`; escapes are checked while scanning
//! and decoded only when the visitor asks ([`JsonStr::decode_into`]).
//!
//! Defined answers for hostile input:
//! - nesting deeper than the limit ([`DEFAULT_MAX_DEPTH`]) is an error, and the
//!   tokenizer never recurses, so a depth bomb costs no stack;
//! - numbers are checked against the JSON grammar only; a literal too large
//!   for `i64`/`f64` is still a valid token ([`JsonNumber`] says how it fits);
//! - a lone UTF-16 surrogate in a `\u` escape is an error, as in serde_json;
//! - duplicate keys are all reported, in order: what they mean is the
//!   visitor's decision.

use std::fmt;

use memchr::memchr2;

/// Default nesting limit for objects and arrays.
pub const DEFAULT_MAX_DEPTH: usize = 64;

/// Hard upper bound on the nesting limit (the container stack is a bit set).
pub const MAX_DEPTH_LIMIT: usize = 128;

/// Why a line is not valid JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    Empty,
    UnexpectedEnd,
    UnexpectedByte(u8),
    ExpectedColon,
    ExpectedKey,
    ExpectedCommaOrEnd,
    InvalidLiteral,
    InvalidNumber,
    InvalidEscape,
    LoneSurrogate,
    ControlCharacter,
    TooDeep,
    TrailingCharacters,
}

/// A tokenizer error: what went wrong and the byte offset where it was seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{kind} at byte {offset}")]
pub struct Error {
    pub kind: ErrorKind,
    pub offset: usize,
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ErrorKind::Empty => f.write_str("empty input"),
            ErrorKind::UnexpectedEnd => f.write_str("unexpected end of input"),
            ErrorKind::UnexpectedByte(b) if b.is_ascii_graphic() => {
                write!(f, "unexpected character '{}'", *b as char)
            }
            ErrorKind::UnexpectedByte(b) => write!(f, "unexpected byte 0x{b:02x}"),
            ErrorKind::ExpectedColon => f.write_str("expected ':' after object key"),
            ErrorKind::ExpectedKey => f.write_str("expected a string object key"),
            ErrorKind::ExpectedCommaOrEnd => f.write_str("expected ',' or a closing bracket"),
            ErrorKind::InvalidLiteral => f.write_str("invalid literal"),
            ErrorKind::InvalidNumber => f.write_str("invalid number"),
            ErrorKind::InvalidEscape => f.write_str("invalid escape sequence"),
            ErrorKind::LoneSurrogate => f.write_str("unpaired UTF-16 surrogate in \\u escape"),
            ErrorKind::ControlCharacter => f.write_str("unescaped control character in string"),
            ErrorKind::TooDeep => f.write_str("nesting too deep"),
            ErrorKind::TrailingCharacters => f.write_str("trailing characters after JSON value"),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A JSON string token: the text between the quotes, still escaped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JsonStr<'a> {
    raw: &'a str,
    escaped: bool,
}

impl<'a> JsonStr<'a> {
    /// Wraps text that was between a JSON string's quotes. Meant for text the
    /// tokenizer accepted; anything else decodes without panicking, keeping
    /// malformed escapes as written.
    pub fn from_raw(raw: &'a str) -> Self {
        Self {
            raw,
            escaped: raw.contains('\\'),
        }
    }

    /// The text between the quotes, escapes left as written.
    pub fn raw(&self) -> &'a str {
        self.raw
    }

    /// True when the raw text contains a backslash escape.
    pub fn has_escapes(&self) -> bool {
        self.escaped
    }

    /// The unescaped text without copying, when there is nothing to unescape.
    pub fn as_plain(&self) -> Option<&'a str> {
        (!self.escaped).then_some(self.raw)
    }

    /// Appends the unescaped text to `out`. The tokenizer has already checked
    /// every escape, so this cannot fail.
    pub fn decode_into(&self, out: &mut String) {
        if !self.escaped {
            out.push_str(self.raw);
            return;
        }
        let b = self.raw.as_bytes();
        let mut i = 0;
        let mut run = 0;
        while let Some(off) = memchr::memchr(b'\\', &b[i..]) {
            i += off;
            out.push_str(&self.raw[run..i]);
            let (c, len) = match b.get(i + 1) {
                Some(b'"') => ('"', 2),
                Some(b'\\') => ('\\', 2),
                Some(b'/') => ('/', 2),
                Some(b'b') => ('\u{8}', 2),
                Some(b'f') => ('\u{c}', 2),
                Some(b'n') => ('\n', 2),
                Some(b'r') => ('\r', 2),
                Some(b't') => ('\t', 2),
                Some(b'u') => match b.get(i + 2..i + 6).and_then(hex4) {
                    Some(hi @ 0xD800..=0xDBFF) => {
                        match (b.get(i + 6..i + 8), b.get(i + 8..i + 12).and_then(hex4)) {
                            (Some(b"\\u"), Some(lo @ 0xDC00..=0xDFFF)) => {
                                let cp = 0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00);
                                (char::from_u32(cp).unwrap_or('\u{FFFD}'), 12)
                            }
                            _ => ('\u{FFFD}', 6),
                        }
                    }
                    Some(v) => (char::from_u32(v).unwrap_or('\u{FFFD}'), 6),
                    None => ('\\', 1),
                },
                _ => ('\\', 1),
            };
            out.push(c);
            i += len;
            run = i;
        }
        out.push_str(&self.raw[run..]);
    }

    /// The unescaped text as an owned string.
    pub fn decode(&self) -> String {
        let mut s = String::with_capacity(self.raw.len());
        self.decode_into(&mut s);
        s
    }
}

/// A JSON number token, as written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JsonNumber<'a> {
    raw: &'a str,
    integer: bool,
}

impl<'a> JsonNumber<'a> {
    /// Wraps a number token the tokenizer accepted (`integer`: no fraction
    /// or exponent).
    pub fn from_raw(raw: &'a str, integer: bool) -> Self {
        Self { raw, integer }
    }

    pub fn raw(&self) -> &'a str {
        self.raw
    }

    /// True when written without fraction or exponent.
    pub fn is_integer(&self) -> bool {
        self.integer
    }

    /// The value as `i64`, when it is an integer literal that fits. `-0` is
    /// not: it is the float negative zero, as serde_json reads it.
    pub fn as_i64(&self) -> Option<i64> {
        if self.integer && self.raw != "-0" {
            self.raw.parse().ok()
        } else {
            None
        }
    }

    /// The value as a finite `f64` (rounded to nearest), or `None` when it
    /// overflows to infinity.
    pub fn as_f64(&self) -> Option<f64> {
        self.raw.parse::<f64>().ok().filter(|f| f.is_finite())
    }
}

/// Receives tokens in document order. Offsets are byte offsets into the input:
/// `begin_*` gets the offset of the opening bracket, `end_*` the offset just
/// past the closing one, so `&input[begin..end]` is the container's raw text.
pub trait Visitor<'a> {
    fn begin_object(&mut self, offset: usize);
    fn end_object(&mut self, end: usize);
    fn begin_array(&mut self, offset: usize);
    fn end_array(&mut self, end: usize);
    fn key(&mut self, key: JsonStr<'a>);
    fn string(&mut self, value: JsonStr<'a>);
    fn number(&mut self, value: JsonNumber<'a>);
    fn boolean(&mut self, value: bool);
    fn null(&mut self);
}

/// Tokenizer settings.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Deepest nesting of objects and arrays accepted (at most [`MAX_DEPTH_LIMIT`]).
    pub max_depth: usize,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            max_depth: DEFAULT_MAX_DEPTH,
        }
    }
}

/// Tokenizes one JSON value (with optional surrounding whitespace).
///
/// Events already delivered before an error stay delivered; a caller that
/// builds output must discard it when this returns `Err`.
///
/// ```
/// use weft_scan::json::{parse, JsonNumber, JsonStr, Visitor, Options};
///
/// #[derive(Default)]
/// struct Keys(Vec<String>);
/// impl<'a> Visitor<'a> for Keys {
///     fn begin_object(&mut self, _: usize) {}
///     fn end_object(&mut self, _: usize) {}
///     fn begin_array(&mut self, _: usize) {}
///     fn end_array(&mut self, _: usize) {}
///     fn key(&mut self, k: JsonStr<'a>) { self.0.push(k.decode()) }
///     fn string(&mut self, _: JsonStr<'a>) {}
///     fn number(&mut self, _: JsonNumber<'a>) {}
///     fn boolean(&mut self, _: bool) {}
///     fn null(&mut self) {}
/// }
///
/// let mut keys = Keys::default();
/// parse(r#"{"msg":"hi","caf\u00e9":{"n":1}}"#, &mut keys, Options::default()).unwrap();
/// assert_eq!(keys.0, ["msg", "café", "n"]);
/// assert!(parse("{\"a\":}", &mut keys, Options::default()).is_err());
/// ```
pub fn parse<'a, V: Visitor<'a>>(input: &'a str, visitor: &mut V, options: Options) -> Result<()> {
    let max_depth = options.max_depth.clamp(1, MAX_DEPTH_LIMIT);
    Tokenizer {
        input,
        bytes: input.as_bytes(),
        pos: 0,
        // Bit i set: container at depth i+1 is an object.
        stack: 0,
        depth: 0,
        max_depth,
    }
    .run(visitor)
}

struct Tokenizer<'a> {
    input: &'a str,
    bytes: &'a [u8],
    pos: usize,
    stack: u128,
    depth: usize,
    max_depth: usize,
}

impl<'a> Tokenizer<'a> {
    fn err<T>(&self, kind: ErrorKind) -> Result<T> {
        Err(Error {
            kind,
            offset: self.pos,
        })
    }

    #[inline]
    fn skip_ws(&mut self) {
        while let Some(&b) = self.bytes.get(self.pos) {
            if matches!(b, b' ' | b'\t' | b'\n' | b'\r') {
                self.pos += 1;
            } else {
                break;
            }
        }
    }

    #[inline]
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn push(&mut self, object: bool) -> Result<()> {
        if self.depth >= self.max_depth {
            return self.err(ErrorKind::TooDeep);
        }
        if object {
            self.stack |= 1 << self.depth;
        } else {
            self.stack &= !(1 << self.depth);
        }
        self.depth += 1;
        Ok(())
    }

    #[inline]
    fn top_is_object(&self) -> bool {
        self.stack & (1 << (self.depth - 1)) != 0
    }

    fn run<V: Visitor<'a>>(mut self, v: &mut V) -> Result<()> {
        self.skip_ws();
        if self.pos == self.bytes.len() {
            return self.err(ErrorKind::Empty);
        }
        'value: loop {
            // A value is expected at `pos` (whitespace already skipped).
            match self.peek() {
                None => return self.err(ErrorKind::UnexpectedEnd),
                Some(b'{') => {
                    self.push(true)?;
                    v.begin_object(self.pos);
                    self.pos += 1;
                    self.skip_ws();
                    if self.peek() == Some(b'}') {
                        self.pos += 1;
                        self.depth -= 1;
                        v.end_object(self.pos);
                    } else {
                        self.member_key(v)?;
                        continue 'value;
                    }
                }
                Some(b'[') => {
                    self.push(false)?;
                    v.begin_array(self.pos);
                    self.pos += 1;
                    self.skip_ws();
                    if self.peek() == Some(b']') {
                        self.pos += 1;
                        self.depth -= 1;
                        v.end_array(self.pos);
                    } else {
                        continue 'value;
                    }
                }
                Some(b'"') => {
                    let s = self.string()?;
                    v.string(s);
                }
                Some(b't') => {
                    self.literal(b"true")?;
                    v.boolean(true);
                }
                Some(b'f') => {
                    self.literal(b"false")?;
                    v.boolean(false);
                }
                Some(b'n') => {
                    self.literal(b"null")?;
                    v.null();
                }
                Some(b'-' | b'0'..=b'9') => {
                    let n = self.number()?;
                    v.number(n);
                }
                Some(b) => return self.err(ErrorKind::UnexpectedByte(b)),
            }
            // After a value: close containers or move to the next member.
            loop {
                self.skip_ws();
                if self.depth == 0 {
                    break 'value;
                }
                let object = self.top_is_object();
                match (self.peek(), object) {
                    (Some(b','), true) => {
                        self.pos += 1;
                        self.skip_ws();
                        self.member_key(v)?;
                        continue 'value;
                    }
                    (Some(b','), false) => {
                        self.pos += 1;
                        self.skip_ws();
                        continue 'value;
                    }
                    (Some(b'}'), true) => {
                        self.pos += 1;
                        self.depth -= 1;
                        v.end_object(self.pos);
                    }
                    (Some(b']'), false) => {
                        self.pos += 1;
                        self.depth -= 1;
                        v.end_array(self.pos);
                    }
                    (None, _) => return self.err(ErrorKind::UnexpectedEnd),
                    _ => return self.err(ErrorKind::ExpectedCommaOrEnd),
                }
            }
        }
        if self.pos != self.bytes.len() {
            return self.err(ErrorKind::TrailingCharacters);
        }
        Ok(())
    }

    /// Reads `"key"` `:` and leaves `pos` at the member's value.
    fn member_key<V: Visitor<'a>>(&mut self, v: &mut V) -> Result<()> {
        match self.peek() {
            Some(b'"') => {}
            None => return self.err(ErrorKind::UnexpectedEnd),
            Some(_) => return self.err(ErrorKind::ExpectedKey),
        }
        let k = self.string()?;
        self.skip_ws();
        match self.peek() {
            Some(b':') => self.pos += 1,
            None => return self.err(ErrorKind::UnexpectedEnd),
            Some(_) => return self.err(ErrorKind::ExpectedColon),
        }
        v.key(k);
        self.skip_ws();
        Ok(())
    }

    fn literal(&mut self, word: &[u8]) -> Result<()> {
        let end = self.pos + word.len();
        if self.bytes.get(self.pos..end) == Some(word) {
            self.pos = end;
            Ok(())
        } else if end > self.bytes.len() && word.starts_with(&self.bytes[self.pos..]) {
            self.pos = self.bytes.len();
            self.err(ErrorKind::UnexpectedEnd)
        } else {
            self.err(ErrorKind::InvalidLiteral)
        }
    }

    /// Scans a string starting at the opening quote; leaves `pos` after the closing one.
    fn string(&mut self) -> Result<JsonStr<'a>> {
        let start = self.pos + 1;
        let mut i = start;
        let mut escaped = false;
        loop {
            let stop = match self.short_scan(&mut i) {
                Some(stop) => stop,
                None => {
                    let Some(off) = memchr2(b'"', b'\\', &self.bytes[i..]) else {
                        self.pos = self.bytes.len();
                        return self.err(ErrorKind::UnexpectedEnd);
                    };
                    self.check_controls(i, i + off)?;
                    i + off
                }
            };
            match self.bytes[stop] {
                b'"' => {
                    self.pos = stop + 1;
                    return Ok(JsonStr {
                        raw: &self.input[start..stop],
                        escaped,
                    });
                }
                b'\\' => {
                    escaped = true;
                    i = self.escape(stop)?;
                }
                _ => {
                    self.pos = stop;
                    return self.err(ErrorKind::ControlCharacter);
                }
            }
        }
    }

    /// Most keys and values are short: look for the string's next `"`,
    /// `\` or control byte eight bytes at a time, for a few words, before
    /// a longer string is left to `memchr2`. Returns where it is, or `None`
    /// with `i` moved past the bytes found clean.
    #[inline]
    fn short_scan(&self, i: &mut usize) -> Option<usize> {
        for _ in 0..SHORT_WORDS {
            let word = self.bytes.get(*i..*i + 8)?;
            let k = first_special(u64::from_le_bytes(word.try_into().ok()?));
            if k < 8 {
                return Some(*i + k);
            }
            *i += 8;
        }
        None
    }

    /// Rejects raw control characters in `bytes[from..to]`. The fold has no
    /// early exit, so the compiler vectorizes it.
    #[inline]
    fn check_controls(&mut self, from: usize, to: usize) -> Result<()> {
        let span = &self.bytes[from..to];
        if span.iter().fold(false, |acc, &b| acc | (b < 0x20)) {
            let at = span.iter().position(|&b| b < 0x20).unwrap_or(0);
            self.pos = from + at;
            return self.err(ErrorKind::ControlCharacter);
        }
        Ok(())
    }

    /// Checks the escape at `at` (a backslash); returns the offset after it.
    fn escape(&mut self, at: usize) -> Result<usize> {
        self.pos = at;
        let Some(&c) = self.bytes.get(at + 1) else {
            self.pos = self.bytes.len();
            return self.err(ErrorKind::UnexpectedEnd);
        };
        match c {
            b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => Ok(at + 2),
            b'u' => {
                let hi = self.hex_at(at + 2)?;
                match hi {
                    0xD800..=0xDBFF => {
                        if self.bytes.get(at + 6..at + 8) != Some(b"\\u") {
                            self.pos = at;
                            return self.err(ErrorKind::LoneSurrogate);
                        }
                        let lo = self.hex_at(at + 8)?;
                        if !(0xDC00..=0xDFFF).contains(&lo) {
                            self.pos = at;
                            return self.err(ErrorKind::LoneSurrogate);
                        }
                        Ok(at + 12)
                    }
                    0xDC00..=0xDFFF => self.err(ErrorKind::LoneSurrogate),
                    _ => Ok(at + 6),
                }
            }
            _ => self.err(ErrorKind::InvalidEscape),
        }
    }

    fn hex_at(&mut self, at: usize) -> Result<u32> {
        match self.bytes.get(at..at + 4) {
            Some(h) => match hex4(h) {
                Some(v) => Ok(v),
                None => {
                    self.pos = at;
                    self.err(ErrorKind::InvalidEscape)
                }
            },
            None => {
                self.pos = self.bytes.len();
                self.err(ErrorKind::UnexpectedEnd)
            }
        }
    }

    /// Scans `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`.
    fn number(&mut self) -> Result<JsonNumber<'a>> {
        let start = self.pos;
        let b = self.bytes;
        let mut i = start;
        if b[i] == b'-' {
            i += 1;
        }
        match b.get(i) {
            Some(b'0') => i += 1,
            Some(b'1'..=b'9') => i = digits(b, i + 1),
            None => {
                self.pos = i;
                return self.err(ErrorKind::UnexpectedEnd);
            }
            Some(_) => {
                self.pos = i;
                return self.err(ErrorKind::InvalidNumber);
            }
        }
        let mut integer = true;
        if b.get(i) == Some(&b'.') {
            integer = false;
            let end = digits(b, i + 1);
            if end == i + 1 {
                self.pos = end;
                return self.err(if end == b.len() {
                    ErrorKind::UnexpectedEnd
                } else {
                    ErrorKind::InvalidNumber
                });
            }
            i = end;
        }
        if matches!(b.get(i), Some(b'e' | b'E')) {
            integer = false;
            i += 1;
            if matches!(b.get(i), Some(b'+' | b'-')) {
                i += 1;
            }
            let end = digits(b, i);
            if end == i {
                self.pos = end;
                return self.err(if end == b.len() {
                    ErrorKind::UnexpectedEnd
                } else {
                    ErrorKind::InvalidNumber
                });
            }
            i = end;
        }
        self.pos = i;
        Ok(JsonNumber {
            raw: &self.input[start..i],
            integer,
        })
    }
}

/// Words [`Tokenizer::short_scan`] reads before handing over to `memchr2`.
const SHORT_WORDS: usize = 16;

/// Index of the first byte of `word` (little-endian: the lowest byte is
/// the first) that is `"`, `\` or below 0x20; 8 when there is none.
///
/// Each test flags a byte `b` by the top bit of `(b - k) & !b`, the
/// classic zero-byte test. A borrow can only leave a byte that matched, so
/// flags above the lowest one may be wrong, but the lowest one never is.
#[inline]
fn first_special(word: u64) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let zero = |x: u64| x.wrapping_sub(ONES) & !x & HIGH;
    let quote = zero(word ^ (ONES * b'"' as u64));
    let backslash = zero(word ^ (ONES * b'\\' as u64));
    let control = word.wrapping_sub(ONES * 0x20) & !word & HIGH;
    ((quote | backslash | control).trailing_zeros() / 8) as usize
}

#[inline]
fn digits(b: &[u8], mut i: usize) -> usize {
    while b.get(i).is_some_and(u8::is_ascii_digit) {
        i += 1;
    }
    i
}

fn hex4(h: &[u8]) -> Option<u32> {
    let mut v = 0u32;
    for &c in h.get(..4)? {
        v = v * 16 + (c as char).to_digit(16)?;
    }
    Some(v)
}

/// Escapes `s` as the inside of a JSON string (no quotes) and appends it to `out`.
pub fn escape_into(s: &str, out: &mut String) {
    let b = s.as_bytes();
    let mut run = 0;
    for (i, &c) in b.iter().enumerate() {
        let esc: &str = match c {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0..=0x1f => "",
            _ => continue,
        };
        out.push_str(&s[run..i]);
        if esc.is_empty() {
            out.push_str(&format!("\\u{c:04x}"));
        } else {
            out.push_str(esc);
        }
        run = i + 1;
    }
    out.push_str(&s[run..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every byte value at every position of a word, over backgrounds of
    /// plain ASCII, of UTF-8 continuation bytes, and of bytes just above
    /// and below the ones looked for, against a byte-by-byte scan.
    #[test]
    fn first_special_finds_the_first_quote_backslash_or_control() {
        let special = |b: u8| b == b'"' || b == b'\\' || b < 0x20;
        for fill in [b'a', 0x80, 0xBF, 0xFF, b'!', b'#', b'[', b']', b' '] {
            for at in 0..8 {
                for b in 0..=255u8 {
                    let mut word = [fill; 8];
                    word[at] = b;
                    // A second special byte later must not move the answer.
                    if at < 6 {
                        word[at + 2] = 0x01;
                    }
                    let want = word.iter().position(|&c| special(c)).unwrap_or(8);
                    let got = first_special(u64::from_le_bytes(word));
                    assert_eq!(got, want, "{word:02x?}");
                }
            }
        }
        assert_eq!(first_special(u64::from_le_bytes(*b"abcdefgh")), 8);
    }
}
