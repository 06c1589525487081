//! `BlockReader` and `Lines` on arbitrary bytes, against a naive split.
//!
//! Input layout: byte 0 picks the block size (1..=32), byte 1 the longest
//! line (1..=32), byte 2 how the reader hands out bytes (bits 0-2: at most
//! that many bytes per `read`, 0 = as many as asked; bit 3: an `Interrupted`
//! error before every read). The rest is the stream.
//!
//! Checks, besides "no panic and it terminates":
//! - the blocks, laid end to end, are the stream (less a leading BOM), with
//!   each `Oversized` standing for exactly one line longer than `max_line`
//!   (`prefix` = its first `max_line` bytes, `len` = its length);
//! - no block is larger than the reader's buffer (`block_size + max_line + 1`);
//! - line numbers are strictly increasing, and the lines framed from the
//!   blocks equal a naive split on `\n` (one trailing `\r` stripped, blank
//!   lines dropped, numbered from 1), less the lines reported oversized;
//! - `Lines` never yields more than `max_line` bytes, sets `too_long` exactly
//!   when the line is longer, and then holds its first `max_line` bytes.
#![no_main]

use std::io::{self, Read};

use libfuzzer_sys::fuzz_target;
use weft_scan::lines::{Block, BlockReader, Lines};

const BOM: &[u8] = b"\xEF\xBB\xBF";

/// A reader that returns short reads and spurious `Interrupted` errors.
struct Trickle<'a> {
    data: &'a [u8],
    chunk: usize,
    interrupt: bool,
    interrupted: bool,
}

impl Read for Trickle<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.interrupt && !self.interrupted {
            self.interrupted = true;
            return Err(io::ErrorKind::Interrupted.into());
        }
        self.interrupted = false;
        let n = buf.len().min(self.data.len()).min(self.chunk);
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

/// The naive framing: (number, line) for every non-blank line.
fn naive(stream: &[u8]) -> Vec<(u64, &[u8])> {
    if stream.is_empty() {
        return Vec::new();
    }
    stream
        .split(|&b| b == b'\n')
        .enumerate()
        .map(|(i, l)| (i as u64 + 1, l.strip_suffix(b"\r").unwrap_or(l)))
        .filter(|(_, l)| !l.is_empty())
        .collect()
}

/// Frames `block` with `Lines` and checks the `max_line` contract against an
/// unlimited framing of the same block. Returns the full lines.
fn frame_checked(block: &[u8], first: u64, max_line: usize) -> Vec<(u64, &[u8])> {
    let full: Vec<_> = Lines::new(block, first, usize::MAX).collect();
    let cut: Vec<_> = Lines::new(block, first, max_line).collect();
    assert_eq!(
        full.len(),
        cut.len(),
        "max_line changed the number of lines"
    );
    for (f, c) in full.iter().zip(&cut) {
        assert!(f.too_long.is_none());
        assert_eq!(f.number, c.number);
        assert!(
            c.bytes.len() <= max_line,
            "Lines yielded {} > max_line {max_line} bytes",
            c.bytes.len()
        );
        if f.bytes.len() > max_line {
            assert_eq!(
                c.too_long,
                Some(f.bytes.len()),
                "line {} too_long",
                f.number
            );
            assert_eq!(c.bytes, &f.bytes[..max_line]);
        } else {
            assert_eq!(c.too_long, None, "line {} flagged but fits", f.number);
            assert_eq!(c.bytes, f.bytes);
        }
    }
    full.iter().map(|l| (l.number, l.bytes)).collect()
}

fuzz_target!(|data: &[u8]| {
    let [b0, b1, b2, ref input @ ..] = *data else {
        return;
    };
    let block_size = 1 + (b0 as usize % 32);
    let max_line = 1 + (b1 as usize % 32);
    let chunk = match b2 & 7 {
        0 => usize::MAX,
        n => n as usize,
    };
    let interrupt = b2 & 8 != 0;
    let stream = input.strip_prefix(BOM).unwrap_or(input);

    // `Lines` alone over the whole stream equals the naive split.
    let whole = frame_checked(stream, 1, max_line);
    let want = naive(stream);
    assert_eq!(whole, want, "Lines over the whole stream");

    let reader = Trickle {
        data: input,
        chunk,
        interrupt,
        interrupted: false,
    };
    let mut r = BlockReader::new(reader, block_size, max_line);
    let mut blocks = Vec::new();
    loop {
        match r.next_block().expect("reading a slice cannot fail") {
            Some(b) => blocks.push(b),
            None => break,
        }
        assert!(
            blocks.len() <= input.len() + 1,
            "no progress: more blocks than bytes"
        );
    }
    assert_eq!(
        r.bytes_read(),
        input.len() as u64,
        "stream not read to the end"
    );
    assert!(r.next_block().unwrap().is_none(), "a block after the end");

    // Lay the blocks end to end over the stream.
    let mut pos = 0;
    let mut newlines_before = 0;
    let mut got: Vec<(u64, &[u8])> = Vec::new();
    let mut oversized = Vec::new();
    for (i, b) in blocks.iter().enumerate() {
        let number_here = 1 + newlines_before;
        match b {
            Block::Lines { first_line, bytes } => {
                assert!(!bytes.is_empty(), "empty block");
                assert!(
                    bytes.len() <= block_size + max_line + 1,
                    "block of {} bytes",
                    bytes.len()
                );
                assert!(
                    bytes.ends_with(b"\n") || i + 1 == blocks.len(),
                    "block {i} does not end on a line boundary"
                );
                assert_eq!(*first_line, number_here, "first_line of block {i}");
                assert_eq!(
                    stream.get(pos..pos + bytes.len()),
                    Some(&bytes[..]),
                    "block {i} is not the stream at {pos}"
                );
                pos += bytes.len();
                newlines_before += bytes.iter().filter(|&&c| c == b'\n').count() as u64;
                got.extend(frame_checked(bytes, *first_line, max_line));
            }
            Block::Oversized { line, prefix, len } => {
                assert_eq!(*line, number_here, "line of oversized block {i}");
                let rest = &stream[pos..];
                let (raw, advance) = match rest.iter().position(|&c| c == b'\n') {
                    Some(n) => (&rest[..n], n + 1),
                    None => (rest, rest.len()),
                };
                assert!(
                    raw.len() > max_line,
                    "line {line} of {} bytes reported oversized",
                    raw.len()
                );
                assert_eq!(*len, raw.len(), "oversized len of line {line}");
                assert_eq!(
                    &prefix[..],
                    &raw[..max_line],
                    "oversized prefix of line {line}"
                );
                pos += advance;
                newlines_before += 1;
                oversized.push(*line);
            }
        }
    }
    assert_eq!(
        pos,
        stream.len(),
        "blocks cover {pos} of {} bytes",
        stream.len()
    );

    // Numbers strictly increase, and the framed lines are the naive ones less the oversized.
    let mut numbers: Vec<u64> = got
        .iter()
        .map(|(n, _)| *n)
        .chain(oversized.iter().copied())
        .collect();
    let count = numbers.len();
    numbers.sort_unstable();
    numbers.dedup();
    assert_eq!(numbers.len(), count, "a line number was reported twice");
    assert!(
        got.windows(2).all(|w| w[0].0 < w[1].0),
        "line numbers not increasing"
    );
    let expected: Vec<_> = want
        .iter()
        .filter(|(n, _)| oversized.binary_search(n).is_err())
        .copied()
        .collect();
    assert_eq!(got, expected, "framed lines differ from a naive split");
});
